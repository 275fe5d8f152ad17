"""The report's Figure 2: test AUROC per epoch of every method, one PNG per (dataset, class)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data import dataset_spec
from .records import CURVE_METHODS, _Group

def _require_matplotlib():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError("the report's Figure-2 plots need matplotlib, which is not installed: "
                          "`pip install 'gankd[report]'` (or `pip install matplotlib`), or write the report "
                          "without plots (`--no-plots`)") from err
    return plt


def _curve(records: list[dict]) -> tuple[list[int], list[float], list[float], list[float]]:
    """Epochs evaluated in every run, and mean/min/max AUROC over the runs at those epochs."""
    per_run = [{i + 1: v for i, v in enumerate(r.get("auroc_per_epoch") or []) if v is not None} for r in records]
    epochs = sorted(set.intersection(*(set(p) for p in per_run))) if per_run else []
    stack = np.array([[p[e] for e in epochs] for p in per_run]) if epochs else np.empty((0, 0))
    if not epochs:
        return [], [], [], []
    return epochs, list(stack.mean(0)), list(stack.min(0)), list(stack.max(0))


def plot_figure2(g: _Group, c: int, path: Path) -> list[str]:
    """Per-epoch AUROC curves of every method of class ``c`` (mean over seeds, band = min..max); returns methods."""
    plt = _require_matplotlib()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    drawn = []
    longest = max((len(r.get("auroc_per_epoch") or []) for m in g.runs for r in g.runs[m].get(c, {}).values()),
                  default=1)
    for i, method in enumerate(CURVE_METHODS):
        runs = list(g.runs.get(method, {}).get(c, {}).values())
        if not runs:
            continue
        epochs, mean, lo, hi = _curve(runs)
        if not epochs:
            continue
        color = f"C{i % 10}"
        label = f"{method} (n={len(runs)})"
        if len(epochs) == 1:  # e.g. a teacher evaluated only after its last epoch: a reference line
            ax.axhline(mean[0], color=color, linestyle="--", linewidth=1.2, label=f"{label}, epoch {epochs[0]} only")
            ax.plot(epochs, mean, "o", color=color)
        else:
            ax.plot(epochs, mean, color=color, marker="." if len(epochs) < 40 else None, linewidth=1.4, label=label)
            if len(runs) > 1:
                ax.fill_between(epochs, lo, hi, alpha=0.12, color=color)
        drawn.append(method)
    ax.set_xlim(0.5, max(longest, 1) + 0.5)
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.set_xlabel("epoch (two-stage schedules: stage 2 continues the count)")
    ax.set_ylabel("test AUROC")
    ax.set_title(f"{g.label}: normal class {dataset_spec(g.dataset).class_names[c]} (budget {g.budget})", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    from gankd import atomic_write

    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return drawn
