"""Acceptance check of "your own images" (issue 16): MNIST digit 3 as a folder of PNG files, through the command
line, against the same images loaded from the IDX files.

1. Writes ROOT/train/good = the 3s among the first --train-images MNIST train images, ROOT/test/good = the 3s
   among the first --test-images test images, ROOT/test/other = the other digits of those, as 28x28 PNG files.
2. Runs ``teacher``, ``distill --recipe recommended``, ``evaluate --json`` and ``score`` on
   ``--dataset folder --data-root ROOT`` (10% of train/good held out to calibrate the threshold, target 1% FPR).
3. Trains the same teacher and student with the Python API on the same images read from the IDX files
   (dataset "mnist", the same subset, ``calibration_share=0.1``) and compares: AUROC (must agree within 0.005),
   threshold, and the false-positive rate at the threshold on the test split's normal images (within 2 points
   of the 1% target).

Writes --out (JSON). Example (about two minutes at 1 thread)::

    PYTHONPATH=. python scripts/own_images_acceptance.py --mnist-root ../shared/datasets \\
        --scratch /tmp/own-images --out results/own_images_mnist3.json
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

from gankd_ganomaly.data import builtin as data_module  # noqa: E402
from gankd_ganomaly.cli import main as cli  # noqa: E402
from gankd_ganomaly.data import OneClassData  # noqa: E402
from gankd_ganomaly.evaluation import anomaly_scores, auroc, rates_at_threshold  # noqa: E402
from gankd_ganomaly.experiment import RunConfig, make_hooks, run  # noqa: E402


def _idx(root: Path):
    files = data_module._find_idx_files(root / "MNIST" / "raw")
    if files is None:
        raise SystemExit(f"MNIST IDX files not found under {root}/MNIST/raw")
    read = data_module._read_idx
    return (read(files[0], data_module._IDX_IMAGES_MAGIC), read(files[1], data_module._IDX_LABELS_MAGIC),
            read(files[2], data_module._IDX_IMAGES_MAGIC), read(files[3], data_module._IDX_LABELS_MAGIC))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mnist-root", default="../shared/datasets")
    p.add_argument("--digit", type=int, default=3)
    p.add_argument("--train-images", type=int, default=5000, help="first N train images (their 3s: ~500)")
    p.add_argument("--test-images", type=int, default=2000)
    p.add_argument("--teacher-epochs", type=int, default=3)
    p.add_argument("--student-epochs", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--scratch", default="/tmp/own-images")
    p.add_argument("--out", default="results/own_images_mnist3.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from PIL import Image

    scratch = Path(args.scratch)
    shutil.rmtree(scratch, ignore_errors=True)
    root, runs = scratch / "mnist3", scratch / "runs"
    train_x, train_y, test_x, test_y = _idx(Path(args.mnist_root))
    train_keep = np.flatnonzero(train_y[:args.train_images] == args.digit)
    test_idx = np.arange(args.test_images)
    start = time.perf_counter()
    for i in train_keep:
        (root / "train" / "good").mkdir(parents=True, exist_ok=True)
        Image.fromarray(train_x[i]).save(root / "train" / "good" / f"{i:05d}.png")
    for i in test_idx:
        folder = root / "test" / ("good" if test_y[i] == args.digit else "other")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(test_x[i]).save(folder / f"{i:05d}.png")
    write_s = time.perf_counter() - start

    # --- the folder, through the command line ---
    common = ["--dataset", "folder", "--data-root", str(root), "--seed", str(args.seed), "--quiet",
              "--threads", str(args.threads)]
    t0 = time.perf_counter()
    assert cli(["teacher", *common, "--epochs", str(args.teacher_epochs), "--out", str(runs / "teacher")]) == 0
    assert cli(["distill", "--recipe", "recommended", "--teacher", str(runs / "teacher"), *common,
                "--epochs", str(args.student_epochs), "--out", str(runs / "student")]) == 0
    assert cli(["evaluate", "--checkpoint", str(runs / "student"), "--json", str(runs / "eval.json"),
                "--plots", str(runs / "plots"), "--threads", str(args.threads)]) == 0
    assert cli(["score", "--checkpoint", str(runs / "student"), "--output", str(runs / "scores.csv"),
                "--threads", str(args.threads)]) == 0
    folder_s = time.perf_counter() - t0
    ev = json.loads((runs / "eval.json").read_text())
    teacher_rec = json.loads((runs / "teacher" / "record.json").read_text())
    student_rec = json.loads((runs / "student" / "record.json").read_text())
    with open(runs / "scores.csv") as f:
        rows = list(csv.DictReader(f))
    normal = [r for r in rows if r["label"] == "0"]
    score_fpr = sum(int(r["is_novel"]) for r in normal) / len(normal)

    # --- the same images from the IDX files, through the Python API ---
    to = data_module.to_model_range
    # the folder lists files by name (zero-padded indices): test/good first, then test/other
    test_order = np.concatenate([test_idx[test_y[test_idx] == args.digit], test_idx[test_y[test_idx] != args.digit]])
    idx_data = OneClassData("mnist", args.digit, to(train_x[train_keep][:, None], 255.0),
                            to(test_x[test_order][:, None], 255.0),
                            torch.from_numpy((test_y[test_order] != args.digit).astype(np.int64)),
                            f"MNIST IDX subset ({len(train_keep)} train {args.digit}s, {len(test_order)} test)")
    base = dict(dataset="mnist", normal_class=args.digit, seed=args.seed, calibration_share=0.1)
    t0 = time.perf_counter()
    t_rec, teacher = run(RunConfig(method="teacher", epochs=args.teacher_epochs, **base), idx_data, verbose=False)
    s_cfg = RunConfig(method="recommended", epochs=args.student_epochs, **base)
    s_rec, student = run(s_cfg, idx_data, teacher, verbose=False)
    idx_s = time.perf_counter() - t0
    scores = anomaly_scores(make_hooks(s_cfg), student, idx_data.test)
    idx_auroc = auroc(scores, idx_data.test_labels)
    idx_rates = rates_at_threshold(scores, idx_data.test_labels, s_rec["threshold"]["value"])

    target = student_rec["threshold"]["target_fpr"]
    result = {
        "what": "MNIST digit 3 as a folder of PNG files (teacher, distill --recipe recommended, evaluate, score) vs "
                "the same images from the IDX files (Python API)",
        "command": "PYTHONPATH=. python " + " ".join(["scripts/own_images_acceptance.py", *sys.argv[1:]]),
        "images": {"train_good": len(train_keep), "test_good": int((test_y[test_idx] == args.digit).sum()),
                   "test_other": int((test_y[test_idx] != args.digit).sum()),
                   "calibration_held_out": student_rec["threshold"]["calibration_images"],
                   "write_png_s": write_s},
        "epochs": {"teacher": args.teacher_epochs, "student": args.student_epochs}, "seed": args.seed,
        "folder": {"teacher_auroc": teacher_rec["auroc_last"], "student_auroc": ev["auroc"],
                   "threshold": ev["threshold"], "fpr_at_threshold": ev["fpr_at_threshold"],
                   "tpr_at_threshold": ev["tpr_at_threshold"], "score_csv_fpr_on_test_good": score_fpr,
                   "fpr_on_calibration": student_rec["threshold"]["fpr_on_calibration"], "wall_s": folder_s},
        "idx": {"teacher_auroc": t_rec["auroc_last"], "student_auroc": idx_auroc,
                "threshold": s_rec["threshold"]["value"], **idx_rates, "wall_s": idx_s},
        "target_fpr": target,
    }
    result["checks"] = {
        "student_auroc_difference": abs(result["folder"]["student_auroc"] - idx_auroc),
        "teacher_auroc_difference": abs(result["folder"]["teacher_auroc"] - t_rec["auroc_last"]),
        "auroc_within_0.005": abs(result["folder"]["student_auroc"] - idx_auroc) <= 0.005,
        "test_fpr_minus_target": ev["fpr_at_threshold"] - target,
        "fpr_within_2_points": abs(ev["fpr_at_threshold"] - target) <= 0.02,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["checks"]))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
