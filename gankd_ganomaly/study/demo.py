"""The main job on the embedded digits data: teacher, student alone, the tuned student alone, the ``paper`` and
``recommended`` students.

Digits (scikit-learn, 8x8 upsampled to 32x32, grayscale) need no download; the student
is the paper's MNIST student (2-4-8 channels). Each method trains from the same seed;
the ``paper`` recipe (P-KDGAN-II-23) runs KDGAN-2 then KDGAN-3 for ``student_epochs`` each,
the ``recommended`` recipe KDGAN-2 with K on the reconstruction and the width rule's per-layer rates for
``student_epochs``, both distilling from a copy of the trained teacher; ``student-alone-tuned`` is the student
alone with the same rule (the sweep's control). Nothing was chosen on this class: the recipe and the control's
factor come from development runs of the sweep (docs/distillation.md).

Every student trains at ``student_seeds`` seeds (default 3: seeds ``seed`` .. ``seed + 2``) and the table shows
their mean: on 128 images one seed's AUROC moves by 1-3 points, more than the students differ by.
"""
from __future__ import annotations

import sys
import time

import torch

import gankd

from ..data import load_one_class
from ..experiment import RunConfig, run

DEMO_STUDENTS = {"student-alone": "student alone", "student-alone-tuned": "student alone, tuned",
                 "P-KDGAN-II-23": "paper P-KDGAN-II-23", "recommended": "recommended"}
DEMO_DEFAULTS = {"normal_class": 3, "teacher_epochs": 15, "student_epochs": 15, "batch_size": 16, "lr": 0.0002,
                 "student_seeds": 3}


def run_demo(normal_class: int | None = None, teacher_epochs: int | None = None, student_epochs: int | None = None,
             batch_size: int | None = None, lr: float | None = None, seed: int = 0, bn_mode: str = "eval",
             student_seeds: int | None = None, verbose: bool = True) -> dict:
    """Returns the demo figures (AUROC of each model, the students' as the mean over their seeds, params, FLOPs,
    ratios, wall time) and every run's record (``runs[method]``: one record per seed)."""
    opts = {k: v for k, v in dict(normal_class=normal_class, teacher_epochs=teacher_epochs,
                                   student_epochs=student_epochs, batch_size=batch_size, lr=lr,
                                   student_seeds=student_seeds).items()
            if v is not None}
    o = {**DEMO_DEFAULTS, **opts}
    if o["student_seeds"] < 1:
        raise ValueError(f"student_seeds must be at least 1; got {o['student_seeds']}")
    seeds = list(range(seed, seed + o["student_seeds"]))
    start = time.perf_counter()
    data = load_one_class("digits", o["normal_class"])
    if verbose:
        print(f"data: {data.source}; normal class {data.class_name}: {len(data.train)} train images, "
              f"{len(data.test)} test images ({int((data.test_labels == 0).sum())} normal); "
              f"torch threads {torch.get_num_threads()}", file=sys.stderr, flush=True)
    base = RunConfig(dataset="digits", normal_class=o["normal_class"], method="teacher", epochs=o["teacher_epochs"],
                     batch_size=o["batch_size"], lr=o["lr"], seed=seed, bn_mode=bn_mode)
    records: dict[str, list[dict]] = {}
    t, teacher = run(base, data, verbose=verbose, log_prefix="[teacher] ")
    records["teacher"] = [t]
    from .sweep import CONTROL_METHODS

    for method in DEMO_STUDENTS:
        control = CONTROL_METHODS.get(method)  # a control: its base method and its own schedule
        records[method] = []
        for student_seed in seeds:  # each seed distils from the same teacher
            cfg = base.replace(method=control.base if control else method, epochs=o["student_epochs"],
                               seed=student_seed)
            schedule = control.schedule(method, cfg) if control else None
            record, _ = run(cfg, data, teacher, verbose=verbose, log_prefix=f"[{method} seed {student_seed}] ",
                            schedule=schedule)
            records[method].append(record)

    def mean_auroc(method: str) -> float:
        return float(sum(r["auroc_last"] for r in records[method]) / len(records[method]))

    s = records["P-KDGAN-II-23"][0]
    return {
        "dataset": "digits", "normal_class": o["normal_class"], "bn_mode_at_test": bn_mode, "seed": seed,
        "student_seeds": seeds,
        "teacher_auroc": t["auroc_last"],
        "student_alone_auroc": mean_auroc("student-alone"),
        "pkdgan_auroc": mean_auroc("P-KDGAN-II-23"),
        "recommended_auroc": mean_auroc("recommended"),
        "student_alone_tuned_auroc": mean_auroc("student-alone-tuned"),
        "student_aurocs": {m: [r["auroc_last"] for r in records[m]] for m in DEMO_STUDENTS},
        "teacher_params": t["params"], "teacher_flops": t["flops"],
        "student_params": s["params"], "student_flops": s["flops"],
        "params_ratio": t["params"] / s["params"], "flops_ratio": t["flops"] / s["flops"],
        "wall_s": time.perf_counter() - start,
        "run_wall_s": {m: sum(r["wall_s"] for r in rs) for m, rs in records.items()},
        "options": o, "version": gankd.__version__,
        "runs": {m: [{k: v for k, v in r.items() if k != "history"} for r in rs] for m, rs in records.items()},
    }


def print_demo_table(result: dict) -> None:
    """The demo's table: per model its widths, epochs per stage, AUROC (students: mean over their seeds, then each
    seed's), size and compression, wall time summed over seeds."""
    rows = [("teacher", "teacher")] + [(label, method) for method, label in DEMO_STUDENTS.items()]
    seeds = result["student_seeds"]
    print(f"\ndigits, normal class {result['normal_class']}, AUROC of the last epoch (batch norm at test: "
          f"{result['bn_mode_at_test']}); teacher seed {result['seed']}, students: mean of seeds "
          f"{', '.join(map(str, seeds))}")
    print(f"{'model':22}{'widths':>11}{'epochs':>8}{'AUROC':>8}  {'per seed':<{7 * len(seeds) + 1}}{'params':>11}"
          f"{'FLOPs':>12}{'params x':>10}{'FLOPs x':>9}{'wall s':>8}")
    t_params, t_flops = result["teacher_params"], result["teacher_flops"]
    for name, method in rows:
        runs = result["runs"][method]
        r = runs[0]
        widths = "-".join(map(str, r["config"]["student_widths" if r["method"] != "teacher" else "teacher_widths"]))
        epochs = "+".join(str(s["epochs"]) for s in r["schedule"]["stages"])
        aurocs = [x["auroc_last"] for x in runs]
        per_seed = " ".join(f"{a:.4f}" for a in aurocs) if method != "teacher" else ""  # 1.0000 stays whole
        print(f"{name:22}{widths:>11}{epochs:>8}{sum(aurocs) / len(aurocs):>8.4f}  {per_seed:<{7 * len(seeds) + 1}}"
              f"{r['params']:>11,}{r['flops']:>12,}{t_params / r['params']:>9.2f}x{t_flops / r['flops']:>8.2f}x"
              f"{result['run_wall_s'][method]:>8.1f}")
    print(f"total wall time {result['wall_s']:.1f}s")


