"""CIFAR-10 copies made from the offline sources, and the provenance every record made from a root carries.

A root made by :func:`prepare_cifar10_from_jpeg` (or ``to_batches.py`` by hand, recognised by its file names) is
the JPEG-recompressed copy: records get ``lossy_cifar10_jpeg: true``. :func:`prepare_cifar10_subset` writes the
exact 4000/1000-image subset, or the same images decoded from the JPEG copy, to measure what the JPEG copy does
to AUROC on identical images.
"""
from __future__ import annotations

import datetime as _dt
import json
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

import gankd

from .builtin import resolve_root
from .registry import dataset_spec

LOSSY_MARKER = "LOSSY_JPEG_COPY"
SOURCE_MARKER = "GANKD_SOURCE.json"
CIFAR_DIR = "cifar-10-batches-py"
_TO_BATCHES_NAME = re.compile(r"^(data_batch_[1-5]|test_batch)_\d{5}\.png$")  # file names to_batches.py writes


def _write_python_batches(dest: Path, train: np.ndarray, train_labels: np.ndarray, test: np.ndarray,
                          test_labels: np.ndarray, stem: str) -> None:
    """Official python layout: data_batch_1..5 (train split in five parts), test_batch, batches.meta."""
    dest.mkdir(parents=True, exist_ok=True)
    parts = [(f"data_batch_{i + 1}", d, lab) for i, (d, lab) in
             enumerate(zip(np.array_split(train, 5), np.array_split(train_labels, 5)))]
    parts.append(("test_batch", test, test_labels))
    for name, data, labels in parts:
        batch = {b"batch_label": name.encode(), b"labels": [int(x) for x in labels],
                 b"data": np.ascontiguousarray(data, dtype=np.uint8),
                 b"filenames": [f"{stem}_{name}_{i:05d}".encode() for i in range(len(data))]}
        gankd.atomic_write_bytes(dest / name, pickle.dumps(batch, protocol=2))
    names = [n.encode() for n in dataset_spec("cifar10").class_names]
    gankd.atomic_write_bytes(dest / "batches.meta", pickle.dumps(
        {b"label_names": names, b"num_cases_per_batch": int(np.ceil(len(train) / 5)), b"num_vis": 3072}, protocol=2))


def _write_markers(dest: Path, variant: str, lossy: bool, made_from: str, train: int, test: int, note: str) -> None:
    info = {"variant": variant, "lossy_jpeg": lossy, "made_from": made_from, "train_images": train,
            "test_images": test, "note": note, "made_by": f"gankd_ganomaly.data.cifar_prep ({gankd.__version__})",
            "made_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    gankd.atomic_write_text(dest / SOURCE_MARKER, json.dumps(info, indent=1) + "\n")
    if lossy:
        gankd.atomic_write_text(dest / LOSSY_MARKER, "These CIFAR-10 batches were decoded from a JPEG-recompressed "
                                "copy (quality ~75): pixels are NOT the original ones. Label every figure "
                                f"measured on them as such.\nSource: {made_from}\n")
    else:
        (dest / LOSSY_MARKER).unlink(missing_ok=True)


def prepare_cifar10_from_jpeg(out_root: str | Path, jpeg_dir: str | Path, *, python: str | None = None) -> Path:
    """Decode the JPEG-recompressed CIFAR-10 copy into ``out_root/cifar-10-batches-py`` (official python layout).

    ``jpeg_dir`` is the folder holding ``to_batches.py`` and ``cifar10_jpeg.npz``; its script is run in a
    subprocess (about half a minute). Then writes the markers ``LOSSY_JPEG_COPY`` and ``GANKD_SOURCE.json`` beside
    the batches, so every sweep record made from this root says its pixels are lossy. Returns the batches folder.
    """
    jpeg_dir, out_root = Path(jpeg_dir), Path(out_root)
    script = jpeg_dir / "to_batches.py"
    if not script.is_file():
        raise FileNotFoundError(f"{script} not found: give the folder that holds to_batches.py and cifar10_jpeg.npz")
    out_root.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([python or sys.executable, str(script), str(out_root)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{script} failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    dest = out_root / CIFAR_DIR
    _write_markers(dest, "jpeg-full", True, str(jpeg_dir.resolve()), 50000, 10000,
                   "full CIFAR-10 decoded from the JPEG-recompressed copy; split and labels are the original ones")
    return dest


def _decode_jpegs(blob: np.ndarray, offsets: np.ndarray, count: int) -> np.ndarray:
    import io

    from PIL import Image

    out = np.empty((count, 3072), dtype=np.uint8)
    for i in range(count):
        with Image.open(io.BytesIO(blob[offsets[i]:offsets[i + 1]].tobytes())) as img:
            out[i] = np.asarray(img.convert("RGB"), dtype=np.uint8).transpose(2, 0, 1).reshape(-1)
    return out


def prepare_cifar10_subset(out_root: str | Path, partial_npz: str | Path, *,
                           jpeg_npz: str | Path | None = None) -> Path:
    """Write the exact CIFAR-10 subset (the first 4000 training and first 1000 test images) in the python layout.

    ``partial_npz`` is ``cifar10_partial.npz`` (exact pixels). With ``jpeg_npz`` (``cifar10_jpeg.npz``) the SAME
    images are taken from the JPEG-recompressed copy instead (labels are checked to match), marked lossy: sweeping
    both roots measures how much the JPEG copy moves AUROC on identical images. Returns the batches folder.
    """
    part = np.load(partial_npz)
    train_labels, test_labels = np.asarray(part["train_labels"]), np.asarray(part["test_labels"])
    n_train, n_test = len(train_labels), len(test_labels)
    dest = Path(out_root) / CIFAR_DIR
    if jpeg_npz is None:
        train, test = np.asarray(part["train_data"]), np.asarray(part["test_data"])
        variant, lossy, made_from = "exact-subset", False, str(Path(partial_npz).resolve())
        note = (f"exact pixels: the first {n_train} CIFAR-10 training images and the first {n_test} test images "
                "(a subset, not the full dataset)")
    else:
        src = np.load(jpeg_npz)
        if not (np.array_equal(np.asarray(src["train_labels"][:n_train]), train_labels)
                and np.array_equal(np.asarray(src["test_labels"][:n_test]), test_labels)):
            raise ValueError(f"{jpeg_npz}: its first {n_train}/{n_test} labels differ from {partial_npz}'s; "
                             "they are not the same images")
        train = _decode_jpegs(src["train_jpeg"], src["train_offsets"], n_train)
        test = _decode_jpegs(src["test_jpeg"], src["test_offsets"], n_test)
        variant, lossy, made_from = "jpeg-subset", True, str(Path(jpeg_npz).resolve())
        note = (f"the same {n_train}/{n_test} images as the exact subset, decoded from the JPEG-recompressed copy "
                "(lossy pixels)")
    _write_python_batches(dest, train, train_labels, test, test_labels, variant)
    _write_markers(dest, variant, lossy, made_from, n_train, n_test, note)
    return dest


def cifar10_provenance(root: str | Path | None, cifar_jpeg: bool = False) -> dict:
    """What a CIFAR-10 root holds: ``{"cifar10_variant", "lossy_cifar10_jpeg", "cifar10_marker"}``.

    Variants: ``official`` (exact original batches, as far as can be told), ``jpeg-full``, ``exact-subset``,
    ``jpeg-subset``. Lossy when a marker says so, when the test batch carries the file names ``to_batches.py``
    writes, or when ``cifar_jpeg`` (the ``--cifar-jpeg`` flag) says so.
    """
    dest = resolve_root(root) / CIFAR_DIR
    marker: dict | None = None
    if (dest / SOURCE_MARKER).is_file():
        marker = json.loads((dest / SOURCE_MARKER).read_text())
        variant, lossy = marker.get("variant", "unknown"), bool(marker.get("lossy_jpeg"))
    elif (dest / LOSSY_MARKER).is_file():
        variant, lossy = "jpeg-full", True
    elif _made_by_to_batches(dest / "test_batch"):
        variant, lossy = "jpeg-full", True
    else:
        variant, lossy = "official", False
    if cifar_jpeg and not lossy:
        variant, lossy = "jpeg-full", True
    return {"cifar10_variant": variant, "lossy_cifar10_jpeg": lossy, "cifar10_marker": marker}


def _made_by_to_batches(path: Path) -> bool:
    """True when a CIFAR test batch carries the file names the JPEG copy's to_batches.py writes."""
    if not path.is_file():
        return False
    try:
        from .builtin import _ArrayOnlyUnpickler  # the allow-list unpickler: a crafted file cannot run code

        with path.open("rb") as f:
            batch = _ArrayOnlyUnpickler(f, encoding="latin1").load()
        names = batch.get(b"filenames", batch.get("filenames")) if isinstance(batch, dict) else None
        first = names[0] if names else b""
        first = first.decode("latin1") if isinstance(first, bytes) else str(first)
        return bool(_TO_BATCHES_NAME.match(first))
    except Exception:  # unreadable here: the loader will raise its own, better, error
        return False

