"""Image-to-image translation (pix2pix) plugged into gankd through its public API only.

The paired task is built from local data with a fixed operator: the input is the Sobel edge magnitude of a
32x32 grey image, the target is the image itself (Fashion-MNIST or scikit-learn digits). A batch is one
tensor ``(N, 2, 32, 32)`` in [-1, 1], channel 0 the edges and channel 1 the target, so the project's
:class:`gankd.ShuffledBatches` serves it and checkpoints its order.

Generator (width = ``ngf``): a U-Net ::

    edges (N,1,32,32) -> e1 ngf@16 -> e2 2ngf@8 -> e3 4ngf@4 -> e4 4ngf@2 (bottleneck)
    -> d1 4ngf@4 (+e3) ="d1"-> d2 2ngf@8 (+e2) ="d2"-> d3 ngf@16 (+e1) ="d3"-> (N,1,32,32) tanh ="image"

Discriminator (width = ``ndf`` = the same number): a conditional PatchGAN on ``cat(edges, image)``, 6x6
patch logits (receptive field 22x22). Losses (pix2pix): ``BCE(D(x, G(x)), 1) + l1_weight * |G(x) - y|_1``
for the generator, ``0.5 (BCE(D(x, y), 1) + BCE(D(x, G(x).detach()), 0))`` for the discriminator.

Distillation K (GAN Compression style, the same edges for both): ``l1(image_S, image_T)`` plus, for each
decoder feature d1, d2, d3, ``l2(conv1x1(d_S), d_T)``: the engine's registered ``conv1x1`` adaptor from the
student's channels to the teacher's; adaptors train with the student and are not part of its model file.
The recipe ``gan-compression`` trains the student on its own pix2pix losses plus K from the frozen teacher
(KDGAN-2) for 2M epochs, the budget of ``student-alone`` at 2M epochs.

Run it from YAML through ``gankd train`` (``examples/pix2pix/*.yaml``, guide: ``docs/image_to_image.md``).
"""
from __future__ import annotations

from typing import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from gankd import (GAN, DistillationLoss, DistillTerm, GANHooks, Losses, OptimizerConfig, Recipe, Schedule,
                   ShuffledBatches, Stage, get_structure)
from gankd.schedule import PAPER_RECIPE

TEACHER_WIDTH = 16
STUDENT_WIDTH = 5
FEATURES = ("d1", "d2", "d3")


def feature_channels(width: int) -> dict[str, int]:
    """Channels of the distilled decoder features of a U-Net of ``width``."""
    return {"d1": 4 * width, "d2": 2 * width, "d3": width}


def _down(cin: int, cout: int, norm: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 4, 2, 1, bias=not norm)]
    if norm:
        layers.append(nn.BatchNorm2d(cout))
    return nn.Sequential(*layers, nn.LeakyReLU(0.2, True))


def _up(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True))


def init_weights(module: nn.Module) -> None:
    """pix2pix init: conv weights ~ N(0, 0.02), BN weights ~ N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class UNetGenerator(nn.Module):
    """edges (N, 1, 32, 32) -> {"image", "d1", "d2", "d3"}; ``forward_image`` is the deployed network."""

    def __init__(self, width: int, in_channels: int = 1, out_channels: int = 1) -> None:
        super().__init__()
        w = width
        self.e1, self.e2 = _down(in_channels, w, norm=False), _down(w, 2 * w)
        self.e3, self.e4 = _down(2 * w, 4 * w), _down(4 * w, 4 * w, norm=False)
        self.d1, self.d2, self.d3 = _up(4 * w, 4 * w), _up(8 * w, 2 * w), _up(4 * w, w)
        self.out = nn.Sequential(nn.ConvTranspose2d(2 * w, out_channels, 4, 2, 1), nn.Tanh())
        init_weights(self)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        e1 = self.e1(x)
        e2 = self.e2(e1)
        e3 = self.e3(e2)
        d1 = self.d1(self.e4(e3))
        d2 = self.d2(torch.cat([d1, e3], 1))
        d3 = self.d3(torch.cat([d2, e2], 1))
        return {"image": self.out(torch.cat([d3, e1], 1)), "d1": d1, "d2": d2, "d3": d3}

    def forward_image(self, x: torch.Tensor) -> torch.Tensor:
        return self(x)["image"]


class PatchDiscriminator(nn.Module):
    """Conditional PatchGAN: (edges, image) -> patch logits (N, 6, 6)."""

    def __init__(self, width: int, in_channels: int = 2) -> None:
        super().__init__()
        w = width
        self.main = nn.Sequential(
            _down(in_channels, w, norm=False), _down(w, 2 * w),                       # 16, 8
            nn.Conv2d(2 * w, 4 * w, 4, 1, 1, bias=False), nn.BatchNorm2d(4 * w), nn.LeakyReLU(0.2, True),  # 7
            nn.Conv2d(4 * w, 1, 4, 1, 1))                                               # 6
        init_weights(self)

    def forward(self, condition: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.main(torch.cat([condition, image], 1)).flatten(1)


def _gan_compression(epochs: int, optimizer: OptimizerConfig) -> Schedule:
    return Schedule((Stage(get_structure("KDGAN-2"), 2 * epochs, optimizer),), name="gan-compression")


RECIPES: dict[str, Recipe] = {
    "paper": PAPER_RECIPE,
    "gan-compression": Recipe("gan-compression", _gan_compression,
                              "KDGAN-2 for 2M epochs: the student's pix2pix losses + K (output L1 and decoder "
                              "features through 1x1 adaptors) from the frozen teacher"),
}


class Pix2PixHooks(GANHooks):
    """Batches are ``(N, 2, 32, 32)``: channel 0 the condition (edges), channel 1 the target image.

    ``teacher_width`` and ``student_width`` size the 1x1 adaptors of K (student -> teacher channels).
    ``l1_weight`` is pix2pix's weight of the L1 to the target (100); K weighs the L1 to the teacher's output
    as much (``w_image``) and each feature term by ``w_feat`` (set a priori, not tuned).
    """

    def __init__(self, teacher_width: int = TEACHER_WIDTH, student_width: int = STUDENT_WIDTH,
                 l1_weight: float = 100.0, w_image: float = 100.0, w_feat: float = 10.0) -> None:
        for key, value in (("teacher_width", teacher_width), ("student_width", student_width)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Pix2PixHooks: {key} must be an integer >= 1, got {value!r}")
        self.teacher_width, self.student_width = teacher_width, student_width
        self.l1_weight, self.w_image, self.w_feat = float(l1_weight), float(w_image), float(w_feat)

    def build_generator(self, width: int) -> UNetGenerator:
        return UNetGenerator(width)

    def build_discriminator(self, width: int) -> PatchDiscriminator:
        return PatchDiscriminator(width)

    def distillation_loss(self) -> DistillationLoss:
        t, s = feature_channels(self.teacher_width), feature_channels(self.student_width)
        terms = [DistillTerm("image", "l1", self.w_image)]
        terms += [DistillTerm(name, "l2", self.w_feat, adaptor="conv1x1",
                              adaptor_args={"in_channels": s[name], "out_channels": t[name]}) for name in FEATURES]
        return DistillationLoss(terms)

    def recipes(self) -> Mapping[str, Recipe]:
        return RECIPES

    def generator_inputs(self, batch: torch.Tensor) -> torch.Tensor:
        return batch[:, :1]

    def generator_forward(self, generator: nn.Module, inputs: torch.Tensor) -> Mapping[str, torch.Tensor]:
        return generator(inputs)

    def generator_loss(self, gan: GAN, batch: torch.Tensor, outputs: dict[str, torch.Tensor]) -> Losses:
        """Conditional adversarial (non-saturating) + ``l1_weight`` * L1 to the target."""
        logits = gan.discriminator(batch[:, :1], outputs["image"])
        adv = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
        l1 = F.l1_loss(outputs["image"], batch[:, 1:])
        return Losses(adv + self.l1_weight * l1, {"adv": adv, "l1": l1})

    def discriminator_loss(self, gan: GAN, batch: torch.Tensor, outputs: dict[str, torch.Tensor]) -> Losses:
        condition = batch[:, :1]
        real = gan.discriminator(condition, batch[:, 1:])
        fake = gan.discriminator(condition, outputs["image"].detach())
        real_loss = F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
        fake_loss = F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
        return Losses(0.5 * (real_loss + fake_loss), {"real": real_loss, "fake": fake_loss})


# --- data: Sobel edges -> image --------------------------------------------------------------------------------

SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def sobel_edges(images: torch.Tensor) -> torch.Tensor:
    """Edge magnitude of (N, 1, H, W) images in [-1, 1], as (N, 1, H, W) in [-1, 1] (a fixed operator:
    the Sobel gradient of the image in [0, 1], magnitude clipped at 1)."""
    x = (images + 1) / 2
    kernels = torch.stack([SOBEL_X, SOBEL_X.t()])[:, None].to(images)
    g = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernels)
    return g.pow(2).sum(1, keepdim=True).sqrt().clamp(max=1.0) * 2 - 1


def load_pairs(dataset: str = "fmnist", split: str = "train", size: int | None = None, root: str | None = None,
               seed: int = 0) -> torch.Tensor:
    """``(N, 2, 32, 32)`` pairs (edges, image) of a split; ``size`` keeps a seeded subset of the training split
    (the test split keeps its first ``size`` images)."""
    from gankd_ganomaly.data import load_labelled

    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    data = load_labelled(dataset, root=root)
    images = data.train if split == "train" else data.test
    if images.shape[1] != 1:
        raise ValueError(f"dataset {dataset!r} has {images.shape[1]} channels; the edge task takes grey images")
    if size is not None and size < len(images):
        keep = (torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:size]
                if split == "train" else torch.arange(size))
        images = images[keep]
    return torch.cat([sobel_edges(images), images], 1)


def edge_pairs(dataset: str = "fmnist", train_size: int | None = None, batch_size: int = 32, seed: int = 0,
               root: str | None = None) -> ShuffledBatches:
    """The data factory of a run config: seeded, checkpointable batches of training pairs. The subset does
    not depend on the run's seed (it is drawn with seed 0), only the batch order does."""
    return ShuffledBatches(load_pairs(dataset, "train", train_size, root), batch_size, seed=seed, drop_last=True)


# --- evaluation -------------------------------------------------------------------------------------------------

@torch.no_grad()
def translate(generator: nn.Module, edges: torch.Tensor, batch_size: int = 250) -> torch.Tensor:
    """Generated images (N, 1, 32, 32) for edge maps, in eval mode (batch-norm running statistics)."""
    was = generator.training
    generator.eval()
    try:
        return torch.cat([generator(edges[i:i + batch_size])["image"] for i in range(0, len(edges), batch_size)])
    finally:
        generator.train(was)


def l1_psnr(generated: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """Mean absolute error in [-1, 1] and mean per-image PSNR (dB) of the images mapped to [0, 1]."""
    mse = ((generated - target) / 2).pow(2).flatten(1).mean(1).clamp(min=1e-10)
    return {"l1": float((generated - target).abs().mean()), "psnr": float((10 * torch.log10(1 / mse)).mean())}


def translation_metric(hooks: Pix2PixHooks, teacher: GAN | None, student: GAN | None, dataset: str = "fmnist",
                       test_size: int = 1000, root: str | None = None) -> Callable[[object], dict[str, float]]:
    """The evaluate factory: L1 and PSNR to the target on the first ``test_size`` test pairs, for the network
    the run trains (the student when there is one), after every epoch."""
    pairs = load_pairs(dataset, "test", test_size, root)
    trained = student if student is not None else teacher

    def metric(engine) -> dict[str, float]:
        return l1_psnr(translate(trained.generator, pairs[:, :1]), pairs[:, 1:])
    return metric


class DeployedUNet(nn.Module):
    """The generator as deployed: edges -> image (for params/MACs)."""

    def __init__(self, generator: UNetGenerator) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.generator.forward_image(x)
