"""Checkpoints: atomic to write, safe to load, explicit about what does not fit.

A checkpoint is a plain dict of tensors, numbers and strings (so it loads with
``torch.load(weights_only=True)``): library version, the user's config, the schedule,
stage/epoch reached, teacher/student weights, optimizer states, RNG states, the batch
iterator's state and the history so far.
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from .utils import atomic_write_bytes


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used: unsafe, corrupted, or from another architecture/schedule."""


def save_checkpoint(path: str | Path, payload: Mapping[str, Any]) -> None:
    """Serialise with ``torch.save`` into memory, then write atomically (temp file + rename)."""
    buffer = io.BytesIO()
    torch.save(dict(payload), buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load with ``weights_only=True``: tensors and plain containers only, never arbitrary code.

    A file carrying any other pickled object (e.g. one whose unpickling would call
    ``os.system``) is refused with :class:`CheckpointError`; nothing in it is executed.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"checkpoint {str(path)!r} is a folder, not a checkpoint file")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(f"cannot read checkpoint {str(path)!r}: the file is empty (0 bytes), it is truncated "
                              "or was never written; use another checkpoint")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        text = str(err)
        unsafe = [line.strip() for line in text.splitlines() if "GLOBAL" in line]
        if unsafe:
            raise CheckpointError(
                f"refused to load {str(path)!r}: it holds objects other than tensors and plain containers, which "
                f"could run code when unpickled ({unsafe[0]}). Load only checkpoints you trust, "
                "and re-save them as state_dicts.") from None
        raise CheckpointError(f"cannot read checkpoint {str(path)!r}: it is truncated, corrupted or not a torch "
                              f"checkpoint ({_why(err)})") from None
    except OSError:
        raise  # file-system errors (permissions, I/O) keep their type and name the file
    except Exception as err:  # noqa: BLE001 - garbage bytes make the unpickler raise almost anything
        raise CheckpointError(f"cannot read checkpoint {str(path)!r}: it is truncated, corrupted or not a torch "
                              f"checkpoint ({_why(err)})") from None


def _why(err: BaseException) -> str:
    """The first informative line of an exception's message (some, like EOFError's, are empty)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    lines = [line for line in lines if "weights_only" not in line and "Weights only" not in line] or lines
    if not lines:
        return type(err).__name__
    first = lines[0].split(". ")[0].rstrip(".")  # torch appends paragraphs of advice after the first sentence
    return f"{type(err).__name__}: {first}"


def load_weights(module: nn.Module, state_dict: Mapping[str, torch.Tensor], what: str = "model") -> None:
    """``module.load_state_dict`` with an error that lists every tensor that does not fit."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = sorted(f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
                    for k in set(own) & set(state_dict) if tuple(own[k].shape) != tuple(state_dict[k].shape))
    if missing or unexpected or shapes:
        parts = []
        for label, items in (("shape mismatches", shapes), ("missing from checkpoint", missing),
                             ("not in model", unexpected)):
            if items:
                parts.append(f"{label} ({len(items)}): " + "; ".join(items[:8]) + (" ..." if len(items) > 8 else ""))
        raise CheckpointError(f"the {what} checkpoint is for another architecture: " + " | ".join(parts))
    module.load_state_dict(state_dict)
