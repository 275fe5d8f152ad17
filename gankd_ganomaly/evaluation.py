"""AUROC of a GANomaly detector on a labelled test split.

``bn_mode="eval"`` (the default) scores with batch-norm running statistics, as a deployed
model would. ``bn_mode="batch"`` normalises each test batch with its own statistics, as
the published GANomaly code does (it never calls ``eval()``); scores then depend on the
test batch size, so results record both. Running statistics are left untouched either way.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Protocol, runtime_checkable

import numpy as np
import torch
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


def as_image_tensor(images: Any, channels: int | None, what: str = "images") -> torch.Tensor:
    """``images`` checked for scoring: a float tensor (N, C, 32, 32) with N >= 1 and finite values.

    A NumPy array is converted with ``torch.from_numpy`` (no copy; same dtype rules as a tensor). Integer
    images (e.g. uint8 0-255) are refused rather than guessed at: scale them to [-1, 1] first
    (``images.float() / 127.5 - 1``). Other types, a wrong shape or channel count, an empty batch or a NaN/Inf
    value raise :class:`~gankd_ganomaly.data.InvalidImagesError` naming ``what`` and the offending value
    (with ``channels=None`` any channel count passes).
    """
    from .data import InvalidImagesError, validate_images

    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if not isinstance(images, torch.Tensor):
        raise InvalidImagesError(f"{what} must be a torch.Tensor or numpy array (N, C, 32, 32), got "
                                 f"{type(images).__name__}")
    if not images.is_floating_point() and images.dim() == 4 and images.shape[0] > 0:
        raise InvalidImagesError(f"{what} must be floating point in [-1, 1], got dtype {images.dtype}; scale them "
                                 "first, e.g. images.float() / 127.5 - 1 for 0-255 values")
    validate_images(images, channels if channels is not None else (images.shape[1] if images.dim() == 4 else 1),
                    what=what)
    return images


def anomaly_scores(hooks: Detector, gan: GAN, images: torch.Tensor, *, batch_size: int = 256,
                   bn_mode: str = "eval", device: str | torch.device | None = None) -> torch.Tensor:
    """Scores (N,) on CPU for images (N, C, 32, 32) in [-1, 1], computed in batches under inference mode.

    ``images`` are checked first (:func:`as_image_tensor`: a NumPy array is converted; integer, empty,
    wrongly shaped or NaN/Inf input raises :class:`~gankd_ganomaly.data.InvalidImagesError`), so one bad image
    never turns a batch's scores into NaN.
    """
    if not isinstance(hooks, Detector):
        raise TypeError(f"{type(hooks).__name__} does not score samples: anomaly scores need a detector family "
                        "(hooks with a score(gan, batch) method, such as GanomalyHooks)")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if bn_mode not in BN_MODES:
        raise ValueError(f"bn_mode must be one of {BN_MODES}, got {bn_mode!r}")
    channels = getattr(hooks, "in_channels", None) or getattr(getattr(gan, "generator", None), "in_channels", None)
    images = as_image_tensor(images, channels)
    device = torch.device(device) if device is not None else next(gan.parameters()).device
    out = []
    with scoring_mode(gan, bn_mode), torch.inference_mode():
        for start in range(0, len(images), batch_size):
            batch = images[start:start + batch_size].to(device, non_blocking=True)
            out.append(hooks.score(gan, batch).float().cpu())
    return torch.cat(out)


def auroc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve; labels 1 = novel (should score high), 0 = normal."""
    from sklearn.metrics import roc_auc_score  # here: scikit-learn takes a second to import; the CLI needs none

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


# --- a decision: the threshold -------------------------------------------------------------------------------


def calibration_split(n: int, share: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(train indices, calibration indices)`` of ``n`` normal images, a ``share`` of them set aside at random
    (deterministic in ``seed``), each in increasing order. ``share=0`` sets none aside. At least one image stays
    on each side when ``share > 0`` (``n >= 2`` needed)."""
    if not 0 <= share < 1:
        raise ValueError(f"calibration share must be in [0, 1), got {share!r}")
    if share == 0:
        return torch.arange(n), torch.arange(0)
    if n < 2:
        raise ValueError(f"cannot set a calibration share aside from {n} training image(s): give at least 2, or "
                         "set calibration_share=0 (then the threshold is calibrated on the training images)")
    k = min(max(1, round(share * n)), n - 1)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    return perm[k:].sort().values, perm[:k].sort().values


def threshold_rank(n: int, target_fpr: float) -> int:
    """``j`` such that the threshold of :func:`calibrate_threshold` is the ``j``-th largest of ``n`` calibration
    scores: ``floor(target_fpr * (n + 1))``, at least 1 (a small tolerance absorbs float error, e.g. 0.29 * 100)."""
    return max(1, int(np.floor(target_fpr * (n + 1) + 1e-9)))


def calibrate_threshold(scores: torch.Tensor | np.ndarray, target_fpr: float) -> float:
    """The decision threshold for normal-only ``scores`` (an image is novel when its score is ``> threshold``).

    Estimator: the ``j``-th largest calibration score, ``j = floor(target_fpr * (n + 1))`` (at least 1;
    :func:`threshold_rank`), i.e. the order statistic of rank ``ceil((1 - target_fpr) * (n + 1))`` from below,
    the split-conformal quantile. For a new normal image whose score is exchangeable with the n calibration
    scores (i.i.d., no ties) the probability of scoring above the ``j``-th largest of them is exactly
    ``j / (n + 1)``, so the expected false-positive rate is at most ``target_fpr`` and more than
    ``target_fpr - 1 / (n + 1)`` (n = 610, 1%: j = 6, 0.98%). Ties only lower it. On the calibration scores
    themselves ``j - 1`` lie above the threshold.

    When ``n + 1 < 1 / target_fpr`` the target cannot be reached: the threshold is the largest score and the
    expected rate on new images is ``1 / (n + 1)`` (2% with 49 images), above the target: set more images aside
    for a small target. (Before this estimator NumPy's ``"higher"`` quantile was used, the
    ``1 + floor(target_fpr * (n - 1))``-th largest, one rank too low for most n: expected rate about
    ``target_fpr + 1 / (n + 1)``, e.g. 1.15% instead of 0.98% for n = 610, 1.9% instead of 0.96% for n = 103.)
    The guarantee holds only as far as the calibration images are exchangeable with the new ones: held-out
    images from the training distribution, scored in the same ``bn_mode``, not the training images themselves.
    """
    if not 0 < target_fpr < 1:
        raise ValueError(f"target false-positive rate must be in (0, 1), got {target_fpr!r}")
    values = np.asarray(scores.cpu() if isinstance(scores, torch.Tensor) else scores, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("no calibration scores: cannot calibrate a threshold")
    if not np.isfinite(values).all():
        raise FloatingPointError("calibration scores contain NaN/Inf; the model has diverged")
    n = values.size
    j = threshold_rank(n, target_fpr)
    return float(np.partition(values, n - j)[n - j])


def rates_at_threshold(scores: torch.Tensor, labels: torch.Tensor, threshold: float) -> dict[str, float | None]:
    """``{"fpr_at_threshold", "tpr_at_threshold"}``: the share of normal (label 0) and of novel (label 1) images
    whose score is above ``threshold`` (None where there are no images of that label)."""
    novel = scores.double() > threshold
    labels = labels.bool()
    neg, pos = int((~labels).sum()), int(labels.sum())
    return {"fpr_at_threshold": float(novel[~labels].sum()) / neg if neg else None,
            "tpr_at_threshold": float(novel[labels].sum()) / pos if pos else None}
