"""A resumable sweep reproducing the paper's Tables 2-4 and Figure 2: dataset x normal class x method x seed.

Every finished run writes one JSON record, atomically, to
``OUT/records/{dataset}/{class}/{method}/seed{seed}.json``; a re-run skips every record already there, so a sweep
that was stopped resumes where it stopped. Students distil from the teacher trained for the same dataset, class
and seed under the same budget: it is trained once and kept at ``OUT/teachers/{dataset}_c{class}_s{seed}_{budget}.pt``
(written with :func:`gankd.save_checkpoint`, read with :func:`gankd.load_checkpoint` + :func:`gankd.load_weights`).

Budgets (:data:`BUDGETS`) fix epochs, batch size, learning rate, evaluation frequency and an optional deterministic
train subsample; each record names its budget and carries the budget's full definition. AUROC is always that of
the LAST epoch (never the best), on the whole test split unless the budget says otherwise (then the record says so).

Methods are the GAN methods of :data:`gankd_ganomaly.experiment.METHODS` plus the baselines ``ocsvm`` and ``kde``
(:mod:`gankd_ganomaly.baselines`), which are deterministic and so run once per class (recorded as ``seed0``).

CIFAR-10 provenance: a root made by :func:`prepare_cifar10_from_jpeg` (or ``to_batches.py`` by hand, recognised by
its file names) is the JPEG-recompressed copy: records get ``lossy_cifar10_jpeg: true``. :func:`prepare_cifar10_subset`
writes the exact 4000/1000-image subset, or the same images decoded from the JPEG copy, to measure what the JPEG
copy does to AUROC on identical images.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import pickle
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch

import gankd

from .baselines import BASELINES, run_baseline
from .data import CHANNELS, CLASS_NAMES, DATASETS, OneClassData, load_one_class
from .experiment import EXECUTION_FIELDS, METHODS, SWEEP_TEACHER_FORMAT, RunConfig, run
from .hooks import GanomalyHooks

RECORD_FORMAT = "gankd-reproduce-record"
TEACHER_FORMAT = SWEEP_TEACHER_FORMAT
# Controls: a method run with other GANomaly loss weights, recorded under its own name. The reconstruction
# control is the student alone with w_con raised by the weight the recommended recipe gives K's l1(x_hat) term:
# it tells how much of that recipe's gain is the extra reconstruction pressure rather than the teacher.
CONTROL_METHODS: dict[str, tuple[str, dict[str, float]]] = {
    "student-alone-wcon40": ("student-alone", {"w_con": 40.0}),
}
SWEEP_METHODS: tuple[str, ...] = (*METHODS, *CONTROL_METHODS, *BASELINES)
# The methods of the paper's Tables 3-4 and Figure 2 (P-KDGAN-I is KDGAN-2 and is not run twice).
PAPER_METHODS: tuple[str, ...] = ("teacher", "student-alone", "KDGAN-1", "KDGAN-2", "KDGAN-3", "KDGAN-4",
                                  "P-KDGAN-II-23", "P-KDGAN-II-24")
# The paper's Figure 2: automobile (CIFAR-10), 5 (MNIST), bag (Fashion-MNIST); digits mirrors MNIST.
FIGURE2_CLASSES: dict[str, int] = {"cifar10": 1, "mnist": 5, "fmnist": 8, "digits": 5}

LOSSY_MARKER = "LOSSY_JPEG_COPY"
SOURCE_MARKER = "GANKD_SOURCE.json"
CIFAR_DIR = "cifar-10-batches-py"
_TO_BATCHES_NAME = re.compile(r"^(data_batch_[1-5]|test_batch)_\d{5}\.png$")  # file names to_batches.py writes


class SweepError(RuntimeError):
    """The sweep cannot go on safely: e.g. the output folder holds records of another budget."""


@dataclass(frozen=True)
class Budget:
    """How much training one run gets. ``student_epochs`` is per stage (the paper's M).

    ``max_train_images``: keep only the first N normal-class training images, in file order (deterministic, the
    same for every seed and method); ``None`` keeps all. ``max_test_images``: ``None`` = the whole test split (the
    default of every preset); else a deterministic subsample, evenly spaced within normal and within novel images.
    ``teacher_eval_every`` / ``student_eval_every``: test AUROC every N epochs (always at each stage's last epoch).
    """

    name: str
    teacher_epochs: int
    student_epochs: int
    batch_size: int
    lr: float
    teacher_eval_every: int
    student_eval_every: int
    max_train_images: int | None = None
    max_test_images: int | None = None
    description: str = ""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def epochs(self, method: str) -> int:
        return self.teacher_epochs if method == "teacher" else self.student_epochs

    def eval_every(self, method: str) -> int:
        return self.teacher_eval_every if method == "teacher" else self.student_eval_every


BUDGETS: dict[str, Budget] = {
    "paper": Budget(
        "paper", teacher_epochs=500, student_epochs=500, batch_size=1, lr=0.002, teacher_eval_every=1,
        student_eval_every=1,
        description="what the paper states: Adam lr 0.002, batch 1, 500 epochs (per stage), every normal-class "
                    "training image, whole test split, AUROC every epoch. A GPU job: on one CPU core a single "
                    "MNIST teacher would take weeks."),
    "cpu": Budget(
        "cpu", teacher_epochs=8, student_epochs=10, batch_size=32, lr=0.0002, teacher_eval_every=8,
        student_eval_every=1, max_train_images=500,
        description="a small budget for one CPU core: the first 500 normal-class training images (file order), "
                    "teacher 8 epochs, students 10 epochs per stage (3 epochs, 48 steps, left students in the early "
                    "phase where AUROC is inverted), batch 32, Adam lr 0.0002 (GANomaly's default: at batch 16-32 "
                    "the paper's batch-1 lr 0.002 inverted the AUROC of digits teachers for their first ~10 epochs, "
                    "while 0.0002 trained stably; measured on digits, which is not in this grid); whole test split; "
                    "teacher AUROC only after its last epoch (a full-test teacher evaluation costs ~15-25 s on one "
                    "core), student AUROC every epoch. About 6 minutes per class for teacher, student-alone and "
                    "P-KDGAN-II-23 on one core; the whole required grid needs several core-hours."),
    "full-data": Budget(
        "full-data", teacher_epochs=8, student_epochs=5, batch_size=32, lr=0.0002, teacher_eval_every=1,
        student_eval_every=1,
        description="every normal-class training image (about 5,000-6,000, 11-12x the cpu budget), teacher 8 "
                    "epochs (about 43,000 image-steps, 11x the cpu budget's 4,000: in results/gap_study.json the "
                    "MNIST 8 teacher went from 0.744 at 4,000 steps to 0.90-0.91 at 12,000-16,000, so 8 epochs "
                    "of all images reach the flat part), students 5 epochs per stage (27,000 steps, 5x the cpu "
                    "budget), batch 32, Adam lr 0.0002, whole test split, AUROC after every epoch of every run so "
                    "that the curve shows whether it flattened. About 35 minutes per (class, seed) for teacher, "
                    "student-alone, recommended and P-KDGAN-II-23 on one core."),
    "smoke": Budget(
        "smoke", teacher_epochs=1, student_epochs=1, batch_size=32, lr=0.002, teacher_eval_every=1,
        student_eval_every=1, max_train_images=64,
        description="plumbing check only (tests): 1 epoch per stage on the first 64 training images; its AUROC "
                    "figures mean nothing."),
}

# Rough single-core cost per training image and epoch (ms, teacher 64-128-256, batch 32, measured on a shared
# 2-core machine) and per test image and evaluation; only used to print an ETA.
_TRAIN_MS = {"teacher": 20.0, "student-alone": 1.2, "KDGAN-1": 3.5, "KDGAN-2": 4.0, "KDGAN-3": 20.0,
             "KDGAN-4": 22.0}
_EVAL_MS = {"teacher": 2.5, "student": 0.25}
_TYPICAL_TRAIN = {"digits": 125, "mnist": 6000, "fmnist": 6000, "cifar10": 5000}
_TYPICAL_TEST = {"digits": 540, "mnist": 10000, "fmnist": 10000, "cifar10": 10000}


def get_budget(budget: str | Budget) -> Budget:
    if isinstance(budget, Budget):
        return budget
    if budget not in BUDGETS:
        raise ValueError(f"budget must be one of {', '.join(BUDGETS)}; got {budget!r}")
    return BUDGETS[budget]


# --- paths ----------------------------------------------------------------------------------------------------


def record_path(out_dir: str | Path, dataset: str, normal_class: int, method: str, seed: int) -> Path:
    return Path(out_dir) / "records" / dataset / str(normal_class) / method / f"seed{seed}.json"


def teacher_path(out_dir: str | Path, dataset: str, normal_class: int, seed: int, budget: str) -> Path:
    return Path(out_dir) / "teachers" / f"{dataset}_c{normal_class}_s{seed}_{budget}.pt"


# --- CIFAR-10 preparation and provenance ----------------------------------------------------------------------


def _write_python_batches(dest: Path, train: np.ndarray, train_labels: np.ndarray, test: np.ndarray,
                          test_labels: np.ndarray, stem: str) -> None:
    """Official python layout: data_batch_1..5 (train split in five parts), test_batch, batches.meta."""
    dest.mkdir(parents=True, exist_ok=True)
    parts = [(f"data_batch_{i + 1}", d, lab) for i, (d, lab) in
             enumerate(zip(np.array_split(train, 5), np.array_split(train_labels, 5)))]
    parts.append(("test_batch", test, test_labels))
    for name, data, labels in parts:
        batch = {b"batch_label": name.encode(), b"labels": [int(x) for x in labels],
                 b"data": np.ascontiguousarray(data, dtype=np.uint8),
                 b"filenames": [f"{stem}_{name}_{i:05d}".encode() for i in range(len(data))]}
        gankd.atomic_write_bytes(dest / name, pickle.dumps(batch, protocol=2))
    names = [n.encode() for n in CLASS_NAMES["cifar10"]]
    gankd.atomic_write_bytes(dest / "batches.meta", pickle.dumps(
        {b"label_names": names, b"num_cases_per_batch": int(np.ceil(len(train) / 5)), b"num_vis": 3072}, protocol=2))


def _write_markers(dest: Path, variant: str, lossy: bool, made_from: str, train: int, test: int, note: str) -> None:
    info = {"variant": variant, "lossy_jpeg": lossy, "made_from": made_from, "train_images": train,
            "test_images": test, "note": note, "made_by": f"gankd_ganomaly.sweep ({gankd.__version__})",
            "made_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    gankd.atomic_write_text(dest / SOURCE_MARKER, json.dumps(info, indent=1) + "\n")
    if lossy:
        gankd.atomic_write_text(dest / LOSSY_MARKER, "These CIFAR-10 batches were decoded from a JPEG-recompressed "
                                "copy (quality ~75): pixels are NOT the original ones. Label every figure "
                                f"measured on them as such.\nSource: {made_from}\n")
    else:
        (dest / LOSSY_MARKER).unlink(missing_ok=True)


def prepare_cifar10_from_jpeg(out_root: str | Path, jpeg_dir: str | Path, *, python: str | None = None) -> Path:
    """Decode the JPEG-recompressed CIFAR-10 copy into ``out_root/cifar-10-batches-py`` (official python layout).

    ``jpeg_dir`` is the folder holding ``to_batches.py`` and ``cifar10_jpeg.npz``; its script is run in a
    subprocess (about half a minute). Then writes the markers ``LOSSY_JPEG_COPY`` and ``GANKD_SOURCE.json`` beside
    the batches, so every sweep record made from this root says its pixels are lossy. Returns the batches folder.
    """
    jpeg_dir, out_root = Path(jpeg_dir), Path(out_root)
    script = jpeg_dir / "to_batches.py"
    if not script.is_file():
        raise FileNotFoundError(f"{script} not found: give the folder that holds to_batches.py and cifar10_jpeg.npz")
    out_root.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([python or sys.executable, str(script), str(out_root)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{script} failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    dest = out_root / CIFAR_DIR
    _write_markers(dest, "jpeg-full", True, str(jpeg_dir.resolve()), 50000, 10000,
                   "full CIFAR-10 decoded from the JPEG-recompressed copy; split and labels are the original ones")
    return dest


def _decode_jpegs(blob: np.ndarray, offsets: np.ndarray, count: int) -> np.ndarray:
    import io

    from PIL import Image

    out = np.empty((count, 3072), dtype=np.uint8)
    for i in range(count):
        with Image.open(io.BytesIO(blob[offsets[i]:offsets[i + 1]].tobytes())) as img:
            out[i] = np.asarray(img.convert("RGB"), dtype=np.uint8).transpose(2, 0, 1).reshape(-1)
    return out


def prepare_cifar10_subset(out_root: str | Path, partial_npz: str | Path, *,
                           jpeg_npz: str | Path | None = None) -> Path:
    """Write the exact CIFAR-10 subset (the first 4000 training and first 1000 test images) in the python layout.

    ``partial_npz`` is ``cifar10_partial.npz`` (exact pixels). With ``jpeg_npz`` (``cifar10_jpeg.npz``) the SAME
    images are taken from the JPEG-recompressed copy instead (labels are checked to match), marked lossy: sweeping
    both roots measures how much the JPEG copy moves AUROC on identical images. Returns the batches folder.
    """
    part = np.load(partial_npz)
    train_labels, test_labels = np.asarray(part["train_labels"]), np.asarray(part["test_labels"])
    n_train, n_test = len(train_labels), len(test_labels)
    dest = Path(out_root) / CIFAR_DIR
    if jpeg_npz is None:
        train, test = np.asarray(part["train_data"]), np.asarray(part["test_data"])
        variant, lossy, made_from = "exact-subset", False, str(Path(partial_npz).resolve())
        note = (f"exact pixels: the first {n_train} CIFAR-10 training images and the first {n_test} test images "
                "(a subset, not the full dataset)")
    else:
        src = np.load(jpeg_npz)
        if not (np.array_equal(np.asarray(src["train_labels"][:n_train]), train_labels)
                and np.array_equal(np.asarray(src["test_labels"][:n_test]), test_labels)):
            raise ValueError(f"{jpeg_npz}: its first {n_train}/{n_test} labels differ from {partial_npz}'s; "
                             "they are not the same images")
        train = _decode_jpegs(src["train_jpeg"], src["train_offsets"], n_train)
        test = _decode_jpegs(src["test_jpeg"], src["test_offsets"], n_test)
        variant, lossy, made_from = "jpeg-subset", True, str(Path(jpeg_npz).resolve())
        note = (f"the same {n_train}/{n_test} images as the exact subset, decoded from the JPEG-recompressed copy "
                "(lossy pixels)")
    _write_python_batches(dest, train, train_labels, test, test_labels, variant)
    _write_markers(dest, variant, lossy, made_from, n_train, n_test, note)
    return dest


def _resolve_root(root: str | Path | None) -> Path:
    if root is None:
        root = os.environ.get("GANKD_DATA_ROOT") or Path.home() / ".cache" / "gankd" / "data"
    return Path(root).expanduser()


def cifar10_provenance(root: str | Path | None, cifar_jpeg: bool = False) -> dict:
    """What a CIFAR-10 root holds: ``{"cifar10_variant", "lossy_cifar10_jpeg", "cifar10_marker"}``.

    Variants: ``official`` (exact original batches, as far as can be told), ``jpeg-full``, ``exact-subset``,
    ``jpeg-subset``. Lossy when a marker says so, when the test batch carries the file names ``to_batches.py``
    writes, or when ``cifar_jpeg`` (the ``--cifar-jpeg`` flag) says so.
    """
    dest = _resolve_root(root) / CIFAR_DIR
    marker: dict | None = None
    if (dest / SOURCE_MARKER).is_file():
        marker = json.loads((dest / SOURCE_MARKER).read_text())
        variant, lossy = marker.get("variant", "unknown"), bool(marker.get("lossy_jpeg"))
    elif (dest / LOSSY_MARKER).is_file():
        variant, lossy = "jpeg-full", True
    elif _made_by_to_batches(dest / "test_batch"):
        variant, lossy = "jpeg-full", True
    else:
        variant, lossy = "official", False
    if cifar_jpeg and not lossy:
        variant, lossy = "jpeg-full", True
    return {"cifar10_variant": variant, "lossy_cifar10_jpeg": lossy, "cifar10_marker": marker}


def _made_by_to_batches(path: Path) -> bool:
    """True when a CIFAR test batch carries the file names the JPEG copy's to_batches.py writes."""
    if not path.is_file():
        return False
    try:
        from .data import _ArrayOnlyUnpickler  # the allow-list unpickler: a crafted file cannot run code

        with path.open("rb") as f:
            batch = _ArrayOnlyUnpickler(f, encoding="latin1").load()
        names = batch.get(b"filenames", batch.get("filenames")) if isinstance(batch, dict) else None
        first = names[0] if names else b""
        first = first.decode("latin1") if isinstance(first, bytes) else str(first)
        return bool(_TO_BATCHES_NAME.match(first))
    except Exception:  # unreadable here: the loader will raise its own, better, error
        return False


# --- data -----------------------------------------------------------------------------------------------------


def _subsample_test(labels: torch.Tensor, limit: int) -> torch.Tensor:
    """Indices of ``limit`` test images: evenly spaced within normal and within novel images, proportionally."""
    idx = []
    n = len(labels)
    for value in (0, 1):
        group = (labels == value).nonzero().flatten()
        k = max(1, round(limit * len(group) / n))
        pick = np.unique(np.linspace(0, len(group) - 1, min(k, len(group))).round().astype(np.int64))
        idx.append(group[torch.from_numpy(pick)])
    return torch.cat(idx).sort().values


def prepare_data(data: OneClassData, budget: Budget) -> tuple[OneClassData, dict]:
    """Apply the budget's deterministic subsampling; returns the data and what was done (for the records)."""
    info: dict[str, Any] = {"train_images_available": int(len(data.train)),
                            "test_images_available": int(len(data.test))}
    train = data.train
    if budget.max_train_images is not None and len(train) > budget.max_train_images:
        train = train[:budget.max_train_images]
        info["train_subsample"] = (f"first {budget.max_train_images} of {len(data.train)} normal-class training "
                                   "images, in file order (the same for every method and seed)")
    else:
        info["train_subsample"] = None
    test, labels = data.test, data.test_labels
    if budget.max_test_images is not None and len(test) > budget.max_test_images:
        keep = _subsample_test(labels, budget.max_test_images)
        test, labels = test[keep], labels[keep]
        info["test_subsample"] = (f"{len(keep)} of {len(data.test)} test images, evenly spaced within normal and "
                                  "within novel images (deterministic)")
    else:
        info["test_subsample"] = None
    info["train_images"], info["test_images"] = int(len(train)), int(len(test))
    info["test_normal_images"] = int((labels == 0).sum())
    return dataclasses.replace(data, train=train, test=test, test_labels=labels), info


# --- the sweep --------------------------------------------------------------------------------------------------


@dataclass
class _Job:
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
    return f"{dataset} class {c} ({CLASS_NAMES[dataset][c]}) seed {seed} {method}"


def method_config(method: str, budget: Budget, **fields: Any) -> RunConfig:
    """The run config of a sweep method (a control runs its base method with its loss weights)."""
    base, weights = CONTROL_METHODS.get(method, (method, {}))
    return RunConfig(method=base, epochs=budget.epochs(base), batch_size=budget.batch_size, lr=budget.lr,
                     eval_every=budget.eval_every(base), loss_weights=weights, **fields)


def _estimate_ms(dataset: str, method: str, budget: Budget) -> float:
    n = _TYPICAL_TRAIN[dataset] if budget.max_train_images is None else min(budget.max_train_images,
                                                                           _TYPICAL_TRAIN[dataset])
    t = _TYPICAL_TEST[dataset] if budget.max_test_images is None else min(budget.max_test_images,
                                                                         _TYPICAL_TEST[dataset])
    if method in BASELINES:
        return 1e3 + 6.0 * n if method == "ocsvm" else 2e3 + 12.0 * n
    schedule = method_config(method, budget).schedule()
    ms = sum(_TRAIN_MS.get(s.structure.name, 17.0) * s.epochs * n for s in schedule.stages)
    evals = sum(-(-s.epochs // budget.eval_every(method)) for s in schedule.stages)
    return ms + evals * t * _EVAL_MS["teacher" if method == "teacher" else "student"]


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
    gankd.save_checkpoint(path, {
        "format": TEACHER_FORMAT, "format_version": 1, "version": gankd.__version__, "budget": budget.name,
        "budget_spec": budget.to_dict(), "config": _teacher_config(cfg),
        "state_dict": {k: v.detach().cpu() for k, v in gan.state_dict().items()},
        "record_json": json.dumps(record),
    })


def _load_teacher(path: Path, cfg: RunConfig, budget: Budget) -> tuple[gankd.GAN, dict]:
    payload = gankd.load_checkpoint(path)
    if not isinstance(payload, dict) or payload.get("format") != TEACHER_FORMAT:
        raise SweepError(f"{path} is not a teacher checkpoint written by this sweep")
    _check_budget(str(path), payload.get("budget"), payload.get("budget_spec"), budget)
    saved, wanted = payload.get("config") or {}, _teacher_config(cfg)
    differ = sorted(k for k in set(saved) & set(wanted) if saved[k] != wanted[k])  # fields added later: ignored
    if differ or not saved:
        changes = "; ".join(f"{k}: {saved[k]!r} -> {wanted[k]!r}" for k in differ) or "no config saved"
        raise SweepError(f"{path} was trained with another config ({changes}). Delete it or use another --out "
                         "folder")
    gan = GanomalyHooks(in_channels=CHANNELS[cfg.dataset], weights=cfg.loss_weights).build_gan(cfg.teacher_widths)
    gankd.load_weights(gan, payload["state_dict"], what=f"teacher ({path})")
    return gan, json.loads(payload["record_json"])


def run_sweep(
    datasets: Sequence[str],
    classes: Sequence[int] | Mapping[str, Sequence[int]] | None,
    methods: Sequence[str],
    seeds: Sequence[int],
    budget: str | Budget,
    out_dir: str | Path,
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
    """
    budget = get_budget(budget)
    out = Path(out_dir)
    say = log or (lambda line: print(line, file=sys.stderr, flush=True))
    if threads:
        torch.set_num_threads(int(threads))
    for d in datasets:
        if d not in DATASETS:
            raise ValueError(f"dataset must be one of {', '.join(DATASETS)}; got {d!r}")
    for m in methods:
        if m not in SWEEP_METHODS:
            raise ValueError(f"method must be one of {', '.join(SWEEP_METHODS)}; got {m!r}")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("give at least one seed")

    def classes_of(dataset: str) -> list[int]:
        chosen = classes.get(dataset, []) if isinstance(classes, Mapping) else classes
        if isinstance(chosen, (int, np.integer)):
            chosen = [chosen]
        class_list = list(range(10)) if chosen is None else [int(c) for c in chosen]
        for c in class_list:
            if not 0 <= c < 10:
                raise ValueError(f"normal classes are 0..9; got {c}")
        return class_list

    for d in datasets:
        classes_of(d)
    summary = SweepSummary(out_dir=str(out), budget=budget.name)

    # --- plan: every record that is missing, plus teachers that must be trained for pending students -----------
    jobs: list[_Job] = []
    for dataset in datasets:
        for c in classes_of(dataset):
            for method in methods:
                if method in BASELINES:
                    path = record_path(out, dataset, c, method, 0)
                    existing = _read_record(path) if path.is_file() else None
                    if existing is not None:
                        _check_budget(str(path), existing.get("budget"), existing.get("budget_spec"), budget)
                        summary.skipped.append(str(path))
                    else:
                        jobs.append(_Job(dataset, c, 0, method))
            for seed in seeds:
                pending = []
                for method in methods:
                    if method in BASELINES:
                        continue
                    path = record_path(out, dataset, c, method, seed)
                    existing = _read_record(path) if path.is_file() else None
                    if existing is not None:
                        _check_budget(str(path), existing.get("budget"), existing.get("budget_spec"), budget)
                        summary.skipped.append(str(path))
                    else:
                        pending.append(method)
                needs_teacher = any(m != "teacher" and method_config(m, budget).schedule().needs_teacher
                                    for m in pending)
                has_ckpt = teacher_path(out, dataset, c, seed, budget.name).is_file()
                teacher_file = record_path(out, dataset, c, "teacher", seed)
                teacher_record = _read_record(teacher_file) if teacher_file.is_file() else None
                teacher_failed = teacher_record is not None and teacher_record.get("status") == "failed"
                if existing_teachers and not has_ckpt:
                    # another process trains the teachers: leave students whose teacher is not there yet
                    pending = [m for m in pending if m != "teacher" and not method_config(m, budget).schedule().needs_teacher]
                elif "teacher" in pending or (needs_teacher and not has_ckpt and not teacher_failed):
                    pending = ["teacher", *[m for m in pending if m != "teacher"]]
                jobs.extend(_Job(dataset, c, seed, m) for m in pending)
    for job in jobs:
        job.est_ms = _estimate_ms(job.dataset, job.method, budget)
        if job.method == "teacher" and teacher_path(out, job.dataset, job.normal_class, job.seed,
                                                    budget.name).is_file():
            job.est_ms = 0.0  # only its record is rewritten from the checkpoint
    total_est = sum(j.est_ms for j in jobs) or 1.0
    say(f"sweep: budget {budget.name}, {len(jobs)} run(s) to do, {len(summary.skipped)} record(s) already there "
        f"(skipped), out {out}; rough ETA {_fmt_s(total_est / 1e3)} on one core")
    if dry_run:
        for i, job in enumerate(jobs, 1):
            say(f"[{i}/{len(jobs)}] would run {_label(job.dataset, job.normal_class, job.seed, job.method)} "
                f"(~{_fmt_s(job.est_ms / 1e3)})")
        return summary

    start = time.perf_counter()
    done_est = 0.0
    data_cache: dict[tuple[str, int], tuple[OneClassData, dict]] = {}
    teachers: dict[tuple[str, int, int], gankd.GAN | None] = {}
    teacher_records: dict[tuple[str, int, int], dict] = {}

    def data_for(dataset: str, c: int) -> tuple[OneClassData, dict]:
        key = (dataset, c)
        if key not in data_cache:
            data_cache.clear()  # one class in memory at a time
            root = cifar_root if (dataset == "cifar10" and cifar_root is not None) else data_root
            raw = load_one_class(dataset, c, root=root)
            data, info = prepare_data(raw, budget)
            info["data_root"] = None if dataset == "digits" else str(_resolve_root(root))
            info["data_source"] = raw.source
            info["lossy_cifar10_jpeg"] = False
            if dataset == "cifar10":
                info.update(cifar10_provenance(root, cifar_jpeg))
                if info["lossy_cifar10_jpeg"]:
                    info["data_source"] = f"{raw.source} (JPEG-recompressed copy of CIFAR-10: lossy pixels)"
            data_cache[key] = (data, info)
        return data_cache[key]

    def base_record(job: _Job, data: OneClassData, info: dict) -> dict:
        return {"record_format": RECORD_FORMAT, "record_format_version": 1, "status": "ok",
                "budget": budget.name, "budget_spec": budget.to_dict(), "command": command,
                "device": device, "torch_threads": torch.get_num_threads(),
                "finished_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "dataset": job.dataset, "normal_class": job.normal_class, "class_name": data.class_name,
                "method": job.method, "seed": job.seed, **info}

    def cfg_for(job: _Job, info: dict) -> RunConfig:
        return method_config(job.method, budget, dataset=job.dataset, normal_class=job.normal_class, seed=job.seed,
                             bn_mode=bn_mode, data_root=info.get("data_root"), device=device)

    def write(job: _Job, record: dict) -> Path:
        path = record_path(out, job.dataset, job.normal_class, job.method, job.seed)
        gankd.atomic_write_text(path, json.dumps(record, indent=1) + "\n")
        summary.ran.append(str(path))
        if on_record is not None:
            on_record(path, record)
        return path

    for i, job in enumerate(jobs, 1):
        tag = f"[{i:>{len(str(len(jobs)))}}/{len(jobs)}]"
        label = _label(job.dataset, job.normal_class, job.seed, job.method)
        tkey = (job.dataset, job.normal_class, job.seed)
        say(f"{tag} start {label} (budget {budget.name})")
        t0 = time.perf_counter()
        data, info = data_for(job.dataset, job.normal_class)
        if job.method in BASELINES:
            result = run_baseline(job.method, data.train, data.test, data.test_labels)
            record = {**base_record(job, data, info), "auroc_last": result["auroc"], "auroc_per_epoch": [],
                      "hyperparameters": result["hyperparameters"], "schedule": None, "epochs_per_stage": [],
                      "batch_size": None, "lr": None, "bn_mode_at_test": None, "params": None, "flops": None,
                      "wall_s": result["fit_s"], "version": gankd.__version__,
                      "config": {"baseline": job.method, **result["hyperparameters"]},
                      "note": "deterministic: run once per class, recorded as seed 0"}
            write(job, record)
            status = f"AUROC {record['auroc_last']:.4f}"
        else:
            cfg = cfg_for(job, info)
            tfile = teacher_path(out, job.dataset, job.normal_class, job.seed, budget.name)
            teacher = None
            extra: dict[str, Any] = {}
            if job.method == "teacher" and tfile.is_file():
                # killed after the checkpoint was written but before the record: the checkpoint carries it
                teachers[tkey], teacher_records[tkey] = _load_teacher(tfile, cfg, budget)
                write(job, teacher_records[tkey])
                done_est += job.est_ms
                say(f"{tag} done  {label}: record restored from {tfile.name} "
                    f"(AUROC(last) {teacher_records[tkey]['auroc_last']:.4f})")
                continue
            if job.method != "teacher" and cfg.schedule().needs_teacher:
                if tkey not in teachers:
                    teachers[tkey] = None
                    if tfile.is_file():
                        teachers[tkey], teacher_records[tkey] = _load_teacher(
                            tfile, cfg_for(_Job(job.dataset, job.normal_class, job.seed, "teacher"), info), budget)
                teacher = teachers[tkey]
                if teacher is None:
                    summary.blocked.append(label)
                    say(f"{tag} skip  {label}: its teacher failed or is missing")
                    done_est += job.est_ms
                    continue
                extra["teacher_checkpoint"] = str(tfile.relative_to(out))
                extra["teacher_auroc_last"] = teacher_records.get(tkey, {}).get("auroc_last")
            try:
                record, trained = run(cfg, data, teacher, verbose=epoch_log, log_prefix=f"[{job.method}] ")
            except (gankd.NonFiniteLossError, FloatingPointError) as err:
                record = {**base_record(job, data, info), "status": "failed", "error": f"{type(err).__name__}: {err}",
                          "auroc_last": None, "auroc_per_epoch": [], "config": cfg.to_dict(),
                          "version": gankd.__version__, "wall_s": time.perf_counter() - t0, **extra}
                write(job, record)
                summary.failed.append(label)
                if job.method == "teacher":
                    teachers[tkey] = None
                say(f"{tag} FAILED {label}: {record['error']}")
                done_est += job.est_ms
                continue
            record = {**base_record(job, data, info), **record, **extra, "method": job.method,
                      "data_source": info["data_source"],
                      "epochs_per_stage": [s["epochs"] for s in record["schedule"]["stages"]]}
            if job.method == "teacher":
                record["teacher_checkpoint"] = str(tfile.relative_to(out))
                _save_teacher(tfile, trained, cfg, budget, record)  # checkpoint first: it also carries the record
                teachers[tkey], teacher_records[tkey] = trained, record
            write(job, record)
            status = f"AUROC(last) {record['auroc_last']:.4f}"
        done_est += job.est_ms
        elapsed = time.perf_counter() - start
        remaining = total_est - done_est
        eta = elapsed / done_est * remaining if done_est > 0 else float("nan")
        say(f"{tag} done  {label}: {status} in {time.perf_counter() - t0:.1f}s | elapsed {_fmt_s(elapsed)}, "
            f"ETA {_fmt_s(eta) if eta == eta else '?'}")
    summary.wall_s = time.perf_counter() - start
    say(f"sweep: {len(summary.ran)} record(s) written, {len(summary.skipped)} skipped, {len(summary.failed)} failed, "
        f"{len(summary.blocked)} blocked, in {_fmt_s(summary.wall_s)}")
    return summary


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
