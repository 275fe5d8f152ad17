"""AUROC of a GANomaly detector on a labelled test split.

``bn_mode="eval"`` (the default) scores with batch-norm running statistics, as a deployed
model would. ``bn_mode="batch"`` normalises each test batch with its own statistics, as
the published GANomaly code does (it never calls ``eval()``); scores then depend on the
test batch size, so results record both. Running statistics are left untouched either way.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Protocol, runtime_checkable

import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from gankd import GAN

BN_MODES = ("eval", "batch")


@runtime_checkable
class Detector(Protocol):
    """A family that scores samples (GANomaly's hooks): a capability of detector families, not of every GAN."""

    def score(self, gan: GAN, batch: torch.Tensor) -> torch.Tensor:
        """Per-sample novelty score, shape (N,); higher = more novel."""


@contextmanager
def scoring_mode(module: nn.Module, bn_mode: str) -> Iterator[None]:
    """Put ``module`` in the requested test-time mode; restore its mode and BN buffers afterwards."""
    if bn_mode not in BN_MODES:
        raise ValueError(f"bn_mode must be one of {BN_MODES}, got {bn_mode!r}")
    was_training = module.training
    saved = {k: v.clone() for k, v in module.state_dict().items() if "running_" in k or "num_batches" in k}
    module.train(bn_mode == "batch")
    try:
        yield
    finally:
        module.train(was_training)
        if bn_mode == "batch":
            with torch.no_grad():
                for k, v in module.state_dict().items():
                    if k in saved:
                        v.copy_(saved[k])


def anomaly_scores(hooks: Detector, gan: GAN, images: torch.Tensor, *, batch_size: int = 256,
                   bn_mode: str = "eval", device: str | torch.device | None = None) -> torch.Tensor:
    """Scores (N,) on CPU for images (N, C, H, W), computed in batches under inference mode."""
    if not isinstance(hooks, Detector):
        raise TypeError(f"{type(hooks).__name__} does not score samples: anomaly scores need a detector family "
                        "(hooks with a score(gan, batch) method, such as GanomalyHooks)")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = torch.device(device) if device is not None else next(gan.parameters()).device
    out = []
    with scoring_mode(gan, bn_mode), torch.inference_mode():
        for start in range(0, len(images), batch_size):
            batch = images[start:start + batch_size].to(device, non_blocking=True)
            out.append(hooks.score(gan, batch).float().cpu())
    return torch.cat(out)


def auroc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve; labels 1 = novel (should score high), 0 = normal."""
    labels = labels.cpu().numpy()
    if len(set(labels.tolist())) != 2:
        raise ValueError("AUROC needs both normal (0) and novel (1) samples in the test labels")
    scores = scores.cpu().double().numpy()
    if not torch.isfinite(torch.from_numpy(scores)).all():
        raise FloatingPointError("anomaly scores contain NaN/Inf; the model has diverged")
    return float(roc_auc_score(labels, scores))


def evaluate_auroc(hooks: Detector, gan: GAN, images: torch.Tensor, labels: torch.Tensor, *,
                   batch_size: int = 256, bn_mode: str = "eval") -> float:
    return auroc(anomaly_scores(hooks, gan, images, batch_size=batch_size, bn_mode=bn_mode), labels)
