"""``gankd``: train any family from a config file, and list the families and recipes installed.

    gankd train --config FILE --out DIR [--set KEY=VALUE ...] [--resume | --overwrite] [--threads N]
    torchrun --nproc_per_node N -m gankd train ...   (one run over N processes; docs/config.md)
    gankd families
    gankd recipes --family NAME

Errors go through :mod:`gankd.boundary`, as those of every family's own command line: a user error is one line
``gankd COMMAND: error: TYPE: message`` and exit status 1 (2: a usage error; 130: Ctrl-C; 143: SIGTERM; 129:
SIGHUP); ``--debug`` or ``GANKD_DEBUG=1`` (or true, yes, on) shows the traceback instead.
"""
from __future__ import annotations

import argparse
import os
import sys

from .boundary import ArgumentParser, positive_int, run_command
from .run import RunConfigError


def cmd_train(args: argparse.Namespace) -> int:
    from .run import apply_overrides, read_config, train

    config = apply_overrides(read_config(args.config), args.set)
    record = train(config, args.out, resume=args.resume, overwrite=args.overwrite, verbose=not args.quiet,
                   threads=args.threads)
    if record.get("world_size", 1) > 1 and int(os.environ.get("RANK", "0")) != 0:
        return 0  # rank 0 reports for the whole run
    metrics = " ".join(f"{k}={v:.4f}" for k, v in record["metrics"].items())
    print(f"trained the {record['role']} ({record['schedule']['name']}) in {record['wall_s']:.1f}s"
          f"{'; ' + metrics if metrics else ''}; model file {os.path.join(args.out, 'model.pt')}")
    return 0


def cmd_families(args: argparse.Namespace) -> int:
    from .modelfile import ENTRY_POINT_GROUP, family_entry_points

    installed = family_entry_points()
    if not installed:
        print(f"no families installed (entry-point group {ENTRY_POINT_GROUP!r}); a config may still name one as "
              "'package.module:Class'")
    for name, target in sorted(installed.items()):
        print(f"{name:16} {target}")
    return 0


def cmd_recipes(args: argparse.Namespace) -> int:
    from .modelfile import resolve_family

    try:
        hooks = resolve_family(args.family)(**{})
    except ValueError as err:
        raise RunConfigError(str(err)) from None
    for name, recipe in hooks.recipes().items():
        print(f"{name:14} {recipe.description}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="gankd", description="Knowledge distillation between GANs: run a config file.")
    debug_help = "show the full traceback of an error (or set GANKD_DEBUG=1)"
    p.add_argument("--debug", action="store_true", help=debug_help)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="run a config file into a run folder (docs/config.md lists every key)")
    t.add_argument("--config", required=True, metavar="FILE", help="run config, YAML or JSON")
    t.add_argument("--out", required=True, metavar="DIR", help="run folder: config.yaml, checkpoint.pt, history.json, "
                   "record.json, model.pt")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, value as YAML; dots reach into mappings (student.width=8)")
    mode = t.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue DIR/checkpoint.pt (refused if the config differs)")
    mode.add_argument("--overwrite", action="store_true", help="start afresh in a folder that holds a run")
    t.add_argument("--quiet", action="store_true", help="no per-epoch progress lines")
    t.add_argument("--threads", type=positive_int, default=None, metavar="N",
                   help="torch threads per process (default: torch's own; 1 on a busy machine). Recorded: a resume "
                   "with another count is warned about, as it is no longer bit-identical")
    t.set_defaults(func=cmd_train)
    f = sub.add_parser("families", help="list the families installed through the gankd.families entry points")
    f.set_defaults(func=cmd_families)
    r = sub.add_parser("recipes", help="list a family's named distillation recipes")
    r.add_argument("--family", required=True, help="an installed family name or 'package.module:Class'")
    r.set_defaults(func=cmd_recipes)
    for command in (t, f, r):  # --debug after the command too
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (:mod:`gankd.boundary`)."""
    args = build_parser().parse_args(argv)
    return run_command(args.func, args, "gankd", debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
