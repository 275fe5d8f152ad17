"""Small helpers with no GAN knowledge: seeding, atomic file writes and a lock on an output folder."""
from __future__ import annotations

import errno
import json
import os
import random
import re
import shlex
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; returns a torch.Generator seeded the same way."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, save: Callable[[Path], None]) -> None:
    """The one atomic writer of the project: ``save(tmp)`` writes the file's content to ``tmp``, a temporary
    file beside ``path`` (e.g. ``lambda tmp: fig.savefig(tmp, format="png")``); it is then fsynced and renamed
    onto ``path``, so readers see the old file or the new one, never a half-written one.

    The temporary file (``.NAME.XXXXXXXX`` in the same folder) is removed on every error, including
    ``KeyboardInterrupt``; a process killed outright (SIGKILL) leaves it behind, and
    :func:`remove_stale_temporaries` cleans such leftovers. File-system errors are raised as the usual
    :class:`OSError` subclasses, naming ``path`` (not the temporary file); a ``path`` that is a folder
    raises :class:`IsADirectoryError` before anything is written. The file gets the mode a plain
    ``open(path, "w")`` would give it (0o666 less the umask).
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a file: give a file path", str(path))
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        os.fchmod(fd, 0o666 & ~_umask())
        os.close(fd)
        save(Path(tmp))
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno is not None and err.filename != str(path):
            # name the file the caller asked for, not the temporary one (same OSError subclass: errno decides)
            raise OSError(err.errno, err.strerror, str(path)) from err
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """``data`` into ``path`` through :func:`atomic_write`."""
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def remove_stale_temporaries(folder: str | Path, names: Iterable[str]) -> list[Path]:
    """Delete the temporary files :func:`atomic_write_bytes` leaves behind when a process is killed outright
    while writing one of ``names`` in ``folder`` (``.checkpoint.pt.x1y2z3w4``); returns the paths removed.

    Only call it while holding the folder's :class:`FolderLock`: a live writer's temporary file looks the same.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    patterns = [re.compile(rf"\.{re.escape(name)}\.[a-z0-9_]{{8}}") for name in names]
    for entry in folder.iterdir():
        if any(p.fullmatch(entry.name) for p in patterns) and entry.is_file():
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


class MissingDependencyError(ImportError, RuntimeError):
    """An optional package a feature needs cannot be imported; the message names it and how to install it.

    Also a :class:`RuntimeError`, the type these failures had before.
    """


# --- one process at a time in an output folder ------------------------------------------------------------------


class FolderLockedError(RuntimeError):
    """Another live process holds the :class:`FolderLock` of a folder; the message names it."""


_HELD: dict[str, list] = {}  # lock file path -> [file descriptor or None, depth]: re-entrant within a process


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    except OSError:
        return False
    return True


class FolderLock:
    """An exclusive, re-entrant lock on a folder while a run uses it: ``with FolderLock(out): ...``.

    The lock is the file ``FOLDER/.gankd.lock``, holding the owner's pid, host, start time and command line.
    On POSIX it is also ``flock``-ed, so the kernel drops it when the owner dies in any way (even SIGKILL);
    a lock file left by a dead process is taken over (elsewhere the pid is checked with ``os.kill(pid, 0)``).
    A second process asking for a held lock gets :class:`FolderLockedError` naming the owner. The folder is
    created if missing; if it was created here and is empty when the lock is released, it is removed again.
    """

    NAME = ".gankd.lock"

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / self.NAME
        self._created_folder = False

    def __enter__(self) -> "FolderLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def _key(self) -> str:
        return os.path.realpath(self.path)

    def _info(self) -> dict:
        return {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                "command": shlex.join(getattr(sys, "orig_argv", sys.argv))}

    def _owner(self, text: str) -> str:
        try:
            info = json.loads(text)
            return (f"pid {info.get('pid')} on {info.get('host')}, started {info.get('started')}: "
                    f"{info.get('command')}")
        except (ValueError, AttributeError):
            return "an unknown process"

    def _refuse(self, owner: str) -> FolderLockedError:
        return FolderLockedError(f"{self.folder} is in use by another run ({owner}); wait for it to end or choose "
                                 f"another output folder (if no such process runs, delete {self.path})")

    def acquire(self) -> None:
        key = self._key()
        if key in _HELD:
            _HELD[key][1] += 1
            return
        if self.folder.exists() and not self.folder.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "is a file, not a folder", str(self.folder))
        if not self.folder.exists():
            self.folder.mkdir(parents=True)
            self._created_folder = True
        try:
            fd = self._acquire_flock() if _fcntl is not None else self._acquire_pidfile()
        except BaseException:
            self._remove_created_folder()
            raise
        _HELD[key] = [fd, 1]

    def _acquire_flock(self) -> int:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                _fcntl.flock(fd, _fcntl.LOCK_EX | _fcntl.LOCK_NB)
            except BlockingIOError:
                try:
                    text = os.read(fd, 4096).decode("utf-8", "replace")
                finally:
                    os.close(fd)
                raise self._refuse(self._owner(text)) from None
            except BaseException:
                os.close(fd)
                raise
            try:  # the previous owner may have removed the file between our open and flock: lock the new one
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        try:
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps(self._info()).encode())
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _acquire_pidfile(self) -> None:  # pragma: no cover - platforms without fcntl
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                text = self.path.read_text(errors="replace")
                try:
                    pid = int(json.loads(text)["pid"])
                except (ValueError, KeyError, TypeError):
                    pid = None
                if pid is not None and pid != os.getpid() and _process_alive(pid):
                    raise self._refuse(self._owner(text)) from None
                self.path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(self._info()))
            return None
        raise self._refuse("a process that keeps re-creating the lock")

    def release(self) -> None:
        key = self._key()
        held = _HELD.get(key)
        if held is None:
            return
        held[1] -= 1
        if held[1] > 0:
            return
        del _HELD[key]
        self.path.unlink(missing_ok=True)
        if held[0] is not None:
            os.close(held[0])
        self._remove_created_folder()

    def _remove_created_folder(self) -> None:
        if self._created_folder:
            try:
                self.folder.rmdir()  # only if empty: a run that failed before writing anything leaves nothing
            except OSError:
                pass
            self._created_folder = False


try:
    import fcntl as _fcntl
except ImportError:  # pragma: no cover - Windows
    _fcntl = None  # type: ignore[assignment]
