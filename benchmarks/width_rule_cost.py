"""Engine section, width rule: does a stage's ``lr_rule`` (per-parameter-group learning rates, gankd.width_rule)
cost anything per training step?

The same step (student-alone and KDGAN-2, the GANomaly student of each dataset, batch 32 as the sweep's cpu
budget) through the engine, once with one parameter group per network and once with ``lr_rule={"name": "mup"}``
(2-4 groups per network), measured alternately in one process; ratio = rule time / plain time per round (paired
median, distribution-free 95% interval). The rule's factors are resolved once per stage start, so only the
optimizer's per-group loop could add anything. Writes ``benchmarks/results/width_rule_cost.json``:

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/width_rule_cost.py --threads 1
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from gankd import DistillationEngine, Stage  # noqa: E402
from harness import Budget, alternate, command_line, machine_info, paired_ratio, set_threads, table, write_json  # noqa: E402
from workloads import BENCH_OPTIMIZER, BatchSource, build_models  # noqa: E402


def runner(models, stage_name: str, source: BatchSource, rule: dict | None):
    engine = DistillationEngine(models.hooks, models.teacher if stage_name != "student-alone" else None,
                                models.student)
    state = engine._start_stage(0, Stage(stage_name, 1, BENCH_OPTIMIZER, lr_rule=rule))

    def run(n: int) -> None:
        engine._run_epoch(state, source.batches(n), 1, 1)
    run.groups = {n: len(o.param_groups) for n, o in state.optimizers.items()}  # type: ignore[attr-defined]
    return run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--datasets", default="mnist,cifar10")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--out", default=str(HERE / "results"))
    args = p.parse_args()
    set_threads(args.threads)
    budget = Budget(warmup=3, repeats=args.repeats, min_repeat_s=0.5)
    doc = {"benchmark": "width_rule_cost", "description": __doc__.split("\n\n")[0], "command": command_line(),
           "budget": budget.to_dict(), "threads": args.threads, "batch": 32, "machine": machine_info(), "results": []}
    rows = []
    for ds in args.datasets.split(","):
        for stage in ("student-alone", "KDGAN-2"):
            source = BatchSource(build_models(ds).student.generator.in_channels, 32)
            contenders = {"plain": runner(build_models(ds), stage, source, None),
                          "rule": runner(build_models(ds), stage, source,
                                         {"name": "mup", "reference": [64, 128, 256]})}
            m = alternate(contenders, budget)
            ratio = paired_ratio(m["rule"], m["plain"])
            doc["results"].append({"dataset": ds, "stage": stage, "measurements": m, "ratio_rule_over_plain": ratio,
                                   "param_groups": {k: c.groups for k, c in contenders.items()}})
            rows.append([ds, stage, m["plain"]["median"] * 1e3, m["rule"]["median"] * 1e3, ratio["median"],
                         f"[{ratio['ci95'][0]:.3f}, {ratio['ci95'][1]:.3f}]" if ratio["ci95"] else "-"])
            print(rows[-1], flush=True)
    doc["machine_at_end"] = machine_info()
    print(write_json(Path(args.out), "width_rule_cost", doc))
    print(table(["dataset", "stage", "plain ms", "rule ms", "rule/plain", "95% CI"], rows,
                title="Per-step time with and without the width rule (paired medians)"))


if __name__ == "__main__":
    main()
