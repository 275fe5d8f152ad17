"""Your own images: a folder dataset in the MVTec AD / anomalib ``Folder`` layout.

::

    ROOT/train/good/*        normal images only (what the detector learns)
    ROOT/test/good/*         normal test images (label 0)
    ROOT/test/<kind>/*       novel test images (label 1), one folder per kind of defect (any name but "good")

``test/`` is optional: without it (or with no test images) a detector still trains; AUROC is then skipped.
Files: PNG, JPEG, BMP, TIFF (suffixes :data:`IMAGE_SUFFIXES`, any case), 8-bit or 16-bit, gray or colour, any
size; files with other suffixes and hidden files (``.DS_Store``, the ``.gankd-cache`` folder) are ignored.
Only the files directly in each folder are read (sub-folders of ``good/`` are not searched).

Decoding (:func:`decode_image`): values are divided by the maximum of the file's bit depth (255 for 8-bit,
65535 for 16-bit, never the image's own maximum), mapped to [-1, 1], and resized to size x size (32x32 by
default; 64 or 128 for the networks of those sizes) by bilinear interpolation
(``torch.nn.functional.interpolate``, ``align_corners=False``; the same operation that resizes MNIST's 28x28
images, so the same pixels give the same tensor as the IDX loader). Alpha is dropped; palette
images are expanded to RGB. Channels: gray images (modes 1, L, LA, I;16, I, F) give 1 channel, colour images
3; with ``channels=None`` the count is read from the data, and a folder mixing both is refused naming a file of
each kind (force one with ``channels=1`` or ``channels=3``: colour is then converted to gray with the ITU-R 601
weights Pillow uses, gray copied to three channels).

Decoded tensors are cached in ``ROOT/.gankd-cache/`` (else, when ROOT is read-only, under
``$XDG_CACHE_HOME/gankd/folders/``), keyed by the list of files with their sizes and modification times, the
channel option and the loader version: a second load of an unchanged folder reads one ``.npz`` file.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
NORMAL_FOLDER = "good"
CACHE_DIR = ".gankd-cache"
_CACHE_VERSION = 1
_GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}


class FolderDatasetError(ValueError):
    """A folder dataset is laid out wrongly, has an empty folder, an unreadable image, or mixed channel counts;
    the message names the folder or file and says what to do."""


def list_images(folder: Path) -> list[Path]:
    """The image files directly in ``folder``, sorted by name (hidden files and other suffixes skipped)."""
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)


def _require_images(folder: Path, what: str) -> list[Path]:
    files = list_images(folder)
    if not files:
        others = [p.name for p in folder.iterdir() if not p.name.startswith(".")][:3]
        found = f"; it holds {', '.join(others)}" if others else "; it is empty"
        raise FolderDatasetError(f"{what} {str(folder)!r} has no {'/'.join(IMAGE_SUFFIXES)} images{found}")
    return files


def folder_layout(root: str | os.PathLike[str]) -> tuple[list[Path], list[tuple[str, list[Path]]]]:
    """``(train files, [(test folder name, files), ...])`` of a folder dataset, test/good first; checks the layout."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"folder dataset {str(root)!r} does not exist (expected ROOT/train/good/*, and "
                                "optionally ROOT/test/good/* and ROOT/test/<defect>/*)")
    train_dir = root / "train" / NORMAL_FOLDER
    if not train_dir.is_dir():
        raise FolderDatasetError(f"folder dataset {str(root)!r} has no train/good folder: put the normal training "
                                 "images in ROOT/train/good/ (test images in ROOT/test/good/ and ROOT/test/<defect>/)")
    train = _require_images(train_dir, "training folder")
    test: list[tuple[str, list[Path]]] = []
    test_dir = root / "test"
    if test_dir.is_dir():
        loose = list_images(test_dir)
        if loose:
            raise FolderDatasetError(f"{str(loose[0])!r} lies directly in {str(test_dir)!r}: test images go in "
                                     "test/good/ (normal) or test/<defect>/ (novel), which gives their labels")
        kinds = sorted((p for p in test_dir.iterdir() if p.is_dir() and not p.name.startswith(".")),
                       key=lambda p: (p.name != NORMAL_FOLDER, p.name))
        for kind in kinds:
            test.append((kind.name, _require_images(kind, "test folder")))
    return train, test


def _decode_array(path: Path, channels: int | None) -> tuple[np.ndarray, float, int]:
    """(array (H, W, C) or (H, W), max value of the bit depth, channels of the file) of one image file."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, 256_000_000)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
                mode = img.mode
                native = 1 if mode in _GRAY_MODES else 3
                want = channels or native
                if mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
                    array = np.asarray(img)
                    if mode == "F":
                        array = array.astype(np.float32)
                        top = 1.0 if float(np.nanmax(array)) <= 1.0 else 65535.0
                        if float(np.nanmin(array)) < 0 or float(np.nanmax(array)) > 65535:
                            raise FolderDatasetError(f"{str(path)!r}: floating-point image with values outside "
                                                     "[0, 1] and [0, 65535]; save it as 8- or 16-bit")
                    else:
                        array = array.astype(np.int64)
                        if int(array.min()) < 0 or int(array.max()) > 65535:
                            raise FolderDatasetError(f"{str(path)!r}: {mode} image with values outside [0, 65535]; "
                                                     "only 8- and 16-bit images are read")
                        top = 65535.0  # 16-bit: the depth's maximum, never the image's own
                    array = array.astype(np.float32)
                    if want == 3:
                        array = np.repeat(array[..., None], 3, axis=2)
                    return array, top, native
                if mode == "P" or mode == "PA":
                    img = img.convert("RGBA" if "transparency" in img.info or mode == "PA" else "RGB")
                    native = 3
                    want = channels or 3
                target = "L" if want == 1 else "RGB"
                if img.mode != target:
                    img = img.convert(target)
                return np.asarray(img, dtype=np.float32), 255.0, native
    except FolderDatasetError:
        raise
    except Exception as err:  # noqa: BLE001 - Pillow raises OSError, SyntaxError, ValueError... on bad files
        first = str(err).splitlines()[0] if str(err).strip() else type(err).__name__
        raise FolderDatasetError(f"cannot read image {str(path)!r} ({type(err).__name__}: {first}); the file is "
                                 "corrupt, truncated or not an image: replace or delete it") from None


def decode_image(path: str | os.PathLike[str], channels: int | None = None,
                 size: int = 32) -> tuple[torch.Tensor, int]:
    """One image file as float32 (C, size, size) in [-1, 1], and its native channel count (1 gray, 3 colour).

    ``channels`` forces 1 or 3 (converting); ``None`` keeps the file's own. Raises :class:`FolderDatasetError`
    naming the file if it cannot be read.
    """
    array, top, native = _decode_array(Path(path), channels)
    x = torch.from_numpy(np.ascontiguousarray(array))
    x = x[None] if x.dim() == 2 else x.permute(2, 0, 1)
    return _to_range(x[None], top, size)[0], native


def _to_range(x: torch.Tensor, top: float, size: int) -> torch.Tensor:
    """(N, C, H, W) float32 in [0, top] -> [-1, 1], resized to size x size: the same ops as the IDX loader."""
    x = x.div(top).mul_(2.0).sub_(1.0)
    if tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.clamp_(-1.0, 1.0).contiguous()


def read_images(files: Sequence[Path], channels: int | None, size: int = 32) -> tuple[torch.Tensor, int]:
    """Decode ``files`` into (N, C, size, size) in [-1, 1]; returns the tensor and C.

    ``channels=None``: 1 if every file is gray, 3 if every file is colour; a mix raises
    :class:`FolderDatasetError` naming one file of each kind.
    """
    if channels not in (None, 1, 3):
        raise FolderDatasetError(f"channels must be 1 (gray), 3 (colour) or None (read from the images), "
                                 f"got {channels!r}")
    decoded = []
    first_of: dict[int, Path] = {}
    for path in files:
        array, top, native = _decode_array(Path(path), channels)
        first_of.setdefault(native, Path(path))
        if channels is None and len(first_of) > 1:
            raise FolderDatasetError(
                f"mixed channel counts: {str(first_of[1])!r} is gray but {str(first_of[3])!r} is colour; "
                "convert the images to one kind, or force one with --channels 1 (colour becomes gray) or "
                "--channels 3 (gray is copied to three channels), channels= in Python")
        decoded.append((array, top))
    c = channels or (next(iter(first_of)) if first_of else 1)
    out = torch.empty((len(decoded), c, size, size), dtype=torch.float32)
    # same-size images of the same bit depth are resized together (as one batch: the IDX loader's operation)
    groups: dict[tuple, list[int]] = {}
    for i, (array, top) in enumerate(decoded):
        groups.setdefault((array.shape, top), []).append(i)
    for (shape, top), idx in groups.items():
        batch = torch.from_numpy(np.stack([decoded[i][0] for i in idx]))
        batch = batch[:, None] if batch.dim() == 3 else batch.permute(0, 3, 1, 2)
        out[idx] = _to_range(batch, top, size)
    return out, c


# --- the cache ------------------------------------------------------------------------------------------------


def _cache_key(root: Path, files: Sequence[Path], channels: int | None, size: int) -> str:
    h = hashlib.sha256(json.dumps({"v": _CACHE_VERSION, "channels": channels, "size": size}).encode())
    for p in files:
        st = p.stat()
        h.update(f"{p.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


def _cache_dirs(root: Path) -> list[Path]:
    user = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gankd" / "folders"
    tag = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    return [root / CACHE_DIR, user / tag]


def _read_cache(root: Path, key: str) -> dict | None:
    for directory in _cache_dirs(root):
        path = directory / f"{key}.npz"
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    return {k: z[k] for k in z.files}
            except Exception:  # noqa: BLE001 - a damaged cache is rebuilt, never trusted
                return None
    return None


def _write_cache(root: Path, key: str, arrays: dict) -> Path | None:
    """Write the cache where it can be written (ROOT/.gankd-cache, else the user cache); older entries go."""
    from gankd import atomic_write

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to a path
            np.savez(f, **arrays)

    for directory in _cache_dirs(root):
        try:
            atomic_write(directory / f"{key}.npz", save)
        except OSError:
            continue
        for old in directory.glob("*.npz"):  # one entry per folder: the cache never grows with edits
            if old.name != f"{key}.npz":
                old.unlink(missing_ok=True)
        return directory / f"{key}.npz"
    return None


def load_folder(root: str | os.PathLike[str], channels: int | None = None, *, cache: bool = True,
                size: int = 32):
    """Load a folder dataset (layout in this module's docstring) as a :class:`~gankd_ganomaly.data.OneClassData`.

    ``dataset="folder"``, ``normal_class=0`` (class name ``"good"``); ``train`` is every image of train/good,
    ``test`` every image of test/* (label 0 for test/good, 1 for the other folders), possibly empty (then
    AUROC cannot be measured). ``train_files``/``test_files`` give each image's path and ``test_kinds`` its test
    folder. ``channels``: 1, 3, or None (read from the images). ``size``: the side every image is resized to (32,
    64 or 128, the network's image size; part of the cache key). ``cache=False`` decodes every file again and
    writes no cache.
    """
    from .containers import OneClassData

    root = Path(root).expanduser()
    train_files, test_groups = folder_layout(root)
    test_files = [p for _, files in test_groups for p in files]
    kinds = [kind for kind, files in test_groups for _ in files]
    every = [*train_files, *test_files]
    key = _cache_key(root, every, channels, size) if cache else ""
    cached = _read_cache(root, key) if cache else None
    if cached is not None:
        train, test = torch.from_numpy(cached["train"]), torch.from_numpy(cached["test"])
        how = "cached"
    else:
        images, c = read_images(every, channels, size)
        train, test = images[:len(train_files)].clone(), images[len(train_files):].clone()
        how = "decoded"
        if cache:
            _write_cache(root, key, {"train": train.numpy(), "test": test.numpy()})
    labels = torch.tensor([int(k != NORMAL_FOLDER) for k in kinds], dtype=torch.int64)
    n_novel = int(labels.sum())
    test_note = (f"test {len(test_files) - n_novel} good + {n_novel} novel ({', '.join(k for k, _ in test_groups)})"
                 if test_files else "no test images")
    source = f"image folder {root} ({len(train_files)} train/good, {test_note}; {how})"
    return OneClassData(dataset="folder", normal_class=0, train=train, test=test, test_labels=labels, source=source,
                        train_files=tuple(map(str, train_files)), test_files=tuple(map(str, test_files)),
                        test_kinds=tuple(kinds))


def load_image_folder(folder: str | Path, channels: int, size: int = 32) -> tuple[torch.Tensor, list[str]]:
    """PNG/JPEG/BMP/TIFF files of ``folder`` (sorted by name) as (N, channels, size, size) in [-1, 1], and their
    paths (``folder/name``). ``folder`` may also be one image file (N = 1).

    Decoded as a folder dataset's images (:func:`read_images`): 8- or 16-bit values divided
    by their bit depth's maximum, converted to ``channels`` (1 gray, 3 colour), resized to size x size (bilinear), so
    they match the training data. A missing folder, a folder without images, or a file that cannot be read
    raises a named error giving the path.
    """
    folder = Path(folder)
    if folder.is_file():
        if folder.suffix.lower() not in IMAGE_SUFFIXES:
            raise ValueError(f"{str(folder)!r} is not an image file (suffixes {'/'.join(IMAGE_SUFFIXES)}): give an "
                             "image or a folder of images")
        images, _ = read_images([folder], channels, size)
        return images, [str(folder)]
    if not folder.is_dir():
        raise FileNotFoundError(f"image file or folder {str(folder)!r} does not exist")
    files = list_images(folder)
    if not files:
        raise ValueError(f"image folder {str(folder)!r} has no {'/'.join(IMAGE_SUFFIXES)} files")
    images, _ = read_images(files, channels, size)
    return images, [str(p) for p in files]


