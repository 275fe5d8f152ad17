"""`gankd train`: a family defined outside the repository plus one YAML file trains, resumes after SIGKILL
bit-identically and writes its model file; GANomaly runs the same way from a schedule file."""
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gankd import Schedule, Stage
from gankd.modelfile import load_model, read_model
from gankd.run import RunConfigError, apply_overrides, validate

from conftest import KILLABLE_POINTS_FAMILY as FAMILY
from conftest import gankd_command

REPO = Path(__file__).resolve().parents[1]

DOCS_CONFIG = re.search(r"```yaml\n(family: gankd\.examples\.points.*?)```", (REPO / "docs" / "config.md").read_text(),
                        flags=re.S).group(1)  # the complete example of docs/config.md, as the page shows it

CONFIG = DOCS_CONFIG.replace("gankd.examples.points", "points_family")


gankd = gankd_command


@pytest.fixture(scope="module")
def user_project(tmp_path_factory):
    """A folder outside the repository with the user's family module and one config file."""
    d = tmp_path_factory.mktemp("user_project")
    (d / "points_family.py").write_text(FAMILY)
    (d / "run.yaml").write_text(CONFIG)
    gankd("train", "--config", "run.yaml", "--out", "full", "--quiet", cwd=d)
    return d


def test_external_family_trains_from_yaml_and_writes_its_model_file(user_project):
    record = json.loads((user_project / "full" / "record.json").read_text())
    assert record["role"] == "student" and [h["structure"] for h in record["history"]] == [
        "mostly-own-losses", "mostly-own-losses", "KDGAN-3", "KDGAN-3"]
    assert set(record["metrics"]) == {"mode_distance", "distance_to_teacher"}
    assert "K/K_points" in record["history"][0]["losses"]
    stages = record["schedule"]["stages"]
    assert stages[0]["structure"]["lam"] == 0.1 and stages[0]["distillation"]["terms"][0]["args"] == {"beta": 0.5}
    assert stages[1]["optimizers"]["teacher"]["lr"] == 0.0001
    sys.path.insert(0, str(user_project))
    try:
        gan, header = load_model(user_project / "full" / "model.pt")
    finally:
        sys.path.remove(str(user_project))
    assert header["family"] == "points_family:PointHooks" and header["role"] == "student" and header["width"] == 8
    assert sum(p.numel() for p in gan.generator.parameters()) == (4 * 8 + 8) + (8 * 8 + 8) + (8 * 2 + 2)
    config = (user_project / "full" / "config.yaml").read_text()
    assert "mostly-own-losses" in config and "smooth_l1" in config  # the resolved config, schedule included


@pytest.mark.parametrize("kill_at", ["2:3", "3:2"])  # mid-epoch in stage 1 / in stage 2
def test_sigkill_then_resume_is_bit_identical(user_project, kill_at):
    out = f"killed-{kill_at.replace(':', '-')}"
    killed = gankd("train", "--config", "run.yaml", "--out", out, "--quiet", cwd=user_project,
                   env_extra={"GANKD_TEST_KILL_AT": kill_at}, check=False)
    assert killed.returncode == -signal.SIGKILL
    assert not (user_project / out / "model.pt").exists()
    refused = gankd("train", "--config", "run.yaml", "--out", out, cwd=user_project, check=False)
    assert refused.returncode == 1 and "already holds a run (checkpoint.pt): pass --resume" in refused.stderr
    changed = gankd("train", "--config", "run.yaml", "--out", out, "--resume", "--set", "seed=1", cwd=user_project,
                    check=False)
    assert changed.returncode == 1 and "written with another config (seed: 0 -> 1)" in changed.stderr
    assert "Traceback" not in changed.stderr
    gankd("train", "--config", "run.yaml", "--out", out, "--resume", "--quiet", cwd=user_project)
    _, mine = read_model(user_project / out / "model.pt")
    _, reference = read_model(user_project / "full" / "model.pt")
    for k, v in reference.items():
        assert torch.equal(mine[k], v), k
    strip = lambda h: [{k: v for k, v in e.items() if k != "seconds"} for e in h]  # noqa: E731
    assert strip(json.loads((user_project / out / "history.json").read_text())) == strip(
        json.loads((user_project / "full" / "history.json").read_text()))


def test_config_errors_name_the_key():
    base = {"family": "x:Y", "data": {"factory": "m:f"}, "student": {"width": 2}, "schedule": "student-alone",
            "epochs": 1}
    with pytest.raises(RunConfigError, match=r"unknown config keys \['epoch'\]"):
        validate({**base, "epoch": 1})
    with pytest.raises(RunConfigError, match="exactly one of 'schedule'"):
        validate({**base, "recipe": "paper"})
    with pytest.raises(RunConfigError, match="epochs \\(per stage\\) must be an integer >= 1"):
        validate({**base, "epochs": 0})
    with pytest.raises(RunConfigError, match="student must be {width: ...} or {checkpoint: PATH}"):
        validate({**base, "student": {"width": 2, "checkpoint": "a.pt"}})
    assert apply_overrides(base, ["student.width=4", "optimizer.lr=1e-3"])["student"] == {"width": 4}
    with pytest.raises(RunConfigError, match="unknown key 'studnet'"):
        apply_overrides(base, ["studnet.width=4"])


def test_ganomaly_runs_from_a_schedule_file_and_its_teacher_model_file(tmp_path):
    Schedule((Stage("KDGAN-2", 1, distillation={"terms": [{"output": "x_hat", "loss": "l1", "weight": 10.0}]}),),
             name="custom").save(tmp_path / "schedule.yaml")
    data = {"factory": "gankd_ganomaly.run_layer:one_class_batches",
            "args": {"dataset": "digits", "normal_class": 3, "batch_size": 32}}
    evaluate = {"factory": "gankd_ganomaly.run_layer:auroc_metric", "args": {"dataset": "digits", "normal_class": 3}}
    import yaml

    teacher_cfg = {"family": "ganomaly", "family_args": {"in_channels": 1}, "data": data, "evaluate": evaluate,
                   "teacher": {"width": [4, 8, 16]}, "schedule": "teacher", "epochs": 1, "optimizer": {"lr": 2e-4}}
    (tmp_path / "teacher.yaml").write_text(yaml.safe_dump(teacher_cfg))
    gankd("train", "--config", "teacher.yaml", "--out", "teacher", "--quiet", cwd=tmp_path)
    student_cfg = {**teacher_cfg, "teacher": {"checkpoint": "teacher/model.pt"}, "student": {"width": [1, 2, 4]},
                   "schedule": {"file": "schedule.yaml"}}
    student_cfg.pop("epochs")
    (tmp_path / "student.yaml").write_text(yaml.safe_dump(student_cfg))
    gankd("train", "--config", "student.yaml", "--out", "student", "--quiet", cwd=tmp_path)
    record = json.loads((tmp_path / "student" / "record.json").read_text())
    assert record["schedule"]["name"] == "custom" and 0 <= record["metrics"]["auroc"] <= 1
    header, _ = read_model(tmp_path / "student" / "model.pt")
    assert header["family"] == "ganomaly" and header["width"] == [1, 2, 4] and header["role"] == "student"
    # a student's model file is not a teacher
    wrong = {**student_cfg, "teacher": {"checkpoint": "student/model.pt"}}
    (tmp_path / "wrong.yaml").write_text(yaml.safe_dump(wrong))
    refused = gankd("train", "--config", "wrong.yaml", "--out", "wrong", cwd=tmp_path, check=False)
    assert refused.returncode == 1 and "holds a student model; a teacher is expected" in refused.stderr
    assert not (tmp_path / "wrong").exists()  # nothing written before the inputs were checked
    # the adapter's commands read the model file of `gankd train` and a sweep's teacher checkpoint too
    evaluated = subprocess.run([sys.executable, "-m", "gankd_ganomaly", "evaluate", "--checkpoint",
                                "student/model.pt", "--dataset", "digits", "--normal-class", "3", "--json", "ev.json"],
                               cwd=tmp_path, capture_output=True, text=True, timeout=300,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads((tmp_path / "ev.json").read_text())["auroc"] == pytest.approx(record["metrics"]["auroc"])


def test_a_sweep_teacher_is_a_model_file_for_the_adapter(tmp_path):
    from gankd_ganomaly.experiment import load_model
    from gankd_ganomaly.study.sweep import run_sweep, teacher_path

    run_sweep(["digits"], [3], ["teacher"], [0], "smoke", tmp_path, log=lambda line: None)
    gan, header = load_model(teacher_path(tmp_path, "digits", 3, 0, "smoke"), role="teacher")
    assert header["role"] == "teacher" and header["widths"] == [64, 128, 256] and header["in_channels"] == 1
    assert sum(p.numel() for p in gan.generator.parameters()) == 5_117_568


def test_every_model_file_the_adapter_writes_is_a_gankd_model_file(tmp_path):
    """One format on the write side: a run's model.pt and a sweep teacher load through gankd.modelfile (the family
    rebuilt by name), and a file in the earlier adapter format still loads through the adapter."""
    import gankd
    import gankd.modelfile
    from gankd_ganomaly.data import load_one_class
    from gankd_ganomaly.experiment import MODEL_FORMAT, RunConfig, load_model, run
    from gankd_ganomaly.study.sweep import run_sweep, teacher_path

    run_sweep(["digits"], [3], ["teacher"], [0], "smoke", tmp_path / "sweep", log=lambda line: None)
    cfg = RunConfig(dataset="digits", normal_class=3, method="student-alone", epochs=1, batch_size=32, seed=0)
    record, trained = run(cfg, load_one_class("digits", 3), verbose=False, out_dir=tmp_path / "run")
    for path, role, widths in ((teacher_path(tmp_path / "sweep", "digits", 3, 0, "smoke"), "teacher", [64, 128, 256]),
                               (tmp_path / "run" / "model.pt", "student", [2, 4, 8])):
        raw = gankd.load_checkpoint(path)
        assert raw["format"] == gankd.modelfile.MODEL_FORMAT and raw["family"] == "ganomaly"
        gan, header = gankd.modelfile.load_model(path, role=role)  # no adapter code named: the entry point
        assert list(gan.generator.widths) == widths and header["family_args"] == {"in_channels": 1, "latent_dim": 256}
        _, adapter_header = load_model(path, role=role)
        assert adapter_header["dataset"] == "digits" and adapter_header["normal_class"] == 3
    assert adapter_header["threshold"] == record["threshold"]  # the run's calibrated threshold travels in the file
    # a model file of the earlier adapter format (gankd-ganomaly-model) still loads
    old = tmp_path / "old.pt"
    gankd.save_checkpoint(old, {"format": MODEL_FORMAT, "format_version": 1, "method": "student-alone",
                                "role": "student", "dataset": "digits", "normal_class": 3, "in_channels": 1,
                                "widths": [2, 4, 8], "latent_dim": 256, "config": cfg.to_dict(),
                                "state_dict": trained.state_dict()})
    gan, header = load_model(old, role="student")
    assert header["method"] == "student-alone"
    assert all(torch.equal(a, b) for a, b in zip(gan.state_dict().values(), trained.state_dict().values()))


def test_the_shipped_example_family_runs_from_the_docs_config_in_any_folder(tmp_path):
    """What a pip user has: the docs' config names gankd.examples.points, no module of their own."""
    (tmp_path / "run.yaml").write_text(DOCS_CONFIG)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "gankd", "train", "--config", "run.yaml", "--out", "run",
                             "--quiet"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "run" / "record.json").read_text())
    header, _ = read_model(tmp_path / "run" / "model.pt")
    assert header["family"] == "gankd.examples.points:PointHooks" and header["width"] == 8
    assert len(record["history"]) == 4 and 0 < record["metrics"]["distance_to_teacher"] < 5
    where = subprocess.run([sys.executable, "-m", "gankd.examples.points"], env=env, capture_output=True, text=True)
    assert Path(where.stdout.strip()) == REPO / "gankd" / "examples" / "points.py"
