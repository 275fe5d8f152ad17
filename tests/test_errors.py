"""Bad input gets a named error whose message names the offending value, and nothing is lost.

One test per bad input; each asserts the exception type and the value in the message.
"""
import gzip
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from gankd import (CheckpointError, DistillationEngine, DistillationLoss, DistillTerm, NonFiniteLossError,
                   Schedule, Structure, get_schedule, get_structure, load_checkpoint)
from gankd.callbacks import Callback
from gankd_ganomaly.cli import main
from gankd_ganomaly.data import DatasetNotFoundError, InvalidImagesError, OneClassData, load_one_class
from gankd_ganomaly.experiment import ConfigError, RunConfig, build_gan, load_model, make_hooks, run, save_model
from gankd_ganomaly.hooks import GanomalyHooks, GanomalyLossWeights
from gankd_ganomaly.networks import GanomalyGenerator

TINY = {"teacher_widths": (4, 8, 16), "student_widths": (1, 2, 4), "batch_size": 32, "epochs": 1}


def cli_error(capsys, *argv):
    """Run the CLI in-process; return the stderr of a run that failed with a named error (exit 1)."""
    assert main(list(argv)) == 1
    return capsys.readouterr().err


def with_images(data: OneClassData, train: torch.Tensor) -> OneClassData:
    return OneClassData(data.dataset, data.normal_class, train, data.test, data.test_labels, data.source)


# --- images the network cannot take --------------------------------------------------------------------------------


def test_wrong_channel_count(digits0, tmp_path, capsys):
    rgb = torch.zeros(8, 3, 32, 32)
    with pytest.raises(InvalidImagesError, match=r"have 3 channel\(s\) \(shape \(8, 3, 32, 32\)\) but the network "
                                                 r"takes 1-channel images"):
        run(RunConfig(dataset="digits", method="teacher", **TINY), with_images(digits0, rgb), verbose=False)
    with pytest.raises(ValueError, match=r"expected images of shape \(N, 1, 32, 32\), got \(2, 3, 32, 32\)"):
        GanomalyGenerator(1, (1, 2, 4))(torch.zeros(2, 3, 32, 32))
    # a 1-channel checkpoint evaluated on a 3-channel dataset: refused before any data is read
    save_model(tmp_path / "m.pt", build_gan(GanomalyHooks(1), (1, 2, 4), 0), RunConfig(**TINY))
    err = cli_error(capsys, "evaluate", "--checkpoint", str(tmp_path / "m.pt"), "--dataset", "cifar10")
    assert "InvalidImagesError" in err and "takes 1-channel images but dataset 'cifar10' has 3-channel" in err


def test_wrong_image_size(digits0):
    small = torch.zeros(8, 1, 28, 28)
    with pytest.raises(InvalidImagesError, match=r"have shape \(8, 1, 28, 28\); the network takes \(N, 1, 32, 32\)"):
        run(RunConfig(dataset="digits", method="teacher", **TINY), with_images(digits0, small), verbose=False)


# --- normal class ---------------------------------------------------------------------------------------------------


def test_normal_class_out_of_range(capsys):
    with pytest.raises(ConfigError, match=r"normal_class must be in \[0, 9\] for dataset 'digits'; got 10"):
        RunConfig(normal_class=10)
    with pytest.raises(ValueError, match=r"normal_class must be an integer in \[0, 9\].*got -1"):
        load_one_class("digits", -1)
    err = cli_error(capsys, "teacher", "--normal-class", "12", "--out", "unused")
    assert "ConfigError" in err and "got 12" in err


def write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def fake_mnist(folder: Path, train_labels: np.ndarray, test_labels: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for stem, labels in (("train", train_labels), ("t10k", test_labels)):
        write_idx(folder / f"{stem}-images-idx3-ubyte.gz", np.zeros((len(labels), 28, 28)), 0x803)
        write_idx(folder / f"{stem}-labels-idx1-ubyte.gz", labels, 0x801)
    return folder


def test_normal_class_without_samples(tmp_path):
    fake_mnist(tmp_path / "mnist", train_labels=np.arange(18) % 9, test_labels=np.arange(10))  # no 9 in train
    with pytest.raises(ValueError, match=r"normal_class=9 \('9'\) has no training samples"):
        load_one_class("mnist", 9, root=tmp_path)


# --- data values ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_or_inf_in_input_data(digits0, bad):
    train = digits0.train.clone()
    train[5, 0, 3, 4] = bad
    with pytest.raises(InvalidImagesError, match=rf"digits train images contain 1 NaN/Inf value\(s\) in 1 image\(s\); "
                                                 rf"the first is image 5 \(value {bad}\)"):
        run(RunConfig(dataset="digits", method="teacher", **TINY), with_images(digits0, train), verbose=False)


# --- teacher / student pairs --------------------------------------------------------------------------------------------


def test_teacher_and_student_with_incompatible_outputs(digits0):
    hooks = GanomalyHooks(in_channels=1)
    teacher = GanomalyHooks(in_channels=1, latent_dim=128).build_gan((4, 8, 16))  # z1: (N, 128, 1, 1)
    student = hooks.build_gan((1, 2, 4))                                            # z1: (N, 256, 1, 1)
    before = {k: v.clone() for k, v in student.named_parameters()}
    with pytest.raises(ValueError, match=r"distillation term K_z1: student output 'z1' has shape \(8, 256, 1, 1\) "
                                         r"but teacher output 'z1' has shape \(8, 128, 1, 1\)"):
        DistillationEngine(hooks, teacher, student).fit(get_schedule("KDGAN-1", 1), [digits0.train[:8]])
    assert all(torch.equal(before[k], v) for k, v in student.named_parameters())  # no step was taken
    loss = DistillationLoss([DistillTerm("features", "l2")])
    with pytest.raises(KeyError, match=r"the teacher generator has no output 'features'; it returned \['x_hat', 'z1', "
                                       r"'z2'\]"):
        DistillationEngine(hooks, teacher, student, distillation=loss).fit(get_schedule("KDGAN-1", 1),
                                                                           [digits0.train[:8]])


# --- names ----------------------------------------------------------------------------------------------------------------


def test_unknown_structure_loss_and_schedule_names_list_the_valid_ones(capsys):
    with pytest.raises(KeyError, match=r"unknown structure 'KDGAN-9'; registered: KDGAN-1, KDGAN-2, KDGAN-3, KDGAN-4, "
                                       r"student-alone, teacher"):
        get_structure("KDGAN-9")
    with pytest.raises(KeyError, match=r"unknown distillation loss 'l3'; registered: .*l1, l2, .*mse, .*smooth_l1"):
        DistillTerm("z1", "l3")
    with pytest.raises(KeyError, match=r"unknown schedule 'P-KDGAN-III'; registered: .*P-KDGAN-II-23, P-KDGAN-II-24"):
        get_schedule("P-KDGAN-III", 1)
    with pytest.raises(ConfigError, match=r"method must be one of teacher, student-alone, .*P-KDGAN-II-24.*; "
                                          r"got 'KDGAN-7'"):
        RunConfig(method="KDGAN-7")
    err = cli_error(capsys, "distill", "--set", "method=KDGAN-7", "--out", "unused")
    assert "ConfigError" in err and "'KDGAN-7'" in err and "P-KDGAN-II-23" in err
    with pytest.raises(SystemExit):  # argparse: exit 2, listing the choices
        main(["distill", "--method", "KDGAN-7"])
    assert "invalid choice: 'KDGAN-7'" in capsys.readouterr().err


# --- numbers ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("epochs", [0, -3])
def test_zero_or_negative_epochs(epochs, capsys):
    with pytest.raises(ValueError, match=rf"epochs must be an integer >= 1, got {epochs}"):
        get_schedule("teacher", epochs)
    with pytest.raises(ConfigError, match=rf"epochs must be an integer >= 1, got {epochs}"):
        RunConfig(epochs=epochs)
    err = cli_error(capsys, "teacher", "--epochs", str(epochs), "--out", "unused")
    assert f"ConfigError: epochs must be an integer >= 1, got {epochs}" in err


def test_negative_weights(capsys):
    with pytest.raises(ValueError, match=r"Structure 'custom': alpha must be a finite number >= 0, got -1"):
        Structure(alpha=-1, beta=1)
    with pytest.raises(ValueError, match=r"DistillTerm weight for 'z1' must be (a finite number )?>= 0, got -0.5"):
        DistillTerm("z1", "l2", -0.5)
    with pytest.raises(ValueError, match=r"GanomalyLossWeights.w_con must be a finite number >= 0, got -10"):
        GanomalyLossWeights(w_con=-10)
    with pytest.raises(ConfigError, match=r"loss_weights.w_adv must be a finite number, got nan"):
        RunConfig(loss_weights={"w_adv": math.nan})
    err = cli_error(capsys, "teacher", "--set", "loss_weights.w_adv=-2", "--out", "unused")
    assert "ConfigError: loss_weights.w_adv must be >= 0, got -2" in err


def test_structure_whose_flags_train_nothing():
    with pytest.raises(ValueError, match=r"Structure 'idle': all five weights are 0, so it would train nothing"):
        Structure(name="idle")
    stage = {"structure": {"alpha": 0, "beta": 0, "mu": 0, "nu": 0, "lam": 0, "name": "idle"}, "epochs": 1}
    with pytest.raises(ValueError, match="Structure 'idle': all five weights are 0"):
        Schedule.from_dict({"name": "mine", "stages": [stage]})


# --- files -----------------------------------------------------------------------------------------------------------------


def test_missing_or_corrupted_dataset_files(tmp_path, capsys):
    with pytest.raises(DatasetNotFoundError, match=rf"MNIST files .* not found. Searched, in order:\n  - "
                                                   rf"{tmp_path}/MNIST/raw"):
        load_one_class("mnist", 0, root=tmp_path)
    folder = fake_mnist(tmp_path / "mnist", np.arange(20) % 10, np.arange(10))
    bad = folder / "train-images-idx3-ubyte.gz"
    bad.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + bytes(20)))  # a labels magic in an images file
    with pytest.raises(ValueError, match=rf"{bad}: bad IDX magic number 0x00000801, expected 0x00000803"):
        load_one_class("mnist", 0, root=tmp_path)
    err = cli_error(capsys, "teacher", "--dataset", "cifar10", "--data-root", str(tmp_path), "--out",
                    str(tmp_path / "run"))
    assert "DatasetNotFoundError" in err and str(tmp_path / "cifar-10-batches-py") in err


def test_checkpoint_from_another_architecture(tmp_path, capsys):
    cfg = RunConfig(method="teacher", **TINY)
    save_model(tmp_path / "teacher.pt", build_gan(make_hooks(cfg), cfg.teacher_widths, 0), cfg)
    with pytest.raises(CheckpointError, match=r"teacher \(.*teacher.pt\) checkpoint is for another architecture: shape "
                                              r"mismatches \(\d+\): discriminator.encoder.features.0.weight: checkpoint "
                                              r"\(4, 1, 4, 4\) vs model \(64, 1, 4, 4\).*header says: teacher of method "
                                              r"'teacher', widths \[4, 8, 16\]"):
        load_model(tmp_path / "teacher.pt", widths=(64, 128, 256), in_channels=1, what="teacher")
    # the CLI: distilling from it as a teacher of the paper's widths names the tensors
    err = cli_error(capsys, "distill", "--teacher", str(tmp_path / "teacher.pt"), "--teacher-widths", "64,128,256",
                    "--out", str(tmp_path / "s"))
    assert "CheckpointError" in err and "discriminator.encoder.features.3.weight: checkpoint (8, 4, 4, 4) vs " \
                                        "model (128, 64, 4, 4)" in err
    assert "header says: teacher of method 'teacher', widths [4, 8, 16]" in err
    (tmp_path / "cut.pt").write_bytes((tmp_path / "teacher.pt").read_bytes()[:300])
    err = cli_error(capsys, "evaluate", "--checkpoint", str(tmp_path / "cut.pt"))
    assert "CheckpointError: cannot read checkpoint" in err and "cut.pt" in err


# --- a loss that becomes NaN ---------------------------------------------------------------------------------------------


class PoisonAfterFirstEpoch(Callback):
    """Makes the next step's losses NaN (a diverged weight) after the first epoch was checkpointed."""

    def on_epoch_end(self, engine, state, record):
        if record["global_epoch"] == 1:
            with torch.no_grad():
                engine.teacher.generator.decoder.main[0].weight.fill_(float("nan"))


def test_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(digits0, tmp_path):
    cfg = RunConfig(dataset="digits", method="teacher", **{**TINY, "epochs": 3})
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss in stage 0 \(teacher\), epoch 2, step 1: L_g\^T, "
                                                 r"L_g\^T/con, L_g\^T/enc, L_g\^T/adv = L_g\^T=nan"):
        run(cfg, digits0, verbose=False, out_dir=tmp_path, callbacks=[PoisonAfterFirstEpoch()])
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")  # intact, from the last good epoch
    assert ckpt["global_epoch"] == 1 and ckpt["metadata"]["config"] == cfg.to_dict()
    assert all(torch.isfinite(v).all() for v in ckpt["teacher"].values() if v.is_floating_point())
    assert not (tmp_path / "model.pt").exists() and not (tmp_path / "record.json").exists()
    # nothing is lost: the run continues from that checkpoint
    record, _ = run(cfg, digits0, verbose=False, out_dir=tmp_path, resume=True)
    assert record["resumed_from_epoch"] == 1 and len(record["history"]) == 3


# --- configs -----------------------------------------------------------------------------------------------------------------


def test_bad_config_files_and_overrides(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("epochs: 3\nlearning_rate: 0.1\n")
    err = cli_error(capsys, "teacher", "--config", str(tmp_path / "c.yaml"), "--out", "unused")
    assert "unknown config keys ['learning_rate']; valid keys: dataset, normal_class" in err
    (tmp_path / "broken.yaml").write_text("epochs: [3\n")
    err = cli_error(capsys, "teacher", "--config", str(tmp_path / "broken.yaml"), "--out", "unused")
    assert f"config file '{tmp_path / 'broken.yaml'}' is not valid YAML" in err
    err = cli_error(capsys, "teacher", "--config", str(tmp_path / "missing.yaml"), "--out", "unused")
    assert f"FileNotFoundError: config file '{tmp_path / 'missing.yaml'}' does not exist" in err
    err = cli_error(capsys, "teacher", "--set", "epoch=3", "--out", "unused")
    assert "override 'epoch=3': unknown config key 'epoch'; valid keys:" in err
    with pytest.raises(ConfigError, match=r"teacher_widths must be three positive integers \(c1, c2, c3\), got "
                                          r"\[4, 0, 16\]"):
        RunConfig(teacher_widths=[4, 0, 16])
    with pytest.raises(ConfigError, match=r"lr must be a finite number > 0, got -0.1"):
        RunConfig(lr=-0.1)
    assert RunConfig(lr="2e-4").lr == 2e-4  # YAML reads 2e-4 as a string: accepted as a number
    assert not Path("unused").exists()


def test_speed_switches_in_the_run_config():
    from gankd_ganomaly.experiment import channels_last_networks, config_differences

    with pytest.raises(ConfigError, match="channels_last must be true, false or 'auto', got 'yes'"):
        RunConfig(channels_last="yes")
    with pytest.raises(ConfigError, match="compile must be true or false, got 1"):
        RunConfig(compile=1)
    widths = {"teacher": (64, 128, 256), "student": (2, 4, 8)}
    assert channels_last_networks(RunConfig(), widths) == ("teacher",)  # auto: widths all >= 8
    assert channels_last_networks(RunConfig(), {"student": (8, 16, 64)}) == ("student",)
    assert channels_last_networks(RunConfig(channels_last=True), widths) == ("teacher", "student")
    assert channels_last_networks(RunConfig(channels_last=False), widths) == ()
    # how a run executes is not what it computes: a checkpoint resumes with other switches, not another lr
    saved = RunConfig().to_dict()
    assert config_differences(saved, RunConfig(channels_last=False, compile=True).to_dict()) == []
    assert config_differences(saved, RunConfig(lr=0.1).to_dict()) == ["lr: 0.0002 -> 0.1"]
    old = {k: v for k, v in saved.items() if k not in ("channels_last", "compile")}  # written before the switches
    assert config_differences(old, saved) == []
    # the command line: --channels-last on|off|auto and --compile reach the config; anything else is refused
    from gankd_ganomaly.cli import build_parser, resolve_config

    parser = build_parser()
    for flag, value in (("on", True), ("off", False), ("auto", "auto")):
        cfg = resolve_config(parser.parse_args(["teacher", "--channels-last", flag, "--compile"]))
        assert cfg.channels_last == value and cfg.compile is True
    assert resolve_config(parser.parse_args(["teacher"])).compile is False
    with pytest.raises(SystemExit):
        parser.parse_args(["teacher", "--channels-last", "yes"])
