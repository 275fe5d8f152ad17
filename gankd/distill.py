"""Distillation losses: pairwise terms over the *named* outputs of two generators.

A term compares one output of the teacher with the same output of the student, e.g.
``DistillTerm("x_hat", "l1", 1.0)``. A :class:`DistillationLoss` is a weighted list of
terms; the paper's K_l (Eq. 6) is ``[("z1", "l2", w1), ("x_hat", "l1", wx), ("z2", "l2", w2)]``.
Teacher outputs are always detached: K trains the student only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F

from .registry import Registry

PairwiseLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``fn(student, teacher) -> scalar``; both tensors have the same shape."""

DISTILL_LOSSES: Registry[PairwiseLoss] = Registry("distillation loss")


def register_distill_loss(name: str) -> Callable[[PairwiseLoss], PairwiseLoss]:
    """Decorator adding a pairwise loss ``fn(student, teacher) -> scalar`` under ``name``."""
    return DISTILL_LOSSES.register(name)  # type: ignore[return-value]


@register_distill_loss("l1")
def _l1(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(student, teacher)


@register_distill_loss("l2")
def _l2(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean squared error, as GANomaly's ``l2_loss``."""
    return F.mse_loss(student, teacher)


DISTILL_LOSSES.register("mse", _l2)


@register_distill_loss("smooth_l1")
def _smooth_l1(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    return F.smooth_l1_loss(student, teacher)


@dataclass(frozen=True)
class DistillTerm:
    """One weighted comparison: ``weight * loss(student[output], teacher[output])``.

    ``student_output`` optionally names a different student output to compare, e.g. a
    projection of the student feature to the teacher's shape computed by a 1x1 conv the
    student network owns; by default both sides use ``output`` and shapes must match.
    """

    output: str
    loss: str = "l2"
    weight: float = 1.0
    student_output: str | None = None

    def __post_init__(self) -> None:
        if self.weight < 0:
            raise ValueError(f"DistillTerm weight for {self.output!r} must be >= 0, got {self.weight}")
        DISTILL_LOSSES.get(self.loss)  # fail at construction on unknown names

    @property
    def name(self) -> str:
        return f"K_{self.output}"

    def to_dict(self) -> dict:
        return {"output": self.output, "loss": self.loss, "weight": self.weight,
                "student_output": self.student_output}


class DistillationLoss:
    """A weighted sum of :class:`DistillTerm` s (the paper's K_l is one instance)."""

    def __init__(self, terms: Sequence[DistillTerm | tuple]) -> None:
        parsed = [t if isinstance(t, DistillTerm) else DistillTerm(*t) for t in terms]
        if not parsed:
            raise ValueError("DistillationLoss needs at least one term")
        names = [t.name for t in parsed]
        if len(set(names)) != len(names):
            raise ValueError(f"DistillationLoss has duplicate outputs: {names}")
        self.terms: tuple[DistillTerm, ...] = tuple(parsed)

    def __call__(self, teacher_outputs: Mapping[str, torch.Tensor],
                 student_outputs: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Returns ``(per_term_unweighted_values, weighted_total)``; teacher outputs are detached."""
        values: dict[str, torch.Tensor] = {}
        total: torch.Tensor | None = None
        for term in self.terms:
            s_key = term.student_output or term.output
            for side, outputs, key in (("teacher", teacher_outputs, term.output),
                                       ("student", student_outputs, s_key)):
                if key not in outputs:
                    raise KeyError(f"distillation term {term.name}: the {side} generator has no output "
                                   f"{key!r}; it returned {sorted(outputs)}")
            s, t = student_outputs[s_key], teacher_outputs[term.output].detach()
            if s.shape != t.shape:
                raise ValueError(
                    f"distillation term {term.name}: student output {s_key!r} has shape {tuple(s.shape)} "
                    f"but teacher output {term.output!r} has shape {tuple(t.shape)}; make the shapes "
                    "agree (e.g. a projection output named by DistillTerm.student_output)")
            value = DISTILL_LOSSES.get(term.loss)(s, t)
            values[term.name] = value
            weighted = term.weight * value
            total = weighted if total is None else total + weighted
        assert total is not None
        return values, total

    def to_list(self) -> list[dict]:
        return [t.to_dict() for t in self.terms]

    def __repr__(self) -> str:
        inner = " + ".join(f"{t.weight:g}*{t.loss}({t.student_output or t.output}, {t.output})" for t in self.terms)
        return f"DistillationLoss({inner})"
