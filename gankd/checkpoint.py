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
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"refused to load {str(path)!r}: it holds objects other than tensors and plain containers, which "
            f"could run code when unpickled ({str(err).splitlines()[0]}). Load only checkpoints you trust, "
            "and re-save them as state_dicts.") from None
    except (RuntimeError, EOFError, ValueError) as err:
        raise CheckpointError(f"cannot read checkpoint {str(path)!r}: it is truncated or not a torch "
                              f"checkpoint ({str(err).splitlines()[0]})") from None


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
