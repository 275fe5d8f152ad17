"""The reproduction commands: ``reproduce`` (the sweep), ``report`` and ``prepare-cifar10`` (:mod:`gankd_ganomaly.study`).

``add_subcommands(subparsers)`` adds them to any argparse sub-parser set (``gankd-ganomaly``'s); until then
``python -m gankd_ganomaly.reproduce_cli reproduce ...`` runs them on their own.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from typing import Sequence

DEFAULT_METHODS = "teacher,student-alone,P-KDGAN-II-23,ocsvm,kde"


def _usage_error(message: str) -> Exception:
    from .options import CLIError

    return CLIError(message)


def _command_line() -> str:
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "gankd-ganomaly"
    if prog == "reproduce_cli.py":
        prog = "python -m gankd_ganomaly.reproduce_cli"
    elif prog == "__main__.py":
        prog = "python -m gankd_ganomaly"
    return " ".join([prog, shlex.join(sys.argv[1:])]).strip()


def _methods(text: str) -> list[str]:
    from ..evaluation.baselines import BASELINES
    from ..study.sweep import PAPER_METHODS, SWEEP_METHODS

    groups = {"paper": list(PAPER_METHODS), "baselines": list(BASELINES), "all": [*PAPER_METHODS, *BASELINES]}
    out: list[str] = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        names = groups.get(item, [item])
        for name in names:
            if name not in SWEEP_METHODS:
                raise _usage_error(f"unknown method {name!r}; choose from {', '.join(SWEEP_METHODS)} or the groups "
                                 f"{', '.join(groups)}")
            if name not in out:
                out.append(name)
    return out


def _classes(text: str):
    from ..study.sweep import FIGURE2_CLASSES, parse_list

    if text.strip() == "figure2":
        return dict(FIGURE2_CLASSES)
    try:
        return parse_list(text, int, range(10))
    except ValueError:
        raise _usage_error(f"--classes takes 'all', 'figure2', a list like 0,3,5 or a range like 0-9; got {text!r}")


def required_grid() -> list[dict]:
    """The required grid of Tables 2-4, as the arguments of two sweeps: all classes x {teacher, student-alone,
    P-KDGAN-II-23, OC-SVM, KDE} x seed 0, then each dataset's Figure-2 class x the 8 paper methods x seeds 0-2."""
    from ..evaluation.baselines import BASELINES
    from ..study.sweep import FIGURE2_CLASSES, PAPER_METHODS

    datasets = ["mnist", "fmnist", "cifar10"]
    return [
        {"datasets": datasets, "classes": None, "seeds": [0],
         "methods": ["teacher", "student-alone", "P-KDGAN-II-23", *BASELINES]},
        {"datasets": datasets, "classes": {d: [FIGURE2_CLASSES[d]] for d in datasets}, "seeds": [0, 1, 2],
         "methods": list(PAPER_METHODS)},
    ]


def shard_spec(text: str) -> tuple[int, int]:
    """``"K/N"`` -> ``(K, N)`` with 1 <= K <= N, for ``--shard``."""
    k, sep, n = text.partition("/")
    if not (sep and k.strip().isdigit() and n.strip().isdigit() and 1 <= int(k) <= int(n)):
        raise argparse.ArgumentTypeError(f"expected K/N with 1 <= K <= N (e.g. 2/8), got {text!r}")
    return int(k), int(n)


def cmd_reproduce(args: argparse.Namespace) -> int:
    from ..experiment import check_device
    from ..study.sweep import parse_list, run_sweep

    check_device(args.device)  # before any run starts
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.grid == "required":
        sweeps = required_grid()
    else:
        sweeps = [{"datasets": parse_list(args.datasets), "classes": _classes(args.classes),
                   "methods": _methods(args.methods), "seeds": parse_list(args.seeds, int)}]
    command = _command_line()
    blocked = failed = 0
    for sweep in sweeps:
        summary = run_sweep(sweep["datasets"], sweep["classes"], sweep["methods"], sweep["seeds"], args.budget,
                            args.out, data_root=args.data_root, device=args.device, cifar_root=args.cifar_root,
                            cifar_jpeg=args.cifar_jpeg, threads=args.threads, bn_mode=args.bn_mode,
                            command=command, epoch_log=args.epoch_log, dry_run=args.dry_run,
                            existing_teachers=args.existing_teachers, shard=args.shard)
        blocked += len(summary.blocked)
        failed += len(summary.failed)
    if args.dry_run:
        return 0
    print(f"records in {os.path.join(args.out, 'records')}; next: "
          f"python -m gankd_ganomaly.reproduce_cli report --records {shlex.quote(args.out)}")
    return 1 if blocked else 0


def cmd_report(args: argparse.Namespace) -> int:
    from ..study.report import write_report

    result = write_report(args.records, args.out, None if args.no_plots else args.plots_dir, command=_command_line(),
                          controlled=args.controlled, beyond=args.beyond, default=args.default)
    print(f"wrote {result['markdown']} from {result['records']} record(s)"
          + (f" and {len(result['plots'])} plot(s): {', '.join(result['plots'])}" if result["plots"] else ""))
    return 0


def cmd_prepare_cifar10(args: argparse.Namespace) -> int:
    from ..data.cifar_prep import prepare_cifar10_from_jpeg, prepare_cifar10_subset

    import zipfile

    if args.from_jpeg and (args.subset or args.subset_from_jpeg):
        raise _usage_error("give --from-jpeg DIR or --subset NPZ [--subset-from-jpeg NPZ], not both")
    if args.subset_from_jpeg and not args.subset:
        raise _usage_error("--subset-from-jpeg NPZ only applies with --subset NPZ")
    if args.from_jpeg:
        dest = prepare_cifar10_from_jpeg(args.out, args.from_jpeg)
    elif args.subset:
        inputs = " and ".join(str(f) for f in (args.subset, args.subset_from_jpeg) if f)
        try:
            dest = prepare_cifar10_subset(args.out, args.subset, jpeg_npz=args.subset_from_jpeg)
        except (ValueError, EOFError, zipfile.BadZipFile) as err:  # np.load of a file that is no .npz
            raise ValueError(f"cannot read {inputs} as the CIFAR-10 subset .npz ({err})") from None
    else:
        raise _usage_error("give --from-jpeg DIR (full copy, lossy) or --subset NPZ [--subset-from-jpeg NPZ]")
    print(f"wrote {dest}; use --cifar-root {shlex.quote(args.out)}")
    return 0


def add_subcommands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``reproduce``, ``report`` and ``prepare-cifar10`` to an argparse sub-parser set."""
    from ..study.budgets import BUDGETS

    p = subparsers.add_parser(
        "reproduce", help="resumable sweep dataset x class x method x seed; one JSON record per finished run",
        description="Runs every missing (dataset, normal class, method, seed) and writes OUT/records/DATASET/CLASS/"
                    "METHOD/seedSEED.json; re-running skips finished runs. Students distil from the teacher of the "
                    "same dataset/class/seed (OUT/teachers/...pt, trained once).")
    p.add_argument("--grid", choices=("required",), default=None,
                   help="'required': the whole grid of Tables 2-4 (all classes x teacher, student-alone, P-KDGAN-II-23, "
                        "OC-SVM, KDE x seed 0 on mnist, fmnist, cifar10; then each Figure-2 class x the 8 paper "
                        "methods x seeds 0-2); overrides --datasets/--classes/--methods/--seeds")
    p.add_argument("--datasets", default="mnist,fmnist,cifar10", help="comma list of digits, mnist, fmnist, cifar10")
    p.add_argument("--classes", default="all", help="'all', 'figure2' (each dataset's Figure-2 class), 0,3,5 or 0-9")
    p.add_argument("--methods", default=DEFAULT_METHODS,
                   help="comma list of methods (teacher, student-alone, KDGAN-1..4, P-KDGAN-I, P-KDGAN-II-23, "
                        "P-KDGAN-II-24, ocsvm, kde) or groups: paper (the 8 of Tables 3-4), baselines, all")
    p.add_argument("--seeds", default="0", help="comma list or range, e.g. 0,1,2 or 0-2")
    p.add_argument("--budget", choices=tuple(BUDGETS), default="cpu",
                   help="epochs/batch/lr preset (see docs/reproduce.md)")
    p.add_argument("--out", default="runs/reproduce", help="sweep folder: records/ and teachers/ go here")
    p.add_argument("--data-root", default=None, help="MNIST/Fashion-MNIST root (and CIFAR-10's without --cifar-root)")
    p.add_argument("--cifar-root", default=None, help="folder holding cifar-10-batches-py/")
    p.add_argument("--cifar-jpeg", action="store_true",
                   help="mark CIFAR-10 records lossy even if the root has no LOSSY_JPEG_COPY marker")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    from gankd.boundary import positive_int

    p.add_argument("--threads", type=positive_int, default=None, help="torch intra-op threads (1 on a shared machine)")
    p.add_argument("--bn-mode", choices=("eval", "batch"), default="eval", help="batch norm at test time")
    p.add_argument("--epoch-log", action="store_true", help="also print one line per epoch")
    p.add_argument("--dry-run", action="store_true", help="list the runs still to do, with a rough ETA, and exit")
    p.add_argument("--existing-teachers", action="store_true",
                   help="train no teacher: skip the students whose teacher checkpoint is not written yet (for a "
                        "second process that distils while another trains the teachers)")
    p.add_argument("--shard", type=shard_spec, default=None, metavar="K/N",
                   help="run only the K-th of N disjoint parts of the grid (K = 1..N; together the whole grid, each "
                        "run once, teachers with their students): one part per task of a SLURM/Kubernetes job array "
                        "or Ray/Dask task (docs/reproduce.md)")
    p.set_defaults(func=cmd_reproduce)

    p = subparsers.add_parser("report", help="write docs/results.md (Tables 2-4, statistics, Figure 2) from records")
    p.add_argument("--records", nargs="+", default=["runs/reproduce"],
                   help="sweep folder(s) or their records/ subfolders; several, e.g. the exact and JPEG CIFAR "
                        "subsets")
    p.add_argument("--out", default="docs/results.md", help="markdown file to write")
    p.add_argument("--plots-dir", default="docs/figures", help="where the Figure-2 PNGs go")
    p.add_argument("--no-plots", action="store_true", help="tables only (no matplotlib needed)")
    p.add_argument("--beyond", nargs="*", default=[], metavar="DIR",
                   help="sweep folder(s) with the recommended recipe, its student alone and control from the same "
                        "teachers: adds the 'Beyond the paper' section (the paper's tables keep --records)")
    p.add_argument("--default", nargs="*", default=[], metavar="DIR",
                   help="sweep folder(s) with teacher, student-alone, student-alone-tuned and recommended from the same "
                        "teachers: adds the section on the default recipe and its criteria")
    p.add_argument("--controlled", nargs="*", default=[], metavar="JSON",
                   help="files of controlled one-factor runs (scripts/gap_study.py writes one) to add as a section")
    p.set_defaults(func=cmd_report)

    p = subparsers.add_parser("prepare-cifar10", help="write CIFAR-10 python batches from the JPEG copy or the "
                                                      "exact 4000/1000 subset, with provenance markers")
    p.add_argument("--out", required=True, help="root to write cifar-10-batches-py/ into (pass it as --cifar-root)")
    p.add_argument("--from-jpeg", metavar="DIR", help="folder with to_batches.py and cifar10_jpeg.npz (lossy copy)")
    p.add_argument("--subset", metavar="NPZ", help="cifar10_partial.npz: exact first 4000 train / 1000 test images")
    p.add_argument("--subset-from-jpeg", metavar="NPZ",
                   help="with --subset: take the same images from this cifar10_jpeg.npz instead (lossy)")
    p.set_defaults(func=cmd_prepare_cifar10)


PROG = "python -m gankd_ganomaly.reproduce_cli"


def build_parser() -> argparse.ArgumentParser:
    from gankd.boundary import ArgumentParser

    from .options import add_debug_option

    parser = ArgumentParser(prog=PROG, description=__doc__)
    parser.add_argument("--traceback", "--debug", dest="traceback", action="store_true",
                        help="show the full Python traceback on errors (also GANKD_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True)
    add_subcommands(sub)
    add_debug_option(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point, inside the same error boundary as ``gankd-ganomaly`` (:func:`gankd_ganomaly.cli.run_command`)."""
    from .errors import run_command

    return run_command(build_parser().parse_args(argv), prog=PROG)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
