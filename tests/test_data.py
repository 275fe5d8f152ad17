"""Tests for gankd_ganomaly.data: real files where this machine has them, tiny fake files for layouts and errors."""

from __future__ import annotations

import gzip
import pickle
import re
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gankd.batches import ShuffledBatches, iterate_batches
from gankd_ganomaly.data import DATASETS, DatasetNotFoundError, OneClassData, dataset_spec, load_one_class

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
MNIST_RAW = SHARED / "MNIST" / "raw"
CIFAR_PARTIAL = SHARED / "cifar-10-partial" / "cifar10_partial.npz"
DEBIAN_FMNIST = Path("/usr/share/datasets/fashion-mnist")
IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def expected_images(raw: np.ndarray, max_value: float) -> torch.Tensor:
    """Reference conversion, written out independently: (N, C, H, W) -> [-1, 1], bilinear to 32x32."""
    x = torch.tensor(raw, dtype=torch.float32) / max_value * 2 - 1
    if x.shape[-1] != 32:
        x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    return x


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> None:
    """Write a uint8 IDX file (magic 0x0803 for 3-D images, 0x0801 for 1-D labels)."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        payload = gzip.compress(payload)
    path.write_bytes(payload)


def write_fake_mnist(directory: Path, train_labels: np.ndarray, test_labels: np.ndarray, compress: bool = False,
                     seed: int = 0) -> dict[str, np.ndarray]:
    """Write the four IDX files with random 28x28 images; returns the arrays written."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        IDX_NAMES[0]: rng.integers(0, 256, (len(train_labels), 28, 28), dtype=np.uint8),
        IDX_NAMES[1]: train_labels.astype(np.uint8),
        IDX_NAMES[2]: rng.integers(0, 256, (len(test_labels), 28, 28), dtype=np.uint8),
        IDX_NAMES[3]: test_labels.astype(np.uint8),
    }
    for name, array in arrays.items():
        write_idx(directory / name, array, compress)
    return arrays


def python2_pickle(data: np.ndarray, labels: list[int]) -> bytes:
    """{'data': uint8 (n, 3072), 'labels': [...]} pickled as Python 2 + numpy 1 wrote the official CIFAR files:
    protocol 2, Python 2 str (SHORT_BINSTRING / BINSTRING) for keys and raw bytes, numpy.core globals."""

    def py2_str(b: bytes) -> bytes:
        return (b"U" + bytes([len(b)]) if len(b) < 256 else b"T" + struct.pack("<i", len(b))) + b

    dtype = (b"cnumpy\ndtype\n" + py2_str(b"u1") + b"\x89\x88\x87R"  # dtype('u1', False, True) + its state
             + b"(K\x03" + py2_str(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb")
    array = (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + py2_str(b"b") + b"\x87R"
             + b"(K\x01J" + struct.pack("<i", len(data)) + b"M\x00\x0c\x86" + dtype + b"\x89"
             + py2_str(data.tobytes()) + b"tb")
    items = b"".join(b"K" + bytes([v]) for v in labels)
    return b"\x80\x02}(" + py2_str(b"data") + array + py2_str(b"labels") + b"](" + items + b"eu."


def write_cifar_root(root: Path, npz: dict[str, np.ndarray]) -> Path:
    """Official python layout from the exact partial arrays: 5 train batches of 800, test_batch of 1000.

    data_batch_1 is pickled the way the official files are (Python 2); the other train batches as Python 3 writes
    protocol 2 with bytes keys (like the shared to_batches.py); the test batch with Python's default protocol,
    whose numpy arrays go through yet another global (_frombuffer).
    """
    directory = root / "cifar-10-batches-py"
    directory.mkdir(parents=True)
    for i in range(5):
        rows = slice(800 * i, 800 * (i + 1))
        data, labels = npz["train_data"][rows], [int(v) for v in npz["train_labels"][rows]]
        if i == 0:
            payload = python2_pickle(data, labels)
        else:
            payload = pickle.dumps({b"batch_label": f"training batch {i + 1} of 5".encode(), b"data": data,
                                    b"labels": labels, b"filenames": [b"x.png"] * 800}, protocol=2)
        (directory / f"data_batch_{i + 1}").write_bytes(payload)
    test = {b"data": npz["test_data"], b"labels": [int(v) for v in npz["test_labels"]]}
    (directory / "test_batch").write_bytes(pickle.dumps(test))
    return directory


@pytest.fixture(scope="module")
def mnist3() -> OneClassData:
    if not (MNIST_RAW / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"MNIST gzip IDX files not found under {MNIST_RAW}")
    return load_one_class("mnist", 3, root=SHARED)


@pytest.fixture(scope="module")
def cifar_npz() -> dict[str, np.ndarray]:
    if not CIFAR_PARTIAL.is_file():
        pytest.skip(f"exact CIFAR-10 subset not found at {CIFAR_PARTIAL}")
    with np.load(CIFAR_PARTIAL) as npz:
        return {k: npz[k] for k in npz.files}


def test_each_registry_entry_describes_the_data_its_loader_gives(cifar_npz, tmp_path) -> None:
    """An entry's channel count and class names are those of the images and labels its loader returns (digits
    embedded, MNIST from the shared files, CIFAR-10 from the exact subset written in the official layout), and its
    default student is the paper's Table 4 student (digits borrows MNIST's)."""
    assert DATASETS == ("digits", "mnist", "fmnist", "cifar10")  # registration order: CLI choices, sweep order
    write_cifar_root(tmp_path, cifar_npz)
    roots = {"digits": None, "mnist": SHARED, "cifar10": tmp_path}
    for name, root in roots.items():
        spec = dataset_spec(name)
        if name == "mnist" and not MNIST_RAW.is_dir():
            continue
        data = load_one_class(name, 8, root=root)
        assert data.train.shape[1:] == (spec.channels, 32, 32), name
        assert data.class_name == spec.class_names[8] and spec.num_classes == 10, name
        assert set(data.test_labels.tolist()) == {0, 1}, name  # the normal class against the other nine
    assert dataset_spec("fmnist").class_names[8] == "bag" and dataset_spec("cifar10").class_names[1] == "automobile"
    assert {d: dataset_spec(d).student_widths for d in DATASETS} == {
        "digits": (2, 4, 8), "mnist": (2, 4, 8), "fmnist": (1, 2, 4), "cifar10": (8, 16, 64)}


# --- digits -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("normal_class", [0, 7])
def test_digits_split_range_and_normal_class_only(normal_class: int) -> None:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    tr_x, te_x, tr_y, te_y = train_test_split(digits.images[:, None], digits.target, test_size=0.3,
                                              stratify=digits.target, random_state=0)
    data = load_one_class("digits", normal_class)

    n_normal = int((tr_y == normal_class).sum())
    assert n_normal > 100
    assert data.train.shape == (n_normal, 1, 32, 32) and data.train.dtype == torch.float32
    assert data.test.shape == (540, 1, 32, 32) and data.test_labels.shape == (540,)
    assert data.test_labels.dtype == torch.int64
    assert int((data.test_labels == 0).sum()) == int((te_y == normal_class).sum())
    assert int((data.test_labels == 1).sum()) == 540 - int((te_y == normal_class).sum())
    # Exactly the normal-class train images (so no other class leaked in), and the test split in its order.
    torch.testing.assert_close(data.train, expected_images(tr_x[tr_y == normal_class], 16.0), rtol=0, atol=1e-6)
    torch.testing.assert_close(data.test, expected_images(te_x, 16.0), rtol=0, atol=1e-6)
    assert torch.equal(data.test_labels, torch.from_numpy((te_y != normal_class).astype(np.int64)))
    for x in (data.train, data.test):
        assert x.is_contiguous()
        assert x.min() >= -1 and x.max() <= 1
        assert x.min() < -0.99 and x.max() > 0.9  # background and ink reach both ends
    assert data.channels == 1 and data.class_name == str(normal_class)
    assert "digits" in data.source and "random_state=0" in data.source


def test_digits_is_deterministic() -> None:
    a, b = load_one_class("digits", 4), load_one_class("digits", 4)
    assert torch.equal(a.train, b.train) and torch.equal(a.test, b.test)
    assert torch.equal(a.test_labels, b.test_labels)


# --- MNIST (real files) ---------------------------------------------------------------------------------------


def test_mnist_shapes_and_labels(mnist3: OneClassData) -> None:
    assert mnist3.train.shape == (6131, 1, 32, 32)
    assert mnist3.test.shape == (10000, 1, 32, 32)
    assert int((mnist3.test_labels == 0).sum()) == 1010
    assert int((mnist3.test_labels == 1).sum()) == 8990
    for x in (mnist3.train, mnist3.test):
        assert x.dtype == torch.float32 and x.is_contiguous()
        assert x.min() >= -1 and x.max() <= 1 and x.min() < -0.99 and x.max() > 0.99
    assert mnist3.class_name == "3" and mnist3.channels == 1
    assert str(MNIST_RAW) in mnist3.source and "gzip" in mnist3.source


def test_mnist_matches_manual_decode(mnist3: OneClassData) -> None:
    def raw(name: str, offset: int) -> np.ndarray:
        with gzip.open(MNIST_RAW / f"{name}.gz", "rb") as f:
            return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)

    train_images, train_labels = raw(IDX_NAMES[0], 16).reshape(-1, 28, 28), raw(IDX_NAMES[1], 8)
    test_images, test_labels = raw(IDX_NAMES[2], 16).reshape(-1, 28, 28), raw(IDX_NAMES[3], 8)
    threes = np.flatnonzero(train_labels == 3)
    for k in (0, len(threes) - 1):  # first and last image of the normal class, in file order
        want = expected_images(train_images[threes[k]][None, None], 255.0)[0]
        torch.testing.assert_close(mnist3.train[k], want, rtol=0, atol=1e-6)
    for i in (0, 18, 9999):  # test image 18 is a 3 (normal), image 0 a 7 (novel)
        torch.testing.assert_close(mnist3.test[i], expected_images(test_images[i][None, None], 255.0)[0],
                                   rtol=0, atol=1e-6)
        assert int(mnist3.test_labels[i]) == int(test_labels[i] != 3)
    assert test_labels[18] == 3 and test_labels[0] == 7


# --- Fashion-MNIST (Debian package) ---------------------------------------------------------------------------


def test_fmnist_falls_back_to_debian_package(tmp_path: Path) -> None:
    if not (DEBIAN_FMNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"Debian package dataset-fashion-mnist not installed ({DEBIAN_FMNIST} missing)")
    data = load_one_class("fmnist", 8, root=tmp_path)  # empty root: only the Debian location has the files
    assert data.train.shape == (6000, 1, 32, 32)
    assert data.test.shape == (10000, 1, 32, 32)
    assert int((data.test_labels == 0).sum()) == 1000
    assert data.class_name == "bag" and data.channels == 1
    assert str(DEBIAN_FMNIST) in data.source
    assert data.train.min() >= -1 and data.train.max() <= 1


# --- CIFAR-10 (fake official layout from exact pixels) -----------------------------------------------------------


def test_cifar10_official_layout(tmp_path: Path, cifar_npz: dict[str, np.ndarray]) -> None:
    write_cifar_root(tmp_path, cifar_npz)
    train_labels, test_labels = cifar_npz["train_labels"], cifar_npz["test_labels"]
    normal = int(train_labels[0])  # so the documented first training image is data.train[0]
    data = load_one_class("cifar10", normal, root=tmp_path)

    expected_train = cifar_npz["train_data"][train_labels == normal].reshape(-1, 3, 32, 32)
    assert data.train.shape == (len(expected_train), 3, 32, 32) and len(expected_train) > 300
    assert data.test.shape == (1000, 3, 32, 32)
    torch.testing.assert_close(data.train, expected_images(expected_train, 255.0), rtol=0, atol=1e-6)
    torch.testing.assert_close(data.test, expected_images(cifar_npz["test_data"].reshape(-1, 3, 32, 32), 255.0),
                               rtol=0, atol=1e-6)
    assert torch.equal(data.test_labels, torch.from_numpy((test_labels != normal).astype(np.int64)))
    # Channel order: R, G, B planes (values from the dataset's README), first row of the first image.
    first_row = ((data.train[0, :, 0, :3] + 1) / 2 * 255).round().to(torch.int64)
    assert first_row.tolist() == [[59, 43, 50], [62, 46, 48], [63, 45, 43]]
    assert data.channels == 3 and data.class_name == dataset_spec("cifar10").class_names[normal]
    assert "cifar-10-batches-py" in data.source


def test_cifar10_refuses_malicious_pickle(tmp_path: Path, cifar_npz: dict[str, np.ndarray]) -> None:
    directory = write_cifar_root(tmp_path / "root", cifar_npz)
    marker = tmp_path / "pwned"
    # Protocol-0 pickle calling os.system("touch <marker>") when loaded by a plain unpickler.
    (directory / "data_batch_1").write_bytes(b"cos\nsystem\n(V" + f"touch {marker}".encode() + b"\ntR.")
    with pytest.raises(pickle.UnpicklingError, match=r"refused global 'os\.system'"):
        load_one_class("cifar10", 0, root=tmp_path / "root")
    assert not marker.exists()


def test_cifar10_rejects_wrong_batch_contents(tmp_path: Path, cifar_npz: dict[str, np.ndarray]) -> None:
    directory = write_cifar_root(tmp_path, cifar_npz)
    (directory / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((3, 100), np.uint8), b"labels": [0] * 3}))
    with pytest.raises(ValueError, match="test_batch.*shape \\(n, 3072\\)"):
        load_one_class("cifar10", 0, root=tmp_path)


# --- argument validation ------------------------------------------------------------------------------------------


def test_unknown_dataset_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="dataset must be one of .*'cifar10'.*got 'svhn'"):
        load_one_class("svhn", 0)


@pytest.mark.parametrize("normal_class", [10, -1])
def test_normal_class_out_of_range(normal_class: int) -> None:
    with pytest.raises(ValueError, match=rf"normal_class must be an integer in \[0, 9\].*got {normal_class}"):
        load_one_class("mnist", normal_class, root="/nonexistent")


def test_normal_class_without_training_samples(tmp_path: Path) -> None:
    write_fake_mnist(tmp_path / "mnist", train_labels=np.arange(12) % 9, test_labels=np.arange(10))
    with pytest.raises(ValueError, match="normal_class=9 .*no training samples"):
        load_one_class("mnist", 9, root=tmp_path)


# --- file discovery and corrupted files ---------------------------------------------------------------------------


def test_missing_mnist_lists_searched_paths(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        load_one_class("mnist", 0, root=tmp_path)
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    for searched in (tmp_path / "MNIST" / "raw", tmp_path / "mnist", tmp_path):
        assert f"- {searched}\n" in message
    assert "download=True" in message and "--download" in message


def test_missing_cifar10_explains_official_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="cifar-10-batches-py") as info:
        load_one_class("cifar10", 0, root=tmp_path)
    assert "https://www.cs.toronto.edu/~kriz/cifar.html" in str(info.value)
    assert str(tmp_path / "cifar-10-batches-py") in str(info.value)


def test_root_from_environment_and_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    train_labels, test_labels = np.arange(20) % 10, np.arange(10)
    preferred = write_fake_mnist(tmp_path / "MNIST" / "raw", train_labels, test_labels, compress=True, seed=1)
    write_fake_mnist(tmp_path / "mnist", train_labels, test_labels, seed=2)
    monkeypatch.setenv("GANKD_DATA_ROOT", str(tmp_path))
    data = load_one_class("mnist", 5, root=None)
    assert data.source == f"MNIST gzip IDX at {tmp_path / 'MNIST' / 'raw'}"
    torch.testing.assert_close(data.train, expected_images(preferred[IDX_NAMES[0]][[5, 15]][:, None], 255.0),
                               rtol=0, atol=1e-6)
    assert data.test_labels.tolist() == [1, 1, 1, 1, 1, 0, 1, 1, 1, 1]


def test_root_defaults_to_user_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GANKD_DATA_ROOT", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    default_root = tmp_path / ".cache" / "gankd" / "data"
    with pytest.raises(DatasetNotFoundError, match=re.escape(str(default_root / "MNIST" / "raw"))):
        load_one_class("mnist", 0)


def _fake_mnist_dir(tmp_path: Path) -> Path:
    write_fake_mnist(tmp_path / "mnist", np.arange(20) % 10, np.arange(10))
    return tmp_path / "mnist"


def test_idx_bad_magic_names_file(tmp_path: Path) -> None:
    path = _fake_mnist_dir(tmp_path) / IDX_NAMES[2]
    write_idx(path, np.zeros(10, np.uint8))  # a labels file where the test images belong
    expected = rf"{re.escape(str(path))}: bad IDX magic number 0x00000801, expected 0x00000803"
    with pytest.raises(ValueError, match=expected):
        load_one_class("mnist", 0, root=tmp_path)


def test_idx_truncated_names_file(tmp_path: Path) -> None:
    path = _fake_mnist_dir(tmp_path) / IDX_NAMES[0]
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}: .* declares shape \(20, 28, 28\).*truncated"):
        load_one_class("mnist", 0, root=tmp_path)


def test_idx_truncated_gzip_names_file(tmp_path: Path) -> None:
    write_fake_mnist(tmp_path / "mnist", np.arange(20) % 10, np.arange(10), compress=True)
    path = tmp_path / "mnist" / f"{IDX_NAMES[3]}.gz"
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}: not a valid gzip file"):
        load_one_class("mnist", 0, root=tmp_path)


def test_idx_label_count_mismatch_names_both_files(tmp_path: Path) -> None:
    directory = _fake_mnist_dir(tmp_path)
    write_idx(directory / IDX_NAMES[1], np.zeros(19, np.uint8))
    expected = f"{re.escape(str(directory / IDX_NAMES[1]))} holds 19 labels but .*holds 20 images"
    with pytest.raises(ValueError, match=expected):
        load_one_class("mnist", 0, root=tmp_path)


def test_download_without_torchvision_explains(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torchvision", None)  # makes `import torchvision...` fail
    monkeypatch.setitem(sys.modules, "torchvision.datasets", None)
    with pytest.raises(RuntimeError, match="download=True needs a working torchvision"):
        load_one_class("mnist", 0, root=tmp_path, download=True)


# --- batching -------------------------------------------------------------------------------------------------------


def test_shuffled_batches_cover_each_sample_once_per_epoch() -> None:
    images = torch.arange(10).view(10, 1, 1, 1).float()
    batches = ShuffledBatches(images, 4, seed=3)
    assert len(batches) == 3

    def three_epochs(b: ShuffledBatches) -> list[list[list[int]]]:
        return [[batch.flatten().long().tolist() for batch in b] for _ in range(3)]

    epochs = three_epochs(batches)
    for epoch in epochs:
        assert [len(batch) for batch in epoch] == [4, 4, 2]
        assert sorted(sum(epoch, [])) == list(range(10))
    assert len({tuple(sum(epoch, [])) for epoch in epochs}) == 3  # a new permutation each epoch
    assert three_epochs(ShuffledBatches(images, 4, seed=3)) == epochs  # same seed, same sequence of epochs
    assert three_epochs(ShuffledBatches(images, 4, seed=4)) != epochs


def test_shuffled_batches_drop_last_and_no_shuffle() -> None:
    images = torch.arange(10).float()
    dropped = ShuffledBatches(images, 4, seed=0, drop_last=True)
    assert len(dropped) == 2
    out = list(dropped)
    assert [len(b) for b in out] == [4, 4] and len(set(torch.cat(out).tolist())) == 8
    ordered = ShuffledBatches(images, 4, shuffle=False)
    assert [b.tolist() for b in ordered] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    too_big = ShuffledBatches(images, 20, drop_last=True)
    assert len(too_big) == 0 and list(too_big) == []


def test_iterate_batches_uses_generator() -> None:
    images = torch.arange(7)
    a = list(iterate_batches(images, 3, shuffle=True, generator=torch.Generator().manual_seed(5)))
    b = list(iterate_batches(images, 3, shuffle=True, generator=torch.Generator().manual_seed(5)))
    assert [len(x) for x in a] == [3, 3, 1]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert sorted(torch.cat(a).tolist()) == list(range(7))


@pytest.mark.parametrize("batch_size", [0, -2])
def test_batch_size_must_be_positive(batch_size: int) -> None:
    with pytest.raises(ValueError, match=rf"batch_size must be an integer >= 1; got {batch_size}"):
        ShuffledBatches(torch.zeros(4), batch_size)
    with pytest.raises(ValueError, match="batch_size"):
        iterate_batches(torch.zeros(4), batch_size, shuffle=False)  # raised at the call, before iteration


def test_load_labelled_keeps_every_class_and_matches_load_one_class():
    from gankd_ganomaly.data import load_labelled

    full = load_labelled("digits")
    assert len(full.train) + len(full.test) == 1797
    assert torch.bincount(full.train_labels).tolist() == [124, 127, 124, 128, 127, 127, 127, 125, 122, 126]
    one = load_one_class("digits", 3)
    assert torch.equal(one.train, full.train[full.train_labels == 3]) and torch.equal(one.test, full.test)
    assert torch.equal(one.test_labels, (full.test_labels != 3).long())


def test_load_labelled_on_the_real_mnist_files():
    from gankd_ganomaly.data import load_labelled

    if not (SHARED / "MNIST" / "raw").is_dir():
        pytest.skip(f"MNIST files not found under {SHARED}")
    full = load_labelled("mnist", root=SHARED)
    assert full.train.shape == (60000, 1, 32, 32) and full.test.shape == (10000, 1, 32, 32)
    assert torch.bincount(full.train_labels).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def test_a_dataset_registered_twice_names_both_owners():
    from dataclasses import replace

    from gankd_ganomaly.data.registry import dataset_spec, register

    def load(root, normal_class, download):  # a plugin's loader, defined in this module
        raise AssertionError("never called")

    with pytest.raises(ValueError, match=r"^dataset 'digits' is registered twice: by gankd_ganomaly.data.builtin "
                                         r"and by test_data; register yours as 'test_data.digits'"):
        register(replace(dataset_spec("digits"), load=load))
