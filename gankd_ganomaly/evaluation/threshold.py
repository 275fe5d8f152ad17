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


def calibrate_threshold(scores: torch.Tensor | np.ndarray, target_fpr: float) -> float:
    """The decision threshold for normal-only ``scores``: their ``1 - target_fpr`` quantile (NumPy ``"higher"``
    method: an observed score, so that at most ``target_fpr`` of these scores lie above it). An image is novel
    when its score is ``> threshold``. With n calibration scores the expected false-positive rate on new normal
    images is at least about 1 / (n + 1), whatever the target: set more images aside for a small target."""
    if not 0 < target_fpr < 1:
        raise ValueError(f"target false-positive rate must be in (0, 1), got {target_fpr!r}")
    values = np.asarray(scores.cpu() if isinstance(scores, torch.Tensor) else scores, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("no calibration scores: cannot calibrate a threshold")
    if not np.isfinite(values).all():
        raise FloatingPointError("calibration scores contain NaN/Inf; the model has diverged")
    return float(np.quantile(values, 1.0 - target_fpr, method="higher"))


def rates_at_threshold(scores: torch.Tensor, labels: torch.Tensor, threshold: float) -> dict[str, float | None]:
    """``{"fpr_at_threshold", "tpr_at_threshold"}``: the share of normal (label 0) and of novel (label 1) images
    whose score is above ``threshold`` (None where there are no images of that label)."""
    novel = scores.double() > threshold
    labels = labels.bool()
    neg, pos = int((~labels).sum()), int(labels.sum())
    return {"fpr_at_threshold": float(novel[~labels].sum()) / neg if neg else None,
            "tpr_at_threshold": float(novel[labels].sum()) / pos if pos else None}
