"""An unconditional DCGAN (32x32 images) plugged into gankd through its public API only.

Copy this file to distil another GAN family: subclass :class:`gankd.GANHooks`, return *named*
generator outputs, and list the outputs to distil in :meth:`distillation_loss`. Nothing in
``gankd/`` knows about DCGAN.

Generator (widths ``(c1, c2, c3)``, image side first, as in ``gankd_ganomaly``)::

    z (N, nz, 1, 1) -> c3@4x4 -> c2@8x8 ="feat"-> c1@16x16 -> (N, C, 32, 32) tanh ="image"
                                  \\-> 1x1 conv to the teacher's c2 ="feat_proj" (student only;
                                      an identity when the widths already agree)

Discriminator: (C,32,32) -> c1@16 -> c2@8 -> c3@4 -> one logit (strided 4x4 convs, LeakyReLU 0.2).
Losses: the non-saturating DCGAN losses with logits. Distillation K for the same latent z:
``l1(image_S, image_T) + l2(proj(feat_S), feat_T)``.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from gankd import GAN, DistillationLoss, DistillTerm, GANHooks, Losses, OptimizerConfig, Recipe, Schedule, Stage, Structure
from gankd.schedule import PAPER_RECIPE

TEACHER_WIDTHS: tuple[int, int, int] = (64, 128, 256)
STUDENT_WIDTHS: tuple[int, int, int] = (8, 16, 32)
LATENT_DIM = 64


def _one_stage(structure: Structure):
    """A one-stage recipe over 2M epochs: the same epoch budget as the two stages of ``paper``."""
    def build(epochs: int, optimizer: OptimizerConfig) -> Schedule:
        return Schedule((Stage(structure, 2 * epochs, optimizer),), name=structure.name)
    return build


RECIPES: dict[str, Recipe] = {
    "paper": PAPER_RECIPE,
    "joint": Recipe("joint", _one_stage(Structure(mu=1, nu=1, lam=1, name="KDGAN-2")),
                    "KDGAN-2 for 2M epochs: the student's own GAN losses + K from the frozen teacher"),
    "k-only": Recipe("k-only", _one_stage(Structure(lam=1, name="KDGAN-1")),
                     "KDGAN-1 for 2M epochs: the student generator regresses the teacher's outputs, no discriminator"),
}
# chosen on development seed 100 of digits, with its learning rate (results/generators/dcgan/choice.json: the
# lowest FD rank of the (recipe, lr) candidates of examples/dcgan_grid.py)
RECOMMENDED, RECOMMENDED_LR = "k-only", 1e-3
RECIPES["recommended"] = Recipe("recommended", RECIPES[RECOMMENDED].build,
                                f"the DCGAN family's recommended recipe: {RECOMMENDED} at lr {RECOMMENDED_LR:g} "
                                f"({RECIPES[RECOMMENDED].description})")


def init_dcgan_weights(module: nn.Module) -> None:
    """DCGAN init: conv weights ~ N(0, 0.02), BN weights ~ N(1, 0.02), BN bias 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def _up(cin: int, cout: int, first: bool = False) -> list[nn.Module]:
    conv = nn.ConvTranspose2d(cin, cout, 4, 1, 0, bias=False) if first else nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False)
    return [conv, nn.BatchNorm2d(cout), nn.ReLU(True)]


class DCGANGenerator(nn.Module):
    """z -> {"image", "feat", "feat_proj"}. ``head`` + ``tail`` is the deployed generator;
    ``proj`` exists for distillation only (1x1 conv to ``proj_channels``, else identity)."""

    def __init__(self, channels: int, widths: Sequence[int], latent_dim: int = LATENT_DIM,
                 proj_channels: int | None = None) -> None:
        super().__init__()
        c1, c2, c3 = widths
        self.latent_dim = latent_dim
        self.head = nn.Sequential(*_up(latent_dim, c3, first=True), *_up(c3, c2))          # -> (c2, 8, 8)
        self.tail = nn.Sequential(*_up(c2, c1), nn.ConvTranspose2d(c1, channels, 4, 2, 1, bias=False), nn.Tanh())
        proj_channels = proj_channels or c2
        self.proj = nn.Identity() if proj_channels == c2 else nn.Conv2d(c2, proj_channels, 1, bias=False)
        init_dcgan_weights(self)

    def forward(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        feat = self.head(z)
        return {"image": self.tail(feat), "feat": feat, "feat_proj": self.proj(feat)}


class DCGANDiscriminator(nn.Module):
    """(N, C, 32, 32) -> logits (N,)."""

    def __init__(self, channels: int, widths: Sequence[int]) -> None:
        super().__init__()
        c1, c2, c3 = widths
        self.main = nn.Sequential(
            nn.Conv2d(channels, c1, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True),
            nn.Conv2d(c1, c2, 4, 2, 1, bias=False), nn.BatchNorm2d(c2), nn.LeakyReLU(0.2, True),
            nn.Conv2d(c2, c3, 4, 2, 1, bias=False), nn.BatchNorm2d(c3), nn.LeakyReLU(0.2, True),
            nn.Conv2d(c3, 1, 4, 1, 0, bias=False))
        init_dcgan_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).flatten()


class DCGANHooks(GANHooks):
    """Batches are real images (N, C, 32, 32) in [-1, 1]; widths are ``(c1, c2, c3)``.

    The shared latent of each step is drawn in :meth:`generator_inputs` from a generator the
    hooks own (seeded by ``seed``), so teacher and student see the same z and runs repeat.
    Every generator built gets a projection of its "feat" to ``teacher_widths[1]`` channels.
    """

    def __init__(self, channels: int = 1, teacher_widths: Sequence[int] = TEACHER_WIDTHS,
                 latent_dim: int = LATENT_DIM, seed: int = 0, w_image: float = 1.0, w_feat: float = 1.0) -> None:
        self.channels, self.latent_dim = channels, latent_dim
        self.teacher_widths = tuple(teacher_widths)
        self.w_image, self.w_feat = w_image, w_feat
        self.rng = torch.Generator().manual_seed(seed)

    def build_generator(self, width: Sequence[int]) -> DCGANGenerator:
        return DCGANGenerator(self.channels, width, self.latent_dim, proj_channels=self.teacher_widths[1])

    def build_discriminator(self, width: Sequence[int]) -> DCGANDiscriminator:
        return DCGANDiscriminator(self.channels, width)

    def distillation_loss(self) -> DistillationLoss:
        return DistillationLoss([DistillTerm("image", "l1", self.w_image),
                                 DistillTerm("feat", "l2", self.w_feat, student_output="feat_proj")])

    def recipes(self) -> Mapping[str, Recipe]:
        """``paper`` and the family's candidates (:data:`RECIPES`); ``recommended`` is the one chosen on
        development seeds."""
        return RECIPES

    def sample_latent(self, n: int, device: torch.device | str = "cpu") -> torch.Tensor:
        return torch.randn(n, self.latent_dim, 1, 1, generator=self.rng).to(device)

    def generator_inputs(self, batch: torch.Tensor) -> torch.Tensor:
        return self.sample_latent(batch.shape[0], batch.device)

    # the latent generator is state the hooks keep across steps: checkpoints save it, so a killed and
    # resumed run draws the same latents as an uninterrupted one
    def state_dict(self) -> dict:
        return {"latent_rng": self.rng.get_state()}

    def load_state_dict(self, state: dict) -> None:
        if "latent_rng" in state:
            self.rng.set_state(state["latent_rng"])

    def generator_forward(self, generator: nn.Module, inputs: torch.Tensor) -> Mapping[str, torch.Tensor]:
        return generator(inputs)

    def generator_loss(self, gan: GAN, batch: torch.Tensor, outputs: dict[str, torch.Tensor]) -> Losses:
        """Non-saturating: BCE(D(G(z)), 1)."""
        fake_logit = gan.discriminator(outputs["image"])
        adv = F.binary_cross_entropy_with_logits(fake_logit, torch.ones_like(fake_logit))
        return Losses(adv, {"adv": adv})

    def discriminator_loss(self, gan: GAN, batch: torch.Tensor, outputs: dict[str, torch.Tensor]) -> Losses:
        """BCE(D(x), 1) + BCE(D(G(z).detach()), 0)."""
        real_logit = gan.discriminator(batch)
        fake_logit = gan.discriminator(outputs["image"].detach())
        real = F.binary_cross_entropy_with_logits(real_logit, torch.ones_like(real_logit))
        fake = F.binary_cross_entropy_with_logits(fake_logit, torch.zeros_like(fake_logit))
        return Losses(real + fake, {"real": real, "fake": fake})


@torch.no_grad()
def generate(generator: nn.Module, z: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Images (N, C, 32, 32) for latents ``z``, in eval mode (BN running statistics)."""
    was_training = generator.training
    generator.eval()
    try:
        return torch.cat([generator(z[i:i + batch_size])["image"] for i in range(0, len(z), batch_size)])
    finally:
        generator.train(was_training)


class DeployedGenerator(nn.Module):
    """The generator without the training-only projection: z -> image (for params/FLOPs)."""

    def __init__(self, generator: DCGANGenerator) -> None:
        super().__init__()
        self.head, self.tail = generator.head, generator.tail

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.tail(self.head(z))
