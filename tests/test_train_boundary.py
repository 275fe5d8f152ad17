"""`gankd train` behind the one error boundary, as a user meets it: each bad value or setting that cannot train is
one or two lines, exit status 1, no traceback, and `--overwrite` leaves the finished run it would replace
byte-identical (everything is checked before the first write)."""
import hashlib
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
TEACHER = {"family": "ganomaly", "family_args": {"in_channels": 1},
           "data": {"factory": "gankd_ganomaly.run_layer:one_class_batches",
                    "args": {"dataset": "digits", "normal_class": 3, "batch_size": 32}},
           "teacher": {"width": [4, 8, 16]}, "schedule": "teacher", "epochs": 1}


def gankd(*args, cwd):
    """The command's result, with an upper bound of its peak memory (kB): the largest resident set of any child
    this test process has waited for."""
    proc = subprocess.run([sys.executable, "-m", "gankd", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    proc.peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return proc


def snapshot(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished teacher run in `gt`, the run an --overwrite with a bad setting must leave as it is."""
    root = tmp_path_factory.mktemp("train_boundary")
    (root / "t.yaml").write_text(yaml.safe_dump(TEACHER))
    done = gankd("train", "--config", "t.yaml", "--out", "gt", "--quiet", cwd=root)
    assert done.returncode == 0, done.stderr
    return root


CASES = {
    "device=cuda": "has no CUDA support",
    "device=tpu": "device 'tpu' is not a torch device name",
    "mixed_precision=fp16": "mixed_precision fp16 needs a CUDA device",
    "family_args={in_channels: 3}": "cannot take the data's batches of shape (32, 1, 32, 32)",
    "teacher.width=abc": "teacher.width 'abc': GanomalyHooks cannot build networks of it",
    "teacher.width=[-1,8,8]": "widths must be three positive integers",
    "teacher.width=[0,8,8]": "widths must be three positive integers",
    "optimizer.betas=[2,3]": "OptimizerConfig.betas must be two numbers in [0, 1), got [2, 3]",
    "data.args.normal_clas=3": "got an unexpected keyword argument 'normal_clas'",
    "family_args={in_channels: 1, weights: {w_con: 0, w_enc: 0, w_adv: 0}}": "w_con, w_enc and w_adv are all 0",
    "teacher.width=[100000,8,8]": "but only",  # ResourceError: the estimate against the available memory
}


@pytest.mark.parametrize("override", list(CASES))
def test_a_bad_setting_is_one_line_and_the_overwritten_run_survives(finished, override):
    before = snapshot(finished / "gt")
    proc = gankd("train", "--config", "t.yaml", "--out", "gt", "--overwrite", "--quiet", "--set", override,
                 cwd=finished)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and 1 <= len(proc.stderr.strip().splitlines()) <= 2, proc.stderr
    assert proc.stderr.startswith("gankd train: error: ") and CASES[override] in proc.stderr, proc.stderr
    assert snapshot(finished / "gt") == before
    assert not any(p.name.endswith(".gankd-new") for p in finished.iterdir())  # no staging folder left
    if "100000" in override:  # refused from an estimate, before anything is allocated (its time: a benchmark,
        assert proc.peak_kb < 2 * 1024 * 1024, proc.peak_kb  # benchmarks/refusal_cost.py)


def test_a_diverged_teacher_file_and_an_over_long_folder_name_are_refused(finished):
    import gankd.modelfile as modelfile
    from gankd_ganomaly.hooks import GanomalyHooks

    header, weights = modelfile.read_model(finished / "gt" / "model.pt")
    gan = GanomalyHooks(in_channels=1).build_gan(header["width"])
    gan.load_state_dict(weights)
    with torch.no_grad():
        gan.generator.encoder1.features[0].weight.fill_(float("nan"))
    modelfile.save_model(finished / "nan.pt", gan, family="ganomaly", family_args=header["family_args"],
                         width=header["width"], role="teacher")
    student = {**TEACHER, "teacher": {"checkpoint": "nan.pt"}, "student": {"width": [1, 2, 4]}, "schedule": "KDGAN-2"}
    (finished / "s.yaml").write_text(yaml.safe_dump(student))
    proc = gankd("train", "--config", "s.yaml", "--out", "s", cwd=finished)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "has NaN/Inf weights in 1 tensor(s) (the first: generator.encoder1.features.0.weight)" in proc.stderr
    assert not (finished / "s").exists()
    proc = gankd("train", "--config", "t.yaml", "--out", "x" * 300, cwd=finished)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "a name in the path is too long for the file system: choose a shorter one" in proc.stderr


def test_the_adapter_refuses_widths_that_cannot_fit_before_allocating(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "gankd_ganomaly", "teacher", "--dataset", "digits",
                           "--teacher-widths", "100000,8,8", "--epochs", "1", "--out", "big", "--quiet"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "ResourceError: this run needs at least" in proc.stderr and "lower --teacher-widths" in proc.stderr
    assert resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss < 2 * 1024 * 1024
    assert not (tmp_path / "big").exists()
