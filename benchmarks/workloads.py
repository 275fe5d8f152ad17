"""What the benchmarks run: models of the paper's shapes, engine stages, batch sources, bare loops.

Inputs are synthetic (uniform in [-1, 1], the range of the real preprocessed data) and kept in
memory as one tensor, batched by :class:`gankd.batches.ShuffledBatches` exactly as training
does; so no dataset files are needed and the data pipeline is the real one.

The *bare loops* below are the teacher / KDGAN-2 / KDGAN-4 steps written by hand in plain PyTorch,
with the same math as ``DistillationEngine.train_step`` + ``GanomalyHooks`` (default loss weights
w_con=10, w_enc=w_adv=1, K weights 1, flags 1); ``bare_matches_engine`` checks that they
reproduce the engine's weights exactly:

  frozen teacher (KDGAN-2): eval mode, ``no_grad``, no optimizer, one forward
  G objective: mu*L_g^S + lam*K (+ alpha*L_g^T for KDGAN-4; only alpha*L_g^T for the teacher stage),
     ONE backward, then each G optimizer steps
     L_g = 10*|x - x_hat|_1 + MSE(z2, z1) + MSE(f(x_hat), f(x).detach());  D(x) runs once and is reused
     K   = MSE(z1^S, z1^T) + |x_hat^S - x_hat^T|_1 + MSE(z2^S, z2^T)  (teacher outputs detached)
  then each trained discriminator: 0.5*(BCE(D(x), 1) + BCE(D(x_hat.detach()), 0)), one backward, step,
     and GANomaly's re-initialisation of a discriminator whose loss fell below 1e-5.

``lean=True`` passes ``inputs=`` (the generators' parameters) to the G backward, so autograd
skips the discriminator weight gradients that the D optimizer's ``zero_grad`` would discard
anyway; ``fused_adam=True`` uses ``torch.optim.Adam(fused=True)``. Both are candidate engine
changes, measured next to the engine (see README).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gankd import GAN, DistillationEngine, OptimizerConfig, Stage, StageState, get_structure
from gankd.batches import ShuffledBatches
from gankd_ganomaly.hooks import GanomalyHooks
from gankd_ganomaly.data import dataset_spec
from gankd_ganomaly.networks import TEACHER_WIDTHS

SHAPES = {"cifar10": 3, "mnist": 1, "fmnist": 1}  # channels of the 32x32 inputs
STAGES = ("teacher", "student-alone", "KDGAN-1", "KDGAN-2", "KDGAN-3", "KDGAN-4")
REINIT_THRESHOLD = 1e-5


@dataclass
class Models:
    dataset: str
    hooks: GanomalyHooks
    teacher: GAN
    student: GAN

    @property
    def channels(self) -> int:
        return self.hooks.in_channels

    def copy(self, channels_last: bool | tuple[str, ...] = False) -> "Models":
        """Deep copies; ``channels_last``: True, or the networks ("teacher", "student") to store channels-last."""
        teacher, student = copy.deepcopy(self.teacher), copy.deepcopy(self.student)
        names = ("teacher", "student") if channels_last is True else channels_last or ()
        for who, gan in (("teacher", teacher), ("student", student)):
            if who in names:
                gan.to(memory_format=torch.channels_last)
        return Models(self.dataset, self.hooks, teacher, student)

    def auto_channels_last(self) -> tuple[str, ...]:
        """The networks the library's ``channels_last="auto"`` stores channels-last."""
        from gankd_ganomaly.experiment import RunConfig, channels_last_networks

        return channels_last_networks(RunConfig(dataset=self.dataset), {"teacher": TEACHER_WIDTHS,
                                                                         "student": dataset_spec(self.dataset).student_widths})


def build_models(dataset: str, seed: int = 0) -> Models:
    """The paper's teacher (64-128-256) and the dataset's student, at the dataset's channel count."""
    hooks = GanomalyHooks(in_channels=SHAPES[dataset])
    torch.manual_seed(seed)
    teacher = hooks.build_gan(TEACHER_WIDTHS)
    student = hooks.build_gan(dataset_spec(dataset).student_widths)
    return Models(dataset, hooks, teacher, student)


def random_images(n: int, channels: int, seed: int = 0, channels_last: bool = False) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, channels, 32, 32, generator=gen).mul_(2).sub_(1)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


class BatchSource:
    """``batches(n)``: a re-iterable of exactly ``n`` shuffled in-memory batches (the real data pipeline)."""

    def __init__(self, channels: int, batch: int, seed: int = 0) -> None:
        self.channels, self.batch, self.seed = channels, batch, seed
        self._cache: dict[int, ShuffledBatches] = {}

    def batches(self, n: int) -> ShuffledBatches:
        if n not in self._cache:
            images = random_images(n * self.batch, self.channels, self.seed)
            self._cache[n] = ShuffledBatches(images, self.batch, seed=self.seed, drop_last=True)
        return self._cache[n]

    def one(self) -> torch.Tensor:
        return next(iter(self.batches(1)))


# --- the engine ---------------------------------------------------------------------------------------------------


# the paper's Adam settings, for the engine and the bare loop alike (the engine's default lr is DCGAN's 2e-4)
BENCH_OPTIMIZER = OptimizerConfig(lr=0.002, betas=(0.5, 0.999))


def engine_for(models: Models, stage_name: str, optimizer: OptimizerConfig | None = None
               ) -> tuple[DistillationEngine, StageState]:
    """An engine with only the networks ``stage_name`` needs, its stage started (optimizers built)."""
    structure = get_structure(stage_name)
    engine = DistillationEngine(models.hooks, models.teacher if structure.needs_teacher else None,
                                models.student if structure.needs_student else None)
    state = engine._start_stage(0, Stage(structure, 1, optimizer or BENCH_OPTIMIZER))
    return engine, state


def engine_runner(models: Models, stage_name: str, source: BatchSource):
    """fn(n): n training steps through the engine's own epoch loop (data, train_step, loss logging)."""
    engine, state = engine_for(models, stage_name)

    def run(n: int) -> None:
        engine._run_epoch(state, source.batches(n), 1, 1)
    run.engine, run.state = engine, state  # type: ignore[attr-defined]
    return run


# --- the bare hand-written loop ---------------------------------------------------------------------------------------


class _Side:
    """One GAN of the bare loop: its networks, optimizers and whether it trains."""

    def __init__(self, gan: GAN, trains: bool, fused_adam: bool) -> None:
        self.gan, self.trains = gan, trains
        gan.requires_grad_(trains)
        gan.train(trains)
        kw = {"lr": BENCH_OPTIMIZER.lr, "betas": BENCH_OPTIMIZER.betas}
        if fused_adam:
            kw["fused"] = True
        self.opt_g = torch.optim.Adam(gan.generator.parameters(), **kw) if trains else None
        self.opt_d = torch.optim.Adam(gan.discriminator.parameters(), **kw) if trains else None


def _generator_loss(d: torch.nn.Module, x: torch.Tensor, z1: torch.Tensor, x_hat: torch.Tensor, z2: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    real_logit, real_f = d(x)
    _, fake_f = d(x_hat)
    loss = 10.0 * F.l1_loss(x_hat, x) + F.mse_loss(z2, z1) + F.mse_loss(fake_f, real_f.detach())
    return loss, real_logit


def _discriminator_step(side: _Side, real_logit: torch.Tensor, x_hat: torch.Tensor) -> None:
    d = side.gan.discriminator
    fake_logit, _ = d(x_hat.detach())
    loss = 0.5 * (F.binary_cross_entropy_with_logits(real_logit, torch.ones_like(real_logit))
                  + F.binary_cross_entropy_with_logits(fake_logit, torch.zeros_like(fake_logit)))
    side.opt_d.zero_grad(set_to_none=True)
    loss.backward()
    side.opt_d.step()
    if float(loss.detach()) < REINIT_THRESHOLD:  # GANomaly: re-initialise a discriminator that has won outright
        d.reset_parameters()


def bare_runner(models: Models, stage_name: str, source: BatchSource, *, lean: bool = False,
                fused_adam: bool = False):
    """fn(n): n steps of the 'teacher', KDGAN-2 or KDGAN-4 stage written by hand (same math as the engine)."""
    if stage_name not in ("teacher", "KDGAN-2", "KDGAN-4"):
        raise ValueError(f"the bare loop implements the teacher, KDGAN-2 and KDGAN-4 stages, not {stage_name!r}")
    teacher_trains = stage_name in ("teacher", "KDGAN-4")
    with_student = stage_name != "teacher"
    t = _Side(models.teacher, teacher_trains, fused_adam)
    s = _Side(models.student, True, fused_adam) if with_student else None
    sides = [side for side in (t, s) if side is not None and side.trains]
    g_opts = [side.opt_g for side in sides]
    g_params = [p for side in sides for p in side.gan.generator.parameters()]

    def step(x: torch.Tensor) -> None:
        if teacher_trains:
            tz1, tx, tz2 = t.gan.generator(x)
        else:
            with torch.no_grad():
                tz1, tx, tz2 = t.gan.generator(x)
        terms = []
        if teacher_trains:
            loss_t, t_real = _generator_loss(t.gan.discriminator, x, tz1, tx, tz2)
            terms.append(loss_t)
        if s is not None:
            z1, x_hat, z2 = s.gan.generator(x)
            loss_s, s_real = _generator_loss(s.gan.discriminator, x, z1, x_hat, z2)
            k = F.mse_loss(z1, tz1.detach()) + F.l1_loss(x_hat, tx.detach()) + F.mse_loss(z2, tz2.detach())
            terms += [loss_s, k]
        objective = terms[0] if len(terms) == 1 else torch.stack(terms).sum()
        for opt in g_opts:
            opt.zero_grad(set_to_none=True)
        if lean:
            objective.backward(inputs=g_params)
        else:
            objective.backward()
        for opt in g_opts:
            opt.step()
        if teacher_trains:
            _discriminator_step(t, t_real, tx)
        if s is not None:
            _discriminator_step(s, s_real, x_hat)

    def run(n: int) -> None:
        for x in source.batches(n):
            step(x)
    return run


def teacher_forward_runner(models: Models, source: BatchSource, inference_mode: bool = False):
    """fn(n): n forwards of the frozen teacher generator as KDGAN-2 runs it (eval, no_grad)."""
    gen = models.teacher.generator
    gen.eval()
    gen.requires_grad_(False)
    ctx = torch.inference_mode if inference_mode else torch.no_grad

    def run(n: int) -> None:
        with ctx():
            for x in source.batches(n):
                gen(x)
    return run



def bare_matches_engine(stage_name: str, steps: int = 3) -> dict:
    """Run the engine and the bare loop (lean and full backward, fused Adam as the engine) from the same init on the same batches (tiny
    networks); returns the largest difference of any weight/buffer afterwards (0.0: the same math)."""
    hooks = GanomalyHooks(in_channels=1)
    torch.manual_seed(0)
    base = Models("mnist", hooks, hooks.build_gan((4, 8, 16)), hooks.build_gan((1, 2, 4)))
    engine_models = base.copy()
    engine_runner(engine_models, stage_name, BatchSource(1, 8))(steps)
    out = {}
    for label, lean in (("bare", True), ("bare_full_backward", False)):
        bare_models = base.copy()
        bare_runner(bare_models, stage_name, BatchSource(1, 8), lean=lean, fused_adam=True)(steps)
        diff = 0.0
        for a, b in ((engine_models.teacher, bare_models.teacher), (engine_models.student, bare_models.student)):
            for (name, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items()):
                diff = max(diff, (va.double() - vb.double()).abs().max().item())
        out[label] = diff
    return out


def flops_per_step(run) -> float:
    """FLOPs of one step of ``run`` (fn(n)) counted by torch.utils.flop_counter (convolutions and matrix
    products, forward and backward, 2 per multiply-add): a noise-free measure of the work a step does."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        run(1)
    return float(counter.get_total_flops())


def adam_step_runners(models: Models) -> dict:
    """fn(n): n Adam steps over the teacher's parameters (G and D, ~5.8M) with each implementation."""
    params = list(models.teacher.parameters())
    gen = torch.Generator().manual_seed(0)
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen)
    runners = {}
    for name, kw in (("default (for-loop)", {}), ("foreach", {"foreach": True}), ("fused", {"fused": True})):
        opt = torch.optim.Adam(params, lr=1e-9, betas=(0.5, 0.999), **kw)

        def run(n: int, opt=opt) -> None:
            for _ in range(n):
                opt.step()
        runners[name] = run
    return runners
