"""Acceptance check of "your own images" at image size 64 with colour pictures: CIFAR-10 automobiles as a folder of
PNG files, through the command line at ``--image-size 64``, against the same images through the Python API.

1. Writes ROOT/train/good = the first --train-images automobiles (class 1) of the CIFAR-10 train batches,
   ROOT/test/good = the automobiles and ROOT/test/other = the other classes of an evenly spaced subset of the test
   batch (every --test-step-th image), as 32x32 RGB PNG files.
2. Runs ``teacher --image-size 64``, ``distill --recipe recommended`` (the CIFAR-10 student 8-16-64; the size comes
   from the teacher's model file), ``evaluate --json`` and ``score`` on ``--dataset folder --data-root ROOT``
   (10% of train/good held out to calibrate the threshold): every image is resized 32 -> 64 (bilinear) and the
   networks carry GANomaly's extra pyramid block (teacher 64-128-256-512, student 8-16-64-128).
3. Trains the same teacher and student with the Python API on the same images loaded by
   ``load_one_class("cifar10", 1, root=..., image_size=64)`` (the same subset, in the folder's order,
   ``calibration_share=0.1``) and compares AUROC (must agree within 0.005) and threshold.

It is an equivalence check of the two paths at 64x64 (a few epochs on 500 images), not a measure of the detector.
Writes --out (JSON). Example::

    PYTHONPATH=. python scripts/own_images_cifar64_acceptance.py --cifar-root /work/main/data/cifar10-jpeg \\
        --scratch /tmp/own-images-cifar64 --out results/own_images_cifar64.json
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gankd  # noqa: E402
from gankd_ganomaly.cli import main as cli  # noqa: E402
from gankd_ganomaly.data import OneClassData, load_one_class  # noqa: E402
from gankd_ganomaly.data import builtin  # noqa: E402
from gankd_ganomaly.evaluation import anomaly_scores, auroc, rates_at_threshold  # noqa: E402
from gankd_ganomaly.experiment import RunConfig, make_hooks, run  # noqa: E402

NORMAL = 1  # automobile


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cifar-root", default="/work/main/data/cifar10-jpeg",
                   help="folder holding cifar-10-batches-py")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--train-images", type=int, default=500, help="the first N automobiles of the train batches")
    p.add_argument("--test-step", type=int, default=10, help="every N-th image of the test batch")
    p.add_argument("--teacher-epochs", type=int, default=2)
    p.add_argument("--student-epochs", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--scratch", default="/tmp/own-images-cifar64")
    p.add_argument("--out", default="results/own_images_cifar64.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from PIL import Image

    scratch = Path(args.scratch)
    shutil.rmtree(scratch, ignore_errors=True)
    root, runs = scratch / "cifar-automobile", scratch / "runs"
    batches = Path(args.cifar_root) / "cifar-10-batches-py"
    start = time.perf_counter()
    train_parts = []
    for name in (f"data_batch_{i}" for i in range(1, 6)):
        images, labels = builtin._read_cifar_batch(batches / name)
        train_parts.append(images[labels == NORMAL])
    train = np.concatenate(train_parts)[:args.train_images]  # (n, 3, 32, 32) uint8
    test_x, test_y = builtin._read_cifar_batch(batches / "test_batch")
    test_idx = np.arange(0, len(test_x), args.test_step)
    (root / "train" / "good").mkdir(parents=True)
    for i, image in enumerate(train):
        Image.fromarray(image.transpose(1, 2, 0)).save(root / "train" / "good" / f"{i:05d}.png")
    for i in test_idx:
        folder = root / "test" / ("good" if test_y[i] == NORMAL else "other")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(test_x[i].transpose(1, 2, 0)).save(folder / f"{i:05d}.png")
    write_s = time.perf_counter() - start

    # --- the folder, through the command line, at --image-size ---
    common = ["--dataset", "folder", "--data-root", str(root), "--seed", str(args.seed), "--quiet",
              "--threads", str(args.threads)]
    t0 = time.perf_counter()
    assert cli(["teacher", *common, "--image-size", str(args.image_size), "--epochs", str(args.teacher_epochs),
                "--out", str(runs / "teacher")]) == 0
    assert cli(["distill", "--recipe", "recommended", "--teacher", str(runs / "teacher"), *common,
                "--student-widths", "8,16,64", "--epochs", str(args.student_epochs),
                "--out", str(runs / "student")]) == 0
    assert cli(["evaluate", "--checkpoint", str(runs / "student"), "--json", str(runs / "eval.json"),
                "--threads", str(args.threads)]) == 0
    assert cli(["score", "--checkpoint", str(runs / "student"), "--output", str(runs / "scores.csv"),
                "--threads", str(args.threads)]) == 0
    assert cli(["export", str(runs / "student"), str(runs / "student.ts")]) == 0
    folder_s = time.perf_counter() - t0
    ev = json.loads((runs / "eval.json").read_text())
    teacher_rec = json.loads((runs / "teacher" / "record.json").read_text())
    student_rec = json.loads((runs / "student" / "record.json").read_text())
    with open(runs / "scores.csv") as f:
        rows = list(csv.DictReader(f))

    # --- the same images through the Python API (the built-in CIFAR-10 loader at image_size) ---
    full = load_one_class("cifar10", NORMAL, root=args.cifar_root, image_size=args.image_size)
    # the folder lists files by name (zero-padded indices): test/good first, then test/other
    order = np.concatenate([test_idx[test_y[test_idx] == NORMAL], test_idx[test_y[test_idx] != NORMAL]])
    api_data = OneClassData("cifar10", NORMAL, full.train[:args.train_images], full.test[order],
                            full.test_labels[order], f"CIFAR-10 batches at {args.cifar_root}, the same subset")
    base = dict(dataset="cifar10", normal_class=NORMAL, seed=args.seed, calibration_share=0.1,
                image_size=args.image_size)
    t0 = time.perf_counter()
    t_rec, teacher = run(RunConfig(method="teacher", epochs=args.teacher_epochs, **base), api_data, verbose=False)
    s_cfg = RunConfig(method="recommended", epochs=args.student_epochs, student_widths=(8, 16, 64), **base)
    s_rec, student = run(s_cfg, api_data, teacher, verbose=False)
    api_s = time.perf_counter() - t0
    scores = anomaly_scores(make_hooks(s_cfg), student, api_data.test)
    api_auroc = auroc(scores, api_data.test_labels)
    api_rates = rates_at_threshold(scores, api_data.test_labels, s_rec["threshold"]["value"])

    # the exported scorer (fast graph for the 64x64 pyramid) against the CLI's own scores
    scorer = torch.jit.load(str(runs / "student.ts"))
    folder_data = load_one_class("folder", root=root, image_size=args.image_size)
    with torch.inference_mode():
        exported = scorer(folder_data.test).double()
    csv_scores = torch.tensor([float(r["score"]) for r in rows], dtype=torch.float64)

    result = {
        "what": f"CIFAR-10 automobiles as a folder of 32x32 PNG files, at image size {args.image_size} (teacher, "
                "distill --recipe recommended, evaluate, score, export) vs the same images through the Python API "
                "(load_one_class('cifar10', 1, image_size=...)); an equivalence check of the two paths on a small "
                "subset and a few epochs, not a measure of the detector",
        "command": "PYTHONPATH=. python " + " ".join(["scripts/own_images_cifar64_acceptance.py", *sys.argv[1:]]),
        "data": str(batches) + (" (a lossy JPEG copy of CIFAR-10: LOSSY_JPEG_COPY)"
                                if (batches / "LOSSY_JPEG_COPY").exists() else ""),
        "image_size": args.image_size,
        "networks": {"teacher": student_rec["config"]["teacher_widths"], "student": [8, 16, 64],
                     "teacher_params": teacher_rec["params"], "teacher_flops": teacher_rec["flops"],
                     "student_params": student_rec["params"], "student_flops": student_rec["flops"]},
        "images": {"train_good": len(train), "test_good": int((test_y[test_idx] == NORMAL).sum()),
                   "test_other": int((test_y[test_idx] != NORMAL).sum()), "test_step": args.test_step,
                   "calibration_held_out": student_rec["threshold"]["calibration_images"], "write_png_s": write_s},
        "epochs": {"teacher": args.teacher_epochs, "student": args.student_epochs}, "seed": args.seed,
        "threads": args.threads,
        "folder": {"teacher_auroc": teacher_rec["auroc_last"], "student_auroc": ev["auroc"],
                   "threshold": ev["threshold"], "fpr_at_threshold": ev["fpr_at_threshold"],
                   "tpr_at_threshold": ev["tpr_at_threshold"], "wall_s": folder_s},
        "api": {"teacher_auroc": t_rec["auroc_last"], "student_auroc": api_auroc,
                "threshold": s_rec["threshold"]["value"], **api_rates, "wall_s": api_s},
        "target_fpr": student_rec["threshold"]["target_fpr"],
    }
    result["checks"] = {
        "student_auroc_difference": abs(ev["auroc"] - api_auroc),
        "teacher_auroc_difference": abs(teacher_rec["auroc_last"] - t_rec["auroc_last"]),
        "auroc_within_0.005": abs(ev["auroc"] - api_auroc) <= 0.005,
        "threshold_difference": abs(ev["threshold"] - s_rec["threshold"]["value"]),
        "images_identical": bool(torch.equal(folder_data.train, api_data.train)
                                 and torch.equal(folder_data.test, api_data.test)),
        "exported_vs_score_csv_max_abs": float((exported - csv_scores).abs().max()),
        "score_scale": float(csv_scores.abs().max()),
    }
    out = Path(args.out)
    gankd.atomic_write_text(out, json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["checks"]))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
