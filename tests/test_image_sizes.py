"""Image sizes 32, 64 and 128: GANomaly's pyramid networks, their fvcore counts, the data resized at load, and a
tiny teacher + student at 64x64 on a colour folder of real images (scikit-learn digits tinted and written as PNG)
that trains, saves, evaluates, scores and exports with the eager model's scores."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import gankd.modelfile
from gankd import CheckpointError
from gankd_ganomaly.cli import main
from gankd_ganomaly.data import InvalidImagesError, load_one_class, validate_images
from gankd_ganomaly.deploy.export import LAYOUTS, scoring_module, to_torchscript
from gankd_ganomaly.evaluation import anomaly_scores
from gankd_ganomaly.evaluation.flops import compression_report, count_generator, count_module
from gankd_ganomaly.experiment import ConfigError, RunConfig, load_model, make_hooks, run
from gankd_ganomaly.hooks import GanomalyHooks
from gankd_ganomaly.networks import (TEACHER_WIDTHS, GanomalyDiscriminator, GanomalyGenerator, pyramid_widths)
from gankd_ganomaly.run_layer import one_class_batches

TINY = ["--teacher-widths", "4,8,16", "--epochs", "1", "--batch-size", "16", "--quiet", "--threads", "1"]


# --- the networks -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [64, 128])
def test_pyramid_networks_take_and_give_their_size(size):
    torch.manual_seed(0)
    g = GanomalyGenerator(3, (2, 4, 8), image_size=size).eval()
    z1, x_hat, z2 = g(torch.rand(2, 3, size, size) * 2 - 1)
    assert z1.shape == z2.shape == (2, 256, 1, 1) and x_hat.shape == (2, 3, size, size) and g.image_size == size
    assert x_hat.abs().max() <= 1
    d = GanomalyDiscriminator(3, (2, 4, 8), image_size=size).eval()
    logit, features = d(x_hat)
    extra = {64: 1, 128: 2}[size]
    assert logit.shape == (2,) and features.shape == (2, 8 * 2 ** extra, 4, 4) and d.image_size == size
    # one stride-2 block per doubling, each twice as wide: GANomaly's pyramid
    assert pyramid_widths((2, 4, 8), size) == (2, 4, 8, *(8 * 2 ** (i + 1) for i in range(extra)))
    assert sum(isinstance(m, torch.nn.Conv2d) for m in g.encoder1.features) == 3 + extra
    assert sum(isinstance(m, torch.nn.ConvTranspose2d) for m in g.decoder.main) == 4 + extra


def test_32x32_networks_keep_their_parameter_names():
    names = list(GanomalyGenerator(1, (2, 4, 8)).state_dict())
    encoder = [f"features.{i}.{p}" for i in (0, 3, 6) for p in ("weight",)]
    assert [n for n in names if n.startswith("encoder1.features") and n.endswith(".weight")] == \
        [f"encoder1.{n}" for b in (0, 3, 6) for n in (f"features.{b}.weight", f"features.{b + 1}.weight")]
    assert encoder and "encoder1.head.weight" in names and "decoder.main.9.weight" in names
    assert not any(n.startswith("encoder1.features.9") or n.startswith("decoder.main.12") for n in names)
    assert pyramid_widths((2, 4, 8)) == (2, 4, 8)


def test_counts_at_64_are_fvcore_counts_of_the_built_generator():
    at32, at64 = count_generator(3, TEACHER_WIDTHS), count_generator(3, TEACHER_WIDTHS, image_size=64)
    assert at32 == {"params": 5_123_712, "flops": 56_008_704}  # the paper's, unchanged
    built = GanomalyHooks(in_channels=3, image_size=64).build_generator(TEACHER_WIDTHS)
    assert at64 == count_module(built, torch.zeros(1, 3, 64, 64))
    assert at64 == {"params": 14_563_968, "flops": 318_455_808}  # GANomaly's own 64x64 network (ngf = 64)
    student = count_generator(1, (2, 4, 8), image_size=64)
    assert student == {"params": 204_948, "flops": 612_864} != count_generator(1, (2, 4, 8))
    report = compression_report("mnist", image_size=64)
    assert report["image_size"] == 64 and report["student_pyramid"] == [2, 4, 8, 16]
    assert report["flops_ratio"] == pytest.approx(312_164_352 / 612_864)
    assert compression_report("mnist")["teacher"] == count_generator(1, TEACHER_WIDTHS)


def test_wrong_sizes_are_refused_with_named_errors():
    with pytest.raises(ValueError, match=r"image_size must be one of 32, 64, 128 .* got 48"):
        GanomalyGenerator(1, (2, 4, 8), image_size=48)
    with pytest.raises(ValueError, match="image_size must be one of"):
        GanomalyHooks(in_channels=1, image_size=256)
    with pytest.raises(ConfigError, match=r"image_size must be one of 32, 64, 128 .*got 100"):
        RunConfig(image_size=100)
    with pytest.raises(ValueError, match="image_size must be one of"):
        load_one_class("digits", 3, image_size=96)
    g = GanomalyGenerator(1, (2, 4, 8), image_size=64).eval()
    with pytest.raises(ValueError, match=r"expected images of shape \(N, 1, 64, 64\), got \(2, 1, 32, 32\)"):
        g(torch.zeros(2, 1, 32, 32))
    with pytest.raises(InvalidImagesError, match=r"the network takes \(N, 1, 64, 64\)"):
        validate_images(torch.zeros(2, 1, 32, 32), 1, image_size=64)
    scorer = to_torchscript(g, 1)
    with pytest.raises(Exception, match=r"shape \(N, 1, 64, 64\) in \[-1, 1\], got \(2, 1, 32, 32\)"):
        scorer(torch.zeros(2, 1, 32, 32))


# --- data ---------------------------------------------------------------------------------------------------------


def test_built_in_data_is_resized_from_its_own_pixels():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    at32, at64 = load_one_class("digits", 3), load_one_class("digits", 3, image_size=64)
    assert at32.train.shape[1:] == (1, 32, 32) and at64.train.shape[1:] == (1, 64, 64) and at64.image_size == 64
    bunch = load_digits()  # the loader's split, then 8x8 -> 64x64 in one bilinear resize (not 8 -> 32 -> 64)
    train, _, target, _ = train_test_split(bunch.images[:, None], bunch.target, test_size=0.3,
                                           stratify=bunch.target, random_state=0)
    eights = torch.from_numpy(train[target == 3].astype(np.float32)) / 16 * 2 - 1
    direct = F.interpolate(eights, size=(64, 64), mode="bilinear", align_corners=False).clamp(-1, 1)
    assert torch.allclose(at64.train, direct, atol=1e-6)
    twice = F.interpolate(at32.train, size=(64, 64), mode="bilinear", align_corners=False)
    assert not torch.allclose(at64.train, twice, atol=1e-3)
    assert torch.equal(at64.test_labels, at32.test_labels)
    batches = one_class_batches("digits", 3, batch_size=8, image_size=64)
    assert next(iter(batches)).shape == (8, 1, 64, 64)
    hooks = GanomalyHooks(in_channels=1, image_size=64)  # the size set once, in the family: the data follow it
    assert next(iter(one_class_batches("digits", 3, batch_size=8, hooks=hooks))).shape == (8, 1, 64, 64)
    assert next(iter(one_class_batches("digits", 3, batch_size=8, hooks=hooks, image_size=64))).shape[-1] == 64
    with pytest.raises(ValueError, match=r"data.args.image_size 32 differs from family_args.image_size 64 .*set it "
                                         r"once, in family_args"):
        one_class_batches("digits", 3, hooks=hooks, image_size=32)


# --- a tiny teacher and student at 64x64 on a colour folder ----------------------------------------------------------


@pytest.fixture(scope="module")
def colour_folder(tmp_path_factory) -> Path:
    """scikit-learn digits as 8x8 RGB PNG files (each digit tinted by its index): 3s of the first 400 in
    train/good, then test/good (3s) and test/other (the other digits of the next 100)."""
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("colour_folder")
    bunch = load_digits()
    gray = np.round(bunch.images * 255 / 16).astype(np.uint8)
    tints = np.array([[1.0, 0.6, 0.3], [0.4, 1.0, 0.7], [0.8, 0.5, 1.0]])
    for i, (image, target) in enumerate(zip(gray[:500], bunch.target[:500])):
        rgb = np.round(image[..., None] * tints[i % 3]).astype(np.uint8)
        where = ("train", "good") if i < 400 else ("test", "good" if target == 3 else "other")
        if i < 400 and target != 3:
            continue
        path = root.joinpath(*where, f"{i:04d}.png")
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(path)
    return root


def test_folder_at_64_trains_saves_evaluates_scores_and_exports(colour_folder, tmp_path, capsys):
    data = ["--dataset", "folder", "--data-root", str(colour_folder)]
    teacher, student = tmp_path / "t", tmp_path / "s"
    assert main(["teacher", *data, "--image-size", "64", "--out", str(teacher), *TINY]) == 0
    # the student's size comes from the teacher's model file
    assert main(["distill", "--recipe", "recommended", "--teacher", str(teacher), *data, "--student-widths",
                 "2,4,8", "--out", str(student), "--epochs", "1", "--quiet", "--threads", "1"]) == 0
    record = json.loads((student / "record.json").read_text())
    assert record["image_size"] == 64 and record["config"]["image_size"] == 64 and record["auroc_last"] is not None
    assert record["params"] == count_generator(3, (2, 4, 8), image_size=64)["params"]

    raw = torch.load(student / "model.pt", weights_only=True)
    assert raw["family_args"] == {"in_channels": 3, "latent_dim": 256, "image_size": 64}
    generic, _ = gankd.modelfile.load_model(student / "model.pt")  # any family's reader builds it at 64
    assert generic.generator.image_size == 64
    gan, header = load_model(student)
    assert header["image_size"] == 64 and gan.generator.image_size == 64
    with pytest.raises(CheckpointError, match=r"model for 64x64 images, not 32x32"):
        load_model(student, image_size=32)

    cfg = RunConfig.from_dict(header["config"])
    folder = load_one_class("folder", root=colour_folder, image_size=64)
    assert folder.test.shape[1:] == (3, 64, 64)
    eager = anomaly_scores(make_hooks(cfg), gan, folder.test)

    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(student), "--json", str(tmp_path / "e.json"), "--threads", "1"]) == 0
    result = json.loads((tmp_path / "e.json").read_text())
    assert result["auroc"] == pytest.approx(record["auroc_last"], abs=1e-12) and result["image_size"] == 64
    capsys.readouterr()
    assert main(["score", "--checkpoint", str(student), "--images", str(colour_folder / "test" / "other"),
                 "--threads", "1"]) == 0
    rows = [line.split(",") for line in capsys.readouterr().out.strip().splitlines()[1:]]
    n_good = int((folder.test_labels == 0).sum())
    assert [float(r[1]) for r in rows] == pytest.approx(eager[n_good:].tolist(), rel=1e-6, abs=1e-9)

    # exported scorers: the fast graphs (every layout) and the plain one equal the eager model's scores
    scale = float(eager.abs().max())
    for layout in LAYOUTS:
        out = tmp_path / f"s-{layout}.ts"
        assert main(["export", str(student), str(out), "--layout", layout]) == 0
        scores = torch.jit.load(str(out))(folder.test)
        assert float((scores - eager).abs().max()) <= 1e-5 + 1e-4 * scale, layout
        assert torch.allclose(scores, eager, rtol=1e-4, atol=1e-4 * float(eager.median())), layout
    assert main(["export", str(student), str(tmp_path / "plain.ts"), "--plain"]) == 0
    meta = json.loads((tmp_path / "plain.ts.json").read_text())
    assert meta["image_size"] == 64 and meta["input"] == "float32 (N, 3, 64, 64) in [-1, 1]"
    assert torch.allclose(torch.jit.load(str(tmp_path / "plain.ts"))(folder.test), eager, atol=1e-5)
    with torch.no_grad():
        assert torch.allclose(scoring_module(gan)(folder.test), eager, atol=1e-5)

    # a size that conflicts with the model is refused, naming both
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(student), "--image-size", "32"]) == 1
    assert "--image-size 32 conflicts" in capsys.readouterr().err
    assert main(["distill", "--recipe", "recommended", "--teacher", str(teacher), *data, "--image-size", "32",
                 "--out", str(tmp_path / "s32"), "--epochs", "1", "--quiet"]) == 1
    assert "model for 64x64 images, not 32x32" in capsys.readouterr().err
    cfg32 = RunConfig(dataset="folder", data_root=str(colour_folder), method="recommended", epochs=1,
                      student_widths=(2, 4, 8))
    with pytest.raises(ConfigError, match="the teacher takes 64x64 images but this run's image_size is 32"):
        run(cfg32, load_one_class("folder", root=colour_folder), load_model(teacher)[0], verbose=False)
