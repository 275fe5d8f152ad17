"""Sample-quality metrics of a generator, computed on given feature arrays (nothing is downloaded).

FID, KID and precision/recall are defined on the features of a fixed network; which network is the
caller's choice. Inception weights need the internet, so the examples of this project use the penultimate
features of a small classifier trained on each dataset's real training split (``examples/dcgan_quality.py``).

- :func:`frechet_distance`: FID's formula, ``|mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))``, with the
  unbiased sample covariances (as ``np.cov``);
- :func:`kernel_distance`: KID (Binkowski et al. 2018), the unbiased MMD^2 estimator with the polynomial
  kernel ``(x.y / d + 1)^3``, averaged over random subsets (of 1000 samples, 100 subsets, as torch-fidelity);
- :func:`precision_recall`: Kynkaanniemi et al. 2019: the share of generated samples inside the k-NN
  manifold of the real ones (precision) and of real samples inside the generated manifold (recall), k = 3.

The estimators follow torch-fidelity's ``metric_fid``, ``metric_kid`` and ``metric_prc``. That package (and
torchmetrics) computes them from given features too, but both import torchvision when imported, so they
are unusable wherever torchvision does not match the installed torch; these ~80 lines need numpy and
torch only. Features are ``(N, D)`` arrays or tensors; they are compared in float64.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["frechet_distance", "kernel_distance", "precision_recall", "generation_metrics"]


def _features(x: Any, name: str) -> torch.Tensor:
    """``x`` as a float64 CPU tensor of shape (N, D), N >= 2, all finite; errors name the argument."""
    t = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x).detach().to("cpu", torch.float64)
    if t.dim() != 2:
        raise ValueError(f"{name} must be a 2-d array of features (N, D), got shape {tuple(t.shape)}")
    if len(t) < 2:
        raise ValueError(f"{name} needs at least 2 samples, got {len(t)}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} holds non-finite values (NaN or inf); check the generator's outputs")
    return t


def _pair(a: Any, b: Any, names: tuple[str, str]) -> tuple[torch.Tensor, torch.Tensor]:
    ta, tb = _features(a, names[0]), _features(b, names[1])
    if ta.shape[1] != tb.shape[1]:
        raise ValueError(f"{names[0]} has {ta.shape[1]} features per sample but {names[1]} has {tb.shape[1]}; "
                         "compute both with the same feature network")
    return ta, tb


def frechet_distance(features_a: Any, features_b: Any) -> float:
    """FID's Frechet distance between Gaussians fitted to two feature sets (N_a, D) and (N_b, D)."""
    a, b = (x.numpy() for x in _pair(features_a, features_b, ("features_a", "features_b")))
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    # Tr (S_a S_b)^(1/2) = Tr (S_a^(1/2) S_b S_a^(1/2))^(1/2): a symmetric PSD matrix, so eigvalsh is exact
    w, v = np.linalg.eigh(cov_a)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cov_b @ root_a), 0, None)).sum()
    diff = mu_a - mu_b
    return float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2 * tr_covmean)


def kernel_distance(features_a: Any, features_b: Any, *, subsets: int = 100, subset_size: int = 1000,
                    degree: int = 3, coef0: float = 1.0, gamma: float | None = None, seed: int = 0) -> tuple[float, float]:
    """KID: mean and std over ``subsets`` random subsets of the unbiased MMD^2 with the kernel
    ``(gamma x.y + coef0)^degree`` (``gamma`` defaults to 1/D). ``subset_size`` is capped at the smaller set."""
    a, b = _pair(features_a, features_b, ("features_a", "features_b"))
    for key, value in (("subsets", subsets), ("subset_size", subset_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"kernel_distance: {key} must be an integer >= 1, got {value!r}")
    size = min(subset_size, len(a), len(b))
    if size < 2:
        raise ValueError(f"kernel_distance: subset_size must be >= 2, got {subset_size!r}")
    x_all, y_all = a.numpy(), b.numpy()
    g = 1.0 / x_all.shape[1] if gamma is None else gamma
    rng = np.random.RandomState(seed)
    values = np.empty(subsets)
    for i in range(subsets):
        x = x_all[rng.choice(len(x_all), size, replace=False)]
        y = y_all[rng.choice(len(y_all), size, replace=False)]
        kxx, kyy, kxy = ((p @ q.T * g + coef0) ** degree for p, q in ((x, x), (y, y), (x, y)))
        within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (size * (size - 1))
        values[i] = within - 2 * kxy.mean()
    return float(values.mean()), float(values.std())


def precision_recall(generated: Any, real: Any, *, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) with k-NN radii (``k = 3`` as in the paper).

    Precision: share of ``generated`` samples within the k-NN ball of some real sample; recall: share of
    ``real`` samples within the k-NN ball of some generated sample."""
    g, r = _pair(generated, real, ("generated", "real"))
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k < min(len(g), len(r)):
        raise ValueError(f"precision_recall: k must be an integer in [1, {min(len(g), len(r)) - 1}], got {k!r}")
    def knn_radii(x: torch.Tensor) -> torch.Tensor:  # distance to the k-th neighbour other than itself
        return torch.cat([_distances(c, x).kthvalue(k + 1, dim=1).values for c in x.split(2048)])

    def covered(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> float:
        inside = [(_distances(c, centres) <= radii).any(dim=1) for c in points.split(2048)]
        return float(torch.cat(inside).double().mean())

    return covered(g, r, knn_radii(r)), covered(r, g, knn_radii(g))


def _distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact Euclidean distances (no matrix-product shortcut: a point's distance to itself is 0)."""
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")


def generation_metrics(generated: Any, real: Any, *, kid_subsets: int = 100, kid_subset_size: int = 1000,
                       k: int = 3, seed: int = 0) -> dict[str, float]:
    """``{"fd", "kid", "kid_std", "precision", "recall"}`` of generated features against real ones (lower
    fd/kid are better; higher precision/recall are better)."""
    kid, kid_std = kernel_distance(generated, real, subsets=kid_subsets, subset_size=kid_subset_size, seed=seed)
    precision, recall = precision_recall(generated, real, k=k)
    return {"fd": frechet_distance(generated, real), "kid": kid, "kid_std": kid_std,
            "precision": precision, "recall": recall}
