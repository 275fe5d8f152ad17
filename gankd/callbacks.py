"""Per-epoch hooks into :class:`~gankd.engine.DistillationEngine`: evaluation, logging, checkpoints."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, TextIO


from .checkpoint import save_checkpoint
from .utils import atomic_write_text

if TYPE_CHECKING:  # pragma: no cover
    from .engine import DistillationEngine, StageState
    from .schedule import Schedule


class Callback:
    """Override what you need; ``record`` is the epoch's dict, which callbacks may extend.

    ``main_process_only``: under DDP, run only in rank 0 (writers of files and terminal output).
    """

    main_process_only = False

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

    main_process_only = True

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

    main_process_only = True

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def on_epoch_end(self, engine, state, record) -> None:
        atomic_write_text(self.path, json.dumps(engine.history, indent=1) + "\n")


class CheckpointCallback(Callback):
    """Writes the engine's full state (see ``DistillationEngine.state_dict``) atomically to ``path``
    every ``every`` epochs and at each stage's end; put it after evaluation callbacks so the
    checkpoint holds the epoch's metrics."""

    main_process_only = True

    def __init__(self, path: str | Path, every: int = 1) -> None:
        if every < 1:
            raise ValueError(f"CheckpointCallback: every must be >= 1, got {every}")
        self.path, self.every = Path(path), every

    def on_epoch_end(self, engine, state, record) -> None:
        if record["epoch"] % self.every == 0 or record["epoch"] == state.stage.epochs:
            save_checkpoint(self.path, engine.state_dict())


def _flat_losses(record: dict) -> str:
    return " ".join(f"{k}={v:.4g}" for k, v in record["losses"].items() if "/" not in k)


class TqdmProgress(Callback):
    """Progress bars (tqdm): one over all epochs of the schedule, one over the batches of the current epoch.

    The batch bar shows the running main losses; at each epoch end one summary line (as
    :class:`ProgressLogger` prints) is written above the bars, so the log survives. With
    ``disable=None`` (the default) the bars switch themselves off when ``stream`` is not a terminal;
    use :func:`auto_progress` to get :class:`ProgressLogger` lines instead in that case.
    """

    main_process_only = True

    def __init__(self, stream: TextIO | None = None, prefix: str = "", disable: bool | None = None) -> None:
        self.stream, self.prefix, self.disable = stream or sys.stderr, prefix, disable
        self._epochs = None
        self._batches = None
        self._steps_per_epoch: int | None = None
        self._stages = 0

    def on_fit_start(self, engine, schedule) -> None:
        from tqdm import tqdm

        self._stages = len(schedule.stages)
        try:
            self._steps_per_epoch = len(engine.batches)
        except TypeError:  # a re-iterable without __len__: learnt from the first epoch
            self._steps_per_epoch = None
        self._epochs = tqdm(total=schedule.total_epochs, initial=len(engine.history), desc=f"{self.prefix}epochs",
                            unit="ep", file=self.stream, disable=self.disable, position=0, leave=True,
                            dynamic_ncols=True)

    def on_stage_start(self, engine, state) -> None:
        self._new_batch_bar(state)

    def _new_batch_bar(self, state) -> None:
        from tqdm import tqdm

        if self._batches is not None:
            self._batches.close()
        self._batches = tqdm(total=self._steps_per_epoch, desc=f"{self.prefix}{state.structure.name}", unit="batch",
                             file=self.stream, disable=self.disable, position=1, leave=False, dynamic_ncols=True)

    def on_step_end(self, engine, state, step) -> None:
        if self._batches is not None:
            self._batches.update(1)

    def on_epoch_end(self, engine, state, record) -> None:
        self._steps_per_epoch = record["steps"]
        if self._epochs is not None:
            self._epochs.update(1)
            self._epochs.set_postfix_str(_flat_losses(record), refresh=False)
            metrics = " ".join(f"{k}={v:.4f}" for k, v in record["metrics"].items())
            if not self._epochs.disable:
                self._epochs.write(f"{self.prefix}stage {state.index + 1}/{self._stages} {state.structure.name} "
                                   f"epoch {record['epoch']}/{state.stage.epochs} {_flat_losses(record)} {metrics} "
                                   f"({record['seconds']:.1f}s)", file=self.stream)
        if record["epoch"] < state.stage.epochs:
            self._new_batch_bar(state)

    def on_stage_end(self, engine, state) -> None:
        if self._batches is not None:
            self._batches.close()
            self._batches = None

    def on_fit_end(self, engine) -> None:
        for bar in (self._batches, self._epochs):
            if bar is not None:
                bar.close()
        self._batches = self._epochs = None


def auto_progress(stream: TextIO | None = None, prefix: str = "") -> Callback:
    """:class:`TqdmProgress` bars when ``stream`` (default stderr) is a terminal, else :class:`ProgressLogger`
    lines (one per epoch), so logs of batch jobs stay readable."""
    stream = stream or sys.stderr
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    return TqdmProgress(stream, prefix, disable=False) if tty else ProgressLogger(stream, prefix)


class CSVLogger(Callback):
    """Rewrites ``path`` atomically after every epoch: one row per epoch of the history.

    Columns: ``stage, structure, epoch, global_epoch, steps, seconds``, then every loss that any epoch logged
    (e.g. ``L_g^S``, ``K/K_z1``), then every metric (e.g. ``auroc``); a cell is empty where that epoch has no
    value (stages log different losses). A resumed run restores the history, so the file stays complete.
    """

    main_process_only = True

    FIXED = ("stage", "structure", "epoch", "global_epoch", "steps", "seconds")

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def on_epoch_end(self, engine, state, record) -> None:
        self.write(engine.history)

    def write(self, history: list[dict]) -> None:
        """Rewrite the file from a whole history (a list of epoch records), atomically."""
        import csv
        import io

        losses: dict[str, None] = {}
        metrics: dict[str, None] = {}
        for h in history:
            losses.update(dict.fromkeys(h["losses"]))
            metrics.update(dict.fromkeys(h["metrics"]))
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow([*self.FIXED, *losses, *metrics])
        for h in history:
            writer.writerow([*(h[k] for k in self.FIXED), *(h["losses"].get(k, "") for k in losses),
                             *(h["metrics"].get(k, "") for k in metrics)])
        atomic_write_text(self.path, buffer.getvalue())


class TensorBoardLogger(Callback):
    """Per-epoch losses and metrics as TensorBoard scalars in ``log_dir`` (x axis: global epoch).

    Needs the optional ``tensorboard`` package; without it the constructor raises :class:`ImportError`
    saying how to install it (nothing else in gankd needs it).
    """

    main_process_only = True

    def __init__(self, log_dir: str | Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            raise ImportError(f"TensorBoard logging needs the 'tensorboard' package, which is not installed "
                              f"({err}); install it with `pip install tensorboard`, or run without TensorBoard"
                              ) from None
        self.log_dir = Path(log_dir)
        self.writer = SummaryWriter(str(self.log_dir))

    def on_epoch_end(self, engine, state, record) -> None:
        step = record["global_epoch"]
        for k, v in record["losses"].items():
            self.writer.add_scalar(f"loss/{k}", v, step)
        for k, v in record["metrics"].items():
            self.writer.add_scalar(f"metric/{k}", v, step)
        self.writer.flush()

    def on_fit_end(self, engine) -> None:
        self.writer.close()
