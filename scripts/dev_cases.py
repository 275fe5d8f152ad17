"""What the development studies share: one (dataset, class, seed) case of a sweep folder, at the cpu budget.

Used by ``recipe_probe.py`` and ``latent_mechanism.py``: the case's data (with the budget's subsample), a
student run config (KDGAN-2, evaluated only at stage ends) and the teacher the sweep trained for it.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gankd  # noqa: E402
from gankd_ganomaly.data import OneClassData, load_one_class  # noqa: E402
from gankd_ganomaly.experiment import RunConfig  # noqa: E402
from gankd_ganomaly.study.budgets import BUDGETS, prepare_data  # noqa: E402
from gankd_ganomaly.study.sweep import _load_teacher, teacher_path  # noqa: E402

BUDGET = BUDGETS["cpu"]


def parse_cases(text: str) -> list[tuple[str, int, int]]:
    """``"mnist:5:100,fmnist:8:100"`` -> ``[("mnist", 5, 100), ("fmnist", 8, 100)]``."""
    return [(d, int(c), int(s)) for d, c, s in (item.split(":") for item in text.split(","))]


def load_case(sweep_out: str, dataset: str, normal_class: int, seed: int, data_root: str,
              cifar_root: str, budget: str = "cpu") -> tuple[OneClassData, RunConfig, object, dict]:
    """``(data, student config, teacher GAN, teacher record)`` of one case; ``budget`` names the sweep budget
    whose teacher is loaded (the students of every budget used here train as in ``cpu``)."""
    b = BUDGETS[budget]
    root = cifar_root if dataset == "cifar10" else data_root
    data, _ = prepare_data(load_one_class(dataset, normal_class, root=root), b)
    cfg = RunConfig(dataset=dataset, normal_class=normal_class, method="KDGAN-2", epochs=b.student_epochs,
                    batch_size=b.batch_size, lr=b.lr, seed=seed, eval_every=1000)
    tcfg = cfg.replace(method="teacher", epochs=b.teacher_epochs, eval_every=b.teacher_eval_every)
    teacher, record = _load_teacher(teacher_path(sweep_out, dataset, normal_class, seed, budget), tcfg, b)
    return data, cfg, teacher, record


def append_row(out: Path, rows: list[dict], row: dict, started: float) -> None:
    """Add one run's ``row`` (with ``wall_s`` since ``started`` and the library version) to ``rows``, write them
    all to ``out`` atomically and print a line: a probe killed at any point keeps every finished run."""
    row = {**row, "wall_s": time.perf_counter() - started, "version": gankd.__version__}
    rows.append(row)
    gankd.atomic_write_text(out, json.dumps(rows, indent=1) + "\n")
    print(f"{row['candidate']:>20} {row['dataset']}:{row['normal_class']}:{row['seed']} AUROC {row['auroc_last']:.4f} "
          f"(teacher {row['teacher_auroc']:.4f}) {row['wall_s']:.0f}s", flush=True)
