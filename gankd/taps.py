"""Forward-side helpers of the engine: keeping named submodules' outputs for distillation terms, and running a
network on extra inputs without moving its batch-norm statistics."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Sequence

import torch


class OutputTaps:
    """Forward hooks that keep the output of named generator submodules for distillation terms
    (``"@encoder1.features"``), per GAN, until the step takes them."""

    def __init__(self, names: Sequence[str], generators: dict[str, torch.nn.Module]) -> None:
        self.captured: dict[str, dict[str, torch.Tensor]] = {who: {} for who in generators}
        self.handles = []
        for who, generator in generators.items():
            for name in names:
                try:
                    module = generator.get_submodule(name)
                except AttributeError:
                    children = [n for n, _ in generator.named_children()]
                    raise ValueError(f"distillation term output '@{name}': the {who} generator has no submodule "
                                     f"{name!r}; its top-level submodules are {children} (name nested ones "
                                     "with dots, as in named_modules())") from None
                self.handles.append(module.register_forward_hook(self._keep(who, "@" + name)))

    def _keep(self, who: str, key: str):
        def hook(module, args, output):
            self.captured[who][key] = output
        return hook

    def take(self, who: str) -> dict[str, torch.Tensor]:
        out, self.captured[who] = self.captured[who], {}
        return out

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []


@contextmanager
def frozen_batchnorm_stats(module: torch.nn.Module):
    """Batch norm layers normalise with the batch (in train mode) but do not update their running statistics."""
    norms = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None)
             for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, tracked) in zip(norms, saved):
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)
