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
    evaluate: {factory: mypkg.points:metrics, args: {}}     # optional: factory(hooks, teacher, student, **args)
    seed: 0                                #   returns metric_fn(engine) -> {name: float}, run every epoch
    device: cpu
    mixed_precision: null                  # or bf16 (CPU, CUDA), fp16 (CUDA): autocast forwards and losses

The folder gets ``config.yaml`` (the resolved config), ``checkpoint.pt`` (every epoch, atomically),
``history.json``, ``record.json`` and ``model.pt`` (:mod:`gankd.modelfile`). ``resume=True`` continues from
the checkpoint and refuses one written with a different config; a kill at any point loses at most the epoch
in progress, and the resumed run ends bit-identical to an uninterrupted one.
"""
from __future__ import annotations

import copy
import importlib
import inspect
import json
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from .callbacks import CheckpointCallback, EvaluationCallback, JSONHistory, auto_progress
from .engine import DistillationEngine
from .hooks import GAN, GANHooks
from .modelfile import load_model, resolve_family, save_model
from .schedule import OptimizerConfig, Schedule, get_schedule
from .runfolder import RunFolder
from .utils import atomic_write_text, seed_everything

KEYS = ("family", "family_args", "data", "teacher", "student", "schedule", "recipe", "epochs", "optimizer",
        "evaluate", "seed", "device", "mixed_precision")
RUN_FILES = ("config.yaml", "checkpoint.pt", "history.json", "record.json", "model.pt")


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
    if isinstance(data.get("schedule"), Mapping) and "file" in data["schedule"]:
        schedule_file = Path(data["schedule"]["file"])  # relative to the config file
        data["schedule"] = {"file": str(schedule_file if schedule_file.is_absolute() else path.parent / schedule_file)}
    return data


def apply_overrides(config: Mapping[str, Any], assignments: Sequence[str]) -> dict:
    """``KEY=VALUE`` overrides, values parsed as YAML; dots reach into mappings (``student.width=8``)."""
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
        target = result
        for part in path[:-1]:
            if not isinstance(target.get(part), dict):
                target[part] = {}
            target = target[part]
        target[path[-1]] = value
    return result


def _callable(spec: Any, key: str) -> tuple[Callable[..., Any], dict]:
    if not isinstance(spec, Mapping) or not isinstance(spec.get("factory"), str) or ":" not in spec["factory"]:
        raise RunConfigError(f"{key} must be {{factory: 'package.module:function', args: {{...}}}}, got {spec!r}")
    unknown = sorted(set(spec) - {"factory", "args"})
    if unknown:
        raise RunConfigError(f"{key}: unknown keys {unknown}; expected factory, args")
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
         "optimizer": {}, "evaluate": None, "seed": 0, "device": "cpu", "mixed_precision": None,
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
    if isinstance(c["seed"], bool) or not isinstance(c["seed"], int):
        raise RunConfigError(f"seed must be an integer, got {c['seed']!r}")
    if not isinstance(c["optimizer"], Mapping):
        raise RunConfigError(f"optimizer must be a mapping of OptimizerConfig fields, got {c['optimizer']!r}")
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


def prepare(config: Mapping[str, Any]) -> dict:
    """Everything a run needs, built and checked before its folder is touched."""
    c = validate(config)
    try:
        hooks = resolve_family(c["family"])(**c["family_args"])
    except TypeError as err:
        raise RunConfigError(f"family_args {c['family_args']}: {err}") from None
    except ValueError as err:
        raise RunConfigError(str(err)) from None
    schedule = build_schedule(c, hooks)
    seed_everything(c["seed"])
    teacher = _build(hooks, c["teacher"], c["seed"], "teacher")
    student = _build(hooks, c["student"], c["seed"] + 1, "student")
    data_fn, data_args = _callable(c["data"], "data")
    if "seed" in inspect.signature(data_fn).parameters and "seed" not in data_args:
        data_args["seed"] = c["seed"]
    batches = data_fn(**data_args)
    metric_fn = None
    if c["evaluate"] is not None:
        eval_fn, eval_args = _callable(c["evaluate"], "evaluate")
        metric_fn = eval_fn(hooks, teacher, student, **eval_args)
    return {"config": c, "hooks": hooks, "schedule": schedule, "teacher": teacher, "student": student,
            "batches": batches, "metric_fn": metric_fn}


def train(config: Mapping[str, Any], out_dir: str | Path, *, resume: bool = False, overwrite: bool = False,
          verbose: bool = True) -> dict:
    """Run ``config`` in ``out_dir``; returns the run record (also written to ``record.json``)."""
    folder = RunFolder(out_dir, RUN_FILES)
    folder.check(resume=resume, overwrite=overwrite)
    run = prepare(config)  # everything is checked before the folder is touched
    with folder:
        folder.check(resume=resume, overwrite=overwrite)  # again, under the lock
        return _train(run, folder, resume, overwrite, verbose)


def _train(run: dict, folder: RunFolder, resume: bool, overwrite: bool, verbose: bool) -> dict:
    c, schedule, out = run["config"], run["schedule"], folder.path
    resolved = json.loads(json.dumps({**c, "schedule": schedule.to_dict()}))  # plain data, as files hold it
    if overwrite:
        folder.clear()
    ckpt = folder.checkpoint_to_resume(resolved) if resume else None
    ckpt_path = folder.checkpoint
    import yaml

    atomic_write_text(out / "config.yaml", yaml.safe_dump(resolved, sort_keys=False))
    callbacks: list = []
    if run["metric_fn"] is not None:
        callbacks.append(EvaluationCallback(run["metric_fn"]))
    callbacks += [JSONHistory(out / "history.json"), CheckpointCallback(ckpt_path)]
    if verbose:
        callbacks.append(auto_progress())
    engine = DistillationEngine(run["hooks"], run["teacher"], run["student"], device=c["device"], callbacks=callbacks,
                                mixed_precision=c["mixed_precision"],
                                metadata={"config": resolved, "producer": "gankd.run.train"})
    start = time.perf_counter()
    history = engine.fit(schedule, run["batches"], resume=ckpt)
    role = "student" if schedule.needs_student else "teacher"
    trained = engine.student if role == "student" else engine.teacher
    width = (c[role] or {}).get("width")
    if width is None:  # started from a checkpoint: keep the width its file names
        from .modelfile import read_model

        width = read_model(c[role]["checkpoint"])[0]["width"]
    save_model(out / "model.pt", trained, family=c["family"], family_args=c["family_args"], width=width, role=role,
               metadata={"config": resolved})
    record = {"family": c["family"], "recipe": c["recipe"], "schedule": schedule.to_dict(), "role": role,
              "seed": c["seed"], "metrics": history[-1]["metrics"], "losses": history[-1]["losses"],
              "resumed_from_epoch": ckpt["global_epoch"] if ckpt is not None else None,
              "wall_s": time.perf_counter() - start, "history": history}
    atomic_write_text(out / "record.json", json.dumps(record, indent=1) + "\n")
    atomic_write_text(out / "history.json", json.dumps(history, indent=1) + "\n")
    return record
