"""A run folder: what a training run may write where, the lock while it runs, and what resuming it takes.

Every command that trains into a folder (``gankd train``, a family's own commands) goes through
:class:`RunFolder`, so they refuse the same things with the same words::

    folder = RunFolder(out, RUN_FILES)
    folder.check(resume=resume, overwrite=overwrite)      # read-only: before anything is loaded or built
    with folder:                                          # locked; stale temporary files of RUN_FILES removed
        folder.check(resume=resume, overwrite=overwrite)  # again: another run may have finished meanwhile
        if overwrite:
            folder.clear()
        ckpt = folder.checkpoint_to_resume(config, differences) if resume else None
        ...
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from .checkpoint import load_checkpoint
from .utils import FolderLock, remove_stale_temporaries

CHECKPOINT = "checkpoint.pt"
# files whose presence means the folder already holds a run (started or finished)
RUN_MARKERS = (CHECKPOINT, "model.pt", "record.json")


class RunFolderError(ValueError):
    """This run cannot use the folder (it is a file, it holds another run, resuming is impossible there)."""


def key_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """``["seed: 0 -> 1", ...]`` for every top-level key whose value differs between two configs."""
    keys = dict.fromkeys([*saved, *current])
    return [f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in keys if saved.get(k) != current.get(k)]


class RunFolder:
    """The folder ``path`` of one run, which writes the files ``files`` there.

    ``option`` names the command-line option that chose the folder, for the messages.
    """

    def __init__(self, path: str | Path, files: Sequence[str], *, option: str = "--out") -> None:
        self.path, self.files, self.option = Path(path), tuple(files), option
        self._lock: FolderLock | None = None

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    def check(self, *, resume: bool, overwrite: bool) -> None:
        """Raise :class:`RunFolderError` if this run must not write here; reads only."""
        if resume and overwrite:
            raise RunFolderError("--resume and --overwrite contradict each other: pick one")
        if self.path.exists() and not self.path.is_dir():
            raise RunFolderError(f"{self.option} {self.path} is a file, not a folder: give a folder for the run's "
                                 "files (it is created if missing)")
        held = [name for name in RUN_MARKERS if (self.path / name).exists()]
        if held and not resume and not overwrite:
            raise RunFolderError(f"{self.path} already holds a run ({held[0]}): pass --resume to continue it, "
                                 f"--overwrite to start again there, or choose another {self.option}")
        if resume and held and not self.checkpoint.exists():
            raise RunFolderError(f"--resume: {self.path} holds a finished run ({held[0]}) but no {CHECKPOINT} to "
                                 f"continue from: pass --overwrite to start again there, or choose another "
                                 f"{self.option}")

    def __enter__(self) -> "RunFolder":
        self._lock = FolderLock(self.path)  # a second run on the same folder is refused, naming this one
        self._lock.__enter__()
        remove_stale_temporaries(self.path, self.files)  # what a killed run left half-written
        return self

    def __exit__(self, *exc: object) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.__exit__(*exc)

    def clear(self, folders: Iterable[str] = ()) -> None:
        """Delete the previous run's files (and the sub-``folders`` it wrote, e.g. ``tensorboard``)."""
        for name in self.files:
            (self.path / name).unlink(missing_ok=True)
        for name in folders:
            shutil.rmtree(self.path / name, ignore_errors=True)

    def checkpoint_to_resume(self, config: Mapping[str, Any],
                             differences: Callable[[Mapping[str, Any], Mapping[str, Any]], list[str]]
                             = key_differences) -> dict | None:
        """The folder's checkpoint if there is one (None: start from the first epoch), refusing one written with
        another config. The checkpoint's ``metadata["config"]`` is compared with ``config`` by ``differences``."""
        if not self.checkpoint.exists():
            return None
        ckpt = load_checkpoint(self.checkpoint)
        diffs = differences((ckpt.get("metadata") or {}).get("config") or {}, config)
        if diffs:
            raise RunFolderError(f"cannot resume {str(self.checkpoint)!r}: it was written with another config "
                                 f"({'; '.join(diffs)}). Resume with the saved config ({self.path / 'config.yaml'}) "
                                 "or start the new config in another output folder")
        return ckpt
