"""Training one GANomaly run (:func:`run`): the one place that builds and runs a :class:`gankd.DistillationEngine`
for the adapter. With ``out_dir`` it writes ``config.yaml``, ``checkpoint.pt`` (every epoch), ``history.json``,
``metrics.csv``, ``record.json`` and ``model.pt``, and with ``resume=True`` continues from ``checkpoint.pt``.
"""
from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any, Sequence

import torch

import gankd
from gankd import GAN, DistillationEngine
from gankd.batches import ShuffledBatches
from gankd.callbacks import CSVLogger, TensorBoardLogger
from gankd.run import check_fits, fit_in_folder
from gankd.runfolder import RunFolder

from ..data import FOLDER, OneClassData, load_one_class, validate_images
from ..evaluation import anomaly_scores, calibrate_threshold, calibration_split, evaluate_auroc
from ..evaluation.flops import count_generator
from ..hooks import RECIPES, GanomalyHooks
from .config import RUN_FILES, RUN_FOLDERS, ConfigError, RunConfig, channels_last_networks, check_device, config_differences
from .model_file import save_model


def make_hooks(cfg: RunConfig) -> GanomalyHooks:
    """The GANomaly hooks for the config's dataset (channel count), image size and loss weights."""
    return GanomalyHooks(in_channels=cfg.in_channels, weights=cfg.loss_weights, image_size=cfg.image_size)


def load_run_data(cfg: RunConfig) -> tuple[RunConfig, OneClassData]:
    """``(cfg, data)``: the config's dataset loaded, and the config with a folder's channel count resolved
    (``channels`` set from the images when it was None). Images are resized to ``cfg.image_size``."""
    data = load_one_class(cfg.dataset, cfg.normal_class, root=cfg.data_root, download=cfg.download,
                          channels=cfg.channels if cfg.dataset == FOLDER else None, image_size=cfg.image_size)
    if cfg.dataset == FOLDER and cfg.channels is None:
        cfg = cfg.replace(channels=data.channels)
    return cfg, data


def auroc_skip_reason(data: OneClassData) -> str | None:
    """Why AUROC cannot be measured on ``data``'s test split (no test images, or only one label), else None."""
    if len(data.test) == 0:
        return "no test images (a folder dataset without ROOT/test/good and ROOT/test/<defect> images)"
    n_novel = int(data.test_labels.sum())
    if n_novel == 0:
        return "the test split has no novel images (add ROOT/test/<defect>/ folders)"
    if n_novel == len(data.test):
        return "the test split has no normal images (add ROOT/test/good/)"
    return None


def build_gan(hooks: GanomalyHooks, widths: Sequence[int], seed: int) -> GAN:
    """Networks initialised from ``seed`` so teacher and student inits are reproducible on their own."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return hooks.build_gan(widths)


# --- the run ----------------------------------------------------------------------------------------------------


def run(cfg: RunConfig, data: OneClassData, teacher: GAN | None = None, *, verbose: bool = True,
        log_prefix: str = "", callbacks: Sequence[gankd.Callback] = (), out_dir: str | Path | None = None,
        resume: bool = False, overwrite: bool = False, tensorboard: bool = False,
        schedule: gankd.Schedule | None = None) -> tuple[dict, GAN]:
    """Execute ``cfg.method`` on ``data``; returns (result record, the trained GAN).

    For a student method, ``teacher`` is a trained teacher; it is deep-copied, so stages
    that fine-tune the teacher (KDGAN-3/4) never change the caller's model. AUROC is
    measured on the test split every ``eval_every`` epochs and at each stage's end; the
    reported ``auroc_last`` is the last epoch's, never the best. Global RNGs are seeded
    from ``cfg.seed``, so the same config gives the same result.

    With ``out_dir``: writes ``config.yaml`` (the resolved config), then after each epoch
    ``history.json``, ``metrics.csv`` and ``checkpoint.pt`` (the engine's full state, atomically),
    and at the end ``model.pt`` (:func:`save_model`) and ``record.json``. ``resume=True``
    continues from ``out_dir/checkpoint.pt`` when it exists (refusing, with :class:`gankd.runfolder.RunFolderError`,
    a checkpoint whose config differs from ``cfg``), ending with the weights and metrics of an
    uninterrupted run. ``overwrite=True`` replaces the run ``out_dir`` holds, which stays intact until the new
    run's first checkpoint. ``tensorboard=True`` also logs scalars to ``out_dir/tensorboard``. The training loop
    and the folder's rules are :func:`gankd.run.fit_in_folder`'s, as for ``gankd train``.
    While it runs, ``out_dir`` is locked (:class:`gankd.runfolder.RunFolder`): a second run on the same folder raises
    :class:`gankd.FolderLockedError` naming this one; temporary files a killed run left there are removed.
    ``callbacks`` run after the built-in ones. ``schedule`` replaces the method's schedule (a study of
    custom structures or distillation losses); the record then names the recipe ``"custom"``.
    """
    check_device(cfg.device)
    if cfg.dataset == FOLDER and cfg.channels is None:
        cfg = cfg.replace(channels=data.channels)  # a folder's channel count is its images'
    kwargs = dict(verbose=verbose, log_prefix=log_prefix, callbacks=callbacks, resume=resume, overwrite=overwrite,
                  tensorboard=tensorboard, schedule=schedule)
    if out_dir is None:
        if resume or overwrite or tensorboard:
            raise ValueError("resume, overwrite and tensorboard need out_dir (the run folder they act on)")
        return _run(cfg, data, teacher, None, **kwargs)
    with RunFolder(out_dir, RUN_FILES, folders=RUN_FOLDERS) as folder:  # locked; what a killed run left half-written is removed
        folder.check(resume=resume, overwrite=overwrite)
        return _run(cfg, data, teacher, folder, **kwargs)


def _run(cfg: RunConfig, data: OneClassData, teacher: GAN | None, folder: RunFolder | None, *,
         verbose: bool = True, log_prefix: str = "", callbacks: Sequence[gankd.Callback] = (),
         resume: bool = False, overwrite: bool = False, tensorboard: bool = False,
         schedule: gankd.Schedule | None = None) -> tuple[dict, GAN]:
    hooks = make_hooks(cfg)
    recipe = cfg.recipe if schedule is None else "custom"
    schedule = schedule if schedule is not None else cfg.schedule()
    is_teacher_run = cfg.method == "teacher"
    validate_images(data.train, cfg.in_channels, what=f"{cfg.dataset} train images", image_size=cfg.image_size)
    skip_auroc = auroc_skip_reason(data)
    if len(data.test):
        validate_images(data.test, cfg.in_channels, what=f"{cfg.dataset} test images", image_size=cfg.image_size)
    if schedule.needs_teacher and not is_teacher_run and teacher is None:
        raise ValueError(f"method {cfg.method!r} distils from a teacher: pass a trained teacher GAN")
    if schedule.needs_teacher and not is_teacher_run:
        teacher_size = getattr(teacher.generator, "image_size", None)
        if teacher_size != cfg.image_size:
            raise ConfigError(f"the teacher takes {teacher_size}x{teacher_size} images but this run's image_size is "
                              f"{cfg.image_size}: distil at the teacher's size (image_size={teacher_size}, "
                              f"--image-size {teacher_size}) or train a teacher at {cfg.image_size}")

    # the threshold's calibration images: a held-out share of the normal train images (deterministic in the seed),
    # or, with a share of 0 (the built-in datasets' default), the training images themselves
    share = cfg.resolved_calibration_share
    train_idx, calib_idx = calibration_split(len(data.train), share, cfg.seed)
    train_images = data.train[train_idx] if len(calib_idx) else data.train
    calib_images = data.train[calib_idx] if len(calib_idx) else data.train

    # the networks against the data, and the memory they need, on the meta device before anything is allocated
    networks = ({"teacher": (cfg.teacher_widths, "teacher_widths", True)} if is_teacher_run else
                {"student": (cfg.student_widths, "student_widths", True)})
    try:
        check_fits(hooks, networks, train_images[:cfg.batch_size], torch.device(cfg.device),  # checked in run()
                   "--teacher-widths, --student-widths or --batch-size")
    except ValueError as err:
        raise ConfigError(str(err)) from None
    gankd.seed_everything(cfg.seed)
    if is_teacher_run:
        trained = build_gan(hooks, cfg.teacher_widths, cfg.seed)
        engine_teacher, engine_student = trained, None
    else:
        trained = build_gan(hooks, cfg.student_widths, cfg.seed + 1)
        engine_teacher = copy.deepcopy(teacher) if schedule.needs_teacher else None
        engine_student = trained

    def metrics(engine: DistillationEngine) -> dict[str, float]:
        return {"auroc": evaluate_auroc(hooks, trained, data.test, data.test_labels,
                                        batch_size=cfg.eval_batch_size, bn_mode=cfg.bn_mode)}

    def writers(out: Path) -> list[gankd.Callback]:
        return [CSVLogger(out / "metrics.csv"), *([TensorBoardLogger(out / "tensorboard")] if tensorboard else [])]

    widths = {who: gan.generator.widths for who, gan in (("teacher", engine_teacher), ("student", engine_student))
              if gan is not None}  # the networks' own widths: a teacher passed in may differ from cfg.teacher_widths
    batches = ShuffledBatches(train_images, cfg.batch_size, seed=cfg.seed)
    start = time.perf_counter()
    _, history, ckpt = fit_in_folder(
        folder, hooks, engine_teacher, engine_student, schedule, batches, config=cfg.to_dict(), resume=resume,
        overwrite=overwrite, differences=config_differences, metric_fn=None if skip_auroc else metrics,
        evaluate_every=cfg.eval_every, extra_writers=writers, callbacks=callbacks, verbose=verbose,
        log_prefix=log_prefix, device=cfg.device, producer="gankd_ganomaly.experiment.run",
        engine_options={"channels_last": channels_last_networks(cfg, widths), "compile": cfg.compile})
    wall_s = time.perf_counter() - start
    counts = count_generator(cfg.in_channels, cfg.trained_widths, image_size=cfg.image_size)
    calib_scores = anomaly_scores(hooks, trained, calib_images, batch_size=cfg.eval_batch_size, bn_mode=cfg.bn_mode)
    threshold = calibrate_threshold(calib_scores, cfg.target_fpr)
    calibration = {
        "value": threshold, "target_fpr": cfg.target_fpr, "bn_mode": cfg.bn_mode,
        "calibration_images": len(calib_images),
        "calibrated_on": "held-out train images" if len(calib_idx) else "training images (no held-out share)",
        "fpr_on_calibration": float((calib_scores.double() > threshold).double().mean()),
        "rule": "novel if score > value",
    }
    if skip_auroc and verbose:
        print(f"{log_prefix}note: AUROC not measured: {skip_auroc}", flush=True)
    record = {
        "dataset": cfg.dataset, "normal_class": cfg.normal_class, "class_name": data.class_name,
        "method": cfg.method, "recipe": recipe,
        "recipe_version": RECIPES[recipe].version if recipe in RECIPES else None, "seed": cfg.seed, "schedule": schedule.to_dict(),
        "batch_size": cfg.batch_size, "lr": cfg.lr, "bn_mode_at_test": cfg.bn_mode,
        "auroc_last": history[-1]["metrics"].get("auroc"),
        "auroc_per_epoch": [h["metrics"].get("auroc") for h in history],
        "auroc_skipped": skip_auroc,
        "threshold": calibration, "train_images": len(train_images),
        "image_size": cfg.image_size, "params": counts["params"], "flops": counts["flops"], "wall_s": wall_s,
        "resumed_from_epoch": ckpt["global_epoch"] if ckpt is not None else None,
        "discriminator_resets": hooks.discriminator_resets, "data_source": data.source,
        "version": gankd.__version__, "config": cfg.to_dict(), "history": history,
    }
    if folder is not None:
        out = folder.path  # after an --overwrite swap too
        save_json(out / "history.json", history)  # complete even when a resumed run had no epoch left
        CSVLogger(out / "metrics.csv").write(history)
        save_model(out / "model.pt", trained, cfg, threshold=calibration)
        save_json(out / "record.json", record)
    return record, trained


def save_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    gankd.atomic_write_text(path, json.dumps(obj, indent=1) + "\n")
