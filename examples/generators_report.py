"""Writes docs/generators.md (and its sample grids) from the records of dcgan_grid.py and pix2pix_grid.py.

Nothing is typed in by hand: every figure is read from ``results/generators/**.json``. Example::

    python examples/generators_report.py --records results/generators --out docs/generators.md \\
        --figures docs/figures
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

DCGAN_METHODS = ("teacher", "student-alone", "student-alone-tuned", "paper", "recommended")
PIX_METHODS = ("teacher", "student-alone", "distilled")
DATASET_NAMES = {"digits": "digits (scikit-learn)", "mnist": "MNIST", "fmnist": "Fashion-MNIST"}


def load(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []


def mean_std(values: list[float], fmt: str) -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return format(values[0], fmt) + " (1 run)"
    return f"{format(statistics.mean(values), fmt)} ± {format(statistics.stdev(values), fmt)}"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def save_grid(rows: list[tuple[str, list]], path: Path, scale: int = 2, label_width: int = 190) -> None:
    """Labelled rows of 32x32 grey images (nested lists of uint8), one row per (label, images)."""
    from PIL import Image, ImageDraw

    tile, pad = 32 * scale, 2
    n = max(len(images) for _, images in rows)
    canvas = Image.new("L", (label_width + n * (tile + pad) + pad, len(rows) * (tile + pad) + pad), 255)
    draw = ImageDraw.Draw(canvas)
    for r, (label, images) in enumerate(rows):
        top = pad + r * (tile + pad)
        draw.text((4, top + tile // 2 - 6), label, fill=0)
        for c, img in enumerate(torch.tensor(images, dtype=torch.uint8).numpy()):
            canvas.paste(Image.fromarray(img, "L").resize((tile, tile), Image.NEAREST),
                         (label_width + pad + c * (tile + pad), top))
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)


def paired(by: dict, a: str, b: str, metric: str, keys: list) -> tuple[list[tuple], int]:
    """(key, a's value, b's value) for every key both methods have, and how often a is lower."""
    pairs = [(k, by[(*k, a)][metric], by[(*k, b)][metric]) for k in keys if (*k, a) in by and (*k, b) in by]
    return pairs, sum(x < y for _, x, y in pairs)


def dcgan_section(records: Path, figures: Path, docs: Path) -> tuple[list[str], list[str]]:
    runs = [r for r in load(records / "dcgan") if r.get("seed") is not None]
    reals = {r["dataset"]: r for r in load(records / "dcgan") if r.get("method") == "real-train"}
    dev = load(records / "dcgan" / "dev")
    choice_path = records / "dcgan" / "choice.json"
    choice = json.loads(choice_path.read_text()) if choice_path.is_file() else None
    out: list[str] = ["## DCGAN: unconditional 32x32 generators", ""]
    criteria: list[str] = []
    if not runs:
        return out + ["No records yet.", ""], criteria
    by = {(r["dataset"], r["seed"], r["method"]): r for r in runs}
    datasets = [d for d in DATASET_NAMES if any(k[0] == d for k in by)]
    seeds = sorted({k[1] for k in by})
    any_run = runs[0]
    teacher = next(r for r in runs if r["method"] == "teacher")
    student = next((r for r in runs if r["method"] != "teacher"), None)
    out += [f"**Protocol.** Per (dataset, seed) one teacher (widths {'-'.join(map(str, teacher['widths']))}, "
            f"{teacher['params']:,} params, {teacher['flops']:,} MACs) is trained for {teacher['steps']} updates; "
            + (f"every student (widths {'-'.join(map(str, student['widths']))}, {student['params']:,} params, "
               f"{student['flops']:,} MACs: {teacher['flops'] / student['flops']:.1f}x fewer) starts from the same "
               f"initial weights and trains for {student['steps']} updates in all. " if student else "")
            + f"Each model generates {any_run['n_generated']} images from the same latents "
            f"({any_run['eval_latents']}) in eval mode; FD, KID (x1000 below; unbiased, polynomial kernel, 20 subsets "
            "of up to 1000) and precision/recall (k = 3) compare the penultimate features (128-d) of a CNN trained on "
            "the real training subset with those of the first real test images (the `real` row: real training "
            "images, the floor of each metric at this sample size). Params and MACs: fvcore, one latent, the "
            "deployed generator. Mean ± sample std over seeds " + ", ".join(map(str, seeds)) + ".", ""]
    for d in datasets:
        acc = next(r["classifier_test_accuracy"] for r in runs if r["dataset"] == d)
        out += [f"### {DATASET_NAMES[d]} (classifier test accuracy {acc:.3f})", ""]
        rows = []
        for m in DCGAN_METHODS:
            rs = [by[(d, s, m)] for s in seeds if (d, s, m) in by]
            if not rs:
                continue
            label = m + (f" ({rs[0]['recipe']})" if m == "recommended" else "") + (
                f" (lr {rs[0]['lr']:g})" if m.startswith("student-alone") else "")
            rows.append([label, str(len(rs)), mean_std([r["fd"] for r in rs], ".2f"),
                         mean_std([1000 * r["kid"] for r in rs], ".1f"), mean_std([r["precision"] for r in rs], ".3f"),
                         mean_std([r["recall"] for r in rs], ".3f"), f"{rs[0]['params']:,}", f"{rs[0]['flops']:,}"])
        if d in reals:
            r = reals[d]
            rows.append(["real (train vs test)", "-", f"{r['fd']:.2f}", f"{1000 * r['kid']:.1f}",
                         f"{r['precision']:.3f}", f"{r['recall']:.3f}", "-", "-"])
        out += table(["method", "runs", "FD", "KIDx1000", "precision", "recall", "params", "MACs"], rows) + [""]
    keys = [(d, s) for d in datasets for s in seeds]
    out += ["### Paired comparison over (dataset, seed)", "",
            "FD of the first method minus FD of the second, per pair (negative: the first is better).", ""]
    comparisons = [("recommended", "student-alone", 8), ("recommended", "student-alone-tuned", 7),
                   ("paper", "student-alone", None), ("recommended", "paper", None), ("recommended", "teacher", None)]
    rows = []
    for a, b, need in comparisons:
        pairs, wins = paired(by, a, b, "fd", keys)
        if not pairs:
            continue
        diffs = [x - y for _, x, y in pairs]
        rows.append([f"{a} vs {b}", f"{wins}/{len(pairs)}", f"{statistics.mean(diffs):+.2f}",
                     " ".join(f"{k[0]}/{k[1]}: {x - y:+.1f}" for k, x, y in pairs)])
        if need is not None:
            full = len(keys) == 9 and len(pairs) == 9
            verdict = "met" if wins >= need and full else "NOT met"
            short = f"; short by {need - wins}" if wins < need else ""
            criteria.append(f"- DCGAN: `{a}` has a lower FD than `{b}` in at least {need} of 9 (dataset, seed) "
                            f"pairs: **{verdict}** ({wins} of {len(pairs)} pairs measured{short}).")
    out += table(["comparison", "first lower", "mean difference", "per (dataset/seed)"], rows) + [""]
    if choice:
        out += ["### Development choices (seed " + ", ".join(map(str, choice["dev_seeds"])) + " only)", "",
                f"Rule: {choice['rule']}. The evaluation seeds played no part in either choice.", ""]
        dev_by = {(r["dataset"], r["method"]): r for r in dev}
        lrs = [f"student-alone-lr{lr:g}" for lr in choice["lr_grid"]]
        cols = lrs + list(choice["candidates"]) + ["teacher"]
        rows = [[DATASET_NAMES[d], *[f"{dev_by[(d, c)]['fd']:.2f}" if (d, c) in dev_by else "—" for c in cols]]
                for d in datasets]
        out += table(["FD on the development seed"] + [c.replace("student-alone-lr", "alone lr ") for c in cols], rows)
        out += ["", "Tuned learning rates: " + ", ".join(f"{DATASET_NAMES[d]} {lr:g}" for d, lr in choice["tuned_lr"].items())
                + ". Mean FD rank of the candidate recipes: " + ", ".join(f"{k} {v:.2f}" for k, v in
                                                                          choice["mean_fd_rank"].items())
                + f"; recommended: **{choice['recommended']}**.", ""]
    grid_rows = []
    for d in datasets:
        s = seeds[0]
        for m in DCGAN_METHODS:
            if (d, s, m) in by:
                grid_rows.append((f"{d} s{s} {m}", by[(d, s, m)]["samples_uint8"]))
    if grid_rows:
        png = figures / "generators_dcgan.png"
        save_grid(grid_rows, png)
        out += [f"Samples (seed {seeds[0]}, the first 16 evaluation latents, the same for every row of a dataset):",
                "", f"![DCGAN samples]({png.relative_to(docs).as_posix()})", ""]
    out += ["Commands: " + ", ".join(sorted({f"`{r['command']}`" for r in runs + dev})), ""]
    return out, criteria


def pix2pix_section(records: Path, figures: Path, docs: Path) -> tuple[list[str], list[str]]:
    runs = [r for r in load(records / "pix2pix") if r.get("seed") is not None]
    real = next((r for r in load(records / "pix2pix") if r.get("method") == "real-train"), None)
    out = ["## Image-to-image: pix2pix on Sobel edges -> Fashion-MNIST", ""]
    criteria: list[str] = []
    if not runs:
        return out + ["No records yet.", ""], criteria
    by = {(r["seed"], r["method"]): r for r in runs}
    seeds = sorted({k[0] for k in by})
    t = next((r for r in runs if r["method"] == "teacher"), None)
    s = next((r for r in runs if r["method"] != "teacher"), None)
    ratio = t["flops"] / s["flops"] if t and s else None
    out += ["**Protocol.** `gankd train` of `examples/pix2pix/{teacher,student_alone,distilled}.yaml` per seed; the "
            "distilled student reads its seed's teacher file, both students start from the same initial weights "
            "(seed + 1). Scored on the first " + str(runs[0]["test_pairs"]) + " test pairs (the same edges for every "
            "model): L1 (images in [-1, 1]) and PSNR (dB, per image in [0, 1], averaged) to the target; FD, KID "
            "(x1000), precision/recall against the targets' features, in the Fashion-MNIST classifier of the "
            "DCGAN section." + (f" Teacher/student MACs: {t['flops']:,} / {s['flops']:,} = {ratio:.1f}x." if ratio else ""),
            ""]
    rows = []
    for m in PIX_METHODS:
        rs = [by[(sd, m)] for sd in seeds if (sd, m) in by]
        if rs:
            rows.append([m + f" ({rs[0]['recipe']})", str(len(rs)), mean_std([r["l1"] for r in rs], ".4f"),
                         mean_std([r["psnr"] for r in rs], ".2f"), mean_std([r["fd"] for r in rs], ".2f"),
                         mean_std([1000 * r["kid"] for r in rs], ".1f"), mean_std([r["precision"] for r in rs], ".3f"),
                         mean_std([r["recall"] for r in rs], ".3f"), f"{rs[0]['params']:,}", f"{rs[0]['flops']:,}"])
    if real:
        rows.append(["real (train vs test targets)", "-", "-", "-", f"{real['fd']:.2f}", f"{1000 * real['kid']:.1f}",
                     f"{real['precision']:.3f}", f"{real['recall']:.3f}", "-", "-"])
    out += table(["method", "runs", "L1", "PSNR", "FD", "KIDx1000", "precision", "recall", "params", "MACs"], rows)
    out += ["", "Paired, distilled minus student alone, per seed (negative: distilled is better on L1 and FD):", ""]
    rows, wins = [], {}
    for metric in ("l1", "fd", "psnr"):
        pairs, lower = paired({(k[0], k[1]): v for k, v in by.items()}, "distilled", "student-alone", metric,
                              [(sd,) for sd in seeds])
        wins[metric] = (lower, len(pairs))
        rows.append([metric, " ".join(f"s{k[0]}: {x - y:+.4f}" for k, x, y in pairs)])
    out += table(["metric", "per seed"], rows) + [""]
    for metric in ("fd", "l1"):
        lower, n = wins[metric]
        ok = lower == n == 3
        criteria.append(f"- Image-to-image: the distilled student beats the student alone on {metric.upper()} in every "
                        f"seed: **{'met' if ok else 'NOT met'}** ({lower} of {n} seeds).")
    if ratio:
        criteria.append(f"- Image-to-image: student at about 1/10 of the teacher's MACs: **{ratio:.1f}x** fewer.")
    if (seeds[0], "teacher") in by:
        from pix2pix_family import load_pairs

        pairs = load_pairs("fmnist", "test", 16)
        to_uint8 = lambda x: ((x[:, 0] + 1) * 127.5).round().to(torch.uint8).tolist()  # noqa: E731
        grid = [("input edges", to_uint8(pairs[:, :1])), ("target", to_uint8(pairs[:, 1:]))]
        grid += [(f"s{seeds[0]} {m}", by[(seeds[0], m)]["samples_uint8"]) for m in PIX_METHODS if (seeds[0], m) in by]
        png = figures / "generators_pix2pix.png"
        save_grid(grid, png)
        out += [f"Samples (seed {seeds[0]}, the first 16 test pairs):", "",
                f"![pix2pix samples]({png.relative_to(docs).as_posix()})", ""]
    out += ["Commands: " + ", ".join(sorted({f"`{r['command']}`" for r in runs})), ""]
    return out, criteria


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--records", type=Path, default=Path("results/generators"))
    p.add_argument("--out", type=Path, default=Path("docs/generators.md"))
    p.add_argument("--figures", type=Path, default=Path("docs/figures"))
    p.add_argument("--notes", type=Path, default=None, help="a Markdown file appended as the last section")
    args = p.parse_args(argv)
    docs = args.out.parent
    dcgan, c1 = dcgan_section(args.records, args.figures, docs)
    pix, c2 = pix2pix_section(args.records, args.figures, docs)
    lines = ["# Distilling image generators: DCGAN and pix2pix", "",
             f"Generated by `python examples/generators_report.py --records {args.records} --out {args.out} "
             f"--figures {args.figures}` from the run records in `{args.records}` (one JSON per run). "
             "Nothing is typed in by hand. The metrics are `gankd.generation_metrics` on the penultimate features "
             "of a classifier trained on each dataset's real training subset (no Inception weights: these figures "
             "are comparable with each other, not with published FIDs).", "",
             "## Criteria", "", *(c1 + c2), "", *dcgan, *pix]
    if args.notes is not None and args.notes.is_file():
        lines += [args.notes.read_text().rstrip(), ""]
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
