"""One model-file format for any family: the trained GAN's weights plus what is needed to rebuild it.

A model file is a plain dict (``torch.load(weights_only=True)`` reads it, nothing in it runs code)::

    {"format": "gankd-model", "format_version": 1, "version": ..., "family": "pkg.mod:Class",
     "family_args": {...}, "role": "teacher" | "student", "width": ..., "metadata": {...},
     "state_dict": {...}}

:func:`load_model` returns ``(gan, header)``: the GAN rebuilt through the family named in the file with its
weights loaded, and the file's header (everything above but the weights). The pair is the design: what a caller
does with the GAN depends on the header (its ``role``, its ``width``, the resolved config and, for a detector,
the calibrated threshold in ``metadata``), and the family's own loader (``gankd_ganomaly.experiment.load_model``)
returns the same pair. A model file written by ``gankd train`` can be given back as a teacher
(``teacher: {checkpoint: FILE}``) or deployed::

    gan, header = load_model("runs/student/model.pt")     # gan.generator, gan.discriminator
    print(header["role"], header["width"], header["metadata"]["config"]["seed"])

Earlier formats are read through registered upgraders (:data:`MODEL_UPGRADERS`, as timm keeps its old
checkpoint layouts loadable): each takes a loaded payload and returns it as a current model file, or None when
the payload is not its format. A family registers its own in a module it names in the entry-point group
``gankd.model_upgraders`` (imported the first time a file is not in the current format): GANomaly's earlier model
file, sweep teacher and run checkpoint are read by ``gankd_ganomaly.experiment.model_file``. The header says which
upgrader read a file (``upgraded_from``).
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Callable, Mapping

from .checkpoint import CheckpointError, load_checkpoint, load_weights, save_checkpoint
from .hooks import GAN, GANHooks
from .registry import Registry

MODEL_FORMAT = "gankd-model"
ENTRY_POINT_GROUP = "gankd.families"

ModelUpgrader = Callable[[Any], "dict | None"]
#: name -> upgrader: ``upgrade(payload)`` returns the payload as a current model file (a dict of the layout above),
#: or None when the payload is not the format it upgrades. Tried in registration order.
MODEL_UPGRADERS: Registry[ModelUpgrader] = Registry("model-file upgrader")


def family_entry_points() -> dict[str, str]:
    """Families installed under the ``gankd.families`` entry-point group: name -> ``module:Class``."""
    from importlib.metadata import entry_points

    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def resolve_family(name: str) -> type[GANHooks]:
    """A :class:`GANHooks` subclass from ``"package.module:Class"`` or an installed family's name."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"family must be 'package.module:Class' or an installed family name, got {name!r}")
    target = name
    if ":" not in name:
        installed = family_entry_points()
        if name not in installed:
            raise ValueError(f"unknown family {name!r}: installed families (entry points of group "
                             f"{ENTRY_POINT_GROUP!r}) are {sorted(installed) or 'none'}; or give 'package.module:Class'")
        target = installed[name]
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"family {name!r}: cannot import module {module_name!r} ({err})") from None
    cls = getattr(module, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, GANHooks)):
        raise ValueError(f"family {name!r}: {target!r} is not a gankd.GANHooks subclass")
    return cls


def save_model(path: str | Path, gan: GAN, *, family: str, family_args: Mapping[str, Any], width: Any, role: str,
               metadata: Mapping[str, Any] | None = None) -> None:
    """Write ``gan`` (generator and discriminator) as a model file, atomically."""
    from . import __version__

    if role not in ("teacher", "student"):
        raise ValueError(f"role must be 'teacher' or 'student', got {role!r}")
    save_checkpoint(path, {
        "format": MODEL_FORMAT, "format_version": 1, "version": __version__, "family": family,
        "family_args": dict(family_args), "role": role, "width": width, "metadata": dict(metadata or {}),
        "state_dict": {k: v.detach().cpu() for k, v in gan.state_dict().items()},
    })


def read_model(path: str | Path) -> tuple[dict, dict]:
    """``(header, state_dict)`` of a model file, or of an earlier format a registered upgrader reads; a folder
    stands for its ``model.pt``."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.pt"
    return model_from_payload(load_checkpoint(path), str(path))


UPGRADER_ENTRY_POINT_GROUP = "gankd.model_upgraders"
_upgraders_loaded = False


def _load_installed_upgraders() -> None:
    """Import, once, the modules an installed family names in the entry-point group ``gankd.model_upgraders``
    (importing them registers their upgraders), so an old file reads without its family imported first."""
    global _upgraders_loaded
    if _upgraders_loaded:
        return
    _upgraders_loaded = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=UPGRADER_ENTRY_POINT_GROUP):
        importlib.import_module(ep.value.partition(":")[0])


def model_from_payload(payload: Any, where: str) -> tuple[dict, dict]:
    """``(header, state_dict)`` of a loaded model file (``where`` names it in errors), upgraded first when it is an
    earlier format: the one place that decides what a model file is."""
    upgraded_from = None
    if not (isinstance(payload, dict) and payload.get("format") == MODEL_FORMAT):
        _load_installed_upgraders()
        for name in MODEL_UPGRADERS.in_registration_order():
            try:
                current = MODEL_UPGRADERS.get(name)(payload)
            except CheckpointError as err:  # its format, but unreadable: the upgrader says why
                raise CheckpointError(f"{where!r}: {err}") from None
            if current is not None:
                payload, upgraded_from = current, name
                break
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        known = ", ".join(MODEL_UPGRADERS) or "none registered"
        raise CheckpointError(f"{where!r} is not a gankd model file (format {found!r}, expected {MODEL_FORMAT!r}; "
                              f"earlier formats read: {known})")
    if payload.get("format_version") != 1:
        raise CheckpointError(f"{where!r}: unsupported model-file version {payload.get('format_version')!r}")
    header = {k: v for k, v in payload.items() if k != "state_dict"}
    if upgraded_from is not None:
        header["upgraded_from"] = upgraded_from
    return header, payload["state_dict"]


def load_model(path: str | Path, hooks: GANHooks | None = None, *, role: str | None = None) -> tuple[GAN, dict]:
    """``(gan, header)``: the GAN of a model file, rebuilt (through ``hooks`` or the family the file names) with
    its weights loaded, and the file's header (the dict of :func:`read_model`, without the weights).

    ``role``: refuse a file of the other role (e.g. a student given where a teacher is expected).
    """
    header, state_dict = read_model(path)
    if role is not None and header.get("role") != role:
        raise CheckpointError(f"{str(path)!r} holds a {header.get('role')} model; a {role} is expected here")
    if hooks is None:
        hooks = resolve_family(header["family"])(**header.get("family_args", {}))
    gan = hooks.build_gan(header["width"])
    load_weights(gan, state_dict, what=f"{header.get('role', 'model')} ({path})")
    return gan, header
