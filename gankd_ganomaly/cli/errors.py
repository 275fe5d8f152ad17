"""The error boundary of every command: one line for what a user can cause, a traceback for internal errors."""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

import torch

from .options import PROG, CLIError  # noqa: F401



class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread so that clean-up code runs (temporary files, the folder lock)."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(signum)
        self.signum = signum


# signals that end a run the way Ctrl-C does: clean-up runs, exit status 128 + signal number
_TERMINATING = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


def _on_terminate(signum, frame):
    signal.signal(signum, signal.SIG_DFL)  # the same signal again ends the process at once
    raise Terminated(signum)


def user_error_types() -> tuple[type[BaseException], ...]:
    """Failures a user can cause or meet: shown as one line (or two). Anything else is a bug: a traceback."""
    from gankd import CheckpointError, FolderLockedError, MissingDependencyError, NonFiniteLossError
    from gankd.runfolder import RunFolderError

    return (CLIError, RunFolderError, CheckpointError, NonFiniteLossError, FolderLockedError, MissingDependencyError, ValueError,
            KeyError, ImportError, OSError, FloatingPointError, MemoryError, torch.OutOfMemoryError)


def _os_hint(err: OSError, args: argparse.Namespace) -> str:
    import errno

    run = hasattr(args, "resume")
    hints = {
        errno.ENOSPC: "the disk is full: free some space or write elsewhere"
                      + ("; the last complete checkpoint is kept: then continue with --resume" if run else ""),
        errno.EDQUOT: "the disk quota is exhausted: free some space or write elsewhere",
        errno.EACCES: "no permission: check the permissions of the file and its folder, or write elsewhere",
        errno.EPERM: "not permitted: check the permissions of the file and its folder, or write elsewhere",
        errno.EROFS: "the file system is read-only: write elsewhere",
        errno.ENOTDIR: "a part of the path is a file, not a folder",
        errno.EEXIST: "a file is in the way",
    }
    return hints.get(err.errno, "")


def describe_error(err: BaseException, args: argparse.Namespace) -> str:
    """``TYPE: message`` of a user error, naming the file for file-system errors and saying what to do."""
    if isinstance(err, KeyError) and err.args:
        message = str(err.args[0])
    elif isinstance(err, OSError) and err.errno is not None and err.filename is not None:
        message = f"{err.strerror}: {str(err.filename)!r}"
        if err.filename2 is not None:
            message += f" -> {str(err.filename2)!r}"
        hint = _os_hint(err, args)
        message += f"; {hint}" if hint else ""
    elif isinstance(err, (MemoryError, torch.OutOfMemoryError)):
        first = str(err).strip().splitlines()[0] if str(err).strip() else "out of memory"
        message = f"{first}; lower --batch-size or --eval-batch-size, or use a device with more memory"
    else:
        message = str(err) or "(no message)"
    return f"{type(err).__name__}: {message}"


def debug_requested(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "traceback", False)) or \
        os.environ.get("GANKD_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")


def run_command(args: argparse.Namespace, prog: str = PROG) -> int:
    """The one error boundary of every command: ``args.func(args)``, with user errors (:func:`user_error_types`)
    as ``PROG COMMAND: error: TYPE: message`` on stderr and exit status 1, Ctrl-C 130, SIGTERM 143 and SIGHUP 129
    (they raise :class:`Terminated` so that clean-up runs: temporary files go, the folder lock is released). With
    ``--debug`` or ``GANKD_DEBUG=1`` the exception propagates with its traceback; other exceptions always do."""
    debug = debug_requested(args)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {signum: signal.signal(signum, _on_terminate) for signum in _TERMINATING}
    try:
        return args.func(args)
    except KeyboardInterrupt as err:
        if debug:
            raise
        what = f"terminated ({signal.Signals(err.signum).name})" if isinstance(err, Terminated) else "interrupted"
        hint = "; the last epoch's checkpoint is kept: continue with --resume" if hasattr(args, "resume") else ""
        print(f"{prog} {args.command}: {what}{hint}", file=sys.stderr)
        return 128 + err.signum if isinstance(err, Terminated) else 130
    except user_error_types() as err:
        if debug:
            raise
        print(f"{prog} {args.command}: error: {describe_error(err, args)}", file=sys.stderr)
        return 1
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
