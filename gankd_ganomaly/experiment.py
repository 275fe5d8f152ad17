"""Train a teacher or distil a student for one dataset/normal class: the glue the CLI,
the demo and the examples share. Every result carries its resolved config."""
from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence

import torch

import gankd
from gankd import GAN, DistillationEngine, EvaluationCallback, OptimizerConfig, ProgressLogger, get_schedule

from .data import CHANNELS, OneClassData, ShuffledBatches
from .evaluation import BN_MODES, evaluate_auroc
from .flops import count_generator
from .hooks import GanomalyHooks, GanomalyLossWeights
from .networks import STUDENT_WIDTHS, TEACHER_WIDTHS

# digits are MNIST-like grayscale digits: their student is the MNIST one.
DEFAULT_STUDENT = {"digits": STUDENT_WIDTHS["mnist"], **STUDENT_WIDTHS}
METHODS = ("teacher", "student-alone", "KDGAN-1", "KDGAN-2", "KDGAN-3", "KDGAN-4",
           "P-KDGAN-I", "P-KDGAN-II-23", "P-KDGAN-II-24")


@dataclass
class RunConfig:
    """Everything that determines one run; written next to every result."""

    dataset: str = "digits"
    normal_class: int = 0
    method: str = "P-KDGAN-II-23"
    epochs: int = 15                     # per stage (the paper's M)
    batch_size: int = 16
    lr: float = 0.002
    beta1: float = 0.5
    seed: int = 0
    bn_mode: str = "eval"                # batch-norm at test time: "eval" or "batch"
    eval_batch_size: int = 256
    eval_every: int = 1
    teacher_widths: tuple[int, int, int] = TEACHER_WIDTHS
    student_widths: tuple[int, int, int] | None = None  # None: the dataset's preset
    loss_weights: GanomalyLossWeights = field(default_factory=GanomalyLossWeights)
    data_root: str | None = None
    download: bool = False
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}; got {self.method!r}")
        if self.bn_mode not in BN_MODES:
            raise ValueError(f"bn_mode must be one of {BN_MODES}, got {self.bn_mode!r}")
        for name in ("epochs", "batch_size", "eval_batch_size", "eval_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if isinstance(self.loss_weights, dict):
            self.loss_weights = GanomalyLossWeights(**self.loss_weights)
        self.teacher_widths = tuple(self.teacher_widths)  # type: ignore[assignment]
        if self.student_widths is None:
            self.student_widths = DEFAULT_STUDENT.get(self.dataset, STUDENT_WIDTHS["mnist"])
        self.student_widths = tuple(self.student_widths)  # type: ignore[assignment]

    def replace(self, **changes: Any) -> "RunConfig":
        return RunConfig(**{**self.to_dict(), **changes})

    def to_dict(self) -> dict:
        d = asdict(self)
        d["teacher_widths"], d["student_widths"] = list(self.teacher_widths), list(self.student_widths or ())
        return d

    @classmethod
    def from_dict(cls, data: dict) -> "RunConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"RunConfig: unknown keys {sorted(unknown)}; known: {sorted(known)}")
        return cls(**data)

    def schedule(self) -> gankd.Schedule:
        return get_schedule(self.method, self.epochs, OptimizerConfig(lr=self.lr, betas=(self.beta1, 0.999)))


def make_hooks(cfg: RunConfig) -> GanomalyHooks:
    return GanomalyHooks(in_channels=CHANNELS[cfg.dataset], weights=cfg.loss_weights)


def build_gan(hooks: GanomalyHooks, widths: Sequence[int], seed: int) -> GAN:
    """Networks initialised from ``seed`` so teacher and student inits are reproducible on their own."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return hooks.build_gan(widths)


def run(cfg: RunConfig, data: OneClassData, teacher: GAN | None = None, *, verbose: bool = True,
        log_prefix: str = "") -> tuple[dict, GAN]:
    """Execute ``cfg.method`` on ``data``; returns (result record, the trained GAN).

    For a student method, ``teacher`` is a trained teacher; it is deep-copied, so stages
    that fine-tune the teacher (KDGAN-3/4) never change the caller's model. AUROC is
    measured on the test split every ``eval_every`` epochs and at each stage's end; the
    reported ``auroc_last`` is the last epoch's, never the best.
    """
    hooks = make_hooks(cfg)
    schedule = cfg.schedule()
    is_teacher_run = cfg.method == "teacher"
    if schedule.needs_teacher and not is_teacher_run and teacher is None:
        raise ValueError(f"method {cfg.method!r} distils from a teacher: pass a trained teacher GAN")
    if is_teacher_run:
        trained = build_gan(hooks, cfg.teacher_widths, cfg.seed)
        engine_teacher, engine_student = trained, None
    else:
        trained = build_gan(hooks, cfg.student_widths, cfg.seed + 1)
        engine_teacher = copy.deepcopy(teacher) if schedule.needs_teacher else None
        engine_student = trained

    def metrics(engine: DistillationEngine) -> dict[str, float]:
        return {"auroc": evaluate_auroc(hooks, trained, data.test, data.test_labels,
                                        batch_size=cfg.eval_batch_size, bn_mode=cfg.bn_mode)}

    callbacks: list[gankd.Callback] = [EvaluationCallback(metrics, every=cfg.eval_every)]
    if verbose:
        callbacks.append(ProgressLogger(prefix=log_prefix))
    engine = DistillationEngine(hooks, engine_teacher, engine_student, device=cfg.device, callbacks=callbacks)
    batches = ShuffledBatches(data.train, cfg.batch_size, seed=cfg.seed)
    start = time.perf_counter()
    history = engine.fit(schedule, batches)
    wall_s = time.perf_counter() - start
    counts = count_generator(CHANNELS[cfg.dataset], cfg.teacher_widths if is_teacher_run else cfg.student_widths)
    record = {
        "dataset": cfg.dataset, "normal_class": cfg.normal_class, "class_name": data.class_name,
        "method": cfg.method, "seed": cfg.seed, "schedule": schedule.to_dict(),
        "batch_size": cfg.batch_size, "lr": cfg.lr, "bn_mode_at_test": cfg.bn_mode,
        "auroc_last": history[-1]["metrics"]["auroc"],
        "auroc_per_epoch": [h["metrics"].get("auroc") for h in history],
        "params": counts["params"], "flops": counts["flops"], "wall_s": wall_s,
        "discriminator_resets": hooks.discriminator_resets, "data_source": data.source,
        "version": gankd.__version__, "config": cfg.to_dict(), "history": history,
    }
    return record, trained


def save_json(path: str | Path, obj: Any) -> None:
    gankd.atomic_write_text(path, json.dumps(obj, indent=1) + "\n")
