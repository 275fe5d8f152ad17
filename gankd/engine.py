"""One training loop that executes any :class:`~gankd.schedule.Schedule` for any GAN family."""
from __future__ import annotations

import random
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Collection, Iterable, Mapping, Sequence

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from .checkpoint import CheckpointError, load_weights
from .distill import DistillationLoss
from .hooks import GAN, GANHooks, Losses
from .schedule import Schedule, Stage, build_lr_scheduler
from .width_rule import apply_init, build_optimizer, describe_groups, initialise
from .structure import Structure
from .taps import OutputTaps, frozen_batchnorm_stats

if TYPE_CHECKING:  # annotations only: callbacks build on the engine, the engine only calls them
    from .callbacks import Callback


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN/Inf; the message names stage, epoch, step and the loss term."""


# The engine's optimizer keys are the four networks' ("teacher.generator", ..., as ``Stage.optimizers`` names
# them) and K's own parameters' (adaptors). The generator step updates GENERATOR_STEP; a discriminator step its own.
DISTILLATION = "distillation"
GENERATOR_STEP = frozenset({"teacher.generator", "student.generator", DISTILLATION})


@dataclass
class StageState:
    """What the engine derived from a stage's structure: optimizers per trainable network."""

    index: int
    stage: Stage
    optimizers: dict[str, torch.optim.Optimizer] = field(default_factory=dict)
    # The stage's K: its own (``stage.distillation``, fresh adaptors) or the engine's.
    distillation: DistillationLoss | None = None
    taps: OutputTaps | None = None
    schedulers: dict[str, Any] = field(default_factory=dict)  # per optimizer, when the stage has lr_schedule
    scales: dict[str, dict] = field(default_factory=dict)  # per network its stage's lr_rule covers
    # What the loss hooks receive for the generator step and the discriminator step. Single-process:
    # the GANs themselves. Under DDP: views whose trained networks are DDP-wrapped (the G step sees
    # the raw discriminator, so DDP never waits for D gradients the generator loss does not produce).
    g_views: dict[str, GAN] = field(default_factory=dict)
    d_views: dict[str, GAN] = field(default_factory=dict)

    @property
    def structure(self) -> Structure:
        return self.stage.structure


def move_to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: move_to_device(v, device) for k, v in batch.items()}
    return batch


class DistillationEngine:
    """Trains a teacher and/or student GAN through the stages of a schedule.

    Per step, for the stage's flags (alpha, beta, mu, nu, lam):

    1. both generators run once on the same inputs (a frozen teacher under ``no_grad``);
    2. one backward of ``alpha*L_g^T + mu*L_g^S + lam*K`` updates the generators that train
       (K sees detached teacher outputs, so it never moves the teacher);
    3. each discriminator that trains takes its own step on ``beta*L_d^T`` / ``nu*L_d^S``.

    Networks a stage does not train get ``requires_grad=False`` (no gradient, no optimizer).

    ``mixed_precision="bf16"`` (CPU or CUDA) or ``"fp16"`` (CUDA) runs forwards and losses under
    ``torch.autocast``; parameters, gradients and optimizer states stay float32. Off by default.

    Speed switches (measured in ``benchmarks/``, section ``switches``): ``channels_last`` stores the
    networks' 4-d weights channels-last, so oneDNN runs their convolutions in that layout (``True``
    for both GANs, or a collection of ``"teacher"`` / ``"student"``); ``compile`` compiles every
    generator and discriminator in place with ``torch.compile`` (``nn.Module.compile``: parameter
    names and checkpoints are unchanged; the first steps pay the compilation). Neither changes the
    math, only float rounding.

    Distributed: when ``torch.distributed`` is initialised with several processes (e.g. under
    ``torchrun``), the networks a stage trains are wrapped in ``DistributedDataParallel``
    (gradients averaged across processes; parameters broadcast from rank 0 at each stage start)
    and each process must iterate over its own shard of every global batch. On CUDA, batch norm
    becomes ``SyncBatchNorm``; on CPU (gloo) each process normalises with its shard's statistics.
    """

    def __init__(self, hooks: GANHooks, teacher: GAN | None = None, student: GAN | None = None, *,
                 distillation: DistillationLoss | None = None, device: str | torch.device = "cpu",
                 callbacks: Sequence[Callback] = (), metadata: dict | None = None,
                 channels_last: bool | Collection[str] = False, compile: bool = False,
                 mixed_precision: str | None = None) -> None:
        if teacher is None and student is None:
            raise ValueError("DistillationEngine needs a teacher, a student, or both; got neither")
        self.hooks = hooks
        self.device = torch.device(device)
        if mixed_precision not in (None, "bf16", "fp16"):
            raise ValueError(f"mixed_precision must be None, 'bf16' or 'fp16', got {mixed_precision!r}")
        if mixed_precision == "fp16" and self.device.type != "cuda":
            raise ValueError("mixed_precision='fp16' needs a CUDA device; use 'bf16' on the CPU")
        # bf16 needs no loss scaling; fp16 (CUDA only) may underflow small gradients: prefer bf16 where supported
        self.mixed_precision = {None: None, "bf16": torch.bfloat16, "fp16": torch.float16}[mixed_precision]
        self.teacher = teacher.to(self.device) if teacher is not None else None
        self.student = student.to(self.device) if student is not None else None
        for who in _who(channels_last, "channels_last"):
            gan = getattr(self, who)
            if gan is not None:
                gan.to(memory_format=torch.channels_last)
        if compile:
            for gan in (self.teacher, self.student):
                if gan is not None:
                    gan.generator.compile()
                    gan.discriminator.compile()
        self.distillation = (distillation or hooks.distillation_loss()).to(self.device)
        self.callbacks = list(callbacks)
        self.metadata = dict(metadata or {})  # e.g. the run's resolved config; stored in checkpoints
        self.history: list[dict] = []
        self.stage_state: StageState | None = None
        self._schedule: Schedule | None = None
        self._batches: Any = None
        self._active_callbacks: list[Callback] = []
        self._resume_stage_distillation: dict | None = None
        self.distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        self.rank = dist.get_rank() if self.distributed else 0
        if self.distributed and self.device.type == "cuda":
            for gan in (self.teacher, self.student):
                if gan is not None:
                    torch.nn.SyncBatchNorm.convert_sync_batchnorm(gan)

    @property
    def batches(self) -> Any:
        """The batch iterable of the running :meth:`fit` (None outside it)."""
        return self._batches

    @property
    def is_main_process(self) -> bool:
        """Rank 0 (or the only process): the one that writes checkpoints and logs."""
        return self.rank == 0

    # --- public -----------------------------------------------------------------------
    def fit(self, schedule: Schedule, batches: Iterable[Any], resume: dict | None = None) -> list[dict]:
        """Run every stage in order; returns one record per epoch (also in ``self.history``).

        ``batches`` is re-iterated once per epoch (a list, or a re-iterable loader; one with
        ``state_dict``/``load_state_dict`` has its shuffling state checkpointed). ``resume`` is a
        checkpoint from :meth:`state_dict` (see :func:`gankd.load_checkpoint`): training continues
        after its last completed epoch, with weights, optimizer, RNG and batch-order states restored,
        so the result equals an uninterrupted run.
        """
        self._check(schedule)
        self._schedule, self._batches = schedule, batches
        callbacks = self._active_callbacks = [cb for cb in self.callbacks
                                              if self.is_main_process or not getattr(cb, "main_process_only", False)]
        start_stage, done_epochs, global_epoch = 0, 0, 0
        if resume is not None:
            start_stage, done_epochs, global_epoch = self._restore(resume, schedule, batches)
        else:  # the init factors of lr rules, once, on fresh weights
            initialise(schedule.stages, {n: m for n, (m, _) in self._trainable(schedule.stages[0].structure).items()},
                       self.hooks, self.teacher)
        for cb in callbacks:
            cb.on_fit_start(self, schedule)
        for index in range(start_stage, len(schedule.stages)):
            stage = schedule.stages[index]
            state = self._start_stage(index, stage)
            if resume is not None and index == start_stage and done_epochs:
                if self._resume_stage_distillation is not None and state.distillation is not self.distillation:
                    _load_distillation_state(state.distillation, self._resume_stage_distillation)
                for name, opt in state.optimizers.items():
                    opt.load_state_dict(resume["optimizers"][name])
                    _match_state_layout(opt)
                for name, scheduler in state.schedulers.items():
                    scheduler.load_state_dict(resume["schedulers"][name])
            for cb in callbacks:
                cb.on_stage_start(self, state)
            for epoch in range(done_epochs + 1, stage.epochs + 1):
                global_epoch += 1
                record = self._run_epoch(state, batches, epoch, global_epoch)
                for scheduler in state.schedulers.values():
                    scheduler.step()
                if state.schedulers:
                    record["lr"] = {n: o.param_groups[0]["lr"] if len(o.param_groups) == 1
                                    else [g["lr"] for g in o.param_groups] for n, o in state.optimizers.items()}
                if epoch == 1 and state.scales:
                    record["lr_groups"] = {n: describe_groups(state.optimizers[n]) for n in state.scales}
                self.history.append(record)
                for cb in callbacks:
                    cb.on_epoch_end(self, state, record)
            done_epochs = 0
            self._end_stage(state)
            for cb in callbacks:
                cb.on_stage_end(self, state)
        for cb in callbacks:
            cb.on_fit_end(self)
        return self.history

    # --- checkpoints ----------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed to resume after the last completed epoch (call at an epoch end).

        Plain tensors and containers only, so it loads with ``torch.load(weights_only=True)``.
        """
        from . import __version__

        if self.stage_state is None or not self.history or self._schedule is None:
            raise RuntimeError("state_dict() is available at the end of an epoch, inside fit()")
        last = self.history[-1]
        return {
            "format": 1, "version": __version__, "metadata": self.metadata,
            "schedule": self._schedule.to_dict(), "stage": last["stage"], "epoch": last["epoch"],
            "global_epoch": last["global_epoch"],
            "teacher": self.teacher.state_dict() if self.teacher is not None else None,
            "student": self.student.state_dict() if self.student is not None else None,
            "optimizers": {n: o.state_dict() for n, o in self.stage_state.optimizers.items()},
            "schedulers": {n: sc.state_dict() for n, sc in self.stage_state.schedulers.items()},
            "rng": {"torch": torch.get_rng_state(), "python": random.getstate(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
            "batches": self._batches.state_dict() if hasattr(self._batches, "state_dict") else None,
            "hooks": self.hooks.state_dict(),
            "distillation": {"engine": self.distillation.state_dict(), "stage": self._stage_distillation_state()},
            "history": self.history,
        }

    def _stage_distillation_state(self) -> dict | None:
        """The state of the running stage's own K (None when the stage uses the engine's K or none)."""
        k = self.stage_state.distillation if self.stage_state is not None else None
        return k.state_dict() if k is not None and k is not self.distillation else None

    def _restore(self, ckpt: dict, schedule: Schedule, batches: Any) -> tuple[int, int, int]:
        if ckpt.get("format") != 1:
            raise CheckpointError(f"unsupported checkpoint format {ckpt.get('format')!r}; expected 1")
        if ckpt["schedule"] != schedule.to_dict():
            raise CheckpointError(f"the checkpoint was written by schedule {ckpt['schedule'].get('name')!r} "
                                  f"{ckpt['schedule']}, not by this run's {schedule.to_dict()}")
        for who, gan in (("teacher", self.teacher), ("student", self.student)):
            if (ckpt[who] is None) != (gan is None):
                raise CheckpointError(f"the checkpoint {'has no' if ckpt[who] is None else 'has a'} {who}, "
                                      f"but this engine {'has' if gan is not None else 'has no'} {who}")
            if gan is not None:
                load_weights(gan, ckpt[who], what=who)
        torch.set_rng_state(ckpt["rng"]["torch"])
        random.setstate(ckpt["rng"]["python"])
        if ckpt["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])
        if ckpt["batches"] is not None and hasattr(batches, "load_state_dict"):
            batches.load_state_dict(ckpt["batches"])
        self.hooks.load_state_dict(ckpt["hooks"])
        saved_k = ckpt.get("distillation") or {}
        if saved_k.get("engine") is not None:
            _load_distillation_state(self.distillation, saved_k["engine"])
        self._resume_stage_distillation = saved_k.get("stage")
        self.history = list(ckpt["history"])
        stage, epoch = ckpt["stage"], ckpt["epoch"]
        if epoch == schedule.stages[stage].epochs:  # the stage had finished: start the next one fresh
            stage, epoch = stage + 1, 0
        return stage, epoch, ckpt["global_epoch"]

    # --- stage set-up -------------------------------------------------------------------
    def _check(self, schedule: Schedule) -> None:
        for stage in schedule.stages:
            s = stage.structure
            if s.needs_teacher and self.teacher is None:
                raise ValueError(f"schedule {schedule.name!r}: stage {s.name!r} uses the teacher "
                                 "(alpha, beta or lam > 0) but the engine has no teacher")
            if s.needs_student and self.student is None:
                raise ValueError(f"schedule {schedule.name!r}: stage {s.name!r} trains the student "
                                 "(mu, nu or lam > 0) but the engine has no student")

    def _trainable(self, structure: Structure) -> dict[str, tuple[torch.nn.Module | None, bool]]:
        t, s = self.teacher, self.student
        return {
            "teacher.generator": (t.generator if t else None, structure.trains_teacher_generator),
            "teacher.discriminator": (t.discriminator if t else None, structure.trains_teacher_discriminator),
            "student.generator": (s.generator if s else None, structure.trains_student_generator),
            "student.discriminator": (s.discriminator if s else None, structure.trains_student_discriminator),
        }

    def _start_stage(self, index: int, stage: Stage) -> StageState:
        structure = stage.structure
        state = StageState(index, stage)
        wrapped: dict[str, torch.nn.Module] = {}
        for name, (module, trains) in self._trainable(structure).items():
            if module is None:
                continue
            module.requires_grad_(trains)
            if trains:
                state.optimizers[name], scales = build_optimizer(stage.optimizer_for(name), stage.lr_rule, name,
                                                                 module, self.hooks, self.teacher)
                if scales is not None:
                    state.scales[name] = scales
                if self.distributed:
                    ids = [self.device.index] if self.device.type == "cuda" else None
                    wrapped[name] = DistributedDataParallel(module, device_ids=ids)
        if structure.lam:
            k = (DistillationLoss.from_spec(stage.distillation).to(self.device)
                 if stage.distillation is not None else self.distillation)
            k.train(True)
            state.distillation = k
            if k.has_parameters():  # adaptors train with the student generator, at its settings
                state.optimizers[DISTILLATION] = stage.optimizer_for("student.generator").build(k.parameters())
            if k.taps:
                state.taps = OutputTaps(k.taps, {who: gan.generator for who, gan in
                                            (("teacher", self.teacher), ("student", self.student)) if gan})
        if stage.lr_schedule is not None:
            state.schedulers = {name: build_lr_scheduler(opt, stage.lr_schedule, stage.epochs)
                                for name, opt in state.optimizers.items()}
        if self.teacher is not None:
            self.teacher.train(not structure.teacher_frozen)
        if self.student is not None:
            self.student.train(True)
        for who, gan in (("teacher", self.teacher), ("student", self.student)):
            if gan is None:
                continue
            if not self.distributed:
                state.g_views[who] = state.d_views[who] = gan
                continue
            g = wrapped.get(f"{who}.generator", gan.generator)
            d = wrapped.get(f"{who}.discriminator", gan.discriminator)
            state.g_views[who] = _View(g, gan.discriminator)
            state.d_views[who] = _View(g, d)
        self.stage_state = state
        return state

    def _end_stage(self, state: StageState) -> None:
        for module, _ in self._trainable(state.structure).values():
            if module is not None:
                module.requires_grad_(True)
        if state.taps is not None:
            state.taps.remove()
        self.stage_state = None

    # --- the loop -------------------------------------------------------------------------
    def _run_epoch(self, state: StageState, batches: Iterable[Any], epoch: int, global_epoch: int) -> dict:
        start = time.perf_counter()
        sums: dict[str, torch.Tensor] = {}
        steps = 0
        for steps, batch in enumerate(batches, start=1):
            batch = move_to_device(batch, self.device)
            logged = self.train_step(state, batch, where=(epoch, steps))
            for k, v in logged.items():
                sums[k] = sums[k] + v if k in sums else v
            for cb in self._active_callbacks:
                cb.on_step_end(self, state, steps)
        if steps == 0:
            raise ValueError("the batch iterable yielded no batches; check the dataset and batch size")
        return {
            "stage": state.index, "structure": state.structure.name, "epoch": epoch,
            "global_epoch": global_epoch, "steps": steps,
            "losses": {k: float(v) / steps for k, v in sums.items()},
            "metrics": {}, "seconds": time.perf_counter() - start,
        }

    def train_step(self, state: StageState, batch: Any, where: tuple[int, int] = (0, 0)) -> dict[str, torch.Tensor]:
        """One optimisation step of the stage; returns detached loss values for logging.

        Three parts: both generators' forwards on the same inputs (:meth:`_generator_outputs`), one step of every
        generator the structure trains on its weighted objective (:meth:`_generator_objective`), then the
        discriminators' steps (:meth:`_discriminator_steps`). With ``mixed_precision``, forwards and losses run
        under ``torch.autocast``; backward passes and optimizer steps do not."""
        logged: dict[str, torch.Tensor] = {}
        with self._autocast():
            t_out, s_out = self._generator_outputs(state, self.hooks.generator_inputs(batch))
            keys = {"teacher": tuple(t_out), "student": tuple(s_out)}  # before the loss hooks add intermediates
            total_g = self._generator_objective(state, batch, t_out, s_out, logged)
        if total_g is not None:
            self._check_finite(state, where, logged, total_g)
            self._step([o for name, o in state.optimizers.items() if name in GENERATOR_STEP],
                       total_g, state.stage.grad_clip)
        self._discriminator_steps(state, batch, where, {"teacher": t_out, "student": s_out}, keys, logged)
        return logged

    def _generator_outputs(self, state: StageState, inputs: Any) -> tuple[dict[str, torch.Tensor],
                                                                           dict[str, torch.Tensor]]:
        """``(teacher outputs, student outputs)`` of the structure's generators on the same ``inputs`` (a frozen
        teacher under ``no_grad``), with tapped intermediate features and the distillation views added."""
        s = state.structure
        t_out: dict[str, torch.Tensor] = {}
        s_out: dict[str, torch.Tensor] = {}
        if s.needs_teacher:
            with torch.no_grad() if s.teacher_frozen else nullcontext():
                t_out = self._forward(state.g_views["teacher"].generator, inputs, "teacher")
            if state.taps is not None:
                t_out.update(state.taps.take("teacher"))
        if s.needs_student:
            with nullcontext() if s.trains_student_generator else torch.no_grad():
                s_out = self._forward(state.g_views["student"].generator, inputs, "student")
            if state.taps is not None:
                s_out.update(state.taps.take("student"))
        if s.lam and state.distillation is not None and state.distillation.views:
            self._view_outputs(state, inputs, t_out, s_out)
        return t_out, s_out

    def _generator_objective(self, state: StageState, batch: Any, t_out: dict[str, torch.Tensor],
                             s_out: dict[str, torch.Tensor], logged: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """alpha L_g^T + mu L_g^S + lambda K (Eq. 7's generator terms the structure switches on), or None."""
        s, hooks = state.structure, self.hooks
        objective: list[torch.Tensor] = []
        if s.alpha:
            losses = _checked_losses(hooks.generator_loss(state.g_views["teacher"], batch, t_out), hooks,
                                     "generator_loss", "teacher")
            objective.append(s.alpha * self._log(logged, "L_g^T", losses))
        if s.mu:
            losses = _checked_losses(hooks.generator_loss(state.g_views["student"], batch, s_out), hooks,
                                     "generator_loss", "student")
            objective.append(s.mu * self._log(logged, "L_g^S", losses))
        if s.lam:
            assert state.distillation is not None
            terms, total = state.distillation(t_out, s_out)
            objective.append(s.lam * self._log(logged, "K", Losses(total, terms)))
        if not objective:
            return None
        return torch.stack(objective).sum() if len(objective) > 1 else objective[0]

    def _discriminator_steps(self, state: StageState, batch: Any, where: tuple[int, int],
                             outputs: dict[str, dict[str, torch.Tensor]], keys: dict[str, tuple[str, ...]],
                             logged: dict[str, torch.Tensor]) -> None:
        """beta L_d^T and nu L_d^S: ``d_steps`` steps of each discriminator the structure trains."""
        s = state.structure
        for flag, who, tag in ((s.beta, "teacher", "L_d^T"), (s.nu, "student", "L_d^S")):
            if not flag:
                continue
            for d_step in range(state.stage.d_steps):
                # later steps see only the generator's outputs: what the loss hooks cached (e.g. D(x) of the
                # generator step) belongs to a graph the first backward has freed
                step_outputs = outputs[who] if d_step == 0 else {k: outputs[who][k] for k in keys[who]}
                with self._autocast():
                    losses = _checked_losses(self.hooks.discriminator_loss(state.d_views[who], batch, step_outputs),
                                             self.hooks, "discriminator_loss", who)
                    total_d = flag * self._log(logged, tag, losses)
                self._check_finite(state, where, logged, total_d)
                self._step([state.optimizers[f"{who}.discriminator"]], total_d, state.stage.grad_clip)
                self._after_discriminator_step(who, losses)

    def _autocast(self):
        """``torch.autocast`` at the engine's ``mixed_precision`` dtype, or nothing (the default)."""
        if self.mixed_precision is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.mixed_precision)

    def _forward(self, generator: torch.nn.Module, inputs: Any, who: str) -> dict[str, torch.Tensor]:
        """``hooks.generator_forward`` with its return value checked (a mapping of names to tensors)."""
        out = self.hooks.generator_forward(generator, inputs)
        if not isinstance(out, Mapping) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in out.items()):
            got = (f"a mapping with {[(k, type(v).__name__) for k, v in out.items()][:4]}" if isinstance(out, Mapping)
                   else type(out).__name__)
            raise TypeError(f"{type(self.hooks).__name__}.generator_forward must return a mapping of output names "
                            f"(str) to tensors; for the {who} it returned {got}")
        return dict(out)

    def _view_outputs(self, state: StageState, inputs: Any, t_out: dict, s_out: dict) -> None:
        """Both generators on each view of the inputs (K's ``views``), as ``"VIEW/OUTPUT"`` entries; the
        teacher without gradients, batch-norm running statistics of both left untouched."""
        s = state.structure
        teacher_g, student_g = state.g_views["teacher"].generator, state.g_views["student"].generator
        for view, view_inputs in state.distillation.view_inputs(inputs).items():
            with frozen_batchnorm_stats(teacher_g), torch.no_grad():
                t_out.update({f"{view}/{k}": v for k, v in self._forward(teacher_g, view_inputs, "teacher").items()})
            with frozen_batchnorm_stats(student_g), nullcontext() if s.trains_student_generator else torch.no_grad():
                s_out.update({f"{view}/{k}": v for k, v in self._forward(student_g, view_inputs, "student").items()})

    def _after_discriminator_step(self, who: str, losses: Losses) -> None:
        """Runs the hook; under DDP all processes decide on the mean loss and, if the hook changed
        the discriminator (returned True), take rank 0's new weights so they stay identical."""
        gan = self.teacher if who == "teacher" else self.student
        if self.distributed:
            total = losses.total.detach().clone()
            dist.all_reduce(total)
            losses = Losses(total / dist.get_world_size(), losses.terms)
        changed = self.hooks.after_discriminator_step(gan, losses)
        scales = self.stage_state.scales.get(f"{who}.discriminator") if self.stage_state is not None else None
        if changed and scales is not None:  # a re-initialised discriminator gets its rule's init factors again
            apply_init(gan.discriminator, scales)
        if changed and self.distributed:
            for tensor in gan.discriminator.state_dict().values():
                dist.broadcast(tensor, src=0)

    @staticmethod
    def _log(logged: dict[str, torch.Tensor], tag: str, losses: Losses) -> torch.Tensor:
        logged[tag] = losses.total.detach()
        for name, value in losses.terms.items():
            logged[f"{tag}/{name}"] = value.detach()
        return losses.total

    @staticmethod
    def _step(optimizers: list[torch.optim.Optimizer], loss: torch.Tensor, grad_clip: float | None = None) -> None:
        """Backward into the parameters these optimizers step, and nothing else: the generator
        objective runs through the discriminator, whose weight gradients would be thrown away.
        ``grad_clip``: clip the gradient of those parameters to this total L2 norm first."""
        params = [p for opt in optimizers for group in opt.param_groups for p in group["params"]]
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        loss.backward(inputs=params)
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        for opt in optimizers:
            opt.step()

    @staticmethod
    def _check_finite(state: StageState, where: tuple[int, int], logged: dict[str, torch.Tensor],
                      total: torch.Tensor) -> None:
        if bool(torch.isfinite(total)):
            return
        bad = [k for k, v in logged.items() if not bool(torch.isfinite(v))]
        raise NonFiniteLossError(
            f"non-finite loss in stage {state.index} ({state.structure.name}), epoch {where[0]}, "
            f"step {where[1]}: {', '.join(bad) or 'total'} = "
            + ", ".join(f"{k}={float(logged[k])}" for k in bad))


def _who(value: bool | Collection[str], what: str) -> tuple[str, ...]:
    """``True`` / ``False`` / a collection of "teacher", "student" -> the names it selects."""
    if isinstance(value, bool):
        return ("teacher", "student") if value else ()
    if isinstance(value, str) or not all(v in ("teacher", "student") for v in value):
        raise ValueError(f"{what} must be True, False or a collection of 'teacher'/'student', got {value!r}")
    return tuple(v for v in ("teacher", "student") if v in value)


def _checked_losses(value: Any, hooks: GANHooks, hook: str, who: str) -> Losses:
    """A family's loss as :class:`Losses`; anything else is an error naming the hook and what it returned."""
    if isinstance(value, tuple) and len(value) == 2 and torch.is_tensor(value[0]) and value[0].dim() == 0 \
            and isinstance(value[1], Mapping):
        return value if isinstance(value, Losses) else Losses(*value)
    raise TypeError(f"{type(hooks).__name__}.{hook} must return gankd.Losses(total, terms) with a scalar tensor "
                    f"total and a dict of named terms; for the {who} it returned {type(value).__name__}"
                    + (f" with total of shape {tuple(value[0].shape)}" if isinstance(value, tuple) and value
                       and torch.is_tensor(value[0]) else ""))


def _load_distillation_state(loss: DistillationLoss, state: dict) -> None:
    """``load_state_dict`` for K: its stateful terms may size their buffers from the checkpoint (statistics
    of a shape seen only at the first batch), which a shape-checking loader would refuse."""
    try:
        loss.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"the checkpoint's distillation-loss state does not fit this run's loss {loss}: "
                              f"{str(err).splitlines()[0]}") from None


def _match_state_layout(optimizer: torch.optim.Optimizer) -> None:
    """Give each loaded optimizer-state tensor its parameter's memory layout.

    A checkpoint written with another layout (channels-last vs not) loads with its own strides, and
    the fused CPU Adam walks parameter, gradient and state buffers as flat arrays: mixed layouts
    would silently pair the wrong elements.
    """
    for group in optimizer.param_groups:
        for p in group["params"]:
            for key, value in optimizer.state.get(p, {}).items():
                if torch.is_tensor(value) and value.shape == p.shape and value.stride() != p.stride():
                    optimizer.state[p][key] = torch.empty_like(p, dtype=value.dtype).copy_(value)


class _View(GAN):
    """A GAN whose generator/discriminator may be DDP wrappers of the real networks (no copies)."""

    def __init__(self, generator: torch.nn.Module, discriminator: torch.nn.Module) -> None:
        torch.nn.Module.__init__(self)
        object.__setattr__(self, "generator", generator)       # not registered: the view owns nothing
        object.__setattr__(self, "discriminator", discriminator)
