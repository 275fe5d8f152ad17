"""Per-parameter-group learning rates from a width rule (gankd.width_rule): the factors, the optimizers a real
fit builds, the init factors, the schedule file, the checkpoint, resume, and three unchanged families."""
import copy
import math
import sys
from pathlib import Path

import pytest
import torch

from gankd import Callback, DistillationEngine, OptimizerConfig, Schedule, Stage
from gankd.width_rule import match_parameters, resolve

from conftest import TINY_TEACHER, OnEpochEnd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from dcgan_family import DCGANHooks  # noqa: E402
from own_gan_minimal import PointHooks  # noqa: E402

LR = 2e-4
MUP = {"name": "mup"}


def batches_of(digits0, n=2):
    return [digits0.train[i * 16:(i + 1) * 16] for i in range(n)]


def test_mup_factors_follow_the_fan_in_ratio_and_treat_input_and_output_layers_apart(hooks, tiny_pair):
    teacher, student = tiny_pair  # widths (4, 8, 16) and (1, 2, 4): every hidden fan-in is 4x smaller
    scales = resolve(MUP, "student.generator", student.generator, hooks, teacher)
    assert scales["encoder1.features.0.weight"] == (1.0, 1.0)  # input: image channels in both
    assert scales["encoder1.features.3.weight"] == (4.0, 2.0)  # hidden: lr x m, init x sqrt(m)
    assert scales["encoder1.head.weight"] == (4.0, 4.0)  # output (the latent): lr x m, init x m
    assert scales["decoder.main.0.weight"] == (1.0, 1.0)  # input: the latent in both
    assert scales["decoder.main.9.weight"] == (4.0, 4.0)  # output: the image
    assert scales["encoder1.features.1.weight"] == (1.0, 1.0)  # a batch-norm gain
    fan_in = resolve({"name": "fan-in"}, "student.generator", student.generator, hooks, teacher)
    assert fan_in["encoder1.features.3.weight"] == (2.0, 2.0) and fan_in["encoder1.head.weight"] == (2.0, 2.0)
    # a width config as the reference gives the same factors as the teacher network itself
    assert resolve({"name": "mup", "reference": list(TINY_TEACHER)}, "student.generator", student.generator,
                   hooks, None) == scales


class _Snapshot(Callback):
    def on_fit_start(self, engine, schedule):
        self.start = copy.deepcopy(engine.student.state_dict())


def test_a_fit_builds_each_group_at_its_rate_applies_init_factors_and_records_them(hooks, tiny_pair, digits0,
                                                                                   tmp_path):
    teacher, student = copy.deepcopy(tiny_pair)
    before = copy.deepcopy(student.state_dict())
    seen = {}

    def read(engine, state, record):  # the live optimizers, during the fit
        seen[record["epoch"]] = {n: sorted((g["lr"], tuple(g["names"])) for g in o.param_groups)
                                 for n, o in state.optimizers.items()}
        seen.setdefault("checkpoint", engine.state_dict())

    snap = _Snapshot()
    stage = Stage("KDGAN-2", 2, OptimizerConfig(lr=LR), lr_rule=MUP,
                  optimizers={"student.discriminator": OptimizerConfig(lr=2 * LR)})
    engine = DistillationEngine(hooks, teacher, student, callbacks=[snap, OnEpochEnd(read)])
    history = engine.fit(Schedule((stage,)), batches_of(digits0))

    g = dict((lr, names) for lr, names in seen[1]["student.generator"])
    assert set(g) == {LR, 4 * LR}
    assert "encoder1.features.3.weight" in g[4 * LR] and "encoder1.features.0.weight" in g[LR]
    d = dict((lr, names) for lr, names in seen[1]["student.discriminator"])
    assert set(d) == {2 * LR, 8 * LR}  # the rule multiplies the network's own optimizer lr
    assert "teacher.generator" not in seen[1]  # KDGAN-2: the teacher is frozen, it has no optimizer
    assert seen[2] == seen[1]
    # init factors: applied once, before the first step, to the student only
    assert torch.allclose(snap.start["generator.encoder1.features.3.weight"],
                          2.0 * before["generator.encoder1.features.3.weight"])
    assert torch.allclose(snap.start["generator.encoder1.head.weight"], 4.0 * before["generator.encoder1.head.weight"])
    assert torch.equal(snap.start["generator.encoder1.features.0.weight"],
                       before["generator.encoder1.features.0.weight"])
    # the record and the checkpoint say what ran
    groups = history[0]["lr_groups"]["student.generator"]
    assert sorted(x["lr"] for x in groups) == [LR, 4 * LR] and sorted(x["lr_factor"] for x in groups) == [1.0, 4.0]
    assert "lr_groups" not in history[1]
    saved = seen["checkpoint"]["optimizers"]["student.generator"]["param_groups"]
    assert sorted(x["lr"] for x in saved) == [LR, 4 * LR]
    assert seen["checkpoint"]["schedule"]["stages"][0]["lr_rule"]["name"] == "mup"
    # the schedule file round-trips the rule
    Schedule((stage,)).save(tmp_path / "s.json")
    assert Schedule.load(tmp_path / "s.json").to_dict() == Schedule((stage,)).to_dict()


class _StopAfterFirstEpoch(Callback):
    def on_epoch_end(self, engine, state, record):
        if record["epoch"] == 1:
            self.ckpt = engine.state_dict()
            raise KeyboardInterrupt


def test_resume_does_not_apply_init_factors_again_and_continues_the_same_run(hooks, tiny_pair, digits0):
    schedule = Schedule((Stage("KDGAN-2", 2, OptimizerConfig(lr=1e-3), lr_rule=MUP),))
    torch.manual_seed(3)
    full = DistillationEngine(hooks, *copy.deepcopy(tiny_pair))
    full.fit(schedule, batches_of(digits0))
    torch.manual_seed(3)
    stop = _StopAfterFirstEpoch()
    with pytest.raises(KeyboardInterrupt):
        DistillationEngine(hooks, *copy.deepcopy(tiny_pair), callbacks=[stop]).fit(schedule, batches_of(digits0))
    resumed = DistillationEngine(hooks, *copy.deepcopy(tiny_pair))
    resumed.fit(schedule, batches_of(digits0), resume=stop.ckpt)
    for (name, p), q in zip(full.student.state_dict().items(), resumed.student.state_dict().values()):
        assert torch.equal(p, q), name


def test_the_dcgan_and_2d_families_take_the_rule_unchanged(digits0):
    dcgan = DCGANHooks(channels=1, teacher_widths=(8, 16, 32))
    torch.manual_seed(0)
    teacher, student = dcgan.build_gan((8, 16, 32)), dcgan.build_gan((2, 4, 8))
    scales = resolve(MUP, "student.generator", student.generator, dcgan, teacher)
    assert scales["head.3.weight"] == (4.0, 2.0)  # (c3 -> c2) ConvTranspose: fan-in is its dim 0
    assert scales["head.0.weight"] == (1.0, 1.0)  # the latent: an input layer
    assert scales["proj.weight"] == (1.0, 1.0)  # the student's projection: the teacher has none, factor 1
    history = DistillationEngine(dcgan, teacher, student).fit(
        Schedule((Stage("KDGAN-2", 1, OptimizerConfig(lr=LR), lr_rule=MUP),)), batches_of(digits0))
    assert sorted(g["lr_factor"] for g in history[0]["lr_groups"]["student.generator"]) == [1.0, 4.0]

    points = PointHooks()
    teacher, student = points.build_gan(32), points.build_gan(4)
    scales = resolve(MUP, "student.generator", student.generator, points, teacher)
    assert scales["0.weight"] == (1.0, 1.0) and scales["2.weight"] == (8.0, math.sqrt(8.0))
    assert scales["4.weight"] == (8.0, 8.0) and scales["2.bias"] == (1.0, 1.0)
    data = [torch.randn(32, 2) for _ in range(2)]
    history = DistillationEngine(points, teacher, student).fit(
        Schedule((Stage("KDGAN-2", 1, OptimizerConfig(lr=LR), lr_rule="mup"),)), data)
    assert sorted(g["lr"] for g in history[0]["lr_groups"]["student.discriminator"]) == [LR, 8 * LR]


def test_manual_factors_and_the_errors_that_name_the_way_out(hooks, tiny_pair):
    teacher, student = tiny_pair
    manual = resolve({"name": "manual", "factors": {"encoder1": 2.0, "encoder1.head": 3.0}}, "student.generator",
                     student.generator, hooks, None)
    assert manual["encoder1.features.0.weight"].lr == 2.0 and manual["encoder1.head.weight"].lr == 3.0
    assert manual["decoder.main.0.weight"].lr == 1.0
    with pytest.raises(ValueError, match="'encoder9' names no parameter.*decoder, encoder1, encoder2"):
        resolve({"name": "manual", "factors": {"encoder9": 2.0}}, "student.generator", student.generator, hooks, None)
    with pytest.raises(ValueError, match="lr_rule 'adam-ish' is not a rule; rules: fan-in, manual, mup"):
        Stage("KDGAN-2", 1, lr_rule="adam-ish")
    with pytest.raises(ValueError, match="needs a reference for student.generator.*no teacher.*'reference'"):
        resolve(MUP, "student.generator", student.generator, hooks, None)
    with pytest.raises(ValueError, match="networks entry 'studnet'"):
        Stage("KDGAN-2", 1, lr_rule={"name": "mup", "networks": ["studnet"]})
    with pytest.raises(ValueError, match="no name is shared.*by position they do not line up"):
        match_parameters(torch.nn.Sequential(torch.nn.Linear(2, 3)), student.generator, "student.generator")
