"""GANomaly networks at 32x32 (paper Table 1): DCGAN-style 4x4 convolutions.

Encoder  (C,32,32) -> c1@16 -> c2@8 -> c3@4 -> latent@1   (BN + LeakyReLU(0.2) on the first three)
Decoder  latent@1 -> c3@4 -> c2@8 -> c1@16 -> (C,32,32)    (BN + ReLU, then Tanh)
Generator = encoder G_E, decoder G_D, encoder G_R with separate weights: x -> z1 -> x_hat -> z2.
Discriminator = encoder whose final conv has 1 unit; its 4x4 penultimate map is f(.).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

IMAGE_SIZE = 32
LATENT_DIM = 256

TEACHER_WIDTHS: tuple[int, int, int] = (64, 128, 256)
# each dataset's student widths live in its registry entry (gankd_ganomaly.data.registry.DatasetSpec.student_widths)


def check_widths(widths: Sequence[int]) -> tuple[int, int, int]:
    widths = tuple(widths)
    if len(widths) != 3 or not all(isinstance(w, int) and w >= 1 for w in widths):
        raise ValueError(f"widths must be three positive integers (c1, c2, c3), got {widths!r}")
    return widths  # type: ignore[return-value]


def init_dcgan_weights(module: nn.Module) -> None:
    """DCGAN/GANomaly init: conv weights ~ N(0, 0.02), BN weights ~ N(1, 0.02), BN bias 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class Encoder(nn.Module):
    """(N, C, 32, 32) -> (N, out_dim, 1, 1); ``features`` gives the (N, c3, 4, 4) map before the last conv."""

    def __init__(self, in_channels: int, widths: Sequence[int], out_dim: int) -> None:
        super().__init__()
        c1, c2, c3 = check_widths(widths)
        blocks: list[nn.Module] = []
        for cin, cout in ((in_channels, c1), (c1, c2), (c2, c3)):
            blocks += [nn.Conv2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2, inplace=True)]
        self.features = nn.Sequential(*blocks)
        self.head = nn.Conv2d(c3, out_dim, 4, 1, 0, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class Decoder(nn.Module):
    """(N, latent, 1, 1) -> (N, C, 32, 32) in [-1, 1]."""

    def __init__(self, out_channels: int, widths: Sequence[int], latent_dim: int) -> None:
        super().__init__()
        c1, c2, c3 = check_widths(widths)
        layers: list[nn.Module] = [nn.ConvTranspose2d(latent_dim, c3, 4, 1, 0, bias=False), nn.BatchNorm2d(c3), nn.ReLU(True)]
        for cin, cout in ((c3, c2), (c2, c1)):
            layers += [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(c1, out_channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z)


class GanomalyGenerator(nn.Module):
    """x -> (z1, x_hat, z2): z1 = G_E(x), x_hat = G_D(z1), z2 = G_R(x_hat); z's are (N, latent, 1, 1)."""

    def __init__(self, in_channels: int, widths: Sequence[int], latent_dim: int = LATENT_DIM) -> None:
        super().__init__()
        self.in_channels, self.widths, self.latent_dim = in_channels, check_widths(widths), latent_dim
        self.encoder1 = Encoder(in_channels, widths, latent_dim)
        self.decoder = Decoder(in_channels, widths, latent_dim)
        self.encoder2 = Encoder(in_channels, widths, latent_dim)
        init_dcgan_weights(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        check_images(x, self.in_channels)
        z1 = self.encoder1(x)
        x_hat = self.decoder(z1)
        return z1, x_hat, self.encoder2(x_hat)


class GanomalyDiscriminator(nn.Module):
    """x -> (logit (N,), features f(x) (N, c3, 4, 4)). Logits, not probabilities: BCE-with-logits is stable."""

    def __init__(self, in_channels: int, widths: Sequence[int]) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.encoder = Encoder(in_channels, widths, 1)
        init_dcgan_weights(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.encoder.features(x)
        return self.encoder.head(features).flatten(), features

    def reset_parameters(self) -> None:
        init_dcgan_weights(self)


def check_images(x: torch.Tensor, channels: int) -> None:
    """Named errors for inputs the 32x32 networks cannot take (rather than a deep conv shape error)."""
    if x.dim() != 4 or x.shape[1] != channels or x.shape[2:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"expected images of shape (N, {channels}, {IMAGE_SIZE}, {IMAGE_SIZE}), "
                         f"got {tuple(x.shape)}")
