"""Development probe for the `recommended` recipe: candidate schedules / distillation losses on dev runs.

Runs each candidate on (dataset, class, seed) cases whose teachers a sweep already trained (``--sweep-out``,
e.g. the Figure-2 classes at seeds 100+, which the reported sweep never uses), at the sweep's cpu budget,
and appends one row per run to ``--out`` (JSON; re-running skips rows already there). AUROC is the last
epoch's, on the whole test split. Example:

    python scripts/recipe_probe.py --sweep-out DEV_SWEEP --cases mnist:5:100,fmnist:8:100 \
        --candidates xhat10,xhat30 --out results/recipe_probe.json --data-root ../shared/datasets \
        --cifar-root data/cifar10-jpeg
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gankd import OptimizerConfig, Schedule, Stage  # noqa: E402
from dev_cases import append_row, BUDGET as budget, case_parser, load_case, parse_cases, read_rows  # noqa: E402
from gankd_ganomaly.experiment import run  # noqa: E402

XHAT = {"output": "x_hat", "loss": "l1"}


def k(*terms: dict, derived: dict | None = None, views: dict | None = None) -> dict:
    return {"terms": list(terms), **({"derived": derived} if derived else {}), **({"views": views} if views else {})}


def one(k_spec: dict | None, structure: str = "KDGAN-2"):
    def build(epochs: int, opt: OptimizerConfig) -> Schedule:
        return Schedule((Stage(structure, epochs, opt, distillation=k_spec),), name="probe")
    return build


def two(first: tuple[str, dict | None], second: tuple[str, dict | None], optimizers2: dict | None = None):
    def build(epochs: int, opt: OptimizerConfig) -> Schedule:
        return Schedule((Stage(first[0], epochs, opt, distillation=first[1]),
                         Stage(second[0], epochs, opt, distillation=second[1], optimizers=optimizers2 or {})),
                        name="probe")
    return build


SCORE = {"score": {"fn": "squared_error", "a": "z1", "b": "z2"}}
CANDIDATES = {
    "student-alone": one(None, "student-alone"),
    "paper-kdgan2": one(None),
    "xhat1": one(k({**XHAT, "weight": 1.0})),
    "xhat10": one(k({**XHAT, "weight": 10.0})),
    "xhat30": one(k({**XHAT, "weight": 30.0})),
    "xhat100": one(k({**XHAT, "weight": 100.0})),
    "xhat10+rkd_z1": one(k({**XHAT, "weight": 10.0}, {"output": "z1", "loss": "rkd_distance", "weight": 1.0})),
    "xhat10+rank": one(k({**XHAT, "weight": 10.0},
                         {"output": "score", "loss": "rank", "weight": 1.0, "args": {"temperature": 1.0}},
                         derived=SCORE)),
    "xhat10+fitnet": lambda widths: one(k(
        {**XHAT, "weight": 10.0},
        {"output": "@encoder1.features", "loss": "normalized_l2", "weight": 1.0, "name": "K_feat",
         "adaptor": "conv1x1", "adaptor_args": {"in_channels": widths[2], "out_channels": 256}})),
    "xhat10+gram_feat": one(k({**XHAT, "weight": 10.0},
                              {"output": "@encoder1.features", "loss": "gram", "weight": 10.0, "name": "K_feat"})),
    "xhat10+cos_z1": one(k({**XHAT, "weight": 10.0}, {"output": "z1", "loss": "cosine", "weight": 1.0})),
    "xhat30+gram_feat": one(k({**XHAT, "weight": 30.0},
                              {"output": "@encoder1.features", "loss": "gram", "weight": 10.0, "name": "K_feat"})),
    "xhat30-l2": one(k({"output": "x_hat", "loss": "l2", "weight": 30.0})),
    "xhat30-only": one(k({**XHAT, "weight": 30.0}), "KDGAN-1"),
    # control: the student alone with the reconstruction weight w_con raised by the same 30 (on x, not on x_hat^T)
    "alone-wcon40": one(None, "student-alone"),
    # off-manifold views of the training images, reconstructed by the teacher, imitated by the student
    "xhat30+rot": one(k({**XHAT, "weight": 30.0}, {"output": "rot/x_hat", "loss": "l1", "weight": 30.0},
                        views={"rot": {"fn": "rot90", "k": 1}})),
    "xhat30+mix": one(k({**XHAT, "weight": 30.0}, {"output": "mix/x_hat", "loss": "l1", "weight": 30.0},
                        views={"mix": {"fn": "mixup", "weight": 0.5}})),
    "xhat30+noise": one(k({**XHAT, "weight": 30.0}, {"output": "noise/x_hat", "loss": "l1", "weight": 30.0},
                          views={"noise": {"fn": "noise", "std": 0.5}})),
    "wcon40+xhat30": one(k({**XHAT, "weight": 30.0})),
    "xhat10-then-alone": two(("KDGAN-2", k({**XHAT, "weight": 10.0})), ("student-alone", None)),
}

LOSS_WEIGHT_CONTROLS = ("alone-wcon40", "wcon40+xhat30")


def main() -> None:
    p = case_parser(__doc__)
    p.add_argument("--candidates", required=True, help=f"comma list of {', '.join(CANDIDATES)}")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    rows = read_rows(out)
    done = {(r["candidate"], r["dataset"], r["normal_class"], r["seed"]) for r in rows}
    cases = parse_cases(args.cases)
    names = args.candidates.split(",")
    for name in names:
        CANDIDATES[name]  # unknown names fail before any run
    for dataset, c, seed in cases:
        data, cfg, teacher, trecord = load_case(args.sweep_out, dataset, c, seed, args.data_root,
                                                args.cifar_root, args.budget)
        for name in names:
            if (name, dataset, c, seed) in done:
                continue
            build = CANDIDATES[name]
            if build.__name__ == "<lambda>":  # needs the student's widths (an adaptor's channel counts)
                build = build(cfg.student_widths)
            schedule = build(budget.student_epochs, OptimizerConfig(lr=budget.lr, betas=(0.5, 0.999)))
            t0 = time.perf_counter()
            run_cfg = cfg.replace(loss_weights={"w_con": 40.0}) if name in LOSS_WEIGHT_CONTROLS else cfg
            record, _ = run(run_cfg, data, teacher, verbose=False, schedule=schedule)
            stage_ends = [h["metrics"].get("auroc") for h in record["history"] if h["metrics"]]
            append_row(out, rows, {"candidate": name, "dataset": dataset, "normal_class": c, "seed": seed,
                                   "auroc_last": record["auroc_last"], "auroc_stage_ends": stage_ends,
                                   "teacher_auroc": trecord["auroc_last"], "schedule": record["schedule"]}, t0)


if __name__ == "__main__":
    main()
