"""The main job on the embedded digits data: teacher, student alone, the tuned student alone, the ``paper`` and
``recommended`` students.

Digits (scikit-learn, 8x8 upsampled to 32x32, grayscale) need no download; the student
is the paper's MNIST student (2-4-8 channels). Each method trains from the same seed;
the ``paper`` recipe (P-KDGAN-II-23) runs KDGAN-2 then KDGAN-3 for ``student_epochs`` each,
the ``recommended`` recipe KDGAN-2 with K on the reconstruction and the width rule's per-layer rates for
``student_epochs``, both distilling from a copy of the trained teacher; ``student-alone-tuned`` is the student
alone with the same rule (the sweep's control). Nothing was chosen on this class: the recipe and the control's
factor come from development runs of the sweep (docs/distillation.md).
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
DEMO_DEFAULTS = {"normal_class": 3, "teacher_epochs": 15, "student_epochs": 15, "batch_size": 16, "lr": 0.0002}


def run_demo(normal_class: int | None = None, teacher_epochs: int | None = None, student_epochs: int | None = None,
             batch_size: int | None = None, lr: float | None = None, seed: int = 0, bn_mode: str = "eval",
             verbose: bool = True) -> dict:
    """Returns the demo figures (AUROC of each model, params, FLOPs, ratios, wall time) and configs."""
    opts = {k: v for k, v in dict(normal_class=normal_class, teacher_epochs=teacher_epochs,
                                   student_epochs=student_epochs, batch_size=batch_size, lr=lr).items()
            if v is not None}
    o = {**DEMO_DEFAULTS, **opts}
    start = time.perf_counter()
    data = load_one_class("digits", o["normal_class"])
    if verbose:
        print(f"data: {data.source}; normal class {data.class_name}: {len(data.train)} train images, "
              f"{len(data.test)} test images ({int((data.test_labels == 0).sum())} normal); "
              f"torch threads {torch.get_num_threads()}", file=sys.stderr, flush=True)
    base = RunConfig(dataset="digits", normal_class=o["normal_class"], method="teacher", epochs=o["teacher_epochs"],
                     batch_size=o["batch_size"], lr=o["lr"], seed=seed, bn_mode=bn_mode)
    records = {}
    records["teacher"], teacher = run(base, data, verbose=verbose, log_prefix="[teacher] ")
    from .sweep import CONTROL_METHODS

    for method in DEMO_STUDENTS:
        control = CONTROL_METHODS.get(method)  # a control: its base method and its own schedule
        cfg = base.replace(method=control.base if control else method, epochs=o["student_epochs"])
        schedule = control.schedule(method, cfg) if control else None
        records[method], _ = run(cfg, data, teacher, verbose=verbose, log_prefix=f"[{method}] ", schedule=schedule)
    t, s = records["teacher"], records["P-KDGAN-II-23"]
    return {
        "dataset": "digits", "normal_class": o["normal_class"], "bn_mode_at_test": bn_mode, "seed": seed,
        "teacher_auroc": t["auroc_last"],
        "student_alone_auroc": records["student-alone"]["auroc_last"],
        "pkdgan_auroc": s["auroc_last"],
        "recommended_auroc": records["recommended"]["auroc_last"],
        "student_alone_tuned_auroc": records["student-alone-tuned"]["auroc_last"],
        "teacher_params": t["params"], "teacher_flops": t["flops"],
        "student_params": s["params"], "student_flops": s["flops"],
        "params_ratio": t["params"] / s["params"], "flops_ratio": t["flops"] / s["flops"],
        "wall_s": time.perf_counter() - start,
        "run_wall_s": {m: r["wall_s"] for m, r in records.items()},
        "options": o, "version": gankd.__version__,
        "runs": {m: {k: v for k, v in r.items() if k != "history"} for m, r in records.items()},
    }


def print_demo_table(result: dict) -> None:
    rows = [("teacher", result["runs"]["teacher"])]
    rows += [(label, result["runs"][method]) for method, label in DEMO_STUDENTS.items()]
    print(f"\ndigits, normal class {result['normal_class']}, AUROC of the last epoch "
          f"(batch norm at test: {result['bn_mode_at_test']})")
    print(f"{'model':22}{'widths':>11}{'epochs':>8}{'AUROC':>8}{'params':>12}{'FLOPs':>13}"
          f"{'params x':>10}{'FLOPs x':>9}{'wall s':>8}")
    t_params, t_flops = result["teacher_params"], result["teacher_flops"]
    for name, r in rows:
        widths = "-".join(map(str, r["config"]["student_widths" if r["method"] != "teacher" else "teacher_widths"]))
        epochs = "+".join(str(s["epochs"]) for s in r["schedule"]["stages"])
        print(f"{name:22}{widths:>11}{epochs:>8}{r['auroc_last']:>8.4f}{r['params']:>12,}{r['flops']:>13,}"
              f"{t_params / r['params']:>9.2f}x{t_flops / r['flops']:>8.2f}x{r['wall_s']:>8.1f}")
    print(f"total wall time {result['wall_s']:.1f}s")


