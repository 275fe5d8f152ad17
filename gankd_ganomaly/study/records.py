"""What the report reads: sweep records grouped by budget and data variant, the paper's figures, and how
numbers are formatted (the tests use the formatters to find the records' numbers in the tables)."""
from __future__ import annotations

import json
import math
from collections import defaultdict
from importlib import resources
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .sweep import PAPER_METHODS, RECORD_FORMAT

DASH = "—"
STABILITY_EPOCHS = 5
ALPHA = 0.05
DATASET_ORDER = ("cifar10", "mnist", "fmnist", "digits")
VARIANT_LABELS = {
    "official": "CIFAR-10",
    "jpeg-full": "CIFAR-10 (JPEG copy, lossy)",
    "exact-subset": "CIFAR-10 exact 4000/1000 subset",
    "jpeg-subset": "CIFAR-10 JPEG 4000/1000 subset (lossy)",
}
DATASET_LABELS = {"mnist": "MNIST", "fmnist": "Fashion-MNIST", "digits": "digits (scikit-learn)"}
TABLE3_METHODS = ("KDGAN-1", "KDGAN-2", "KDGAN-3", "KDGAN-4", "P-KDGAN-II-23", "P-KDGAN-II-24")
CURVE_METHODS = (*PAPER_METHODS, "P-KDGAN-I")


# --- formatting (the test uses these to find the records' numbers in the tables) ----------------------------------


def fmt_auroc(x: float | None) -> str:
    return DASH if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def fmt_mean_std(values: Sequence[float]) -> str:
    """One run: its value; several: ``mean ± std (n=k)`` with the sample std; none: "—"."""
    values = [v for v in values if v is not None]
    if not values:
        return DASH
    if len(values) == 1:
        return fmt_auroc(values[0])
    return f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f} (n={len(values)})"


def fmt_pp(x: float | None) -> str:
    return DASH if x is None else f"{x:.2f}"


def fmt_ratio(x: float | None) -> str:
    return DASH if x is None else f"{x:.2f}x"


def fmt_count(n: float | None) -> str:
    if n is None:
        return DASH
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}K"


def fmt_paper(x: float | None, digits: int = 3) -> str:
    return DASH if x is None else f"{x:.{digits}f}"


# --- inputs ---------------------------------------------------------------------------------------------------------


def paper_figures() -> dict:
    """The paper's Tables 2-4 (a copy shipped with the package; its ``source`` field names the paper)."""
    return json.loads(resources.files("gankd_ganomaly.study").joinpath("paper_figures.json").read_text())


def load_records(records_dirs: str | Path | Iterable[str | Path]) -> list[dict]:
    """Every sweep record (``**/seed*.json`` with this sweep's format) under the given folder(s).

    A folder may be a sweep's ``--out`` folder or its ``records`` subfolder.
    """
    dirs = [records_dirs] if isinstance(records_dirs, (str, Path)) else list(records_dirs)
    records = []
    for d in dirs:
        d = Path(d)
        if not d.is_dir():
            raise FileNotFoundError(f"records folder {str(d)!r} does not exist")
        base = d / "records" if (d / "records").is_dir() else d
        for path in sorted(base.rglob("seed*.json")):
            try:
                record = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if isinstance(record, dict) and record.get("record_format") == RECORD_FORMAT:
                record["_path"] = str(path)
                records.append(record)
    return records


def _variant(r: dict) -> str:
    if r["dataset"] != "cifar10":
        return r["dataset"]
    return r.get("cifar10_variant") or "official"


def dataset_label(dataset: str, variant: str) -> str:
    if dataset == "cifar10":
        return VARIANT_LABELS.get(variant, f"CIFAR-10 ({variant})")
    return DATASET_LABELS.get(dataset, dataset)


def _ok(r: dict) -> bool:
    return r.get("status", "ok") == "ok" and r.get("auroc_last") is not None


class _Group:
    """The records of one budget and one data variant: ``runs[method][class][seed] = record``."""

    def __init__(self, budget: str, dataset: str, variant: str) -> None:
        self.budget, self.dataset, self.variant = budget, dataset, variant
        self.runs: dict[str, dict[int, dict[int, dict]]] = defaultdict(lambda: defaultdict(dict))
        self.failed: list[dict] = []

    @property
    def label(self) -> str:
        return dataset_label(self.dataset, self.variant)

    @property
    def slug(self) -> str:
        return self.dataset if self.dataset != "cifar10" else f"cifar10-{self.variant}"

    def values(self, method: str, c: int) -> list[float]:
        return [r["auroc_last"] for _, r in sorted(self.runs.get(method, {}).get(c, {}).items())]

    def classes(self, method: str) -> list[int]:
        return sorted(self.runs.get(method, {}))

    def n_runs(self, method: str) -> int:
        return sum(len(s) for s in self.runs.get(method, {}).values())

    def class_mean(self, method: str) -> tuple[float | None, float | None, int, str]:
        """(mean over classes of per-class seed-means, std over seeds of per-seed class means or None,
        number of classes, seeds per class as text: "3 seeds" or "1-3 seeds")."""
        by_class = self.runs.get(method, {})
        if not by_class:
            return None, None, 0, ""
        counts = sorted({len(s_r) for s_r in by_class.values()})
        seeds_text = (f"{counts[0]} seed{'s' if counts[0] != 1 else ''}" if len(counts) == 1
                      else f"{counts[0]}-{counts[-1]} seeds")
        mean = float(np.mean([np.mean([r["auroc_last"] for r in s_r.values()]) for s_r in by_class.values()]))
        seeds = sorted({s for s_r in by_class.values() for s in s_r})
        std = None
        if len(seeds) > 1 and all(set(s_r) == set(seeds) for s_r in by_class.values()):
            per_seed = [np.mean([by_class[c][s]["auroc_last"] for c in by_class]) for s in seeds]
            std = float(np.std(per_seed, ddof=1))
        return mean, std, len(by_class), seeds_text

    def pairs(self, a: str, b: str) -> list[tuple[int, int, float, float]]:
        """(class, seed, AUROC of a, AUROC of b) wherever both runs exist."""
        out = []
        for c, s_r in sorted(self.runs.get(a, {}).items()):
            for s, r in sorted(s_r.items()):
                other = self.runs.get(b, {}).get(c, {}).get(s)
                if other is not None:
                    out.append((c, s, r["auroc_last"], other["auroc_last"]))
        return out

    def first(self, method: str) -> dict | None:
        for s_r in self.runs.get(method, {}).values():
            for r in s_r.values():
                return r
        return None


def _group(records: list[dict]) -> dict[str, list[_Group]]:
    groups: dict[tuple[str, str, str], _Group] = {}
    for r in records:
        key = (r.get("budget", "?"), r["dataset"], _variant(r))
        g = groups.setdefault(key, _Group(*key))
        if _ok(r):
            g.runs[r["method"]][int(r["normal_class"])][int(r["seed"])] = r
        else:
            g.failed.append(r)
    by_budget: dict[str, list[_Group]] = defaultdict(list)
    order = {d: i for i, d in enumerate(DATASET_ORDER)}
    for key in sorted(groups, key=lambda k: (k[0], order.get(k[1], 99), k[2])):
        by_budget[key[0]].append(groups[key])
    return by_budget


def _cell(g: _Group, method: str, c: int) -> str:
    return fmt_mean_std(g.values(method, c))


def _mean_cell(g: _Group, method: str, n_classes: int = 10) -> str:
    mean, std, k, seeds = g.class_mean(method)
    if mean is None:
        return DASH
    text = fmt_auroc(mean) if std is None else f"{mean:.4f} ± {std:.4f}"
    return f"{text} ({k}/{n_classes} cl. x {seeds})"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(x) for x in row) + " |" for row in rows]
    return lines
