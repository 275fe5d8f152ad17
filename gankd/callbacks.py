"""Per-epoch hooks into :class:`~gankd.engine.DistillationEngine`: evaluation, logging, checkpoints."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, TextIO

import torch

from .checkpoint import save_checkpoint
from .utils import atomic_write_text

if TYPE_CHECKING:  # pragma: no cover
    from .engine import DistillationEngine, StageState
    from .schedule import Schedule


class Callback:
    """Override what you need; ``record`` is the epoch's dict, which callbacks may extend."""

    def on_fit_start(self, engine: "DistillationEngine", schedule: "Schedule") -> None: ...
    def on_stage_start(self, engine: "DistillationEngine", state: "StageState") -> None: ...
    def on_step_end(self, engine: "DistillationEngine", state: "StageState", step: int) -> None: ...
    def on_epoch_end(self, engine: "DistillationEngine", state: "StageState", record: dict) -> None: ...
    def on_stage_end(self, engine: "DistillationEngine", state: "StageState") -> None: ...
    def on_fit_end(self, engine: "DistillationEngine") -> None: ...


class EvaluationCallback(Callback):
    """Adds ``metric_fn(engine)`` (a dict of floats) to ``record["metrics"]`` every ``every`` epochs
    and at the last epoch of each stage (the figure a paper reports)."""

    def __init__(self, metric_fn: Callable[["DistillationEngine"], dict[str, float]], every: int = 1) -> None:
        if every < 1:
            raise ValueError(f"EvaluationCallback: every must be >= 1, got {every}")
        self.metric_fn, self.every = metric_fn, every

    def on_epoch_end(self, engine, state, record) -> None:
        if record["epoch"] % self.every == 0 or record["epoch"] == state.stage.epochs:
            record["metrics"].update(self.metric_fn(engine))


class ProgressLogger(Callback):
    """One line per epoch: stage, epoch, main losses, metrics, time."""

    def __init__(self, stream: TextIO | None = None, prefix: str = "") -> None:
        self.stream, self.prefix = stream or sys.stderr, prefix
        self._stages = 0

    def on_fit_start(self, engine, schedule) -> None:
        self._stages = len(schedule.stages)
        print(f"{self.prefix}{schedule.describe()}", file=self.stream, flush=True)

    def on_epoch_end(self, engine, state, record) -> None:
        losses = " ".join(f"{k}={v:.4g}" for k, v in record["losses"].items() if "/" not in k)
        metrics = " ".join(f"{k}={v:.4f}" for k, v in record["metrics"].items())
        print(f"{self.prefix}stage {state.index + 1}/{self._stages} {state.structure.name} "
              f"epoch {record['epoch']}/{state.stage.epochs} {losses} {metrics} ({record['seconds']:.1f}s)",
              file=self.stream, flush=True)


class JSONHistory(Callback):
    """Rewrites ``path`` with the whole history after every epoch (atomically)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def on_epoch_end(self, engine, state, record) -> None:
        atomic_write_text(self.path, json.dumps(engine.history, indent=1) + "\n")


class CheckpointCallback(Callback):
    """Writes the engine's full state (see ``DistillationEngine.state_dict``) atomically to ``path``
    every ``every`` epochs and at each stage's end; put it after evaluation callbacks so the
    checkpoint holds the epoch's metrics."""

    def __init__(self, path: str | Path, every: int = 1) -> None:
        if every < 1:
            raise ValueError(f"CheckpointCallback: every must be >= 1, got {every}")
        self.path, self.every = Path(path), every

    def on_epoch_end(self, engine, state, record) -> None:
        if record["epoch"] % self.every == 0 or record["epoch"] == state.stage.epochs:
            save_checkpoint(self.path, engine.state_dict())
