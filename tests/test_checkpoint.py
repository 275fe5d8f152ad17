"""Checkpoints: kill-and-resume equality, atomic writes under a real kill, safe loading, mismatch errors."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gankd import (CheckpointError, DistillationEngine, get_schedule, load_checkpoint, load_weights,
                   save_checkpoint)
from gankd.utils import atomic_write_bytes

WORKER = Path(__file__).with_name("resume_worker.py")


def worker(workdir, *args, check=True):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.run([sys.executable, str(WORKER), str(workdir), *map(str, args)], env=env, timeout=300,
                          check=check, capture_output=True, text=True)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    d = tmp_path_factory.mktemp("uninterrupted")
    worker(d, "full")
    return torch.load(d / "final.pt"), json.loads((d / "history.json").read_text())


@pytest.mark.parametrize("kill_epoch,kill_step", [(2, 3), (3, 2)])  # mid-epoch in stage 1 / in stage 2
def test_killed_run_resumes_to_identical_weights_and_metrics(tmp_path, uninterrupted, kill_epoch, kill_step):
    killed = worker(tmp_path, "kill", kill_epoch, kill_step, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not (tmp_path / "final.pt").exists()
    ckpt = load_checkpoint(tmp_path / "ckpt.pt")
    assert ckpt["global_epoch"] == kill_epoch - 1 and ckpt["version"] and ckpt["metadata"] == {"test": True}
    worker(tmp_path, "resume")
    final, history = torch.load(tmp_path / "final.pt"), json.loads((tmp_path / "history.json").read_text())
    ref_final, ref_history = uninterrupted
    for who in ("teacher", "student"):
        for k, v in ref_final[who].items():
            assert torch.equal(final[who][k], v), f"{who}.{k} differs after resume"
    assert history == ref_history  # losses and per-epoch AUROC, bit for bit
    assert [h["structure"] for h in history] == ["KDGAN-2", "KDGAN-2", "KDGAN-3", "KDGAN-3"]


WRITER = """
import sys, torch
from gankd import save_checkpoint
i = 0
while True:
    save_checkpoint(sys.argv[1], {"i": i, "w": torch.full((2_000_000,), float(i))})
    i += 1
"""


def test_atomic_write_survives_a_kill_mid_write(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"i": -1, "w": torch.full((2_000_000,), -1.0)})
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], env=env)
    time.sleep(4.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ckpt = load_checkpoint(path)  # whichever version is there is complete
    assert torch.equal(ckpt["w"], torch.full((2_000_000,), float(ckpt["i"])))


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    atomic_write_bytes(path, b"old")

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]  # no temp file left behind


class Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_checkpoint_is_refused_not_executed(tmp_path):
    Exploit.marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"student": {"w": torch.zeros(1)}, "payload": Exploit()}, path)
    with pytest.raises(CheckpointError, match="refused to load .*evil.pt.* could run code"):
        load_checkpoint(path)
    assert not Exploit.marker.exists()


def test_truncated_checkpoint_gives_a_named_error(tmp_path):
    path = tmp_path / "cut.pt"
    save_checkpoint(path, {"w": torch.zeros(1000)})
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(CheckpointError, match="cannot read checkpoint .*cut.pt.*truncated"):
        load_checkpoint(path)


def test_checkpoint_from_another_architecture_names_the_tensors(hooks):
    small, other = hooks.build_gan((1, 2, 4)), hooks.build_gan((2, 4, 8))
    with pytest.raises(CheckpointError, match=r"student checkpoint is for another architecture: shape mismatches "
                                              r"\(\d+\): discriminator.encoder.features.0.weight: checkpoint "
                                              r"\(2, 1, 4, 4\) vs model \(1, 1, 4, 4\)"):
        load_weights(small, other.state_dict(), what="student")
    partial = dict(small.state_dict())
    partial.pop("generator.decoder.main.0.weight")
    with pytest.raises(CheckpointError, match=r"missing from checkpoint \(1\): generator.decoder.main.0.weight"):
        load_weights(small, partial)


def test_resume_with_another_schedule_is_refused(hooks, tiny_pair, digits0, tmp_path):
    teacher, student = tiny_pair
    from gankd import CheckpointCallback

    DistillationEngine(hooks, teacher, student, callbacks=[CheckpointCallback(tmp_path / "c.pt")]).fit(
        get_schedule("KDGAN-2", 1), [digits0.train[:8]])
    with pytest.raises(CheckpointError, match="written by schedule 'KDGAN-2'"):
        DistillationEngine(hooks, teacher, student).fit(get_schedule("KDGAN-4", 1), [digits0.train[:8]],
                                                        resume=load_checkpoint(tmp_path / "c.pt"))
