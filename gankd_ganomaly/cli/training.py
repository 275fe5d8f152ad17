"""``teacher`` and ``distill``: a training run into a run folder (new, resumed or overwritten)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from gankd.run import set_threads
from gankd.runfolder import RunFolder

from ..experiment.config import RUN_FILES, RUN_FOLDERS
from .options import CONFIG_FLAGS, PROG, CLIError, config_data


def _default_out(cfg) -> Path:
    return Path("runs") / f"{cfg.method}-{cfg.dataset}-c{cfg.normal_class}-s{cfg.seed}"


def _given_keys(args: argparse.Namespace) -> dict[str, str]:
    """Config keys the command line sets explicitly (flags and --set), each with the option that set it."""
    given = {name: "--" + name.replace("_", "-") for name in CONFIG_FLAGS if hasattr(args, name)}
    if "teacher_checkpoint" in given:
        given["teacher_checkpoint"] = "--teacher"
    for item in getattr(args, "set", None) or []:
        key = item.partition("=")[0].strip().partition(".")[0]
        given[key] = f"--set {item}"
    return given


def _refuse_unused_run_options(args: argparse.Namespace, cfg) -> None:
    """Options that would be ignored by this run are refused rather than silently dropped."""
    given = _given_keys(args)
    if args.command == "teacher":
        unused = {"method": "a teacher run's method is 'teacher'", "student_widths": "a teacher run trains no student",
                  "teacher_checkpoint": "a teacher run distils from no teacher"}
    elif not cfg.schedule().needs_teacher:
        unused = {k: f"method {cfg.method!r} trains the student without a teacher"
                  for k in ("teacher_checkpoint", "teacher_widths")}
    else:
        unused = {}
    for key, why in unused.items():
        if key in given:
            raise CLIError(f"{given[key]} does not apply here: {why}; remove it")


def _teacher_file(path: str) -> Path:
    p = Path(path)
    return p / "model.pt" if p.is_dir() else p


def _check_teacher(cfg, header: dict, out: Path) -> None:
    """The teacher must be of this run's dataset and normal class, and outside the folder this run writes."""
    teacher = _teacher_file(cfg.teacher_checkpoint)
    if out.exists() and teacher.resolve().parent == out.resolve():
        raise CLIError(f"--teacher {cfg.teacher_checkpoint} is inside --out {out}: this run would overwrite its "
                       "own teacher; choose another --out")
    trained_on = (header.get("dataset"), header.get("normal_class"))
    if None not in trained_on and trained_on != (cfg.dataset, cfg.normal_class):
        raise CLIError(f"--teacher {cfg.teacher_checkpoint} was trained on {trained_on[0]} class {trained_on[1]}, "
                       f"but this run is {cfg.dataset} class {cfg.normal_class}: distil from a teacher of the same "
                       "dataset and normal class (or set --dataset/--normal-class to the teacher's)")


def _require_tensorboard() -> None:
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError as err:
        raise ImportError(f"TensorBoard logging needs the 'tensorboard' package, which is not installed ({err}); "
                          "install it with `pip install tensorboard`, or run without --tensorboard") from None


def _prepare_out(args: argparse.Namespace, method: str | None) -> tuple[Any, Path]:
    """Resolve the config (from DIR/config.yaml when resuming) and check the output folder; writes nothing."""
    from ..experiment import RunConfig, check_device, read_model_file

    forced = {"method": method} if method else None
    base = None
    if args.resume and args.out and not args.config:
        from ..experiment import read_config_file

        saved = Path(args.out) / "config.yaml"
        if saved.is_file():
            base = read_config_file(saved)
    data = config_data(args, base, forced)
    cfg = RunConfig.from_dict(data)
    if args.command == "distill" and cfg.method == "teacher":
        raise CLIError(f"distill trains a student, but the config's method is 'teacher': use `{PROG} teacher`, "
                       "or set --method")
    _refuse_unused_run_options(args, cfg)
    check_device(cfg.device)
    out = Path(args.out) if args.out else _default_out(cfg)
    RunFolder(out, RUN_FILES, folders=RUN_FOLDERS).check(resume=args.resume, overwrite=args.overwrite)
    if args.tensorboard:
        _require_tensorboard()
    if cfg.teacher_checkpoint and cfg.schedule().needs_teacher and (
            "teacher_widths" not in data or "image_size" not in data):
        # the teacher's widths and image size are those of its checkpoint unless the config says otherwise
        header, _ = read_model_file(cfg.teacher_checkpoint)
        if header.get("widths") and "teacher_widths" not in data:
            cfg = cfg.replace(teacher_widths=list(header["widths"]))
        if header.get("image_size") and "image_size" not in data:
            cfg = cfg.replace(image_size=int(header["image_size"]))
    if args.resume and not (out / "checkpoint.pt").exists():
        print(f"note: --resume but {out / 'checkpoint.pt'} does not exist; starting from the first epoch",
              file=sys.stderr)
    return cfg, out


def cmd_train(args: argparse.Namespace, method: str | None = None) -> int:
    """teacher / distill. Everything is checked (config, device, output folder, teacher, data) before the run
    folder is locked; --overwrite replaces the previous run only once the new one has its first checkpoint."""
    from ..data import validate_images
    from ..experiment import build_gan, load_model, load_run_data, make_hooks, run

    set_threads(args.threads)
    cfg, out = _prepare_out(args, method)
    cfg, data = load_run_data(cfg)  # a folder's channel count comes from its images
    validate_images(data.train, cfg.in_channels, what=f"{cfg.dataset} train images", image_size=cfg.image_size)
    if len(data.test):
        validate_images(data.test, cfg.in_channels, what=f"{cfg.dataset} test images", image_size=cfg.image_size)
    teacher = None
    if cfg.method != "teacher" and cfg.schedule().needs_teacher:
        if not cfg.teacher_checkpoint:
            raise CLIError(f"method {cfg.method!r} distils from a teacher: pass --teacher CKPT (train one with "
                           f"`{PROG} teacher --out DIR`, then use DIR/model.pt)")
        if args.resume and (out / "checkpoint.pt").exists():  # the teacher's weights come from the checkpoint
            teacher = build_gan(make_hooks(cfg), cfg.teacher_widths, cfg.seed)
        else:
            teacher, header = load_model(cfg.teacher_checkpoint, widths=cfg.teacher_widths,
                                         in_channels=cfg.in_channels, what="teacher", role="teacher",
                                         image_size=cfg.image_size)
            _check_teacher(cfg, header, out)
    if not args.quiet:
        print(f"data: {data.source}; train {tuple(data.train.shape)}, test {tuple(data.test.shape)}; "
              f"output: {out}", file=sys.stderr)
    # run() locks the folder and checks it again (another run may have finished there); with --overwrite the old
    # run stays intact until the new one has written its first checkpoint
    record, _ = run(cfg, data, teacher, verbose=not args.quiet, out_dir=out, resume=args.resume,
                    overwrite=args.overwrite, tensorboard=args.tensorboard)
    measured = (f"AUROC (last epoch) {record['auroc_last']:.4f}" if record["auroc_last"] is not None
                else f"AUROC not measured ({record['auroc_skipped']})")
    thr = record["threshold"]
    print(f"{cfg.method} on {cfg.dataset} class {cfg.normal_class} ({data.class_name}): {measured}; threshold "
          f"{thr['value']:.6g} (target FPR {thr['target_fpr']:g}, {thr['calibration_images']} {thr['calibrated_on']}),"
          f" {record['wall_s']:.1f}s; wrote {out}/")
    return 0


def cmd_teacher(args: argparse.Namespace) -> int:
    return cmd_train(args, method="teacher")


def cmd_distill(args: argparse.Namespace) -> int:
    return cmd_train(args)
