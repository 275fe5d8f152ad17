"""The error boundary of every command line (``gankd`` and each family's own): what a user sees when a command fails.

A failure a user can cause or meet (a bad value, a missing file, device or package, a file-system error, a
resource limit) prints one line, ``PROG COMMAND: error: TYPE: message``, naming the value and the way out.
Anything else is a bug and keeps its traceback. Exit statuses (``docs/cli.md``):

    0   success                       2    usage error (argparse: unknown option, missing argument)
    1   a user error, named            130  Ctrl-C (SIGINT)
    143 SIGTERM, 129 SIGHUP: clean-up runs first (temporary files go, the folder lock is released)

``--debug`` (or the environment variable ``GANKD_DEBUG`` set to 1, true, yes or on) shows the traceback of a
user error instead of its line.
"""
from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
import threading
from typing import Callable

EXIT_OK, EXIT_USER_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
DEBUG_VALUES = ("1", "true", "yes", "on")


class UsageError(ValueError):
    """A problem with the command line itself (conflicting options, an option that does not apply)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread so that clean-up code runs (temporary files, the folder lock)."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(signum)
        self.signum = signum


# signals that end a command the way Ctrl-C does: clean-up runs, exit status 128 + signal number
TERMINATING = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


def _on_terminate(signum, frame):
    signal.signal(signum, signal.SIG_DFL)  # the same signal again ends the process at once
    raise Terminated(signum)


def user_error_types(extra: tuple[type[BaseException], ...] = ()) -> tuple[type[BaseException], ...]:
    """Failures a user can cause or meet: shown as one line. Anything else is a bug: a traceback."""
    import torch

    from .checkpoint import CheckpointError
    from .engine import NonFiniteLossError
    from .runfolder import RunFolderError
    from .utils import FolderLockedError, MissingDependencyError

    return (*extra, UsageError, RunFolderError, CheckpointError, NonFiniteLossError, FolderLockedError,
            MissingDependencyError, ValueError, KeyError, ImportError, OSError, FloatingPointError, MemoryError,
            torch.OutOfMemoryError)


def debug_requested(flag: bool = False) -> bool:
    """``flag`` (the ``--debug`` option) or ``GANKD_DEBUG`` in 1/true/yes/on (any case)."""
    return bool(flag) or os.environ.get("GANKD_DEBUG", "").strip().lower() in DEBUG_VALUES


def _os_hint(err: OSError, run: bool) -> str:
    hints = {
        errno.ENOSPC: "the disk is full: free some space or write elsewhere"
                      + ("; the last complete checkpoint is kept: then continue with --resume" if run else ""),
        errno.EDQUOT: "the disk quota is exhausted: free some space or write elsewhere",
        errno.EACCES: "no permission: check the permissions of the file and its folder, or write elsewhere",
        errno.EPERM: "not permitted: check the permissions of the file and its folder, or write elsewhere",
        errno.EROFS: "the file system is read-only: write elsewhere",
        errno.ENOTDIR: "a part of the path is a file, not a folder",
        errno.EEXIST: "a file is in the way",
        errno.ENAMETOOLONG: "a name in the path is too long for the file system: choose a shorter one",
    }
    return hints.get(err.errno, "")


def describe_error(err: BaseException, *, run: bool = False, memory_hint: str = "lower the batch size or the "
                   "widths, or use a device with more memory") -> str:
    """``TYPE: message`` of a user error, naming the file of a file-system error and saying what to do.

    ``run``: the command trains into a run folder (a full disk then keeps the last checkpoint)."""
    import torch

    from .resources import ResourceError

    if isinstance(err, KeyError) and err.args:
        message = str(err.args[0])
    elif isinstance(err, OSError) and err.errno is not None and err.filename is not None:
        message = f"{err.strerror}: {str(err.filename)!r}"
        if err.filename2 is not None:
            message += f" -> {str(err.filename2)!r}"
        hint = _os_hint(err, run)
        message += f"; {hint}" if hint else ""
    elif isinstance(err, (MemoryError, torch.OutOfMemoryError)) and not isinstance(err, ResourceError):
        first = str(err).strip().splitlines()[0] if str(err).strip() else "out of memory"
        message = f"{first}; {memory_hint}"
    else:
        message = str(err) or "(no message)"
    return f"{type(err).__name__}: {message}"


def run_command(func: Callable[[argparse.Namespace], int], args: argparse.Namespace, prog: str, *,
                extra_user_errors: tuple[type[BaseException], ...] = (), debug: bool = False,
                memory_hint: str | None = None) -> int:
    """``func(args)`` inside the boundary: user errors (:func:`user_error_types` plus ``extra_user_errors``) as
    ``PROG COMMAND: error: TYPE: message`` on stderr and exit status 1, Ctrl-C 130, SIGTERM 143, SIGHUP 129
    (raised as :class:`Terminated` so that clean-up runs). With ``debug`` or ``GANKD_DEBUG`` the exception
    propagates with its traceback; other exceptions always do.

    A command that trains into a folder (``args`` has ``resume``) is told how to continue."""
    debug = debug_requested(debug)
    name = f"{prog} {args.command}" if getattr(args, "command", None) else prog
    run = hasattr(args, "resume")
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {signum: signal.signal(signum, _on_terminate) for signum in TERMINATING}
    try:
        return func(args)
    except KeyboardInterrupt as err:
        if debug:
            raise
        what = f"terminated ({signal.Signals(err.signum).name})" if isinstance(err, Terminated) else "interrupted"
        hint = "; the last epoch's checkpoint is kept: continue with --resume" if run else ""
        print(f"{name}: {what}{hint}", file=sys.stderr)
        return 128 + err.signum if isinstance(err, Terminated) else EXIT_INTERRUPTED
    except user_error_types(extra_user_errors) as err:
        if debug:
            raise
        kwargs = {"memory_hint": memory_hint} if memory_hint else {}
        print(f"{name}: error: {describe_error(err, run=run, **kwargs)}", file=sys.stderr)
        return EXIT_USER_ERROR
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def positive_int(text: str) -> int:
    """An ``argparse`` type: an integer >= 1, or a usage error naming the text."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer (1 or more), got {text!r}")
    return value


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (the full usage is one ``--help`` away); exit status 2."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")
