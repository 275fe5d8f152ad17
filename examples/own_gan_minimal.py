"""Distil your own GAN: the smallest complete example (2-D points, MLP networks, a few seconds on a CPU).

The data are points drawn around four centres in the plane. A wide MLP GAN (the teacher) learns to
generate them; a narrow one (the student) is then trained to reproduce the teacher's outputs for the
same latent samples (the distillation loss K) while also playing its own GAN game (KDGAN-2, the first
stage of P-KDGAN). Walked through in ``docs/own_gan.md``. Run it with::

    python examples/own_gan_minimal.py [--epochs 100] [--seed 0]
"""
from __future__ import annotations

import argparse
import math
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from gankd import (GAN, DistillationEngine, DistillationLoss, DistillTerm, GANHooks, Losses, OptimizerConfig,
                   get_schedule, seed_everything)

LATENT_DIM = 4
CENTRES = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers with LeakyReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.LeakyReLU(0.2))
    return nn.Sequential(*layers)


class PointHooks(GANHooks):
    """A GAN family for 2-D points: ``width`` is the hidden size of both MLPs."""

    # 1. networks: the engine builds a teacher and a student by calling these with their widths
    def build_generator(self, width: int) -> nn.Module:
        return mlp([LATENT_DIM, width, width, 2])

    def build_discriminator(self, width: int) -> nn.Module:
        return mlp([2, width, width, 1])

    # 2. what K compares: named generator outputs (here the only one, "points")
    def distillation_loss(self) -> DistillationLoss:
        return DistillationLoss([DistillTerm("points", "l2", 1.0)])

    # 3. one latent sample per step, shared by teacher and student
    def generator_inputs(self, batch: torch.Tensor) -> torch.Tensor:
        return torch.randn(len(batch), LATENT_DIM)

    def generator_forward(self, generator: nn.Module, inputs: torch.Tensor) -> Mapping[str, torch.Tensor]:
        return {"points": generator(inputs)}

    # 4. the family's own losses (non-saturating GAN losses, with logits)
    def generator_loss(self, gan: GAN, batch: torch.Tensor, outputs: dict[str, torch.Tensor]) -> Losses:
        fake_logit = gan.discriminator(outputs["points"])
        adv = F.softplus(-fake_logit).mean()
        return Losses(adv, {"adv": adv})

    def discriminator_loss(self, gan: GAN, batch: torch.Tensor, outputs: dict[str, torch.Tensor]) -> Losses:
        real = F.softplus(-gan.discriminator(batch)).mean()
        fake = F.softplus(gan.discriminator(outputs["points"].detach())).mean()  # fakes detached
        return Losses(real + fake, {"real": real, "fake": fake})


def sample_points(n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` points: a random centre plus Gaussian noise (std 0.1)."""
    idx = torch.randint(len(CENTRES), (n,), generator=generator)
    return CENTRES[idx] + 0.1 * torch.randn(n, 2, generator=generator)


def distance_to_teacher(teacher: GAN, student: GAN, z: torch.Tensor) -> float:
    """Mean Euclidean distance between the points both generators make from the same latents."""
    with torch.no_grad():
        return float((teacher.generator(z) - student.generator(z)).norm(dim=1).mean())


def mode_distance(gan: GAN, z: torch.Tensor) -> float:
    """Mean distance of generated points to their nearest centre (0 = on a centre)."""
    with torch.no_grad():
        return float(torch.cdist(gan.generator(z), CENTRES).min(dim=1).values.mean())


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
