"""What the development studies share: their command line, one (dataset, class, seed) case of a sweep folder,
and the rows file they append to.

Used by every probe in ``scripts/``: the case's data (with the budget's subsample), a student run config (KDGAN-2,
evaluated only at stage ends) and the teacher the sweep trained for it.
"""
from __future__ import annotations

import argparse
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


def case_parser(doc: str) -> argparse.ArgumentParser:
    """The options every probe takes: the sweep folder and budget of the teachers, the cases, the rows file and
    the data roots; a probe adds its own."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--sweep-out", required=True, help="a sweep folder holding teachers/ for the cases")
    p.add_argument("--budget", default="cpu", help="the sweep budget whose teachers --sweep-out holds")
    p.add_argument("--cases", required=True, help="dataset:class:seed,...")
    p.add_argument("--out", required=True, help="JSON rows file; rows already there are not run again")
    p.add_argument("--data-root", default="../shared/datasets")
    p.add_argument("--cifar-root", default="data/cifar10-jpeg")
    return p


def read_rows(out: str | Path) -> list[dict]:
    """The rows a probe wrote to ``out`` so far (none if it does not exist)."""
    path = Path(out)
    return json.loads(path.read_text()) if path.is_file() else []


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
