"""Your own images: the folder dataset on real files, the calibrated threshold, the pictures of `evaluate --plots`,
the score CSV and `evaluate --json`, through tiny runs on scikit-learn digits written as PNG files."""
import csv
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gankd_ganomaly.cli import main
from gankd_ganomaly.data import load_one_class
from gankd_ganomaly.evaluation import (anomaly_scores, calibrate_threshold, calibration_split,
                                       rates_at_threshold)
from gankd_ganomaly.experiment import RunConfig, config_differences, load_model, make_hooks, run
from gankd_ganomaly.data.folder import FolderDatasetError, decode_image, load_folder

TINY = ["--teacher-widths", "4,8,16", "--epochs", "1", "--batch-size", "16", "--quiet", "--threads", "1"]


def _save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _read_csv(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture(scope="module")
def digits_folder(tmp_path_factory) -> Path:
    """scikit-learn digits as 8x8 PNG files: 3s of the first 600 images in train/good, then test/good (3s) and
    test/other (the other digits of the next 150)."""
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("digits_folder")
    bunch = load_digits()
    images = np.round(bunch.images * 255 / 16).astype(np.uint8)
    for i, (image, target) in enumerate(zip(images[:750], bunch.target[:750])):
        if i < 600:
            if target == 3:
                _save(root / "train" / "good" / f"{i:04d}.png", image)
        else:
            _save(root / "test" / ("good" if target == 3 else "other") / f"{i:04d}.png", image)
    return root


# --- the loader on real files ------------------------------------------------------------------------------------


def test_16_bit_png_is_scaled_by_its_bit_depth_not_clipped(tmp_path):
    array = np.full((32, 32), 65535, np.uint16)
    array[:, :16] = 1000  # an 8-bit reading would clip both halves to 1.0
    path = _save(tmp_path / "a16.png", array)
    assert Image.open(path).mode.startswith("I")
    x, native = decode_image(path)
    assert native == 1 and x.shape == (1, 32, 32)
    assert torch.allclose(x[0, :, :16], torch.tensor(1000 / 65535 * 2 - 1), atol=1e-6)
    assert torch.allclose(x[0, :, 16:], torch.tensor(1.0))
    dim = _save(tmp_path / "dim16.png", np.full((32, 32), 300, np.uint16))  # never stretched to its own max
    assert torch.allclose(decode_image(dim)[0], torch.tensor(300 / 65535 * 2 - 1), atol=1e-6)


def test_folder_layout_formats_sizes_labels_and_cache(tmp_path):
    rng = np.random.default_rng(0)
    _save(tmp_path / "train/good/a.png", rng.integers(0, 256, (28, 28), dtype=np.uint8))
    _save(tmp_path / "train/good/b.bmp", rng.integers(0, 256, (50, 40), dtype=np.uint8))  # any size: resized
    _save(tmp_path / "train/good/c.tif", rng.integers(0, 65536, (16, 16), dtype=np.uint16))
    _save(tmp_path / "test/good/d.jpg", rng.integers(0, 256, (32, 32), dtype=np.uint8))
    _save(tmp_path / "test/scratch/e.png", rng.integers(0, 256, (32, 32), dtype=np.uint8))
    _save(tmp_path / "test/hole/f.png", rng.integers(0, 256, (32, 32), dtype=np.uint8))
    (tmp_path / "train/good/notes.txt").write_text("ignored")
    data = load_one_class("folder", root=tmp_path)
    assert data.dataset == "folder" and data.normal_class == 0 and data.class_name == "good" and data.channels == 1
    assert data.train.shape == (3, 1, 32, 32) and data.test.shape == (3, 1, 32, 32)
    assert data.test_kinds == ("good", "hole", "scratch") and data.test_labels.tolist() == [0, 1, 1]
    assert [Path(f).name for f in data.train_files] == ["a.png", "b.bmp", "c.tif"]
    assert data.train.min() >= -1 and data.train.max() <= 1 and "decoded" in data.source
    # an 8-bit 28x28 PNG gives the tensor of the IDX loader's operation (x / 255 -> [-1, 1] -> bilinear 32x32)
    a = np.asarray(Image.open(tmp_path / "train/good/a.png"), dtype=np.float32)
    expected = torch.nn.functional.interpolate(torch.from_numpy(a)[None, None] / 255 * 2 - 1, size=(32, 32),
                                               mode="bilinear", align_corners=False).clamp(-1, 1)
    assert torch.equal(data.train[0], expected[0])

    again = load_one_class("folder", root=tmp_path)  # cached: same tensors, no file decoded
    assert "cached" in again.source and torch.equal(again.train, data.train) and torch.equal(again.test, data.test)
    assert len(list((tmp_path / ".gankd-cache").glob("*.npz"))) == 1
    os.utime(tmp_path / "test/good/d.jpg", ns=(1, 1))  # a changed file: decoded again, the old entry replaced
    assert "decoded" in load_one_class("folder", root=tmp_path).source
    assert len(list((tmp_path / ".gankd-cache").glob("*.npz"))) == 1
    assert load_folder(tmp_path, channels=3, cache=False).train.shape == (3, 3, 32, 32)  # forced colour


def test_folder_errors_name_the_file_or_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_one_class("folder", root=tmp_path / "missing")
    with pytest.raises(FolderDatasetError, match="no train/good folder"):
        load_one_class("folder", root=tmp_path)
    (tmp_path / "train/good").mkdir(parents=True)
    with pytest.raises(FolderDatasetError, match=r"training folder .*train/good.* has no .* images; it is empty"):
        load_one_class("folder", root=tmp_path)
    _save(tmp_path / "train/good/gray.png", np.zeros((8, 8), np.uint8))
    (tmp_path / "test/crack").mkdir(parents=True)
    with pytest.raises(FolderDatasetError, match=r"test folder .*crack"):
        load_one_class("folder", root=tmp_path)
    _save(tmp_path / "test/crack/colour.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(FolderDatasetError, match=r"mixed channel counts: .*gray\.png.* gray but .*colour\.png"):
        load_one_class("folder", root=tmp_path)
    assert load_one_class("folder", root=tmp_path, channels=3).train.shape[1] == 3  # forced: converted
    (tmp_path / "test/crack/broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(FolderDatasetError, match=r"cannot read image .*broken\.png"):
        load_one_class("folder", root=tmp_path, channels=3)
    with pytest.raises(ValueError, match="one normal class, 0"):
        load_one_class("folder", 2, root=tmp_path)
    with pytest.raises(ValueError, match="needs its root folder"):
        load_one_class("folder")
    # through the CLI: one line naming the file, exit status 1
    assert main(["teacher", "--dataset", "folder", "--data-root", str(tmp_path), "--channels", "3",
                 "--out", str(tmp_path / "run"), *TINY]) == 1


# --- threshold calibration --------------------------------------------------------------------------------------


def test_calibration_split_and_threshold_on_synthetic_scores():
    train, calib = calibration_split(100, 0.1, seed=3)
    assert len(calib) == 10 and len(train) == 90 and not set(train.tolist()) & set(calib.tolist())
    assert torch.equal(calibration_split(100, 0.1, seed=3)[1], calib)  # deterministic in the seed
    assert not torch.equal(calibration_split(100, 0.1, seed=4)[1], calib)
    assert len(calibration_split(100, 0.0, seed=0)[1]) == 0

    normal = torch.arange(1000, dtype=torch.float64)  # 0..999
    threshold = calibrate_threshold(normal, 0.01)
    assert threshold == 990.0 and float((normal > threshold).double().mean()) <= 0.01
    labels = torch.tensor([0] * 1000 + [1] * 4)
    rates = rates_at_threshold(torch.cat([normal, torch.tensor([5.0, 991, 995, 2000])]), labels, threshold)
    assert rates == {"fpr_at_threshold": 0.009, "tpr_at_threshold": 0.75}
    with pytest.raises(ValueError, match="target false-positive rate"):
        calibrate_threshold(normal, 0.0)


def test_threshold_is_the_conformal_order_statistic_on_hand_made_scores():
    # the j-th largest of n scores, j = floor(target * (n + 1)) (at least 1)
    assert calibrate_threshold(torch.arange(103.0), 0.01) == 102.0  # j = 1: the largest ("higher" took 101)
    assert calibrate_threshold(torch.arange(610.0), 0.01) == 604.0  # j = 6 ("higher" took the 7th largest, 603)
    assert calibrate_threshold(torch.arange(199.0), 0.01) == 197.0  # j = 2
    assert calibrate_threshold(torch.arange(49.0), 0.01) == 48.0  # target out of reach: the largest, 1 / 50
    assert calibrate_threshold(np.array([5.0, 1, 4, 2, 3]), 0.34) == 4.0  # j = floor(2.04) = 2
    assert calibrate_threshold(torch.arange(99.0), 0.29) == 70.0  # 0.29 * 100 = 28.999...96 in floats: still j = 29
    for n in (1, 2, 9, 10, 49, 99, 100, 101, 250, 611, 999):
        for target in (0.01, 0.05, 0.1, 0.3):
            values = np.random.default_rng(n).permutation(n).astype(float)
            rank = max(1, int(np.ceil((1 - target) * (n + 1) - 1e-9)))  # from below, 1-based
            assert calibrate_threshold(values, target) == float(min(rank, n) - 1), (n, target)


@pytest.mark.parametrize("n", [103, 610])
def test_threshold_gives_the_target_false_positive_rate_on_new_iid_scores(n):
    """For uniform scores the chance that a new one lies above the threshold t is exactly 1 - t: over many
    calibration draws its mean is j / (n + 1) <= target (the "higher" quantile gave about target + 1 / (n + 1))."""
    rng = np.random.default_rng(7)
    target, j = 0.01, max(1, int(np.floor(0.01 * (n + 1))))
    exceed = np.array([1 - calibrate_threshold(rng.random(n), target) for _ in range(4000)])
    sd_of_mean = np.sqrt(j * (n + 1 - j) / ((n + 1) ** 2 * (n + 2)) / len(exceed))
    assert abs(exceed.mean() - j / (n + 1)) < 5 * sd_of_mean
    if n + 1 >= 1 / target:
        assert exceed.mean() <= target + 5 * sd_of_mean and exceed.mean() > target - 1 / (n + 1)
    # measured as evaluate does: the share of new normal (Gaussian) scores above a threshold from n of them
    fprs = []
    for _ in range(400):
        threshold = calibrate_threshold(torch.from_numpy(rng.normal(size=n)), target)
        new = torch.from_numpy(rng.normal(size=1000))
        fprs.append(rates_at_threshold(new, torch.zeros(1000), threshold)["fpr_at_threshold"])
    assert abs(np.mean(fprs) - j / (n + 1)) < 0.0015


def test_built_in_datasets_keep_their_training_set_and_old_configs_resume():
    assert RunConfig(dataset="digits").resolved_calibration_share == 0.0
    assert RunConfig(dataset="folder", data_root="x").resolved_calibration_share == 0.1
    old = RunConfig().to_dict()
    for added in ("channels", "calibration_share", "target_fpr"):
        old.pop(added)
    assert config_differences(old, RunConfig().to_dict()) == []  # a checkpoint saved before these fields


def test_training_without_test_images_skips_auroc_and_still_calibrates(digits_folder, tmp_path):
    root = tmp_path / "train_only"
    (root / "train").mkdir(parents=True)
    os.symlink(digits_folder / "train" / "good", root / "train" / "good")
    cfg = RunConfig(dataset="folder", data_root=str(root), method="teacher", epochs=1, teacher_widths=(4, 8, 16))
    data = load_one_class("folder", root=root)
    record, gan = run(cfg, data, verbose=False)
    assert record["auroc_last"] is None and "no test images" in record["auroc_skipped"]
    n_calib = round(0.1 * len(data.train))
    assert record["threshold"]["calibration_images"] == n_calib and record["train_images"] == len(data.train) - n_calib
    assert record["config"]["channels"] == 1


# --- through the command line -------------------------------------------------------------------------------------


def test_folder_cli_teacher_distill_evaluate_plots_score_export(digits_folder, tmp_path, capsys):
    data = ["--dataset", "folder", "--data-root", str(digits_folder)]
    teacher, student = tmp_path / "t", tmp_path / "s"
    assert main(["teacher", *data, "--out", str(teacher), *TINY]) == 0
    assert main(["distill", "--recipe", "recommended", "--teacher", str(teacher), *data, "--student-widths",
                 "1,2,4", "--out", str(student), "--epochs", "1", "--quiet", "--threads", "1"]) == 0
    record = json.loads((student / "record.json").read_text())
    assert record["dataset"] == "folder" and record["auroc_last"] is not None

    # the threshold in model.pt is the (1 - 1%) quantile of the held-out normal images' scores
    gan, header = load_model(student)
    cfg = RunConfig.from_dict(header["config"])
    full = load_one_class("folder", root=digits_folder)
    _, calib = calibration_split(len(full.train), 0.1, cfg.seed)
    scores = anomaly_scores(make_hooks(cfg), gan, full.train[calib])
    assert header["threshold"]["value"] == calibrate_threshold(scores, 0.01)
    assert header["threshold"]["calibration_images"] == len(calib) == record["threshold"]["calibration_images"]

    plots = tmp_path / "plots"
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(student), "--json", str(tmp_path / "e.json"),
                 "--plots", str(plots), "--threads", "1"]) == 0
    result = json.loads((tmp_path / "e.json").read_text())
    assert {"auroc", "threshold", "fpr_at_threshold", "tpr_at_threshold"} <= set(result)
    assert result["auroc"] == pytest.approx(record["auroc_last"], abs=1e-12)
    assert result["threshold"] == header["threshold"]["value"]
    assert 0 <= result["fpr_at_threshold"] <= 1 and 0 <= result["tpr_at_threshold"] <= 1
    for name in ("roc.png", "histogram.png", "most_novel.png"):
        path = plots / name
        assert path.stat().st_size > 1000
        with Image.open(path) as img:
            assert img.size == (640, 480)

    capsys.readouterr()
    assert main(["score", "--checkpoint", str(student), "--threads", "1"]) == 0
    rows = _read_csv(capsys.readouterr().out)
    assert list(rows[0]) == ["path", "label", "score", "is_novel"] and len(rows) == result["test_images"]
    novel = [int(r["is_novel"]) for r in rows]
    assert novel == [int(float(r["score"]) > result["threshold"]) for r in rows]
    fpr = sum(n for n, r in zip(novel, rows) if r["label"] == "0") / sum(r["label"] == "0" for r in rows)
    assert fpr == pytest.approx(result["fpr_at_threshold"])
    assert main(["score", "--checkpoint", str(student), "--images", str(digits_folder / "test" / "other"),
                 "--threshold", "0"]) == 0
    rows = _read_csv(capsys.readouterr().out)
    assert list(rows[0]) == ["path", "score", "is_novel"] and all(r["is_novel"] == "1" for r in rows)

    from gankd_ganomaly.deploy.export import read_metadata

    assert main(["export", str(student), str(tmp_path / "s.ts")]) == 0
    meta = read_metadata(tmp_path / "s.ts")
    assert meta["threshold"] == result["threshold"] and meta["in_channels"] == 1
    (tmp_path / "s.ts.json").unlink()
    assert read_metadata(tmp_path / "s.ts")["threshold"] == result["threshold"]  # also inside the file
