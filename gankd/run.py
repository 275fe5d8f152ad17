"""The run layer: one config file -> one run folder, for any GAN family (``gankd train``).

A run config (YAML or JSON) says everything a run needs; every key is documented in ``docs/config.md``::

    family: mypkg.points:PointHooks        # 'package.module:Class', or a name of the gankd.families entry points
    family_args: {}                        # keyword arguments of the family's constructor
    data: {factory: mypkg.points:batches, args: {n: 512}}   # a callable returning re-iterable batches
    teacher: {width: 64}                   # or {checkpoint: runs/teacher/model.pt}; omit for a student alone
    student: {width: 16}                   # omit to train a teacher
    schedule: {name: mine, stages: [...]}  # a preset name, {file: PATH}, or inline stages
    # recipe: paper                        # instead of schedule: a recipe of the family
    epochs: 10                             # per stage, for a preset or a recipe
    optimizer: {lr: 0.001}                 # default optimizer settings of a preset or a recipe
    evaluate: {factory: mypkg.points:metrics, args: {}, every: 1}  # optional: factory(hooks, teacher, student,
    seed: 0                                #   **args) returns metric_fn(engine) -> {name: float}, run every
                                           #   `every` epochs and at the end of each stage
    device: cpu
    mixed_precision: null                  # or bf16 (CPU, CUDA), fp16 (CUDA): autocast forwards and losses

Every path in a config file (``teacher.checkpoint``, ``student.checkpoint``, ``schedule.file``) is relative to
the config file; a path given with ``--set`` is relative to the working directory, as any command-line path.

The folder gets ``config.yaml`` (the resolved config), ``checkpoint.pt`` (every epoch, atomically),
``history.json``, ``record.json`` and ``model.pt`` (:mod:`gankd.modelfile`), plus ``teacher.pt`` when the run
trains a teacher and a student (a model file a later run accepts as ``teacher: {checkpoint: ...}``).
``resume=True`` continues from the checkpoint and refuses one written with a different config or process count;
a kill at any point loses at most the epoch in progress, and the resumed run ends bit-identical to an
uninterrupted one (with the same thread count: a different one is warned about).

Under ``torchrun`` (``WORLD_SIZE`` > 1) the process group is initialised from the environment (gloo on CPU, NCCL
on CUDA, each process on ``cuda:LOCAL_RANK``), each batch of the data factory is the *global* batch and every
process trains on its contiguous shard of it, and only rank 0 takes the folder lock and writes files.
"""
from __future__ import annotations

import copy
import importlib
import inspect
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from .batches import ShardedBatches
from .callbacks import Callback, CheckpointCallback, EvaluationCallback, JSONHistory, auto_progress
from .checkpoint import CheckpointError
from .engine import DistillationEngine
from .hooks import GAN, GANHooks
from .modelfile import load_model, read_model, resolve_family, save_model
from .resources import MemoryEstimate, check_device, check_memory, check_precision, probe_network
from .distributed import init_distributed, rank0_folder
from .runfolder import CHECKPOINT, RunFolder, RunFolderError, key_differences
from .schedule import OptimizerConfig, Schedule, get_schedule
from .utils import atomic_write_text, seed_everything

KEYS = ("family", "family_args", "data", "teacher", "student", "schedule", "recipe", "epochs", "optimizer",
        "evaluate", "seed", "device", "mixed_precision", "world_size")
RUN_FILES = ("config.yaml", "checkpoint.pt", "history.json", "record.json", "model.pt", "teacher.pt")


class RunConfigError(ValueError):
    """A run config is invalid: the message names the key and the bad value."""


# --- config ------------------------------------------------------------------------------------------------------

def read_config(path: str | Path) -> dict:
    """The mapping in a ``.yaml``/``.yml``/``.json`` file, with errors that name the file."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist")
    try:
        data = json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise RunConfigError(f"config file {str(path)!r} cannot be parsed: {err}") from None
    if not isinstance(data, dict):
        raise RunConfigError(f"config file {str(path)!r} must hold a mapping of keys to values")

    def relative_to_config(value: Any) -> Any:
        if not isinstance(value, str):
            return value  # validate() names the bad value
        file = Path(value).expanduser()
        return str(file if file.is_absolute() else path.parent / file)

    if isinstance(data.get("schedule"), Mapping) and "file" in data["schedule"]:
        data["schedule"] = {**data["schedule"], "file": relative_to_config(data["schedule"]["file"])}
    for role in ("teacher", "student"):
        if isinstance(data.get(role), Mapping) and "checkpoint" in data[role]:
            data[role] = {**data[role], "checkpoint": relative_to_config(data[role]["checkpoint"])}
    return data


def apply_overrides(config: Mapping[str, Any], assignments: Sequence[str]) -> dict:
    """``KEY=VALUE`` overrides, values parsed as YAML; dots reach into mappings (``student.width=8``) and, by
    index, into lists (``schedule.stages.1.epochs=3``)."""
    import yaml

    result = copy.deepcopy(dict(config))
    for item in assignments:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise RunConfigError(f"override {item!r} is not of the form KEY=VALUE (e.g. epochs=3)")
        path = key.strip().split(".")
        if path[0] not in KEYS:
            raise RunConfigError(f"override {item!r}: unknown key {path[0]!r}; valid keys: {', '.join(KEYS)}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        target: Any = result
        for depth, part in enumerate(path):
            if isinstance(target, list):
                part = _list_index(target, part, ".".join(path[:depth]), item)
            elif depth < len(path) - 1 and not isinstance(target.get(part), (dict, list)):
                target[part] = {}
            if depth == len(path) - 1:
                target[part] = value
            else:
                target = target[part]
    return result


def _list_index(items: list, part: str, where: str, item: str) -> int:
    if not part.isdigit() or int(part) >= len(items):
        raise RunConfigError(f"override {item!r}: {where} is a list of {len(items)} item(s); address one by its "
                             f"index 0..{len(items) - 1}, got {part!r}")
    return int(part)


def _callable(spec: Any, key: str, extra_keys: Sequence[str] = ()) -> tuple[Callable[..., Any], dict]:
    if not isinstance(spec, Mapping) or not isinstance(spec.get("factory"), str) or ":" not in spec["factory"]:
        raise RunConfigError(f"{key} must be {{factory: 'package.module:function', args: {{...}}}}, got {spec!r}")
    unknown = sorted(set(spec) - {"factory", "args", *extra_keys})
    if unknown:
        raise RunConfigError(f"{key}: unknown keys {unknown}; expected {', '.join(['factory', 'args', *extra_keys])}")
    module_name, _, attr = spec["factory"].partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise RunConfigError(f"{key}.factory {spec['factory']!r} cannot be imported ({err})") from None
    args = spec.get("args") or {}
    if not isinstance(args, Mapping):
        raise RunConfigError(f"{key}.args must be a mapping, got {args!r}")
    return fn, dict(args)


def validate(config: Mapping[str, Any]) -> dict:
    """The config with defaults filled in; :class:`RunConfigError` names the first bad key."""
    unknown = sorted(set(config) - set(KEYS))
    if unknown:
        raise RunConfigError(f"unknown config keys {unknown}; valid keys: {', '.join(KEYS)}")
    c = {"family_args": {}, "teacher": None, "student": None, "schedule": None, "recipe": None, "epochs": None,
         "optimizer": {}, "evaluate": None, "seed": 0, "device": "cpu", "mixed_precision": None, "world_size": None,
         **copy.deepcopy(dict(config))}
    for key in ("family", "data"):
        if c.get(key) is None:
            raise RunConfigError(f"the config needs {key!r}")
    if not isinstance(c["family_args"], Mapping):
        raise RunConfigError(f"family_args must be a mapping, got {c['family_args']!r}")
    for who in ("teacher", "student"):
        spec = c[who]
        if spec is None:
            continue
        if not isinstance(spec, Mapping) or len(set(spec) & {"width", "checkpoint"}) != 1 or set(spec) - {"width", "checkpoint"}:
            raise RunConfigError(f"{who} must be {{width: ...}} or {{checkpoint: PATH}}, got {spec!r}")
    if c["teacher"] is None and c["student"] is None:
        raise RunConfigError("the config needs a teacher, a student, or both")
    if (c["schedule"] is None) == (c["recipe"] is None):
        raise RunConfigError("give exactly one of 'schedule' (a preset name, {file: PATH} or {stages: [...]}) and "
                             "'recipe' (a recipe name of the family)")
    if isinstance(c["schedule"], str) or c["recipe"] is not None:
        if isinstance(c["epochs"], bool) or not isinstance(c["epochs"], int) or c["epochs"] < 1:
            raise RunConfigError(f"epochs (per stage) must be an integer >= 1 for a preset or a recipe, got {c['epochs']!r}")
    if c["mixed_precision"] not in (None, "bf16", "fp16"):
        raise RunConfigError(f"mixed_precision must be null, bf16 or fp16, got {c['mixed_precision']!r}")
    if not isinstance(c["device"], str) or not c["device"]:
        raise RunConfigError(f"device must be a torch device name (cpu, cuda, cuda:N), got {c['device']!r}")
    if isinstance(c["seed"], bool) or not isinstance(c["seed"], int):
        raise RunConfigError(f"seed must be an integer, got {c['seed']!r}")
    if not isinstance(c["optimizer"], Mapping):
        raise RunConfigError(f"optimizer must be a mapping of OptimizerConfig fields, got {c['optimizer']!r}")
    if c["world_size"] is not None and (isinstance(c["world_size"], bool) or not isinstance(c["world_size"], int)
                                        or c["world_size"] < 1):
        raise RunConfigError(f"world_size must be an integer >= 1 (the process count a run config.yaml records), "
                             f"got {c['world_size']!r}")
    if isinstance(c["evaluate"], Mapping) and "every" in c["evaluate"]:
        every = c["evaluate"]["every"]
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise RunConfigError(f"evaluate.every must be an integer >= 1 (epochs between evaluations), got {every!r}")
    return c


def build_schedule(c: Mapping[str, Any], hooks: GANHooks) -> Schedule:
    """The validated config's schedule: preset, file, inline stages, or the family's recipe."""
    try:
        optimizer = OptimizerConfig(**c["optimizer"])
        if c["recipe"] is not None:
            return hooks.recipe(c["recipe"]).schedule(c["epochs"], optimizer)
        spec = c["schedule"]
        if isinstance(spec, str):
            return get_schedule(spec, c["epochs"], optimizer)
        if isinstance(spec, Mapping) and set(spec) == {"file"}:
            return Schedule.load(spec["file"])
        if isinstance(spec, Mapping) and "stages" in spec:
            return Schedule.from_dict(dict(spec))
    except (KeyError, TypeError, ValueError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        raise RunConfigError(f"schedule: {message}") from None
    raise RunConfigError(f"schedule must be a preset name, {{file: PATH}} or {{stages: [...]}}, got {spec!r}")


# --- checks before the first write (each a named step of :func:`prepare`) ----------------------------------------

def check_runtime(c: Mapping[str, Any]) -> torch.device:
    """The config's device, if this machine can compute on it, and its mixed precision, if supported there."""
    try:
        device = check_device(c["device"])
        check_precision(c["mixed_precision"], device)
    except ValueError as err:
        raise RunConfigError(str(err)) from None
    return device


def build_hooks(c: Mapping[str, Any]) -> GANHooks:
    """The family's hooks from ``family`` and ``family_args``."""
    try:
        return resolve_family(c["family"])(**c["family_args"])
    except TypeError as err:
        raise RunConfigError(f"family_args {c['family_args']}: {err}") from None
    except ValueError as err:
        raise RunConfigError(f"family_args {c['family_args']}: {err}" if c["family_args"] else str(err)) from None


def check_factory_args(fn: Callable[..., Any], args: Mapping[str, Any], key: str, *leading: str) -> None:
    """Refuse arguments ``fn`` does not take (a typo in ``data.args``) before calling it; ``leading`` names the
    positional arguments the run passes itself (``hooks, teacher, student`` for ``evaluate``)."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin without signature: let the call tell
        return
    try:
        signature.bind(*leading, **args)
    except TypeError as err:
        takes = [n for n in signature.parameters if n not in leading]
        raise RunConfigError(f"{key}.args {dict(args)}: {err} (the factory {fn.__module__}:{fn.__qualname__} "
                             f"takes {', '.join(takes) or 'no arguments'})") from None


def build_data(c: Mapping[str, Any]) -> Any:
    """The training batches of the ``data`` factory (given ``seed`` when it takes one and the config omits it)."""
    data_fn, data_args = _callable(c["data"], "data")
    if "seed" in _parameters(data_fn) and "seed" not in data_args:
        data_args["seed"] = c["seed"]
    check_factory_args(data_fn, data_args, "data")
    try:
        return data_fn(**data_args)
    except (ValueError, KeyError, TypeError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        raise RunConfigError(f"data ({c['data']['factory']}, args {data_args}): {message}") from None


def _parameters(fn: Callable[..., Any]) -> Mapping[str, Any]:
    try:
        return inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return {}


def first_batch(batches: Any) -> Any:
    """The first batch, leaving the batches (their ``state_dict``) and the global RNG as they were."""
    state = copy.deepcopy(batches.state_dict()) if hasattr(batches, "state_dict") else None
    with torch.random.fork_rng(devices=[]):
        try:
            batch = next(iter(batches))
        except StopIteration:
            raise RunConfigError("data: the factory's batches are empty: give it some training data") from None
        finally:
            if state is not None:
                batches.load_state_dict(state)
    return batch


def network_widths(c: Mapping[str, Any]) -> Any:
    """``{role: width}`` of every network the config names; the width of a checkpoint is its header's, read
    after refusing a student file given as the teacher and weights with NaN/Inf."""
    widths = {}
    for role in ("teacher", "student"):
        spec = c[role]
        if spec is None:
            continue
        if "width" in spec:
            widths[role] = spec["width"]
            continue
        header, state_dict = read_model(spec["checkpoint"])
        if role == "teacher" and header.get("role") != "teacher":
            raise CheckpointError(f"{str(spec['checkpoint'])!r} holds a {header.get('role')} model; a teacher is "
                                  "expected here")
        check_finite_weights(state_dict, f"{role}.checkpoint {str(spec['checkpoint'])!r}")
        widths[role] = header["width"]
    return widths


def check_finite_weights(state_dict: Mapping[str, Any], what: str) -> None:
    """Refuse weights with NaN/Inf (a diverged run): every loss computed from them would be NaN."""
    bad = [k for k, v in state_dict.items()
           if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"{what} has NaN/Inf weights in {len(bad)} tensor(s) (the first: {bad[0]}): the run "
                              "that wrote it diverged; use an earlier checkpoint or train it again")


def check_networks(c: Mapping[str, Any], hooks: GANHooks, schedule: Schedule, widths: Mapping[str, Any], batch: Any,
                   device: torch.device) -> MemoryEstimate:
    """Build each network on the meta device and run it on ``batch`` (widths the family cannot build, networks
    that do not fit the data), then refuse a run that cannot fit in the device's memory; allocates nothing."""
    networks = {role: (width, f"{role}.width" if "width" in c[role] else f"{role}.checkpoint's width",
                       schedule.trains(role))
                for role, width in widths.items()}
    try:
        return check_fits(hooks, networks, batch, device, "teacher.width, student.width or the batch size (data.args)")
    except ValueError as err:
        raise RunConfigError(str(err)) from None


def check_fits(hooks: GANHooks, networks: Mapping[str, tuple[Any, str, bool]], batch: Any, device: torch.device,
               settings: str) -> MemoryEstimate:
    """The memory a run of ``networks`` (``{role: (width, the setting that names it, trained?)}``) needs for
    ``batch``, from shapes on the meta device; :class:`gankd.resources.ResourceError` (naming ``settings``) when it
    cannot fit on ``device``, :class:`ValueError` when the family cannot build a width or its generator cannot
    take the batch. Allocates nothing: any family's front calls it before building its networks."""
    estimate = MemoryEstimate()
    for role, (width, what, trains) in networks.items():
        needs = probe_network(hooks, width, batch, what)
        if needs is not None:
            estimate.add_network(role, needs, trains=trains)
    estimate.parts["batch"] = _batch_bytes(batch)
    check_memory(estimate, device, settings)
    return estimate


def _batch_bytes(batch: Any) -> int:
    if isinstance(batch, torch.Tensor):
        return batch.numel() * batch.element_size()
    if isinstance(batch, (list, tuple)):
        return sum(_batch_bytes(b) for b in batch)
    if isinstance(batch, Mapping):
        return sum(_batch_bytes(b) for b in batch.values())
    return 0


def build_evaluate(c: Mapping[str, Any], hooks: GANHooks, teacher: GAN | None, student: GAN | None) -> Any:
    """The per-epoch metric function of the ``evaluate`` factory, or None."""
    if c["evaluate"] is None:
        return None
    eval_fn, eval_args = _callable(c["evaluate"], "evaluate", extra_keys=("every",))
    check_factory_args(eval_fn, eval_args, "evaluate", "hooks", "teacher", "student")
    try:
        return eval_fn(hooks, teacher, student, **eval_args)
    except (ValueError, KeyError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        raise RunConfigError(f"evaluate ({c['evaluate']['factory']}, args {eval_args}): {message}") from None


# --- the run -------------------------------------------------------------------------------------------------------

def _build(hooks: GANHooks, spec: Mapping[str, Any] | None, seed: int, role: str) -> GAN | None:
    if spec is None:
        return None
    if "checkpoint" in spec:
        gan, _ = load_model(spec["checkpoint"], hooks, role=role if role == "teacher" else None)
        return gan
    with torch.random.fork_rng(devices=[]):  # each network's init depends on its own seed only
        torch.manual_seed(seed)
        return hooks.build_gan(spec["width"])


def prepare(config: Mapping[str, Any], *, rank: int = 0, world_size: int = 1) -> dict:
    """Everything a run needs, built and checked before its folder is touched: the config's keys and values, the
    device and precision, the family, the schedule (optimizer settings), the data (factory arguments), the
    teacher's file, the networks against the data and the memory they need, then the networks themselves.
    With ``world_size`` > 1 the batches are this ``rank``'s shards of the factory's global batches."""
    c = validate(config)
    if c["world_size"] is not None and c["world_size"] != world_size:
        raise RunConfigError(f"world_size {c['world_size']} in the config, but this launch has {world_size} "
                             f"process(es): launch with torchrun --nproc_per_node {c['world_size']}, or drop the key")
    c["world_size"] = world_size
    device = check_runtime(c)
    hooks = build_hooks(c)
    schedule = build_schedule(c, hooks)
    seed_everything(c["seed"])
    batches = build_data(c)
    if world_size > 1:
        batches = ShardedBatches(batches, rank, world_size)
    widths = network_widths(c)
    estimate = check_networks(c, hooks, schedule, widths, first_batch(batches), device)
    teacher = _build(hooks, c["teacher"], c["seed"], "teacher")
    student = _build(hooks, c["student"], c["seed"] + 1, "student")
    metric_fn = build_evaluate(c, hooks, teacher, student)
    return {"config": c, "hooks": hooks, "schedule": schedule, "teacher": teacher, "student": student,
            "batches": batches, "metric_fn": metric_fn, "memory_estimate": estimate, "widths": widths}


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op thread count (None: leave it) and return the count in use. Bit-identical resume needs
    the same count as the interrupted run: reductions split differently over threads round differently."""
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise RunConfigError(f"threads must be an integer >= 1, got {threads!r}")
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def train(config: Mapping[str, Any], out_dir: str | Path, *, resume: bool = False, overwrite: bool = False,
          verbose: bool = True, threads: int | None = None) -> dict:
    """Run ``config`` in ``out_dir``; returns the run record (also written to ``record.json``).

    Nothing is written before every check of :func:`prepare` has passed; with ``overwrite`` the folder's old
    run stays intact until the new one has written its first checkpoint (:meth:`RunFolder.begin_overwrite`).
    ``threads`` sets torch's thread count (recorded; a resume with another count is warned about). Under
    ``torchrun`` every process calls this; rank 0 alone holds the folder lock and writes."""
    set_threads(threads)
    rank, world_size, device = init_distributed(config.get("device", "cpu") if isinstance(config, Mapping) else "cpu")
    folder = RunFolder(out_dir, RUN_FILES)
    folder.check(resume=resume, overwrite=overwrite)
    run = prepare(config, rank=rank, world_size=world_size)  # everything is checked before the folder is touched
    run.update(rank=rank, device=device)
    with rank0_folder(folder, resume, overwrite, rank, world_size):  # checked again under the lock
        return _train(run, folder, resume, overwrite, verbose)


class _SwapInAfterFirstCheckpoint(Callback):
    """After the first epoch's checkpoint of an ``--overwrite`` run, the new run replaces the old one; the
    callbacks that write files write into the run's own folder from then on."""

    main_process_only = True

    def __init__(self, folder: RunFolder, writers: Sequence[Any]) -> None:
        self.folder, self.writers = folder, writers

    def on_epoch_end(self, engine, state, record) -> None:
        if self.folder.target == self.folder.path:
            return
        self.folder.commit_overwrite()
        for writer in self.writers:
            writer.path = self.folder.path / writer.path.name


def resume_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """:func:`key_differences` of two resolved configs, refusing first, with its own message, a checkpoint written
    by another number of processes (each process's batch shard, and so every step, depends on it)."""
    saved_world, world = saved.get("world_size") or 1, current.get("world_size") or 1
    if saved_world != world:
        raise RunFolderError(f"cannot resume: the checkpoint was written by {saved_world} process(es) and this launch "
                             f"has {world}; resume with torchrun --nproc_per_node {saved_world} (or "
                             f"{'plain gankd train' if saved_world == 1 else 'the same nodes x processes'}), "
                             "or start afresh with --overwrite")
    return key_differences({k: v for k, v in saved.items() if k != "world_size"},
                           {k: v for k, v in current.items() if k != "world_size"})


def _warn_on_thread_change(ckpt: Mapping[str, Any] | None, threads: int) -> None:
    """Say on stderr when a resume runs with another torch thread count than the checkpoint's run."""
    saved = ((ckpt or {}).get("metadata") or {}).get("torch_threads")
    if saved is not None and saved != threads:
        print(f"gankd: warning: resuming with {threads} torch thread(s) where the interrupted run used {saved}: the "
              f"run goes on, but will not end bit-identical to an uninterrupted one (pass --threads {saved} for that)",
              file=sys.stderr, flush=True)


def fit_in_folder(folder: RunFolder | None, hooks: GANHooks, teacher: GAN | None, student: GAN | None,
                  schedule: Schedule, batches: Any, *, config: Mapping[str, Any], resume: bool = False,
                  overwrite: bool = False,
                  differences: Callable[[Mapping[str, Any], Mapping[str, Any]], list[str]] = resume_differences,
                  metric_fn: Callable[[DistillationEngine], dict[str, float]] | None = None, evaluate_every: int = 1,
                  extra_writers: Callable[[Path], Sequence[Callback]] | None = None,
                  callbacks: Sequence[Callback] = (), verbose: bool = True, log_prefix: str = "",
                  device: Any = "cpu", mixed_precision: str | None = None, engine_options: Mapping[str, Any] | None = None,
                  producer: str = "gankd.run.train", main_process: bool = True,
                  ) -> tuple[DistillationEngine, list[dict], dict | None]:
    """The one training loop of every run, ``gankd train``'s and every family front's (GANomaly's ``teacher`` /
    ``distill`` and its sweep): returns ``(engine, history, the checkpoint resumed from or None)``.

    With a ``folder`` (whose lock the caller holds): a resume refuses a checkpoint whose ``metadata["config"]``
    differs from ``config`` (``differences`` names the values); ``overwrite`` builds the new run beside the old one
    and swaps it in after its first checkpoint; ``config.yaml`` (``config`` as YAML), ``history.json`` and
    ``checkpoint.pt`` are written every epoch, plus the ``extra_writers(folder)`` callbacks (e.g. a CSV log).
    Without one, nothing is written. ``metric_fn`` runs every ``evaluate_every`` epochs and at each stage's end;
    ``callbacks`` run after the built-in ones. The checkpoint's metadata holds ``config``, ``producer`` and the
    torch thread count (a resume with another count is warned about). Under DDP only ``main_process`` writes."""
    import yaml

    threads = torch.get_num_threads()
    ckpt = folder.checkpoint_to_resume(config, differences) if folder is not None and resume else None
    if main_process:
        _warn_on_thread_change(ckpt, threads)
    all_callbacks: list[Callback] = []
    if metric_fn is not None:
        all_callbacks.append(EvaluationCallback(metric_fn, every=evaluate_every))
    if folder is not None:
        out = folder.begin_overwrite() if overwrite and main_process else folder.path
        if main_process:
            atomic_write_text(out / "config.yaml", yaml.safe_dump(json.loads(json.dumps(config)), sort_keys=False))
        writers = [JSONHistory(out / "history.json"), *(extra_writers(out) if extra_writers else ()),
                   CheckpointCallback(out / CHECKPOINT)]  # the checkpoint last: it holds the epoch's metrics
        all_callbacks += [*writers, _SwapInAfterFirstCheckpoint(folder, [w for w in writers if hasattr(w, "path")])]
    if verbose:
        all_callbacks.append(auto_progress(prefix=log_prefix))
    all_callbacks += list(callbacks)
    engine = DistillationEngine(hooks, teacher, student, device=device, callbacks=all_callbacks,
                                mixed_precision=mixed_precision, **(engine_options or {}),
                                metadata={"config": config, "producer": producer, "torch_threads": threads})
    history = engine.fit(schedule, batches, resume=ckpt)
    return engine, history, ckpt


def _train(run: dict, folder: RunFolder, resume: bool, overwrite: bool, verbose: bool) -> dict:
    c, schedule, main = run["config"], run["schedule"], run["rank"] == 0
    resolved = json.loads(json.dumps({**c, "schedule": schedule.to_dict()}))  # plain data, as files hold it
    if resolved["world_size"] == 1:
        del resolved["world_size"]  # a one-process run's config, as before torchrun support
    every = (c["evaluate"] or {}).get("every", 1)
    start = time.perf_counter()
    engine, history, ckpt = fit_in_folder(
        folder, run["hooks"], run["teacher"], run["student"], schedule, run["batches"], config=resolved,
        resume=resume, overwrite=overwrite, metric_fn=run["metric_fn"], evaluate_every=every, verbose=verbose,
        device=run["device"], mixed_precision=c["mixed_precision"], main_process=main)
    out = folder.path
    role = "student" if schedule.needs_student else "teacher"
    record = {"family": c["family"], "recipe": c["recipe"], "schedule": schedule.to_dict(), "role": role,
              "seed": c["seed"], "metrics": history[-1]["metrics"], "losses": history[-1]["losses"],
              "resumed_from_epoch": ckpt["global_epoch"] if ckpt is not None else None,
              "world_size": c["world_size"], "torch_threads": torch.get_num_threads(),
              "wall_s": time.perf_counter() - start, "history": history}
    if not main:
        return record
    save = dict(family=c["family"], family_args=c["family_args"], metadata={"config": resolved})
    trained = engine.student if role == "student" else engine.teacher
    save_model(out / "model.pt", trained, width=run["widths"][role], role=role, **save)
    if role == "student" and schedule.trains("teacher"):  # reusable: `teacher: {checkpoint: DIR/teacher.pt}`
        save_model(out / "teacher.pt", engine.teacher, width=run["widths"]["teacher"], role="teacher", **save)
        record["teacher_model"] = str(out / "teacher.pt")
    atomic_write_text(out / "record.json", json.dumps(record, indent=1) + "\n")
    atomic_write_text(out / "history.json", json.dumps(history, indent=1) + "\n")
    return record
