"""Every failure a user can cause or meet, run as a real process: exit status, message, and the files afterwards.

Each case runs ``python -m gankd_ganomaly ...`` in a subprocess and checks that it fails with exit status != 0,
no traceback, a message of one or two lines naming the file / option / value, and that nothing on disk was lost,
mixed or left behind (a previous run's files, temporary files, the run folder's lock). Faults a test cannot cause
for real as root or portably (a read-only file system, a full disk, a package that is not installed) are injected
in the child process by :data:`FAULTS` before the command line runs. One tiny teacher, trained once through the
CLI, is shared by the module.
"""
import hashlib
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from gankd import CheckpointError, FolderLock
from gankd_ganomaly.data import InvalidImagesError
from gankd_ganomaly.evaluation import anomaly_scores
from gankd_ganomaly.experiment import (ConfigError, RunConfig, build_gan, check_device, load_model, save_model)
from gankd_ganomaly.deploy.export import scoring_module, to_torchscript
from gankd_ganomaly.hooks import GanomalyHooks

ROOT = Path(__file__).resolve().parents[1]
ENV = {k: v for k, v in os.environ.items() if k != "GANKD_DEBUG"}
ENV.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
TINY_TEACHER = ["--dataset", "digits", "--epochs", "1", "--batch-size", "64", "--set", "teacher_widths=[4,8,16]",
                "--quiet", "--threads", "1"]

# Runs the CLI after installing one fault: python -c FAULTS FAULT ARG gankd-ganomaly-args...
FAULTS = r"""
import errno, os, runpy, sys
fault, arg = sys.argv[1], sys.argv[2]
del sys.argv[1:3]
if fault == "rofs":  # the folder ARG is on a read-only file system
    target = os.path.abspath(arg)
    under = lambda p: os.path.abspath(p) == target or os.path.abspath(p).startswith(target + os.sep)
    real_open, real_mkdir = os.open, os.mkdir
    def fake_open(path, flags, *a, **k):
        if under(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
        return real_open(path, flags, *a, **k)
    def fake_mkdir(path, *a, **k):
        if under(path) and not os.path.exists(path):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
        return real_mkdir(path, *a, **k)
    os.open, os.mkdir = fake_open, fake_mkdir
elif fault == "enospc":  # the disk fills up while a temporary file named .ARG.* is written
    real_fsync = os.fsync
    def fake_fsync(fd):
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith(f".{arg}."):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)
    os.fsync = fake_fsync
elif fault == "no-module":  # the comma-separated modules ARG cannot be imported
    for name in arg.split(","):
        sys.modules[name] = None
elif fault == "bug":  # the command ARG has an internal bug
    import gankd_ganomaly.cli as cli
    def broken(args):
        raise TypeError("an internal bug")
    setattr(cli, "cmd_" + arg, broken)
sys.argv[0] = "gankd-ganomaly"
runpy.run_module("gankd_ganomaly", run_name="__main__", alter_sys=True)
"""


def cli(*args, fault=None, env=None, timeout=300):
    prefix = ["-c", FAULTS, *fault] if fault else ["-m", "gankd_ganomaly"]
    return subprocess.run([sys.executable, *prefix, *map(str, args)], env={**ENV, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


def fails(proc, *fragments, status=1, max_lines=2):
    """The process failed with ``status``, without a traceback, in at most ``max_lines`` lines holding every
    fragment; returns stderr."""
    err = proc.stderr
    assert proc.returncode == status, (proc.returncode, err)
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert 1 <= len(lines) <= max_lines, err
    for fragment in fragments:
        assert str(fragment) in err, (fragment, err)
    return err


def snapshot(folder):
    """{name: sha256} of every file in a folder (recursively), to show that nothing in it changed."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(folder):
    """Temporary files of atomic writes and lock files left in a folder."""
    return sorted(p.name for p in Path(folder).iterdir() if p.name.startswith("."))


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A teacher run folder, trained through the CLI as a user would."""
    out = tmp_path_factory.mktemp("reliability") / "teacher"
    proc = cli("teacher", *TINY_TEACHER, "--out", out)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def student_file(teacher):
    """A student's model.pt (untrained: only its header matters here)."""
    path = teacher.parent / "student.pt"
    cfg = RunConfig(method="student-alone", student_widths=(1, 2, 4))
    save_model(path, build_gan(GanomalyHooks(1), (1, 2, 4), 0), cfg)
    return path


@pytest.fixture(scope="module")
def nan_file(teacher):
    """The teacher's model.pt with one NaN weight, as a diverged run leaves it."""
    model = torch.load(teacher / "model.pt", weights_only=True)
    name = next(k for k, v in model["state_dict"].items() if v.is_floating_point())
    model["state_dict"][name].view(-1)[0] = float("nan")
    path = teacher.parent / "nan.pt"
    torch.save(model, path)
    return path


# --- bad files ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["empty", "text", "random", "truncated"])
def test_unreadable_checkpoint_names_the_file(kind, teacher, tmp_path):
    path = tmp_path / f"{kind}.pt"
    content = {"empty": b"", "text": b"hello, not a checkpoint\n", "random": np.random.default_rng(0).bytes(5000),
               "truncated": (teacher / "model.pt").read_bytes()[:300]}[kind]
    path.write_bytes(content)
    fails(cli("evaluate", "--checkpoint", path), "CheckpointError", f"cannot read checkpoint '{path}'", "truncated")


def write_cifar(root, rng):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8), "labels": [i % 10 for i in range(20)]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    return folder


@pytest.mark.parametrize("damage", ["truncated", "random"])
def test_damaged_cifar10_batch_is_named(damage, tmp_path):
    rng = np.random.default_rng(0)
    folder = write_cifar(tmp_path / "data", rng)
    bad = folder / "data_batch_3"
    bad.write_bytes(bad.read_bytes()[:1500] if damage == "truncated" else rng.bytes(3000))
    out = tmp_path / "run"
    fails(cli("teacher", "--dataset", "cifar10", "--data-root", tmp_path / "data", "--out", out, "--quiet"),
          "DatasetFileError", f"{bad}: not a readable CIFAR-10 python batch", "extract cifar-10-python.tar.gz")
    assert not out.exists()


# --- devices, threads, packages ------------------------------------------------------------------------------------


@pytest.mark.parametrize("device, message", [
    ("tpu", "device 'tpu' is not a torch device name"),
    pytest.param("cuda", "device 'cuda': this torch build", marks=pytest.mark.skipif(
        torch.cuda.is_available() or torch.version.cuda is not None, reason="needs a CPU-only torch build")),
])
def test_unusable_device(device, message, teacher):
    # (a training run is refused the same way before its folder is touched: test_failed_overwrite_keeps_...)
    fails(cli("evaluate", "--checkpoint", teacher, "--device", device), "ConfigError", message, "cpu")


def test_negative_thread_count_is_a_usage_error(teacher):
    fails(cli("evaluate", "--checkpoint", teacher, "--threads", "-1"), "--threads", "'-1'", "positive integer",
          status=2, max_lines=1)


def test_download_without_torchvision(tmp_path):
    out = tmp_path / "run"
    fails(cli("teacher", "--dataset", "mnist", "--download", "--data-root", tmp_path / "data", "--out", out,
              fault=("no-module", "torchvision,torchvision.datasets")),
          "MissingDependencyError", "download=True needs a working torchvision", max_lines=1)
    assert not out.exists()


def test_onnx_export_without_onnx(teacher, tmp_path):
    fails(cli("export", teacher, tmp_path / "model.onnx", fault=("no-module", "onnx,onnxscript")),
          "MissingDependencyError", "pip install onnx onnxscript")
    assert list(tmp_path.iterdir()) == []


# --- file-system errors -----------------------------------------------------------------------------------------------


def test_out_that_is_a_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("keep me")
    fails(cli("teacher", *TINY_TEACHER, "--out", path), "RunFolderError", f"--out {path} is a file, not a folder")
    assert path.read_text() == "keep me"


def test_output_that_is_a_folder(teacher, tmp_path):
    (tmp_path / "old.csv").write_text("x")
    fails(cli("score", "--checkpoint", teacher, "--output", tmp_path), f"--output {tmp_path} is a folder",
          tmp_path / "scores.csv")
    fails(cli("export", teacher, tmp_path), f"export: OUT {tmp_path} is a folder", tmp_path / "model.ts")
    assert snapshot(tmp_path) == {"old.csv": hashlib.sha256(b"x").hexdigest()}


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="the fault injection reads /proc/self/fd")
def test_read_only_file_system(teacher, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    fails(cli("teacher", *TINY_TEACHER, "--out", ro / "run", fault=("rofs", ro)), "Read-only file system",
          f"'{ro / 'run'}'", "write elsewhere")
    fails(cli("score", "--checkpoint", teacher, "--output", ro / "s.csv", fault=("rofs", ro)),
          "Read-only file system", f"'{ro / 's.csv'}'")
    assert list(ro.iterdir()) == []


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_folder_without_write_permission(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        fails(cli("teacher", *TINY_TEACHER, "--out", locked / "run"), "PermissionError", "permission")
    finally:
        locked.chmod(0o755)
    assert list(locked.iterdir()) == []


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="the fault injection reads /proc/self/fd")
def test_disk_full_while_writing_a_checkpoint(tmp_path):
    out = tmp_path / "run"
    fails(cli("teacher", *TINY_TEACHER, "--out", out, fault=("enospc", "checkpoint.pt")),
          "No space left on device", f"'{out / 'checkpoint.pt'}'", "free some space", "--resume")
    assert not (out / "checkpoint.pt").exists() and (out / "config.yaml").exists()
    assert leftovers(out) == []  # neither the temporary checkpoint nor the lock is left behind


# --- models that are not what they claim, or are broken ---------------------------------------------------------------


def test_student_passed_as_teacher(student_file, tmp_path):
    out = tmp_path / "run"
    fails(cli("distill", "--method", "KDGAN-1", "--epochs", "1", "--teacher", student_file, "--out", out, "--quiet"),
          "CheckpointError", f"teacher '{student_file}' is a student model", "teacher run")
    assert not out.exists()


def test_nan_weights_are_refused_by_evaluate_score_and_export(nan_file, tmp_path):
    for args in (["evaluate", "--checkpoint", nan_file, "--json", tmp_path / "e.json"],
                 ["score", "--checkpoint", nan_file, "--output", tmp_path / "s.csv"],
                 ["export", nan_file, tmp_path / "m.ts"]):
        fails(cli(*args), "CheckpointError", f"'{nan_file}' has NaN/Inf weights", "diverged")
    assert list(tmp_path.iterdir()) == []


# --- nothing lost, nothing mixed --------------------------------------------------------------------------------------


def test_failed_overwrite_keeps_the_previous_run(teacher, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(teacher, run)
    before = snapshot(run)
    fails(cli("teacher", *TINY_TEACHER, "--dataset", "mnist", "--data-root", tmp_path / "typo", "--out", run,
              "--overwrite"), "DatasetNotFoundError", tmp_path / "typo", max_lines=6)
    fails(cli("teacher", *TINY_TEACHER, "--device", "tpu", "--out", run, "--overwrite"), "'tpu'")
    assert snapshot(run) == before


def test_a_second_run_on_the_same_folder_is_refused_and_sigterm_cleans_up(tmp_path):
    out = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "gankd_ganomaly", "teacher", *TINY_TEACHER, "--epochs", "500",
                              "--out", str(out)], env=ENV, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / "checkpoint.pt").exists():
            assert first.poll() is None and time.monotonic() < deadline, "the first run did not start"
            time.sleep(0.2)
        lock = json.loads((out / FolderLock.NAME).read_text())
        assert lock["pid"] == first.pid
        # --overwrite would delete the first run's files under its feet: refused, naming the first run
        fails(cli("teacher", *TINY_TEACHER, "--out", out, "--overwrite"), "FolderLockedError",
              f"{out} is in use by another run (pid {first.pid}", "--epochs 500")
        assert first.poll() is None and (out / "checkpoint.pt").exists()
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 143, err
    assert "terminated (SIGTERM); the last epoch's checkpoint is kept: continue with --resume" in err
    assert "Traceback" not in err
    assert leftovers(out) == []  # no lock, no temporary file
    assert torch.load(out / "checkpoint.pt", weights_only=True)["global_epoch"] >= 1


def test_stale_lock_and_temporary_files_of_a_killed_run_are_cleaned(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / FolderLock.NAME).write_text(json.dumps({"pid": 999999, "host": "gone", "command": "killed"}))
    (out / ".checkpoint.pt.k1ll3d00").write_bytes(b"half a checkpoint")
    (out / ".notes.txt.k1ll3d00").write_text("not ours: kept")
    proc = cli("teacher", *TINY_TEACHER, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert leftovers(out) == [".notes.txt.k1ll3d00"]
    assert (out / "model.pt").exists()


# --- options that do not apply ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["evaluate --set", "score --images --split", "student-alone --teacher",
                                  "teacher --student-widths", "evaluate --widths"])
def test_options_that_do_not_apply_are_refused(case, teacher, tmp_path):
    args, message = {
        "evaluate --set": (["evaluate", "--checkpoint", teacher, "--set", "epochs=3"],
                           "--set epochs=3 does not apply to evaluate"),
        "score --images --split": (["score", "--checkpoint", teacher, "--images", tmp_path, "--split", "train"],
                                   "--split does not apply with --images"),
        "student-alone --teacher": (["distill", "--method", "student-alone", "--teacher", teacher, "--out",
                                     tmp_path / "run"], "--teacher does not apply here"),
        "teacher --student-widths": (["teacher", *TINY_TEACHER, "--student-widths", "1,2,4", "--out",
                                      tmp_path / "run"], "--student-widths does not apply here"),
        "evaluate --widths": (["evaluate", "--checkpoint", teacher, "--widths", "1,2,4"],
                              "--widths 1,2,4 does not apply"),
    }[case]
    fails(cli(*args), "CLIError", message)
    assert not (tmp_path / "run").exists()


# --- tracebacks: on request, and for internal bugs --------------------------------------------------------------------


@pytest.mark.parametrize("how", ["--debug", "GANKD_DEBUG=1"])
def test_debug_shows_the_traceback(how, tmp_path):
    (tmp_path / "empty.pt").write_bytes(b"")
    args = ["evaluate", "--checkpoint", tmp_path / "empty.pt"]
    proc = cli(*args, "--debug") if how == "--debug" else cli(*args, env={"GANKD_DEBUG": "1"})
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "CheckpointError" in proc.stderr


def test_internal_bugs_keep_their_traceback():
    proc = cli("flops", "--dataset", "mnist", fault=("bug", "flops"))
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "TypeError: an internal bug" in proc.stderr


# --- the Python API checks as the command line does -------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_gan():
    return GanomalyHooks(in_channels=1), build_gan(GanomalyHooks(1), (1, 2, 4), 0)


@pytest.mark.parametrize("bn_mode", ["eval", "batch"])
def test_scoring_api_refuses_nan_inf_empty_integer_and_foreign_input(tiny_gan, digits0, bn_mode):
    hooks, gan = tiny_gan
    images = digits0.test[:8].clone()
    for bad in (float("nan"), float("inf")):
        poisoned = images.clone()
        poisoned[3, 0, 1, 2] = bad
        with pytest.raises(InvalidImagesError, match=r"images contain 1 NaN/Inf value\(s\) in 1 image\(s\); the "
                                                     r"first is image 3"):
            anomaly_scores(hooks, gan, poisoned, bn_mode=bn_mode)
    with pytest.raises(InvalidImagesError, match=r"images are empty \(shape \(0, 1, 32, 32\)\)"):
        anomaly_scores(hooks, gan, images[:0], bn_mode=bn_mode)
    with pytest.raises(InvalidImagesError, match=r"must be floating point in \[-1, 1\], got dtype torch.uint8; "
                                                 r"scale them first"):
        anomaly_scores(hooks, gan, ((images + 1) * 127.5).to(torch.uint8), bn_mode=bn_mode)
    with pytest.raises(InvalidImagesError, match=r"must be a torch.Tensor or numpy array \(N, C, 32, 32\), got list"):
        anomaly_scores(hooks, gan, images.tolist(), bn_mode=bn_mode)
    with pytest.raises(InvalidImagesError, match=r"have shape \(8, 1, 64, 64\); the network takes \(N, 1, 32, 32\)"):
        anomaly_scores(hooks, gan, torch.zeros(8, 1, 64, 64), bn_mode=bn_mode)
    # numpy input is converted (documented), with the same scores as the tensor
    assert torch.equal(anomaly_scores(hooks, gan, images.numpy(), bn_mode=bn_mode),
                       anomaly_scores(hooks, gan, images, bn_mode=bn_mode))


def test_model_loading_refuses_nan_weights_and_the_wrong_role(nan_file, student_file):
    with pytest.raises(CheckpointError, match="has NaN/Inf weights in 1 tensor"):
        load_model(nan_file)
    gan, _ = load_model(nan_file, allow_nonfinite=True)  # to inspect it
    assert not all(torch.isfinite(p).all() for p in gan.parameters())
    with pytest.raises(CheckpointError, match=r"is a student model \(method 'student-alone', widths \[1, 2, 4\]\), "
                                              r"not a teacher"):
        load_model(student_file, role="teacher")
    assert load_model(student_file, role="student")[1]["role"] == "student"
    with pytest.raises(ConfigError, match="device 'tpu' is not a torch device name"):
        check_device("tpu")


@pytest.mark.parametrize("optimize, layout", [(True, None), (True, "standard"), (False, None)])
def test_exported_scorer_names_the_expected_input(tiny_gan, optimize, layout):
    _, gan = tiny_gan
    scripted = to_torchscript(gan, 1, optimize=optimize, layout=layout)
    assert scripted(torch.zeros(2, 1, 32, 32)).shape == (2,)
    for wrong, found in ((torch.zeros(2, 1, 64, 64), r"\(2, 1, 64, 64\)"), (torch.zeros(1, 32, 32), r"\(1, 32, 32\)"),
                         (torch.zeros(2, 3, 32, 32), r"\(2, 3, 32, 32\)")):
        with pytest.raises(Exception, match=rf"expected images of shape \(N, 1, 32, 32\) in \[-1, 1\], got {found}"):
            scripted(wrong)
        with pytest.raises(ValueError, match=r"expected images of shape \(N, 1, 32, 32\)"):
            scoring_module(gan, optimize=optimize, layout=layout)(wrong)  # the same check, eagerly
    with pytest.raises(Exception, match="expected float32 images"):
        scripted(torch.zeros(2, 1, 32, 32, dtype=torch.float64))
