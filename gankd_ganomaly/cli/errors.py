"""The adapter's commands inside :mod:`gankd.boundary`, the one error boundary of every gankd command line.

The same exit statuses and debug switch as ``gankd``; the adapter adds its own :class:`CLIError` to the user
errors and names its own batch-size options in the out-of-memory hint.
"""
from __future__ import annotations

import argparse

from gankd.boundary import Terminated, debug_requested, describe_error, user_error_types  # noqa: F401
from gankd.boundary import run_command as _run_command

from .options import PROG, CLIError

MEMORY_HINT = "lower --batch-size or --eval-batch-size, or use a device with more memory"


def run_command(args: argparse.Namespace, prog: str = PROG) -> int:
    """``args.func(args)`` inside :func:`gankd.boundary.run_command` (``--debug`` is ``args.traceback``)."""
    return _run_command(args.func, args, prog, extra_user_errors=(CLIError,),
                        debug=bool(getattr(args, "traceback", False)), memory_hint=MEMORY_HINT)
