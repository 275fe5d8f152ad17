"""The built-in datasets: scikit-learn's digits and the files of MNIST, Fashion-MNIST and CIFAR-10, in the layouts
torchvision downloads to, read by the readers below (not by torchvision, which is only imported to download).
Each registers itself in :mod:`gankd_ganomaly.data.registry` at import.
"""

from __future__ import annotations

import gzip
import math
import os
import pickle
import zlib
from pathlib import Path

import numpy as np
import torch

from .containers import DatasetFileError, DatasetNotFoundError, Loaded, UnsafeDatasetFileError, to_model_range
from .registry import DatasetSpec, dataset_spec, register

_DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
_CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
# IDX file stems, in the order (train images, train labels, test images, test labels).
_IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
_IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension
_CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))


def resolve_root(root: str | os.PathLike[str] | None) -> Path:
    """The data root: ``root``, else ``$GANKD_DATA_ROOT``, else ``~/.cache/gankd/data``."""
    if root is None:
        root = os.environ.get("GANKD_DATA_ROOT") or Path.home() / ".cache" / "gankd" / "data"
    return Path(root).expanduser()


def _keep(labels: np.ndarray, normal_class: int | None) -> np.ndarray:
    return np.ones(len(labels), dtype=bool) if normal_class is None else labels == normal_class



def _load_digits(normal_class: int | None, size: int = 32) -> Loaded:
    # Imported here: scikit-learn takes about a second to import and only this dataset needs it.
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = bunch.images[:, None, :, :]  # (1797, 1, 8, 8), values 0..16
    train_x, test_x, train_y, test_y = train_test_split(
        images, bunch.target, test_size=0.3, stratify=bunch.target, random_state=0
    )
    source = "scikit-learn digits, stratified 70/30 split (random_state=0)"
    keep = _keep(train_y, normal_class)
    return (to_model_range(train_x[keep], 16.0, size), train_y[keep], to_model_range(test_x, 16.0, size), test_y,
            source)


# --- MNIST / Fashion-MNIST: IDX files ---------------------------------------------------------------------------


def _idx_search_dirs(dataset: str, root: Path) -> list[Path]:
    if dataset == "mnist":
        return [root / "MNIST" / "raw", root / "mnist", root]
    return [root / "FashionMNIST" / "raw", root / "fashion-mnist", root, _DEBIAN_FASHION_MNIST]


def _find_idx_files(directory: Path) -> list[Path] | None:
    """The four IDX files in ``directory`` (uncompressed preferred over .gz), or None if any is missing."""
    found = []
    for stem in _IDX_STEMS:
        plain, packed = directory / stem, directory / f"{stem}.gz"
        if plain.is_file():
            found.append(plain)
        elif packed.is_file():
            found.append(packed)
        else:
            return None
    return found


def _load_idx_dataset(dataset: str, root: Path, normal_class: int | None, download: bool, size: int = 32) -> Loaded:
    search = _idx_search_dirs(dataset, root)
    files = next((f for f in map(_find_idx_files, search) if f is not None), None)
    if files is None and download:
        _download(dataset, root)
        files = next((f for f in map(_find_idx_files, search) if f is not None), None)
    if files is None:
        wanted = ", ".join(f"{stem}[.gz]" for stem in _IDX_STEMS)
        hint = "`apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or " if dataset == "fmnist" else ""
        raise DatasetNotFoundError(
            _not_found_message(dataset, search, wanted, f"{hint}pass download=True (the --download flag) to fetch "
                               f"them with torchvision into {root}")
        )

    train_images_path, train_labels_path, test_images_path, test_labels_path = files
    train_labels = _read_idx(train_labels_path, _IDX_LABELS_MAGIC)
    test_labels = _read_idx(test_labels_path, _IDX_LABELS_MAGIC)
    train_images = _read_idx(train_images_path, _IDX_IMAGES_MAGIC)
    test_images = _read_idx(test_images_path, _IDX_IMAGES_MAGIC)
    for images, labels, images_path, labels_path in (
        (train_images, train_labels, train_images_path, train_labels_path),
        (test_images, test_labels, test_images_path, test_labels_path),
    ):
        _check_labels(labels, len(images), labels_path, images_path, dataset_spec(dataset).num_classes)

    compression = "gzip" if any(f.suffix == ".gz" for f in files) else "uncompressed"
    source = f"{dataset_spec(dataset).display_name} {compression} IDX at {train_images_path.parent}"
    keep = _keep(train_labels, normal_class)
    train_x = to_model_range(train_images[keep][:, None], 255.0, size)
    test_x = to_model_range(test_images[:, None], 255.0, size)
    return train_x, train_labels[keep], test_x, test_labels, source


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """Parse an IDX file of unsigned bytes (gzip or plain) into a uint8 array of the declared shape."""
    data = path.read_bytes()
    if path.suffix == ".gz":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"{path}: not a valid gzip file, it is truncated or corrupted ({exc})") from exc
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: {len(data)} bytes is shorter than the {header}-byte IDX header; file is truncated")
    found_magic = int.from_bytes(data[:4], "big")
    if found_magic != magic:
        raise ValueError(
            f"{path}: bad IDX magic number 0x{found_magic:08x}, expected 0x{magic:08x} "
            f"({'images' if ndim == 3 else 'labels'} file); the file is corrupted or not this kind of IDX file"
        )
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = header + math.prod(shape)
    if len(data) != expected:
        raise ValueError(
            f"{path}: {len(data)} bytes, but the header declares shape {shape}, i.e. {expected} bytes; "
            "the file is truncated or corrupted"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _check_labels(labels: np.ndarray, num_images: int, labels_path: Path, images_path: Path, num_classes: int) -> None:
    if len(labels) != num_images:
        raise ValueError(f"{labels_path} holds {len(labels)} labels but {images_path} holds {num_images} images")
    if len(labels) and int(labels.max()) >= num_classes:
        raise ValueError(f"{labels_path}: label {int(labels.max())} outside [0, {num_classes - 1}]; file is corrupted")


# --- CIFAR-10: official python batches --------------------------------------------------------------------------


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can only rebuild numpy arrays and dtypes (plus plain containers, which need no globals).

    The CIFAR-10 batches are pickles; a plain ``pickle.load`` of a malicious file runs arbitrary code. Every global
    a pickle may name is checked here against the few that numpy arrays need; anything else is refused.
    """

    # numpy.core was renamed numpy._core in numpy 2; old pickles name the old module, new ones the new.
    _ALLOWED = frozenset(
        {
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes
            *((f"numpy.{core}.multiarray", name) for core in ("core", "_core") for name in ("_reconstruct", "scalar")),
            *((f"numpy.{core}.numeric", "_frombuffer") for core in ("core", "_core")),  # protocol 5 arrays
        }
    )
    _CORE = "numpy._core" if int(np.__version__.split(".")[0]) >= 2 else "numpy.core"

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(
                f"refused global '{module}.{name}': only numpy arrays may be unpickled from dataset files"
            )
        if module.startswith(("numpy.core.", "numpy._core.")):
            module = f"{self._CORE}.{module.split('.', 2)[2]}"  # avoid numpy's deprecation shim
        return super().find_class(module, name)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One python batch -> images (n, 3, 32, 32) uint8 (R, G, B planes) and labels (n,) int64."""
    try:
        with path.open("rb") as f:
            # latin1: the official files were pickled by Python 2 (same choice as torchvision).
            batch = _ArrayOnlyUnpickler(f, encoding="latin1").load()
    except OSError:
        raise  # permissions, I/O: the file-system error names the file
    except pickle.UnpicklingError as err:
        if "refused global" in str(err):
            raise UnsafeDatasetFileError(f"{path}: {err}; this is not an official CIFAR-10 batch, nothing in it was "
                                         "run: delete it and extract cifar-10-python.tar.gz again") from None
        raise _bad_cifar_batch(path, err) from None
    except Exception as err:  # noqa: BLE001 - random or truncated bytes make the unpickler raise almost anything
        raise _bad_cifar_batch(path, err) from None
    if not isinstance(batch, dict):
        raise DatasetFileError(f"{path}: expected a pickled dict with 'data' and 'labels', got {type(batch).__name__}")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DatasetFileError(f"{path}: 'data' must be a uint8 array of shape (n, 3072); got {type(data).__name__} "
                               f"{getattr(data, 'dtype', '')} {getattr(data, 'shape', '')}")
    labels = np.asarray(labels, dtype=np.int64) if labels is not None else np.empty(0, np.int64)
    if labels.shape != (len(data),) or (len(labels) and not 0 <= labels.min() <= labels.max() < 10):
        raise DatasetFileError(f"{path}: 'labels' must be {len(data)} integers in [0, 9]; got shape {labels.shape}")
    return data.reshape(-1, 3, 32, 32), labels


def _bad_cifar_batch(path: Path, err: BaseException) -> DatasetFileError:
    why = str(err).splitlines()[0] if str(err).strip() else "no details"
    return DatasetFileError(f"{path}: not a readable CIFAR-10 python batch, it is truncated or corrupted "
                            f"({type(err).__name__}: {why}); replace it: extract cifar-10-python.tar.gz from "
                            f"{_CIFAR_URL} again (or pass --download after deleting the folder)")


def _load_cifar10(root: Path, normal_class: int | None, download: bool, size: int = 32) -> Loaded:
    directory = root / "cifar-10-batches-py"
    names = (*_CIFAR_TRAIN_BATCHES, "test_batch")
    if download and not all((directory / n).is_file() for n in names):
        _download("cifar10", root)
    if not all((directory / n).is_file() for n in names):
        raise DatasetNotFoundError(
            _not_found_message("cifar10", [directory], ", ".join(names),
                               f"pass download=True (the --download flag) to fetch them with torchvision, or "
                               f"download the 'CIFAR-10 python version' from {_CIFAR_URL} and extract "
                               f"cifar-10-python.tar.gz into {root}")
        )
    train_parts, label_parts = [], []
    for name in _CIFAR_TRAIN_BATCHES:  # keep only the normal class of each batch to bound memory
        images, labels = _read_cifar_batch(directory / name)
        keep = _keep(labels, normal_class)
        train_parts.append(images[keep])
        label_parts.append(labels[keep])
    test_images, test_labels = _read_cifar_batch(directory / "test_batch")
    source = f"CIFAR-10 python batches at {directory}"
    return (to_model_range(np.concatenate(train_parts), 255.0, size), np.concatenate(label_parts),
            to_model_range(test_images, 255.0, size), test_labels, source)


# --- helpers shared by the file-based datasets -------------------------------------------------------------------


def _not_found_message(dataset: str, searched: list[Path], wanted: str, how: str) -> str:
    paths = "\n".join(f"  - {p}" for p in searched)
    return (
        f"{dataset_spec(dataset).display_name} files ({wanted}) not found. Searched, in order:\n{paths}\n"
        f"To get them: {how}. The root folder is the `root` argument, else $GANKD_DATA_ROOT, "
        f"else ~/.cache/gankd/data."
    )


def _torchvision_install_hint(torch_version: str | None = None) -> str:
    """The pip command that installs the torchvision built for ``torch_version`` (default: the running torch).

    torchvision 0.(m+15).p is the release for torch 2.m.p; a local build tag (``+cpu``, ``+cu130``) names the
    PyTorch index it came from, where the matching torchvision lies (PyPI's would bring its own torch).
    """
    version = torch_version or torch.__version__
    base, _, local = version.partition("+")
    parts = base.split(".")
    if len(parts) < 2 or parts[0] != "2" or not all(p.isdigit() for p in parts[1:3]):
        return f"pip install a torchvision built for torch {version}"
    minor, patch = int(parts[1]), int(parts[2]) if len(parts) > 2 else 0
    command = f"pip install torchvision==0.{minor + 15}.{patch}"
    if local:
        command += f" --index-url https://download.pytorch.org/whl/{local}"
    return command


def _download(dataset: str, root: Path) -> None:
    """Download ``dataset`` with torchvision into ``root``, in the layout the readers above search.

    torchvision is the optional extra ``gankd[download]`` and imported only here: a missing one, or one built
    for another torch (whose import raises RuntimeError, not ImportError), becomes one line saying what to run.
    """
    try:
        import torchvision.datasets as tv_datasets
    except Exception as exc:  # noqa: BLE001 - any import failure means "not usable"
        from gankd import MissingDependencyError

        why = (str(exc).strip().splitlines() or [""])[0]
        raise MissingDependencyError(
            f"download=True needs a working torchvision to fetch {dataset_spec(dataset).display_name}, but importing "
            f"it failed ({type(exc).__name__}: {why}). Install the one built for torch {torch.__version__}: "
            f"`{_torchvision_install_hint()}`, or put the files under {root} yourself."
        ) from exc
    cls = {"mnist": tv_datasets.MNIST, "fmnist": tv_datasets.FashionMNIST, "cifar10": tv_datasets.CIFAR10}[dataset]
    root.mkdir(parents=True, exist_ok=True)
    cls(str(root), train=True, download=True)  # one call fetches both splits


# --- the registry entries -------------------------------------------------------------------------------------
# student widths: the paper's Table 4 students; digits (not in the paper) borrows MNIST's.
_DIGIT_NAMES = tuple(str(d) for d in range(10))
register(DatasetSpec("digits", "digits", _DIGIT_NAMES, 1, (2, 4, 8), paper_student=False,
                     load=lambda root, normal_class, download, size=32: _load_digits(normal_class, size), files=False))
register(DatasetSpec("mnist", "MNIST", _DIGIT_NAMES, 1, (2, 4, 8),
                     load=lambda root, normal_class, download, size=32: _load_idx_dataset(
                         "mnist", resolve_root(root), normal_class, download, size)))
register(DatasetSpec("fmnist", "Fashion-MNIST",
                     ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                      "ankle boot"), 1, (1, 2, 4),
                     load=lambda root, normal_class, download, size=32: _load_idx_dataset(
                         "fmnist", resolve_root(root), normal_class, download, size)))
register(DatasetSpec("cifar10", "CIFAR-10",
                     ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
                     3, (8, 16, 64),
                     load=lambda root, normal_class, download, size=32: _load_cifar10(resolve_root(root),
                                                                                      normal_class, download, size)))
