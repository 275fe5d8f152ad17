"""Performance benchmarks of gankd / gankd_ganomaly on CPU: one command, JSON per section, printed tables.

    python benchmarks/run.py                      # full run, threads 1 and all usable cores
    python benchmarks/run.py --threads 1,2        # the thread counts to measure (each section, each count)
    python benchmarks/run.py --quick --threads 1  # a fast smoke run (noisy numbers, for development)
    python benchmarks/run.py --threads 1,2 --channels-last --compile  # also the channels_last/compile switches

Writes ``<out>/<section>.json`` (default ``benchmarks/results``) and ``<out>/summary.json`` (the
headline checks and the printed tables). ``--sections`` re-runs some sections: the summary then also takes the
other sections' figures from the JSON files already in ``<out>`` and names the commands that wrote them. See benchmarks/README.md for what each section measures.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # plain scripts: harness.py, workloads.py, sections.py live beside this file

import torch  # noqa: E402

from harness import FULL, QUICK, Budget, command_line, loadavg, machine_info, usable_cores, write_json  # noqa: E402
from sections import SECTIONS, Config, headline  # noqa: E402


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected integers >= 1, got {text!r}")
    return values


def _name_list(choices):
    def parse(text: str) -> list[str]:
        names = [v.strip() for v in text.split(",") if v.strip()]
        bad = [n for n in names if n not in choices]
        if bad or not names:
            raise argparse.ArgumentTypeError(f"unknown {bad or text!r}; choose from {', '.join(choices)}")
        return names
    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="tiny run for development: 1 warm-up, 3 repeats of 1 step, batch 16 for the teacher "
                        "step, 1024 matmul (numbers are noisy)")
    p.add_argument("--threads", type=_int_list, default=None,
                   help="comma-separated torch intra-op thread counts to measure, e.g. 1,2 (default: 1 and the "
                        "usable cores; --quick: 1). On a core shared with another busy process, 2 threads can be "
                        "~10x slower than 1: measure on a quiet machine")
    p.add_argument("--out", type=Path, default=HERE / "results", help="folder for the JSON files")
    p.add_argument("--sections", type=_name_list(list(SECTIONS)), default=None,
                   help=f"comma-separated subset of: {', '.join(SECTIONS)} (default: all; 'switches' only runs "
                        "with --channels-last or --compile)")
    p.add_argument("--channels-last", action="store_true", help="measure the channels_last switch (section switches)")
    p.add_argument("--compile", action="store_true",
                   help="measure torch.compile (section switches; ~1 min of compiling per workload on a cold cache)")
    p.add_argument("--datasets", type=_name_list(["cifar10", "mnist"]), default=None,
                   help="training shapes to measure (default: cifar10,mnist)")
    p.add_argument("--batches", type=_int_list, default=None, help="training batch sizes (default: 1,16,64)")
    p.add_argument("--repeats", type=int, default=None, help="override the repeats per measurement")
    p.add_argument("--min-repeat-s", type=float, default=None, help="override the minimum seconds of one repeat")
    return p.parse_args(argv)


def build_config(args: argparse.Namespace) -> Config:
    budget = QUICK if args.quick else FULL
    if args.repeats is not None or args.min_repeat_s is not None:
        budget = Budget(budget.warmup, args.repeats or budget.repeats,
                        budget.min_repeat_s if args.min_repeat_s is None else args.min_repeat_s)
    threads = args.threads or ([1] if args.quick else sorted({1, usable_cores()}))
    cfg = Config(quick=args.quick, budget=budget, threads=threads, channels_last=args.channels_last,
                 compile=args.compile)
    if args.quick:
        cfg.teacher_batch, cfg.matmul_n = 16, 1024
    if args.datasets:
        cfg.train_datasets = args.datasets
    if args.batches:
        cfg.batches = args.batches
    return cfg


def _earlier_sections(out: Path, skip: list[str]) -> dict[str, tuple[dict, str]]:
    """Sections written by earlier runs into ``out`` (JSON and printed table), except those in ``skip``."""
    try:
        tables = json.loads((out / "summary.json").read_text()).get("tables", {})
    except (OSError, ValueError):
        tables = {}
    found = {}
    for name in SECTIONS:
        path = out / f"{name}.json"
        if name not in skip and path.exists():
            found[name] = (json.loads(path.read_text()), tables.get(name, ""))
    return found


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = build_config(args)
    names = args.sections or [n for n in SECTIONS if n != "switches" or args.channels_last or args.compile]
    if "switches" in names and not (args.channels_last or args.compile):
        print("note: section 'switches' needs --channels-last and/or --compile; skipping it", file=sys.stderr)
        names = [n for n in names if n != "switches"]
    load = loadavg()
    print(f"gankd benchmarks: {'QUICK (noisy) ' if cfg.quick else ''}mode, threads {cfg.threads}, sections "
          f"{', '.join(names)}; CPU {machine_info()['cpu_model']} ({usable_cores()} usable cores), torch "
          f"{torch.__version__}; load average {load}", flush=True)
    if load and load[0] > 0.5:
        print(f"WARNING: load average {load[0]} > 0.5: other processes compete for the CPU and the numbers will be "
              "noisy (and multi-thread numbers much slower); use a quiet machine for figures you report",
              file=sys.stderr, flush=True)
    docs: dict[str, dict] = {}
    texts: dict[str, str] = {}
    failed = []
    original_threads = torch.get_num_threads()
    for name in names:
        start = time.perf_counter()
        print(f"\n== {name} ==", flush=True)
        try:
            doc, text = SECTIONS[name](cfg)
        except Exception:  # noqa: BLE001 - one failing section must not lose the others' results
            failed.append(name)
            print(f"section {name} FAILED:\n{traceback.format_exc()}", file=sys.stderr, flush=True)
            continue
        finally:
            torch.set_num_threads(original_threads)
        doc["command"] = command_line()
        doc["seconds"] = round(time.perf_counter() - start, 1)
        path = write_json(args.out, name, doc)
        docs[name], texts[name] = doc, text
        print(f"\n{text}\n(wrote {path}, {doc['seconds']} s)", flush=True)
    ran = list(docs)
    earlier = _earlier_sections(args.out, skip=ran)  # a partial re-run keeps the other sections' figures
    for name, (doc, text) in earlier.items():
        docs[name], texts[name] = doc, text
    summary, summary_text = headline(docs)
    summary.update({"command": command_line(), "mode": "quick" if cfg.quick else "full", "threads": cfg.threads,
                    "sections": ran, "sections_from_earlier_runs": {n: d.get("command") for n, (d, _) in earlier.items()},
                    "failed_sections": failed, "machine": machine_info(), "tables": texts})
    path = write_json(args.out, "summary", summary)
    print(f"\n{summary_text}\n(wrote {path})")
    if cfg.quick:
        print("QUICK mode: few short repeats; numbers are for smoke-testing, not for reporting.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
