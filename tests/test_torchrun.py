"""`torchrun --nproc_per_node 2 -m gankd train`: gloo on CPU, one model file written by rank 0, the world size in
the record and the resolved config, and a run killed mid-way and resumed under torchrun ending with the weights of
an uninterrupted two-process run. A resume with another process count is refused with one line."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from gankd.modelfile import read_model

from conftest import KILLABLE_POINTS_FAMILY

REPO = Path(__file__).resolve().parents[1]
CONFIG = {"family": "points_family:PointHooks",
          "data": {"factory": "points_family:batches", "args": {"n_batches": 4}},
          "teacher": {"width": 16}, "student": {"width": 4}, "schedule": "KDGAN-4", "epochs": 3,
          "optimizer": {"lr": 0.002}}


def torchrun(*args, cwd, kill_at=None, nproc=2):
    env = {**os.environ, "PYTHONPATH": f"{cwd}{os.pathsep}{REPO}", "OMP_NUM_THREADS": "1"}
    env.pop("GANKD_TEST_KILL_AT", None)
    if kill_at:
        env["GANKD_TEST_KILL_AT"] = kill_at
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "gankd", "train", *map(str, args)]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("torchrun")
    (root / "points_family.py").write_text(KILLABLE_POINTS_FAMILY)  # GANKD_TEST_KILL_AT=EPOCH:STEP kills every rank
    (root / "run.yaml").write_text(yaml.safe_dump(CONFIG))
    done = torchrun("--config", "run.yaml", "--out", "whole", "--quiet", "--threads", "1", cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    return root


def test_two_processes_write_one_run_folder_with_the_world_size(project):
    record = json.loads((project / "whole" / "record.json").read_text())
    assert record["world_size"] == 2 and len(record["history"]) == 3
    assert yaml.safe_load((project / "whole" / "config.yaml").read_text())["world_size"] == 2
    assert sorted(p.name for p in (project / "whole").iterdir()) == [
        "checkpoint.pt", "config.yaml", "history.json", "model.pt", "record.json", "teacher.pt"]


def test_a_killed_torchrun_resumes_to_the_uninterrupted_weights(project):
    killed = torchrun("--config", "run.yaml", "--out", "killed", "--quiet", "--threads", "1", cwd=project,
                      kill_at="2:3")
    assert killed.returncode != 0 and not (project / "killed" / "model.pt").exists()
    assert (project / "killed" / "checkpoint.pt").exists()  # epoch 1's
    resumed = torchrun("--config", "run.yaml", "--out", "killed", "--quiet", "--threads", "1", "--resume",
                       cwd=project)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((project / "killed" / "record.json").read_text())["resumed_from_epoch"] == 1
    _, mine = read_model(project / "killed" / "model.pt")
    _, reference = read_model(project / "whole" / "model.pt")
    assert mine.keys() == reference.keys()
    for k, v in reference.items():
        assert torch.equal(mine[k], v), k


def test_a_resume_with_another_process_count_is_refused(project):
    one = subprocess.run([sys.executable, "-m", "gankd", "train", "--config", "run.yaml", "--out", "whole",
                          "--resume"], cwd=project, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": f"{project}{os.pathsep}{REPO}"})
    assert one.returncode == 1 and "Traceback" not in one.stderr
    assert "the checkpoint was written by 2 process(es) and this launch has 1" in one.stderr
