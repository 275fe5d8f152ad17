"""The command line as a user drives it: teacher -> distill -> evaluate -> score on the real digits data, configs
and overrides, the files a run writes, resume after a SIGKILL, --help, progress bars and the own-GAN example."""
import argparse
import csv
import io
import json
import os
import runpy
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from gankd import DistillationEngine, ProgressLogger, get_schedule, load_checkpoint
from gankd.callbacks import TqdmProgress, auto_progress
from gankd_ganomaly.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
RUN_FILES = {"config.yaml", "checkpoint.pt", "history.json", "metrics.csv", "record.json", "model.pt"}
DISTILL = ["distill", "--method", "P-KDGAN-II-23", "--epochs", "2", "--batch-size", "32", "--normal-class", "3",
           "--student-widths", "1,2,4", "--quiet"]


def read_csv(path):
    return list(csv.DictReader(io.StringIO(Path(path).read_text())))


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    """A teacher trained through the CLI from a config file, flags and --set overrides."""
    root = tmp_path_factory.mktemp("teacher")
    (root / "teacher.yaml").write_text("dataset: digits\nnormal_class: 3\nepochs: 5\nbatch_size: 32\nlr: 2e-3\n"
                                       "seed: 7\nloss_weights: {w_con: 20}\n")
    out = root / "run"
    assert main(["teacher", "--config", str(root / "teacher.yaml"), "--epochs", "2", "--set",
                 "teacher_widths=[4,8,16]", "--set", "seed=0", "--out", str(out), "--quiet"]) == 0
    return out


def test_teacher_run_writes_resolved_config_logs_and_model(teacher_run):
    assert RUN_FILES <= {p.name for p in teacher_run.iterdir()}
    cfg = yaml.safe_load((teacher_run / "config.yaml").read_text())
    assert cfg["method"] == "teacher" and cfg["normal_class"] == 3 and cfg["batch_size"] == 32  # from the file
    assert cfg["epochs"] == 2                                      # flag over file
    assert cfg["seed"] == 0 and cfg["teacher_widths"] == [4, 8, 16]  # --set over file and defaults
    assert cfg["lr"] == 0.002 and cfg["loss_weights"]["w_con"] == 20.0 and cfg["loss_weights"]["w_adv"] == 1.0
    assert cfg["student_widths"] == [2, 4, 8] and cfg["teacher_checkpoint"] is None  # defaults, resolved

    rows = read_csv(teacher_run / "metrics.csv")
    history = json.loads((teacher_run / "history.json").read_text())
    record = json.loads((teacher_run / "record.json").read_text())
    assert [r["epoch"] for r in rows] == ["1", "2"] and [r["structure"] for r in rows] == ["teacher"] * 2
    assert list(rows[0])[:6] == ["stage", "structure", "epoch", "global_epoch", "steps", "seconds"]
    assert {"L_g^T", "L_g^T/con", "L_d^T", "auroc"} <= set(rows[0])
    assert [float(r["auroc"]) for r in rows] == [h["metrics"]["auroc"] for h in history] == record["auroc_per_epoch"]
    assert float(rows[1]["L_g^T"]) == history[1]["losses"]["L_g^T"]
    assert record["config"] == cfg and record["version"]

    model = torch.load(teacher_run / "model.pt", weights_only=True)  # a gankd model file: plain data only
    assert model["format"] == "gankd-model" and model["family"] == "ganomaly" and model["role"] == "teacher"
    assert model["width"] == [4, 8, 16] and model["family_args"]["in_channels"] == 1
    assert model["metadata"]["method"] == "teacher" and model["metadata"]["config"] == cfg
    ckpt = load_checkpoint(teacher_run / "checkpoint.pt")
    assert ckpt["metadata"]["config"] == cfg and ckpt["global_epoch"] == 2 and ckpt["optimizers"] and ckpt["rng"]


def test_distill_evaluate_and_score(teacher_run, tmp_path, capsys):
    out = tmp_path / "student"
    # the teacher's widths come from its checkpoint; --teacher takes the run folder
    assert main([*DISTILL, "--epochs", "1", "--teacher", str(teacher_run), "--out", str(out)]) == 0
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["teacher_widths"] == [4, 8, 16] and cfg["method"] == "P-KDGAN-II-23"
    assert cfg["teacher_checkpoint"] == str(teacher_run)
    assert [r["structure"] for r in read_csv(out / "metrics.csv")] == ["KDGAN-2", "KDGAN-3"]
    record = json.loads((out / "record.json").read_text())
    capsys.readouterr()

    assert main(["evaluate", "--checkpoint", str(out / "model.pt"), "--json", str(tmp_path / "eval.json")]) == 0
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["auroc"] == pytest.approx(record["auroc_last"], abs=1e-12)  # same model, same test split
    assert result["normal_class"] == 3 and result["widths"] == [1, 2, 4]
    assert f"AUROC {record['auroc_last']:.4f}" in capsys.readouterr().out
    assert main(["evaluate", "--checkpoint", str(out), "--normal-class", "4", "--json", str(tmp_path / "e4.json")]) == 0
    assert json.loads((tmp_path / "e4.json").read_text())["normal_class"] == 4

    assert main(["score", "--checkpoint", str(out), "--output", str(tmp_path / "test.csv")]) == 0
    rows = read_csv(tmp_path / "test.csv")
    assert len(rows) == 540 and list(rows[0]) == ["index", "label", "score", "is_novel"]
    assert sum(int(r["label"]) for r in rows) == result["novel_images"]

    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (40, 20), (255, 0, 0)).save(images / "b_red.png")  # RGB, not 32x32: converted and resized
    Image.new("L", (8, 8), 0).save(images / "a_black.jpg")
    (images / "notes.txt").write_text("not an image")
    capsys.readouterr()
    assert main(["score", "--checkpoint", str(out / "model.pt"), "--images", str(images)]) == 0  # CSV on stdout
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert list(rows[0]) == ["path", "score", "is_novel"]  # the calibrated threshold decides
    assert [Path(r["path"]).name for r in rows] == ["a_black.jpg", "b_red.png"]
    assert all(float(r["score"]) >= 0 and r["is_novel"] in ("0", "1") for r in rows)


KILLER = """
import os, signal, sys
import gankd.engine
kill_at, calls = int(sys.argv[1]), [0]
step = gankd.engine.DistillationEngine.train_step
def killing_step(self, *args, **kwargs):
    calls[0] += 1
    if calls[0] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)  # no clean-up, as a machine that goes away
    return step(self, *args, **kwargs)
gankd.engine.DistillationEngine.train_step = killing_step
from gankd_ganomaly.cli import main
sys.exit(main(sys.argv[2:]))
"""


def test_killed_run_resumes_with_resume_to_the_same_weights_and_metrics(teacher_run, tmp_path, capsys):
    shutil.copyfile(teacher_run / "model.pt", tmp_path / "teacher.pt")
    args = [*DISTILL, "--teacher", str(tmp_path / "teacher.pt")]
    assert main([*args, "--out", str(tmp_path / "full")]) == 0

    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    # 4 steps per epoch, 2 stages x 2 epochs: step 14 is in stage 2 (KDGAN-3), epoch 2
    proc = subprocess.run([sys.executable, "-c", KILLER, "14", *args, "--out", str(killed), "--threads", "1"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert not (killed / "model.pt").exists()
    assert load_checkpoint(killed / "checkpoint.pt")["global_epoch"] == 3

    capsys.readouterr()
    assert main([*args, "--out", str(killed)]) == 1  # never silently overwrites a run
    assert "already holds a run (checkpoint.pt): pass --resume" in capsys.readouterr().err
    assert main(["distill", "--out", str(killed), "--resume", "--epochs", "3"]) == 1
    assert "it was written with another config (epochs: 2 -> 3)" in capsys.readouterr().err

    (tmp_path / "teacher.pt").unlink()  # the checkpoint holds the teacher: its file is no longer needed
    assert main(["distill", "--out", str(killed), "--resume", "--quiet"]) == 0  # config from killed/config.yaml
    full = torch.load(tmp_path / "full" / "model.pt", weights_only=True)["state_dict"]
    resumed = torch.load(killed / "model.pt", weights_only=True)["state_dict"]
    assert full.keys() == resumed.keys()
    for k in full:
        assert torch.equal(full[k], resumed[k]), k

    def without_seconds(rows):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]

    for name in ("history.json",):
        assert without_seconds(json.loads((killed / name).read_text())) == \
            without_seconds(json.loads((tmp_path / "full" / name).read_text()))
    assert without_seconds(read_csv(killed / "metrics.csv")) == without_seconds(read_csv(tmp_path / "full" /
                                                                                         "metrics.csv"))
    record = json.loads((killed / "record.json").read_text())
    assert record["resumed_from_epoch"] == 3
    assert record["auroc_last"] == json.loads((tmp_path / "full" / "record.json").read_text())["auroc_last"]


def test_overwrite_and_a_teacherless_distill(teacher_run, tmp_path):
    out = tmp_path / "t"
    args = ["teacher", "--epochs", "1", "--batch-size", "64", "--teacher-widths", "2,2,2", "--out", str(out), "--quiet"]
    assert main(args) == 0
    assert main(args) == 1
    assert main([*args, "--overwrite"]) == 0
    alone = tmp_path / "alone"
    assert main(["distill", "--method", "student-alone", "--epochs", "1", "--batch-size", "64", "--student-widths",
                 "1,1,1", "--out", str(alone), "--quiet"]) == 0
    assert torch.load(alone / "model.pt", weights_only=True)["width"] == [1, 1, 1]
    assert json.loads((alone / "record.json").read_text())["method"] == "student-alone"


def test_tensorboard_is_optional_with_a_clear_error(tmp_path, capsys):
    args = ["teacher", "--epochs", "1", "--batch-size", "64", "--teacher-widths", "2,2,2", "--out",
            str(tmp_path / "tb"), "--tensorboard", "--quiet"]
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        assert main(args) == 1
        err = capsys.readouterr().err
        assert "ImportError: TensorBoard logging needs the 'tensorboard' package" in err
        assert "pip install tensorboard" in err
    else:  # pragma: no cover - where tensorboard is installed
        assert main(args) == 0
        assert any((tmp_path / "tb" / "tensorboard").iterdir())


def subcommands():
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return parser, action.choices


def test_help_explains_every_option(capsys):
    parser, subs = subcommands()
    assert set(subs) >= {"teacher", "distill", "evaluate", "score", "flops", "demo"}
    top = parser.format_help()
    for name in ("teacher", "distill", "evaluate", "score", "flops", "demo"):
        assert name in top
    for name, sub in subs.items():
        text = sub.format_help()
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help and action.help != argparse.SUPPRESS, f"{name} {action.option_strings} has no help"
            for option in action.option_strings:
                assert option in text, f"{name}: {option} missing from --help"
    with pytest.raises(SystemExit) as info:
        main(["distill", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for words in ("--config FILE", "--set KEY=VALUE", "--resume", "--teacher CKPT", "P-KDGAN-II-23", "--out DIR"):
        assert words in text


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bars_on_a_terminal_and_lines_otherwise(hooks, tiny_pair, digits0):
    assert isinstance(auto_progress(io.StringIO()), ProgressLogger)  # not a terminal: one line per epoch
    stream = FakeTerminal()
    progress = auto_progress(stream, prefix="[kd] ")
    assert isinstance(progress, TqdmProgress)
    teacher, student = tiny_pair
    batches = [digits0.train[i:i + 16] for i in range(0, 48, 16)]
    DistillationEngine(hooks, teacher, student, callbacks=[progress]).fit(get_schedule("P-KDGAN-II-23", 2), batches)
    text = stream.getvalue()
    assert "[kd] epochs" in text and "4/4" in text           # the epoch bar over the whole schedule
    assert "[kd] KDGAN-3" in text and "3/3" in text          # the batch bar of the current stage
    assert "[kd] stage 2/2 KDGAN-3 epoch 2/2" in text        # one summary line per epoch above the bars


def test_own_gan_example_distils(capsys):
    example = runpy.run_path(str(ROOT / "examples" / "own_gan_minimal.py"))
    result = example["main"](epochs=4, seed=0, verbose=True)
    assert result["K_last_epoch"] < result["K_first_epoch"]
    assert result["distance_to_teacher_after"] < result["distance_to_teacher_before"]
    assert result["student_params"] < result["teacher_params"]
    assert "distance_to_teacher_after" in capsys.readouterr().out
