"""The report's sections: the paper's Tables 2-4 and Figure 2 next to ours, stability, the JPEG copy's effect,
the controlled runs and the section beyond the paper."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..data import dataset_spec
from .budgets import BUDGETS
from .sweep import FIGURE2_CLASSES
from .records import (ALPHA, _cell, CURVE_METHODS, DASH, DATASET_LABELS, fmt_auroc, fmt_count, fmt_mean_std, fmt_paper,
                      fmt_pp, fmt_ratio, _Group, _mean_cell, STABILITY_EPOCHS, _table, TABLE3_METHODS)
from .statistics import (BEYOND_RECIPES, beyond_paper_statistics, _class_mean_drop, _points, stability,
                         stage_end_aurocs, _test_cell)

# What each recipe of the section beyond the paper is, and what its control holds fixed (no teacher).
_BEYOND_TEXT: dict[str, tuple[str, str, str]] = {
    "recommended": (
        "## Beyond the paper: the `recommended` recipe, version 1",
        "These records ran `recommended` version 1: KDGAN-2 for M epochs with K = 30 * l1(x_hat), at the "
        "stage's learning rate (version 2, the default recipe section below, adds the width rule). It was chosen on development runs that are not in this table "
        "(Figure-2 classes at seeds 100-101, `docs/distillation.md`). The teacher, the student alone, the "
        "reconstruction control (the student alone with w_con = 40: the extra reconstruction weight the recipe "
        "adds, without a teacher) and `recommended` come from one sweep of their own, all students distilling "
        "from the same teachers; the P-KDGAN-II-23 column is the paper rows' (their own teachers, trained by "
        "the same code and config on another machine).",
        "control (w_con 40)"),
    "reconstruction-fast": (
        "### The student at five times the learning rate: `reconstruction-fast`",
        "`reconstruction-fast` is `recommended` with the student's generator at 5x the stage's learning rate "
        "(its discriminator and the teacher keep it). Its control, `student-alone-fast`, is the student alone "
        "with the same learning rates and no teacher. Both were chosen on development runs that are not in this "
        "table (Figure-2 classes at seeds 100-102, `docs/distillation.md`), and ran in the same sweep folder, "
        "from the same teachers, as the rows above.",
        "control (5x lr, no teacher)"),
}


def _bar_lines(group_stats: list[tuple[_Group, dict]]) -> list[str]:
    """Whether a recipe clears the bar it is held to, per dataset, and by how much it falls short where not."""
    out = []
    for g, st in group_stats:
        w = st["vs_alone"]
        gain, p = w["mean_gain"], w["p_one_sided"]
        p_text = "n/a" if p is None else format(p, ".4f")
        if g.dataset in ("mnist", "cifar10"):
            ok = gain is not None and gain > 0 and p is not None and p < ALPHA
            parts = [f"gain {_points(gain)} at p={p_text}: {'met' if ok else 'not met'}"]
            alone_gap, gap = st["teacher_gap_alone"], st["teacher_gap_recipe"]
            if g.dataset == "mnist" and alone_gap is not None and gap is not None:
                parts.append(f"teacher gap {_points(gap)} against at most {_points(alone_gap / 2)}: "
                             f"{'met' if gap <= alone_gap / 2 else 'not met'}")
        elif g.dataset == "fmnist":
            ok = gain is not None and gain >= -0.005
            parts = [f"gain {_points(gain)} against at least -0.50: {'met' if ok else 'not met'}"]
        else:
            continue
        out.append(f"  - {g.label}: " + "; ".join(parts) + ".")
    if not out:
        return []
    return ["- The bar: a gain over the student alone with one-sided p < 0.05 on MNIST and CIFAR-10, at most 0.5 "
            "points below it on Fashion-MNIST, and on MNIST a teacher gap at most half the student alone's.", *out]


def _beyond_paper(groups: list[_Group], paper_groups: list[_Group]) -> tuple[list[str], dict]:
    """Each recipe of :data:`BEYOND_RECIPES` against the student alone and its control, from their own sweep
    (``groups``, same teachers), next to the paper's P-KDGAN-II-23 rows (``paper_groups``). Statistics are keyed
    by the group's slug for ``recommended``, by ``recipe/slug`` for the others."""
    paper = {(g.dataset, g.variant): g for g in paper_groups}
    lines, stats = [], {}
    for recipe, control in BEYOND_RECIPES.items():
        heading, intro, control_label = _BEYOND_TEXT[recipe]
        rows, sentences, group_stats = [], [], []
        for g in groups:
            if not g.runs.get(recipe):
                continue
            st = stats[g.slug if recipe == "recommended" else f"{recipe}/{g.slug}"] = beyond_paper_statistics(g, recipe)
            group_stats.append((g, st))
            pg = paper.get((g.dataset, g.variant))
            rows.append([g.label, _mean_cell(g, "teacher"), _mean_cell(g, "student-alone"),
                         _mean_cell(pg, "P-KDGAN-II-23") if pg is not None else DASH, _mean_cell(g, control),
                         _mean_cell(g, recipe), _test_cell(st["vs_alone"]), _test_cell(st["vs_control"]),
                         f"{_points(st['teacher_gap_alone'])} -> {_points(st['teacher_gap_recipe'])}"])
            w, wc = st["vs_alone"], st["vs_control"]
            won = w["mean_gain"] is not None and w["mean_gain"] > 0 and w["p_one_sided"] is not None \
                and w["p_one_sided"] < ALPHA
            sentences.append(
                f"- {g.label}: `{recipe}` {'**beats**' if won else '**does not beat**'} the student trained alone "
                f"({_points(w['mean_gain'])} points, one-sided Wilcoxon p="
                f"{'n/a' if w['p_one_sided'] is None else format(w['p_one_sided'], '.4f')} over {w['n']} classes); "
                f"against its {control_label} it gains {_points(wc['mean_gain'])} (p="
                f"{'n/a' if wc['p_one_sided'] is None else format(wc['p_one_sided'], '.4f')}). The teacher leads the "
                f"student alone by {_points(st['teacher_gap_alone'])} points, the control by "
                f"{_points(st['teacher_gap_control'])} and `{recipe}` by {_points(st['teacher_gap_recipe'])}.")
        if rows:
            sentences += _bar_lines(group_stats)
            lines += [heading, "", intro + " Cells: mean over classes (± std over seeds), classes x seeds. Gains: mean "
                      "over classes of the per-class seed means, one-sided Wilcoxon over classes. Gap: teacher - "
                      f"student, alone -> `{recipe}`.", "",
                      *_table(["data", "teacher", "student alone", "P-KDGAN-II-23 (paper)", control_label, recipe,
                               "gain vs alone", "gain vs control", "teacher gap"], rows), "", *sentences, ""]
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


def _table2(g: _Group, paper: dict) -> list[str]:
    p2 = paper["table2_teacher_auroc"].get(g.dataset if g.dataset in ("cifar10", "mnist") else "", {})
    cols = paper["table2_teacher_auroc"]["columns"]
    i_svm, i_kde, i_ours = cols.index("OCSVM"), cols.index("KDE"), cols.index("Ours")
    header = ["normal class", "OC-SVM (ours)", "KDE (ours)", "teacher (ours)", "OC-SVM (paper)", "KDE (paper)",
              "teacher (paper)"]
    rows = []
    for c, name in enumerate(dataset_spec(g.dataset).class_names):
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
        lines += [f"### {g.label}, normal class {dataset_spec(g.dataset).class_names[c]}", "", *_table(header, rows), ""]
    return lines


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
    """Markdown for a file of controlled runs (``scripts/gap_study.py`` writes one): one factor changed at a time.

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
            f"{DATASET_LABELS.get(dataset, dataset)}, normal class {dataset_spec(dataset).class_names[study['normal_class']]}, "
            f"seed {study['seed']}, {study['test_images']} test images; baseline: {study['baseline']}. "
            f"{study['protocol'][0].upper()}{study['protocol'][1:]}. From `{path}`, written by `{study['command']}`. "
            "One class and one seed: a change smaller than the run's own epoch-to-epoch spread is not a finding.",
            "", *_table(header, rows), ""]


def _span(values: Sequence[int]) -> str:
    return DASH if not values else str(values[0]) if values[0] == values[-1] else f"{values[0]}-{values[-1]}"


def _plural(n: Any, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


FULL_DATA_METHODS = ("teacher", "student-alone", "P-KDGAN-II-23", "recommended")


def _seed_cell(values: list[float]) -> str:
    return fmt_mean_std(values) if values else DASH


def _seed_diffs(g: _Group, c: int, a: str, b: str) -> list[tuple[int, float]]:
    """(seed, AUROC of ``a`` - AUROC of ``b``) for normal class ``c``, over the seeds where both ran."""
    return [(s, x - y) for cls, s, x, y in g.pairs(a, b) if cls == c]


def _pair_summary(name: str, values: list[float], versus: str = "student alone") -> str:
    """One line: mean of per-(class, seed) differences ``name - versus`` and how many are positive."""
    if not values:
        return f"- {name}: no paired runs yet."
    wins = sum(d > 0 for d in values)
    return (f"- {name} - {versus}: mean {_points(float(np.mean(values)))} points over {len(values)} "
            f"(class, seed) pairs, positive in {wins} of {len(values)}.")


def full_data_section(groups: list[_Group]) -> list[str]:
    """Markdown for sweeps at the ``full-data`` budget: each (dataset, class) with its teacher, the student alone,
    the paper's P-KDGAN-II-23 and ``recommended``, all from the same teachers, and the per-seed gains."""
    groups = [g for g in groups if g.budget == "full-data" and g.runs.get("teacher")]
    if not groups:
        return []
    rows, gains, paper_gains = [], [], []
    for g in groups:
        for c in g.classes("teacher"):
            rec, pap = _seed_diffs(g, c, "recommended", "student-alone"), _seed_diffs(g, c, "P-KDGAN-II-23", "student-alone")
            gains += [d for _, d in rec]
            paper_gains += [d for _, d in pap]
            gap_alone = [d for _, d in _seed_diffs(g, c, "teacher", "student-alone")]
            gap_rec = [d for _, d in _seed_diffs(g, c, "teacher", "recommended")]
            rows.append([f"{g.label} {dataset_spec(g.dataset).class_names[c]}",
                         *(_seed_cell(g.values(m, c)) for m in FULL_DATA_METHODS),
                         ", ".join(f"s{s} {_points(d)}" for s, d in rec) or DASH,
                         ", ".join(f"s{s} {_points(d)}" for s, d in pap) or DASH,
                         f"{_points(float(np.mean(gap_alone)) if gap_alone else None)} -> "
                         f"{_points(float(np.mean(gap_rec)) if gap_rec else None)}"])
    flat = []
    for g in groups:
        for c in g.classes("teacher"):
            for s, r in sorted(g.runs["teacher"][c].items()):
                curve = [x for x in r.get("auroc_per_epoch") or [] if x is not None]
                if len(curve) >= 4:
                    flat.append(max(curve[-4:]) - min(curve[-4:]))

    return ["## Beyond the paper: a teacher worth distilling (`full-data` budget)", "",
            f"Budget `full-data`: {BUDGETS['full-data'].description.rstrip('.')}. Normal classes: "
            f"{'; '.join(f'{g.label} ' + ', '.join(dataset_spec(g.dataset).class_names[c] for c in g.classes('teacher')) for g in groups)}"
            ". Every student of a (class, seed) distils from that seed's teacher. The recipe was chosen on the cpu budget's development runs, before any of "
            "these runs existed. Cells: last-epoch AUROC, mean ± std over seeds. Gains and gaps "
            "in AUROC points, per seed.", "",
            *_table(["data, normal class", "teacher", "student alone", "P-KDGAN-II-23", "recommended",
                     "recommended - alone", "P-KDGAN-II-23 - alone", "teacher gap alone -> recommended"], rows), "",
            _pair_summary("`recommended`", gains), _pair_summary("P-KDGAN-II-23", paper_gains),
            f"- Teacher curve: AUROC spread (max - min) over its last 4 epochs, mean "
            f"{f'{100 * float(np.mean(flat)):.2f}' if flat else DASH} points over {len(flat)} teachers (a flat curve "
            "has a small spread).",
            "- With three classes these pairs are a description, not a test: they are not independent classes.", "",
            *_full_data_recipes(groups)]


def _full_data_recipes(groups: list[_Group]) -> list[str]:
    """The other recipes of :data:`BEYOND_RECIPES` at the ``full-data`` budget, each with its control."""
    lines = []
    for recipe, control in BEYOND_RECIPES.items():
        if recipe == "recommended" or not any(g.runs.get(recipe) for g in groups):
            continue
        rows, gains, control_gains = [], [], []
        for g in groups:
            for c in g.classes(recipe):
                vs_alone, vs_control = _seed_diffs(g, c, recipe, "student-alone"), _seed_diffs(g, c, recipe, control)
                gains += [d for _, d in vs_alone]
                control_gains += [d for _, d in vs_control]
                rows.append([f"{g.label} {dataset_spec(g.dataset).class_names[c]}",
                             *(_seed_cell(g.values(m, c)) for m in ("student-alone", control, recipe)),
                             ", ".join(f"s{s} {_points(d)}" for s, d in vs_alone) or DASH,
                             ", ".join(f"s{s} {_points(d)}" for s, d in vs_control) or DASH])
        lines += [f"### `{recipe}` at the `full-data` budget", "",
                  f"`{recipe}` and its control `{control}` (no teacher) from the same teachers as the table above. "
                  "Gains in AUROC points, per seed.", "",
                  *_table(["data, normal class", "student alone", control, recipe, f"{recipe} - alone",
                           f"{recipe} - {control}"], rows), "",
                  _pair_summary(f"`{recipe}`", gains),
                  _pair_summary(f"`{recipe}`", control_gains, versus=f"`{control}`"), ""]
    return lines
