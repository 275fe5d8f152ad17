"""The image-to-image family (examples/pix2pix_family.py): networks, task, distillation through 1x1 adaptors,
and a `gankd train` run from YAML that resumes bit-identically after SIGKILL."""
import copy
import json
import signal
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from gankd import DistillationEngine, OptimizerConfig
from gankd.modelfile import read_model

from conftest import gankd_command, kill_switch_module

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "examples"))
from pix2pix_family import (DeployedUNet, Pix2PixHooks, UNetGenerator, edge_pairs, l1_psnr,  # noqa: E402
                            sobel_edges)

torch.set_num_threads(1)


def test_teacher_and_student_macs_are_about_ten_to_one():
    from gankd_ganomaly.evaluation.flops import count_module

    x = torch.zeros(1, 1, 32, 32)
    teacher = count_module(DeployedUNet(UNetGenerator(16)), x)
    student = count_module(DeployedUNet(UNetGenerator(5)), x)
    assert (teacher["flops"], student["flops"]) == (3_887_104, 426_240)  # fvcore multiply-adds, one 32x32 input
    assert (teacher["params"], student["params"]) == (255_217, 25_196)
    out = UNetGenerator(5)(torch.zeros(3, 1, 32, 32))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "image": (3, 1, 32, 32), "d1": (3, 20, 4, 4), "d2": (3, 10, 8, 8), "d3": (3, 5, 16, 16)}


def test_sobel_edges_of_a_step_and_of_a_flat_image():
    flat = torch.full((1, 1, 8, 8), 0.3)
    assert torch.equal(sobel_edges(flat), torch.full((1, 1, 8, 8), -1.0))  # no gradient: magnitude 0 -> -1
    step = -torch.ones(1, 1, 8, 8)
    step[..., 4:] = 1.0  # black | white, in [-1, 1]
    edges = sobel_edges(step)[0, 0]
    assert torch.equal(edges[:, 3:5], torch.ones(8, 2))  # |gx| = 4 at the boundary, clipped to 1
    assert torch.equal(edges[:, :3], -torch.ones(8, 3)) and torch.equal(edges[:, 5:], -torch.ones(8, 3))


def test_l1_and_psnr_known_values():
    target = torch.zeros(2, 1, 4, 4)
    m = l1_psnr(target + 0.2, target)  # error 0.1 in [0, 1]: PSNR = 10 log10(1 / 0.01) = 20 dB
    assert m["l1"] == pytest.approx(0.2) and m["psnr"] == pytest.approx(20.0, abs=1e-4)


def test_distillation_trains_the_student_and_its_adaptors_only():
    hooks = Pix2PixHooks(teacher_width=4, student_width=2)
    batches = edge_pairs("digits", train_size=32, batch_size=16)
    torch.manual_seed(0)
    teacher, student = hooks.build_gan(4), hooks.build_gan(2)
    before = copy.deepcopy((teacher.state_dict(), student.state_dict()))
    engine = DistillationEngine(hooks, teacher, student)
    adaptors = {k: v.detach().clone() for k, v in engine.distillation.state_dict().items()}
    history = engine.fit(hooks.recipe("gan-compression").schedule(1, OptimizerConfig(lr=1e-3)), batches)
    assert [h["structure"] for h in history] == ["KDGAN-2", "KDGAN-2"]
    assert {"K/K_image", "K/K_d1", "K/K_d2", "K/K_d3", "L_g^S/l1", "L_d^S"} <= set(history[0]["losses"])
    assert all(torch.equal(v, before[0][k]) for k, v in teacher.state_dict().items())  # frozen teacher
    assert not torch.equal(student.generator.e1[0].weight, before[1]["generator.e1.0.weight"])
    assert not torch.equal(student.discriminator.main[0][0].weight, before[1]["discriminator.main.0.0.weight"])
    assert set(adaptors) == {f"adaptors.K_{n}.weight" for n in ("d1", "d2", "d3")}
    assert adaptors["adaptors.K_d1.weight"].shape == (16, 8, 1, 1)  # student 4*2 -> teacher 4*4 channels
    assert all(not torch.equal(v, adaptors[k]) for k, v in engine.distillation.state_dict().items())


# a data factory that SIGKILLs its own process at GANKD_TEST_KILL_AT=EPOCH:STEP (the test's crash)
KILLER = kill_switch_module("from pix2pix_family import edge_pairs\n", "edge_pairs")

CONFIG = textwrap.dedent('''
    family: pix2pix_family:Pix2PixHooks
    family_args: {teacher_width: 4, student_width: 2}
    data: {factory: killer:batches, args: {dataset: digits, train_size: 64, batch_size: 16}}
    evaluate: {factory: pix2pix_family:translation_metric, args: {dataset: digits, test_size: 32}}
    teacher: {width: 4}
    student: {width: 2}
    recipe: gan-compression
    epochs: 1
    optimizer: {lr: 0.001}
    seed: 3
''')


def gankd(*args, cwd, env_extra=None):
    return gankd_command(*args, cwd=cwd, check=False, paths=[REPO / "examples"],
                         env_extra={"OMP_NUM_THREADS": "1", **(env_extra or {})})


def test_gankd_train_from_yaml_resumes_bit_identically_after_sigkill(tmp_path):
    (tmp_path / "killer.py").write_text(KILLER)
    (tmp_path / "run.yaml").write_text(CONFIG)
    full = gankd("train", "--config", "run.yaml", "--out", "full", "--quiet", cwd=tmp_path)
    assert full.returncode == 0, full.stderr
    killed = gankd("train", "--config", "run.yaml", "--out", "killed", "--quiet", cwd=tmp_path,
                   env_extra={"GANKD_TEST_KILL_AT": "2:3"})  # the second epoch, mid-epoch
    assert killed.returncode == -signal.SIGKILL and not (tmp_path / "killed" / "model.pt").exists()
    resumed = gankd("train", "--config", "run.yaml", "--out", "killed", "--resume", "--quiet", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    header, mine = read_model(tmp_path / "killed" / "model.pt")
    _, reference = read_model(tmp_path / "full" / "model.pt")
    assert header["role"] == "student" and header["width"] == 2 and set(mine) == set(reference)
    for k, v in reference.items():
        assert torch.equal(mine[k], v), k
    record = json.loads((tmp_path / "killed" / "record.json").read_text())
    assert record["resumed_from_epoch"] == 1 and record["recipe"] == "gan-compression"
    strip = lambda h: [{k: v for k, v in e.items() if k != "seconds"} for e in h]  # noqa: E731
    assert strip(record["history"]) == strip(json.loads((tmp_path / "full" / "record.json").read_text())["history"])
    assert set(record["metrics"]) == {"l1", "psnr"}
