"""Write ``docs/results.md`` from sweep records: the paper's Tables 2-4 and Figure 2, ours next to the paper's.

Every number in the report comes from a record written by :func:`gankd_ganomaly.sweep.run_sweep` or from the paper's
tables shipped as :file:`gankd_ganomaly/paper_figures.json`; nothing is typed in. Conventions:

- AUROC is the last epoch's (as the paper reports), formatted with 4 decimals (:func:`fmt_auroc`).
- ``mean ± std``: over seeds (sample std, ddof=1); a single run shows its value alone; a cell with no run is "—".
  Means over classes average each class's seed-mean; the ± is then the std over seeds of the per-seed class means,
  given only when every seed covers the same classes.
- Drops (Table 4) are AUROC differences teacher - student in percentage points (the paper's 0.71% for CIFAR-10 is
  0.7376 - 0.7305) over the (class, seed) pairs where both runs exist (the student of seed s distilled from the
  teacher of seed s), averaged over a class's seeds, then over classes.
- Stability: the spread of AUROC over the last 5 evaluated epochs of each run (std, ddof=0, and max - min),
  averaged over runs.
- Significance: Wilcoxon signed-rank test (scipy) of P-KDGAN-II-23 against student-alone over normal classes
  (each class: mean over the seeds where both exist); "gain reproduced" means a positive mean gain with one-sided
  p < 0.05.

Records are grouped by budget and by data variant (CIFAR-10 from the JPEG copy is a separate, lossy, row).
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
from collections import defaultdict
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .data import CLASS_NAMES
from .sweep import BUDGETS, FIGURE2_CLASSES, PAPER_METHODS, RECORD_FORMAT

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
    return json.loads(resources.files("gankd_ganomaly").joinpath("paper_figures.json").read_text())


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


# --- statistics -----------------------------------------------------------------------------------------------------


def stability(record: dict, last: int = STABILITY_EPOCHS) -> tuple[float, float, int] | None:
    """(std, max - min, points) of the AUROC over the last ``last`` evaluated epochs of a run; None if < 2 points."""
    values = [v for v in record.get("auroc_per_epoch") or [] if v is not None][-last:]
    if len(values) < 2:
        return None
    return float(np.std(values)), float(max(values) - min(values)), len(values)


def wilcoxon_gain(g: _Group, a: str = "P-KDGAN-II-23", b: str = "student-alone") -> dict:
    """Per class mean over paired seeds of ``a`` and ``b``; Wilcoxon signed-rank over classes."""
    per_class: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for c, _, x, y in g.pairs(a, b):
        per_class[c].append((x, y))
    xs = [float(np.mean([p[0] for p in v])) for _, v in sorted(per_class.items())]
    ys = [float(np.mean([p[1] for p in v])) for _, v in sorted(per_class.items())]
    diffs = np.array(xs) - np.array(ys)
    out: dict[str, Any] = {"n": len(diffs), "mean_gain": float(diffs.mean()) if len(diffs) else None,
                           "p_two_sided": None, "p_one_sided": None, "classes": sorted(per_class)}
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


def _points(x: float | None) -> str:
    return DASH if x is None else f"{100 * x:+.2f}"


def _test_cell(w: dict) -> str:
    p = w["p_one_sided"]
    return f"{_points(w['mean_gain'])} (p={p:.4f}, {w['n']} cl.)" if p is not None else _points(w["mean_gain"])


def beyond_paper_statistics(g: _Group) -> dict:
    """The ``recommended`` recipe against the student alone and the reconstruction control, with the gaps."""
    return {"vs_alone": wilcoxon_gain(g, "recommended", "student-alone"),
            "vs_control": wilcoxon_gain(g, "recommended", BEYOND_CONTROL),
            "control_vs_alone": wilcoxon_gain(g, BEYOND_CONTROL, "student-alone"),
            "teacher_gap_alone": teacher_gap(g, "student-alone"), "teacher_gap_recommended": teacher_gap(g, "recommended"),
            "teacher_gap_control": teacher_gap(g, BEYOND_CONTROL)}


def _beyond_paper(groups: list[_Group], paper_groups: list[_Group]) -> tuple[list[str], dict]:
    """The library's ``recommended`` recipe, the student alone and the reconstruction control from their own
    sweep (``groups``, same teachers), next to the paper's P-KDGAN-II-23 rows (``paper_groups``)."""
    paper = {(g.dataset, g.variant): g for g in paper_groups}
    rows, sentences, stats = [], [], {}
    for g in groups:
        if not g.runs.get("recommended"):
            continue
        st = stats[g.slug] = beyond_paper_statistics(g)
        pg = paper.get((g.dataset, g.variant))
        rows.append([g.label, _mean_cell(g, "teacher"), _mean_cell(g, "student-alone"),
                     _mean_cell(pg, "P-KDGAN-II-23") if pg is not None else DASH, _mean_cell(g, BEYOND_CONTROL),
                     _mean_cell(g, "recommended"), _test_cell(st["vs_alone"]), _test_cell(st["vs_control"]),
                     f"{_points(st['teacher_gap_alone'])} -> {_points(st['teacher_gap_recommended'])}"])
        w = st["vs_alone"]
        won = w["mean_gain"] is not None and w["mean_gain"] > 0 and w["p_one_sided"] is not None \
            and w["p_one_sided"] < ALPHA
        wc = st["vs_control"]
        sentences.append(
            f"- {g.label}: `recommended` {'**beats**' if won else '**does not beat**'} the student trained alone "
            f"({_points(w['mean_gain'])} points, one-sided Wilcoxon p="
            f"{'n/a' if w['p_one_sided'] is None else format(w['p_one_sided'], '.4f')} over {w['n']} classes); "
            f"against the reconstruction control (no teacher, w_con 40) it gains {_points(wc['mean_gain'])} (p="
            f"{'n/a' if wc['p_one_sided'] is None else format(wc['p_one_sided'], '.4f')}). The teacher leads the "
            f"student alone by {_points(st['teacher_gap_alone'])} points, the control by "
            f"{_points(st['teacher_gap_control'])} and `recommended` by {_points(st['teacher_gap_recommended'])}.")
    if not rows:
        return [], stats
    lines = ["## Beyond the paper: the `recommended` recipe", "",
             "The library's `recommended` recipe is KDGAN-2 for M epochs with K = 30 * l1(x_hat) "
             "(`gankd_ganomaly.hooks.RECIPES`). It was chosen on development runs that are not in this table "
             "(Figure-2 classes at seeds 100-101, `docs/distillation.md`). The teacher, the student alone, the "
             "reconstruction control (the student alone with w_con = 40: the extra reconstruction weight the recipe "
             "adds, without a teacher) and `recommended` come from one sweep of their own, all students distilling "
             "from the same teachers; the P-KDGAN-II-23 column is the paper rows' (their own teachers, trained by "
             "the same code and config on another machine). Cells: mean over classes (± std over seeds), classes x "
             "seeds. Gains: mean over classes of the per-class seed means, one-sided Wilcoxon over classes. Gap: "
             "teacher - student, alone -> `recommended`.", "",
             *_table(["data", "teacher", "student alone", "P-KDGAN-II-23 (paper)", "control (w_con 40)",
                      "recommended", "gain vs alone", "gain vs control", "teacher gap"], rows), "", *sentences, ""]
    return lines, stats


def _stage_table(groups: list[_Group], method: str = "P-KDGAN-II-23") -> list[str]:
    rows = [(g.label, stage_end_aurocs(g, method), g.class_mean("student-alone")[0]) for g in groups]
    rows = [r for r in rows if r[1]]
    if not rows:
        return []
    n = max(len(r[1]) for r in rows)
    head = ["dataset", *[f"end of stage {i + 1}" for i in range(n)], "student-alone"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, stages, alone in rows:
        cells = [f"{a:.4f} ({name}, {k} cl.)" for name, a, k in stages] + ["—"] * (n - len(stages))
        out.append(f"| {label} | " + " | ".join(cells) + f" | {fmt_auroc(alone)} |")
    return out


def _gain_sentence(g: _Group, w: dict, paper_gain: float | None) -> str:
    paper = (f" The paper claims a gain of {paper_gain:.2f} points (Table 4: student-alone drop minus "
             f"P-KDGAN drop)." if paper_gain is not None else " The paper gives no figure for this dataset.")
    if w["n"] == 0:
        return f"{g.label}: no class has both P-KDGAN-II-23 and student-alone runs; nothing to test.{paper}"
    gain = (f"mean gain of P-KDGAN-II-23 over student-alone {100 * w['mean_gain']:+.2f} AUROC points over "
            f"{w['n']} class(es)")
    if w["p_one_sided"] is None:
        verdict = "**gain not reproduced** (too few classes or no differences to test)"
        test = "Wilcoxon test not computable"
    else:
        test = (f"Wilcoxon signed-rank n={w['n']}, p={w['p_two_sided']:.4g} two-sided, "
                f"p={w['p_one_sided']:.4g} one-sided")
        reproduced = w["mean_gain"] > 0 and w["p_one_sided"] < ALPHA
        verdict = "**gain reproduced**" if reproduced else "**gain not reproduced**"
        if not reproduced and w["n"] < 5:
            verdict += (f" (with {w['n']} classes the one-sided signed-rank test cannot reach p < {ALPHA}: "
                        "run more classes)")
    return f"{g.label}: {gain}; {test}: {verdict}.{paper}"


# --- figure 2 -------------------------------------------------------------------------------------------------------


def _require_matplotlib():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError("the report's Figure-2 plots need matplotlib, which is not installed: "
                          "`pip install 'gankd[report]'` (or `pip install matplotlib`), or write the report "
                          "without plots (`--no-plots`)") from err
    return plt


def _curve(records: list[dict]) -> tuple[list[int], list[float], list[float], list[float]]:
    """Epochs evaluated in every run, and mean/min/max AUROC over the runs at those epochs."""
    per_run = [{i + 1: v for i, v in enumerate(r.get("auroc_per_epoch") or []) if v is not None} for r in records]
    epochs = sorted(set.intersection(*(set(p) for p in per_run))) if per_run else []
    stack = np.array([[p[e] for e in epochs] for p in per_run]) if epochs else np.empty((0, 0))
    if not epochs:
        return [], [], [], []
    return epochs, list(stack.mean(0)), list(stack.min(0)), list(stack.max(0))


def plot_figure2(g: _Group, c: int, path: Path) -> list[str]:
    """Per-epoch AUROC curves of every method of class ``c`` (mean over seeds, band = min..max); returns methods."""
    plt = _require_matplotlib()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    drawn = []
    longest = max((len(r.get("auroc_per_epoch") or []) for m in g.runs for r in g.runs[m].get(c, {}).values()),
                  default=1)
    for i, method in enumerate(CURVE_METHODS):
        runs = list(g.runs.get(method, {}).get(c, {}).values())
        if not runs:
            continue
        epochs, mean, lo, hi = _curve(runs)
        if not epochs:
            continue
        color = f"C{i % 10}"
        label = f"{method} (n={len(runs)})"
        if len(epochs) == 1:  # e.g. a teacher evaluated only after its last epoch: a reference line
            ax.axhline(mean[0], color=color, linestyle="--", linewidth=1.2, label=f"{label}, epoch {epochs[0]} only")
            ax.plot(epochs, mean, "o", color=color)
        else:
            ax.plot(epochs, mean, color=color, marker="." if len(epochs) < 40 else None, linewidth=1.4, label=label)
            if len(runs) > 1:
                ax.fill_between(epochs, lo, hi, alpha=0.12, color=color)
        drawn.append(method)
    ax.set_xlim(0.5, max(longest, 1) + 0.5)
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.set_xlabel("epoch (two-stage schedules: stage 2 continues the count)")
    ax.set_ylabel("test AUROC")
    ax.set_title(f"{g.label}: normal class {CLASS_NAMES[g.dataset][c]} (budget {g.budget})", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return drawn


# --- the report -----------------------------------------------------------------------------------------------------


def _table2(g: _Group, paper: dict) -> list[str]:
    p2 = paper["table2_teacher_auroc"].get(g.dataset if g.dataset in ("cifar10", "mnist") else "", {})
    cols = paper["table2_teacher_auroc"]["columns"]
    i_svm, i_kde, i_ours = cols.index("OCSVM"), cols.index("KDE"), cols.index("Ours")
    header = ["normal class", "OC-SVM (ours)", "KDE (ours)", "teacher (ours)", "OC-SVM (paper)", "KDE (paper)",
              "teacher (paper)"]
    rows = []
    for c, name in enumerate(CLASS_NAMES[g.dataset]):
        p = p2.get(name)
        rows.append([name, _cell(g, "ocsvm", c), _cell(g, "kde", c), _cell(g, "teacher", c),
                     fmt_paper(p[i_svm] if p else None), fmt_paper(p[i_kde] if p else None),
                     fmt_paper(p[i_ours] if p else None)])
    p = p2.get("mean")
    rows.append(["**mean**", _mean_cell(g, "ocsvm"), _mean_cell(g, "kde"), _mean_cell(g, "teacher"),
                 fmt_paper(p[i_svm] if p else None, 4), fmt_paper(p[i_kde] if p else None, 4),
                 fmt_paper(p[i_ours] if p else None, 4)])
    counts = ", ".join(f"{m}: {g.n_runs(m)}" for m in ("teacher", "ocsvm", "kde"))
    return [f"### {g.label}", "", *_table(header, rows), "", f"Runs present: {counts}.", ""]


def _table3(groups: list[_Group], paper: dict) -> list[str]:
    p3 = paper["table3_student_mean_auroc"]
    header = ["method"]
    for g in groups:
        header += [f"{g.label} (ours)", f"{g.label} (paper)"]
    rows = []
    for method in ("teacher", "student-alone", *TABLE3_METHODS):
        row = [method]
        for g in groups:
            if method == "teacher":
                pv = paper["table4_compression"]["teacher"]["auroc"].get(g.dataset)
            elif method == "student-alone":
                drop = paper["table4_compression"]["student_trained_alone_auroc_drop_pct"].get(g.dataset)
                t = paper["table4_compression"]["teacher"]["auroc"].get(g.dataset)
                pv = None if drop is None or t is None else round(t - drop / 100, 4)
            else:
                pv = p3.get(method, {}).get(g.dataset)
            cell = fmt_paper(pv, 4)
            row += [_mean_cell(g, method), cell + "*" if method == "student-alone" and pv is not None else cell]
        rows.append(row)
    return _table(header, rows)


def _figure2_table(groups: list[_Group]) -> list[str]:
    lines = []
    for g in groups:
        c = FIGURE2_CLASSES.get(g.dataset)
        if c is None or not any(g.runs.get(m, {}).get(c) for m in CURVE_METHODS):
            continue
        header = ["method", "AUROC (last epoch)", "stability: std over last 5 epochs", "max - min over last 5"]
        rows = []
        for method in CURVE_METHODS:
            runs = list(g.runs.get(method, {}).get(c, {}).values())
            if not runs and method == "P-KDGAN-I":
                continue
            st = [s for s in (stability(r) for r in runs) if s is not None]
            rows.append([method, fmt_mean_std([r["auroc_last"] for r in runs]),
                         f"{np.mean([s[0] for s in st]):.4f}" if st else DASH,
                         f"{np.mean([s[1] for s in st]):.4f}" if st else DASH])
        lines += [f"### {g.label}, normal class {CLASS_NAMES[g.dataset][c]}", "", *_table(header, rows), ""]
    return lines


def _class_mean_drop(pairs: list[tuple[int, int, float, float]]) -> float | None:
    """Teacher - student in AUROC points: mean over each class's paired seeds, then over classes."""
    per_class: dict[int, list[float]] = defaultdict(list)
    for c, _, teacher, student in pairs:
        per_class[c].append(100 * (teacher - student))
    return float(np.mean([np.mean(v) for v in per_class.values()])) if per_class else None


def _table4(groups: list[_Group], paper: dict) -> list[str]:
    p4 = paper["table4_compression"]
    header = ["dataset", "teacher AUROC", "student-alone AUROC", "drop (pts)", "P-KDGAN-II-23 AUROC", "drop (pts)",
              "teacher params", "student params", "params ratio", "FLOPs ratio", "pairs (class x seed)"]
    rows = []
    for g in groups:
        t, s = g.first("teacher"), g.first("P-KDGAN-II-23") or g.first("student-alone")
        sa_pairs, pk_pairs = g.pairs("teacher", "student-alone"), g.pairs("teacher", "P-KDGAN-II-23")
        drop = _class_mean_drop
        params_ratio = t["params"] / s["params"] if t and s and s.get("params") else None
        flops_ratio = t["flops"] / s["flops"] if t and s and s.get("flops") else None
        rows.append([f"{g.label} (ours)", _mean_cell(g, "teacher"), _mean_cell(g, "student-alone"),
                     fmt_pp(drop(sa_pairs)), _mean_cell(g, "P-KDGAN-II-23"), fmt_pp(drop(pk_pairs)),
                     fmt_count(t["params"] if t else None), fmt_count(s["params"] if s else None),
                     fmt_ratio(params_ratio), fmt_ratio(flops_ratio), f"{len(sa_pairs)} / {len(pk_pairs)}"])
        d = g.dataset
        ta = p4["teacher"]["auroc"].get(d)
        sa_drop, pk_drop = p4["student_trained_alone_auroc_drop_pct"].get(d), p4["student_pkdgan_auroc_drop_pct"].get(d)
        rows.append([f"{g.label} (paper)", fmt_paper(ta, 4),
                     fmt_paper(ta - sa_drop / 100, 4) + "*" if ta is not None and sa_drop is not None else DASH,
                     fmt_pp(sa_drop),
                     fmt_paper(ta - pk_drop / 100, 4) + "*" if ta is not None and pk_drop is not None else DASH,
                     fmt_pp(pk_drop), fmt_count(p4["teacher"]["params"]) if d in p4["params_ratio"] else DASH,
                     (fmt_count(p4["teacher"]["params"] / p4["params_ratio"][d]) + "*"
                      if d in p4["params_ratio"] else DASH),
                     fmt_ratio(p4["params_ratio"].get(d)), fmt_ratio(p4["flops_ratio"].get(d)), DASH])
    return _table(header, rows)


def _stability_table(groups: list[_Group]) -> list[str]:
    header = ["method", *[g.label for g in groups]]
    rows = []
    for method in CURVE_METHODS:
        row, any_value = [method], False
        for g in groups:
            runs = [r for s_r in g.runs.get(method, {}).values() for r in s_r.values()]
            st = [s for s in (stability(r) for r in runs) if s is not None]
            if st:
                any_value = True
                row.append(f"{np.mean([s[0] for s in st]):.4f} / {np.mean([s[1] for s in st]):.4f} "
                           f"({len(st)} runs, {min(s[2] for s in st)}-{max(s[2] for s in st)} pts)")
            else:
                row.append(DASH)
        if any_value or method in ("student-alone", "P-KDGAN-II-23"):
            rows.append(row)
    return _table(header, rows)


def _jpeg_effect(groups: list[_Group]) -> list[str]:
    exact = next((g for g in groups if g.dataset == "cifar10" and g.variant == "exact-subset"), None)
    jpeg = next((g for g in groups if g.dataset == "cifar10" and g.variant == "jpeg-subset"), None)
    if exact is None or jpeg is None:
        return []
    header = ["method", "pairs (class x seed)", "mean AUROC exact", "mean AUROC JPEG", "mean JPEG - exact",
              "mean abs diff", "max abs diff"]
    rows = []
    for method in sorted(set(exact.runs) & set(jpeg.runs), key=lambda m: (CURVE_METHODS + ("ocsvm", "kde")).index(m)
                         if m in CURVE_METHODS + ("ocsvm", "kde") else 99):
        diffs, ex, jp = [], [], []
        for c, s_r in exact.runs[method].items():
            for s, r in s_r.items():
                other = jpeg.runs[method].get(c, {}).get(s)
                if other is not None:
                    ex.append(r["auroc_last"])
                    jp.append(other["auroc_last"])
                    diffs.append(other["auroc_last"] - r["auroc_last"])
        if diffs:
            rows.append([method, len(diffs), fmt_auroc(float(np.mean(ex))), fmt_auroc(float(np.mean(jp))),
                         f"{np.mean(diffs):+.4f}", f"{np.mean(np.abs(diffs)):.4f}", f"{np.max(np.abs(diffs)):.4f}"])
    return ["### What the JPEG copy does to CIFAR-10 AUROC (same 4000/1000 images)", "",
            "Runs on the exact 4000/1000-image subset and on the same images decoded from the JPEG-recompressed "
            "copy, same budget, seeds and classes:", "", *_table(header, rows), ""]


CONTROLLED_FORMAT = "gankd-controlled-runs"


def controlled_section(path: str | Path) -> list[str]:
    """Markdown for a file of controlled runs (``results/gap_study.py`` writes one): one factor changed at a time.

    Each run is named ``METHOD/VARIANT``; its change is measured (in AUROC points) against the run named by its
    ``base`` field, by default ``METHOD/base``. The spread column is max - min over the last evaluated epochs, to set each change against the
    epoch-to-epoch swing of a single run.
    """
    study = json.loads(Path(path).read_text())
    if study.get("format") != CONTROLLED_FORMAT:
        raise ValueError(f"{path} is not a controlled-runs file (format {study.get('format')!r}, "
                         f"expected {CONTROLLED_FORMAT!r})")
    runs = study["runs"]
    header = ["run", "change", "AUROC (last epoch)", "vs its base (pts)",
              f"max - min over last {STABILITY_EPOCHS} evaluated", "wall s"]
    rows = []
    for name, r in runs.items():
        method = name.split("/")[0]
        base_name = r.get("base", f"{method}/base")
        base = runs.get(base_name)
        delta = DASH if base is None or name == base_name else f"{100 * (r['auroc_last'] - base['auroc_last']):+.2f}"
        tail = r["auroc_per_epoch"][-STABILITY_EPOCHS:]
        spread = f"{max(tail) - min(tail):.4f}" if len(tail) > 1 else DASH
        rows.append([name, r["factor"], fmt_auroc(r["auroc_last"]), delta, spread, f"{r['wall_s']:.0f}"])
    dataset = study["dataset"]
    return ["## Controlled runs on the largest gaps", "",
            f"{DATASET_LABELS.get(dataset, dataset)}, normal class {CLASS_NAMES[dataset][study['normal_class']]}, "
            f"seed {study['seed']}, {study['test_images']} test images; baseline: {study['baseline']}. "
            f"{study['protocol'][0].upper()}{study['protocol'][1:]}. From `{path}`, written by `{study['command']}`. "
            "One class and one seed: a change smaller than the run's own epoch-to-epoch spread is not a finding.",
            "", *_table(header, rows), ""]


def _span(values: Sequence[int]) -> str:
    return DASH if not values else str(values[0]) if values[0] == values[-1] else f"{values[0]}-{values[-1]}"


def _plural(n: Any, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _header(records: list[dict], by_budget: dict[str, list[_Group]], paper: dict, command: str | None,
            dirs: list[str]) -> list[str]:
    budgets = sorted(by_budget)
    commands = sorted({r["command"] for r in records if r.get("command")})
    bn = sorted({str(r.get("bn_mode_at_test")) for r in records if r.get("bn_mode_at_test")})
    lossy = any(r.get("lossy_cifar10_jpeg") for r in records)
    lines = [
        "# P-KDGAN reproduction: Tables 2-4 and Figure 2",
        "",
        f"Generated by `gankd_ganomaly.report` on {_dt.date.today().isoformat()} from {len(records)} run record(s) "
        f"in {', '.join(f'`{d}`' for d in dirs)}. Every figure below comes from those records or, in the "
        "\"(paper)\" columns, from the paper's Tables 2-4 as copied in `gankd_ganomaly/paper_figures.json` "
        f"(source: {paper['source']}). Nothing is typed in by hand.",
        "",
        "**Protocol.** AUROC of the LAST epoch on the test split, as the paper reports (no epoch and no seed is "
        "selected by test AUROC). Mean ± sample std over seeds; a cell with one run shows that run; \"—\" means "
        "no run. Drops are teacher minus student AUROC in points over paired (class, seed) runs, averaged over each "
        "class's seeds, then over classes.",
        "",
        f"**Batch norm at test time:** {', '.join(bn) or DASH} (`eval` = running statistics; the published "
        "GANomaly code scores in `batch` mode).",
        "",
        "**Budgets:**",
        "",
    ]
    for b in budgets:
        spec = next((r.get("budget_spec") for r in records if r.get("budget") == b), None) or {}
        known = BUDGETS.get(b)
        lines.append(f"- `{b}`: teacher {_plural(spec.get('teacher_epochs'), 'epoch')}, students "
                     f"{_plural(spec.get('student_epochs'), 'epoch')} per stage, batch {spec.get('batch_size')}, "
                     f"Adam lr {spec.get('lr')}, train images "
                     f"{spec.get('max_train_images') or 'all'} per class"
                     f"{' (first N in file order)' if spec.get('max_train_images') else ''}, test images "
                     f"{spec.get('max_test_images') or 'all'}, AUROC every {spec.get('teacher_eval_every')} "
                     f"(teacher) / {spec.get('student_eval_every')} (students) epochs. "
                     f"{spec.get('description') or (known.description if known else '')}")
    if any(b != "paper" for b in budgets):
        lines += ["", "Budgets other than `paper` train far less than the paper (fewer epochs, a train "
                  "subsample, a larger batch): their figures test the method under that budget, not the paper's "
                  "exact numbers."]
    lines += ["", "**Commands:**", ""]
    lines += [f"- `{c}`" for c in commands] or ["- (records written through the Python API, no command line)"]
    if command:
        lines.append(f"- report: `{command}`")
    lines += ["", "**Data:**", ""]
    for b in budgets:
        for g in by_budget[b]:
            rs = [r for m in g.runs.values() for s_r in m.values() for r in s_r.values()] + g.failed
            sources = sorted({r.get("data_source", "?") for r in rs})
            used = sorted({r["train_images"] for r in rs if r.get("train_images")})
            available = sorted({r["train_images_available"] for r in rs if r.get("train_images_available")})
            subsampled = any(r.get("train_subsample") for r in rs)
            train = (f"{_span(used)} normal-class training images per class"
                     + (f" (the first ones in file order, of {_span(available)} available)" if subsampled else
                        " (all of them)"))
            tests = sorted({r.get("test_images") for r in rs if r.get("test_images")})
            test_sub = next((r["test_subsample"] for r in rs if r.get("test_subsample")), None)
            lines.append(f"- {g.label} (budget `{b}`): {'; '.join(sources)}. Train: {train}. "
                         f"Test images: {', '.join(map(str, tests))}"
                         + (f" (subsample: {test_sub})" if test_sub else "") + ".")
    if lossy:
        lines += ["", "**CIFAR-10 from the JPEG copy is lossy.** Rows labelled \"JPEG\" / \"lossy\" were measured on "
                  "a JPEG-recompressed copy of CIFAR-10 (quality about 75; mean absolute pixel error 5.8/255 against "
                  "the original): close to, but not the same as, figures on the original files."]
    failed = [r for b in budgets for g in by_budget[b] for r in g.failed]
    total_s = sum(float(r.get("wall_s") or 0) for r in records)
    failed_names = ", ".join("{}/{}/{}/seed{}".format(r["dataset"], r["normal_class"], r["method"], r["seed"])
                             for r in failed)
    lines += ["", f"**Runs:** {len(records)} records, {len(failed)} failed (NaN/Inf; excluded from every mean"
              + (f": {failed_names}" if failed else "")
              + f"); total training/evaluation time in the records {total_s / 3600:.2f} h.", ""]
    return lines


def write_report(records_dir: str | Path | Sequence[str | Path], out_md: str | Path = "docs/results.md",
                 plots_dir: str | Path | None = "docs/figures", *, command: str | None = None,
                 controlled: Sequence[str | Path] = (), beyond: Sequence[str | Path] = ()) -> dict:
    """Write the markdown report (and Figure-2 PNGs unless ``plots_dir`` is None); returns what was written.

    ``controlled``: files of controlled runs (:func:`controlled_section`), each rendered as a section at the end.
    """
    dirs = [records_dir] if isinstance(records_dir, (str, Path)) else list(records_dir)
    records = load_records(dirs)
    paper = paper_figures()
    out_md = Path(out_md)
    by_budget = _group(records)
    lines = _header(records, by_budget, paper, command, [str(d) for d in dirs])
    plots: list[str] = []
    stats: dict[str, dict] = {}
    if not records:
        lines += ["No records found: run `gankd-ganomaly reproduce ...` first.", ""]
    p4 = paper["table4_compression"]
    for budget in sorted(by_budget):
        groups = by_budget[budget]
        h = "##" if len(by_budget) == 1 else "###"
        lines += [f"## Budget `{budget}`", ""] if len(by_budget) > 1 else []
        lines += [f"{h} Table 2: teacher AUROC per normal class, with OC-SVM and KDE baselines", "",
                  "Ours: OC-SVM (RBF, gamma='scale', nu=0.1) and KDE (Gaussian, 64 PCA components fit on the train "
                  "images, bandwidth by 5-fold CV log-likelihood on the train images) on raw pixels, same images as "
                  "the GANs. The paper's OC-SVM/KDE/teacher columns are its Table 2 (CIFAR-10 and MNIST only).", ""]
        for g in groups:
            if any(g.runs.get(m) for m in ("teacher", "ocsvm", "kde")):
                lines += _table2(g, paper)
        lines += [f"{h} Table 3: mean AUROC over normal classes of each distillation method", "",
                  "Cells: mean over classes (± std over seeds when every seed covers the same classes), then "
                  "(classes present / 10 x seeds). The paper averages all 10 classes over 3 trials; a mean over "
                  "fewer classes is not comparable with it. Paper: Table 3; its teacher row is Table 4's teacher, "
                  "* = Table 4's teacher AUROC minus its student-alone drop.", "", *_table3(groups, paper), "",
                  "Figure-2 classes, where every method is run (mean ± std over seeds, and stability):", "",
                  *_figure2_table(groups)]
        lines += [f"{h} Table 4: compression and AUROC drop", "",
                  "Params and FLOPs of the generator (the part that scores), counted by fvcore as in the records; "
                  "the paper's rows from its Table 4. * = derived from the paper's own figures, not printed in it: "
                  "student AUROC = teacher AUROC - drop, student params = teacher params / ratio.", "",
                  *_table4(groups, paper), ""]
        lines += [f"{h} Stability: spread of AUROC over the last {STABILITY_EPOCHS} evaluated epochs", "",
                  "Each cell: mean over runs of the std / of max - min of the last (up to) "
                  f"{STABILITY_EPOCHS} evaluated AUROCs of a run (runs with fewer than 2 evaluated epochs are left "
                  "out); lower is steadier.", "", *_stability_table(groups), ""]
        lines += [f"{h} Does P-KDGAN-II-23 beat the student trained alone?", ""]
        for g in groups:
            w = wilcoxon_gain(g)
            sa = p4["student_trained_alone_auroc_drop_pct"].get(g.dataset)
            pk = p4["student_pkdgan_auroc_drop_pct"].get(g.dataset)
            paper_gain = sa - pk if sa is not None and pk is not None else None
            stats[f"{budget}/{g.slug}"] = w
            lines += [f"- {_gain_sentence(g, w, paper_gain)}"]
        lines += ["", "Per class: mean over the seeds where both runs exist; \"reproduced\" requires a positive mean "
                  f"gain with one-sided p < {ALPHA}.", ""]
        stage_rows = _stage_table(groups)
        if stage_rows:
            lines += ["Where the P-KDGAN-II-23 student stands at the end of each stage (AUROC of the stage's last "
                      "epoch, mean over classes of per-class seed means), next to the student trained alone:", "",
                      *stage_rows, ""]
        lines += _jpeg_effect(groups)
        if plots_dir is not None:
            figs = []
            for g in groups:
                c = FIGURE2_CLASSES.get(g.dataset)
                if c is None or not any(g.runs.get(m, {}).get(c) for m in CURVE_METHODS):
                    continue
                path = Path(plots_dir) / f"fig2_{g.slug}_c{c}_{budget}.png"
                drawn = plot_figure2(g, c, path)
                plots.append(str(path))
                rel = os.path.relpath(path, out_md.parent)
                figs += [f"![Figure 2, {g.label}, class {CLASS_NAMES[g.dataset][c]}]({rel})", "",
                         f"*{g.label}, normal class {CLASS_NAMES[g.dataset][c]}: test AUROC per epoch of "
                         f"{', '.join(drawn)} (mean over seeds; band: min-max).*", ""]
            if figs:
                lines += [f"{h} Figure 2: AUROC during training", "",
                          "The paper's Figure 2 shows automobile (CIFAR-10), 5 (MNIST) and bag (Fashion-MNIST). "
                          "A method evaluated only at its last epoch (the teacher under the `cpu` budget) is drawn "
                          "as a dashed reference line.", "", *figs]
    if beyond:
        beyond_groups = _group(load_records(list(beyond)))
        for budget in sorted(beyond_groups):
            section, beyond_stats = _beyond_paper(beyond_groups[budget], by_budget.get(budget, []))
            lines += section
            stats.update({f"{budget}/beyond/{k}": v for k, v in beyond_stats.items()})
    for path in controlled:
        lines += controlled_section(path)
    out_md.parent.mkdir(parents=True, exist_ok=True)
    from gankd import atomic_write_text

    atomic_write_text(out_md, "\n".join(lines).rstrip() + "\n")
    return {"markdown": str(out_md), "plots": plots, "records": len(records), "statistics": stats}
