"""A decision, not just a score: the threshold calibrated on held-out normal images, and the rates at it."""
from __future__ import annotations

import numpy as np
import torch


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
