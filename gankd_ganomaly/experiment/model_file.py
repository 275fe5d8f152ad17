"""Model files of GANomaly runs: the trained weights with what rebuilding and scoring them needs.

:func:`save_model` writes the one model-file format of the project (:mod:`gankd.modelfile`, family
``ganomaly``), with the run's config and calibrated threshold in its metadata. :func:`read_model_file` also
reads the older files (``gankd-ganomaly-model``, the sweep's ``gankd-reproduce-teacher``), a run's engine
checkpoint and a bare state_dict. Loading is ``weights_only`` and names mismatched tensors.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

import gankd
import gankd.modelfile
from gankd import GAN, CheckpointError, load_checkpoint, load_weights
from gankd.modelfile import MODEL_FORMAT as GANKD_MODEL_FORMAT

from ..data import dataset_spec, DATASETS
from ..hooks import GanomalyHooks
from ..networks import IMAGE_SIZE, LATENT_DIM, TEACHER_WIDTHS
from .config import RunConfig

FAMILY = "ganomaly"  # the family's name in the gankd.families entry-point group
# formats written before every model file was a gankd model file (:mod:`gankd.modelfile`); still read
MODEL_FORMAT = "gankd-ganomaly-model"
SWEEP_TEACHER_FORMAT = "gankd-reproduce-teacher"


def save_model(path: str | Path, gan: GAN, cfg: RunConfig, threshold: Mapping[str, Any] | None = None, *,
               config: Mapping[str, Any] | None = None, extra: Mapping[str, Any] | None = None) -> None:
    """Write the trained GAN as a gankd model file (family ``ganomaly``), atomically.

    Its metadata holds the method, dataset, normal class, the run's config (``config`` replaces
    ``cfg.to_dict()``, e.g. the sweep's budget-level view of it), the calibrated decision ``threshold`` record when
    given, and ``extra`` (e.g. the sweep's budget). :func:`gankd.modelfile.load_model` and ``gankd train``
    (``teacher: {checkpoint: FILE}``) read it as any family's model file; :func:`load_model` adds GANomaly's checks.
    ``family_args`` are GanomalyHooks' ``in_channels`` and ``latent_dim``, and ``image_size`` when it is not 32
    (a 32x32 file is byte-for-byte what it was before image sizes; a reader defaults a missing one to 32).
    """
    metadata = {"method": cfg.method, "dataset": cfg.dataset, "normal_class": cfg.normal_class,
                "config": dict(config) if config is not None else cfg.to_dict(), **dict(extra or {})}
    if threshold is not None:
        metadata["threshold"] = dict(threshold)
    image_size = int(getattr(gan.generator, "image_size", IMAGE_SIZE))
    if image_size != cfg.image_size:
        raise ValueError(f"the GAN takes {image_size}x{image_size} images but the config says image_size "
                         f"{cfg.image_size}")
    family_args: dict[str, Any] = {"in_channels": cfg.in_channels, "latent_dim": LATENT_DIM}
    if image_size != IMAGE_SIZE:
        family_args["image_size"] = image_size
    gankd.modelfile.save_model(path, gan, family=FAMILY, family_args=family_args,
                               width=list(cfg.trained_widths), role="teacher" if cfg.method == "teacher" else "student",
                               metadata=metadata)


# --- earlier formats: each an upgrader of gankd.modelfile, which turns an old file into the current one ----------

def _current(ckpt: Mapping[str, Any], *, role: str, widths: Sequence[int], in_channels: int | None,
             image_size: int | None, metadata: Mapping[str, Any], state_dict: Mapping[str, Any]) -> dict:
    family_args: dict[str, Any] = {"in_channels": in_channels, "latent_dim": LATENT_DIM}
    if image_size and int(image_size) != IMAGE_SIZE:
        family_args["image_size"] = int(image_size)
    return {"format": GANKD_MODEL_FORMAT, "format_version": 1, "version": ckpt.get("version"), "family": FAMILY,
            "family_args": family_args, "role": role, "width": list(widths), "metadata": dict(metadata),
            "state_dict": state_dict}


@gankd.modelfile.MODEL_UPGRADERS.register("ganomaly.model-v0")
def upgrade_adapter_model(ckpt: Any) -> dict | None:
    """The adapter's own model file before every model file was a gankd one (format ``gankd-ganomaly-model``)."""
    if not (isinstance(ckpt, dict) and ckpt.get("format") == MODEL_FORMAT):
        return None
    meta = {k: v for k, v in ckpt.items()
            if k not in ("format", "version", "role", "widths", "in_channels", "latent_dim", "image_size", "state_dict")}
    return _current(ckpt, role=ckpt.get("role") or ("teacher" if ckpt.get("method") == "teacher" else "student"),
                    widths=ckpt["widths"], in_channels=ckpt.get("in_channels"), image_size=ckpt.get("image_size"),
                    metadata=meta, state_dict=ckpt["state_dict"])


@gankd.modelfile.MODEL_UPGRADERS.register("ganomaly.sweep-teacher-v0")
def upgrade_sweep_teacher(ckpt: Any) -> dict | None:
    """A sweep's teacher checkpoint before the one format (format ``gankd-reproduce-teacher``)."""
    if not (isinstance(ckpt, dict) and ckpt.get("format") == SWEEP_TEACHER_FORMAT):
        return None
    config = ckpt.get("config") or {}
    in_channels = dataset_spec(config["dataset"]).channels if config.get("dataset") in DATASETS else None
    meta = {"method": "teacher", "dataset": config.get("dataset"), "normal_class": config.get("normal_class"),
            "config": config, **{k: v for k, v in ckpt.items() if k in ("budget", "budget_spec", "record_json")}}
    return _current(ckpt, role="teacher", widths=config.get("teacher_widths") or TEACHER_WIDTHS,
                    in_channels=in_channels, image_size=config.get("image_size"), metadata=meta,
                    state_dict=ckpt["state_dict"])


@gankd.modelfile.MODEL_UPGRADERS.register("ganomaly.run-checkpoint")
def upgrade_run_checkpoint(ckpt: Any) -> dict | None:
    """A GANomaly run's engine checkpoint (``checkpoint.pt``): the GAN it trains, with the run's config."""
    if not (isinstance(ckpt, dict) and ckpt.get("format") == 1 and "schedule" in ckpt):
        return None
    config = (ckpt.get("metadata") or {}).get("config")
    if not isinstance(config, Mapping) or "dataset" not in config:
        raise CheckpointError("an engine checkpoint without a gankd-ganomaly run config: give the run's model.pt")
    cfg = RunConfig.from_dict(config)
    role = "student" if ckpt.get("student") is not None else "teacher"
    return _current(ckpt, role=role, widths=cfg.student_widths if role == "student" else cfg.teacher_widths,
                    in_channels=cfg.in_channels, image_size=cfg.image_size, state_dict=ckpt[role],
                    metadata={"method": cfg.method, "dataset": cfg.dataset, "normal_class": cfg.normal_class,
                              "config": config})


def ganomaly_header(header: Mapping[str, Any]) -> dict:
    """The adapter's view of a model file's header: ``role``, ``method``, ``dataset``, ``normal_class``,
    ``in_channels``, ``widths``, ``latent_dim``, ``image_size``, ``config`` (the run config) and what else the
    file's metadata holds (``threshold``, a sweep's ``budget``, ...). A ``gankd train`` file names its data in its
    run config (``run_config``)."""
    meta, args = header.get("metadata") or {}, header.get("family_args") or {}
    view = {"format": header.get("format"), "role": header.get("role"), "in_channels": args.get("in_channels"),
            "widths": list(header["width"]), "latent_dim": int(args.get("latent_dim", LATENT_DIM)),
            "image_size": int(args.get("image_size", IMAGE_SIZE)), "version": header.get("version")}
    if header.get("upgraded_from"):
        view["upgraded_from"] = header["upgraded_from"]
    if view["in_channels"] is not None:
        view["in_channels"] = int(view["in_channels"])
    if "method" in meta:  # written by save_model (or upgraded from an earlier adapter format)
        return {**view, "method": meta["method"], "dataset": meta.get("dataset"),
                "normal_class": meta.get("normal_class"), "config": meta.get("config") or {},
                **{k: v for k, v in meta.items() if k not in ("method", "dataset", "normal_class", "config")}}
    run_config = meta.get("config") or {}  # written by `gankd train` for the ganomaly family
    data_args = (run_config.get("data") or {}).get("args") or {}  # one_class_batches names its data
    config = {k: data_args[k] for k in ("dataset", "normal_class") if k in data_args}
    if data_args.get("root"):
        config["data_root"] = data_args["root"]
    return {**view, "method": header.get("role"), "config": config, "run_config": run_config}


def read_model_file(path: str | Path) -> tuple[dict, dict]:
    """``(header, state_dict)`` of a model file, in the adapter's view (:func:`ganomaly_header`).

    Reads what :func:`gankd.modelfile.read_model` reads (a :func:`save_model` or ``gankd train`` model file, and
    through this module's upgraders an earlier adapter model file, a sweep's teacher or a run's engine
    checkpoint), plus a bare state_dict (empty header). A run folder stands for its ``model.pt``. Loading never
    runs code (see :func:`gankd.load_checkpoint`).
    """
    path = Path(path)
    if path.is_dir():
        folder, path = path, path / "model.pt"
        if not path.exists():
            unfinished = (folder / "checkpoint.pt").exists()
            raise FileNotFoundError(f"{str(folder)!r} holds no model.pt" + (
                f": its run has not finished; pass {folder / 'checkpoint.pt'} for the last epoch's weights, or "
                "finish the run with --resume" if unfinished else ": give a run folder, a model.pt or a checkpoint"))
    ckpt = load_checkpoint(path)
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{str(path)!r} holds a {type(ckpt).__name__}, not a model")
    if ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        return {}, ckpt
    try:
        header, state_dict = gankd.modelfile.model_from_payload(ckpt, str(path))
    except CheckpointError as err:
        if "is not a gankd model file" not in str(err):
            raise
        raise CheckpointError(f"{str(path)!r} is not a gankd-ganomaly model: expected a model.pt (of gankd-ganomaly "
                              "or of `gankd train`), a run's checkpoint.pt, a sweep teacher or a state_dict; found "
                              f"keys {sorted(map(str, ckpt))[:10]}") from None
    return ganomaly_header(header), state_dict


def load_model(path: str | Path, *, widths: Sequence[int] | None = None, in_channels: int | None = None,
               what: str = "model", role: str | None = None, allow_nonfinite: bool = False,
               image_size: int | None = None) -> tuple[GAN, dict]:
    """Build a GANomaly GAN and load weights from ``path``; returns ``(gan, header)``.

    ``widths``/``in_channels`` say which architecture the caller expects (default: the file's header). A file
    for another architecture raises :class:`gankd.CheckpointError` naming the tensors that differ.
    ``role="teacher"`` (or ``"student"``) refuses a file whose header says it holds the other role (a bare
    state_dict has no header and is taken as it is). Weights with NaN/Inf (a diverged run) are refused too,
    since every score they give is NaN; ``allow_nonfinite=True`` loads them anyway (to inspect them).
    ``image_size``: the size the caller expects (default: the file's, 32 for files without one, a bare state_dict
    included); a file of another size is refused with :class:`gankd.CheckpointError` naming both.
    The header's ``image_size`` is always set (the size the GAN was built for).
    """
    header, state_dict = read_model_file(path)
    if role is not None and header.get("role") not in (None, role):
        raise CheckpointError(
            f"{what} {str(path)!r} is a {header['role']} model (method {header.get('method')!r}, widths "
            f"{header.get('widths')}), not a {role}"
            + ("; a teacher is the model.pt of a teacher run (`gankd-ganomaly teacher --out DIR`, then DIR/model.pt)"
               if role == "teacher" else ""))
    if not allow_nonfinite:
        bad = [k for k, v in state_dict.items()
               if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())]
        if bad:
            raise CheckpointError(
                f"{what} {str(path)!r} has NaN/Inf weights in {len(bad)} tensor(s) (the first: {bad[0]}): the run "
                "that wrote it diverged, so every score would be NaN; use an earlier checkpoint or train again "
                "(e.g. with a lower lr)")
    widths = tuple(widths) if widths is not None else (tuple(header["widths"]) if "widths" in header else None)
    in_channels = in_channels if in_channels is not None else header.get("in_channels")
    if widths is None or in_channels is None:
        raise CheckpointError(f"{str(path)!r} is a bare state_dict without a header: give the widths "
                              "(--widths c1,c2,c3) and the dataset it was trained on")
    file_size = int(header.get("image_size") or IMAGE_SIZE)
    if image_size is not None and header.get("image_size") is not None and int(image_size) != file_size:
        raise CheckpointError(f"{what} {str(path)!r} is a model for {file_size}x{file_size} images, not "
                              f"{image_size}x{image_size}: use image size {file_size} (--image-size {file_size}), "
                              f"or a model trained at {image_size}")
    size = int(image_size) if image_size is not None else file_size
    hooks = GanomalyHooks(in_channels=int(in_channels), image_size=size)
    gan = hooks.build_gan(widths)
    header = {**header, "image_size": size}
    try:
        load_weights(gan, state_dict, what=f"{what} ({path})")
    except CheckpointError as err:
        hint = ""
        if header.get("widths") is not None:
            hint = (f" (the file's header says: {header.get('role', 'model')} of method {header.get('method')!r}, "
                    f"widths {list(header['widths'])}, {header.get('in_channels')} channel(s), {file_size}x"
                    f"{file_size} images; expected: widths {list(widths)}, {in_channels} channel(s), {size}x{size})")
        raise CheckpointError(f"{err}{hint}") from None
    return gan, header


