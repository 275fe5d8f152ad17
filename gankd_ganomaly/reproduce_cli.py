"""``python -m gankd_ganomaly.reproduce_cli``: kept so that the commands in committed records and docs still run;
the commands live in :mod:`gankd_ganomaly.cli.study` (also ``gankd-ganomaly reproduce|report|prepare-cifar10``)."""
import sys

from .cli.study import build_parser, main  # noqa: F401 (the module's public face)

if __name__ == "__main__":
    sys.exit(main())
