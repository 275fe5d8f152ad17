"""The image-to-image family measured over seeds: teacher / student alone / distilled, one JSON record per run.

Every run is a ``gankd train`` of the YAML files in ``examples/pix2pix/`` (``--set seed=S``; the distilled
student gets ``--set teacher.checkpoint=`` its seed's teacher). A run folder with a record is skipped; one
with only a checkpoint is resumed (``--resume``), so a killed driver continues where it stopped. Each trained
generator is then scored on the first ``--test-size`` test pairs (the same edges for every model): L1 and
PSNR to the target, and FD / KID / precision / recall (``gankd.generation_metrics``) in the penultimate
features of the Fashion-MNIST classifier of ``dcgan_grid.py`` (trained on its 6400-image training subset).
Example::

    python examples/pix2pix_grid.py --out results/generators
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from dcgan_quality import Classifier, classify, feature_scale, load_images, train_classifier  # noqa: E402
from pix2pix_family import DeployedUNet, l1_psnr, load_pairs, translate  # noqa: E402
from gankd import atomic_write_text  # noqa: E402
from gankd.generation_metrics import generation_metrics  # noqa: E402
from gankd.modelfile import load_model  # noqa: E402
from gankd_ganomaly.evaluation.flops import count_module  # noqa: E402

CONFIGS = {"teacher": "teacher.yaml", "student-alone": "student_alone.yaml", "distilled": "distilled.yaml"}
SAMPLE_COLUMNS = 16


def gankd_train(config: Path, out: Path, overrides: list[str], threads: int) -> None:
    """``gankd train`` in a subprocess, as a user runs it; resumes a folder that holds only a checkpoint."""
    if (out / "record.json").is_file():
        return
    resume = ["--resume"] if (out / "checkpoint.pt").is_file() else []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "gankd", "train", "--config", str(config), "--out", str(out), "--quiet", *resume,
           *[a for o in overrides for a in ("--set", o)]]
    print("$", " ".join(shlex.quote(c) for c in cmd), flush=True)
    subprocess.run(cmd, env=env, check=True)


def fmnist_judge(weights: Path, epochs: int = 5) -> Classifier:
    """The classifier of ``dcgan_grid.py`` for fmnist (its cached weights, or trained the same way)."""
    path = weights / "classifier-fmnist.pt"
    tr_x, tr_y, _, _ = load_images("fmnist", 6400, 0)
    clf = Classifier(1)
    if path.is_file():
        clf.load_state_dict(torch.load(path, weights_only=True))
        return clf.eval()
    clf = train_classifier(tr_x, tr_y, epochs, seed=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(clf.state_dict(), path)
    return clf


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--configs", type=Path, default=HERE / "pix2pix")
    p.add_argument("--test-size", type=int, default=1000)
    p.add_argument("--kid-subsets", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--set", dest="overrides", action="append", default=[], help="extra KEY=VALUE for every run")
    p.add_argument("--out", type=Path, default=Path("results/generators"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python " + " ".join(shlex.quote(x) for x in [sys.argv[0], *(argv if argv is not None else sys.argv[1:])])
    runs, records = args.out / "teachers" / "pix2pix", args.out / "pix2pix"  # run folders hold weights: gitignored
    pairs = load_pairs("fmnist", "test", args.test_size)
    edges, target = pairs[:, :1], pairs[:, 1:]
    clf = fmnist_judge(args.out / "teachers")
    real_features = classify(clf, target)[1]
    scale = feature_scale(real_features)  # one constant, as dcgan_grid.py: O(1) inner products for KID
    real_features = real_features / scale
    for seed in args.seeds:
        for method, config in CONFIGS.items():
            record_path = records / f"fmnist-s{seed}-{method}.json"
            if record_path.is_file():
                continue
            folder = runs / f"s{seed}-{method}"
            extra = [f"seed={seed}", *args.overrides]
            if method == "distilled":
                extra.append(f"teacher.checkpoint={runs / f's{seed}-teacher' / 'model.pt'}")
            gankd_train(args.configs / config, folder, extra, args.threads)
            gan, header = load_model(folder / "model.pt")
            images = translate(gan.generator, edges)
            run = json.loads((folder / "record.json").read_text())
            samples = ((images[:SAMPLE_COLUMNS, 0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
            record = {"family": "pix2pix", "dataset": "fmnist", "task": "Sobel edges -> image, 32x32", "seed": seed,
                      "method": method, "recipe": run["recipe"] or run["schedule"]["name"], **l1_psnr(images, target),
                      **generation_metrics(classify(clf, images)[1] / scale, real_features, kid_subsets=args.kid_subsets),
                      "feature_scale": scale,
                      **count_module(DeployedUNet(gan.generator), torch.zeros(1, 1, 32, 32)), "width": header["width"],
                      "test_pairs": len(pairs), "schedule": run["schedule"], "train_seconds": round(run["wall_s"], 1),
                      "config": f"examples/pix2pix/{config}", "overrides": extra, "samples_uint8": samples.tolist(),
                      "history": [{"structure": h["structure"], "epoch": h["epoch"], "metrics": h["metrics"]}
                                  for h in run["history"]], "command": command}
            atomic_write_text(record_path, json.dumps(record, indent=1) + "\n")
            print(f"seed {seed} {method:>14}: l1 {record['l1']:.4f} psnr {record['psnr']:.2f} fd {record['fd']:.2f} "
                  f"kid {record['kid']:.4f} MACs {record['flops']:,}", flush=True)
    real_path = records / "fmnist-real-targets.json"
    if not real_path.is_file():  # the floor of FD/KID at this test size: real training images vs the targets
        real = load_pairs("fmnist", "train", args.test_size, seed=1)[:, 1:]
        atomic_write_text(real_path, json.dumps({"family": "pix2pix", "dataset": "fmnist", "seed": None,
                                                 "method": "real-train", "recipe": None,
                                                 **generation_metrics(classify(clf, real)[1] / scale, real_features,
                                                                      kid_subsets=args.kid_subsets),
                                                 "feature_scale": scale}, indent=1) + "\n")


if __name__ == "__main__":
    main()
