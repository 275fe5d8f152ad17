"""Development probe: per-layer learning rates (and init scales) from the student's widths relative to the
teacher's (:mod:`gankd.width_rule`), for the student alone and for KDGAN-2 with K = 30 * l1(x_hat) (and K's
variants in ``BASES``).

On cases whose teachers a sweep trained (``--sweep-out`` at ``--budget``, default ``cpu``; the Figure-2 classes
at seeds >= 100, which no reported run uses), trains the student for 10 epochs as the cpu budget does. Candidate names:
``BASE[+RULE][*FACTOR]`` with BASE ``alone`` (the student alone) or ``xhat30`` (KDGAN-2, K = 30 * l1(x_hat)),
RULE ``mup`` / ``fan-in`` (``Stage(lr_rule={"name": RULE, "reference": teacher widths})``) and FACTOR a global
multiplier of the student's learning rate (both of its networks), e.g. ``alone+mup*0.5``. Appends one row per
run to ``--out`` (re-running skips rows already there):

    PYTHONPATH=. python scripts/width_rule_probe.py --sweep-out results/default-dev \
        --cases mnist:5:100,fmnist:8:100,cifar10:1:100 --candidates alone,alone+mup,xhat30+mup \
        --out results/width_rule_probe.json
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gankd_ganomaly.experiment.train as train  # noqa: E402
from gankd import OptimizerConfig, Schedule, Stage  # noqa: E402
from gankd.width_rule import LR_RULES  # noqa: E402
from gankd_ganomaly.networks import TEACHER_WIDTHS  # noqa: E402
from dev_cases import append_row, BUDGET as budget, case_parser, load_case, parse_cases, read_rows  # noqa: E402

XHAT30 = {"output": "x_hat", "loss": "l1", "weight": 30.0}
BASES = {"alone": ("student-alone", None),
         "xhat30": ("KDGAN-2", {"terms": [XHAT30]}),
         # K also on the teacher's reconstructions of inputs that are not normal images: a quarter turn, a blend of
         # two images, noise. The teacher's failures there are what scores anomalies; plain K sees normal images only.
         "xhat30-rot": ("KDGAN-2", {"terms": [XHAT30, {"output": "rot/x_hat", "loss": "l1", "weight": 30.0}],
                                    "views": {"rot": {"fn": "rot90", "k": 1}}}),
         "xhat30-mix": ("KDGAN-2", {"terms": [XHAT30, {"output": "mix/x_hat", "loss": "l1", "weight": 30.0}],
                                    "views": {"mix": {"fn": "mixup", "weight": 0.5}}}),
         "xhat30-noise": ("KDGAN-2", {"terms": [XHAT30, {"output": "noisy/x_hat", "loss": "l1", "weight": 30.0}],
                                      "views": {"noisy": {"fn": "noise", "std": 0.5}}}),
         "xhat30-rot2": ("KDGAN-2", {"terms": [XHAT30, {"output": "rot2/x_hat", "loss": "l1", "weight": 30.0}],
                                     "views": {"rot2": {"fn": "rot90", "k": 2}}}),
         "xhat30-rot13": ("KDGAN-2", {"terms": [XHAT30, {"output": "rot/x_hat", "loss": "l1", "weight": 15.0},
                                                {"output": "rot3/x_hat", "loss": "l1", "weight": 15.0}],
                                      "views": {"rot": {"fn": "rot90", "k": 1}, "rot3": {"fn": "rot90", "k": 3}}}),
         "xhat30-vflip": ("KDGAN-2", {"terms": [XHAT30, {"output": "vflip/x_hat", "loss": "l1", "weight": 30.0}],
                                      "views": {"vflip": {"fn": "flip", "dim": -2}}}),
         # ... or on the latents the score is computed from, now that the width rule lets the student move:
         # Eq. 6's K (l2 on z1 and z2, l1 on x_hat, weights 1), or K = 30 * l1(x_hat) plus l2 / cosine on z1 and z2.
         "paperK": ("KDGAN-2", {"terms": [{"output": "z1", "loss": "l2", "weight": 1.0},
                                          {"output": "x_hat", "loss": "l1", "weight": 1.0},
                                          {"output": "z2", "loss": "l2", "weight": 1.0}]}),
         "xhat30-z": ("KDGAN-2", {"terms": [XHAT30, {"output": "z1", "loss": "l2", "weight": 1.0},
                                            {"output": "z2", "loss": "l2", "weight": 1.0}]}),
         "xhat30-zcos": ("KDGAN-2", {"terms": [XHAT30, {"output": "z1", "loss": "cosine", "weight": 1.0},
                                               {"output": "z2", "loss": "cosine", "weight": 1.0}]}),
         # ... or on the anomaly score's order within the batch (ListNet), the quantity the detector uses.
         "xhat30-rank": ("KDGAN-2", {"terms": [XHAT30, {"output": "score", "loss": "rank", "weight": 1.0}],
                                     "derived": {"score": {"fn": "squared_error", "a": "z1", "b": "z2"}}})}


def schedule_of(name: str) -> Schedule:
    """The one-stage schedule a candidate name describes (unknown names exit with the grammar)."""
    rest, _, factor = name.partition("*")
    base, _, rule = rest.partition("+")
    if base not in BASES or (rule and rule not in LR_RULES):
        raise SystemExit(f"unknown candidate {name!r}: BASE[+RULE][*FACTOR], BASE one of {', '.join(BASES)}, "
                         f"RULE one of {', '.join(LR_RULES.names())}")
    structure, k = BASES[base]
    g = float(factor) if factor else 1.0
    optimizers = {"student": OptimizerConfig(lr=budget.lr * g)} if g != 1.0 else {}
    lr_rule = {"name": rule, "reference": list(TEACHER_WIDTHS)} if rule else None
    return Schedule((Stage(structure, budget.student_epochs, OptimizerConfig(lr=budget.lr), distillation=k,
                           optimizers=optimizers, lr_rule=lr_rule),), name=name)


def main() -> None:
    p = case_parser(__doc__)
    p.add_argument("--candidates", required=True)
    args = p.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    rows = read_rows(out)
    done = {(r["candidate"], r["dataset"], r["normal_class"], r["seed"]) for r in rows}
    names = args.candidates.split(",")
    schedules = {name: schedule_of(name) for name in names}  # unknown names fail before any run
    for dataset, c, seed in parse_cases(args.cases):
        if all((n, dataset, c, seed) in done for n in names):
            continue
        data, cfg, teacher, trecord = load_case(args.sweep_out, dataset, c, seed, args.data_root,
                                                args.cifar_root, args.budget)
        for name in names:
            if (name, dataset, c, seed) in done:
                continue
            t0 = time.perf_counter()
            record, _ = train.run(cfg, data, teacher, verbose=False, schedule=schedules[name])
            append_row(out, rows, {"candidate": name, "budget": args.budget, "dataset": dataset,
                                   "normal_class": c, "seed": seed,
                                   "auroc_last": record["auroc_last"], "teacher_auroc": trecord["auroc_last"],
                                   "con_last": record["history"][-1]["losses"].get("L_g^S/con")}, t0)


if __name__ == "__main__":
    main()
