"""Development diagnostic: does what K transfers show up in a score that reads the reconstruction?

GANomaly scores by the latent distance |z1 - z2|^2; K of `recommended` acts on the reconstruction x_hat. For each
case (teachers of a sweep folder, ``--budget``), the teacher and three students (the names of
``width_rule_probe.py``) are scored twice on the whole test split: by the latent distance and by the mean
reconstruction error |x - x_hat|. Writes one row per (case, model) to ``--out`` (re-running skips rows there):

    PYTHONPATH=. python scripts/score_diagnostic.py --budget long-teacher --sweep-out results/long-teacher-dev \
        --cases mnist:5:100,mnist:5:101 --out results/score_diagnostic.json
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import gankd_ganomaly.experiment.train as train  # noqa: E402
from gankd_ganomaly.evaluation import evaluate_auroc  # noqa: E402
from gankd_ganomaly.hooks import GanomalyHooks  # noqa: E402
from dev_cases import append_row, case_parser, load_case, parse_cases, read_rows  # noqa: E402
from width_rule_probe import schedule_of  # noqa: E402

STUDENTS = ("alone+mup", "xhat30+mup", "xhat30-vflip+mup")


class ReconstructionScore(GanomalyHooks):
    """GANomaly with the mean absolute reconstruction error as the anomaly score, shape (N,)."""

    def score(self, gan, batch: torch.Tensor) -> torch.Tensor:
        _, x_hat, _ = gan.generator(batch)
        return (batch - x_hat).abs().flatten(1).mean(dim=1)


def main() -> None:
    p = case_parser(__doc__)
    args = p.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    rows = read_rows(out)
    done = {(r["candidate"], r["dataset"], r["normal_class"], r["seed"]) for r in rows}
    for dataset, c, seed in parse_cases(args.cases):
        data, cfg, teacher, trecord = load_case(args.sweep_out, dataset, c, seed, args.data_root,
                                                args.cifar_root, args.budget)
        recon = ReconstructionScore(in_channels=data.test.shape[1])
        for name in ("teacher", *STUDENTS):
            if (name, dataset, c, seed) in done:
                continue
            t0 = time.perf_counter()
            if name == "teacher":
                gan, latent = teacher, trecord["auroc_last"]
            else:
                record, gan = train.run(cfg, data, teacher, verbose=False, schedule=schedule_of(name))
                latent = record["auroc_last"]
            append_row(out, rows, {"candidate": name, "budget": args.budget, "dataset": dataset,
                                   "normal_class": c, "seed": seed, "auroc_last": latent,
                                   "auroc_reconstruction": evaluate_auroc(recon, gan, data.test, data.test_labels),
                                   "teacher_auroc": trecord["auroc_last"]}, t0)


if __name__ == "__main__":
    main()
