"""``gankd-ganomaly`` / ``python -m gankd_ganomaly``: FLOP counts, the demo, single runs."""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Sequence

import torch

from .flops import compression_report

DATASETS_WITH_STUDENTS = ("cifar10", "mnist", "fmnist")


def _fmt_count(n: float) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}K"


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


def _set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import print_demo_table, run_demo

    _set_threads(args.threads)
    result = run_demo(normal_class=args.normal_class, teacher_epochs=args.teacher_epochs,
                      student_epochs=args.student_epochs, batch_size=args.batch_size, lr=args.lr,
                      seed=args.seed, bn_mode=args.bn_mode, verbose=not args.quiet)
    print_demo_table(result)
    if args.json:
        from .experiment import save_json

        save_json(args.json, result)
        print(f"wrote {args.json}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .data import load_one_class
    from .experiment import RunConfig, build_gan, make_hooks, run, save_json

    _set_threads(args.threads)
    cfg = RunConfig(dataset=args.dataset, normal_class=args.normal_class, method=args.method, epochs=args.epochs,
                    batch_size=args.batch_size, lr=args.lr, seed=args.seed, bn_mode=args.bn_mode,
                    eval_every=args.eval_every, data_root=args.data_root, download=args.download,
                    device=args.device)
    data = load_one_class(cfg.dataset, cfg.normal_class, root=cfg.data_root, download=cfg.download)
    print(f"data: {data.source}; train {tuple(data.train.shape)}, test {tuple(data.test.shape)}", file=sys.stderr)
    teacher = None
    if cfg.method != "teacher" and cfg.schedule().needs_teacher:
        if not args.teacher:
            raise SystemExit(f"--teacher CHECKPOINT is required for method {cfg.method!r} "
                             "(train one with --method teacher --save PATH)")
        teacher = build_gan(make_hooks(cfg), cfg.teacher_widths, cfg.seed)
        teacher.load_state_dict(torch.load(args.teacher, map_location="cpu", weights_only=True))
    record, trained = run(cfg, data, teacher)
    print(f"{cfg.method} on {cfg.dataset} class {cfg.normal_class} ({data.class_name}): "
          f"AUROC (last epoch) {record['auroc_last']:.4f}, {record['wall_s']:.1f}s")
    if args.save:
        import io

        from gankd import atomic_write_bytes

        buffer = io.BytesIO()
        torch.save(trained.state_dict(), buffer)
        atomic_write_bytes(args.save, buffer.getvalue())
        print(f"wrote {args.save}")
    if args.json:
        save_json(args.json, record)
        print(f"wrote {args.json}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .data import DATASETS
    from .experiment import METHODS

    parser = argparse.ArgumentParser(prog="gankd-ganomaly", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("flops", help="teacher/student params and FLOPs (fvcore) and their ratios")
    p.add_argument("--dataset", choices=DATASETS_WITH_STUDENTS, required=True)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=cmd_flops)

    p = sub.add_parser("demo", help="the main job: teacher, student alone and P-KDGAN-II-23 on the "
                                    "embedded digits data; prints AUROC and compression")
    p.add_argument("--normal-class", type=int, default=None, help="digit used as the normal class")
    p.add_argument("--teacher-epochs", type=int, default=None)
    p.add_argument("--student-epochs", type=int, default=None, help="epochs per stage for students")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bn-mode", choices=("eval", "batch"), default="eval", help="batch norm at test time")
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch progress lines")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("train", help="train a teacher or distil a student with one method/schedule")
    p.add_argument("--dataset", choices=DATASETS, default="digits")
    p.add_argument("--normal-class", type=int, default=0)
    p.add_argument("--method", choices=METHODS, default="teacher",
                   help="teacher, student-alone, a KDGAN structure or a P-KDGAN schedule")
    p.add_argument("--epochs", type=int, default=15, help="epochs per stage")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=0.002)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bn-mode", choices=("eval", "batch"), default="eval", help="batch norm at test time")
    p.add_argument("--eval-every", type=int, default=1, help="measure test AUROC every N epochs")
    p.add_argument("--teacher", metavar="CKPT", help="teacher weights (state_dict) for distillation methods")
    p.add_argument("--save", metavar="CKPT", help="write the trained GAN's state_dict here")
    p.add_argument("--json", metavar="PATH", help="write the run record (config, AUROC per epoch, FLOPs)")
    p.add_argument("--data-root", help="dataset root (default: $GANKD_DATA_ROOT or ~/.cache/gankd/data)")
    p.add_argument("--download", action="store_true", help="download the dataset with torchvision if missing")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.set_defaults(func=cmd_train)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
