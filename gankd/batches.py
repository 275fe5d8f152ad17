"""Seeded, resumable batches of an in-memory tensor: the batch iterable any family can hand to the engine.

A plain ``torch.utils.data.DataLoader`` works too; :class:`ShuffledBatches` adds what exact resume needs
(its shuffling RNG is checkpointed by the engine through ``state_dict``/``load_state_dict``) and DDP sharding.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Iterator, Mapping

import torch


def iterate_batches(
    images: torch.Tensor,
    batch_size: int,
    *,
    shuffle: bool,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
) -> Iterator[torch.Tensor]:
    """Batches (<=batch_size, ...) of ``images`` (N, ...) that cover every sample once.

    With ``shuffle`` the order is a fresh permutation drawn from ``generator``; without it batches are views in order.
    ``drop_last`` drops a final batch smaller than ``batch_size``.
    """
    _check_batch_size(batch_size)  # here, not in the generator, so a bad value fails at the call
    return _batches(images, batch_size, shuffle, generator, drop_last)


def _batches(
    images: torch.Tensor, batch_size: int, shuffle: bool, generator: torch.Generator | None, drop_last: bool
) -> Iterator[torch.Tensor]:
    n = images.shape[0]
    stop = n - n % batch_size if drop_last else n
    if shuffle:
        order = torch.randperm(n, generator=generator).to(images.device)
        for start in range(0, stop, batch_size):
            yield images.index_select(0, order[start : start + batch_size])
    else:
        for start in range(0, stop, batch_size):
            yield images[start : start + batch_size]


class ShuffledBatches:
    """Re-iterable batches of an in-memory tensor: each ``iter()`` is one epoch.

    Owns a ``torch.Generator`` seeded once with ``seed``, so every epoch gets a new permutation while the whole
    sequence of epochs is reproducible.
    """

    def __init__(
        self, images: torch.Tensor, batch_size: int, seed: int = 0, shuffle: bool = True, drop_last: bool = False,
        rank: int = 0, world_size: int = 1,
    ) -> None:
        _check_batch_size(batch_size)
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        self.images = images
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.rank, self.world_size = rank, world_size
        self.generator = torch.Generator().manual_seed(seed)

    def __iter__(self) -> Iterator[torch.Tensor]:
        """With ``world_size > 1`` every process draws the same global batches (same seed) and yields
        its own contiguous shard of each: ``batch.tensor_split(world_size)[rank]``."""
        batches = iterate_batches(
            self.images, self.batch_size, shuffle=self.shuffle, generator=self.generator, drop_last=self.drop_last
        )
        if self.world_size == 1:
            return batches
        return (b.tensor_split(self.world_size)[self.rank] for b in batches)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The shuffling RNG state, so a resumed run draws the same batches as an uninterrupted one."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.generator.set_state(state["generator"])

    def __len__(self) -> int:
        n = self.images.shape[0]
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1; got {batch_size!r}")


def shard(batch: Any, rank: int, world_size: int) -> Any:
    """This process's contiguous part of a global batch: tensors split along dim 0
    (``tensor_split(world_size)[rank]``), tuples, lists and mappings element by element, anything else as is."""
    if isinstance(batch, torch.Tensor):
        return batch.tensor_split(world_size)[rank]
    if isinstance(batch, (list, tuple)):
        return type(batch)(shard(b, rank, world_size) for b in batch)
    if isinstance(batch, Mapping):
        return {k: shard(v, rank, world_size) for k, v in batch.items()}
    return batch


class ShardedBatches:
    """Any re-iterable of global batches, each cut to this process's shard (:func:`shard`): how ``gankd train``
    feeds a family's own data factory under ``torchrun``. ``state_dict``/``load_state_dict`` pass through, so a
    resumable factory stays resumable; every process must draw the same global batches (same seed)."""

    def __init__(self, batches: Iterable[Any], rank: int, world_size: int) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        self.batches, self.rank, self.world_size = batches, rank, world_size

    def __iter__(self) -> Iterator[Any]:
        return (shard(b, self.rank, self.world_size) for b in self.batches)

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]

    def state_dict(self) -> dict:
        return self.batches.state_dict() if hasattr(self.batches, "state_dict") else {}

    def load_state_dict(self, state: dict) -> None:
        if hasattr(self.batches, "load_state_dict"):
            self.batches.load_state_dict(state)
