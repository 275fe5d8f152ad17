"""The report's section on the default recipe: `recommended` against the student alone and against the tuned
student alone (`student-alone-tuned`: the same width rule without the teacher), from one sweep whose students
all distil from the same teachers, with the criteria the default is held to and which of them are met."""
from __future__ import annotations

from typing import Any

from ..hooks import RECIPES
from .records import ALPHA, DASH, _Group, _mean_cell, _table
from .statistics import _points, _test_cell, teacher_gap, wilcoxon_gain

DEFAULT = "recommended"
TUNED = "student-alone-tuned"
ALONE = "student-alone"
METHODS = ("teacher", ALONE, TUNED, DEFAULT)
FMNIST_MARGIN = 0.005  # Fashion-MNIST: within 0.5 points of the tuned student alone
DATASETS = ("mnist", "fmnist", "cifar10")
_LABELS = {"mnist": "MNIST", "fmnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}
TEACHER_LEAD = 0.03  # a teacher worth distilling leads the tuned student alone by at least 3 points


def _stats_of(stats: dict[str, dict], dataset: str) -> dict | None:
    return next((v for k, v in stats.items() if k.split("-")[0] == dataset), None)


def current_version_only(groups: list[_Group]) -> dict[str, int]:
    """Drop records of `recommended` and of its tuned control written by another recipe version (they ran another
    schedule under the same name); returns how many were dropped per method."""
    version = RECIPES[DEFAULT].version
    dropped: dict[str, int] = {}
    for g in groups:
        for method in (DEFAULT, TUNED):
            for c, by_seed in list(g.runs.get(method, {}).items()):
                for seed, r in list(by_seed.items()):
                    if r.get("recipe_version", 1) != version:
                        del by_seed[seed]
                        dropped[method] = dropped.get(method, 0) + 1
                if not by_seed:
                    del g.runs[method][c]
    return dropped


def default_statistics(g: _Group, unit: str = "class", recipe: str = DEFAULT) -> dict[str, Any]:
    """``recipe`` (default `recommended`) against both controls: Wilcoxon tests (over classes, per class the mean
    over paired seeds; or over (class, seed) pairs with ``unit="pair"``) and the teacher gaps."""
    return {"vs_alone": wilcoxon_gain(g, recipe, ALONE, unit), "vs_tuned": wilcoxon_gain(g, recipe, TUNED, unit),
            "tuned_vs_alone": wilcoxon_gain(g, TUNED, ALONE, unit),
            "teacher_gap_alone": teacher_gap(g, ALONE), "teacher_gap_tuned": teacher_gap(g, TUNED),
            "teacher_gap_recipe": teacher_gap(g, recipe),
            "seeds": sorted({s for by_seed in g.runs.get(recipe, {}).values() for s in by_seed}),
            "classes": g.classes(recipe)}


def _wins(w: dict) -> bool:
    return w["mean_gain"] is not None and w["mean_gain"] > 0 and w["p_one_sided"] is not None \
        and w["p_one_sided"] < ALPHA


def _p(w: dict) -> str:
    return "n/a" if w["p_one_sided"] is None else format(w["p_one_sided"], ".4f")


def criteria_lines(stats: dict[str, dict], recipe: str = DEFAULT) -> list[str]:
    """The cpu-budget criteria of ``recipe``, each met, missed (by how much) or not yet measured, per dataset."""
    out = []
    for dataset in DATASETS:
        st = _stats_of(stats, dataset)
        label = _LABELS[dataset]
        if st is None:
            out.append(f"- {label}: **not yet measured** (no records of `{recipe}` in this sweep).")
            continue
        n = st["vs_tuned"]["n"]
        parts = []
        wt, wa = st["vs_tuned"], st["vs_alone"]
        if dataset == "fmnist":
            gain = wt["mean_gain"]
            ok = gain is not None and gain >= -FMNIST_MARGIN
            parts.append(f"within 0.50 points of `{TUNED}`: {_points(gain)} -> "
                         + ("**met**" if ok else f"**missed** by {100 * (-FMNIST_MARGIN - gain):.2f} points"))
        else:
            parts.append(f"beats `{TUNED}` with one-sided p < {ALPHA}: {_points(wt['mean_gain'])} points, "
                         f"p={_p(wt)} -> " + ("**met**" if _wins(wt) else "**missed**"))
        parts.append(f"beats `{ALONE}` with one-sided p < {ALPHA}: {_points(wa['mean_gain'])} points, p={_p(wa)} -> "
                     + ("**met**" if _wins(wa) else "**missed**"))
        seeds = ", ".join(map(str, st["seeds"]))
        out.append(f"- {label} ({n} classes, seed(s) {seeds}): " + "; ".join(parts) + ".")
    return out


def long_teacher_criteria_lines(stats: dict[str, dict], recipe: str = DEFAULT) -> list[str]:
    """The criteria of a grid with a longer teacher budget, tested over (class, seed) pairs: on MNIST and CIFAR-10
    the teacher leads the tuned student alone by at least 3 points, ``recipe`` beats the tuned student alone
    with one-sided p < 0.05, and leaves at most half the teacher gap that the tuned student alone leaves."""
    out = []
    for dataset in ("mnist", "cifar10"):
        st, label = _stats_of(stats, dataset), _LABELS[dataset]
        if st is None:
            out.append(f"- {label}: **not yet measured** (no records of `{recipe}` in this sweep).")
            continue
        wt, lead, left = st["vs_tuned"], st["teacher_gap_tuned"], st["teacher_gap_recipe"]
        parts = []
        if lead is None:
            parts.append("teacher lead over `student-alone-tuned`: no teacher records")
        else:
            parts.append(f"teacher leads `{TUNED}` by at least 3 points: {_points(lead)} -> "
                         + ("**met**" if lead >= TEACHER_LEAD
                            else f"**missed** by {100 * (TEACHER_LEAD - lead):.2f} points"))
        parts.append(f"beats `{TUNED}` with one-sided p < {ALPHA} over {wt['n']} pairs: {_points(wt['mean_gain'])} "
                     f"points, p={_p(wt)} -> " + ("**met**" if _wins(wt) else "**missed**"))
        if lead is not None and left is not None:
            ok = lead > 0 and left <= lead / 2
            parts.append(f"teacher gap at most half the tuned student's: {_points(left)} against "
                         f"{_points(lead)} -> " + ("**met**" if ok else "**missed**"))
        seeds = ", ".join(map(str, st["seeds"]))
        out.append(f"- {label} (classes {', '.join(map(str, st['classes']))}; seed(s) {seeds}): "
                   + "; ".join(parts) + ".")
    return out


def teacher_curve_line(groups: list[_Group]) -> str | None:
    """One sentence: each dataset's mean teacher AUROC at every epoch where all its teachers were scored (a budget
    that scores the teacher more than once shows whether it was still rising); None if none was scored twice."""
    parts = []
    for g in groups:
        curves = [r.get("auroc_per_epoch") or [] for by_seed in g.runs.get("teacher", {}).values()
                  for r in by_seed.values()]
        if not curves:
            continue
        epochs = [i for i in range(min(map(len, curves))) if all(c[i] is not None for c in curves)]
        if len(epochs) >= 2:
            means = " / ".join(f"{sum(c[i] for c in curves) / len(curves):.4f}" for i in epochs)
            parts.append(f"{g.label} {means} after epochs {' / '.join(str(i + 1) for i in epochs)}")
    if not parts:
        return None
    return ("Teacher AUROC during training (mean over classes and seeds; students distil from the last): "
            + "; ".join(parts) + ".")


def comparison_unit(budget: str) -> str:
    """The ``cpu`` grid covers all classes and is tested over classes; a grid at any other budget (a few classes,
    several seeds) over (class, seed) pairs."""
    return "class" if budget == "cpu" else "pair"


def budget_criteria_lines(stats: dict[str, dict], budget: str, recipe: str = DEFAULT) -> list[str]:
    """The criteria ``recipe`` is held to at ``budget``: the cpu ones, or those of a longer-trained teacher."""
    return criteria_lines(stats, recipe) if budget == "cpu" else long_teacher_criteria_lines(stats, recipe)


def default_section(groups: list[_Group], budget: str = "cpu") -> tuple[list[str], dict]:
    """Markdown lines and statistics (keyed by the group's slug) of the default-recipe sweep at ``budget``: the
    ``cpu`` grid covers all classes and is tested over classes; any other budget (a few classes, several
    seeds) over (class, seed) pairs, against the criteria of a longer-trained teacher."""
    dropped = current_version_only(groups)
    unit = comparison_unit(budget)
    rows, stats = [], {}
    for g in groups:
        if not g.runs.get(DEFAULT):
            continue
        st = stats[g.slug] = default_statistics(g, unit)
        gaps = " / ".join(_points(st[k]) for k in ("teacher_gap_alone", "teacher_gap_tuned", "teacher_gap_recipe"))
        rows.append([g.label, *(_mean_cell(g, m) for m in METHODS), _test_cell(st["vs_alone"]),
                     _test_cell(st["vs_tuned"]), _test_cell(st["tuned_vs_alone"]), gaps])
    if not rows:
        return [], {}
    version = RECIPES[DEFAULT].version
    where = "" if budget == "cpu" else f" (`{budget}` budget)"
    tested = ("one-sided Wilcoxon signed-rank over classes" if unit == "class"
              else "one-sided Wilcoxon signed-rank over (class, seed) pairs")
    lines = [f"## The default recipe: `{DEFAULT}` (version {version}) against the tuned student alone{where}", "",
             f"`{DEFAULT}` (version {version}) is KDGAN-2 for M epochs with K = 30 * l1(x_hat) and the student's "
             "per-layer learning rates and initial scales from its widths relative to the teacher's (`lr_rule` "
             f"`mup`, `gankd.width_rule`). `{TUNED}` is the student alone with the same rule and the global factor "
             "chosen on development runs; both were chosen on development runs only (Figure-2 classes at seeds "
             "100-101, `docs/distillation.md`), none of which is in this table. Every student distils from, or is "
             "compared with, the same teachers. Cells: mean over classes (± std over seeds), classes x seeds. "
             f"Gains: mean over classes of the per-class seed means, {tested}. "
             f"Teacher gap: teacher - student, for `{ALONE}` / `{TUNED}` / `{DEFAULT}`.", "",
             *_table(["data", "teacher", ALONE, TUNED, DEFAULT, f"{DEFAULT} - alone", f"{DEFAULT} - tuned",
                      "tuned - alone", "teacher gap (points)"], rows), ""]
    curve = teacher_curve_line(groups)
    if curve:
        lines += [curve, ""]
    if dropped:
        lines += ["Left out: " + ", ".join(f"{n} record(s) of `{m}` from another recipe version"
                                           for m, n in dropped.items()) + ".", ""]
    lines += [f"**The criteria (`{budget}` budget).**", "", *budget_criteria_lines(stats, budget), ""]
    for recipe in candidate_recipes(groups):
        section, candidate_stats = candidate_section(groups, recipe, budget)
        lines += section
        stats.update({f"{recipe}/{k}": v for k, v in candidate_stats.items()})
    return lines, stats


def candidate_recipes(groups: list[_Group]) -> list[str]:
    """Recipes other than the default (and `paper`) with records in the grid: candidates for the next default."""
    present = {m for g in groups for m in g.runs if g.runs[m]}
    return [name for name in RECIPES if name in present and name not in (DEFAULT, "paper")]


def candidate_section(groups: list[_Group], recipe: str, budget: str) -> tuple[list[str], dict]:
    """A candidate recipe against the same controls and teachers as the default, held to the same criteria."""
    unit = comparison_unit(budget)
    rows, stats = [], {}
    for g in groups:
        if not g.runs.get(recipe):
            continue
        st = stats[g.slug] = default_statistics(g, unit, recipe)
        rows.append([g.label, *(_mean_cell(g, m) for m in ("teacher", TUNED, DEFAULT, recipe)),
                     _test_cell(st["vs_alone"]), _test_cell(st["vs_tuned"]), _test_cell(wilcoxon_gain(
                         g, recipe, DEFAULT, unit)), " / ".join(_points(st[k]) for k in ("teacher_gap_tuned",
                                                                                         "teacher_gap_recipe"))])
    return [f"### A candidate default: `{recipe}`", "",
            f"{RECIPES[recipe].description[0].upper()}{RECIPES[recipe].description[1:]}. Same teachers and "
            "controls as above; chosen on development runs only.", "",
            *_table(["data", "teacher", TUNED, DEFAULT, recipe, f"{recipe} - alone", f"{recipe} - tuned",
                     f"{recipe} - {DEFAULT}", "teacher gap: tuned / candidate"], rows), "",
            f"**`{recipe}` against the criteria.**", "", *budget_criteria_lines(stats, budget, recipe), ""], stats


__all__ = ["default_section", "candidate_section", "criteria_lines", "long_teacher_criteria_lines",
           "current_version_only", "DASH"]
