"""GANomaly networks (paper Table 1): DCGAN-style 4x4 convolutions, for images of 32x32, 64x64 or 128x128.

At 32x32 (the paper's size, the default)::

    Encoder  (C,32,32) -> c1@16 -> c2@8 -> c3@4 -> latent@1   (BN + LeakyReLU(0.2) on the first three)
    Decoder  latent@1 -> c3@4 -> c2@8 -> c1@16 -> (C,32,32)    (BN + ReLU, then Tanh)

Generator = encoder G_E, decoder G_D, encoder G_R with separate weights: x -> z1 -> x_hat -> z2.
Discriminator = encoder whose final conv has 1 unit; its 4x4 penultimate map is f(.).

Larger images (``image_size`` 64 or 128) get GANomaly's "pyramid" (samet-akcay/ganomaly, ``lib/networks.py``,
``Encoder``/``Decoder`` for ``isize > 32``): one more stride-2 4x4 conv + BN + LeakyReLU block per doubling of
the size, each **doubling the width of the block before it**, until the map is 4x4; the decoder mirrors it::

    64x64:   (C,64,64) -> c1@32 -> c2@16 -> c3@8 -> 2*c3@4 -> latent@1
    128x128: (C,128,128) -> c1@64 -> c2@32 -> c3@16 -> 2*c3@8 -> 4*c3@4 -> latent@1

(:func:`pyramid_widths`). Why doubling, as the original does, rather than keeping c3 at the 4x4 map: the teacher
(64, 128, 256) then is exactly GANomaly's own network at that size (ngf = ndf = 64: 64-128-256-512 at 64x64), and
teacher and student both grow by doubling per extra block, so the student stays tiny next to its teacher (the
MNIST student 2-4-8 becomes 2-4-8-16 at 64x64: 205K generator parameters, 2.0x its 32x32 count, against 14.6M,
2.8x, for the teacher; ``gankd-ganomaly flops --dataset mnist --image-size 64``). At 32x32 the networks, their
parameter names and their weights are those of the 32x32-only versions: existing model files load unchanged.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

IMAGE_SIZE = 32
"""The default (and the paper's) image size."""
IMAGE_SIZES: tuple[int, ...] = (32, 64, 128)
"""The image sizes the networks are built for (:func:`pyramid_widths`)."""
LATENT_DIM = 256

TEACHER_WIDTHS: tuple[int, int, int] = (64, 128, 256)
# each dataset's student widths live in its registry entry (gankd_ganomaly.data.registry.DatasetSpec.student_widths)


def check_widths(widths: Sequence[int]) -> tuple[int, int, int]:
    widths = tuple(widths)
    if len(widths) != 3 or not all(isinstance(w, int) and w >= 1 for w in widths):
        raise ValueError(f"widths must be three positive integers (c1, c2, c3), got {widths!r}")
    return widths  # type: ignore[return-value]


def check_image_size(image_size: object) -> int:
    """``image_size`` as an int if it is one of :data:`IMAGE_SIZES`, else a ValueError saying which are."""
    if isinstance(image_size, bool) or image_size not in IMAGE_SIZES:
        raise ValueError(f"image_size must be one of {', '.join(map(str, IMAGE_SIZES))} (the networks' input is "
                         f"square: 32x32, 64x64 or 128x128), got {image_size!r}")
    return int(image_size)  # type: ignore[arg-type]


def pyramid_widths(widths: Sequence[int], image_size: int = IMAGE_SIZE) -> tuple[int, ...]:
    """The encoder's block widths for ``image_size``: (c1, c2, c3) at 32x32, then one block per doubling of the
    size, each twice as wide as the one before (GANomaly's pyramid): (c1, c2, c3, 2*c3) at 64x64, (c1, c2, c3,
    2*c3, 4*c3) at 128x128. The last is the width of the 4x4 map (the discriminator's features)."""
    c1, c2, c3 = check_widths(widths)
    extra = {32: 0, 64: 1, 128: 2}[check_image_size(image_size)]
    return (c1, c2, c3, *(c3 * 2 ** (i + 1) for i in range(extra)))


def init_dcgan_weights(module: nn.Module) -> None:
    """DCGAN/GANomaly init: conv weights ~ N(0, 0.02), BN weights ~ N(1, 0.02), BN bias 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class Encoder(nn.Module):
    """(N, C, S, S) -> (N, out_dim, 1, 1), S = ``image_size``; ``features`` gives the 4x4 map before the last conv,
    (N, c3, 4, 4) at 32x32 (the last of :func:`pyramid_widths` channels at other sizes)."""

    def __init__(self, in_channels: int, widths: Sequence[int], out_dim: int, image_size: int = IMAGE_SIZE) -> None:
        super().__init__()
        chain = pyramid_widths(widths, image_size)
        blocks: list[nn.Module] = []
        for cin, cout in zip((in_channels, *chain[:-1]), chain):
            blocks += [nn.Conv2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2, inplace=True)]
        self.features = nn.Sequential(*blocks)
        self.head = nn.Conv2d(chain[-1], out_dim, 4, 1, 0, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class Decoder(nn.Module):
    """(N, latent, 1, 1) -> (N, C, S, S) in [-1, 1], S = ``image_size``: the encoder's pyramid in reverse."""

    def __init__(self, out_channels: int, widths: Sequence[int], latent_dim: int,
                 image_size: int = IMAGE_SIZE) -> None:
        super().__init__()
        chain = pyramid_widths(widths, image_size)[::-1]  # (widest at 4x4, ..., c1)
        layers: list[nn.Module] = [nn.ConvTranspose2d(latent_dim, chain[0], 4, 1, 0, bias=False),
                                   nn.BatchNorm2d(chain[0]), nn.ReLU(True)]
        for cin, cout in zip(chain[:-1], chain[1:]):
            layers += [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(chain[-1], out_channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z)


class GanomalyGenerator(nn.Module):
    """x -> (z1, x_hat, z2): z1 = G_E(x), x_hat = G_D(z1), z2 = G_R(x_hat); z's are (N, latent, 1, 1).

    ``image_size`` (32, 64 or 128): the side of the square images it takes and reconstructs."""

    def __init__(self, in_channels: int, widths: Sequence[int], latent_dim: int = LATENT_DIM,
                 image_size: int = IMAGE_SIZE) -> None:
        super().__init__()
        self.in_channels, self.widths, self.latent_dim = in_channels, check_widths(widths), latent_dim
        self.image_size = check_image_size(image_size)
        self.encoder1 = Encoder(in_channels, widths, latent_dim, image_size)
        self.decoder = Decoder(in_channels, widths, latent_dim, image_size)
        self.encoder2 = Encoder(in_channels, widths, latent_dim, image_size)
        init_dcgan_weights(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        check_images(x, self.in_channels, self.image_size)
        z1 = self.encoder1(x)
        x_hat = self.decoder(z1)
        return z1, x_hat, self.encoder2(x_hat)


class GanomalyDiscriminator(nn.Module):
    """x -> (logit (N,), features f(x) (N, c3, 4, 4) at 32x32). Logits, not probabilities: BCE-with-logits is
    stable. ``image_size``: as :class:`GanomalyGenerator`'s."""

    def __init__(self, in_channels: int, widths: Sequence[int], image_size: int = IMAGE_SIZE) -> None:
        super().__init__()
        self.in_channels, self.image_size = in_channels, check_image_size(image_size)
        self.encoder = Encoder(in_channels, widths, 1, image_size)
        init_dcgan_weights(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.encoder.features(x)
        return self.encoder.head(features).flatten(), features

    def reset_parameters(self) -> None:
        init_dcgan_weights(self)


def check_images(x: torch.Tensor, channels: int, image_size: int = IMAGE_SIZE) -> None:
    """Named errors for inputs the networks cannot take (rather than a deep conv shape error)."""
    if x.dim() != 4 or x.shape[1] != channels or x.shape[2:] != (image_size, image_size):
        raise ValueError(f"expected images of shape (N, {channels}, {image_size}, {image_size}), got "
                         f"{tuple(x.shape)}: the network is built for {image_size}x{image_size} images")
