"""Training budgets of the sweep: how many epochs, images and evaluations one run gets, and how a budget's
deterministic subsampling is applied to one-class data."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..data import OneClassData


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
    "long-teacher": Budget(
        "long-teacher", teacher_epochs=24, student_epochs=10, batch_size=32, lr=0.0002, teacher_eval_every=8,
        student_eval_every=1, max_train_images=500,
        description="the cpu budget with a teacher trained three times as long (24 epochs, 12,000 image-steps; "
                    "in results/gap_study.json this took the MNIST 8 teacher from 0.744 to 0.911, while all 6,000 "
                    "images for 8 epochs cost 3x more per epoch and gave 0.90). Students as in the cpu budget: 10 "
                    "epochs per stage on the same 500 images, AUROC every epoch. Teacher AUROC at epochs 8, 16 and "
                    "24, so that one run shows how far the teacher still rises. About 6 minutes per (class, seed) "
                    "for teacher, student-alone, student-alone-tuned and recommended on one core."),
    "smoke": Budget(
        "smoke", teacher_epochs=1, student_epochs=1, batch_size=32, lr=0.002, teacher_eval_every=1,
        student_eval_every=1, max_train_images=64,
        description="plumbing check only (tests): 1 epoch per stage on the first 64 training images; its AUROC "
                    "figures mean nothing."),
}

# Rough single-core cost per training image and epoch (ms, teacher 64-128-256, batch 32, measured on a shared
# 2-core machine) and per test image and evaluation; only used to print an ETA.
TRAIN_MS = {"teacher": 20.0, "student-alone": 1.2, "KDGAN-1": 3.5, "KDGAN-2": 4.0, "KDGAN-3": 20.0,
             "KDGAN-4": 22.0}
EVAL_MS = {"teacher": 2.5, "student": 0.25}
TYPICAL_TRAIN = {"digits": 125, "mnist": 6000, "fmnist": 6000, "cifar10": 5000}
TYPICAL_TEST = {"digits": 540, "mnist": 10000, "fmnist": 10000, "cifar10": 10000}


def get_budget(budget: str | Budget) -> Budget:
    if isinstance(budget, Budget):
        return budget
    if budget not in BUDGETS:
        raise ValueError(f"budget must be one of {', '.join(BUDGETS)}; got {budget!r}")
    return BUDGETS[budget]



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

