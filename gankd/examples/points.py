"""A complete GAN family for 2-D points, in one file: the hooks, a data factory and a metric factory.

The data are points drawn around four centres in the plane; generator and discriminator are MLPs whose hidden
size is the ``width``. A run config names the three pieces (``docs/config.md``)::

    family: gankd.examples.points:PointHooks
    data: {factory: gankd.examples.points:batches, args: {n_batches: 8}}
    evaluate: {factory: gankd.examples.points:distances}

To write your own family, copy this file into your package (``python -m gankd.examples.points`` prints its
path) and change the networks, the losses and the data. Walked through in ``docs/own_gan.md``.
"""
from __future__ import annotations

from typing import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from gankd import GAN, DistillationLoss, DistillTerm, GANHooks, Losses

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


def batches(n_batches: int = 8, batch_size: int = 64, seed: int = 0) -> list[torch.Tensor]:
    """The data factory: ``n_batches`` batches of ``(batch_size, 2)`` points, the same every epoch (a list is a
    valid, re-iterable "loader" with no state to checkpoint)."""
    data = torch.Generator().manual_seed(seed)
    return [sample_points(batch_size, data) for _ in range(n_batches)]


def distance_to_teacher(teacher: GAN, student: GAN, z: torch.Tensor) -> float:
    """Mean Euclidean distance between the points both generators make from the same latents."""
    with torch.no_grad():
        return float((teacher.generator(z) - student.generator(z)).norm(dim=1).mean())


def mode_distance(gan: GAN, z: torch.Tensor) -> float:
    """Mean distance of generated points to their nearest centre (0 = on a centre)."""
    with torch.no_grad():
        return float(torch.cdist(gan.generator(z), CENTRES).min(dim=1).values.mean())


def distances(hooks: PointHooks, teacher: GAN | None, student: GAN | None, n: int = 512,
              seed: int = 0) -> Callable[[object], dict[str, float]]:
    """The metric factory: after each epoch, ``mode_distance`` of the network the run trains (the student when
    there is one) and, with both networks, the student's ``distance_to_teacher``, on ``n`` fixed latents."""
    z = torch.randn(n, LATENT_DIM, generator=torch.Generator().manual_seed(seed))
    trained = student if student is not None else teacher

    def metric(engine: object) -> dict[str, float]:
        values = {"mode_distance": mode_distance(trained, z)}
        if teacher is not None and student is not None:
            values["distance_to_teacher"] = distance_to_teacher(teacher, student, z)
        return values
    return metric


if __name__ == "__main__":
    print(__file__)
