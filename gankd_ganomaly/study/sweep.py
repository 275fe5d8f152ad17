"""A resumable sweep reproducing the paper's Tables 2-4 and Figure 2: dataset x normal class x method x seed.

Every finished run writes one JSON record, atomically, to
``OUT/records/{dataset}/{class}/{method}/seed{seed}.json``; a re-run skips every record already there, so a sweep
that was stopped resumes where it stopped. Students distil from the teacher trained for the same dataset, class
and seed under the same budget: it is trained once and kept at ``OUT/teachers/{dataset}_c{class}_s{seed}_{budget}.pt``
as a gankd model file (:func:`gankd_ganomaly.experiment.save_model`) whose metadata holds the budget and the
teacher's record; teachers written in the earlier `gankd-reproduce-teacher` format are still read.

Budgets (:data:`gankd_ganomaly.study.budgets.BUDGETS`) fix epochs, batch size, learning rate, evaluation frequency and an optional deterministic
train subsample; each record names its budget and carries the budget's full definition. AUROC is always that of
the LAST epoch (never the best), on the whole test split unless the budget says otherwise (then the record says so).

Methods are the GAN methods of :data:`gankd_ganomaly.experiment.METHODS` plus the baselines ``ocsvm`` and ``kde``
(:mod:`gankd_ganomaly.evaluation.baselines`), which are deterministic and so run once per class (recorded as ``seed0``).

CIFAR-10 records carry the provenance of their root (:func:`gankd_ganomaly.data.cifar_prep.cifar10_provenance`):
a JPEG-recompressed copy is recorded as lossy.
"""
from __future__ import annotations

import datetime as _dt
import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch

import gankd
import gankd.modelfile

from ..data import DATASETS, OneClassData, dataset_spec, load_one_class
from ..data.builtin import resolve_root
from ..data.cifar_prep import cifar10_provenance
from ..evaluation.baselines import BASELINES, run_baseline
from ..experiment import EXECUTION_FIELDS, METHODS, RunConfig, read_model_file, run, save_model
from ..hooks import RECIPES, GanomalyHooks
from .budgets import EVAL_MS, TRAIN_MS, TYPICAL_TEST, TYPICAL_TRAIN, Budget, get_budget, prepare_data

RECORD_FORMAT = "gankd-reproduce-record"


@dataclass(frozen=True)
class Control:
    """A sweep method that is no recipe: ``base`` (a run method) with other GANomaly loss weights, or, with
    ``teacherless_of``, that recipe's schedule without the teacher (:func:`gankd.teacherless`: its optimizer
    settings and width rule, the student alone) at ``lr_factor`` x the student's learning rates."""

    base: str = "student-alone"
    weights: Mapping[str, float] = field(default_factory=dict)
    teacherless_of: str | None = None
    lr_factor: float = 1.0

    def schedule(self, name: str, cfg: RunConfig) -> gankd.Schedule:
        if self.teacherless_of is None:
            return cfg.schedule()
        optimizer = gankd.OptimizerConfig(lr=cfg.lr, betas=(cfg.beta1, 0.999))
        return gankd.teacherless(RECIPES[self.teacherless_of].schedule(cfg.epochs, optimizer), name,
                                 lr_factor=self.lr_factor, reference=list(cfg.teacher_widths))


# The global factor of the tuned control: the best of {0.5, 1, 2} x the width rule's rates for the student
# alone on development runs only (Figure-2 classes at seeds 100-101, results/width_rule_probe.json: mean AUROC
# 0.7253, 0.7336, 0.6717; docs/distillation.md).
TUNED_LR_FACTOR = 1.0
# Controls, each recorded under its own name. The reconstruction control is the student alone with w_con raised
# by the weight the recommended recipe gives K's l1(x_hat) term (how much of that recipe's gain is the extra
# reconstruction pressure); the teacherless ones run a recipe's learning rates without its teacher, the tuned one
# also tuned over global factors on development runs: what the teacher adds is the difference.
CONTROL_METHODS: dict[str, Control] = {
    "student-alone-wcon40": Control(weights={"w_con": 40.0}),
    "student-alone-fast": Control(teacherless_of="reconstruction-fast"),
    "student-alone-tuned": Control(teacherless_of="recommended", lr_factor=TUNED_LR_FACTOR),
}
SWEEP_METHODS: tuple[str, ...] = (*METHODS, *CONTROL_METHODS, *BASELINES)
# The methods of the paper's Tables 3-4 and Figure 2 (P-KDGAN-I is KDGAN-2 and is not run twice).
PAPER_METHODS: tuple[str, ...] = ("teacher", "student-alone", "KDGAN-1", "KDGAN-2", "KDGAN-3", "KDGAN-4",
                                  "P-KDGAN-II-23", "P-KDGAN-II-24")
# The paper's Figure 2: automobile (CIFAR-10), 5 (MNIST), bag (Fashion-MNIST); digits mirrors MNIST.
FIGURE2_CLASSES: dict[str, int] = {"cifar10": 1, "mnist": 5, "fmnist": 8, "digits": 5}



class SweepError(RuntimeError):
    """The sweep cannot go on safely: e.g. the output folder holds records of another budget."""


# --- paths ----------------------------------------------------------------------------------------------------


def record_path(out_dir: str | Path, dataset: str, normal_class: int, method: str, seed: int) -> Path:
    return Path(out_dir) / "records" / dataset / str(normal_class) / method / f"seed{seed}.json"


def teacher_path(out_dir: str | Path, dataset: str, normal_class: int, seed: int, budget: str) -> Path:
    return Path(out_dir) / "teachers" / f"{dataset}_c{normal_class}_s{seed}_{budget}.pt"


# --- the sweep --------------------------------------------------------------------------------------------------


@dataclass
class SweepJob:
    """One run of a sweep's grid: a (dataset, normal class, seed, method), with a rough time estimate."""

    dataset: str
    normal_class: int
    seed: int
    method: str
    est_ms: float = 0.0


@dataclass
class SweepSummary:
    """What a :func:`run_sweep` call did: records written (``ran``), found (``skipped``), and runs not possible."""

    out_dir: str
    budget: str
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    wall_s: float = 0.0


def _label(dataset: str, c: int, seed: int, method: str) -> str:
    return f"{dataset} class {c} ({dataset_spec(dataset).class_names[c]}) seed {seed} {method}"


def method_config(method: str, budget: Budget, **fields: Any) -> RunConfig:
    """The run config of a sweep method (a control runs its base method with its loss weights)."""
    control = CONTROL_METHODS.get(method)
    base, weights = (control.base, dict(control.weights)) if control else (method, {})
    return RunConfig(method=base, epochs=budget.epochs(base), batch_size=budget.batch_size, lr=budget.lr,
                     eval_every=budget.eval_every(base), loss_weights=weights, **fields)


def method_schedule(method: str, cfg: RunConfig) -> gankd.Schedule:
    """What a sweep method runs: its config's schedule, or its control's."""
    control = CONTROL_METHODS.get(method)
    return control.schedule(method, cfg) if control is not None else cfg.schedule()


def recipe_fields(method: str) -> dict[str, Any]:
    """``recipe``, ``recipe_version`` and ``control_of`` of a sweep method's records (None where not one)."""
    control = CONTROL_METHODS.get(method)
    of = control.teacherless_of if control is not None else None
    recipe = None if control is not None else RunConfig(method=method).recipe
    name = recipe or of
    return {"recipe": recipe, "recipe_version": RECIPES[name].version if name else None, "control_of": of}


def _estimate_ms(dataset: str, method: str, budget: Budget) -> float:
    n = TYPICAL_TRAIN[dataset] if budget.max_train_images is None else min(budget.max_train_images,
                                                                           TYPICAL_TRAIN[dataset])
    t = TYPICAL_TEST[dataset] if budget.max_test_images is None else min(budget.max_test_images,
                                                                         TYPICAL_TEST[dataset])
    if method in BASELINES:
        return 1e3 + 6.0 * n if method == "ocsvm" else 2e3 + 12.0 * n
    schedule = method_schedule(method, method_config(method, budget))
    ms = sum(TRAIN_MS.get(s.structure.name, 17.0) * s.epochs * n for s in schedule.stages)
    evals = sum(-(-s.epochs // budget.eval_every(method)) for s in schedule.stages)
    return ms + evals * t * EVAL_MS["teacher" if method == "teacher" else "student"]



def _fmt_s(seconds: float) -> str:
    return str(_dt.timedelta(seconds=int(max(0.0, seconds))))


def _read_record(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None  # unreadable (cannot happen with atomic writes, but then: redo the run)


def _same_budget(spec: Any, budget: Budget) -> bool:
    """Same settings (the free-text description may have been reworded)."""
    if not isinstance(spec, dict):
        return False
    return {k: v for k, v in spec.items() if k != "description"} == \
        {k: v for k, v in budget.to_dict().items() if k != "description"}


def _check_budget(where: str, budget_name: Any, spec: Any, budget: Budget) -> None:
    if budget_name != budget.name or not _same_budget(spec, budget):
        raise SweepError(f"{where} was made with budget {budget_name!r} ({spec}), not {budget.name!r} "
                         f"({budget.to_dict()}): use another --out folder for another budget")


def _teacher_config(cfg: RunConfig) -> dict:
    d = cfg.to_dict()
    for volatile in ("device", "data_root", "download", "teacher_checkpoint", *EXECUTION_FIELDS):
        d.pop(volatile, None)
    return d


def _save_teacher(path: Path, gan: gankd.GAN, cfg: RunConfig, budget: Budget, record: dict) -> None:
    """A gankd model file (so ``evaluate``, ``export`` and ``distill --teacher`` take it) whose metadata also holds
    the budget and the teacher's record (restored when its record file is missing)."""
    save_model(path, gan, cfg, config=_teacher_config(cfg),
               extra={"budget": budget.name, "budget_spec": budget.to_dict(), "record_json": json.dumps(record)})


def _load_teacher(path: Path, cfg: RunConfig, budget: Budget) -> tuple[gankd.GAN, dict]:
    """The sweep's teacher and its record, from the model file :func:`_save_teacher` wrote (or an earlier sweep
    teacher, through the model-file upgraders); refused if another budget or config trained it."""
    try:
        info, state_dict = read_model_file(path)
    except (gankd.CheckpointError, FileNotFoundError):
        raise SweepError(f"{path} is not a teacher checkpoint written by this sweep") from None
    if "record_json" not in info:
        raise SweepError(f"{path} is a model file, but not a teacher written by this sweep (it has no record)")
    _check_budget(str(path), info.get("budget"), info.get("budget_spec"), budget)
    saved, wanted = info.get("config") or {}, _teacher_config(cfg)
    differ = sorted(k for k in set(saved) & set(wanted) if saved[k] != wanted[k])  # fields added later: ignored
    if differ or not saved:
        changes = "; ".join(f"{k}: {saved[k]!r} -> {wanted[k]!r}" for k in differ) or "no config saved"
        raise SweepError(f"{path} was trained with another config ({changes}). Delete it or use another --out "
                         "folder")
    gan = GanomalyHooks(in_channels=dataset_spec(cfg.dataset).channels,
                        weights=cfg.loss_weights).build_gan(cfg.teacher_widths)
    gankd.load_weights(gan, state_dict, what=f"teacher ({path})")
    return gan, json.loads(info["record_json"])


def run_sweep(
    datasets: Sequence[str],
    classes: Sequence[int] | Mapping[str, Sequence[int]] | None,
    methods: Sequence[str],
    seeds: Sequence[int],
    budget: str | Budget = "cpu",
    out_dir: str | Path = "runs/reproduce",
    data_root: str | Path | None = None,
    device: str = "cpu",
    *,
    cifar_root: str | Path | None = None,
    cifar_jpeg: bool = False,
    threads: int | None = None,
    bn_mode: str = "eval",
    command: str | None = None,
    epoch_log: bool = False,
    log: Callable[[str], None] | None = None,
    on_record: Callable[[Path, dict], None] | None = None,
    dry_run: bool = False,
    existing_teachers: bool = False,
    shard: tuple[int, int] | None = None,
) -> SweepSummary:
    """Run every missing (dataset, class, method, seed) of the grid; see the module docstring.

    ``classes=None`` means all ten; a mapping gives each dataset its own classes (e.g.
    ``{d: [FIGURE2_CLASSES[d]] for d in datasets}``). ``data_root`` is the MNIST/Fashion-MNIST root (and
    CIFAR-10's unless ``cifar_root`` is given); ``None`` means ``$GANKD_DATA_ROOT`` / ``~/.cache/gankd/data`` as for
    :func:`gankd_ganomaly.data.load_one_class`. ``cifar_jpeg=True`` marks CIFAR-10 records lossy even without a
    marker file. ``command`` (the command line) is stored in every record. ``on_record(path, record)`` is called
    after each record is written. Runs whose loss or scores become NaN/Inf are recorded with ``status: "failed"``.
    ``dry_run=True`` only prints the runs that would be done (with a rough ETA) and returns.
    ``existing_teachers=True`` trains no teacher: students whose teacher checkpoint is missing are left for a
    later run (so one process can train teachers while another distils from those already written).
    ``shard=(k, n)`` (1 <= k <= n) keeps the k-th of n disjoint parts of the grid: its (dataset, class, seed)
    cells are numbered in grid order, whatever is already done, and cell i goes to part i mod n + 1, with its
    teacher and the students that need it; a class's baselines go with its first seed's cell. The n parts
    together are the whole grid, each run once: one part per task of a job array.
    """
    budget = get_budget(budget)
    out = Path(out_dir)
    say = log or (lambda line: print(line, file=sys.stderr, flush=True))
    if threads:
        torch.set_num_threads(int(threads))
    jobs, skipped = plan_sweep(datasets, classes, methods, seeds, budget, out, existing_teachers=existing_teachers,
                               shard=shard)
    summary = SweepSummary(out_dir=str(out), budget=budget.name, skipped=skipped)
    total_est = sum(j.est_ms for j in jobs) or 1.0
    part = f", part {shard[0]}/{shard[1]} of the grid" if shard is not None else ""
    say(f"sweep: budget {budget.name}{part}, {len(jobs)} run(s) to do, {len(summary.skipped)} record(s) already "
        f"there (skipped), out {out}; rough ETA {_fmt_s(total_est / 1e3)} on one core")
    if dry_run:
        for i, job in enumerate(jobs, 1):
            say(f"[{i}/{len(jobs)}] would run {_label(job.dataset, job.normal_class, job.seed, job.method)} "
                f"(~{_fmt_s(job.est_ms / 1e3)})")
        return summary
    runner = SweepRunner(out, budget, summary, data_root=data_root, cifar_root=cifar_root, cifar_jpeg=cifar_jpeg,
                         device=device, bn_mode=bn_mode, command=command, epoch_log=epoch_log, on_record=on_record,
                         say=say)
    start, done_est = time.perf_counter(), 0.0
    for i, job in enumerate(jobs, 1):
        tag = f"[{i:>{len(str(len(jobs)))}}/{len(jobs)}]"
        label = _label(job.dataset, job.normal_class, job.seed, job.method)
        say(f"{tag} start {label} (budget {budget.name})")
        t0 = time.perf_counter()
        status = runner.run(job)
        done_est += job.est_ms
        if status is None:  # skipped or failed: the runner said why
            continue
        elapsed = time.perf_counter() - start
        eta = elapsed / done_est * (total_est - done_est) if done_est > 0 else float("nan")
        say(f"{tag} done  {label}: {status} in {time.perf_counter() - t0:.1f}s | elapsed {_fmt_s(elapsed)}, "
            f"ETA {_fmt_s(eta) if eta == eta else '?'}")
    summary.wall_s = time.perf_counter() - start
    say(f"sweep: {len(summary.ran)} record(s) written, {len(summary.skipped)} skipped, {len(summary.failed)} failed, "
        f"{len(summary.blocked)} blocked, in {_fmt_s(summary.wall_s)}")
    return summary


def plan_sweep(datasets: Sequence[str], classes: Sequence[int] | Mapping[str, Sequence[int]] | None,
               methods: Sequence[str], seeds: Sequence[int], budget: Budget, out: Path, *,
               existing_teachers: bool = False, shard: tuple[int, int] | None = None,
               ) -> tuple[list[SweepJob], list[str]]:
    """``(jobs, records already there)``: every missing run of the grid in order, each teacher before the students
    that need it (see :func:`run_sweep` for ``existing_teachers`` and ``shard``); checks the arguments and that
    the records found were written at ``budget``. Reads only."""
    for d in datasets:
        if d not in DATASETS:
            raise ValueError(f"dataset must be one of {', '.join(DATASETS)}; got {d!r}")
    for m in methods:
        if m not in SWEEP_METHODS:
            raise ValueError(f"method must be one of {', '.join(SWEEP_METHODS)}; got {m!r}")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("give at least one seed")
    if shard is not None and not (len(shard) == 2 and 1 <= shard[0] <= shard[1]):
        raise ValueError(f"shard must be K/N with 1 <= K <= N; got {shard!r}")

    def classes_of(dataset: str) -> list[int]:
        chosen = classes.get(dataset, []) if isinstance(classes, Mapping) else classes
        if isinstance(chosen, (int, np.integer)):
            chosen = [chosen]
        class_list = list(range(10)) if chosen is None else [int(c) for c in chosen]
        for c in class_list:
            if not 0 <= c < 10:
                raise ValueError(f"normal classes are 0..9; got {c}")
        return class_list

    def in_shard(number: int) -> bool:  # the (dataset, class, seed) cell's number in grid order
        return shard is None or number % shard[1] == shard[0] - 1

    def found(path: Path) -> bool:
        existing = _read_record(path) if path.is_file() else None
        if existing is not None:
            _check_budget(str(path), existing.get("budget"), existing.get("budget_spec"), budget)
            skipped.append(str(path))
        return existing is not None

    def needs_teacher(method: str) -> bool:
        return method != "teacher" and method_schedule(method, method_config(method, budget)).needs_teacher

    for d in datasets:
        classes_of(d)
    jobs: list[SweepJob] = []
    skipped: list[str] = []
    cell = 0
    for dataset in datasets:
        for c in classes_of(dataset):
            if in_shard(cell):  # a class's baselines go with its first seed's cell
                jobs += [SweepJob(dataset, c, 0, m) for m in methods
                         if m in BASELINES and not found(record_path(out, dataset, c, m, 0))]
            for seed in seeds:
                cell += 1
                if not in_shard(cell - 1):
                    continue
                pending = [m for m in methods if m not in BASELINES
                           and not found(record_path(out, dataset, c, m, seed))]
                has_ckpt = teacher_path(out, dataset, c, seed, budget.name).is_file()
                teacher_file = record_path(out, dataset, c, "teacher", seed)
                teacher_record = _read_record(teacher_file) if teacher_file.is_file() else None
                teacher_failed = teacher_record is not None and teacher_record.get("status") == "failed"
                if existing_teachers and not has_ckpt:
                    # another process trains the teachers: leave students whose teacher is not there yet
                    pending = [m for m in pending if m != "teacher" and not needs_teacher(m)]
                elif "teacher" in pending or (any(map(needs_teacher, pending)) and not has_ckpt and not teacher_failed):
                    pending = ["teacher", *[m for m in pending if m != "teacher"]]
                jobs.extend(SweepJob(dataset, c, seed, m) for m in pending)
    for job in jobs:
        job.est_ms = _estimate_ms(job.dataset, job.method, budget)
        if job.method == "teacher" and teacher_path(out, job.dataset, job.normal_class, job.seed,
                                                    budget.name).is_file():
            job.est_ms = 0.0  # only its record is rewritten from the checkpoint
    return jobs, skipped


class SweepRunner:
    """Executes planned :class:`SweepJob` s one by one: loads each class's data once (one class in memory at a
    time), trains or restores each teacher once, runs the method through :func:`gankd_ganomaly.experiment.run`
    and writes its record atomically (``on_record(path, record)`` after each)."""

    def __init__(self, out: Path, budget: Budget, summary: SweepSummary, *, data_root: str | Path | None,
                 cifar_root: str | Path | None, cifar_jpeg: bool, device: str, bn_mode: str, command: str | None,
                 epoch_log: bool, on_record: Callable[[Path, dict], None] | None, say: Callable[[str], None]) -> None:
        self.out, self.budget, self.summary, self.say = out, budget, summary, say
        self.data_root, self.cifar_root, self.cifar_jpeg = data_root, cifar_root, cifar_jpeg
        self.device, self.bn_mode, self.command = device, bn_mode, command
        self.epoch_log, self.on_record = epoch_log, on_record
        self.data_cache: dict[tuple[str, int], tuple[OneClassData, dict]] = {}
        self.teachers: dict[tuple[str, int, int], gankd.GAN | None] = {}
        self.teacher_records: dict[tuple[str, int, int], dict] = {}

    def data_for(self, dataset: str, c: int) -> tuple[OneClassData, dict]:
        key = (dataset, c)
        if key not in self.data_cache:
            self.data_cache.clear()  # one class in memory at a time
            root = self.cifar_root if (dataset == "cifar10" and self.cifar_root is not None) else self.data_root
            raw = load_one_class(dataset, c, root=root)
            data, info = prepare_data(raw, self.budget)
            info["data_root"] = None if dataset == "digits" else str(resolve_root(root))
            info["data_source"] = raw.source
            info["lossy_cifar10_jpeg"] = False
            if dataset == "cifar10":
                info.update(cifar10_provenance(root, self.cifar_jpeg))
                if info["lossy_cifar10_jpeg"]:
                    info["data_source"] = f"{raw.source} (JPEG-recompressed copy of CIFAR-10: lossy pixels)"
            self.data_cache[key] = (data, info)
        return self.data_cache[key]

    def base_record(self, job: SweepJob, data: OneClassData, info: dict) -> dict:
        return {"record_format": RECORD_FORMAT, "record_format_version": 1, "status": "ok",
                "budget": self.budget.name, "budget_spec": self.budget.to_dict(), "command": self.command,
                "device": self.device, "torch_threads": torch.get_num_threads(),
                "finished_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "dataset": job.dataset, "normal_class": job.normal_class, "class_name": data.class_name,
                "method": job.method, "seed": job.seed, **info}

    def config(self, job: SweepJob, info: dict) -> RunConfig:
        return method_config(job.method, self.budget, dataset=job.dataset, normal_class=job.normal_class,
                             seed=job.seed, bn_mode=self.bn_mode, data_root=info.get("data_root"), device=self.device)

    def write(self, job: SweepJob, record: dict) -> Path:
        path = record_path(self.out, job.dataset, job.normal_class, job.method, job.seed)
        gankd.atomic_write_text(path, json.dumps(record, indent=1) + "\n")
        self.summary.ran.append(str(path))
        if self.on_record is not None:
            self.on_record(path, record)
        return path

    def run(self, job: SweepJob) -> str | None:
        """Run one job; returns its status line, or None when it was skipped or failed (said already)."""
        data, info = self.data_for(job.dataset, job.normal_class)
        label = _label(job.dataset, job.normal_class, job.seed, job.method)
        if job.method in BASELINES:
            return self._baseline(job, data, info)
        tkey = (job.dataset, job.normal_class, job.seed)
        tfile = teacher_path(self.out, job.dataset, job.normal_class, job.seed, self.budget.name)
        cfg = self.config(job, info)
        if job.method == "teacher" and tfile.is_file():
            # killed after the checkpoint was written but before the record: the checkpoint carries it
            self.teachers[tkey], self.teacher_records[tkey] = _load_teacher(tfile, cfg, self.budget)
            self.write(job, self.teacher_records[tkey])
            return f"record restored from {tfile.name} (AUROC(last) {self.teacher_records[tkey]['auroc_last']:.4f})"
        schedule = method_schedule(job.method, cfg)
        teacher, extra = None, {}
        if job.method != "teacher" and schedule.needs_teacher:
            teacher = self._teacher(job, info, tfile)
            if teacher is None:
                self.summary.blocked.append(label)
                self.say(f"skip  {label}: its teacher failed or is missing")
                return None
            extra = {"teacher_checkpoint": str(tfile.relative_to(self.out)),
                     "teacher_auroc_last": self.teacher_records.get(tkey, {}).get("auroc_last")}
        t0 = time.perf_counter()
        try:
            record, trained = run(cfg, data, teacher, verbose=self.epoch_log, log_prefix=f"[{job.method}] ",
                                  schedule=schedule if job.method in CONTROL_METHODS else None)
        except (gankd.NonFiniteLossError, FloatingPointError) as err:
            record = {**self.base_record(job, data, info), "status": "failed", "error": f"{type(err).__name__}: {err}",
                      "auroc_last": None, "auroc_per_epoch": [], "config": cfg.to_dict(),
                      "version": gankd.__version__, "wall_s": time.perf_counter() - t0, **extra}
            self.write(job, record)
            self.summary.failed.append(label)
            if job.method == "teacher":
                self.teachers[tkey] = None
            self.say(f"FAILED {label}: {record['error']}")
            return None
        record = {**self.base_record(job, data, info), **record, **extra, "method": job.method,
                  **recipe_fields(job.method), "data_source": info["data_source"],
                  "epochs_per_stage": [s["epochs"] for s in record["schedule"]["stages"]]}
        if job.method == "teacher":
            record["teacher_checkpoint"] = str(tfile.relative_to(self.out))
            _save_teacher(tfile, trained, cfg, self.budget, record)  # checkpoint first: it also carries the record
            self.teachers[tkey], self.teacher_records[tkey] = trained, record
        self.write(job, record)
        return f"AUROC(last) {record['auroc_last']:.4f}"

    def _teacher(self, job: SweepJob, info: dict, tfile: Path) -> gankd.GAN | None:
        """The trained teacher of the job's (dataset, class, seed): trained earlier in this sweep, or read from its
        checkpoint once; None when it failed or is missing."""
        tkey = (job.dataset, job.normal_class, job.seed)
        if tkey not in self.teachers:
            self.teachers[tkey] = None
            if tfile.is_file():
                self.teachers[tkey], self.teacher_records[tkey] = _load_teacher(
                    tfile, self.config(SweepJob(job.dataset, job.normal_class, job.seed, "teacher"), info), self.budget)
        return self.teachers[tkey]

    def _baseline(self, job: SweepJob, data: OneClassData, info: dict) -> str:
        result = run_baseline(job.method, data.train, data.test, data.test_labels)
        record = {**self.base_record(job, data, info), "auroc_last": result["auroc"], "auroc_per_epoch": [],
                  "hyperparameters": result["hyperparameters"], "schedule": None, "epochs_per_stage": [],
                  "batch_size": None, "lr": None, "bn_mode_at_test": None, "params": None, "flops": None,
                  "wall_s": result["fit_s"], "version": gankd.__version__,
                  "config": {"baseline": job.method, **result["hyperparameters"]},
                  "note": "deterministic: run once per class, recorded as seed 0"}
        self.write(job, record)
        return f"AUROC {record['auroc_last']:.4f}"


def parse_list(text: str | Sequence[Any] | None, kind: Callable[[str], Any] = str,
               all_values: Iterable[Any] | None = None) -> list | None:
    """``"a,b"`` -> ``["a", "b"]``; ``"all"`` -> ``all_values``; ``"0-9"`` ranges for integers."""
    if text is None:
        return None
    if not isinstance(text, str):
        return [kind(t) for t in text]
    if text.strip() == "all":
        return list(all_values) if all_values is not None else None
    items: list[Any] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if kind is int and re.fullmatch(r"\d+-\d+", part):
            lo, hi = map(int, part.split("-"))
            items.extend(range(lo, hi + 1))
        else:
            items.append(kind(part))
    return items
