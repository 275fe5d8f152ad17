"""Acceptance check of "your own images": MNIST digit 3 as a folder of PNG files, through the command
line, against the same images loaded from the IDX files.

1. Writes ROOT/train/good = the 3s among the first --train-images MNIST train images (default: all 60,000, so
   6,131 3s), ROOT/test/good = the 3s among the first --test-images test images (default all 10,000: 1,010 3s),
   ROOT/test/other = every --other-stride-th of the other digits of those, as 28x28 PNG files.
2. For each of --seeds runs ``teacher``, ``distill --recipe RECIPE``, ``evaluate --json`` and ``score`` on
   ``--dataset folder --data-root ROOT`` (10% of train/good held out to calibrate the threshold, target 1% FPR).
3. For each of --idx-seeds trains the same teacher and student with the Python API on the same images read from
   the IDX files (dataset "mnist", the same subset, ``calibration_share=0.1``) and compares: AUROC (must agree
   within 0.005) and threshold. For every seed: the false-positive rate at the threshold on test/good (within 2
   points of the 1% target?), and a diagnostic of the threshold: the expected rate j / (n + 1) if test 3s were
   exchangeable with the held-out train 3s, and the AUROC of test/good against the held-out train/good images
   (0.5: no shift between them; above 0.5: test 3s score higher).

Writes --out (JSON). Example (full data, 3 seeds, 3+3 epochs, IDX for seed 0; about 30 minutes at 1 thread)::

    PYTHONPATH=. python scripts/own_images_acceptance.py --mnist-root ../shared/datasets \\
        --scratch /tmp/own-images --seeds 0 1 2 --idx-seeds 0 --out results/own_images_mnist3_full.json
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
from gankd_ganomaly.data import builtin as data_module  # noqa: E402
from gankd_ganomaly.cli import main as cli  # noqa: E402
from gankd_ganomaly.data import OneClassData  # noqa: E402
from gankd_ganomaly.evaluation import anomaly_scores, auroc, rates_at_threshold, threshold_rank  # noqa: E402
from gankd_ganomaly.experiment import RunConfig, make_hooks, run  # noqa: E402


def _idx(root: Path):
    files = data_module._find_idx_files(root / "MNIST" / "raw")
    if files is None:
        raise SystemExit(f"MNIST IDX files not found under {root}/MNIST/raw")
    read = data_module._read_idx
    return (read(files[0], data_module._IDX_IMAGES_MAGIC), read(files[1], data_module._IDX_LABELS_MAGIC),
            read(files[2], data_module._IDX_IMAGES_MAGIC), read(files[3], data_module._IDX_LABELS_MAGIC))


def _folder_run(args, root: Path, runs: Path, seed: int) -> dict:
    """teacher, distill, evaluate --json, score through the command line; the figures and the threshold check."""
    from gankd_ganomaly.evaluation import calibrate_threshold, calibration_split
    from gankd_ganomaly.experiment import load_model
    from gankd_ganomaly.folder import load_folder

    common = ["--dataset", "folder", "--data-root", str(root), "--seed", str(seed), "--quiet",
              "--threads", str(args.threads)]
    t0 = time.perf_counter()
    assert cli(["teacher", *common, "--epochs", str(args.teacher_epochs), "--out", str(runs / "teacher")]) == 0
    assert cli(["distill", "--recipe", args.recipe, "--teacher", str(runs / "teacher"), *common,
                "--epochs", str(args.student_epochs), "--out", str(runs / "student")]) == 0
    assert cli(["evaluate", "--checkpoint", str(runs / "student"), "--json", str(runs / "eval.json"),
                "--plots", str(runs / "plots"), "--threads", str(args.threads)]) == 0
    assert cli(["score", "--checkpoint", str(runs / "student"), "--output", str(runs / "scores.csv"),
                "--threads", str(args.threads)]) == 0
    wall = time.perf_counter() - t0
    ev = json.loads((runs / "eval.json").read_text())
    teacher_rec = json.loads((runs / "teacher" / "record.json").read_text())
    student_rec = json.loads((runs / "student" / "record.json").read_text())
    with open(runs / "scores.csv") as f:
        rows = list(csv.DictReader(f))
    normal = [r for r in rows if r["label"] == "0"]
    score_fpr = sum(int(r["is_novel"]) for r in normal) / len(normal)

    # diagnostic: the held-out train 3s the threshold was calibrated on against the test 3s (no tuning: only read)
    gan, header = load_model(runs / "student")
    cfg = RunConfig.from_dict(header["config"])
    data = load_folder(root)
    _, calib_idx = calibration_split(len(data.train), cfg.resolved_calibration_share, cfg.seed)
    hooks = make_hooks(cfg)
    calib = anomaly_scores(hooks, gan, data.train[calib_idx], bn_mode=cfg.bn_mode).double()
    test = anomaly_scores(hooks, gan, data.test, bn_mode=cfg.bn_mode).double()
    good = test[data.test_labels == 0]
    n = len(calib)
    assert header["threshold"]["value"] == calibrate_threshold(calib, header["threshold"]["target_fpr"])
    j = threshold_rank(n, header["threshold"]["target_fpr"])
    fpr = ev["fpr_at_threshold"]
    m = len(good)
    return {
        "seed": seed,
        "teacher_auroc": teacher_rec["auroc_last"], "teacher_auroc_per_epoch": teacher_rec["auroc_per_epoch"],
        "student_auroc": ev["auroc"], "student_auroc_per_epoch": student_rec["auroc_per_epoch"],
        "threshold": ev["threshold"], "fpr_at_threshold": fpr, "tpr_at_threshold": ev["tpr_at_threshold"],
        "false_positives": round(fpr * m), "test_good": m, "score_csv_fpr_on_test_good": score_fpr,
        "calibration_images": n, "threshold_rank_from_top": j,
        "fpr_on_calibration": student_rec["threshold"]["fpr_on_calibration"],
        "expected_fpr_if_exchangeable": j / (n + 1),
        "diagnostic": {
            "auroc_test_good_vs_held_out_train_good": auroc(torch.cat([calib, good]), torch.cat(
                [torch.zeros(n, dtype=torch.long), torch.ones(m, dtype=torch.long)])),
            "median_score_held_out_train_good": float(calib.median()),
            "median_score_test_good": float(good.median()),
            "q99_held_out_train_good": float(np.quantile(calib.numpy(), 0.99)),
            "q99_test_good": float(np.quantile(good.numpy(), 0.99)),
            "fpr_binomial_sd_at_target": float(np.sqrt(0.01 * 0.99 / m)),
        },
        "wall_s": wall,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mnist-root", default="../shared/datasets")
    p.add_argument("--digit", type=int, default=3)
    p.add_argument("--train-images", type=int, default=60000, help="first N train images (default all: 6,131 3s)")
    p.add_argument("--test-images", type=int, default=10000, help="first N test images (default all: 1,010 3s)")
    p.add_argument("--other-stride", type=int, default=1,
                   help="keep every K-th of the other digits' test images as test/other (default 1: all)")
    p.add_argument("--teacher-epochs", type=int, default=3)
    p.add_argument("--student-epochs", type=int, default=3)
    p.add_argument("--recipe", default="recommended")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--idx-seeds", type=int, nargs="*", default=None,
                   help="seeds also trained from the IDX files for the AUROC comparison (default: all --seeds)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--scratch", default="/tmp/own-images")
    p.add_argument("--out", default="results/own_images_mnist3.json")
    args = p.parse_args(argv)
    idx_seeds = args.seeds if args.idx_seeds is None else args.idx_seeds
    torch.set_num_threads(args.threads)
    from PIL import Image

    scratch = Path(args.scratch)
    shutil.rmtree(scratch, ignore_errors=True)
    root = scratch / "mnist3"
    train_x, train_y, test_x, test_y = _idx(Path(args.mnist_root))
    train_keep = np.flatnonzero(train_y[:args.train_images] == args.digit)
    first = np.arange(args.test_images)
    test_idx = np.sort(np.concatenate([first[test_y[first] == args.digit],
                                       first[test_y[first] != args.digit][::args.other_stride]]))
    start = time.perf_counter()
    for i in train_keep:
        (root / "train" / "good").mkdir(parents=True, exist_ok=True)
        Image.fromarray(train_x[i]).save(root / "train" / "good" / f"{i:05d}.png")
    for i in test_idx:
        folder = root / "test" / ("good" if test_y[i] == args.digit else "other")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(test_x[i]).save(folder / f"{i:05d}.png")
    write_s = time.perf_counter() - start

    to = data_module.to_model_range
    # the folder lists files by name (zero-padded indices): test/good first, then test/other
    test_order = np.concatenate([test_idx[test_y[test_idx] == args.digit], test_idx[test_y[test_idx] != args.digit]])
    idx_data = OneClassData("mnist", args.digit, to(train_x[train_keep][:, None], 255.0),
                            to(test_x[test_order][:, None], 255.0),
                            torch.from_numpy((test_y[test_order] != args.digit).astype(np.int64)),
                            f"MNIST IDX subset ({len(train_keep)} train {args.digit}s, {len(test_order)} test)")

    per_seed = []
    for seed in args.seeds:
        folder = _folder_run(args, root, scratch / f"runs-seed{seed}", seed)
        if seed in idx_seeds:
            # --- the same images from the IDX files, through the Python API ---
            base = dict(dataset="mnist", normal_class=args.digit, seed=seed, calibration_share=0.1)
            t0 = time.perf_counter()
            t_rec, teacher = run(RunConfig(method="teacher", epochs=args.teacher_epochs, **base), idx_data,
                                 verbose=False)
            s_cfg = RunConfig(method=args.recipe, epochs=args.student_epochs, **base)
            s_rec, student = run(s_cfg, idx_data, teacher, verbose=False)
            scores = anomaly_scores(make_hooks(s_cfg), student, idx_data.test)
            idx_auroc = auroc(scores, idx_data.test_labels)
            folder["idx"] = {"teacher_auroc": t_rec["auroc_last"], "student_auroc": idx_auroc,
                             "threshold": s_rec["threshold"]["value"],
                             **rates_at_threshold(scores, idx_data.test_labels, s_rec["threshold"]["value"]),
                             "wall_s": time.perf_counter() - t0}
            folder["student_auroc_difference_folder_vs_idx"] = abs(folder["student_auroc"] - idx_auroc)
            folder["teacher_auroc_difference_folder_vs_idx"] = abs(folder["teacher_auroc"] - t_rec["auroc_last"])
        per_seed.append(folder)
        print(json.dumps({k: v for k, v in folder.items() if not isinstance(v, (dict, list))}), flush=True)

    target = 0.01
    fprs = [r["fpr_at_threshold"] for r in per_seed]
    diffs = [r["student_auroc_difference_folder_vs_idx"] for r in per_seed if "idx" in r]
    result = {
        "what": f"MNIST digit {args.digit} as a folder of PNG files (teacher, distill --recipe {args.recipe}, "
                "evaluate --json, score) vs the same images from the IDX files (Python API)",
        "command": "PYTHONPATH=. python " + " ".join(["scripts/own_images_acceptance.py", *sys.argv[1:]]),
        "images": {"train_good": len(train_keep), "test_good": int((test_y[test_idx] == args.digit).sum()),
                   "test_other": int((test_y[test_idx] != args.digit).sum()), "other_stride": args.other_stride,
                   "calibration_held_out": per_seed[0]["calibration_images"], "write_png_s": write_s},
        "epochs": {"teacher": args.teacher_epochs, "student": args.student_epochs}, "recipe": args.recipe,
        "threads": args.threads, "target_fpr": target,
        "estimator": "j-th largest held-out score, j = floor(target_fpr * (n + 1)) (evaluation.calibrate_threshold)",
        "per_seed": per_seed,
    }
    result["checks"] = {
        "fpr_at_threshold_per_seed": fprs, "fpr_mean": float(np.mean(fprs)),
        "fpr_within_2_points_every_seed": all(abs(f - target) <= 0.02 for f in fprs),
        "student_auroc_difference_folder_vs_idx": diffs,
        "auroc_within_0.005": all(d <= 0.005 for d in diffs) if diffs else None,
        "teacher_auroc_above_0.5_every_seed": all(r["teacher_auroc"] > 0.5 for r in per_seed),
    }
    out = Path(args.out)
    gankd.atomic_write_text(out, json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["checks"]))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
