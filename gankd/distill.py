"""Distillation losses: weighted terms over the *named* outputs of two generators.

A term compares one output of the teacher with one output of the student, e.g.
``DistillTerm("x_hat", "l1", 1.0)``. A :class:`DistillationLoss` is a weighted list of
terms; the paper's K_l (Eq. 6) is ``[("z1", "l2", w1), ("x_hat", "l1", wx), ("z2", "l2", w2)]``.
Teacher outputs are always detached: K trains the student only.

What a term may refer to and do:

- any output the family's ``generator_forward`` returns; a *derived* output computed from them
  (:data:`DERIVED_OUTPUTS`, e.g. ``{"residual": {"fn": "difference", "a": "z1", "b": "z2"}}``); or the
  output of a generator submodule, tapped by a forward hook, as ``"@encoder1.features"``;
- a registered loss with keyword arguments (``args``: temperature, p, ...). Losses registered with
  ``shape_free=True`` (relation, Gram, ranking terms) compare batches of different widths, so the
  same-shape check is skipped for them (the batch sizes must still agree);
- an *adaptor* (:data:`ADAPTORS`, e.g. a 1x1 projection of a narrow student feature to the teacher's
  width). Adaptors and stateful losses are submodules of the :class:`DistillationLoss`: they train with
  the student generator and are checkpointed with the run, but they are not part of the student GAN,
  so they never enter its parameter or FLOP counts.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .functional import squared_error
from .registry import Registry

PairwiseLoss = Callable[..., torch.Tensor]
"""``fn(student, teacher, **args) -> scalar``, or an ``nn.Module`` class built with ``**args`` whose
``forward(student, teacher)`` returns the scalar (for losses with state such as running statistics)."""


@dataclass(frozen=True)
class LossEntry:
    """A registered distillation loss and whether it needs equal shapes on both sides."""

    fn: Any
    shape_free: bool = False

    @property
    def is_module(self) -> bool:
        return inspect.isclass(self.fn) and issubclass(self.fn, nn.Module)


DISTILL_LOSSES: Registry[LossEntry] = Registry("distillation loss")
ADAPTORS: Registry[Callable[..., nn.Module]] = Registry("distillation adaptor")
DERIVED_OUTPUTS: Registry[Callable[..., torch.Tensor]] = Registry("derived output")
INPUT_TRANSFORMS: Registry[Callable[..., Any]] = Registry("distillation input transform")


def register_distill_loss(name: str, *, shape_free: bool = False, override: bool = False) -> Callable[[Any], Any]:
    """Decorator adding a loss ``fn(student, teacher, **args) -> scalar`` (or an ``nn.Module`` class
    whose ``forward(student, teacher)`` returns it) under ``name`` (``mypkg.name`` outside gankd: see
    :mod:`gankd.registry` for the naming policy and ``override``).

    ``shape_free=True``: the loss compares tensors whose shapes differ beyond the batch dimension
    (a relation between samples, a Gram matrix, a ranking), so no same-shape check is made.
    """
    def add(fn: Any) -> Any:
        DISTILL_LOSSES.register(name, LossEntry(fn, shape_free), source=fn, override=override)
        return fn
    return add


def register_adaptor(name: str, *, override: bool = False
                     ) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator adding an adaptor factory ``factory(**args) -> nn.Module`` (student tensor -> tensor)."""
    return ADAPTORS.register(name, override=override)  # type: ignore[return-value]


def register_derived_output(name: str, *, override: bool = False
                            ) -> Callable[[Callable[..., torch.Tensor]], Callable[..., torch.Tensor]]:
    """Decorator adding ``fn(outputs, **args) -> Tensor``, a quantity computed from a generator's named
    outputs (the same function runs on the teacher's and on the student's)."""
    return DERIVED_OUTPUTS.register(name, override=override)  # type: ignore[return-value]


# --- losses -----------------------------------------------------------------------------------------------------

@register_distill_loss("l1")
def _l1(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(student, teacher)


@register_distill_loss("l2")
def _l2(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean squared error."""
    return F.mse_loss(student, teacher)


DISTILL_LOSSES.register("mse", DISTILL_LOSSES.get("l2"), source=_l2)


@register_distill_loss("smooth_l1")
def _smooth_l1(student: torch.Tensor, teacher: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    return F.smooth_l1_loss(student, teacher, beta=beta)


@register_distill_loss("lp")
def _lp(student: torch.Tensor, teacher: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """Mean of |s - t|^p (p = 1: l1, p = 2: l2)."""
    return (student - teacher).abs().pow(p).mean()


def _channel_normalize(x: torch.Tensor, eps: float) -> torch.Tensor:
    """Unit L2 norm over dim 1 (channels) at every other position, as STPM's per-channel-vector norm."""
    return x / x.norm(dim=1, keepdim=True).clamp_min(eps) if x.dim() > 1 else x


@register_distill_loss("normalized_l2")
def _normalized_l2(student: torch.Tensor, teacher: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Squared distance of the channel vectors after L2-normalising each (STPM): scale-free."""
    s, t = _channel_normalize(student, eps), _channel_normalize(teacher, eps)
    return (s - t).pow(2).sum(dim=1).mean() / 2


@register_distill_loss("cosine")
def _cosine(student: torch.Tensor, teacher: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """1 - cosine similarity of each sample's flattened tensor (Reverse Distillation uses it per position)."""
    return (1 - F.cosine_similarity(student.flatten(1), teacher.flatten(1), dim=1, eps=eps)).mean()


def _pairwise_distances(x: torch.Tensor) -> torch.Tensor:
    flat = x.flatten(1)
    return torch.cdist(flat, flat)


@register_distill_loss("rkd_distance", shape_free=True)
def _rkd_distance(student: torch.Tensor, teacher: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """RKD's distance term: smooth-L1 between the batch's pairwise distance matrices, each divided by its
    mean off-diagonal distance, so student and teacher widths need not agree (Park et al., 2019)."""
    n = student.shape[0]
    if n < 2:
        return student.sum() * 0
    off = ~torch.eye(n, dtype=torch.bool, device=student.device)
    ds, dt = _pairwise_distances(student), _pairwise_distances(teacher)
    ds = ds / ds[off].mean().clamp_min(eps)
    dt = dt / dt[off].mean().clamp_min(eps)
    return F.smooth_l1_loss(ds[off], dt[off])


@register_distill_loss("gram", shape_free=True)
def _gram(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Similarity-preserving KD: MSE between the row-normalised (N, N) Gram matrices of the batch."""
    def gram(x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        return F.normalize(flat @ flat.t(), dim=1)
    return F.mse_loss(gram(student), gram(teacher))


@register_distill_loss("rank", shape_free=True)
def _rank(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """ListNet ranking term on per-sample scalars (e.g. scores, shape (N,)): cross entropy between the
    batch softmax of the teacher's standardised values and the student's, at ``temperature``."""
    def standardise(x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1).mean(dim=1) if x.dim() > 1 else x
        return (x - x.mean()) / x.std().clamp_min(1e-8) if x.numel() > 1 else x * 0
    s, t = standardise(student) / temperature, standardise(teacher) / temperature
    return -(F.softmax(t, dim=0) * F.log_softmax(s, dim=0)).sum()


@register_distill_loss("standardized_l2")
class StandardizedL2(nn.Module):
    """MSE after standardising both sides per feature by the *teacher's* running mean and std (Uninformed
    Students standardise teacher outputs by their training statistics). Stateful: the statistics are
    buffers, updated in training mode with ``momentum`` and saved in checkpoints."""

    def __init__(self, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        if not 0 < momentum <= 1:
            raise ValueError(f"standardized_l2: momentum must be in (0, 1], got {momentum!r}")
        self.momentum, self.eps = momentum, eps
        self.register_buffer("mean", torch.zeros(0))
        self.register_buffer("var", torch.zeros(0))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        t = teacher.flatten(1)
        if self.training:
            with torch.no_grad():
                mean, var = t.mean(dim=0), t.var(dim=0, unbiased=False)
                if self.mean.numel() == 0:
                    self.mean, self.var = mean.clone(), var.clone()
                else:
                    self.mean.lerp_(mean, self.momentum)
                    self.var.lerp_(var, self.momentum)
                self.steps += 1
        if self.mean.numel() == 0:
            raise RuntimeError("standardized_l2 has no statistics yet: it must see a training batch first")
        std = (self.var + self.eps).sqrt()
        return F.mse_loss((student.flatten(1) - self.mean) / std, (t - self.mean) / std)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # buffers start empty
        for name in ("mean", "var"):
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name]))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


# --- adaptors --------------------------------------------------------------------------------------------------

@register_adaptor("conv1x1")
def _conv1x1(in_channels: int, out_channels: int, bias: bool = False) -> nn.Module:
    """FitNets / GAN Compression regressor: a 1x1 convolution from the student's to the teacher's channels."""
    return nn.Conv2d(in_channels, out_channels, 1, bias=bias)


@register_adaptor("linear")
def _linear(in_features: int, out_features: int, bias: bool = False) -> nn.Module:
    """A linear map of each sample's flattened tensor; the output keeps the flat shape (N, out_features)."""
    return nn.Sequential(nn.Flatten(1), nn.Linear(in_features, out_features, bias=bias))


# --- derived outputs -------------------------------------------------------------------------------------------

@register_derived_output("difference")
def _difference(outputs: Mapping[str, torch.Tensor], a: str, b: str) -> torch.Tensor:
    """``outputs[a] - outputs[b]``."""
    return outputs[a] - outputs[b]


@register_derived_output("squared_error")
def _squared_error(outputs: Mapping[str, torch.Tensor], a: str, b: str) -> torch.Tensor:
    """Per-sample mean of ``(outputs[a] - outputs[b])^2``, shape (N,)."""
    return squared_error(outputs[a], outputs[b])


@register_derived_output("detached")
def _detached(outputs: Mapping[str, torch.Tensor], of: str) -> torch.Tensor:
    return outputs[of].detach()


def register_input_transform(name: str, *, override: bool = False
                             ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator adding ``fn(inputs, **args) -> inputs``: a *view* on which both generators run once more per
    step, so K can compare them on inputs the training data lack (e.g. off-manifold images for a detector).
    Random transforms must draw from the global torch RNG, which checkpoints restore."""
    return INPUT_TRANSFORMS.register(name, override=override)  # type: ignore[return-value]


def _tensor_input(inputs: Any, name: str) -> torch.Tensor:
    if not torch.is_tensor(inputs):
        raise TypeError(f"input transform {name!r} works on a tensor of generator inputs, got {type(inputs).__name__}")
    return inputs


@register_input_transform("noise")
def _noise(inputs: torch.Tensor, std: float = 0.1) -> torch.Tensor:
    """Inputs plus Gaussian noise of standard deviation ``std``."""
    x = _tensor_input(inputs, "noise")
    return x + std * torch.randn_like(x)


@register_input_transform("mixup")
def _mixup(inputs: torch.Tensor, weight: float = 0.5) -> torch.Tensor:
    """``weight * x + (1 - weight) * x[perm]``: each sample blended with another of the batch."""
    x = _tensor_input(inputs, "mixup")
    perm = torch.randperm(x.shape[0], device=x.device)
    return weight * x + (1 - weight) * x[perm]


@register_input_transform("flip")
def _flip(inputs: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Inputs reversed along ``dim`` (for images, -1 flips left-right)."""
    return _tensor_input(inputs, "flip").flip(dim)


@register_input_transform("rot90")
def _rot90(inputs: torch.Tensor, k: int = 1) -> torch.Tensor:
    """Each sample rotated by ``k`` quarter turns in its last two dimensions."""
    return torch.rot90(_tensor_input(inputs, "rot90"), k, dims=(-2, -1))


# --- terms -----------------------------------------------------------------------------------------------------

def _plain(value: Any, where: str) -> Any:
    """Check that a term argument is JSON-like (it is written into schedule files and checkpoints)."""
    if isinstance(value, (bool, int, str)) or value is None:
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where} must be finite, got {value!r}")
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v, where) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    raise ValueError(f"{where} must be a number, string, bool, list or mapping, got {type(value).__name__}")


@dataclass(frozen=True)
class DistillTerm:
    """One weighted comparison: ``weight * loss(adaptor(student[student_output]), teacher[output], **args)``.

    ``output`` names the teacher output (also the student's unless ``student_output`` is given); a name
    starting with ``@`` taps a generator submodule by its qualified name (``"@encoder1.features"``).
    ``name`` labels the term in logs (default ``K_<output>``); names must be unique within a loss, so two
    terms on one output need their own names.
    """

    output: str
    loss: str = "l2"
    weight: float = 1.0
    student_output: str | None = None
    args: Mapping[str, Any] = field(default_factory=dict)
    name: str | None = None
    adaptor: str | None = None
    adaptor_args: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.output, str) or not self.output:
            raise ValueError(f"DistillTerm output must be a non-empty string, got {self.output!r}")
        if isinstance(self.weight, bool) or not isinstance(self.weight, (int, float)) \
                or not math.isfinite(self.weight) or self.weight < 0:
            raise ValueError(f"DistillTerm weight for {self.output!r} must be a finite number >= 0, got {self.weight!r}")
        entry = DISTILL_LOSSES.get(self.loss)  # fail at construction on unknown names
        if self.adaptor is not None:
            ADAPTORS.get(self.adaptor)
        for attr in ("args", "adaptor_args"):
            value = getattr(self, attr)
            if not isinstance(value, Mapping):
                raise ValueError(f"DistillTerm {self.label}: {attr} must be a mapping, got {value!r}")
            object.__setattr__(self, attr, _plain(dict(value), f"DistillTerm {self.label}: {attr}"))
        if not entry.is_module:  # a function: its keyword arguments are known now
            _check_kwargs(entry.fn, self.args, f"DistillTerm {self.label}: loss {self.loss!r}")

    @property
    def label(self) -> str:
        return self.name or f"K_{self.output}"

    @property
    def student_key(self) -> str:
        return self.student_output or self.output

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"output": self.output, "loss": self.loss, "weight": self.weight,
                             "student_output": self.student_output}
        for key in ("args", "name", "adaptor", "adaptor_args"):
            value = getattr(self, key)
            if value:
                d[key] = value
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "DistillTerm":
        if not isinstance(data, Mapping):
            raise ValueError(f"a distillation term must be a mapping with at least 'output', got {data!r}")
        known = {"output", "loss", "weight", "student_output", "args", "name", "adaptor", "adaptor_args"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"distillation term {dict(data)}: unknown keys {unknown}; expected {sorted(known)}")
        if "output" not in data:
            raise ValueError(f"distillation term {dict(data)} has no 'output'")
        return cls(**data)


def _check_kwargs(fn: Callable[..., Any], kwargs: Mapping[str, Any], where: str, leading: int = 2) -> None:
    """``kwargs`` must be keyword parameters of ``fn`` after its ``leading`` positional ones."""
    params = list(inspect.signature(fn).parameters.values())
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    allowed = [p.name for p in params[leading:] if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"{where} takes no argument(s) {unknown}; it takes {allowed or 'none'}")


def _function_spec(spec: Any, registry: Registry, where: str) -> dict[str, Any]:
    """A checked ``{fn: NAME, **args}`` of a one-input registry (derived outputs, views), as plain data."""
    if not isinstance(spec, Mapping) or "fn" not in spec:
        raise ValueError(f"{where} must be a mapping {{fn: NAME, ...args}}, got {spec!r}")
    spec = _plain(dict(spec), where)
    _check_kwargs(registry.get(spec["fn"]), {k: v for k, v in spec.items() if k != "fn"},
                  f"{where}: {spec['fn']!r}", leading=1)
    return spec


def _as_term(item: "DistillTerm | Mapping | Sequence") -> DistillTerm:
    if isinstance(item, DistillTerm):
        return item
    if isinstance(item, Mapping):
        return DistillTerm.from_dict(item)
    return DistillTerm(*item)


class DistillationLoss(nn.Module):
    """A weighted sum of :class:`DistillTerm` s (the paper's K_l is one instance).

    ``derived`` maps new output names to ``{"fn": NAME, **args}`` (:data:`DERIVED_OUTPUTS`); they are
    computed from each generator's outputs before the terms run and may be named by terms.

    ``views`` maps view names to ``{"fn": NAME, **args}`` (:data:`INPUT_TRANSFORMS`): per step the engine runs
    both generators once more on the transformed inputs (the teacher without gradients; batch-norm running
    statistics are left as they were, so the views never shift what a deployed network normalises with),
    and terms name those outputs ``"VIEW/OUTPUT"``.

    Being a module, it owns the terms' adaptors and stateful losses (``self.adaptors``,
    ``self.modules_by_term``); :meth:`spec` / :meth:`from_spec` give the data form written into schedule
    files and checkpoints.
    """

    def __init__(self, terms: Sequence[DistillTerm | Mapping | tuple],
                 derived: Mapping[str, Mapping[str, Any]] | None = None,
                 views: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        super().__init__()
        parsed = [_as_term(t) for t in terms]
        if not parsed:
            raise ValueError("DistillationLoss needs at least one term")
        labels = [t.label for t in parsed]
        duplicates = sorted({n for n in labels if labels.count(n) > 1})
        if duplicates:
            raise ValueError(f"DistillationLoss has several terms named {duplicates}: give each term on the "
                             "same output its own name (DistillTerm(..., name='K_z1_cos'))")
        self.terms: tuple[DistillTerm, ...] = tuple(parsed)
        self.derived: dict[str, dict[str, Any]] = {}
        self.derived = {name: _function_spec(spec, DERIVED_OUTPUTS, f"derived output {name!r}")
                        for name, spec in (derived or {}).items()}
        if any("/" in view for view in views or {}):
            raise ValueError(f"view names may not contain '/' (terms read 'VIEW/OUTPUT'); got {sorted(views or {})}")
        self.views = {view: _function_spec(spec, INPUT_TRANSFORMS, f"view {view!r}")
                      for view, spec in (views or {}).items()}
        self.adaptors = nn.ModuleDict()
        self.modules_by_term = nn.ModuleDict()
        for term in self.terms:
            key = _module_key(term.label)
            if term.adaptor is not None:
                try:
                    self.adaptors[key] = ADAPTORS.get(term.adaptor)(**term.adaptor_args)
                except TypeError as err:
                    raise ValueError(f"DistillTerm {term.label}: adaptor {term.adaptor!r} arguments "
                                     f"{dict(term.adaptor_args)}: {err}") from None
            entry = DISTILL_LOSSES.get(term.loss)
            if entry.is_module:
                try:
                    self.modules_by_term[key] = entry.fn(**term.args)
                except TypeError as err:
                    raise ValueError(f"DistillTerm {term.label}: loss {term.loss!r} arguments "
                                     f"{dict(term.args)}: {err}") from None

    # --- what the engine needs to know ------------------------------------------------------------------
    @property
    def taps(self) -> tuple[str, ...]:
        """Submodule names (without ``@``) whose outputs the terms read, for forward hooks on the generators."""
        names = [n for t in self.terms for n in (t.output, t.student_key) if n.startswith("@")]
        return tuple(dict.fromkeys(n[1:] for n in names))

    def view_inputs(self, inputs: Any) -> dict[str, Any]:
        """The generator inputs of every view (see the class docstring)."""
        return {view: INPUT_TRANSFORMS.get(spec["fn"])(inputs, **{k: v for k, v in spec.items() if k != "fn"})
                for view, spec in self.views.items()}

    def has_parameters(self) -> bool:
        return any(True for _ in self.parameters())

    # --- the loss --------------------------------------------------------------------------------------------
    def with_derived(self, outputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``outputs`` plus every derived output (in the order given)."""
        result = dict(outputs)
        for out_name, spec in self.derived.items():
            args = {k: v for k, v in spec.items() if k != "fn"}
            try:
                result[out_name] = DERIVED_OUTPUTS.get(spec["fn"])(result, **args)
            except KeyError as err:
                raise KeyError(f"derived output {out_name!r} ({spec['fn']}) needs output {err}; the generator "
                               f"returned {sorted(result)}") from None
        return result

    def forward(self, teacher_outputs: Mapping[str, torch.Tensor],
                student_outputs: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Returns ``(per_term_unweighted_values, weighted_total)``; teacher outputs are detached."""
        if self.derived:
            teacher_outputs = self.with_derived(teacher_outputs)
            student_outputs = self.with_derived(student_outputs)
        values: dict[str, torch.Tensor] = {}
        total: torch.Tensor | None = None
        for term in self.terms:
            for side, outputs, key in (("teacher", teacher_outputs, term.output),
                                       ("student", student_outputs, term.student_key)):
                if key not in outputs:
                    raise KeyError(f"distillation term {term.label}: the {side} generator has no output "
                                   f"{key!r}; it returned {sorted(outputs)}")
            key = _module_key(term.label)
            s, t = student_outputs[term.student_key], teacher_outputs[term.output].detach()
            if key in self.adaptors:
                s = self.adaptors[key](s)
            entry = DISTILL_LOSSES.get(term.loss)
            if entry.shape_free:
                if s.shape[:1] != t.shape[:1]:
                    raise ValueError(f"distillation term {term.label}: {term.loss!r} compares batches, but the "
                                     f"student has {s.shape[0]} samples and the teacher {t.shape[0]}")
            elif s.shape != t.shape:
                raise ValueError(
                    f"distillation term {term.label}: student output {term.student_key!r} has shape "
                    f"{tuple(s.shape)}{' after its adaptor' if key in self.adaptors else ''} but teacher output "
                    f"{term.output!r} has shape {tuple(t.shape)}; make the shapes agree with an adaptor "
                    "(DistillTerm(adaptor='conv1x1', adaptor_args={...})) or use a shape-free loss")
            value = self.modules_by_term[key](s, t) if key in self.modules_by_term else entry.fn(s, t, **term.args)
            values[term.label] = value
            weighted = term.weight * value
            total = weighted if total is None else total + weighted
        assert total is not None
        return values, total

    # --- data form ----------------------------------------------------------------------------------------------
    def to_list(self) -> list[dict]:
        return [t.to_dict() for t in self.terms]

    def spec(self) -> dict:
        """``{"terms": [...], "derived": {...}}``: plain data, as in a schedule file."""
        d: dict[str, Any] = {"terms": self.to_list()}
        if self.derived:
            d["derived"] = {k: dict(v) for k, v in self.derived.items()}
        if self.views:
            d["views"] = {k: dict(v) for k, v in self.views.items()}
        return d

    @classmethod
    def from_spec(cls, spec: "Mapping[str, Any] | Sequence | DistillationLoss") -> "DistillationLoss":
        """A fresh loss (new adaptors) from :meth:`spec`'s form, a bare list of terms, or another loss."""
        if isinstance(spec, DistillationLoss):
            spec = spec.spec()
        if isinstance(spec, Mapping):
            unknown = sorted(set(spec) - {"terms", "derived", "views"})
            if unknown or "terms" not in spec:
                raise ValueError("a distillation spec is {terms: [...], derived: {...}, views: {...}}; got keys "
                                 f"{sorted(spec)}")
            return cls(spec["terms"], spec.get("derived"), spec.get("views"))
        return cls(spec)

    def extra_repr(self) -> str:
        return " + ".join(f"{t.weight:g}*{t.loss}({t.student_key}, {t.output})" for t in self.terms)


def _module_key(label: str) -> str:
    """ModuleDict keys may not contain dots."""
    return label.replace(".", "_")
