"""Benchmark plumbing shared by the sections of ``run.py``: machine facts, timing, JSON, tables.

Timing protocol (every section): a contender is a function ``fn(n)`` that runs ``n`` steps (or
calls). It is warmed up, then calibrated so that one *repeat* (``n`` steps) lasts at least
``min_repeat_s``; the reported time per step is the median over repeats (``min`` and every sample
are kept too). Contenders that are compared with each other are measured *alternately* in one
process: round r runs each contender once, in an order rotated every round, so slow drifts
(thermal, another process) hit all of them alike; ratios are also computed per round ("paired").
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import statistics
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch

Runner = Callable[[int], Any]  # fn(n): run n steps


@dataclass(frozen=True)
class Budget:
    """How long to measure: warm-up calls, repeats, and the minimum duration of one repeat."""

    warmup: int
    repeats: int
    min_repeat_s: float
    max_steps: int = 2000

    def to_dict(self) -> dict:
        return asdict(self)


QUICK = Budget(warmup=1, repeats=3, min_repeat_s=0.0)
FULL = Budget(warmup=2, repeats=5, min_repeat_s=0.5)


# --- machine -----------------------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("flags"):
                flags = line.split(":", 1)[1].split()
                return sorted(f for f in flags if f.startswith(("avx", "fma", "amx")))
    except OSError:
        pass
    return []


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def machine_info() -> dict:
    """Facts that decide CPU numbers; ``threads`` is the intra-op thread count in force right now."""
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cores_usable": usable_cores(),
        "loadavg_1_5_15": loadavg(),
        "torch": torch.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
    }


def set_threads(n: int) -> int:
    torch.set_num_threads(int(n))
    return torch.get_num_threads()


# --- timing --------------------------------------------------------------------------------------------------------


def summarize(samples: Sequence[float]) -> dict:
    """Per-step seconds over repeats: median (the figure reported), min, max, spread, all samples."""
    s = sorted(samples)
    q1, q3 = (s[len(s) // 4], s[(3 * len(s)) // 4]) if len(s) >= 4 else (s[0], s[-1])
    return {"median": statistics.median(s), "min": s[0], "max": s[-1], "iqr": q3 - q1, "n": len(s),
            "samples": [round(x, 9) for x in samples]}


def calibrate(fn: Runner, budget: Budget) -> int:
    """Warm ``fn`` up and return the steps per repeat that make one repeat last >= budget.min_repeat_s."""
    per_step = math.inf
    for _ in range(max(1, budget.warmup)):
        start = time.perf_counter()
        fn(1)
        per_step = min(per_step, time.perf_counter() - start)
    if budget.min_repeat_s <= 0:
        return 1
    return int(min(budget.max_steps, max(1, math.ceil(budget.min_repeat_s / max(per_step, 1e-9)))))


def alternate(contenders: dict[str, Runner], budget: Budget, steps: dict[str, int] | int | None = None,
              on_round: Callable[[int], None] | None = None) -> dict[str, dict]:
    """Measure each contender ``budget.repeats`` times, alternating; returns name -> summary (+ steps).

    ``steps``: steps per repeat (per contender or one for all); by default each is calibrated.
    """
    names = list(contenders)
    if steps is None:
        steps = {n: calibrate(contenders[n], budget) for n in names}
    elif isinstance(steps, int):
        for n in names:
            for _ in range(max(1, budget.warmup)):
                contenders[n](1)
        steps = {n: steps for n in names}
    samples: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    for r in range(budget.repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            cpu_start, start = time.process_time(), time.perf_counter()
            contenders[n](steps[n])
            samples[n].append((time.perf_counter() - start) / steps[n])
            cpu[n].append((time.process_time() - cpu_start) / steps[n])
        if on_round is not None:
            on_round(r)
    # cpu_s: process CPU seconds per step (all threads): with 1 thread it shows what the step would
    # take without time slices lost to other processes, a cross-check of the wall times on a busy machine
    return {n: {**summarize(samples[n]), "cpu_s_median": statistics.median(cpu[n]), "cpu_s_min": min(cpu[n]),
                "steps_per_repeat": steps[n]} for n in names}


def measure(fn: Runner, budget: Budget, steps: int | None = None) -> dict:
    return alternate({"x": fn}, budget, steps)["x"]


def median_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float] | None:
    """A distribution-free confidence interval for the median: ``(low, high, coverage)``.

    The k-th smallest and k-th largest of n samples bound the median with probability
    ``1 - 2 P(B < k)``, B ~ Binomial(n, 1/2), whatever the distribution (rounds independent); k is the
    largest with coverage >= ``level``. None when n is too small for that level (n < 6 at 95%).
    """
    s, n = sorted(values), len(values)
    tail, k = 0.0, 0  # tail = P(B < k)
    while k < n and tail + math.comb(n, k) / 2 ** n <= (1 - level) / 2:
        tail += math.comb(n, k) / 2 ** n
        k += 1
    if k == 0:
        return None
    return s[k - 1], s[n - k], 1 - 2 * tail


def paired_ratio(num: dict, den: dict) -> dict:
    """Per-round ratio num/den of two contenders measured by :func:`alternate` (same round = a pair).

    ``ci95``: [low, high] of the median ratio (:func:`median_interval`), or None with too few rounds.
    """
    ratios = [a / b for a, b in zip(num["samples"], den["samples"])]
    interval = median_interval(ratios)
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios),
            "of_medians": num["median"] / den["median"],
            "ci95": None if interval is None else [interval[0], interval[1]],
            "ci95_coverage": None if interval is None else interval[2]}


# --- FLOPs ---------------------------------------------------------------------------------------------------------


def count_macs(module: torch.nn.Module, example: torch.Tensor) -> int:
    """Multiply-adds of one forward with fvcore (its convention: one MAC = one 'flop'), eval mode."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fvcore.nn import FlopCountAnalysis

        was = module.training
        module.eval()
        try:
            analysis = FlopCountAnalysis(module, example)
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            return int(analysis.total())
        finally:
            module.train(was)


def onednn_primitive_times(fn: Callable[[], Any], calls: int = 8) -> list[dict] | None:
    """Each oneDNN primitive's execution time in ``fn()``, from oneDNN's own log (``ONEDNN_VERBOSE``).

    Runs ``fn`` ``calls`` times with ``torch.backends.mkldnn.verbose`` on (its lines go to the C-level
    stdout, captured here) and keeps, for each primitive of a call (same position in every call), the
    least time: steadier than wall-clock timings on a shared machine. Returns ``[{kind, impl, problem,
    ms}]`` in call order, or None where oneDNN or its log is not available.
    """
    if not torch.backends.mkldnn.is_available():
        return None
    import ctypes
    import tempfile

    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    with tempfile.TemporaryFile(mode="w+") as log:
        saved = os.dup(1)
        try:
            os.dup2(log.fileno(), 1)
            with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
                for _ in range(calls):
                    fn()
            libc.fflush(None)
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        log.seek(0)
        rows = []
        for line in log.read().splitlines():
            fields = line.split(",")
            if not line.startswith("onednn_verbose") or "exec" not in fields:
                continue
            at = fields.index("exec")  # ...,exec,<engine>,<kind>,<implementation>,...,<problem>,<ms>
            try:
                rows.append((fields[at + 2], fields[at + 3], fields[-2], float(fields[-1])))
            except (IndexError, ValueError):
                continue
    if not rows or len(rows) % calls:
        return None
    per_call = len(rows) // calls
    return [{"kind": rows[i][0], "impl": rows[i][1], "problem": rows[i][2],
             "ms": min(rows[i + k * per_call][3] for k in range(calls))} for i in range(per_call)]


# --- output --------------------------------------------------------------------------------------------------------


def command_line() -> str:
    return "python " + " ".join([sys.argv[0], *sys.argv[1:]])


def write_json(out_dir: Path, name: str, payload: dict) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1, default=_json_default) + "\n")
    tmp.replace(path)
    return path


def _json_default(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None) -> str:
    """A plain fixed-width text table (numbers right-aligned)."""
    rows = [[_cell(c) for c in r] for r in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in rows)) if rows else len(str(h)) for i, h in enumerate(headers)]
    numeric = [all(_is_number(r[i]) for r in rows) if rows else False for i in range(len(headers))]

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric)).rstrip()

    lines = [title] if title else []
    lines += [fmt([str(h) for h in headers]), "  ".join("-" * w for w in widths)]
    lines += [fmt(r) for r in rows]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if value == 0 or math.isnan(value) or math.isinf(value):
            return f"{value:g}"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 100:
            return f"{value:.1f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.3g}"
    return str(value)


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", "").rstrip("x%"))
        return True
    except ValueError:
        return False
