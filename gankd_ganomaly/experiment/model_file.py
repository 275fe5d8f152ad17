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


def read_model_file(path: str | Path) -> tuple[dict, dict]:
    """``(header, state_dict)`` of a model file.

    Accepts a :func:`save_model` file, a ``gankd train`` model file (:mod:`gankd.modelfile`), a sweep's
    teacher checkpoint, an engine checkpoint (``checkpoint.pt`` of a run: the trained GAN is taken, with the
    run's config as header) or a bare state_dict (empty header). A run folder stands
    for its ``model.pt``. Loading never runs code (see :func:`gankd.load_checkpoint`).
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
    if ckpt.get("format") == MODEL_FORMAT:
        header = {k: v for k, v in ckpt.items() if k != "state_dict"}
        return header, ckpt["state_dict"]
    if ckpt.get("format") == 1 and "schedule" in ckpt:
        config = (ckpt.get("metadata") or {}).get("config")
        if config is None:
            raise CheckpointError(f"{str(path)!r} is an engine checkpoint without a gankd-ganomaly run config")
        cfg = RunConfig.from_dict(config)
        role = "student" if ckpt.get("student") is not None else "teacher"
        header = {"format": "engine-checkpoint", "method": cfg.method, "role": role, "dataset": cfg.dataset,
                  "normal_class": cfg.normal_class, "in_channels": cfg.in_channels, "latent_dim": LATENT_DIM,
                  "image_size": cfg.image_size,
                  "widths": list(cfg.student_widths if role == "student" else cfg.teacher_widths),
                  "config": config, "version": ckpt.get("version")}
        return header, ckpt[role]
    if ckpt.get("format") == GANKD_MODEL_FORMAT and "method" in (ckpt.get("metadata") or {}):  # save_model's
        meta, args = ckpt["metadata"], ckpt.get("family_args") or {}
        header = {"format": GANKD_MODEL_FORMAT, "role": ckpt.get("role"), "method": meta["method"],
                  "dataset": meta.get("dataset"), "normal_class": meta.get("normal_class"),
                  "in_channels": int(args.get("in_channels", 3)), "widths": list(ckpt["width"]),
                  "latent_dim": int(args.get("latent_dim", LATENT_DIM)), "config": meta.get("config") or {},
                  "image_size": int(args.get("image_size", IMAGE_SIZE)),
                  "version": ckpt.get("version"),
                  **{k: v for k, v in meta.items() if k not in ("method", "dataset", "normal_class", "config")}}
        return header, ckpt["state_dict"]
    if ckpt.get("format") == GANKD_MODEL_FORMAT:  # written by `gankd train` for the ganomaly family
        args = ckpt.get("family_args") or {}
        run_config = (ckpt.get("metadata") or {}).get("config") or {}
        data_args = (run_config.get("data") or {}).get("args") or {}  # one_class_batches names its data
        config = {k: data_args[k] for k in ("dataset", "normal_class") if k in data_args}
        if data_args.get("root"):
            config["data_root"] = data_args["root"]
        header = {"format": GANKD_MODEL_FORMAT, "role": ckpt.get("role"), "method": ckpt.get("role"),
                  "in_channels": int(args.get("in_channels", 3)), "widths": list(ckpt["width"]),
                  "latent_dim": int(args.get("latent_dim", LATENT_DIM)), "config": config,
                  "image_size": int(args.get("image_size", IMAGE_SIZE)), "run_config": run_config,
                  "version": ckpt.get("version")}
        return header, ckpt["state_dict"]
    if ckpt.get("format") == SWEEP_TEACHER_FORMAT:  # a sweep's teacher (results/*/teachers/*.pt)
        config = ckpt.get("config") or {}
        header = {"format": ckpt["format"], "role": "teacher", "method": "teacher",
                  "dataset": config.get("dataset"), "normal_class": config.get("normal_class"),
                  "in_channels": (dataset_spec(config["dataset"]).channels if config.get("dataset") in DATASETS
                                  else None),
                  "widths": list(config.get("teacher_widths") or TEACHER_WIDTHS), "latent_dim": LATENT_DIM,
                  "image_size": int(config.get("image_size") or IMAGE_SIZE),
                  "config": config, "version": ckpt.get("version")}
        return header, ckpt["state_dict"]
    if ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        return {}, ckpt
    raise CheckpointError(f"{str(path)!r} is not a gankd-ganomaly model: expected a model.pt (of gankd-ganomaly or "
                          "of `gankd train`), a run's checkpoint.pt, a sweep teacher or a state_dict; found keys "
                          f"{sorted(map(str, ckpt))[:10]}")


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


