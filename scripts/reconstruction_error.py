"""How far the students got: their L1 reconstruction error at the last epoch, from a sweep's records.

For each dataset and method, the mean over runs of the last epoch's training ``con`` loss
(mean |x - x_hat| on the training images, in [-1, 1] units), next to the error of an all-zero output
(mean |x| of the budget's training images: what a decoder that has learned nothing scores). Writes JSON:

    PYTHONPATH=. python scripts/reconstruction_error.py --records results/recipes-cpu \
        --out results/reconstruction_error.json --data-root ../shared/datasets --cifar-root data/cifar10-jpeg
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gankd import atomic_write_text  # noqa: E402
from gankd_ganomaly.data import dataset_spec, load_one_class  # noqa: E402
from gankd_ganomaly.study.budgets import BUDGETS  # noqa: E402

METHODS = ("teacher", "student-alone", "student-alone-fast", "recommended", "reconstruction-fast")


def last_con(record: dict) -> float:
    losses = record["history"][-1]["losses"]
    return next(v for k, v in losses.items() if k.endswith("/con"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", required=True, help="a sweep folder (records/ below it)")
    p.add_argument("--out", required=True)
    p.add_argument("--datasets", default="mnist,fmnist,cifar10")
    p.add_argument("--data-root", default="../shared/datasets")
    p.add_argument("--cifar-root", default="data/cifar10-jpeg")
    args = p.parse_args()
    limit = BUDGETS["cpu"].max_train_images
    out: dict = {}
    for dataset in args.datasets.split(","):
        root = args.cifar_root if dataset == "cifar10" else args.data_root
        zero = [float(load_one_class(dataset, c, root=root).train[:limit].abs().mean())
                for c in range(len(dataset_spec(dataset).class_names))]
        row = {"all_zero_output": float(np.mean(zero))}
        for method in METHODS:
            files = sorted(Path(args.records, "records", dataset).glob(f"*/{method}/seed*.json"))
            values = [last_con(json.loads(f.read_text())) for f in files]
            row[method] = {"mean": float(np.mean(values)), "runs": len(values)} if values else None
        out[dataset] = row
        print(dataset, " | ".join(f"{m} {v['mean']:.3f} ({v['runs']})" if isinstance(v, dict) else f"{m} {v:.3f}"
                                  for m, v in row.items() if v is not None), flush=True)
    atomic_write_text(Path(args.out), json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
