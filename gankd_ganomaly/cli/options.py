"""What the commands share: the config flags and how they resolve into a run config, and the option groups."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gankd.boundary import positive_int

PROG = "gankd-ganomaly"


class CLIError(Exception):
    """A problem with the command line itself (conflicting options, an occupied output folder)."""


def add_debug_option(subparsers: argparse._SubParsersAction) -> None:
    """``--debug`` after the command too (``gankd-ganomaly teacher ... --debug``)."""
    for sub in subparsers.choices.values():
        sub.add_argument("--debug", "--traceback", dest="traceback", action="store_true", default=argparse.SUPPRESS,
                         help="show the Python traceback on errors (as GANKD_DEBUG=1)")


def _fmt_count(n: float) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}K"


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
                "target_fpr", "image_size")


def recipe_method(recipe: str) -> str:
    """The run method of a recipe: ``paper`` is the P-KDGAN-II-23 preset, other recipes are methods."""
    from ..hooks import RECIPES

    return RECIPES[recipe].preset or recipe


def config_data(args: argparse.Namespace, base: dict | None = None, forced: dict | None = None) -> dict:
    """The config as a dict: ``base`` (e.g. a saved config), ``--config``, the flags given, ``--set``, ``forced``.

    Only what the user (or ``base``) gave is in it; :class:`RunConfig` fills in the defaults.
    """
    from ..experiment import apply_overrides, read_config_file

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
    from ..experiment import RunConfig

    return RunConfig.from_dict(config_data(args, base, forced))


def add_run_options(p: argparse.ArgumentParser, *, distill: bool) -> None:
    from ..data import ALL_DATASETS as DATASETS
    from ..evaluation import BN_MODES
    from ..experiment import METHODS, RunConfig
    from ..networks import IMAGE_SIZES

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
        from ..hooks import RECIPES

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
    g.add_argument("--image-size", dest="image_size", type=int, choices=IMAGE_SIZES, default=S,
                   help="side of the square images the networks are built for; every image is resized to it "
                        "(bilinear). 64 and 128 add GANomaly's pyramid blocks (default: " + (
                            "the --teacher checkpoint's, else " if distill else "") + f"{d.image_size})")
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
    add_exec_options(o)


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


def add_exec_options(o: argparse._ArgumentGroup, quiet: bool = True) -> None:
    o.add_argument("--threads", type=positive_int, metavar="N", default=None,
                   help="torch intra-op threads (default: torch's choice); keep it fixed for bitwise-equal resumes")
    if quiet:
        o.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")


def add_scoring_options(p: argparse.ArgumentParser) -> None:
    from ..data import ALL_DATASETS as DATASETS
    from ..evaluation import BN_MODES

    S = argparse.SUPPRESS
    p.add_argument("--checkpoint", metavar="CKPT", required=True,
                   help="model.pt of a run, the run's folder, its checkpoint.pt, or a bare state_dict (with --widths)")
    p.add_argument("--widths", type=_widths_arg, metavar="C1,C2,C3", default=None,
                   help="network widths, only for a bare state_dict without header")
    from ..networks import IMAGE_SIZES

    p.add_argument("--image-size", dest="model_image_size", type=int, choices=IMAGE_SIZES, default=None,
                   help="the model's image size: read from the model file (a different value is refused); give it "
                        "only for a bare state_dict of a 64 or 128 model (default: 32). Images are resized to it")
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
