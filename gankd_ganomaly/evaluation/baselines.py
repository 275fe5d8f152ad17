"""Table 2's classical baselines on raw pixels, from scikit-learn: one-class SVM and kernel density estimation.

Both see exactly the images the GANs see (the sweep's train set of the normal class, the whole test split), as
flat vectors of the [-1, 1] 32x32 pixels (1024 values for MNIST/FMNIST/digits, 3072 for CIFAR-10). Nothing is
tuned on the test split.

- ``ocsvm``: :class:`sklearn.svm.OneClassSVM`, RBF kernel, ``gamma="scale"`` (1 / (n_features * X.var()), computed on
  the training images), ``nu=0.1``; novelty score = ``-decision_function``.
- ``kde``: :class:`sklearn.neighbors.KernelDensity`, Gaussian kernel, on the first ``min(64, n_train - 1)``
  principal components of the training images (PCA fit on the train split only). A density in 1024-3072 raw
  dimensions is numerically degenerate, which is why the usual protocol reduces first. The bandwidth maximises the
  5-fold cross-validated log-likelihood of the TRAINING images over 11 values log-spaced in [0.1, 10] x Scott's
  rule (``n ** (-1 / (d + 4))`` times the root-mean variance of the components); novelty score = ``-log density``.

The paper does not say how its OC-SVM/KDE figures were tuned (they are quoted from earlier papers, which tuned on
part of the test set); ours are not tuned on the test set at all, so differences to Table 2 are expected.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from .scoring import auroc

BASELINES: tuple[str, ...] = ("ocsvm", "kde")

OCSVM_NU = 0.1
OCSVM_GAMMA = "scale"
KDE_MAX_COMPONENTS = 64
KDE_BANDWIDTH_FACTORS = tuple(float(f) for f in np.logspace(-1, 1, 11))
KDE_CV_FOLDS = 5


def _flat(images: Any) -> np.ndarray:
    array = images.detach().cpu().numpy() if hasattr(images, "detach") else np.asarray(images)
    return array.reshape(len(array), -1).astype(np.float64)


def ocsvm_scores(train: Any, test: Any, *, nu: float = OCSVM_NU,
                 gamma: str | float = OCSVM_GAMMA) -> tuple[np.ndarray, dict]:
    """Novelty scores (higher = more novel) of ``test`` under a one-class SVM fit on ``train``; and fit details."""
    from sklearn.svm import OneClassSVM

    x_train, x_test = _flat(train), _flat(test)
    model = OneClassSVM(kernel="rbf", nu=nu, gamma=gamma).fit(x_train)
    scores = -model.decision_function(x_test)
    # what gamma="scale" resolves to (sklearn's definition), recorded as a number
    gamma_value = 1.0 / (x_train.shape[1] * x_train.var()) if gamma == "scale" else gamma
    details = {"kernel": "rbf", "nu": nu, "gamma": gamma, "gamma_value": float(gamma_value),
               "support_vectors": int(len(model.support_)), "features": int(x_train.shape[1]),
               "score": "-decision_function"}
    return scores, details


def kde_scores(train: Any, test: Any, *, max_components: int = KDE_MAX_COMPONENTS,
               factors: tuple[float, ...] = KDE_BANDWIDTH_FACTORS,
               folds: int = KDE_CV_FOLDS) -> tuple[np.ndarray, dict]:
    """Novelty scores (``-log density``) of ``test`` under a Gaussian KDE fit on PCA-reduced ``train``."""
    from sklearn.decomposition import PCA
    from sklearn.model_selection import GridSearchCV, KFold
    from sklearn.neighbors import KernelDensity

    x_train, x_test = _flat(train), _flat(test)
    n, features = x_train.shape
    components = max(1, min(max_components, n - 1, features))
    pca = PCA(n_components=components, random_state=0).fit(x_train)
    z_train, z_test = pca.transform(x_train), pca.transform(x_test)
    scale = float(np.sqrt(np.mean(np.var(z_train, axis=0)))) or 1.0
    scott = n ** (-1.0 / (components + 4)) * scale
    grid = [scott * f for f in factors]
    folds = max(2, min(folds, n))
    search = GridSearchCV(KernelDensity(kernel="gaussian"), {"bandwidth": grid},
                          cv=KFold(folds, shuffle=True, random_state=0)).fit(z_train)
    bandwidth = float(search.best_params_["bandwidth"])
    model = KernelDensity(kernel="gaussian", bandwidth=bandwidth).fit(z_train)
    scores = -model.score_samples(z_test)
    details = {"kernel": "gaussian", "pca_components": int(components), "pca_fit_on": "train split only",
               "pca_explained_variance": float(np.sum(pca.explained_variance_ratio_)),
               "bandwidth": bandwidth, "bandwidth_rule": f"max {folds}-fold CV log-likelihood on the train images "
               f"over {len(grid)} values log-spaced in [0.1, 10] x Scott's rule ({scott:.4g})",
               "bandwidth_grid": grid, "features": int(features), "score": "-log density"}
    return scores, details


def run_baseline(method: str, train: Any, test: Any, test_labels: Any) -> dict:
    """Fit baseline ``method`` (``"ocsvm"`` or ``"kde"``) on ``train``; AUROC on ``test`` (labels 1 = novel).

    Returns ``{"auroc": float, "hyperparameters": {...}, "fit_s": seconds}``.
    """
    import torch

    if method not in BASELINES:
        raise ValueError(f"baseline must be one of {', '.join(BASELINES)}; got {method!r}")
    start = time.perf_counter()
    scores, details = (ocsvm_scores if method == "ocsvm" else kde_scores)(train, test)
    if not np.all(np.isfinite(scores)):
        raise FloatingPointError(f"{method}: scores contain NaN/Inf")
    labels = test_labels if isinstance(test_labels, torch.Tensor) else torch.as_tensor(np.asarray(test_labels))
    value = auroc(torch.from_numpy(np.asarray(scores, dtype=np.float64)), labels)
    return {"auroc": value, "hyperparameters": details, "fit_s": time.perf_counter() - start}
