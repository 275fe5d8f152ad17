"""The 2-D point family (``gankd.examples.points``) measured over seeds: teacher / student alone / distilled.

Every run is :func:`gankd.run.train` of a config like ``docs/config.md``'s (what ``gankd train`` runs): the teacher
(hidden width 32) for 2M epochs, then from the same initial student weights (width 4) the student alone for 2M
epochs and KDGAN-2 (its own GAN losses + K = l2 to the teacher's points, frozen teacher) for 2M epochs. Each
generator is scored on 2000 fixed latents against 2000 fresh real points: Frechet distance, KID (x1000),
precision/recall (``gankd.generation_metrics`` on the points themselves) and the mean distance to the nearest
mode. One JSON per run lands in ``OUT/points/``. Example::

    python examples/points_grid.py --out results/generators
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch

from gankd import atomic_write_text
from gankd.examples.points import CENTRES, LATENT_DIM, mode_distance, sample_points
from gankd.generation_metrics import generation_metrics
from gankd.modelfile import load_model
from gankd.run import train

FAMILY = "gankd.examples.points:PointHooks"
EVAL_SEED = 12345
METHODS = ("teacher", "student-alone", "distilled")


def config(method: str, seed: int, m: int, teacher_file: Path | None) -> dict:
    data = {"factory": "gankd.examples.points:batches", "args": {"n_batches": 8}}
    common = {"family": FAMILY, "data": data, "seed": seed, "epochs": 2 * m, "optimizer": {"lr": 0.002}}
    if method == "teacher":
        return {**common, "teacher": {"width": 32}, "schedule": "teacher"}
    if method == "student-alone":
        return {**common, "student": {"width": 4}, "schedule": "student-alone"}
    return {**common, "teacher": {"checkpoint": str(teacher_file)}, "student": {"width": 4}, "schedule": "KDGAN-2"}


def score(gan) -> dict:
    z = torch.randn(2000, LATENT_DIM, generator=torch.Generator().manual_seed(EVAL_SEED))
    real = sample_points(2000, torch.Generator().manual_seed(EVAL_SEED + 1))
    with torch.no_grad():
        fake = gan.generator(z)
    metrics = generation_metrics(fake.numpy(), real.numpy(), kid_subsets=20)
    linears = [m for m in gan.generator.modules() if isinstance(m, torch.nn.Linear)]
    return {**metrics, "mode_distance": mode_distance(gan, z),
            "params": sum(p.numel() for p in gan.generator.parameters()),
            "flops": sum(m.in_features * m.out_features for m in linears)}  # multiply-adds per point


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--m", type=int, default=50, help="epochs per stage M (8 steps each); every run trains 2M")
    p.add_argument("--out", type=Path, default=Path("results/generators"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    records = args.out / "points"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            teacher_file = Path(tmp) / f"s{seed}-teacher" / "model.pt"
            for method in METHODS:
                folder = Path(tmp) / f"s{seed}-{method}"
                record = train(config(method, seed, args.m, teacher_file), folder, verbose=False)
                gan, _ = load_model(folder / "model.pt")
                result = {"family": "points", "dataset": f"{len(CENTRES)} Gaussians (2-D)", "seed": seed,
                          "method": method, "recipe": "KDGAN-2" if method == "distilled" else None,
                          **score(gan), "schedule": record["schedule"], "wall_s": round(record["wall_s"], 2),
                          "command": "python examples/points_grid.py " + " ".join(argv or [])}
                atomic_write_text(records / f"points-s{seed}-{method}.json", json.dumps(result, indent=1) + "\n")
                rows.append(result)
                print(f"seed {seed} {method:>14}: fd {result['fd']:.4f} KIDx1000 {result['kid'] * 1e3:.2f} "
                      f"P {result['precision']:.3f} R {result['recall']:.3f} mode {result['mode_distance']:.4f}",
                      flush=True)
    for method in METHODS:
        fds = [r["fd"] for r in rows if r["method"] == method]
        print(f"{method:>14}: FD {statistics.mean(fds):.4f} +- {statistics.stdev(fds) if len(fds) > 1 else 0:.4f}")


if __name__ == "__main__":
    main()
