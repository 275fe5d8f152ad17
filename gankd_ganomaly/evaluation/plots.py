"""Pictures of an evaluation (``gankd-ganomaly evaluate --plots DIR``): PNG files drawn with matplotlib (Agg).

- ``roc.png``: the ROC curve on the test split, with the AUROC and the operating point of the threshold;
- ``histogram.png``: the scores of normal and of novel test images, with the threshold as a vertical line;
- ``most_novel.png``: the test images with the highest scores (top row) above their reconstructions
  ``x_hat`` (bottom row), each titled with its score and label.

Every figure is :data:`FIGSIZE` inches at :data:`DPI` dots per inch (640x480 pixels), never cropped, so files
have a fixed size. matplotlib is an optional dependency (the ``report`` extra: ``pip install matplotlib``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

FIGSIZE = (6.4, 4.8)
DPI = 100
MOST_NOVEL = 8


def _pyplot():
    try:
        import matplotlib
    except ImportError as err:
        from gankd import MissingDependencyError

        raise MissingDependencyError(f"--plots needs matplotlib, which is not installed ({err}): "
                                     "pip install matplotlib (or the package's 'report' extra)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> str:
    """Save at the fixed size, atomically (:func:`gankd.atomic_write`)."""
    from gankd import atomic_write

    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=DPI, format="png"))
    return str(path)


def roc_figure(plt, scores: np.ndarray, labels: np.ndarray, threshold: float | None, auroc: float | None):
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(labels, scores)
    fig, ax = plt.subplots(figsize=FIGSIZE)
    ax.plot(fpr, tpr, lw=1.5, label=f"ROC (AUROC {auroc:.4f})" if auroc is not None else "ROC")
    ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=1)
    if threshold is not None:
        x, y = float((scores[labels == 0] > threshold).mean()), float((scores[labels == 1] > threshold).mean())
        ax.plot([x], [y], "o", color="C3", label=f"threshold {threshold:.4g}: FPR {x:.3f}, TPR {y:.3f}")
    ax.set_xlabel("false-positive rate (normal images called novel)")
    ax.set_ylabel("true-positive rate (novel images found)")
    ax.set_xlim(0, 1), ax.set_ylim(0, 1.01)
    ax.legend(loc="lower right", fontsize=9)
    fig.tight_layout()
    return fig


def histogram_figure(plt, scores: np.ndarray, labels: np.ndarray, threshold: float | None):
    fig, ax = plt.subplots(figsize=FIGSIZE)
    finite = scores[np.isfinite(scores)]
    edges = np.histogram_bin_edges(finite, bins=40)
    ax.hist(scores[labels == 0], bins=edges, alpha=0.6, label=f"normal ({int((labels == 0).sum())})", color="C0")
    ax.hist(scores[labels == 1], bins=edges, alpha=0.6, label=f"novel ({int((labels == 1).sum())})", color="C1")
    if threshold is not None:
        ax.axvline(threshold, color="C3", ls="--", label=f"threshold {threshold:.4g}")
    ax.set_xlabel("anomaly score (higher = more novel)")
    ax.set_ylabel("test images")
    ax.legend(fontsize=9)
    fig.tight_layout()
    return fig


def _as_picture(x: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [-1, 1] -> (H, W) or (H, W, 3) in [0, 1] for imshow."""
    x = ((x.detach().float().cpu().clamp(-1, 1) + 1) / 2).numpy()
    return x[0] if x.shape[0] == 1 else x.transpose(1, 2, 0)


def most_novel_figure(plt, images: torch.Tensor, reconstructions: torch.Tensor, scores: np.ndarray,
                      labels: np.ndarray):
    k = len(images)
    fig, axes = plt.subplots(2, max(k, 1), figsize=FIGSIZE, squeeze=False)
    for j in range(axes.shape[1]):
        for i in range(2):
            axes[i, j].axis("off")
        if j >= k:
            continue
        gray = images.shape[1] == 1
        axes[0, j].imshow(_as_picture(images[j]), cmap="gray" if gray else None, vmin=0, vmax=1)
        axes[1, j].imshow(_as_picture(reconstructions[j]), cmap="gray" if gray else None, vmin=0, vmax=1)
        axes[0, j].set_title(f"{scores[j]:.3g}\n{'novel' if labels[j] else 'normal'}", fontsize=8)
    fig.suptitle("most novel test images (top) and their reconstructions (bottom)", fontsize=10)
    return fig


def write_evaluation_plots(folder: str | Path, hooks, gan, images: torch.Tensor, labels: torch.Tensor,
                           scores: torch.Tensor, threshold: float | None, *, bn_mode: str = "eval",
                           auroc: float | None = None, most_novel: int = MOST_NOVEL) -> list[str]:
    """Write roc.png, histogram.png and most_novel.png into ``folder`` (created); returns their paths."""
    from .scoring import scoring_mode

    plt = _pyplot()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    s, y = scores.double().cpu().numpy(), labels.cpu().numpy().astype(int)
    top = np.argsort(-s, kind="stable")[:most_novel]
    batch = images[torch.from_numpy(top.copy())]
    device = next(gan.parameters()).device
    with scoring_mode(gan, bn_mode), torch.inference_mode():
        _, x_hat, _ = gan.generator(batch.to(device))
    written = []
    for name, fig in (("roc.png", lambda: roc_figure(plt, s, y, threshold, auroc)),
                      ("histogram.png", lambda: histogram_figure(plt, s, y, threshold)),
                      ("most_novel.png", lambda: most_novel_figure(plt, batch, x_hat.cpu(), s[top], y[top]))):
        figure = fig()
        try:
            written.append(_save(figure, folder / name))
        finally:
            plt.close(figure)
    return written
