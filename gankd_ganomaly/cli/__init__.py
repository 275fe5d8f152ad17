"""``gankd-ganomaly`` / ``python -m gankd_ganomaly``: train, distil, evaluate, score, count FLOPs, run the demo.

Every run is described by a config (``gankd_ganomaly.experiment.RunConfig``): defaults, then
``--config FILE`` (YAML or JSON), then option flags, then ``--set key=value`` overrides, in that order.
Training runs write into ``--out DIR``: ``config.yaml`` (the resolved config), ``checkpoint.pt`` (every
epoch), ``history.json`` and ``metrics.csv`` (per epoch), ``record.json`` and ``model.pt`` (at the end).
A killed run continues with the same command plus ``--resume``.

Errors: a failure the user can cause or meet (bad input or file, a missing device or package, a file-system
error, a size that cannot fit) prints one line, ``gankd-ganomaly COMMAND: error: TYPE: message``, exit
status 1 (2 for a usage error, 130 after Ctrl-C, 143 after SIGTERM, 129 after SIGHUP), as every gankd
command (gankd.boundary); ``--debug`` or GANKD_DEBUG=1 (or true, yes, on) shows the traceback instead.
Internal errors always show their traceback. A run folder is locked while a run uses it.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence


from gankd.boundary import ArgumentParser, positive_int

from ..deploy.export import LAYOUTS
from ..evaluation.flops import paper_student_datasets
from .errors import run_command
from .options import (PROG, CLIError, add_debug_option, add_exec_options, add_run_options,  # noqa: F401
                      add_scoring_options, resolve_config)  # CLIError, resolve_config: used by the study commands, tests
from .scoring import cmd_evaluate, cmd_score
from .tools import cmd_demo, cmd_export, cmd_flops
from .training import cmd_distill, cmd_teacher

# --- parser -----------------------------------------------------------------------------------------------------


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
    add_run_options(p, distill=False)
    p.set_defaults(func=cmd_teacher)

    p = sub.add_parser("distill", help="train a student with a structure or schedule, from a teacher checkpoint",
                       description="Train a student GAN with --method (student-alone, KDGAN-1..4, P-KDGAN-*), "
                                   "distilling from --teacher where the method uses one.")
    add_run_options(p, distill=True)
    p.set_defaults(func=cmd_distill)

    p = sub.add_parser("evaluate", help="AUROC of a checkpoint on a dataset's test split",
                       description="AUROC of a trained model on the test split (label 1 = not the normal class).")
    add_scoring_options(p)
    p.add_argument("--json", metavar="PATH", help="also write the result as JSON (auroc, threshold, "
                   "fpr_at_threshold, tpr_at_threshold, ...)")
    p.add_argument("--plots", metavar="DIR", default=None,
                   help="write roc.png, histogram.png (normal vs novel scores, threshold line) and most_novel.png "
                        "(the most novel test images above their reconstructions) into DIR (needs matplotlib)")
    add_exec_options(p, quiet=False)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("score", help="per-image anomaly scores (CSV) for a folder of images or a dataset split",
                       description="Anomaly score and decision per image (higher = more novel) as CSV: "
                                   "path,score,is_novel for a folder of PNG/JPEG/BMP/TIFF images (converted to the "
                                   "model's channels, resized to the model's image size bilinear, scaled to "
                                   "[-1, 1]); "
                                   "index,label,score,is_novel for a built-in dataset split, path,label,score,"
                                   "is_novel for a folder dataset's. is_novel = score > threshold (the model's "
                                   "calibrated threshold, or --threshold).")
    add_scoring_options(p)
    src = p.add_argument_group("what to score (default: the dataset's test split)")
    src.add_argument("--images", metavar="PATH", help="an image file, or a folder of .png/.jpg/.jpeg/.bmp/.tif images")
    src.add_argument("--split", choices=("test", "train"), default=None,
                     help="dataset split to score when --images is not given (default: test)")
    p.add_argument("--output", metavar="CSV", default=None, help="write the CSV here (default: standard output)")
    add_exec_options(p, quiet=False)
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("flops", help="teacher/student params and FLOPs (fvcore) and their ratios",
                       description="Parameter and FLOP counts (fvcore) of the teacher and the dataset's student "
                                   "generator for one image of --image-size (default 32x32).")
    p.add_argument("--dataset", choices=paper_student_datasets(), required=True,
                   help="dataset whose channel count and student preset to count")
    p.add_argument("--image-size", dest="image_size", type=int, choices=(32, 64, 128), default=32,
                   help="image size the networks are built for (64, 128: with GANomaly's pyramid blocks; default 32)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=cmd_flops)

    p = sub.add_parser("export", help="export a trained model for deployment (TorchScript or ONNX scorer)",
                       description="Write a standalone scorer: forward(images (N, C, S, S) in [-1, 1], S the "
                                   "model's image size) returns the anomaly scores (N,), equal to the eager model's "
                                   "to 1e-5.")
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

    p = sub.add_parser("demo", help="the main job: teacher, student alone, the tuned student alone, the paper "
                                    "(P-KDGAN-II-23) and the recommended students on the embedded digits data; prints "
                                    "AUROC and compression")
    p.add_argument("--normal-class", type=int, default=None, help="digit used as the normal class (default: 3)")
    p.add_argument("--teacher-epochs", type=int, default=None, help="teacher epochs (default: 15)")
    p.add_argument("--student-epochs", type=int, default=None, help="epochs per stage for students (default: 15)")
    p.add_argument("--batch-size", type=int, default=None, help="batch size (default: 16)")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (default: 0.0002)")
    p.add_argument("--seed", type=int, default=0, help="seed of the teacher and the students' first seed (default: 0)")
    p.add_argument("--student-seeds", type=positive_int, default=None,
                   help="seeds per student, shown as their mean (default: 3)")
    p.add_argument("--bn-mode", choices=("eval", "batch"), default="eval", help="batch norm at test time")
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    p.add_argument("--threads", type=positive_int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch progress lines")
    p.set_defaults(func=cmd_demo)

    from .study import add_subcommands  # reproduce, report, prepare-cifar10

    add_subcommands(sub)
    add_debug_option(sub)
    return parser



def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 1 a named error, 2 a usage error from argparse, 130 Ctrl-C,
    143 SIGTERM, 129 SIGHUP)."""
    return run_command(build_parser().parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
