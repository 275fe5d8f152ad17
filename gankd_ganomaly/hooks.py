"""GANomaly as a :class:`gankd.GANHooks` family: losses of Eq. 2-5, K_l of Eq. 6, latent score."""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from types import MappingProxyType
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F

from gankd import GAN, DistillationLoss, DistillTerm, GANHooks, Losses, OptimizerConfig, Recipe, Schedule, Stage
from gankd.functional import squared_error

from .networks import IMAGE_SIZE, LATENT_DIM, GanomalyDiscriminator, GanomalyGenerator, check_image_size


@dataclass(frozen=True)
class GanomalyLossWeights:
    """w_con, w_enc, w_adv of Eq. 5 (paper: 10, 1, 1) and w1, wx, w2 of Eq. 6 (paper: 1, 1, 1)."""

    w_con: float = 10.0
    w_enc: float = 1.0
    w_adv: float = 1.0
    w1: float = 1.0
    wx: float = 1.0
    w2: float = 1.0

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"GanomalyLossWeights.{name} must be a finite number >= 0, got {value!r}")
        if self.w_con == self.w_enc == self.w_adv == 0:
            raise ValueError("loss weights w_con, w_enc and w_adv are all 0: the generator would get no training "
                             "signal (its loss is 0 at every step); give at least one a positive weight (the paper: "
                             "10, 1, 1)")

    @classmethod
    def of(cls, weights: "GanomalyLossWeights | Mapping[str, float]") -> "GanomalyLossWeights":
        """``weights`` as the dataclass: a mapping (a config file's ``{w_con: 20}``) fills the other fields with
        the paper's defaults; an unknown name is refused, naming the valid ones."""
        if isinstance(weights, cls):
            return weights
        if not isinstance(weights, Mapping):
            raise ValueError(f"loss weights must be a mapping such as {{w_con: 10, w_enc: 1, w_adv: 1}}, got {weights!r}")
        unknown = sorted(set(weights) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown loss weights {unknown}; valid: {', '.join(f.name for f in fields(cls))}")
        return cls(**weights)


class GanomalyHooks(GANHooks):
    """Batches are image tensors (N, C, S, S) in [-1, 1], S = ``image_size`` (32, the default, 64 or 128: the
    networks get GanomalyGenerator's pyramid for the size); widths are (c1, c2, c3).

    ``reinit_threshold``: like GANomaly, a discriminator whose loss falls below it is
    re-initialised (its optimizer state is kept), so it cannot win outright.
    """

    def __init__(self, in_channels: int = 3, weights: GanomalyLossWeights = GanomalyLossWeights(),
                 latent_dim: int = LATENT_DIM, reinit_threshold: float = 1e-5, image_size: int = IMAGE_SIZE) -> None:
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 (grayscale) or 3 (RGB), got {in_channels}")
        self.in_channels, self.weights = in_channels, GanomalyLossWeights.of(weights)
        self.latent_dim, self.reinit_threshold = latent_dim, reinit_threshold
        self.image_size = check_image_size(image_size)
        self.discriminator_resets = 0

    def build_generator(self, width: Sequence[int]) -> GanomalyGenerator:
        return GanomalyGenerator(self.in_channels, width, self.latent_dim, self.image_size)

    def build_discriminator(self, width: Sequence[int]) -> GanomalyDiscriminator:
        return GanomalyDiscriminator(self.in_channels, width, self.image_size)

    def distillation_loss(self) -> DistillationLoss:
        w = self.weights
        return DistillationLoss([DistillTerm("z1", "l2", w.w1), DistillTerm("x_hat", "l1", w.wx),
                                 DistillTerm("z2", "l2", w.w2)])

    def recipes(self) -> Mapping[str, Recipe]:
        """The base mapping (``paper``: P-KDGAN-II-23 with Eq. 6's K) extended by :data:`FAMILY_RECIPES`."""
        return {**super().recipes(), **{r.name: r for r in FAMILY_RECIPES}}

    def generator_forward(self, generator, inputs: torch.Tensor) -> Mapping[str, torch.Tensor]:
        z1, x_hat, z2 = generator(inputs)
        return {"z1": z1, "x_hat": x_hat, "z2": z2}

    def generator_loss(self, gan: GAN, batch: torch.Tensor, outputs: dict[str, torch.Tensor]) -> Losses:
        """Eq. 5: w_con*|x - x_hat|_1 + w_enc*MSE(z1, z2) + w_adv*MSE(f(x), f(x_hat))."""
        real_logit, real_features = gan.discriminator(batch)
        outputs["d_real_logit"] = real_logit  # reused by discriminator_loss: D(x) runs once per step
        _, fake_features = gan.discriminator(outputs["x_hat"])
        con = F.l1_loss(outputs["x_hat"], batch)
        enc = F.mse_loss(outputs["z2"], outputs["z1"])
        adv = F.mse_loss(fake_features, real_features.detach())
        w = self.weights
        return Losses(w.w_con * con + w.w_enc * enc + w.w_adv * adv, {"con": con, "enc": enc, "adv": adv})

    def discriminator_loss(self, gan: GAN, batch: torch.Tensor, outputs: dict[str, torch.Tensor]) -> Losses:
        """S_ce: 0.5 * (BCE(D(x), 1) + BCE(D(x_hat.detach()), 0)), as GANomaly."""
        real_logit = outputs.get("d_real_logit")
        if real_logit is None or not real_logit.requires_grad:
            real_logit, _ = gan.discriminator(batch)
        fake_logit, _ = gan.discriminator(outputs["x_hat"].detach())
        real = F.binary_cross_entropy_with_logits(real_logit, torch.ones_like(real_logit))
        fake = F.binary_cross_entropy_with_logits(fake_logit, torch.zeros_like(fake_logit))
        return Losses(0.5 * (real + fake), {"real": real, "fake": fake})

    def after_discriminator_step(self, gan: GAN, losses: Losses) -> bool:
        if self.reinit_threshold > 0 and float(losses.total.detach()) < self.reinit_threshold:
            gan.discriminator.reset_parameters()
            self.discriminator_resets += 1
            return True
        return False

    def state_dict(self) -> dict:
        return {"discriminator_resets": self.discriminator_resets}

    def load_state_dict(self, state: dict) -> None:
        self.discriminator_resets = int(state.get("discriminator_resets", 0))

    def score(self, gan: GAN, batch: torch.Tensor) -> torch.Tensor:
        """Anomaly score per sample: mean over the latent of (z1 - z2)^2 (GANomaly's S_enc), shape (N,)."""
        z1, _, z2 = gan.generator(batch)
        return squared_error(z1, z2)


RECOMMENDED_XHAT_WEIGHT = 30.0
# The narrow students move slowly at the teacher's learning rate: Adam steps each weight by about lr, and a
# 2-channel layer needs larger weights than a 64-channel one for the same output (docs/distillation.md).
FAST_STUDENT_LR_FACTOR = 5.0
_RECONSTRUCTION_K = {"terms": [{"output": "x_hat", "loss": "l1", "weight": RECOMMENDED_XHAT_WEIGHT}]}
# The width rule of `recommended` (gankd.width_rule): the student's per-layer learning rates and initial scales
# from its widths relative to its teacher's. Chosen on development runs only (Figure-2 classes at seeds 100-101,
# results/width_rule_probe.json): with K = 30 * l1(x_hat), mean AUROC 0.7338 (mup) vs 0.7332 (fan-in) vs 0.7326
# (no rule); mup also lifts the student alone most (0.6467 -> 0.7336). docs/distillation.md.
RECOMMENDED_RULE = {"name": "mup"}


# K of `reconstruction-flip`: the teacher's reconstruction of every training image and of the same image upside
# down. Upside-down images are not normal: what the teacher makes of them is how it fails on what it did not
# learn, which is what scores anomalies, while K on normal images only teaches the student to reconstruct them.
# Chosen on development runs only (Figure-2 classes, seeds 100-101, long-teacher teachers; mean AUROC 0.7667
# against 0.7600 for a quarter turn, 0.7539 a half turn, 0.7344 blends, 0.7082 noise, 0.7050 for K on x_hat alone
# and 0.7350 for the tuned student alone: results/teacher_pays_probe.json, docs/distillation.md).
_FLIPPED_RECONSTRUCTION_K = {
    "terms": [{"output": "x_hat", "loss": "l1", "weight": RECOMMENDED_XHAT_WEIGHT},
              {"output": "vflip/x_hat", "loss": "l1", "weight": RECOMMENDED_XHAT_WEIGHT}],
    "views": {"vflip": {"fn": "flip", "dim": -2}}}


def _fast_student(optimizer: OptimizerConfig) -> dict[str, OptimizerConfig]:
    """The student's generator at FAST_STUDENT_LR_FACTOR x the stage's lr; its discriminator keeps the stage's."""
    return {"student.generator": replace(optimizer, lr=FAST_STUDENT_LR_FACTOR * optimizer.lr)}


def _recommended(epochs: int, optimizer: OptimizerConfig) -> Schedule:
    """KDGAN-2 (student on its own losses, teacher frozen) with K on the reconstruction only (latent imitation is
    what hurts the narrow students) and the student's per-layer rates from the width rule; chosen on
    development runs (docs/distillation.md)."""
    return Schedule((Stage("KDGAN-2", epochs, optimizer, distillation=_RECONSTRUCTION_K,
                           lr_rule=RECOMMENDED_RULE),), name="recommended")


def _reconstruction_flip(epochs: int, optimizer: OptimizerConfig) -> Schedule:
    """`recommended` with K also on the teacher's reconstruction of each image turned upside down."""
    return Schedule((Stage("KDGAN-2", epochs, optimizer, distillation=_FLIPPED_RECONSTRUCTION_K,
                           lr_rule=RECOMMENDED_RULE),), name="reconstruction-flip")


def _reconstruction_fast(epochs: int, optimizer: OptimizerConfig) -> Schedule:
    """K = 30 * l1(x_hat) with the student's generator at FAST_STUDENT_LR_FACTOR x the stage's learning rate."""
    return Schedule((Stage("KDGAN-2", epochs, optimizer, distillation=_RECONSTRUCTION_K,
                           optimizers=_fast_student(optimizer)),), name="reconstruction-fast")


FAMILY_RECIPES: tuple[Recipe, ...] = (
    Recipe("recommended", _recommended,
           "the default: KDGAN-2 for M epochs with K = 30 * l1(x_hat) (the student imitates the teacher's "
           "reconstruction, not its latents) and the student's per-layer learning rates and initial scales from "
           "its widths relative to the teacher's (lr_rule mup); docs/distillation.md", version=2),
    Recipe("reconstruction-flip", _reconstruction_flip,
           "a candidate default, measured with long-trained teachers: recommended with K also on the teacher's "
           "reconstruction of each image turned upside down (how the teacher fails on what is not normal); "
           "docs/distillation.md"),
    Recipe("reconstruction-fast", _reconstruction_fast,
           "superseded by recommended: K = 30 * l1(x_hat) with the student's generator at 5x the stage's "
           "learning rate"),
)
"""GANomaly's recipes beyond ``paper``. ``recommended`` version 1 (K = 30 * l1(x_hat) at the stage's learning
rate, no width rule) is what records of version 1 ran."""

RECIPES: Mapping[str, Recipe] = MappingProxyType(GanomalyHooks().recipes())
"""Every recipe of the family by name (read-only): the one list CLI choices, run methods and sweep methods are
derived from."""
