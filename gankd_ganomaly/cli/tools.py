"""``export``, ``flops`` and ``demo``."""
from __future__ import annotations

import argparse
import json


from ..evaluation.flops import compression_report
from .options import _check_output_file, _fmt_count, _set_threads


def cmd_export(args: argparse.Namespace) -> int:
    from ..deploy.export import export_model_file

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
    from ..study.demo import print_demo_table, run_demo

    _set_threads(args.threads)
    _check_output_file(args.json, "--json", "demo.json")
    result = run_demo(normal_class=args.normal_class, teacher_epochs=args.teacher_epochs,
                      student_epochs=args.student_epochs, batch_size=args.batch_size, lr=args.lr,
                      seed=args.seed, bn_mode=args.bn_mode, verbose=not args.quiet)
    print_demo_table(result)
    if args.json:
        from ..experiment import save_json

        save_json(args.json, result)
        print(f"wrote {args.json}")
    return 0
