"""The paper's CIFAR-10 experiment for one normal class: teacher, then a distilled student.

    python examples/pkdgan_cifar10.py --data-root DIR --normal-class 1 --epochs 15
    python examples/pkdgan_cifar10.py --data-root DIR --download            # fetch with torchvision

DIR holds ``cifar-10-batches-py/`` (the official python batches). The paper's budget is
``--batch-size 1 --epochs 500 --lr 0.002``; the defaults here are a CPU-sized budget.
Results (teacher and student records, configs, per-epoch AUROC) go to ``--out``.
"""
from __future__ import annotations

import argparse
import dataclasses
import io
from pathlib import Path

import torch

from gankd import atomic_write_bytes
from gankd_ganomaly.data import dataset_spec, load_one_class
from gankd_ganomaly.experiment import METHODS, RunConfig, run, save_json


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", default=None, help="folder containing cifar-10-batches-py/")
    p.add_argument("--download", action="store_true", help="download CIFAR-10 with torchvision if missing")
    p.add_argument("--normal-class", type=int, default=1, help="0-9: " + ", ".join(dataset_spec("cifar10").class_names))
    p.add_argument("--schedule", choices=[m for m in METHODS if m != "teacher"], default="P-KDGAN-II-23")
    p.add_argument("--teacher-epochs", type=int, default=15)
    p.add_argument("--epochs", type=int, default=15, help="student epochs per stage")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.0002)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bn-mode", choices=("eval", "batch"), default="eval", help="batch norm at test time")
    p.add_argument("--eval-every", type=int, default=1, help="test AUROC every N epochs (and at each stage end)")
    p.add_argument("--max-train-images", type=int, default=None, help="use only the first N normal images")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", type=Path, default=Path("runs/pkdgan_cifar10"))
    args = p.parse_args()

    data = load_one_class("cifar10", args.normal_class, root=args.data_root, download=args.download)
    if args.max_train_images:
        data = dataclasses.replace(data, train=data.train[: args.max_train_images])
    print(f"{data.source}: class {data.class_name}, train {tuple(data.train.shape)}, test {tuple(data.test.shape)}")
    base = RunConfig(dataset="cifar10", normal_class=args.normal_class, method="teacher",
                     epochs=args.teacher_epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                     bn_mode=args.bn_mode, eval_every=args.eval_every, data_root=args.data_root,
                     download=args.download, device=args.device)
    teacher_record, teacher = run(base, data, log_prefix="[teacher] ")
    buffer = io.BytesIO()
    torch.save(teacher.state_dict(), buffer)
    atomic_write_bytes(args.out / "teacher.pt", buffer.getvalue())
    student_record, _ = run(base.replace(method=args.schedule, epochs=args.epochs), data, teacher,
                            log_prefix=f"[{args.schedule}] ")
    for name, record in (("teacher", teacher_record), (args.schedule, student_record)):
        save_json(args.out / f"{name}.json", record)
        print(f"{name:14} AUROC(last epoch) {record['auroc_last']:.4f}  params {record['params']:,}  "
              f"FLOPs {record['flops']:,}  {record['wall_s']:.0f}s")
    print(f"FLOPs ratio {teacher_record['flops'] / student_record['flops']:.2f}x; records in {args.out}/")


if __name__ == "__main__":
    main()
