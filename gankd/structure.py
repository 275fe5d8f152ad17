"""Structures: the paper's loss set {alpha L_g^T, beta L_d^T, mu L_g^S, nu L_d^S, lambda K} (Eq. 7).

The five weights say which losses are minimised in a stage; everything else (which
networks train, which optimizers exist, whether the teacher is frozen) is *derived*
here so the engine never hard-codes a KDGAN variant.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from .registry import Registry

FLAG_NAMES = ("alpha", "beta", "mu", "nu", "lam")


@dataclass(frozen=True)
class Structure:
    """Loss weights of one training stage.

    alpha: teacher generator loss L_g^T       beta: teacher discriminator loss L_d^T
    mu:    student generator loss L_g^S       nu:   student discriminator loss L_d^S
    lam:   distillation loss K (trains the student generator only)
    """

    alpha: float = 0.0
    beta: float = 0.0
    mu: float = 0.0
    nu: float = 0.0
    lam: float = 0.0
    name: str = "custom"

    def __post_init__(self) -> None:
        for flag in FLAG_NAMES:
            value = getattr(self, flag)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"Structure {self.name!r}: {flag} must be a finite number >= 0, got {value!r}")
        if not (self.alpha or self.beta or self.mu or self.nu or self.lam):
            raise ValueError(f"Structure {self.name!r}: all five weights are 0, so it would train nothing")

    # --- what trains -------------------------------------------------------------
    @property
    def trains_teacher_generator(self) -> bool:
        return self.alpha > 0

    @property
    def trains_teacher_discriminator(self) -> bool:
        return self.beta > 0

    @property
    def trains_student_generator(self) -> bool:
        return self.mu > 0 or self.lam > 0

    @property
    def trains_student_discriminator(self) -> bool:
        return self.nu > 0

    # --- what is needed ------------------------------------------------------------
    @property
    def teacher_frozen(self) -> bool:
        """alpha = beta = 0: the teacher runs in eval mode, without autograd or optimizer."""
        return self.alpha == 0 and self.beta == 0

    @property
    def needs_teacher(self) -> bool:
        return self.lam > 0 or not self.teacher_frozen

    @property
    def needs_student(self) -> bool:
        return self.trains_student_generator or self.trains_student_discriminator

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Structure":
        unknown = set(data) - set(FLAG_NAMES) - {"name"}
        if unknown:
            raise ValueError(f"Structure: unknown keys {sorted(unknown)}; expected {list(FLAG_NAMES) + ['name']}")
        return cls(**data)

    def describe(self) -> str:
        parts = [f"{w:g}*{n}" for w, n in ((self.alpha, "L_g^T"), (self.beta, "L_d^T"), (self.mu, "L_g^S"),
                                           (self.nu, "L_d^S"), (self.lam, "K")) if w]
        return f"{self.name}: {{{', '.join(parts)}}}"


STRUCTURES: Registry[Structure] = Registry("structure")
for _s in (
    Structure(alpha=1, beta=1, name="teacher"),                    # train one GAN on its own losses
    Structure(mu=1, nu=1, name="student-alone"),                   # the small GAN, no teacher
    Structure(lam=1, name="KDGAN-1"),                              # {K}
    Structure(mu=1, nu=1, lam=1, name="KDGAN-2"),                  # {L_g^S, L_d^S, K}, teacher fixed
    Structure(alpha=1, beta=1, lam=1, name="KDGAN-3"),             # {L_g^T, L_d^T, K}
    Structure(alpha=1, beta=1, mu=1, nu=1, lam=1, name="KDGAN-4"),  # all five
):
    STRUCTURES.register(_s.name, _s)


def get_structure(spec: "str | Structure | dict") -> Structure:
    """A preset name, a :class:`Structure`, or its dict form."""
    if isinstance(spec, Structure):
        return spec
    if isinstance(spec, dict):
        return Structure.from_dict(spec)
    return STRUCTURES.get(spec)
