"""The report's statistics: stability over the last epochs, Wilcoxon tests over classes, teacher-student gaps."""
from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from .records import DASH, _Group, STABILITY_EPOCHS

def stability(record: dict, last: int = STABILITY_EPOCHS) -> tuple[float, float, int] | None:
    """(std, max - min, points) of the AUROC over the last ``last`` evaluated epochs of a run; None if < 2 points."""
    values = [v for v in record.get("auroc_per_epoch") or [] if v is not None][-last:]
    if len(values) < 2:
        return None
    return float(np.std(values)), float(max(values) - min(values)), len(values)


def wilcoxon_gain(g: _Group, a: str = "P-KDGAN-II-23", b: str = "student-alone", unit: str = "class") -> dict:
    """Gain of ``a`` over ``b`` with a Wilcoxon signed-rank test. ``unit="class"``: per class the mean over paired
    seeds, tested over classes; ``unit="pair"``: every (class, seed) pair is one observation (for grids with few
    classes and several seeds)."""
    if unit not in ("class", "pair"):
        raise ValueError(f"unit must be 'class' or 'pair'; got {unit!r}")
    per_class: dict[object, list[tuple[float, float]]] = defaultdict(list)
    for c, seed, x, y in g.pairs(a, b):
        per_class[c if unit == "class" else (c, seed)].append((x, y))
    xs = [float(np.mean([p[0] for p in v])) for _, v in sorted(per_class.items())]
    ys = [float(np.mean([p[1] for p in v])) for _, v in sorted(per_class.items())]
    diffs = np.array(xs) - np.array(ys)
    out: dict[str, Any] = {"n": len(diffs), "mean_gain": float(diffs.mean()) if len(diffs) else None,
                           "p_two_sided": None, "p_one_sided": None, "unit": unit,
                           "classes": sorted({k if unit == "class" else k[0] for k in per_class})}
    if len(diffs) >= 2 and np.any(diffs != 0):
        from scipy.stats import wilcoxon

        out["p_two_sided"] = float(wilcoxon(xs, ys, alternative="two-sided").pvalue)
        out["p_one_sided"] = float(wilcoxon(xs, ys, alternative="greater").pvalue)
    return out


def stage_end_aurocs(g: _Group, method: str = "P-KDGAN-II-23") -> list[tuple[str, float, int]]:
    """[(structure, AUROC at the stage's last epoch, classes)] for each stage of ``method``: mean over classes of
    per-class seed means; a stage whose last epoch was not evaluated in every run is left out."""
    per_stage: dict[int, tuple[str, dict[int, list[float]]]] = {}
    for c, by_seed in g.runs.get(method, {}).items():
        for r in by_seed.values():
            end, aurocs = 0, r.get("auroc_per_epoch") or []
            for i, stage in enumerate((r.get("schedule") or {}).get("stages", [])):
                end += int(stage["epochs"])
                value = aurocs[end - 1] if end <= len(aurocs) else None
                per_stage.setdefault(i, (stage["structure"]["name"], defaultdict(list)))[1][c].append(value)
    out = []
    for i in sorted(per_stage):
        name, seen = per_stage[i]
        if all(v is not None for vs in seen.values() for v in vs):
            out.append((name, float(np.mean([np.mean(vs) for vs in seen.values()])), len(seen)))
    return out


def teacher_gap(g: _Group, student: str) -> float | None:
    """Mean over classes of (teacher - student) AUROC, per class the mean over seeds where both runs exist."""
    per_class: dict[int, list[float]] = defaultdict(list)
    for c, _, t, s in g.pairs("teacher", student):
        per_class[c].append(t - s)
    return float(np.mean([np.mean(v) for v in per_class.values()])) if per_class else None


BEYOND_CONTROL = "student-alone-wcon40"
# Each recipe of the section beyond the paper, with its control: the same training without the teacher.
BEYOND_RECIPES: dict[str, str] = {"recommended": BEYOND_CONTROL, "reconstruction-fast": "student-alone-fast"}


def _points(x: float | None) -> str:
    return DASH if x is None else f"{100 * x:+.2f}"


def _test_cell(w: dict) -> str:
    p = w["p_one_sided"]
    unit = "cl." if w.get("unit", "class") == "class" else "pairs"
    return f"{_points(w['mean_gain'])} (p={p:.4f}, {w['n']} {unit})" if p is not None else _points(w["mean_gain"])


def beyond_paper_statistics(g: _Group, recipe: str = "recommended") -> dict:
    """A recipe against the student alone and against its control (:data:`BEYOND_RECIPES`), with the gaps."""
    control = BEYOND_RECIPES[recipe]
    return {"vs_alone": wilcoxon_gain(g, recipe, "student-alone"),
            "vs_control": wilcoxon_gain(g, recipe, control),
            "control_vs_alone": wilcoxon_gain(g, control, "student-alone"),
            "teacher_gap_alone": teacher_gap(g, "student-alone"), "teacher_gap_recipe": teacher_gap(g, recipe),
            "teacher_gap_control": teacher_gap(g, control)}


def _class_mean_drop(pairs: list[tuple[int, int, float, float]]) -> float | None:
    """Teacher - student in AUROC points: mean over each class's paired seeds, then over classes."""
    per_class: dict[int, list[float]] = defaultdict(list)
    for c, _, teacher, student in pairs:
        per_class[c].append(100 * (teacher - student))
    return float(np.mean([np.mean(v) for v in per_class.values()])) if per_class else None
