"""The 2-D point family (``gankd.examples.points``) measured over seeds: teacher / student alone / distilled.

Every run is :func:`gankd.run.train` of a config like ``docs/config.md``'s (what ``gankd train`` runs): the teacher
(hidden width 32) for 2M epochs, then from the same initial student weights (width 4) the student alone for 2M
epochs and KDGAN-2 (its own GAN losses + K = l2 to the teacher's points, frozen teacher) for 2M epochs. Each
generator is scored on 2000 fixed latents against 2000 fresh real points: Frechet distance, KID (x1000),
precision/recall (``gankd.generation_metrics`` on the points themselves) and the mean distance to the nearest
mode. One JSON per run lands in ``OUT/points/``; ``--figure`` draws the first seed's three generators. Example::

    python examples/points_grid.py --out results/generators --figure docs/figures/points.png
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


def evaluation_latents() -> torch.Tensor:
    return torch.randn(2000, LATENT_DIM, generator=torch.Generator().manual_seed(EVAL_SEED))


def real_points() -> torch.Tensor:
    return sample_points(2000, torch.Generator().manual_seed(EVAL_SEED + 1))


def score(gan) -> dict:
    z, real = evaluation_latents(), real_points()
    with torch.no_grad():
        fake = gan.generator(z)
    metrics = generation_metrics(fake.numpy(), real.numpy(), kid_subsets=20)
    linears = [m for m in gan.generator.modules() if isinstance(m, torch.nn.Linear)]
    return {**metrics, "mode_distance": mode_distance(gan, z),
            "params": sum(p.numel() for p in gan.generator.parameters()),
            "flops": sum(m.in_features * m.out_features for m in linears)}  # multiply-adds per point


def draw(drawn: dict, seed: int, path: Path) -> None:
    """Real points (grey) and each generator's points from the same 500 latents, one panel per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    real = real_points()[:500]
    fig, axes = plt.subplots(1, len(drawn), figsize=(3.2 * len(drawn), 3.2), sharex=True, sharey=True)
    for ax, (method, (points, fd)) in zip(axes, drawn.items()):
        ax.scatter(real[:, 0], real[:, 1], s=3, c="0.75", label="real")
        ax.scatter(points[:, 0], points[:, 1], s=3, c="C3" if method == "student-alone" else "C0", label="generated")
        ax.set_title(f"{method} (FD {fd:.3f})", fontsize=9)
        ax.set_xlim(-2.5, 2.5)
        ax.set_ylim(-2.5, 2.5)
        ax.set_aspect("equal")
    fig.suptitle(f"2-D point family, seed {seed}: teacher width 32, students width 4, same latents", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--m", type=int, default=50, help="epochs per stage M (8 steps each); every run trains 2M")
    p.add_argument("--out", type=Path, default=Path("results/generators"))
    p.add_argument("--figure", type=Path, default=None, help="PNG of the first seed's generators (matplotlib)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    records = args.out / "points"
    rows, drawn = [], {}
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
                if seed == args.seeds[0]:
                    with torch.no_grad():
                        drawn[method] = (gan.generator(evaluation_latents()[:500]), result["fd"])
                print(f"seed {seed} {method:>14}: fd {result['fd']:.4f} KIDx1000 {result['kid'] * 1e3:.2f} "
                      f"P {result['precision']:.3f} R {result['recall']:.3f} mode {result['mode_distance']:.4f}",
                      flush=True)
    if args.figure is not None:
        draw(drawn, args.seeds[0], args.figure)
    for method in METHODS:
        fds = [r["fd"] for r in rows if r["method"] == method]
        print(f"{method:>14}: FD {statistics.mean(fds):.4f} +- {statistics.stdev(fds) if len(fds) > 1 else 0:.4f}")


if __name__ == "__main__":
    main()
