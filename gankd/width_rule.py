"""Per-parameter-group learning rates, and initial scales, derived from a network's widths relative to a
reference network's (for a student: its teacher's).

Why: Adam moves every weight by about ``lr`` per step whatever the layer's width, while a layer's output is a
sum over its fan-in. A student whose layers are 32x narrower than its teacher's, trained at the teacher's
``lr`` and initial scale, changes its pre-activations by a smaller fraction per step than the teacher does,
and is step-limited (docs/distillation.md). A rule gives each parameter an lr factor (times its network's
optimizer lr) and an init factor (its initial weights are multiplied by it once, when a fit starts from
fresh weights), from the ratios ``m_in = fan_in_ref / fan_in`` and ``m_out = fan_out_ref / fan_out`` of the
matching parameter of the reference network:

- ``mup``: the maximal-update parametrisation for Adam (Yang et al., Tensor Programs V, Table 3) with the
  reference as its base width: hidden weights (both fans scaled) init x sqrt(m_in), lr x m_in; output weights
  (fan-out the reference's) init x m_in, lr x m_in; input weights (fan-in the reference's) and vectors
  (biases, norm gains) unchanged.
- ``fan-in``: every weight init x sqrt(m_in) and lr x sqrt(m_in) (each step moves a weight by the same
  fraction of its scale as in the reference); vectors unchanged.
- ``manual``: explicit lr factors by parameter name or module prefix (``{"factors": {"encoder1": 2.0}}``);
  no reference needed.

A :class:`gankd.Stage` names a rule as data, ``lr_rule={"name": "mup"}``; the engine builds each covered
network's optimizer with one parameter group per distinct lr (keys ``lr``, ``lr_factor``, ``names``) and
records the groups in the stage's first epoch record (``"lr_groups"``) and so in checkpoints and run records.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, NamedTuple

import torch
from torch import nn

from .registry import Registry

DEFAULT_NETWORKS = ("student.generator", "student.discriminator")
_NETWORKS = ("teacher.generator", "teacher.discriminator", *DEFAULT_NETWORKS)


class Scale(NamedTuple):
    """What a rule gives one parameter: its lr factor and its init factor."""

    lr: float
    init: float


class Fans(NamedTuple):
    fan_in: int
    fan_out: int


@dataclass(frozen=True)
class LRRule:
    """A named rule: ``fn(network, reference, **args) -> {parameter name: Scale}``; ``reference`` is None
    when ``needs_reference`` is False."""

    name: str
    fn: Callable[..., dict[str, Scale]]
    needs_reference: bool = True
    args: tuple[str, ...] = ()
    description: str = ""


LR_RULES: Registry[LRRule] = Registry("lr rule")


def register_lr_rule(name: str, *, needs_reference: bool = True, args: tuple[str, ...] = (),
                     description: str = "") -> Callable:
    """Decorator: register ``fn(network, reference, **args) -> {name: Scale}`` as the rule ``name``."""
    def add(fn: Callable[..., dict[str, Scale]]) -> Callable[..., dict[str, Scale]]:
        LR_RULES.register(name, LRRule(name, fn, needs_reference, tuple(args), description))
        return fn
    return add


# --- shapes ----------------------------------------------------------------------------------------------------


def parameter_fans(network: nn.Module) -> dict[str, Fans | None]:
    """Fan-in and fan-out of each parameter (None for vectors and scalars: biases, norm gains).

    Transposed convolutions store ``(in, out, *kernel)``: their fan-in is dim 0. Other tensors of >= 2 dims follow
    torch's ``(out, in, *kernel)`` convention (Linear, Conv)."""
    fans: dict[str, Fans | None] = {}
    for module_name, module in network.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            full = f"{module_name}.{pname}" if module_name else pname
            if p.dim() < 2:
                fans[full] = None
                continue
            kernel = math.prod(p.shape[2:])
            first, second = int(p.shape[0]) * kernel, int(p.shape[1]) * kernel
            if getattr(module, "transposed", False) and pname == "weight":
                fans[full] = Fans(first, second * getattr(module, "groups", 1))
            else:
                fans[full] = Fans(second, first)
    return fans


def match_parameters(network: nn.Module, reference: nn.Module, what: str = "network") -> dict[str, str | None]:
    """Each parameter name of ``network`` -> the name of its counterpart in ``reference``, or None for a
    parameter the reference lacks (e.g. a student's distillation-only projection: it keeps factor 1).

    By name when the two share names; else by position when both have as many parameters of the same number
    of dims; else a ValueError."""
    names = [n for n, _ in network.named_parameters()]
    ref = dict(reference.named_parameters())
    if set(names) & set(ref):
        return {n: n if n in ref else None for n in names}
    own = dict(network.named_parameters())
    ref_names = list(ref)
    if len(names) == len(ref_names) and all(own[a].dim() == ref[b].dim() for a, b in zip(names, ref_names)):
        return dict(zip(names, ref_names))
    raise ValueError(f"cannot match the parameters of {what} to its reference's: no name is shared ({what} has "
                     f"{', '.join(names[:3])}...; the reference has {', '.join(ref_names[:3])}...) and by position "
                     "they do not "
                     f"line up ({len(names)} vs {len(ref_names)} parameters); give a reference of the same "
                     "structure (only widths may differ), or use the 'manual' rule with explicit factors")


def _ratios(network: nn.Module, reference: nn.Module, what: str) -> dict[str, tuple[float, float] | None]:
    """(m_in, m_out) per parameter of ``network``; None for vectors."""
    pairs = match_parameters(network, reference, what)
    own, ref = parameter_fans(network), parameter_fans(reference)
    out: dict[str, tuple[float, float] | None] = {}
    for name, ref_name in pairs.items():
        if ref_name is None:
            out[name] = None
            continue
        a, b = own[name], ref[ref_name]
        if (a is None) != (b is None):
            raise ValueError(f"{what}: parameter {name!r} is a {'vector' if a is None else 'matrix'} but its "
                             f"reference {ref_name!r} is not; the networks must differ only in widths")
        out[name] = None if a is None else (b.fan_in / a.fan_in, b.fan_out / a.fan_out)
    return out


# --- the rules -------------------------------------------------------------------------------------------------


@register_lr_rule("mup", description="maximal-update parametrisation for Adam relative to the reference: hidden "
                                     "weights init x sqrt(m_in), lr x m_in; output weights init x m_in, lr x m_in; "
                                     "input weights and vectors unchanged")
def _mup(network: nn.Module, reference: nn.Module, *, what: str = "network") -> dict[str, Scale]:
    scales = {}
    for name, r in _ratios(network, reference, what).items():
        if r is None or r[0] == 1.0:  # vectors and input weights: Adam lr Theta(1), init as the reference's
            scales[name] = Scale(1.0, 1.0)
        elif r[1] == 1.0:  # output weights: init var 1/fan_in^2, lr 1/fan_in
            scales[name] = Scale(r[0], r[0])
        else:  # hidden weights: init var 1/fan_in, lr 1/fan_in
            scales[name] = Scale(r[0], math.sqrt(r[0]))
    return scales


@register_lr_rule("fan-in", description="every weight init x sqrt(m_in) and lr x sqrt(m_in): each step moves a "
                                        "weight by the same fraction of its scale as in the reference")
def _fan_in(network: nn.Module, reference: nn.Module, *, what: str = "network") -> dict[str, Scale]:
    return {name: Scale(1.0, 1.0) if r is None else Scale(math.sqrt(r[0]), math.sqrt(r[0]))
            for name, r in _ratios(network, reference, what).items()}


@register_lr_rule("manual", needs_reference=False, args=("factors",),
                  description="explicit lr factors by parameter name or module prefix (the longest prefix wins)")
def _manual(network: nn.Module, reference: None, *, factors: Mapping[str, float],
            what: str = "network") -> dict[str, Scale]:
    names = [n for n, _ in network.named_parameters()]
    for prefix in factors:
        if not any(n == prefix or n.startswith(prefix + ".") for n in names):
            tops = sorted({n.split(".")[0] for n in names})
            raise ValueError(f"lr_rule 'manual' of {what}: {prefix!r} names no parameter or module; its modules "
                             f"are {', '.join(tops)}")
    scales = {}
    for n in names:
        hits = [p for p in factors if n == p or n.startswith(p + ".")]
        scales[n] = Scale(float(factors[max(hits, key=len)]) if hits else 1.0, 1.0)
    return scales


# --- specs, resolution and application -------------------------------------------------------------------------


def check_rule_spec(spec: Any, stage: str) -> dict:
    """A stage's ``lr_rule`` as a plain dict: ``name`` (a registered rule), optional ``networks`` (default the
    student's two), ``reference`` (a width config for the family's builders; default: the engine's teacher)
    and the rule's own arguments."""
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
        raise ValueError(f"Stage {stage!r}: lr_rule must be a rule name or a mapping with 'name', one of "
                         f"{', '.join(LR_RULES.names())}; got {spec!r}")
    if spec["name"] not in LR_RULES:
        raise ValueError(f"Stage {stage!r}: lr_rule {spec['name']!r} is not a rule; rules: "
                         f"{', '.join(LR_RULES.names())}")
    rule = LR_RULES.get(spec["name"])
    allowed = {"name", "networks", "reference", *rule.args}
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise ValueError(f"Stage {stage!r}: lr_rule {rule.name!r} takes {sorted(allowed)}, not {unknown}")
    missing = sorted(set(rule.args) - set(spec))
    if missing:
        raise ValueError(f"Stage {stage!r}: lr_rule {rule.name!r} needs {missing}")
    networks = spec.get("networks", DEFAULT_NETWORKS)
    networks = [networks] if isinstance(networks, str) else list(networks)
    expanded: list[str] = []
    for n in networks:
        if n in ("teacher", "student"):
            expanded += [f"{n}.generator", f"{n}.discriminator"]
        elif n in _NETWORKS:
            expanded.append(n)
        else:
            raise ValueError(f"Stage {stage!r}: lr_rule networks entry {n!r} is not a network; use 'teacher', "
                             f"'student' or one of {', '.join(_NETWORKS)}")
    out = {**spec, "networks": sorted(set(expanded), key=expanded.index)}
    if "reference" in out and isinstance(out["reference"], tuple):
        out["reference"] = list(out["reference"])  # the JSON form, so a schedule file round-trips
    return out


def reference_network(spec: Mapping[str, Any], network: str, hooks: Any, teacher: Any) -> nn.Module | None:
    """The network ``network`` is compared with: the family's builder at ``spec['reference']`` (on the meta
    device: shapes only), else the teacher's network of the same role."""
    if not LR_RULES.get(spec["name"]).needs_reference:
        return None
    role = network.split(".")[1]
    if spec.get("reference") is not None:
        build = hooks.build_generator if role == "generator" else hooks.build_discriminator
        with torch.device("meta"):
            return build(spec["reference"])
    if teacher is None or network.startswith("teacher."):
        raise ValueError(f"lr_rule {spec['name']!r} needs a reference for {network}, and "
                         f"{'the engine has no teacher' if teacher is None else 'a teacher is its own reference'}; "
                         "give the rule a 'reference' width config (e.g. the teacher's widths)")
    return getattr(teacher, role)


def resolve(spec: Mapping[str, Any], network: str, module: nn.Module, hooks: Any, teacher: Any) -> dict[str, Scale]:
    """The rule's scale for every parameter of ``module`` (the network called ``network``)."""
    rule = LR_RULES.get(spec["name"])
    args = {k: spec[k] for k in rule.args}
    scales = rule.fn(module, reference_network(spec, network, hooks, teacher), what=network, **args)
    for name, s in scales.items():
        if not (s.lr > 0 and math.isfinite(s.lr) and s.init > 0 and math.isfinite(s.init)):
            raise ValueError(f"lr_rule {rule.name!r} gave {network} parameter {name!r} the factors {tuple(s)}; "
                             "lr and init factors must be finite and > 0")
    return scales


def param_groups(module: nn.Module, scales: Mapping[str, Scale], lr: float) -> list[dict]:
    """Optimizer parameter groups, one per distinct lr factor (fewer groups, fewer fused-kernel launches), in
    order of first appearance; each carries ``lr``, ``lr_factor`` and the parameter ``names``."""
    groups: dict[float, dict] = {}
    for name, p in module.named_parameters():
        factor = scales[name].lr
        g = groups.setdefault(factor, {"params": [], "lr": lr * factor, "lr_factor": factor, "names": []})
        g["params"].append(p)
        g["names"].append(name)
    return list(groups.values())


def describe_groups(optimizer: torch.optim.Optimizer) -> list[dict]:
    """What a rule-built optimizer's groups hold (JSON): lr, lr_factor, parameter names."""
    return [{"lr": g["lr"], "lr_factor": g.get("lr_factor", 1.0), "names": list(g.get("names", []))}
            for g in optimizer.param_groups]


@torch.no_grad()
def apply_init(module: nn.Module, scales: Mapping[str, Scale]) -> None:
    """Multiply each parameter by its init factor (once, on fresh weights)."""
    for name, p in module.named_parameters():
        if scales[name].init != 1.0:
            p.mul_(scales[name].init)


def first_rules(stages: Any) -> dict[str, dict]:
    """Network name -> the lr_rule of the first stage that covers it (whose init factors a fresh fit applies)."""
    first: dict[str, dict] = {}
    for stage in stages:
        if stage.lr_rule is not None:
            for network in stage.lr_rule["networks"]:
                first.setdefault(network, stage.lr_rule)
    return first


def build_optimizer(config: Any, rule: Mapping[str, Any] | None, network: str, module: nn.Module, hooks: Any,
                    teacher: Any) -> tuple[torch.optim.Optimizer, dict[str, Scale] | None]:
    """``config.build`` over ``module``'s parameters: plain when ``rule`` does not cover ``network``, else with
    the rule's groups; returns the optimizer and the scales (None without a rule)."""
    if rule is None or network not in rule["networks"]:
        return config.build(module.parameters()), None
    scales = resolve(rule, network, module, hooks, teacher)
    return config.build(param_groups(module, scales, config.lr)), scales


def initialise(stages: Any, networks: Mapping[str, nn.Module | None], hooks: Any, teacher: Any) -> None:
    """Apply, once at the start of a fresh fit, the init factors of the first rule covering each network."""
    for network, rule in first_rules(stages).items():
        module = networks.get(network)
        if module is not None:
            apply_init(module, resolve(rule, network, module, hooks, teacher))
