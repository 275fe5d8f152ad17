"""A run folder: what a training run may write where, the lock while it runs, and what resuming it takes.

Every command that trains into a folder (``gankd train``, a family's own commands) goes through
:class:`RunFolder`, so they refuse the same things with the same words::

    folder = RunFolder(out, RUN_FILES)
    folder.check(resume=resume, overwrite=overwrite)      # read-only: before anything is loaded or built
    with folder:                                          # locked; stale temporary files of RUN_FILES removed
        folder.check(resume=resume, overwrite=overwrite)  # again: another run may have finished meanwhile
        ckpt = folder.checkpoint_to_resume(config, differences) if resume else None
        target = folder.begin_overwrite() if overwrite else folder.path   # the old run stays as it is
        ...                                                  # write into target; after the first checkpoint:
        folder.commit_overwrite()                            # the new run takes the old one's place

``--overwrite`` never leaves the user with less than they had: the new run is built in a folder beside the old
one (``.NAME.gankd-new``) and swapped in (one atomic ``renameat2(RENAME_EXCHANGE)`` on Linux) only once it has
passed every check and written its first checkpoint. A failure or a kill before that leaves the old run's files
byte-identical (the half-built folder is removed on the next start); the old run's files that are not run files
(notes, plots) move into the new folder.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .checkpoint import load_checkpoint
from .utils import FolderLock, remove_stale_temporaries

CHECKPOINT = "checkpoint.pt"
# files whose presence means the folder already holds a run (started or finished)
RUN_MARKERS = (CHECKPOINT, "model.pt", "record.json")


class RunFolderError(ValueError):
    """This run cannot use the folder (it is a file, it holds another run, resuming is impossible there)."""


def key_differences(saved: Mapping[str, Any], current: Mapping[str, Any], prefix: str = "") -> list[str]:
    """``["seed: 0 -> 1", "schedule.stages.1.epochs: 3 -> 2", ...]``: every leaf that differs between two
    configs, named by its dotted key path (items of a list of mappings by their index), with its two values."""
    keys = dict.fromkeys([*saved, *current])
    found: list[str] = []
    for k in keys:
        a, b, path = saved.get(k), current.get(k), f"{prefix}{k}"
        if a == b:
            continue
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            found += key_differences(a, b, path + ".")
        elif (isinstance(a, list) and isinstance(b, list) and len(a) == len(b)
              and any(isinstance(x, Mapping) for x in a)):  # e.g. schedule stages; a list of numbers stays whole
            found += key_differences(dict(enumerate(a)), dict(enumerate(b)), path + ".")
        else:
            found.append(f"{path}: {a!r} -> {b!r}")
    return found


class RunFolder:
    """The folder ``path`` of one run, which writes the files ``files`` there (and the sub-``folders``, e.g.
    ``tensorboard``, which are replaced with the run's files and never count as someone else's).

    ``option`` names the command-line option that chose the folder, for the messages.
    """

    def __init__(self, path: str | Path, files: Sequence[str], *, folders: Sequence[str] = (),
                 option: str = "--out") -> None:
        self.path, self.files, self.folders, self.option = Path(path), tuple(files), tuple(folders), option
        self._lock: FolderLock | None = None
        self._staging_lock: FolderLock | None = None
        self._held_after_swap: FolderLock | None = None

    @property
    def staging(self) -> Path:
        """Where an ``--overwrite`` run is built until it replaces the old one: beside it, on its file system."""
        return self.path.parent / f".{self.path.name}.gankd-new"

    @property
    def target(self) -> Path:
        """The folder the run writes into now: :attr:`staging` between :meth:`begin_overwrite` and
        :meth:`commit_overwrite`, else :attr:`path`."""
        return self.staging if self._staging_lock is not None else self.path

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
        try:
            if self._staging_lock is not None:  # the new run failed before its first checkpoint: drop it
                self._drop_staging()
        finally:
            swapped, self._held_after_swap = self._held_after_swap, None
            if swapped is not None:
                swapped.release()
            lock, self._lock = self._lock, None
            if lock is not None:
                lock.__exit__(*exc)

    def holds_run(self) -> bool:
        return any((self.path / name).exists() for name in RUN_MARKERS)

    def _remove_leftover_staging(self) -> None:
        """Remove what an interrupted ``--overwrite`` left beside the folder, if it holds only run files."""
        if not self.staging.exists():
            return
        allowed = set(self.files) | set(self.folders) | {FolderLock.NAME}
        other = sorted(p.name for p in self.staging.iterdir()
                       if p.name not in allowed and not any(p.name.startswith(f".{f}.") for f in self.files))
        if other:
            raise RunFolderError(f"{self.staging} (left by an interrupted --overwrite of {self.path}) holds files "
                                 f"that are not run files ({', '.join(other[:3])}): move them, delete the folder, "
                                 "then run again")
        shutil.rmtree(self.staging)

    def begin_overwrite(self) -> Path:
        """Start a run that replaces this folder's run: the folder to write into (call under the lock).

        A folder holding no run is cleared and used as it is; otherwise the run goes to :attr:`staging` and the
        old run stays intact until :meth:`commit_overwrite`."""
        if self._lock is None:
            raise RuntimeError("RunFolder.begin_overwrite needs the folder's lock: call it inside `with folder:`")
        self._remove_leftover_staging()
        if not self.holds_run():
            self.clear()
            return self.path
        lock = FolderLock(self.staging)
        lock.acquire()
        self._staging_lock = lock
        return self.staging

    def commit_overwrite(self) -> None:
        """Put the new run (in :attr:`staging`) in the old one's place and delete the old run; the old run's
        other files (neither run files nor run folders) move into the new folder. Nothing to do after a plain start."""
        if self._staging_lock is None:
            return
        _exchange(self.staging, self.path)  # now self.path holds the new run, self.staging the old one
        old = self.staging
        for entry in old.iterdir():
            if (entry.name not in (*self.files, *self.folders, FolderLock.NAME)
                    and not (self.path / entry.name).exists()):
                os.rename(entry, self.path / entry.name)
        # the lock file now in self.path is the staging lock's: keep holding it until the run ends
        self._held_after_swap, self._staging_lock = self._staging_lock, None
        shutil.rmtree(old, ignore_errors=True)

    def _drop_staging(self) -> None:
        lock, self._staging_lock = self._staging_lock, None
        try:
            shutil.rmtree(self.staging, ignore_errors=True)
        finally:
            lock.release()

    def clear(self) -> None:
        """Delete the previous run's files and sub-folders."""
        for name in self.files:
            (self.path / name).unlink(missing_ok=True)
        for name in self.folders:
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


def _renameat2():
    if not hasattr(os, "uname") or os.uname().sysname != "Linux":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    return fn


_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def _exchange(a: Path, b: Path) -> None:
    """Swap the folders ``a`` and ``b``: atomically with Linux's ``renameat2(RENAME_EXCHANGE)``, else with two
    renames (a kill between them leaves ``b``'s content at ``a``, ``a``'s at ``b.gankd-old``)."""
    fn = _renameat2()
    if fn is not None:
        if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):  # a file system without exchange: fall back
            raise OSError(err, os.strerror(err), str(a), None, str(b))
    aside = b.with_name(b.name + ".gankd-old")
    os.rename(b, aside)
    os.rename(a, b)
    os.rename(aside, a)
