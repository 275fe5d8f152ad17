"""Load time of a folder dataset of 5,000 images: decoded from the files (cold) vs read from the cache.

Writes 5,000 PNG files per kind under a scratch folder (default /tmp/gankd-folder-bench, deleted afterwards
unless --keep): MNIST's first 5,000 train images (28x28, gray, 8-bit) and CIFAR-10's first 5,000 train images
(32x32, colour), as ROOT/train/good/*.png, then times ``gankd_ganomaly.data.folder.load_folder``:

- ``decode_s``: ``cache=False``, every file decoded (the median of --repeats runs);
- ``first_load_s``: the first load with the cache on: decoding plus writing ROOT/.gankd-cache/<key>.npz;
- ``cached_s``: later loads (the median of --repeats): listing and stat-ing the files, reading the .npz.

The files were just written, so they are in the OS page cache: "cold" here means not yet decoded by gankd,
not read from a cold disk. Run::

    PYTHONPATH=. python benchmarks/folder_load.py --mnist-root ../shared/datasets \\
        --cifar-root data/cifar10-jpeg --out benchmarks/results/folder_load.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch


def _write(root: Path, images: np.ndarray) -> float:
    from PIL import Image

    folder = root / "train" / "good"
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i:05d}.png")
    return time.perf_counter() - start


def _time(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def measure(root: Path, repeats: int) -> dict:
    from gankd_ganomaly.data.folder import CACHE_DIR, load_folder

    decode = _time(lambda: load_folder(root, cache=False), repeats)
    shutil.rmtree(root / CACHE_DIR, ignore_errors=True)
    first = _time(lambda: load_folder(root), 1)[0]
    cached = _time(lambda: load_folder(root), repeats)
    data = load_folder(root)
    assert "cached" in data.source
    cache_file = next((root / CACHE_DIR).glob("*.npz"))
    return {"images": len(data.train), "shape": list(data.train.shape[1:]), "decode_s": statistics.median(decode),
            "decode_samples_s": decode, "first_load_s": first, "cached_s": statistics.median(cached),
            "cached_samples_s": cached, "speedup": statistics.median(decode) / statistics.median(cached),
            "cache_bytes": cache_file.stat().st_size,
            "png_bytes": sum(p.stat().st_size for p in (root / "train" / "good").iterdir())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mnist-root", default="../shared/datasets")
    parser.add_argument("--cifar-root", default=None, help="CIFAR-10 root (cifar-10-batches-py inside); optional")
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scratch", default="/tmp/gankd-folder-bench")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--out", default="benchmarks/results/folder_load.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from gankd_ganomaly.data import builtin as data_module

    scratch = Path(args.scratch)
    shutil.rmtree(scratch, ignore_errors=True)
    sources = {"mnist_gray_28": (args.mnist_root, "mnist")}
    if args.cifar_root:
        sources["cifar10_colour_32"] = (args.cifar_root, "cifar10")
    results = {}
    try:
        for name, (root, dataset) in sources.items():
            if dataset == "mnist":  # the raw 28x28 bytes, as a user's PNG files would hold them
                files = data_module._find_idx_files(Path(root) / "MNIST" / "raw")
                raw = data_module._read_idx(files[0], data_module._IDX_IMAGES_MAGIC)[:args.images]
            else:
                raw, _ = data_module._read_cifar_batch(Path(root) / "cifar-10-batches-py" / "data_batch_1")
                raw = raw[:args.images].transpose(0, 2, 3, 1)
            folder = scratch / name
            write_s = _write(folder, np.ascontiguousarray(raw))
            results[name] = {"write_png_s": write_s, **measure(folder, args.repeats)}
            print(name, json.dumps({k: v for k, v in results[name].items() if not k.endswith("samples_s")}))
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    record = {
        "what": "gankd_ganomaly.data.folder.load_folder on a folder of PNG files: decode every file vs read the cache",
        "command": "PYTHONPATH=. python " + " ".join(["benchmarks/folder_load.py", *sys.argv[1:]]),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "threads": args.threads, "load_average_at_end": load},
        "note": "files freshly written, hence in the OS page cache; the machine was shared with a running "
                "experiment (see load_average_at_end): absolute times are pessimistic, the ratio is the point",
        "results": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
