"""What a run needs from the machine, checked before anything is allocated or written.

* :func:`check_device` and :func:`check_precision`: a device this torch can compute on, and a mixed precision
  it supports there.
* :func:`probe_network`: builds a family's GAN on the ``meta`` device (shapes only, no memory) and runs its
  generator on a batch of the data, so that a width the family cannot build, or networks that do not fit the
  data (e.g. 3 input channels for gray images), fail in a second with one line, and measures what the GAN
  needs: its parameters and the activations of one step.
* :func:`check_memory`: refuses a run whose estimate exceeds the memory available on its device.

The estimate, per network that trains: weights + gradients + optimizer state (Adam: 2 tensors per weight),
plus the output of every leaf module of one generator forward and of the family's generator loss on the batch
(what backward keeps), plus the batch. It is a lower bound of the peak: the allocator, temporaries and
torch's own workspace come on top, so a run refused here could not have run.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Iterable

import torch
from torch import nn

from .hooks import GAN, GANHooks


class ResourceError(MemoryError):
    """A run would need more memory than its device has available; the message names both and what to change."""


def check_device(device: str | torch.device) -> torch.device:
    """``torch.device(device)`` if this machine can compute on it, else :class:`ValueError` saying what to use.

    A device name that cannot work (``tpu``, ``cuda`` on a CPU-only build or without a GPU, ``cuda:3`` on a
    one-GPU machine, ``meta``) fails before anything is loaded or written.
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"device {str(device)!r} is not a torch device name: use cpu, cuda, cuda:N or mps") from None
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = (f"this torch build ({torch.__version__}) has no CUDA support" if torch.version.cuda is None
                   else "no CUDA GPU is visible (check the driver and CUDA_VISIBLE_DEVICES)")
            raise ValueError(f"device {str(device)!r}: {why}; use cpu")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"device {str(device)!r}: this machine has {count} CUDA device(s), cuda:0 to "
                             f"cuda:{count - 1}")
        return dev
    if dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"device {str(device)!r}: MPS (Apple GPU) is not available here; use cpu")
        return dev
    if dev.type == "meta":
        raise ValueError(f"device {str(device)!r} holds no data and cannot train or score; use cpu or cuda")
    try:
        torch.empty(1, device=dev)
    except Exception as err:  # noqa: BLE001 - any backend failure means "not usable here"
        why = str(err).splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"device {str(device)!r} is not usable here ({why}); use cpu") from None
    return dev


def check_precision(mixed_precision: str | None, device: torch.device) -> None:
    """``None``, ``"bf16"`` (CPU; CUDA where the GPU supports it) or ``"fp16"`` (CUDA), else :class:`ValueError`."""
    if mixed_precision not in (None, "bf16", "fp16"):
        raise ValueError(f"mixed_precision must be null, bf16 or fp16, got {mixed_precision!r}")
    if mixed_precision == "fp16" and device.type != "cuda":
        raise ValueError(f"mixed_precision fp16 needs a CUDA device, but the device is {str(device)!r}: use bf16 "
                         "(or null) there")
    if mixed_precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"mixed_precision bf16: the GPU of {str(device)!r} does not support bfloat16: use fp16")
    if mixed_precision is not None and device.type not in ("cpu", "cuda"):
        raise ValueError(f"mixed_precision {mixed_precision} runs on cpu or cuda, not {device.type}: use null")


def _bytes(tensors: Iterable[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _to_meta(batch: Any) -> Any:
    if isinstance(batch, torch.Tensor):
        return torch.empty_like(batch, device="meta")
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_meta(b) for b in batch)
    if isinstance(batch, dict):
        return {k: _to_meta(v) for k, v in batch.items()}
    return batch


@dataclass
class NetworkNeeds:
    """What one GAN needs: ``weights`` (bytes of its parameters and buffers), ``activations`` (bytes of the
    leaf-module outputs of one step on the probed batch)."""

    weights: int
    activations: int


def probe_network(hooks: GANHooks, width: Any, batch: Any, what: str) -> NetworkNeeds | None:
    """Build the GAN of ``width`` on the meta device and run a step's forwards on ``batch``; shapes only.

    ``what`` names the setting in messages (e.g. ``"teacher.width"``). :class:`ValueError` if the family cannot
    build the width or its generator cannot take the data; ``None`` if the family's networks cannot be built on
    the meta device (an operation without a meta kernel), so nothing could be probed."""
    try:
        with torch.device("meta"):
            gan = hooks.build_gan(width)
    except NotImplementedError:  # an initialisation without meta kernel: nothing can be probed
        return None
    except (TypeError, ValueError, RuntimeError, IndexError) as err:
        raise ValueError(f"{what} {width!r}: {type(hooks).__name__} cannot build networks of it ({_first(err)})") \
            from None
    if not isinstance(gan, GAN):
        raise ValueError(f"{what} {width!r}: {type(hooks).__name__}.build_gan returned {type(gan).__name__}, "
                         "not a gankd.GAN")
    weights = _bytes(gan.parameters()) + _bytes(gan.buffers())
    sizes: list[int] = []

    def record(module: nn.Module, inputs: Any, output: Any) -> None:
        outs = output if isinstance(output, (tuple, list)) else (output,)
        sizes.append(_bytes(o for o in outs if isinstance(o, torch.Tensor)))

    handles = [m.register_forward_hook(record) for m in gan.modules() if not list(m.children())]
    meta_batch = _to_meta(batch)
    try:
        with torch.device("meta"):
            outputs = dict(hooks.generator_forward(gan.generator, hooks.generator_inputs(meta_batch)))
        try:  # the discriminator's activations too, where the family's loss runs on shapes alone
            with torch.device("meta"):
                hooks.generator_loss(gan, meta_batch, outputs)
        except (NotImplementedError, RuntimeError):
            pass
    except NotImplementedError:  # an operation without meta kernel: the shapes cannot be probed, nor the memory
        return NetworkNeeds(weights, 0)
    except (TypeError, ValueError, RuntimeError, IndexError) as err:
        raise ValueError(f"{what} {width!r}: the {type(hooks).__name__} generator cannot take the data's batches "
                         f"of shape {_shapes(batch)} ({_first(err)}); check family_args (e.g. in_channels, "
                         "image_size) against the data") from None
    finally:
        for handle in handles:
            handle.remove()
    return NetworkNeeds(weights, sum(sizes))


def _first(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _shapes(batch: Any) -> str:
    if isinstance(batch, torch.Tensor):
        return str(tuple(batch.shape))
    if isinstance(batch, (list, tuple)):
        return "(" + ", ".join(_shapes(b) for b in batch) + ")"
    if isinstance(batch, dict):
        return "{" + ", ".join(f"{k}: {_shapes(v)}" for k, v in batch.items()) + "}"
    return type(batch).__name__


@dataclass
class MemoryEstimate:
    """Bytes a run needs, per part (``"teacher weights, gradients and Adam states"`` -> bytes)."""

    parts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    def add_network(self, role: str, needs: NetworkNeeds, *, trains: bool, optimizer_states: int = 2) -> None:
        copies = 2 + optimizer_states if trains else 1  # weights (+ gradients + optimizer state)
        label = "weights, gradients and optimizer states" if trains else "weights (frozen)"
        self.parts[f"{role} {label}"] = needs.weights * copies
        self.parts[f"{role} activations of one step"] = needs.activations

    def describe(self) -> str:
        parts = sorted(self.parts.items(), key=lambda kv: -kv[1])
        return ", ".join(f"{name} {format_bytes(n)}" for name, n in parts if n)


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n} B"  # pragma: no cover


def _cgroup_available() -> int | None:
    """Memory left under this process's cgroup (v2) limit, if it has one."""
    try:
        limit = open("/sys/fs/cgroup/memory.max").read().strip()
        used = int(open("/sys/fs/cgroup/memory.current").read().strip())
    except (OSError, ValueError):
        return None
    return None if limit == "max" else max(int(limit) - used, 0)


def available_memory(device: torch.device) -> int | None:
    """Bytes that ``device`` can still allocate: free GPU memory, or the host's available memory (and what a
    cgroup limit leaves); ``None`` where it cannot be known."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type != "cpu":
        return None
    host = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    host = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if host is None and hasattr(os, "sysconf"):
        try:
            host = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError):
            host = None
    cgroup = _cgroup_available()
    known = [m for m in (host, cgroup) if m is not None]
    return min(known) if known else None


def check_memory(estimate: MemoryEstimate, device: torch.device, settings: str) -> None:
    """Refuse (:class:`ResourceError`) a run whose estimate exceeds what ``device`` has available.

    ``settings`` names what the user can change, e.g. ``"teacher.width, student.width or the batch size"``."""
    available = available_memory(device)
    if available is None or not math.isfinite(estimate.total) or estimate.total <= available:
        return
    raise ResourceError(f"this run needs at least {format_bytes(estimate.total)} on {device} ({estimate.describe()})"
                        f", but only {format_bytes(available)} is available: lower {settings}")
