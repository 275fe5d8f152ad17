"""Boundary section: how long, and with how much memory, both command lines take to refuse networks that cannot fit.

`gankd train --set 'teacher.width=[100000,8,8]'` and `gankd-ganomaly teacher --teacher-widths 100000,8,8` must be
refused from a memory estimate before anything is allocated (the target: under 10 s and 2 GB). Each command runs
``--repeats`` times in a fresh process; the wall time and the process's peak resident set (``ru_maxrss`` of the
child) are recorded. Writes ``benchmarks/results/refusal_cost.json``:

    PYTHONPATH=. python benchmarks/refusal_cost.py --repeats 3
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import command_line, machine_info, summarize, table, write_json  # noqa: E402

CONFIG = {"family": "ganomaly", "family_args": {"in_channels": 1},
          "data": {"factory": "gankd_ganomaly.run_layer:one_class_batches",
                   "args": {"dataset": "digits", "normal_class": 3, "batch_size": 32}},
          "teacher": {"width": [100000, 8, 8]}, "schedule": "teacher", "epochs": 1}


def run_once(command: list[str], cwd: Path) -> tuple[float, float, str]:
    """(wall seconds, peak resident MB, last stderr line) of one fresh process, which must fail with status 1."""
    env = {**os.environ, "PYTHONPATH": str(HERE.parent), "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stderr = proc.stderr.read().strip().splitlines()  # until the process closes it (exits): no pipe can fill up
    _, status, usage = os.wait4(proc.pid, 0)  # reaped here, with its own resource usage
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 1:
        raise SystemExit(f"{' '.join(command)} did not fail with status 1: {stderr[-3:]}")
    return seconds, usage.ru_maxrss / 1024, stderr[-1] if stderr else ""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args()
    commands = {
        "gankd train": [sys.executable, "-m", "gankd", "train", "--config", "t.yaml", "--out", "gt"],
        "gankd-ganomaly teacher": [sys.executable, "-m", "gankd_ganomaly", "teacher", "--dataset", "digits",
                                   "--teacher-widths", "100000,8,8", "--out", "gg"],
    }
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "t.yaml").write_text(yaml.safe_dump(CONFIG))
        for name, command in commands.items():
            runs = [run_once(command, Path(tmp)) for _ in range(args.repeats)]
            results[name] = {"seconds": summarize([r[0] for r in runs]), "peak_mb": max(r[1] for r in runs),
                             "message": runs[-1][2]}
    print(table(["command", "median s", "max s", "peak MB", "message"],
                [[n, r["seconds"]["median"], r["seconds"]["max"], round(r["peak_mb"]), r["message"][:90]]
                 for n, r in results.items()], title="refusing teacher widths 100000,8,8"))
    path = write_json(args.out, "refusal_cost", {"command": command_line(), "machine": machine_info(),
                                                 "repeats": args.repeats, "results": results})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
