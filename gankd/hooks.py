"""The contract a GAN family implements to be distilled by :class:`gankd.DistillationEngine`."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Mapping, NamedTuple

import torch
from torch import nn

from .distill import DistillationLoss

if TYPE_CHECKING:  # pragma: no cover
    from .schedule import Recipe


class Losses(NamedTuple):
    """A GAN loss: the scalar to minimise and its named, unweighted parts for logging."""

    total: torch.Tensor
    terms: dict[str, torch.Tensor]


class GAN(nn.Module):
    """A generator and its discriminator; teacher and student are both ``GAN`` s."""

    def __init__(self, generator: nn.Module, discriminator: nn.Module) -> None:
        super().__init__()
        self.generator = generator
        self.discriminator = discriminator


class GANHooks(ABC):
    """Subclass this to plug a GAN family into the engine.

    The engine never looks inside networks or batches: it asks the hooks to build the
    networks, to run a generator (returning *named* outputs so distillation terms can
    refer to them), and to compute the family's own generator/discriminator losses.

    ``outputs`` passed to the loss hooks is a per-step, per-GAN dict: the generator
    outputs, which the hooks may extend with intermediate results (e.g. discriminator
    features computed in :meth:`generator_loss`, reused by :meth:`discriminator_loss`)
    so no forward pass runs twice.
    """

    @abstractmethod
    def build_generator(self, width: Any) -> nn.Module:
        """A generator for a width config (e.g. channel counts); freshly initialised."""

    @abstractmethod
    def build_discriminator(self, width: Any) -> nn.Module:
        """A discriminator for a width config; freshly initialised."""

    def build_gan(self, width: Any) -> GAN:
        return GAN(self.build_generator(width), self.build_discriminator(width))

    @abstractmethod
    def distillation_loss(self) -> DistillationLoss:
        """The default distillation loss K for this family (named outputs, weights)."""

    def generator_inputs(self, batch: Any) -> Any:
        """What both generators consume for ``batch``; computed once per step so teacher and
        student see the same input (e.g. one shared latent sample for image-generation GANs)."""
        return batch

    @abstractmethod
    def generator_forward(self, generator: nn.Module, inputs: Any) -> Mapping[str, torch.Tensor]:
        """Run ``generator`` and return its named outputs."""

    @abstractmethod
    def generator_loss(self, gan: GAN, batch: Any, outputs: dict[str, torch.Tensor]) -> Losses:
        """The family's own generator loss L_g for ``gan`` on this step."""

    @abstractmethod
    def discriminator_loss(self, gan: GAN, batch: Any, outputs: dict[str, torch.Tensor]) -> Losses:
        """The family's own discriminator loss L_d; fakes must be detached from the generator."""

    def after_discriminator_step(self, gan: GAN, losses: Losses) -> bool | None:
        """Called after each discriminator update (e.g. re-initialise a collapsed D).

        Return True when the discriminator's weights were changed here, so that under
        DDP every process takes rank 0's new weights."""
        return None

    def state_dict(self) -> dict:
        """Counters or other state the hooks keep across steps, saved in checkpoints."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""

    def recipes(self) -> Mapping[str, "Recipe"]:
        """Named distillation recipes of this family (name -> :class:`gankd.Recipe`); at least ``paper``.
        Families add their own by overriding this and extending the base mapping."""
        from .schedule import PAPER_RECIPE

        return {"paper": PAPER_RECIPE}

    def recipe(self, name: str) -> "Recipe":
        """The recipe called ``name``, or a ``KeyError`` listing the family's recipes."""
        recipes = self.recipes()
        if name not in recipes:
            raise KeyError(f"unknown recipe {name!r} for {type(self).__name__}; recipes: {', '.join(recipes)}")
        return recipes[name]
