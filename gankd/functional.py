"""Tensor functions shared by the engine's derived outputs and the families' scores.

Written for TorchScript as well as eager mode (plain tensor arguments, annotated, no ``from __future__``
annotations), so exported scoring graphs call the same function that training and evaluation use.
"""
import torch


def squared_error(a: torch.Tensor, b: torch.Tensor, batch_dim: int = 0) -> torch.Tensor:
    """Per-sample mean of ``(a - b)^2`` over every dimension but ``batch_dim``: shape (N,).

    GANomaly's anomaly score is ``squared_error(z1, z2)``, z of shape (N, latent, 1, 1); a scorer that keeps the
    batch as the innermost dimension, z of shape (latent, N), passes ``batch_dim=-1``.
    """
    d = (a - b).pow(2)
    if batch_dim != 0:
        d = d.movedim(batch_dim, 0)
    return d.flatten(1).mean(dim=1)
