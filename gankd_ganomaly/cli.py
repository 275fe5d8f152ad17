"""``gankd-ganomaly`` / ``python -m gankd_ganomaly``: train, distil, evaluate, score, count FLOPs, run the demo.

Every run is described by a config (``gankd_ganomaly.experiment.RunConfig``): defaults, then
``--config FILE`` (YAML or JSON), then option flags, then ``--set key=value`` overrides, in that order.
Training runs write into ``--out DIR``: ``config.yaml`` (the resolved config), ``checkpoint.pt`` (every
epoch), ``history.json`` and ``metrics.csv`` (per epoch), ``record.json`` and ``model.pt`` (at the end).
A killed run continues with the same command plus ``--resume``.

Errors: a failure the user can cause or meet (bad input or file, a missing device or package, a file-system
error) prints one or two lines, ``gankd-ganomaly COMMAND: error: TYPE: message``, exit status 1 (130 after
Ctrl-C, 143 after SIGTERM, 129 after SIGHUP); ``--debug`` or ``GANKD_DEBUG=1`` shows the traceback instead.
Internal errors always show their traceback. A run folder is locked while a run uses it.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Sequence

import torch

from .export import LAYOUTS
from .flops import compression_report

DATASETS_WITH_STUDENTS = ("cifar10", "mnist", "fmnist")
PROG = "gankd-ganomaly"


class CLIError(Exception):
    """A problem with the command line itself (conflicting options, an occupied output folder)."""


def _fmt_count(n: float) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}K"


def _set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer (1 or more), got {text!r}")
    return value


def _widths_arg(text: str) -> list[int]:
    try:
        widths = [int(w) for w in text.replace("-", ",").split(",") if w.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three integers like 4,8,16; got {text!r}") from None
    if len(widths) != 3:
        raise argparse.ArgumentTypeError(f"expected three integers like 4,8,16; got {text!r}")
    return widths


# --- config resolution ------------------------------------------------------------------------------------------

# flag dest -> RunConfig field; flags default to SUPPRESS so only the ones given override the config.
CONFIG_FLAGS = ("dataset", "normal_class", "method", "epochs", "batch_size", "lr", "beta1", "seed", "bn_mode",
                "eval_every", "eval_batch_size", "teacher_widths", "student_widths", "data_root", "download",
                "device", "teacher_checkpoint", "channels_last", "compile", "channels", "calibration_share",
                "target_fpr")


def recipe_method(recipe: str) -> str:
    """The run method of a recipe: ``paper`` is the P-KDGAN-II-23 preset, other recipes are methods."""
    return "P-KDGAN-II-23" if recipe == "paper" else recipe


def config_data(args: argparse.Namespace, base: dict | None = None, forced: dict | None = None) -> dict:
    """The config as a dict: ``base`` (e.g. a saved config), ``--config``, the flags given, ``--set``, ``forced``.

    Only what the user (or ``base``) gave is in it; :class:`RunConfig` fills in the defaults.
    """
    from .experiment import apply_overrides, read_config_file

    data: dict[str, Any] = dict(base or {})
    if getattr(args, "config", None):
        data.update(read_config_file(args.config))
    for name in CONFIG_FLAGS:
        if hasattr(args, name):
            data[name] = getattr(args, name)
    if getattr(args, "recipe", None):
        if hasattr(args, "method"):
            raise CLIError("give --method or --recipe, not both (a recipe names its own schedule)")
        data["method"] = recipe_method(args.recipe)
    data = apply_overrides(data, getattr(args, "set", None) or [])
    data.update(forced or {})
    return data


def resolve_config(args: argparse.Namespace, base: dict | None = None, forced: dict | None = None):
    """The validated :class:`~gankd_ganomaly.experiment.RunConfig` of :func:`config_data`."""
    from .experiment import RunConfig

    return RunConfig.from_dict(config_data(args, base, forced))


def _add_run_options(p: argparse.ArgumentParser, *, distill: bool) -> None:
    from .data import ALL_DATASETS as DATASETS
    from .evaluation import BN_MODES
    from .experiment import METHODS, RunConfig

    d = RunConfig()
    S = argparse.SUPPRESS
    g = p.add_argument_group("run config (each flag overrides the same field of --config)")
    g.add_argument("--config", metavar="FILE", help="a RunConfig as YAML (.yaml/.yml) or JSON (.json); "
                   "fields it omits keep their defaults")
    g.add_argument("--dataset", choices=DATASETS, default=S,
                   help=f"dataset (default: {d.dataset}); 'folder': your own images under --data-root ROOT "
                        "(ROOT/train/good, ROOT/test/good, ROOT/test/<defect>; see docs/own_images.md)")
    g.add_argument("--normal-class", dest="normal_class", type=int, metavar="K", default=S,
                   help=f"class used as normal; every other class is a novelty (default: {d.normal_class}; a "
                        "folder dataset has one, 0)")
    if distill:
        g.add_argument("--method", choices=[m for m in METHODS if m != "teacher"], default=S,
                       help=f"structure or schedule that trains the student: student-alone (no teacher), KDGAN-1..4, "
                            f"P-KDGAN-I, P-KDGAN-II-23, P-KDGAN-II-24 (default: {d.method})")
        from .hooks import RECIPES

        g.add_argument("--recipe", choices=list(RECIPES), default=None,
                       help="a named distillation recipe instead of --method: " + "; ".join(
                           f"{name}: {r.description}" for name, r in RECIPES.items()))
        g.add_argument("--teacher", dest="teacher_checkpoint", metavar="CKPT", default=S,
                       help="trained teacher: model.pt of a teacher run, or that run's --out folder "
                            "(needed by every method but student-alone)")
    g.add_argument("--epochs", type=int, metavar="M", default=S, help=f"epochs per stage, the paper's M (default: {d.epochs})")
    g.add_argument("--batch-size", dest="batch_size", type=int, metavar="N", default=S,
                   help=f"training batch size (default: {d.batch_size})")
    g.add_argument("--lr", type=float, default=S, help=f"Adam learning rate (default: {d.lr})")
    g.add_argument("--beta1", type=float, metavar="B", default=S, help=f"Adam beta1 (default: {d.beta1})")
    g.add_argument("--seed", type=int, metavar="S", default=S, help=f"seeds initialisation, batch order and RNGs (default: {d.seed})")
    g.add_argument("--bn-mode", dest="bn_mode", choices=BN_MODES, default=S,
                   help="batch norm when scoring: eval (running statistics) or batch (per-batch statistics, as the "
                        f"GANomaly code) (default: {d.bn_mode})")
    g.add_argument("--eval-every", dest="eval_every", type=int, metavar="N", default=S,
                   help=f"measure test AUROC every N epochs and at each stage end (default: {d.eval_every})")
    g.add_argument("--eval-batch-size", dest="eval_batch_size", type=int, metavar="N", default=S,
                   help=f"batch size when scoring (default: {d.eval_batch_size})")
    g.add_argument("--teacher-widths", dest="teacher_widths", type=_widths_arg, metavar="C1,C2,C3", default=S,
                   help="teacher channel widths (default: " + ("those in the --teacher checkpoint's header, else "
                                                               if distill else "") +
                        f"{','.join(map(str, d.teacher_widths))})")
    g.add_argument("--student-widths", dest="student_widths", type=_widths_arg, metavar="C1,C2,C3", default=S,
                   help="student channel widths (default: the dataset's preset, 2,4,8 for digits/MNIST)")
    _add_data_options(g)
    g.add_argument("--channels", type=int, choices=(1, 3), default=S,
                   help="folder datasets: convert every image to 1 (gray) or 3 (colour) channels (default: read "
                        "from the images; a folder mixing gray and colour images needs it)")
    g.add_argument("--calibration-share", dest="calibration_share", type=float, metavar="F", default=S,
                   help="share of the normal train images held out (not trained on) to calibrate the decision "
                        "threshold (default: 0.1 for folder datasets; 0 for the built-in ones, whose threshold is "
                        "then calibrated on the training images)")
    g.add_argument("--target-fpr", dest="target_fpr", type=float, metavar="F", default=S,
                   help=f"false-positive rate the threshold aims at on normal images (default: {d.target_fpr})")
    g.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                   help="override any config field, value as YAML; repeatable, applied last "
                        "(e.g. --set teacher_widths=[4,8,16] --set loss_weights.w_con=5)")
    o = p.add_argument_group("outputs and execution")
    o.add_argument("--out", metavar="DIR", help="output folder (default: runs/<method>-<dataset>-c<class>-s<seed>); "
                   "gets config.yaml, checkpoint.pt, history.json, metrics.csv, record.json, model.pt")
    o.add_argument("--resume", action="store_true",
                   help="continue from DIR/checkpoint.pt (config from DIR/config.yaml unless --config is given); "
                        "refused if the config differs from the checkpoint's")
    o.add_argument("--overwrite", action="store_true", help="start afresh in an output folder that holds a run")
    o.add_argument("--tensorboard", action="store_true",
                   help="also log scalars to DIR/tensorboard (needs the tensorboard package)")
    o.add_argument("--channels-last", dest="channels_last", choices=("auto", True, False), default=S,
                   type=_on_off_auto, metavar="{auto,on,off}",
                   help="train convolutions channels-last: 'auto' (default) for networks whose widths are all >= 8")
    o.add_argument("--compile", action="store_const", const=True, default=S,
                   help="torch.compile the networks (30-50 s of compiling first; no gain measured on CPU, see benchmarks/README.md)")
    _add_exec_options(o)


def _on_off_auto(value: str) -> bool | str:
    choices = {"on": True, "off": False, "auto": "auto"}
    if value not in choices:
        raise argparse.ArgumentTypeError(f"expected auto, on or off, got {value!r}")
    return choices[value]


def _add_data_options(g: argparse._ArgumentGroup) -> None:
    S = argparse.SUPPRESS
    g.add_argument("--data-root", dest="data_root", metavar="DIR", default=S,
                   help="dataset root (default: $GANKD_DATA_ROOT, else ~/.cache/gankd/data); for --dataset "
                        "folder, the folder holding train/good (and test/...)")
    g.add_argument("--download", action="store_const", const=True, default=S,
                   help="download the dataset with torchvision if its files are missing")
    g.add_argument("--device", default=S, help="torch device, e.g. cpu or cuda (default: cpu)")


def _add_exec_options(o: argparse._ArgumentGroup, quiet: bool = True) -> None:
    o.add_argument("--threads", type=_positive_int, metavar="N", default=None,
                   help="torch intra-op threads (default: torch's choice); keep it fixed for bitwise-equal resumes")
    if quiet:
        o.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")


# --- teacher / distill --------------------------------------------------------------------------------------------


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


def _check_run_folder(args: argparse.Namespace, out: Path) -> None:
    """Refuse an output folder this run must not write to; reads only (called again under the folder's lock)."""
    if args.resume and args.overwrite:
        raise CLIError("--resume and --overwrite contradict each other: pick one")
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out} is a file, not a folder: give a folder for the run's files (it is created if "
                       "missing)")
    held = [name for name in ("checkpoint.pt", "model.pt", "record.json") if (out / name).exists()]
    if held and not args.resume and not args.overwrite:
        raise CLIError(f"{out} already holds a run ({held[0]}): pass --resume to continue it, --overwrite "
                       "to start again there, or choose another --out")
    if args.resume and not (out / "checkpoint.pt").exists() and held:
        raise CLIError(f"--resume: {out} holds a finished run ({held[0]}) but no checkpoint.pt to continue from: "
                       "pass --overwrite to start again there, or choose another --out")


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
    from .experiment import RunConfig, check_device, read_model_file

    forced = {"method": method} if method else None
    base = None
    if args.resume and args.out and not args.config:
        from .experiment import read_config_file

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
    _check_run_folder(args, out)
    if args.tensorboard:
        _require_tensorboard()
    if cfg.teacher_checkpoint and "teacher_widths" not in data and cfg.schedule().needs_teacher:
        # the teacher's widths are those of its checkpoint unless the config says otherwise
        header, _ = read_model_file(cfg.teacher_checkpoint)
        if header.get("widths"):
            cfg = cfg.replace(teacher_widths=list(header["widths"]))
    if args.resume and not (out / "checkpoint.pt").exists():
        print(f"note: --resume but {out / 'checkpoint.pt'} does not exist; starting from the first epoch",
              file=sys.stderr)
    return cfg, out


def cmd_train(args: argparse.Namespace, method: str | None = None) -> int:
    """teacher / distill. Everything is checked (config, device, output folder, teacher, data) before the run
    folder is locked; only then does --overwrite delete the previous run's files."""
    from gankd import FolderLock

    from .data import validate_images
    from .experiment import RUN_FILES, build_gan, load_model, load_run_data, make_hooks, run

    _set_threads(args.threads)
    cfg, out = _prepare_out(args, method)
    cfg, data = load_run_data(cfg)  # a folder's channel count comes from its images
    validate_images(data.train, cfg.in_channels, what=f"{cfg.dataset} train images")
    if len(data.test):
        validate_images(data.test, cfg.in_channels, what=f"{cfg.dataset} test images")
    teacher = None
    if cfg.method != "teacher" and cfg.schedule().needs_teacher:
        if not cfg.teacher_checkpoint:
            raise CLIError(f"method {cfg.method!r} distils from a teacher: pass --teacher CKPT (train one with "
                           f"`{PROG} teacher --out DIR`, then use DIR/model.pt)")
        if args.resume and (out / "checkpoint.pt").exists():  # the teacher's weights come from the checkpoint
            teacher = build_gan(make_hooks(cfg), cfg.teacher_widths, cfg.seed)
        else:
            teacher, header = load_model(cfg.teacher_checkpoint, widths=cfg.teacher_widths,
                                         in_channels=cfg.in_channels, what="teacher", role="teacher")
            _check_teacher(cfg, header, out)
    with FolderLock(out):  # from here on a second run on this folder is refused, naming this one
        _check_run_folder(args, out)  # again: another run may have finished here while this one loaded its data
        if args.overwrite:
            for name in RUN_FILES:
                (out / name).unlink(missing_ok=True)
            shutil.rmtree(out / "tensorboard", ignore_errors=True)
        if not args.quiet:
            print(f"data: {data.source}; train {tuple(data.train.shape)}, test {tuple(data.test.shape)}; "
                  f"output: {out}", file=sys.stderr)
        record, _ = run(cfg, data, teacher, verbose=not args.quiet, out_dir=out, resume=args.resume,
                        tensorboard=args.tensorboard)
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


# --- evaluate / score -------------------------------------------------------------------------------------------


# what evaluate and score use of a config; the other fields describe training and are refused if changed
SCORING_FIELDS = ("dataset", "normal_class", "bn_mode", "eval_batch_size", "data_root", "download", "device")


def _refuse_unused_scoring_fields(args: argparse.Namespace, base: dict, cfg) -> None:
    """--set of a training field is refused; so is a --config whose training fields differ from the model's
    (a run's own config.yaml passes: its fields are the model's)."""
    from .experiment import RunConfig, read_config_file

    for item in args.set or []:
        key = item.partition("=")[0].strip().partition(".")[0]
        if key not in SCORING_FIELDS:
            raise CLIError(f"--set {item} does not apply to {args.command}: it only reads "
                           f"{', '.join(SCORING_FIELDS)}; {key} is fixed by the trained model")
    if args.config:
        saved, now = RunConfig.from_dict(base).to_dict(), cfg.to_dict()
        changed = [k for k in read_config_file(args.config)
                   if k not in SCORING_FIELDS and k != "teacher_checkpoint" and saved.get(k) != now.get(k)]
        if changed:
            raise CLIError(f"--config {args.config} sets {', '.join(changed)}, which {args.command} does not use "
                           f"(the trained model fixes them; it reads only {', '.join(SCORING_FIELDS)}): remove them")


def _check_output_file(path: str | None, option: str, example: str) -> None:
    """Refuse an output file path that is a folder, or whose parent is a file, before any work is done."""
    if path in (None, "-"):
        return
    p = Path(path)
    if p.is_dir():
        raise CLIError(f"{option} {path} is a folder: give a file path, e.g. {p / example}")
    parent = next((q for q in p.parents if q.exists()), None)
    if parent is not None and not parent.is_dir():
        raise CLIError(f"{option} {path}: {parent} is a file, not a folder")


def _load_for_scoring(args: argparse.Namespace):
    """(config, gan, hooks, header) for evaluate/score: the checkpoint's config, then --config/flags/--set."""
    from .experiment import check_device, load_model, read_model_file
    from .hooks import GanomalyHooks

    header, _ = read_model_file(args.checkpoint)
    base = dict(header.get("config") or {})
    base.pop("teacher_checkpoint", None)
    cfg = resolve_config(args, base)
    _refuse_unused_scoring_fields(args, base, cfg)
    if args.widths and header.get("widths") and list(args.widths) != list(header["widths"]):
        raise CLIError(f"--widths {','.join(map(str, args.widths))} does not apply: {args.checkpoint} has a header "
                       f"that gives its widths ({','.join(map(str, header['widths']))}); --widths is for a bare "
                       "state_dict only")
    check_device(cfg.device)
    widths = args.widths or header.get("widths")
    in_channels = header.get("in_channels", cfg.in_channels)
    gan, header = load_model(args.checkpoint, widths=widths, in_channels=in_channels)
    gan = gan.to(cfg.device)
    return cfg, gan, GanomalyHooks(in_channels=in_channels), header


def _check_channels(cfg, in_channels: int, checkpoint: str) -> None:
    from .data import InvalidImagesError

    if cfg.in_channels != in_channels:
        raise InvalidImagesError(f"checkpoint {checkpoint!r} takes {in_channels}-channel images but dataset "
                                 f"{cfg.dataset!r} has {cfg.in_channels}-channel images")


def _threshold(args: argparse.Namespace, header: dict) -> tuple[float | None, str]:
    """The decision threshold (``--threshold``, else the model file's calibrated one) and where it comes from."""
    if getattr(args, "threshold", None) is not None:
        return float(args.threshold), "--threshold"
    calibrated = header.get("threshold") or {}
    if "value" in calibrated:
        return float(calibrated["value"]), (f"calibrated on {calibrated.get('calibration_images')} "
                                            f"{calibrated.get('calibrated_on')}, target FPR "
                                            f"{calibrated.get('target_fpr')}")
    return None, "none: the model file has no calibrated threshold (trained before thresholds); give --threshold"


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .data import validate_images
    from .evaluation import anomaly_scores, auroc, rates_at_threshold
    from .experiment import auroc_skip_reason, load_run_data, save_json

    _set_threads(args.threads)
    _check_output_file(args.json, "--json", "eval.json")
    if args.plots and Path(args.plots).exists() and not Path(args.plots).is_dir():
        raise CLIError(f"--plots {args.plots} is a file: give a folder for the PNG files (created if missing)")
    cfg, gan, hooks, header = _load_for_scoring(args)
    _check_channels(cfg, hooks.in_channels, args.checkpoint)
    cfg, data = load_run_data(cfg)
    skip = auroc_skip_reason(data)
    if skip:
        raise CLIError(f"cannot evaluate {args.checkpoint} on {data.source}: {skip}")
    validate_images(data.test, hooks.in_channels, what=f"{cfg.dataset} test images")
    scores = anomaly_scores(hooks, gan, data.test, batch_size=cfg.eval_batch_size, bn_mode=cfg.bn_mode)
    value = auroc(scores, data.test_labels)
    threshold, threshold_source = _threshold(args, header)
    rates = rates_at_threshold(scores, data.test_labels, threshold) if threshold is not None else \
        {"fpr_at_threshold": None, "tpr_at_threshold": None}
    result = {"auroc": value, "threshold": threshold, **rates, "threshold_source": threshold_source,
              "target_fpr": (header.get("threshold") or {}).get("target_fpr"),
              "checkpoint": str(args.checkpoint), "dataset": cfg.dataset,
              "normal_class": cfg.normal_class, "class_name": data.class_name, "bn_mode": cfg.bn_mode,
              "test_images": len(data.test), "novel_images": int(data.test_labels.sum()),
              "method": header.get("method"), "widths": list(gan.generator.widths)}
    print(f"AUROC {value:.4f}: {args.checkpoint} on {cfg.dataset} test split, normal class {cfg.normal_class} "
          f"({data.class_name}), {len(data.test)} images, bn_mode {cfg.bn_mode}")
    if threshold is not None:
        print(f"at threshold {threshold:.6g} ({threshold_source}): false-positive rate "
              f"{rates['fpr_at_threshold']:.4f}, true-positive rate {rates['tpr_at_threshold']:.4f}")
    else:
        print(f"threshold: {threshold_source}")
    if args.plots:
        from .plots import write_evaluation_plots

        result["plots"] = write_evaluation_plots(args.plots, hooks, gan, data.test, data.test_labels, scores,
                                                 threshold, bn_mode=cfg.bn_mode, auroc=value)
        print(f"wrote {', '.join(result['plots'])}", file=sys.stderr)
    if args.json:
        save_json(args.json, result)
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from .data import validate_images
    from .evaluation import anomaly_scores
    from .experiment import load_image_folder, load_run_data

    _set_threads(args.threads)
    _check_output_file(args.output, "--output", "scores.csv")
    if args.images:
        given = [option for option, dest in (("--split", "split"), ("--dataset", "dataset"),
                                             ("--normal-class", "normal_class"), ("--data-root", "data_root"),
                                             ("--download", "download")) if getattr(args, dest, None) is not None]
        if given:
            one = len(given) == 1
            raise CLIError(f"{', '.join(given)} {'does' if one else 'do'} not apply with --images, which scores the "
                           f"folder's images: remove {'it' if one else 'them'}, or drop --images to score a dataset "
                           "split")
    cfg, gan, hooks, header = _load_for_scoring(args)
    threshold, threshold_source = _threshold(args, header)
    if args.images:
        images, paths = load_image_folder(args.images, hooks.in_channels)
        rows = [{"path": p} for p in paths]
        what = f"images of {args.images}"
    else:
        _check_channels(cfg, hooks.in_channels, args.checkpoint)
        cfg, data = load_run_data(cfg)
        split = args.split or "test"
        if split == "test":
            images, labels, files = data.test, data.test_labels.tolist(), data.test_files
        else:
            images, labels, files = data.train, [0] * len(data.train), data.train_files
        if len(images) == 0:
            raise CLIError(f"the {split} split of {data.source} has no images to score")
        rows = [{"path": f} for f in files] if files else [{"index": i} for i in range(len(images))]
        for row, lab in zip(rows, labels):
            row["label"] = lab
        what = f"{cfg.dataset} {split} images"
    validate_images(images, hooks.in_channels, what=what)
    scores = anomaly_scores(hooks, gan, images, batch_size=cfg.eval_batch_size, bn_mode=cfg.bn_mode)
    bad = (~torch.isfinite(scores)).nonzero().flatten().tolist()
    if bad:
        raise FloatingPointError(f"{len(bad)} of {len(scores)} scores of {args.checkpoint} are NaN/Inf (the first: "
                                 f"{rows[bad[0]]}): the model's outputs overflow; nothing was written")
    buffer = io.StringIO()
    fieldnames = [*rows[0], "score"] + (["is_novel"] if threshold is not None else [])
    writer = csv.DictWriter(buffer, fieldnames=fieldnames, lineterminator="\n")
    writer.writeheader()
    for row, score in zip(rows, scores.tolist()):
        decision = {"is_novel": int(score > threshold)} if threshold is not None else {}
        writer.writerow({**row, "score": repr(score), **decision})
    if threshold is None:
        print(f"note: no is_novel column: threshold {threshold_source}", file=sys.stderr)
    if args.output in (None, "-"):
        sys.stdout.write(buffer.getvalue())
    else:
        from gankd import atomic_write_text

        atomic_write_text(args.output, buffer.getvalue())
        novel = f", {sum(int(s > threshold) for s in scores.tolist())} novel at threshold {threshold:.6g}" \
            if threshold is not None else ""
        print(f"wrote {len(rows)} scores to {args.output}{novel}", file=sys.stderr)
    return 0


def _add_scoring_options(p: argparse.ArgumentParser) -> None:
    from .data import ALL_DATASETS as DATASETS
    from .evaluation import BN_MODES

    S = argparse.SUPPRESS
    p.add_argument("--checkpoint", metavar="CKPT", required=True,
                   help="model.pt of a run, the run's folder, its checkpoint.pt, or a bare state_dict (with --widths)")
    p.add_argument("--widths", type=_widths_arg, metavar="C1,C2,C3", default=None,
                   help="network widths, only for a bare state_dict without header")
    g = p.add_argument_group("config (default: the config saved in the checkpoint)")
    g.add_argument("--config", metavar="FILE", help="a RunConfig as YAML or JSON, applied over the checkpoint's")
    g.add_argument("--dataset", choices=DATASETS, default=S, help="dataset (default: the one the model trained on)")
    g.add_argument("--normal-class", dest="normal_class", type=int, metavar="K", default=S,
                   help="normal class; the others are novelties (default: the one the model trained on)")
    g.add_argument("--bn-mode", dest="bn_mode", choices=BN_MODES, default=S,
                   help="batch norm when scoring: eval (running statistics) or batch (per-batch statistics)")
    g.add_argument("--eval-batch-size", dest="eval_batch_size", type=int, metavar="N", default=S,
                   help="batch size when scoring")
    _add_data_options(g)
    g.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                   help="override any config field, value as YAML; repeatable, applied last")
    p.add_argument("--threshold", type=float, metavar="T", default=None,
                   help="decision threshold: novel if score > T (default: the one calibrated at training, stored "
                        "in the model file)")


# --- flops / demo -------------------------------------------------------------------------------------------------


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export_model_file

    _check_output_file(args.out, "export: OUT", "model.onnx" if args.format == "onnx" else "model.ts")
    record = export_model_file(args.model, args.out, fmt=args.format, optimize=False if args.plain else None,
                               layout=args.layout)
    print(json.dumps(record))
    return 0


def cmd_flops(args: argparse.Namespace) -> int:
    report = compression_report(args.dataset)
    if args.json:
        print(json.dumps({k: report[k] for k in ("teacher", "student", "params_ratio", "flops_ratio")}))
        return 0
    t, s = report["teacher"], report["student"]
    print(f"{args.dataset} ({report['in_channels']} channel(s), 32x32, generator only, 1 multiply-add = 1 flop)")
    print(f"{'':10}{'widths':>14}{'params':>12}{'FLOPs':>12}")
    print(f"{'teacher':10}{'-'.join(map(str, report['teacher_widths'])):>14}{_fmt_count(t['params']):>12}"
          f"{_fmt_count(t['flops']):>12}")
    print(f"{'student':10}{'-'.join(map(str, report['student_widths'])):>14}{_fmt_count(s['params']):>12}"
          f"{_fmt_count(s['flops']):>12}")
    print(f"{'ratio':10}{'':>14}{report['params_ratio']:>11.2f}x{report['flops_ratio']:>11.2f}x")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import print_demo_table, run_demo

    _set_threads(args.threads)
    _check_output_file(args.json, "--json", "demo.json")
    result = run_demo(normal_class=args.normal_class, teacher_epochs=args.teacher_epochs,
                      student_epochs=args.student_epochs, batch_size=args.batch_size, lr=args.lr,
                      seed=args.seed, bn_mode=args.bn_mode, verbose=not args.quiet)
    print_demo_table(result)
    if args.json:
        from .experiment import save_json

        save_json(args.json, result)
        print(f"wrote {args.json}")
    return 0


# --- parser -----------------------------------------------------------------------------------------------------


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (the full usage is one ``--help`` away); exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``gankd-ganomaly`` argument parser (every option has help text)."""
    parser = ArgumentParser(prog=PROG, description=__doc__.replace("``", ""),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--traceback", "--debug", dest="traceback", action="store_true",
                        help="show the full Python traceback on errors instead of a one-line message (also "
                             "after the command, or with the environment variable GANKD_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("teacher", help="train a teacher GAN (GANomaly on its own losses)",
                       description="Train a teacher: the 'teacher' schedule (alpha = beta = 1) on the normal class.")
    _add_run_options(p, distill=False)
    p.set_defaults(func=cmd_teacher)

    p = sub.add_parser("distill", help="train a student with a structure or schedule, from a teacher checkpoint",
                       description="Train a student GAN with --method (student-alone, KDGAN-1..4, P-KDGAN-*), "
                                   "distilling from --teacher where the method uses one.")
    _add_run_options(p, distill=True)
    p.set_defaults(func=cmd_distill)

    p = sub.add_parser("evaluate", help="AUROC of a checkpoint on a dataset's test split",
                       description="AUROC of a trained model on the test split (label 1 = not the normal class).")
    _add_scoring_options(p)
    p.add_argument("--json", metavar="PATH", help="also write the result as JSON (auroc, threshold, "
                   "fpr_at_threshold, tpr_at_threshold, ...)")
    p.add_argument("--plots", metavar="DIR", default=None,
                   help="write roc.png, histogram.png (normal vs novel scores, threshold line) and most_novel.png "
                        "(the most novel test images above their reconstructions) into DIR (needs matplotlib)")
    _add_exec_options(p, quiet=False)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("score", help="per-image anomaly scores (CSV) for a folder of images or a dataset split",
                       description="Anomaly score and decision per image (higher = more novel) as CSV: "
                                   "path,score,is_novel for a folder of PNG/JPEG/BMP/TIFF images (converted to the "
                                   "model's channels, resized to 32x32 bilinear, scaled to [-1, 1]); "
                                   "index,label,score,is_novel for a built-in dataset split, path,label,score,"
                                   "is_novel for a folder dataset's. is_novel = score > threshold (the model's "
                                   "calibrated threshold, or --threshold).")
    _add_scoring_options(p)
    src = p.add_argument_group("what to score (default: the dataset's test split)")
    src.add_argument("--images", metavar="DIR", help="a folder of .png/.jpg/.jpeg/.bmp/.tif images")
    src.add_argument("--split", choices=("test", "train"), default=None,
                     help="dataset split to score when --images is not given (default: test)")
    p.add_argument("--output", metavar="CSV", default=None, help="write the CSV here (default: standard output)")
    _add_exec_options(p, quiet=False)
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("flops", help="teacher/student params and FLOPs (fvcore) and their ratios",
                       description="Parameter and FLOP counts (fvcore) of the teacher and the dataset's student "
                                   "generator for one 32x32 image.")
    p.add_argument("--dataset", choices=DATASETS_WITH_STUDENTS, required=True,
                   help="dataset whose channel count and student preset to count")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=cmd_flops)

    p = sub.add_parser("export", help="export a trained model for deployment (TorchScript or ONNX scorer)",
                       description="Write a standalone scorer: forward(images (N, C, 32, 32) in [-1, 1]) returns the "
                                   "anomaly scores (N,), equal to the eager model's to 1e-5.")
    p.add_argument("model", help="model.pt, a run folder, or a run's checkpoint.pt")
    p.add_argument("out", help="output file; a .onnx suffix selects ONNX unless --format says otherwise")
    p.add_argument("--format", choices=("torchscript", "onnx"), default=None,
                   help="default: from the output suffix (.onnx -> onnx, else torchscript)")
    p.add_argument("--plain", action="store_true",
                   help="export the model's own layers instead of the faster rewritten graph (folded batch norm)")
    p.add_argument("--layout", choices=LAYOUTS, default=None,
                   help="memory layout of the rewritten TorchScript graph; default: the fastest measured for the "
                        "model's widths")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("demo", help="the main job: teacher, student alone, the paper (P-KDGAN-II-23) and "
                                    "the recommended students on the embedded digits data; prints AUROC and compression")
    p.add_argument("--normal-class", type=int, default=None, help="digit used as the normal class (default: 3)")
    p.add_argument("--teacher-epochs", type=int, default=None, help="teacher epochs (default: 15)")
    p.add_argument("--student-epochs", type=int, default=None, help="epochs per stage for students (default: 15)")
    p.add_argument("--batch-size", type=int, default=None, help="batch size (default: 16)")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (default: 0.0002)")
    p.add_argument("--seed", type=int, default=0, help="seed of every run (default: 0)")
    p.add_argument("--bn-mode", choices=("eval", "batch"), default="eval", help="batch norm at test time")
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    p.add_argument("--threads", type=_positive_int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch progress lines")
    p.set_defaults(func=cmd_demo)

    from .reproduce_cli import add_subcommands  # reproduce, report, prepare-cifar10

    add_subcommands(sub)
    add_debug_option(sub)
    return parser


def add_debug_option(subparsers: argparse._SubParsersAction) -> None:
    """``--debug`` after the command too (``gankd-ganomaly teacher ... --debug``)."""
    for sub in subparsers.choices.values():
        sub.add_argument("--debug", "--traceback", dest="traceback", action="store_true", default=argparse.SUPPRESS,
                         help="show the Python traceback on errors (as GANKD_DEBUG=1)")


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread so that clean-up code runs (temporary files, the folder lock)."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(signum)
        self.signum = signum


# signals that end a run the way Ctrl-C does: clean-up runs, exit status 128 + signal number
_TERMINATING = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


def _on_terminate(signum, frame):
    signal.signal(signum, signal.SIG_DFL)  # the same signal again ends the process at once
    raise Terminated(signum)


def user_error_types() -> tuple[type[BaseException], ...]:
    """Failures a user can cause or meet: shown as one line (or two). Anything else is a bug: a traceback."""
    from gankd import CheckpointError, FolderLockedError, MissingDependencyError, NonFiniteLossError

    return (CLIError, CheckpointError, NonFiniteLossError, FolderLockedError, MissingDependencyError, ValueError,
            KeyError, ImportError, OSError, FloatingPointError, MemoryError, torch.OutOfMemoryError)


def _os_hint(err: OSError, args: argparse.Namespace) -> str:
    import errno

    run = hasattr(args, "resume")
    hints = {
        errno.ENOSPC: "the disk is full: free some space or write elsewhere"
                      + ("; the last complete checkpoint is kept: then continue with --resume" if run else ""),
        errno.EDQUOT: "the disk quota is exhausted: free some space or write elsewhere",
        errno.EACCES: "no permission: check the permissions of the file and its folder, or write elsewhere",
        errno.EPERM: "not permitted: check the permissions of the file and its folder, or write elsewhere",
        errno.EROFS: "the file system is read-only: write elsewhere",
        errno.ENOTDIR: "a part of the path is a file, not a folder",
        errno.EEXIST: "a file is in the way",
    }
    return hints.get(err.errno, "")


def describe_error(err: BaseException, args: argparse.Namespace) -> str:
    """``TYPE: message`` of a user error, naming the file for file-system errors and saying what to do."""
    if isinstance(err, KeyError) and err.args:
        message = str(err.args[0])
    elif isinstance(err, OSError) and err.errno is not None and err.filename is not None:
        message = f"{err.strerror}: {str(err.filename)!r}"
        if err.filename2 is not None:
            message += f" -> {str(err.filename2)!r}"
        hint = _os_hint(err, args)
        message += f"; {hint}" if hint else ""
    elif isinstance(err, (MemoryError, torch.OutOfMemoryError)):
        first = str(err).strip().splitlines()[0] if str(err).strip() else "out of memory"
        message = f"{first}; lower --batch-size or --eval-batch-size, or use a device with more memory"
    else:
        message = str(err) or "(no message)"
    return f"{type(err).__name__}: {message}"


def debug_requested(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "traceback", False)) or \
        os.environ.get("GANKD_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")


def run_command(args: argparse.Namespace, prog: str = PROG) -> int:
    """The one error boundary of every command: ``args.func(args)``, with user errors (:func:`user_error_types`)
    as ``PROG COMMAND: error: TYPE: message`` on stderr and exit status 1, Ctrl-C 130, SIGTERM 143 and SIGHUP 129
    (they raise :class:`Terminated` so that clean-up runs: temporary files go, the folder lock is released). With
    ``--debug`` or ``GANKD_DEBUG=1`` the exception propagates with its traceback; other exceptions always do."""
    debug = debug_requested(args)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {signum: signal.signal(signum, _on_terminate) for signum in _TERMINATING}
    try:
        return args.func(args)
    except KeyboardInterrupt as err:
        if debug:
            raise
        what = f"terminated ({signal.Signals(err.signum).name})" if isinstance(err, Terminated) else "interrupted"
        hint = "; the last epoch's checkpoint is kept: continue with --resume" if hasattr(args, "resume") else ""
        print(f"{prog} {args.command}: {what}{hint}", file=sys.stderr)
        return 128 + err.signum if isinstance(err, Terminated) else 130
    except user_error_types() as err:
        if debug:
            raise
        print(f"{prog} {args.command}: error: {describe_error(err, args)}", file=sys.stderr)
        return 1
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 1 a named error, 2 a usage error from argparse, 130 Ctrl-C,
    143 SIGTERM, 129 SIGHUP)."""
    return run_command(build_parser().parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
