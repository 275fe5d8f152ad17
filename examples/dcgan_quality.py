"""Offline quality of DCGAN generators distilled with gankd: teacher vs student-alone vs P-KDGAN-II-23.

Trains the three generators of ``dcgan_family`` on all classes of a dataset, then scores each with a
small CNN classifier trained on the real training split (nothing is downloaded):

- ``confidence``: mean max-softmax probability of generated samples (sharp, recognisable images);
- ``classes_covered``: classes that receive >= half their uniform share (5% of 10 classes) of the
  argmax predictions; ``effective_classes``: exp(entropy) of the predicted-class histogram (10 = balanced);
- ``IS``: exp(E_x KL(p(y|x) || p(y))), the Inception-Score formula with this classifier;
- ``MMD``: unbiased kernel MMD^2 with a Gaussian kernel (bandwidth: median pairwise distance of the real
  test features) between the classifier's penultimate features of generated images and of the real *test*
  split (lower is better; about 0 for real images).

A "real" reference row scores real training images the same way. Params/FLOPs (fvcore, one latent,
eval mode, multiply-add = 1 flop) count the deployed generator, i.e. without the training-only 1x1
projection. Example::

    python examples/dcgan_quality.py --dataset digits --teacher-epochs 20 --student-epochs 10 \\
        --out examples/results/dcgan_digits.json --grid examples/results/dcgan_digits.png
"""
from __future__ import annotations

import argparse
import copy
import json
import shlex
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dcgan_family import (LATENT_DIM, STUDENT_WIDTHS, TEACHER_WIDTHS, DCGANHooks,  # noqa: E402
                          DeployedGenerator, generate)
from gankd import DistillationEngine, OptimizerConfig, ProgressLogger, atomic_write_text, get_schedule, seed_everything  # noqa: E402
from gankd.batches import ShuffledBatches  # noqa: E402
from gankd_ganomaly.data import load_labelled  # noqa: E402
from gankd_ganomaly.evaluation.flops import count_module  # noqa: E402

ROWS = ("teacher", "student alone", "P-KDGAN-II-23")


# --- data: all classes, train and test splits, (N, 1, 32, 32) in [-1, 1] -----------------------------------------
def load_images(dataset: str, train_size: int | None = None, seed: int = 0, root: str | None = None):
    """``(train_x, train_y, test_x, test_y)`` of every class (``gankd_ganomaly.data.load_labelled``: digits'
    stratified 70/30 split, or the MNIST / Fashion-MNIST IDX files under ``root``), with a seeded train
    subset of ``train_size``."""
    if dataset not in ("digits", "mnist", "fmnist"):
        raise ValueError(f"dataset must be 'digits', 'mnist' or 'fmnist', got {dataset!r}")
    data = load_labelled(dataset, root=root)
    tr_x, tr_y = data.train, data.train_labels
    if train_size is not None and train_size < len(tr_x):
        keep = torch.randperm(len(tr_x), generator=torch.Generator().manual_seed(seed))[:train_size]
        tr_x, tr_y = tr_x[keep], tr_y[keep]
    return tr_x, tr_y, data.test, data.test_labels


# --- the judge: a small CNN trained on the real training split -----------------------------------------------------
class Classifier(nn.Module):
    def __init__(self, channels: int = 1, classes: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # 16x16
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),         # 8x8
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),         # 4x4
            nn.Flatten(), nn.Linear(64 * 16, 128), nn.ReLU())
        self.head = nn.Linear(128, classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(x)
        return self.head(features), features


def train_classifier(x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int = 0) -> Classifier:
    torch.manual_seed(seed)
    model = Classifier(x.shape[1])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    order = ShuffledBatches(torch.arange(len(x)), 64, seed=seed)  # batches of indices, reshuffled per epoch
    for _ in range(epochs):
        for batch in order:
            loss = F.cross_entropy(model(x[batch])[0], y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


@torch.no_grad()
def classify(model: Classifier, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(probabilities (N, K), features (N, 128)) in batches."""
    outs = [model(x[i:i + 512]) for i in range(0, len(x), 512)]
    return torch.cat([o[0] for o in outs]).softmax(1), torch.cat([o[1] for o in outs]).double()


def feature_scale(real_features: torch.Tensor) -> float:
    """One constant per judge: the root-mean-square of the real features. Every feature set is divided by it
    before FD/KID/precision-recall, so the KID polynomial kernel (x.y/d + 1)^3 sees O(1) inner products, as
    with Inception features (the classifier's ReLU features are tens of units large)."""
    return float(real_features.pow(2).mean().sqrt())


def median_bandwidth(x: torch.Tensor) -> float:
    """The median heuristic: the median pairwise Euclidean distance within ``x``."""
    d = torch.cdist(x, x)
    return float(d[~torch.eye(len(x), dtype=torch.bool)].median())


def kernel_mmd2(a: torch.Tensor, b: torch.Tensor, bandwidth: float) -> float:
    """Unbiased MMD^2 between feature sets with the Gaussian kernel exp(-|u-v|^2 / (2 bandwidth^2))."""
    n, m = len(a), len(b)
    kaa, kbb, kab = (torch.exp(-torch.cdist(p, q).pow(2) / (2 * bandwidth ** 2)) for p, q in ((a, a), (b, b), (a, b)))
    return float((kaa.sum() - n) / (n * (n - 1)) + (kbb.sum() - m) / (m * (m - 1)) - 2 * kab.mean())


def quality(model: Classifier, images: torch.Tensor, real_test_features: torch.Tensor,
            bandwidth: float) -> dict[str, float]:
    probs, features = classify(model, images)
    k = probs.shape[1]
    hist = torch.bincount(probs.argmax(1), minlength=k).double() / len(probs)
    entropy = -(hist[hist > 0] * hist[hist > 0].log()).sum()
    p_y = probs.double().mean(0)
    kl = (probs.double() * ((probs.double() + 1e-12).log() - (p_y + 1e-12).log())).sum(1).mean()
    return {"confidence": float(probs.max(1).values.mean()),
            "classes_covered": int((hist >= 0.5 / k).sum()),
            "effective_classes": float(entropy.exp()),
            "IS": float(kl.exp()),
            "MMD": kernel_mmd2(features, real_test_features, bandwidth)}


def count_generator(generator: nn.Module, latent_dim: int = LATENT_DIM) -> dict[str, int]:
    """Params and FLOPs of the deployed generator (no projection), as ``gankd_ganomaly.evaluation.flops`` counts."""
    return count_module(copy.deepcopy(DeployedGenerator(generator)), torch.zeros(1, latent_dim, 1, 1))


def save_grid(rows: dict[str, torch.Tensor], path: Path, scale: int = 2, label_width: int = 110) -> None:
    """One labelled row of images per model (images (n, C, 32, 32) in [-1, 1]), with Pillow."""
    from PIL import Image, ImageDraw

    n = max(len(v) for v in rows.values())
    tile, pad = 32 * scale, 2
    canvas = Image.new("L", (label_width + n * (tile + pad) + pad, len(rows) * (tile + pad) + pad), 255)
    draw = ImageDraw.Draw(canvas)
    for r, (name, images) in enumerate(rows.items()):
        top = pad + r * (tile + pad)
        draw.text((4, top + tile // 2 - 6), name, fill=0)
        pixels = ((images[:, 0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
        for c, img in enumerate(pixels):
            canvas.paste(Image.fromarray(img, "L").resize((tile, tile), Image.NEAREST), (label_width + pad + c * (tile + pad), top))
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)


def train(hooks: DCGANHooks, schedule: str, epochs: int, batches, teacher=None, student=None, lr: float = 2e-4):
    engine = DistillationEngine(hooks, teacher, student, callbacks=[ProgressLogger(prefix=f"[{schedule}] ")])
    history = engine.fit(get_schedule(schedule, epochs, OptimizerConfig(lr=lr, betas=(0.5, 0.999))), batches)
    return [{"structure": h["structure"], "epoch": h["epoch"], "seconds": round(h["seconds"], 2),
             "losses": {k: round(v, 4) for k, v in h["losses"].items() if "/" not in k}} for h in history]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", choices=("digits", "fmnist"), default="digits")
    p.add_argument("--teacher-epochs", type=int, default=20)
    p.add_argument("--student-epochs", type=int, default=10,
                   help="M: epochs per P-KDGAN-II-23 stage; student-alone trains 2M epochs (the same total)")
    p.add_argument("--train-size", type=int, default=10000, help="training images kept (fmnist subset)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--classifier-epochs", type=int, default=10)
    p.add_argument("--samples", type=int, default=1000, help="generated images scored per model")
    p.add_argument("--grid-columns", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("examples/results/dcgan_digits.json"))
    p.add_argument("--grid", type=Path, default=Path("examples/results/dcgan_digits.png"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    seed_everything(args.seed)

    tr_x, tr_y, te_x, te_y = load_images(args.dataset, args.train_size, args.seed)
    print(f"{args.dataset}: {len(tr_x)} training images (all classes), {len(te_x)} test images", file=sys.stderr)
    clf = train_classifier(tr_x, tr_y, args.classifier_epochs, args.seed)
    test_probs, test_features = classify(clf, te_x)
    clf_accuracy = float((test_probs.argmax(1) == te_y).double().mean())
    print(f"classifier test accuracy {clf_accuracy:.4f}", file=sys.stderr)
    bandwidth = median_bandwidth(test_features)

    batches = ShuffledBatches(tr_x, args.batch_size, seed=args.seed, drop_last=True)
    make_hooks = lambda: DCGANHooks(channels=tr_x.shape[1], seed=args.seed)  # noqa: E731
    builder = make_hooks()
    torch.manual_seed(args.seed)
    teacher = builder.build_gan(TEACHER_WIDTHS)
    torch.manual_seed(args.seed + 1)
    student_init = builder.build_gan(STUDENT_WIDTHS)  # both students start from these weights

    histories, times = {}, {}
    t0 = time.perf_counter()
    histories["teacher"] = train(make_hooks(), "teacher", args.teacher_epochs, batches, teacher=teacher, lr=args.lr)
    times["teacher"] = time.perf_counter() - t0
    alone = copy.deepcopy(student_init)
    t0 = time.perf_counter()
    histories["student alone"] = train(make_hooks(), "student-alone", 2 * args.student_epochs, batches,
                                       student=alone, lr=args.lr)
    times["student alone"] = time.perf_counter() - t0
    distilled = copy.deepcopy(student_init)
    t0 = time.perf_counter()
    histories["P-KDGAN-II-23"] = train(make_hooks(), "P-KDGAN-II-23", args.student_epochs, batches,
                                       teacher=copy.deepcopy(teacher), student=distilled, lr=args.lr)
    times["P-KDGAN-II-23"] = time.perf_counter() - t0

    eval_z = torch.randn(args.samples, LATENT_DIM, 1, 1, generator=torch.Generator().manual_seed(10_000 + args.seed))
    gens = {"teacher": teacher.generator, "student alone": alone.generator, "P-KDGAN-II-23": distilled.generator}
    widths = {"teacher": TEACHER_WIDTHS, "student alone": STUDENT_WIDTHS, "P-KDGAN-II-23": STUDENT_WIDTHS}
    rows = []
    for name, g in gens.items():
        rows.append({"model": name, "widths": list(widths[name]), **count_generator(g),
                     **quality(clf, generate(g, eval_z), test_features, bandwidth), "train_seconds": round(times[name], 1)})
    real = tr_x[torch.randperm(len(tr_x), generator=torch.Generator().manual_seed(1))[:args.samples]]
    reference = {"model": "real (train split)", **quality(clf, real, test_features, bandwidth)}
    save_grid({name: generate(g, eval_z[:args.grid_columns]) for name, g in gens.items()}, args.grid)

    header = f"{'model':<20}{'widths':>14}{'params':>10}{'GFLOPs':>9}{'conf':>7}{'covered':>9}{'eff.cls':>8}{'IS':>7}{'MMDx100':>9}"
    lines = [header, "-" * len(header)]
    for r in rows + [reference]:
        w = "-".join(map(str, r["widths"])) if "widths" in r else "-"
        params = f"{r['params']:,}" if "params" in r else "-"
        flops = f"{r['flops'] / 1e9:.4f}" if "flops" in r else "-"
        lines.append(f"{r['model']:<20}{w:>14}{params:>10}{flops:>9}{r['confidence']:>7.3f}{r['classes_covered']:>6}/10"
                     f"{r['effective_classes']:>8.2f}{r['IS']:>7.2f}{100 * r['MMD']:>9.2f}")
    table = "\n".join(lines)
    print(table)
    result = {
        "command": "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
        "dataset": args.dataset, "train_images": len(tr_x), "test_images": len(te_x),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "latent_dim": LATENT_DIM, "classifier_test_accuracy": clf_accuracy, "mmd_bandwidth": bandwidth,
        "params_ratio": rows[0]["params"] / rows[1]["params"], "flops_ratio": rows[0]["flops"] / rows[1]["flops"],
        "rows": rows, "real_reference": reference, "table": table,
        "grid": {"path": str(args.grid), "rows": list(ROWS), "columns": args.grid_columns,
                 "latents": f"the first {args.grid_columns} of the evaluation latents (seed {10_000 + args.seed})"},
        "history": histories, "wall_seconds": round(time.perf_counter() - start, 1),
        "threads": torch.get_num_threads(),
    }
    atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")
    print(f"wall time {result['wall_seconds']:.0f}s; wrote {args.out} and {args.grid}", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
