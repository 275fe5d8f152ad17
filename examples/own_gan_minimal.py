"""Distil your own GAN: the smallest complete example (2-D points, MLP networks, a few seconds on a CPU).

The data are points drawn around four centres in the plane. A wide MLP GAN (the teacher) learns to
generate them; a narrow one (the student) is then trained to reproduce the teacher's outputs for the
same latent samples (the distillation loss K) while also playing its own GAN game (KDGAN-2, the first
stage of P-KDGAN). The family itself (hooks, data, metrics) is ``gankd/examples/points.py``, installed with
gankd as :mod:`gankd.examples.points`; this script trains it from Python. Walked through in
``docs/own_gan.md``. Run it with::

    python examples/own_gan_minimal.py [--epochs 100] [--seed 0]
"""
from __future__ import annotations

import argparse
import math
from typing import Any

import torch

from gankd import DistillationEngine, OptimizerConfig, get_schedule, seed_everything
from gankd.examples.points import LATENT_DIM, PointHooks, distance_to_teacher, mode_distance, sample_points


def main(epochs: int = 100, seed: int = 0, verbose: bool = True) -> dict[str, Any]:
    seed_everything(seed)
    data = torch.Generator().manual_seed(seed)
    batches = [sample_points(64, data) for _ in range(8)]  # a list is a valid, re-iterable "loader"
    z = torch.randn(512, LATENT_DIM, generator=data)       # fixed latents to compare generators
    hooks = PointHooks()
    teacher, student = hooks.build_gan(64), hooks.build_gan(16)
    opt = OptimizerConfig(lr=2e-3)

    # the teacher trains on its own losses (alpha = beta = 1)
    DistillationEngine(hooks, teacher, None).fit(get_schedule("teacher", epochs, opt), batches)
    before = distance_to_teacher(teacher, student, z)
    # the student: its own GAN losses plus K against the frozen teacher (KDGAN-2)
    history = DistillationEngine(hooks, teacher, student).fit(get_schedule("KDGAN-2", epochs, opt), batches)
    result = {
        "teacher_params": sum(p.numel() for p in teacher.generator.parameters()),
        "student_params": sum(p.numel() for p in student.generator.parameters()),
        "distance_to_teacher_before": before,
        "distance_to_teacher_after": distance_to_teacher(teacher, student, z),
        "teacher_mode_distance": mode_distance(teacher, z),
        "student_mode_distance": mode_distance(student, z),
        "K_first_epoch": history[0]["losses"]["K"], "K_last_epoch": history[-1]["losses"]["K"],
    }
    if verbose:
        for key, value in result.items():
            print(f"{key:28} {value:.4g}" if isinstance(value, float) and not math.isnan(value) else f"{key:28} {value}")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=100, help="epochs of the teacher and of the student")
    parser.add_argument("--seed", type=int, default=0, help="seed of data, networks and latents")
    args = parser.parse_args()
    torch.set_num_threads(1)  # networks this small run fastest on one thread
    main(args.epochs, args.seed)
