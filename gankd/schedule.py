"""Schedules: ordered training stages, each a structure run for some epochs.

Schedules are data: they round-trip through ``to_dict``/``from_dict`` (and JSON/YAML
files) so every run can record exactly what it executed. Stage ``k+1`` starts from the
weights stage ``k`` ended with; optimizers are created fresh for each stage.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

from .registry import Registry
from .structure import Structure, get_structure
from .utils import atomic_write_text


@dataclass(frozen=True)
class OptimizerConfig:
    """Adam by default, at the common GAN settings of DCGAN (lr 2e-4, beta1 0.5); families and
    recipes pass their own.

    ``betas`` are Adam's (and AdamW's); ``momentum`` is SGD's own, 0 (plain SGD) unless set, and refused for
    Adam, whose momentum is ``betas[0]``. Every number must be finite: lr > 0, betas and momentum in [0, 1),
    weight_decay >= 0.
    """

    name: str = "adam"
    lr: float = 0.0002
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = 0.0
    momentum: float = 0.0

    def __post_init__(self) -> None:
        if self.name not in ("adam", "adamw", "sgd"):
            raise ValueError(f"OptimizerConfig.name must be one of adam, adamw, sgd; got {self.name!r}")
        for key in ("lr", "weight_decay", "momentum"):  # YAML reads 2e-4 as a string
            value = getattr(self, key)
            try:
                if isinstance(value, bool):
                    raise TypeError
                object.__setattr__(self, key, float(value))
            except (TypeError, ValueError):
                raise ValueError(f"OptimizerConfig.{key} must be a number, got {value!r}") from None
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise ValueError(f"OptimizerConfig.lr must be a finite number > 0, got {self.lr!r}")
        if not self.weight_decay >= 0 or not math.isfinite(self.weight_decay):
            raise ValueError(f"OptimizerConfig.weight_decay must be a finite number >= 0, got {self.weight_decay!r}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"OptimizerConfig.momentum must be in [0, 1), got {self.momentum!r}")
        if self.momentum and self.name != "sgd":
            raise ValueError(f"OptimizerConfig.momentum {self.momentum!r} applies to sgd only; {self.name}'s "
                             "momentum is betas[0]")
        try:
            betas = tuple(float(b) for b in self.betas if not isinstance(b, bool))
        except (TypeError, ValueError):
            betas = ()
        if len(betas) != 2:
            raise ValueError(f"OptimizerConfig.betas must be two numbers, got {self.betas!r}")
        if not all(0 <= b < 1 for b in betas):  # NaN fails too
            raise ValueError(f"OptimizerConfig.betas must be two numbers in [0, 1), got {self.betas!r} "
                             "(the default is (0.5, 0.999))")
        object.__setattr__(self, "betas", betas)

    def to_dict(self) -> dict:
        """Plain JSON types (betas as a list), as written to schedule files and checkpoints; ``momentum`` only
        for SGD, so the files of Adam runs read as they did before SGD had its own momentum."""
        d = {**asdict(self), "betas": list(self.betas)}
        if self.name != "sgd":
            del d["momentum"]
        return d

    def build(self, params):
        import torch

        if self.name == "sgd":
            return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)
        cls = torch.optim.Adam if self.name == "adam" else torch.optim.AdamW
        # fused: one kernel for all parameters; measured 5-8 ms instead of 36-48 ms per step for the
        # 5.1M-parameter teacher on CPU (benchmarks/README.md)
        return cls(params, lr=self.lr, betas=self.betas, weight_decay=self.weight_decay, fused=True)


NETWORK_NAMES = ("teacher.generator", "teacher.discriminator", "student.generator", "student.discriminator")


@dataclass(frozen=True)
class Stage:
    """One stage: a structure trained for ``epochs``.

    ``optimizer`` is the default for every network the stage trains; ``optimizers`` overrides it per
    network, by full name (``"teacher.generator"``) or per GAN (``"teacher"``, ``"student"``), e.g. a jointly
    trained teacher at a tenth of the student's learning rate. ``distillation`` is this stage's K as plain
    data (:meth:`gankd.DistillationLoss.spec`, a list of terms, or a loss); ``None`` uses the engine's
    (by default the family's). Adaptors of a stage's own K start fresh at the stage start.

    ``d_steps``: discriminator updates per generator update (on the same batch). ``grad_clip``: clip each
    update's gradient to this total L2 norm. ``lr_schedule``: a learning-rate schedule over the stage's epochs
    for every optimizer, stepped at each epoch end: ``{"name": "cosine", "min_lr": 0}``, ``{"name": "step",
    "step_size": N, "gamma": 0.5}`` or ``{"name": "linear", "end_factor": 0.1}``.

    ``lr_rule``: per-parameter-group learning rates (and initial scales) for the networks it names, from a
    rule of :mod:`gankd.width_rule`: ``{"name": "mup"}`` compares the student's layer shapes with the
    teacher's; ``{"name": "manual", "factors": {"encoder1": 2.0}}`` gives explicit factors. Each group's lr is
    its factor times the network's optimizer lr.
    """

    structure: Structure
    epochs: int
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    optimizers: Mapping[str, OptimizerConfig] = field(default_factory=dict)
    distillation: Any = None
    d_steps: int = 1
    grad_clip: float | None = None
    lr_schedule: Mapping[str, Any] | None = None
    lr_rule: Mapping[str, Any] | str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "structure", get_structure(self.structure))
        if not isinstance(self.epochs, int) or isinstance(self.epochs, bool) or self.epochs < 1:
            raise ValueError(f"Stage {self.structure.name!r}: epochs must be an integer >= 1, got {self.epochs!r}")
        if isinstance(self.optimizer, Mapping):
            object.__setattr__(self, "optimizer", OptimizerConfig(**self.optimizer))
        if not isinstance(self.optimizers, Mapping):
            raise ValueError(f"Stage {self.structure.name!r}: optimizers must map network names to optimizer "
                             f"settings, got {self.optimizers!r}")
        per_network = {}
        for key, value in self.optimizers.items():
            if key not in NETWORK_NAMES and key not in ("teacher", "student"):
                raise ValueError(f"Stage {self.structure.name!r}: optimizers key {key!r} is not a network; use "
                                 f"'teacher', 'student' or one of {', '.join(NETWORK_NAMES)}")
            per_network[key] = value if isinstance(value, OptimizerConfig) else OptimizerConfig(**value)
        object.__setattr__(self, "optimizers", per_network)
        if self.distillation is not None:
            from .distill import DistillationLoss

            object.__setattr__(self, "distillation", DistillationLoss.from_spec(self.distillation).spec())
        name = self.structure.name
        if isinstance(self.d_steps, bool) or not isinstance(self.d_steps, int) or self.d_steps < 1:
            raise ValueError(f"Stage {name!r}: d_steps must be an integer >= 1, got {self.d_steps!r}")
        if self.grad_clip is not None:
            if isinstance(self.grad_clip, bool) or not isinstance(self.grad_clip, (int, float)) \
                    or not math.isfinite(self.grad_clip) or self.grad_clip <= 0:
                raise ValueError(f"Stage {name!r}: grad_clip must be a number > 0 or None, got {self.grad_clip!r}")
            object.__setattr__(self, "grad_clip", float(self.grad_clip))
        if self.lr_schedule is not None:
            object.__setattr__(self, "lr_schedule", _check_lr_schedule(self.lr_schedule, name))
        if self.lr_rule is not None:
            from .width_rule import check_rule_spec

            object.__setattr__(self, "lr_rule", check_rule_spec(self.lr_rule, name))

    def optimizer_for(self, network: str) -> OptimizerConfig:
        """The settings for ``network`` (e.g. ``"student.generator"``): its own, its GAN's, or the default."""
        return self.optimizers.get(network) or self.optimizers.get(network.split(".")[0]) or self.optimizer

    def to_dict(self) -> dict:
        d = {"structure": self.structure.to_dict(), "epochs": self.epochs, "optimizer": self.optimizer.to_dict()}
        if self.optimizers:
            d["optimizers"] = {k: v.to_dict() for k, v in self.optimizers.items()}
        if self.distillation is not None:
            d["distillation"] = self.distillation
        for key, default in (("d_steps", 1), ("grad_clip", None), ("lr_schedule", None), ("lr_rule", None)):
            if getattr(self, key) != default:  # only when set: older schedule files stay as they were
                d[key] = getattr(self, key)
        return d

    @classmethod
    def from_dict(cls, data: dict) -> "Stage":
        keys = ("structure", "epochs", "optimizer", "optimizers", "distillation", "d_steps", "grad_clip", "lr_schedule",
                "lr_rule")
        unknown = sorted(set(data) - set(keys))
        if unknown:
            raise ValueError(f"stage {data}: unknown keys {unknown}; expected {', '.join(keys)}")
        return cls(structure=get_structure(data["structure"]), epochs=data["epochs"],
                   optimizer=OptimizerConfig(**data.get("optimizer", {})),
                   optimizers=data.get("optimizers") or {}, distillation=data.get("distillation"),
                   d_steps=data.get("d_steps", 1), grad_clip=data.get("grad_clip"),
                   lr_schedule=data.get("lr_schedule"), lr_rule=data.get("lr_rule"))


LR_SCHEDULE_ARGS = {"cosine": {"min_lr": 0.0}, "step": {"step_size": 1, "gamma": 0.5},
                    "linear": {"end_factor": 0.0}}


# per argument: (test, what it must be); the numbers a user gives are used as given, never replaced
_LR_SCHEDULE_CHECKS = {
    "min_lr": (lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0"),
    "step_size": (lambda v: v == int(v) and v >= 1, "an integer >= 1"),
    "gamma": (lambda v: math.isfinite(v) and v > 0, "a finite number > 0"),
    "end_factor": (lambda v: 0 <= v <= 1, "a number in [0, 1] (0: the learning rate reaches 0 at the stage end)"),
}


def _check_lr_schedule(spec: Any, stage: str) -> dict:
    if not isinstance(spec, Mapping) or spec.get("name") not in LR_SCHEDULE_ARGS:
        raise ValueError(f"Stage {stage!r}: lr_schedule must be a mapping with name one of "
                         f"{', '.join(LR_SCHEDULE_ARGS)}, got {spec!r}")
    allowed = LR_SCHEDULE_ARGS[spec["name"]]
    unknown = sorted(set(spec) - {"name"} - set(allowed))
    if unknown:
        raise ValueError(f"Stage {stage!r}: lr_schedule {spec['name']!r} takes {sorted(allowed)}, not {unknown}")
    for key in allowed:
        if key in spec:
            value, (ok, expected) = spec[key], _LR_SCHEDULE_CHECKS[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
                raise ValueError(f"Stage {stage!r}: lr_schedule {spec['name']!r}: {key} must be {expected}, "
                                 f"got {value!r}")
    return {"name": spec["name"], **{k: spec[k] for k in allowed if k in spec}}


def build_lr_scheduler(optimizer: Any, spec: Mapping[str, Any], epochs: int) -> Any:
    """The ``torch.optim.lr_scheduler`` of a stage's ``lr_schedule`` (stepped once per epoch)."""
    import torch

    args = {**LR_SCHEDULE_ARGS[spec["name"]], **{k: v for k, v in spec.items() if k != "name"}}
    if spec["name"] == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=float(args["min_lr"]))
    if spec["name"] == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=int(args["step_size"]), gamma=float(args["gamma"]))
    # end_factor as given: 0 reaches lr 0 after the stage's last epoch (every epoch of the stage trains at lr > 0)
    return torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1.0, end_factor=float(args["end_factor"]),
                                             total_iters=epochs)


@dataclass(frozen=True)
class Schedule:
    stages: tuple[Stage, ...]
    name: str = "custom"

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", tuple(self.stages))
        if not self.stages:
            raise ValueError(f"Schedule {self.name!r} has no stages")

    @property
    def total_epochs(self) -> int:
        return sum(s.epochs for s in self.stages)

    @property
    def needs_teacher(self) -> bool:
        return any(s.structure.needs_teacher for s in self.stages)

    @property
    def needs_student(self) -> bool:
        return any(s.structure.needs_student for s in self.stages)

    def trains(self, role: str) -> bool:
        """Whether some stage trains the ``"teacher"``'s or the ``"student"``'s networks (its optimizer states
        count in the memory a run needs; a run that trains both leaves a model file of each)."""
        if role == "teacher":
            return any(not s.structure.teacher_frozen for s in self.stages)
        if role == "student":
            return any(s.structure.needs_student for s in self.stages)
        raise ValueError(f"role must be 'teacher' or 'student', got {role!r}")

    def to_dict(self) -> dict:
        return {"name": self.name, "stages": [s.to_dict() for s in self.stages]}

    @classmethod
    def from_dict(cls, data: dict) -> "Schedule":
        return cls(stages=tuple(Stage.from_dict(s) for s in data["stages"]), name=data.get("name", "custom"))

    def save(self, path: str | Path) -> None:
        """Write JSON (``.json``) or YAML (``.yaml``/``.yml``)."""
        path = Path(path)
        if path.suffix in (".yaml", ".yml"):
            import yaml

            atomic_write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))
        else:
            atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "Schedule":
        path = Path(path)
        if path.suffix in (".yaml", ".yml"):
            import yaml

            return cls.from_dict(yaml.safe_load(path.read_text()))
        return cls.from_dict(json.loads(path.read_text()))

    def describe(self) -> str:
        return f"{self.name}: " + " -> ".join(f"{s.structure.name} x{s.epochs}ep" for s in self.stages)


ScheduleBuilder = Callable[[int, OptimizerConfig], Schedule]
SCHEDULES: Registry[ScheduleBuilder] = Registry("schedule")


def _single(structure: str) -> ScheduleBuilder:
    def build(epochs: int, optimizer: OptimizerConfig) -> Schedule:
        return Schedule((Stage(get_structure(structure), epochs, optimizer),), name=structure)
    return build


def _progressive(name: str, second: str) -> ScheduleBuilder:
    """Algorithm 1: KDGAN-2 for M epochs (teacher fixed), then ``second`` for M epochs."""
    def build(epochs: int, optimizer: OptimizerConfig) -> Schedule:
        return Schedule((Stage(get_structure("KDGAN-2"), epochs, optimizer),
                         Stage(get_structure(second), epochs, optimizer)), name=name)
    return build


for _name in ("teacher", "student-alone", "KDGAN-1", "KDGAN-2", "KDGAN-3", "KDGAN-4"):
    SCHEDULES.register(_name, _single(_name))
SCHEDULES.register("P-KDGAN-I", lambda e, o: Schedule(_single("KDGAN-2")(e, o).stages, name="P-KDGAN-I"))
SCHEDULES.register("P-KDGAN-II-23", _progressive("P-KDGAN-II-23", "KDGAN-3"))
SCHEDULES.register("P-KDGAN-II-24", _progressive("P-KDGAN-II-24", "KDGAN-4"))


def get_schedule(name: str, epochs: int, optimizer: OptimizerConfig | None = None) -> Schedule:
    """A preset by name; ``epochs`` is per stage (the paper's M in Algorithm 1)."""
    return SCHEDULES.get(name)(epochs, optimizer or OptimizerConfig())


@dataclass(frozen=True)
class Recipe:
    """A named way to distil: builds a schedule, with each stage's K, for ``epochs`` per stage.

    Families offer their recipes through :meth:`gankd.GANHooks.recipes`; every family has ``paper``
    (P-KDGAN-II-23 with the family's own K). ``version`` goes up whenever what the recipe builds changes, and
    run records carry it, so records of two versions of one name are never mixed. ``preset``: the schedule preset
    (:data:`SCHEDULES`) this recipe is, when it is one (``paper`` is ``P-KDGAN-II-23``): the one place that maps
    the two names, both ways.
    """

    name: str
    build: Callable[[int, OptimizerConfig], Schedule]
    description: str = ""
    version: int = 1
    preset: str | None = None

    def schedule(self, epochs: int, optimizer: OptimizerConfig | None = None) -> Schedule:
        return self.build(epochs, optimizer or OptimizerConfig())


PAPER_RECIPE = Recipe("paper", lambda e, o: get_schedule("P-KDGAN-II-23", e, o),
                      "P-KDGAN-II-23 (KDGAN-2 then KDGAN-3, M epochs each) with the family's distillation loss",
                      preset="P-KDGAN-II-23")


STUDENT_NETWORKS = ("student.generator", "student.discriminator")


def teacherless(schedule: Schedule, name: str, *, lr_factor: float = 1.0,
                reference: Any = None) -> Schedule:
    """The no-teacher control of ``schedule``: each stage as ``student-alone`` for its epochs, with its optimizer
    settings, lr schedule and lr rule, and no K; what the teacher adds is the difference between the two.

    ``lr_factor`` multiplies the student's learning rates (a control tuned over a few global factors);
    ``reference``: the width config an lr rule compares the student with where it names none (there is no
    teacher to compare with)."""
    if not lr_factor > 0 or not math.isfinite(lr_factor):
        raise ValueError(f"teacherless: lr_factor must be a finite number > 0, got {lr_factor!r}")
    stages = []
    for stage in schedule.stages:
        optimizers = {n: replace(stage.optimizer_for(n), lr=stage.optimizer_for(n).lr * lr_factor)
                      for n in STUDENT_NETWORKS}
        rule = stage.lr_rule
        if rule is not None and reference is not None and rule.get("reference") is None:
            rule = {**rule, "reference": reference}
        stages.append(Stage("student-alone", stage.epochs, stage.optimizer, optimizers=optimizers,
                            d_steps=stage.d_steps, grad_clip=stage.grad_clip, lr_schedule=stage.lr_schedule,
                            lr_rule=rule))
    return Schedule(tuple(stages), name=name)
