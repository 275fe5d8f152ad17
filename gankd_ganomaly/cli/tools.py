"""``export``, ``flops`` and ``demo``."""
from __future__ import annotations

import argparse
import json

from gankd.run import set_threads

from ..evaluation.flops import compression_report
from .options import _check_output_file, _fmt_count


def cmd_export(args: argparse.Namespace) -> int:
    from ..deploy.export import export_model_file

    _check_output_file(args.out, "export: OUT", "model.onnx" if args.format == "onnx" else "model.ts")
    record = export_model_file(args.model, args.out, fmt=args.format, optimize=False if args.plain else None,
                               layout=args.layout)
    print(json.dumps(record))
    return 0


def cmd_flops(args: argparse.Namespace) -> int:
    report = compression_report(args.dataset, image_size=args.image_size)
    if args.json:
        print(json.dumps({k: report[k] for k in ("teacher", "student", "params_ratio", "flops_ratio")}))
        return 0
    t, s = report["teacher"], report["student"]
    size = report["image_size"]
    print(f"{args.dataset} ({report['in_channels']} channel(s), {size}x{size}, generator only, 1 multiply-add = 1 "
          "flop)")
    key = "pyramid" if size != 32 else "widths"  # above 32x32 the blocks GANomaly's pyramid adds are shown too
    col = 14 if size == 32 else 22
    print(f"{'':10}{key:>{col}}{'params':>12}{'FLOPs':>12}")
    for who, counts in (("teacher", t), ("student", s)):
        widths = report[f"{who}_pyramid"] if size != 32 else report[f"{who}_widths"]
        print(f"{who:10}{'-'.join(map(str, widths)):>{col}}{_fmt_count(counts['params']):>12}"
              f"{_fmt_count(counts['flops']):>12}")
    print(f"{'ratio':10}{'':>{col}}{report['params_ratio']:>11.2f}x{report['flops_ratio']:>11.2f}x")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ..study.demo import print_demo_table, run_demo

    set_threads(args.threads)
    _check_output_file(args.json, "--json", "demo.json")
    result = run_demo(normal_class=args.normal_class, teacher_epochs=args.teacher_epochs,
                      student_epochs=args.student_epochs, batch_size=args.batch_size, lr=args.lr,
                      seed=args.seed, bn_mode=args.bn_mode, student_seeds=args.student_seeds,
                      verbose=not args.quiet)
    print_demo_table(result)
    if args.json:
        from ..experiment import save_json

        save_json(args.json, result)
        print(f"wrote {args.json}")
    return 0
