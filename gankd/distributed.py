"""Running one run over several processes (``torchrun``): the process group from the environment, and the run
folder held by rank 0 alone."""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Iterator

import torch
import torch.distributed as dist

from .runfolder import RunFolder, RunFolderError


def init_distributed(device: Any) -> tuple[int, int, Any]:
    """``(rank, world_size, this process's device)``. Under ``torchrun`` (``WORLD_SIZE`` > 1) the default process
    group is initialised from the environment if the caller has not: NCCL for a CUDA device, gloo otherwise; a CUDA
    device becomes ``cuda:LOCAL_RANK``. A single process gets ``(0, 1, device)`` and no process group."""
    if dist.is_available() and dist.is_initialized():
        world, rank = dist.get_world_size(), dist.get_rank()
    else:
        world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    if world <= 1:
        return 0, 1, device
    cuda = isinstance(device, str) and device.startswith("cuda")
    if cuda:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        if not dist.is_available():
            raise ValueError(f"WORLD_SIZE={world} asks for {world} processes, but this torch build has no "
                                 "torch.distributed: run one process")
        dist.init_process_group("nccl" if cuda else "gloo")
    return rank, world, device


@contextmanager
def rank0_folder(folder: RunFolder, resume: bool, overwrite: bool, rank: int, world_size: int) -> Iterator[RunFolder]:
    """The run folder locked and checked by rank 0 alone (one process: by it); under several processes rank 0
    tells the others whether the folder is theirs (its refusal is raised in every process), then all go on."""
    if world_size == 1:
        with folder:
            folder.check(resume=resume, overwrite=overwrite)
            yield folder
        return
    error = None
    if rank == 0:
        try:
            folder.__enter__()
            folder.check(resume=resume, overwrite=overwrite)
        except Exception as err:  # noqa: BLE001 - re-raised below, after the other ranks are told
            folder.__exit__(None, None, None)
            error = err
    message = [f"{type(error).__name__}: {error}" if error is not None else None]
    dist.broadcast_object_list(message, src=0)
    if error is not None:
        raise error
    if message[0] is not None:
        raise RunFolderError(f"rank 0 refused the run folder ({message[0]})")
    if rank != 0:
        yield folder
        return
    try:
        yield folder
    except BaseException as err:
        folder.__exit__(type(err), err, err.__traceback__)
        raise
    folder.__exit__(None, None, None)
