"""The distillation API: term arguments, adaptors owned by the loss, several terms per output, shape-free
terms, derived outputs and submodule taps, K per stage, per-network optimizer settings, recipes."""
import copy
import json

import pytest
import torch

from gankd import (CheckpointCallback, DistillationEngine, DistillationLoss, DistillTerm, OptimizerConfig, Schedule,
                   Stage, load_checkpoint)
from gankd_ganomaly.experiment import RunConfig, run
from gankd_ganomaly.evaluation.flops import count_generator
from gankd_ganomaly.hooks import RECIPES, GanomalyHooks
from gankd_ganomaly.study.budgets import BUDGETS

from conftest import TINY_STUDENT, TINY_TEACHER, OnEpochEnd


def test_term_arguments_reach_the_loss_and_unknown_ones_are_named():
    s, t = torch.tensor([0.0, 3.0]), torch.tensor([1.0, 1.0])
    cubic = DistillationLoss([DistillTerm("x", "lp", args={"p": 3.0})])
    assert cubic({"x": t}, {"x": s})[1].item() == pytest.approx((1 + 8) / 2)
    huber = DistillationLoss([DistillTerm("x", "smooth_l1", args={"beta": 4.0})])
    assert huber({"x": t}, {"x": s})[1].item() == pytest.approx((0.5 * 1 / 4 + 0.5 * 4 / 4) / 2)
    with pytest.raises(ValueError, match=r"K_x: loss 'lp' takes no argument\(s\) \['q'\]; it takes \['p'\]"):
        DistillTerm("x", "lp", args={"q": 1})
    with pytest.raises(ValueError, match="standardized_l2.*momentum must be in"):
        DistillationLoss([DistillTerm("x", "standardized_l2", args={"momentum": 2.0})])


def test_several_named_terms_on_one_output():
    k = DistillationLoss([DistillTerm("z", "l1", 1.0, name="K_z_l1"), DistillTerm("z", "l2", 2.0, name="K_z_l2")])
    values, total = k({"z": torch.zeros(2, 3)}, {"z": torch.full((2, 3), 2.0)})
    assert values == {"K_z_l1": pytest.approx(2.0), "K_z_l2": pytest.approx(4.0)}
    assert total.item() == pytest.approx(2.0 + 2 * 4.0)
    with pytest.raises(ValueError, match=r"several terms named \['K_z'\]: give each term on the same output"):
        DistillationLoss([DistillTerm("z", "l1"), DistillTerm("z", "l2")])


def test_shape_free_terms_skip_the_shape_check_but_not_the_batch_check():
    torch.manual_seed(0)
    teacher = torch.randn(6, 256)
    truncated = teacher[:, :8] * 3.0  # another geometry: its distance matrix differs
    rkd = DistillationLoss([DistillTerm("z", "rkd_distance")])
    value = rkd({"z": teacher}, {"z": torch.randn(6, 8)})[1]
    assert value.item() > 0
    # a scaled copy has the same normalised distance matrix: zero loss, whatever the widths
    assert rkd({"z": teacher}, {"z": 5.0 * teacher})[1].item() == pytest.approx(0.0, abs=1e-6)
    assert rkd({"z": teacher}, {"z": truncated})[1].item() > 0
    with pytest.raises(ValueError, match="the student has 5 samples and the teacher 6"):
        rkd({"z": teacher}, {"z": torch.randn(5, 8)})
    with pytest.raises(ValueError, match=r"shape \(6, 8\) but teacher output 'z' has shape \(6, 256\).*adaptor"):
        DistillationLoss([DistillTerm("z", "l2")])({"z": teacher}, {"z": torch.randn(6, 8)})
    rank = DistillationLoss([DistillTerm("s", "rank", args={"temperature": 0.5})])
    scores = torch.tensor([0.1, 0.5, 0.2, 0.9])
    good, bad = rank({"s": scores}, {"s": scores * 10})[1], rank({"s": scores}, {"s": -scores})[1]
    assert good.item() < bad.item()


def test_derived_outputs_compute_the_ganomaly_score_without_subclassing(hooks, tiny_pair, digits0):
    teacher, student = tiny_pair
    k = DistillationLoss([DistillTerm("score", "l2")], derived={"score": {"fn": "squared_error", "a": "z1", "b": "z2"}})
    x = digits0.train[:8]
    teacher.eval(), student.eval()
    with torch.no_grad():
        expected = torch.nn.functional.mse_loss(hooks.score(student, x), hooks.score(teacher, x))
        t_out, s_out = hooks.generator_forward(teacher.generator, x), hooks.generator_forward(student.generator, x)
        assert k(t_out, s_out)[0]["K_score"].item() == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(ValueError, match=r"'difference' takes no argument\(s\) \['c'\]"):
        DistillationLoss([DistillTerm("d")], derived={"d": {"fn": "difference", "a": "z1", "b": "z2", "c": "x"}})
    with pytest.raises(KeyError, match="needs output 'nope'"):
        DistillationLoss([DistillTerm("d")], derived={"d": {"fn": "difference", "a": "z1", "b": "nope"}})(t_out, s_out)


def _fitnet_loss() -> DistillationLoss:
    return DistillationLoss([
        DistillTerm("x_hat", "l1", 1.0),
        DistillTerm("@encoder1.features", "l2", 1.0, name="K_feat", adaptor="conv1x1",
                    adaptor_args={"in_channels": TINY_STUDENT[2], "out_channels": TINY_TEACHER[2]}),
    ])


def test_adaptor_trains_with_the_student_but_is_not_part_of_it(hooks, tiny_pair, digits0):
    teacher, student = tiny_pair
    n_params = sum(p.numel() for p in student.generator.parameters())
    k_stage = _fitnet_loss().spec()
    seen = {}

    def probe(engine, state, record):
        seen["optimizers"] = sorted(state.optimizers)
        seen["adaptor"] = copy.deepcopy(state.distillation.adaptors["K_feat"].weight.detach())
        seen["losses"] = record["losses"]

    engine = DistillationEngine(hooks, teacher, student, callbacks=[OnEpochEnd(probe)])
    engine.fit(Schedule((Stage("KDGAN-2", 1, distillation=k_stage),)), [digits0.train[:16], digits0.train[16:32]])
    assert "distillation" in seen["optimizers"] and "K/K_feat" in seen["losses"]
    # the adaptor is the loss's: it has the teacher's width, and the student did not grow
    assert seen["adaptor"].shape == (TINY_TEACHER[2], TINY_STUDENT[2], 1, 1)
    assert sum(p.numel() for p in student.generator.parameters()) == n_params
    assert not any("adaptor" in name for name in student.state_dict())
    assert count_generator(1, TINY_STUDENT)["params"] == n_params
    with pytest.raises(ValueError, match=r"the teacher generator has no submodule 'encoder9'; its top-level submodules are \['encoder1'"):
        bad = DistillationLoss([DistillTerm("@encoder9", "l2")])
        DistillationEngine(hooks, teacher, student, distillation=bad).fit(
            Schedule((Stage("KDGAN-1", 1),)), [digits0.train[:8]])


def test_adaptor_weights_change_during_training(hooks, tiny_pair, digits0):
    teacher, student = tiny_pair
    k = _fitnet_loss()
    before = k.adaptors["K_feat"].weight.detach().clone()
    DistillationEngine(hooks, teacher, student, distillation=k).fit(
        Schedule((Stage("KDGAN-1", 2),)), [digits0.train[:16]])
    assert not torch.equal(before, k.adaptors["K_feat"].weight.detach())


def test_distillation_per_stage_round_trips_through_schedule_files(tmp_path):
    k = _fitnet_loss().spec()
    schedule = Schedule((Stage("KDGAN-2", 2), Stage("KDGAN-3", 3, distillation=k,
                                                     optimizers={"teacher": OptimizerConfig(lr=1e-5)})), name="mine")
    for suffix in (".json", ".yaml"):
        path = tmp_path / f"schedule{suffix}"
        schedule.save(path)
        loaded = Schedule.load(path)
        assert loaded.to_dict() == json.loads(json.dumps(schedule.to_dict()))
        assert loaded.stages[1].distillation == k and loaded.stages[0].distillation is None
        assert loaded.stages[1].optimizer_for("teacher.generator").lr == 1e-5
        assert loaded.stages[1].optimizer_for("student.generator").lr == OptimizerConfig().lr
    with pytest.raises(ValueError, match="optimizers key 'critic' is not a network"):
        Stage("KDGAN-3", 1, optimizers={"critic": OptimizerConfig()})
    with pytest.raises(ValueError, match="unknown keys \\['loss_set'\\]"):
        Stage.from_dict({"structure": "KDGAN-2", "epochs": 1, "loss_set": {}})


def test_per_network_learning_rates_are_applied(hooks, tiny_pair, digits0):
    teacher, student = tiny_pair
    lrs = {}

    probe = OnEpochEnd(lambda engine, state, record: lrs.update(
        {n: o.param_groups[0]["lr"] for n, o in state.optimizers.items()}))

    stage = Stage("KDGAN-4", 1, OptimizerConfig(lr=2e-4),
                  optimizers={"teacher": OptimizerConfig(lr=1e-5), "student.discriminator": OptimizerConfig(lr=5e-4)})
    DistillationEngine(hooks, teacher, student, callbacks=[probe]).fit(Schedule((stage,)), [digits0.train[:8]])
    assert lrs == {"teacher.generator": 1e-5, "teacher.discriminator": 1e-5, "student.generator": 2e-4,
                   "student.discriminator": 5e-4}


def test_fast_recipe_and_its_control_run_the_student_generator_at_five_times_the_stage_rate(hooks, tiny_pair,
                                                                                            digits0):
    from gankd_ganomaly.study.sweep import method_config, method_schedule

    teacher, student = tiny_pair
    for name, networks in (("reconstruction-fast", {"student.generator": 1e-3, "student.discriminator": 2e-4}),
                           ("student-alone-fast", {"student.generator": 1e-3, "student.discriminator": 2e-4})):
        lrs = {}
        probe = OnEpochEnd(lambda engine, state, record: lrs.update(
            {n: o.param_groups[0]["lr"] for n, o in state.optimizers.items()}))
        schedule = method_schedule(name, method_config(name, BUDGETS["cpu"]).replace(epochs=1))
        DistillationEngine(hooks, teacher if schedule.needs_teacher else None, copy.deepcopy(student),
                           callbacks=[probe]).fit(schedule, [digits0.train[:8]])
        assert {n: lr for n, lr in lrs.items() if n.startswith("student")} == pytest.approx(networks)
        assert schedule.stages[0].structure.name == ("KDGAN-2" if name == "reconstruction-fast" else "student-alone")
    assert RECIPES["reconstruction-fast"].schedule(1).stages[0].distillation == \
        RECIPES["recommended"].schedule(1).stages[0].distillation  # the same K as recommended


def _stateful_schedule() -> Schedule:
    k = {"terms": [{"output": "z1", "loss": "standardized_l2", "args": {"momentum": 0.5}},
                   {"output": "@encoder1.features", "loss": "l2", "name": "K_feat", "adaptor": "conv1x1",
                    "adaptor_args": {"in_channels": TINY_STUDENT[2], "out_channels": TINY_TEACHER[2]}}]}
    return Schedule((Stage("KDGAN-2", 2, OptimizerConfig(lr=2e-4), distillation=k),), name="stateful")


def test_resume_is_bit_identical_with_a_stateful_term_and_an_adaptor(hooks, tiny_pair, digits0, tmp_path):
    from gankd.batches import ShuffledBatches

    teacher, student = tiny_pair
    start_t, start_s = copy.deepcopy(teacher), copy.deepcopy(student)
    schedule = _stateful_schedule()

    def engine(callbacks=()):
        torch.manual_seed(7)
        return DistillationEngine(hooks, copy.deepcopy(start_t), copy.deepcopy(start_s), callbacks=list(callbacks))

    full = engine()
    full.fit(schedule, ShuffledBatches(digits0.train[:48], 16, seed=3))

    class StopAfterFirstEpoch(CheckpointCallback):
        def on_epoch_end(self, engine, state, record):
            super().on_epoch_end(engine, state, record)
            raise KeyboardInterrupt

    path = tmp_path / "ckpt.pt"
    with pytest.raises(KeyboardInterrupt):
        engine([StopAfterFirstEpoch(path)]).fit(schedule, ShuffledBatches(digits0.train[:48], 16, seed=3))
    ckpt = load_checkpoint(path)
    assert ckpt["schedule"]["stages"][0]["distillation"]["terms"][0]["loss"] == "standardized_l2"
    assert ckpt["distillation"]["stage"]["modules_by_term.K_z1.steps"].item() == 3
    resumed = engine()
    resumed.fit(schedule, ShuffledBatches(digits0.train[:48], 16, seed=3), resume=ckpt)
    for a, b in zip(full.student.state_dict().values(), resumed.student.state_dict().values()):
        assert torch.equal(a, b)
    assert resumed.history[-1]["losses"] == full.history[-1]["losses"]
    # a different K is another schedule: resuming with it is refused
    other = Schedule((Stage("KDGAN-2", 2, OptimizerConfig(lr=2e-4), distillation=[DistillTerm("z1")]),),
                     name="stateful")
    with pytest.raises(Exception, match="not by this run's"):
        engine().fit(other, ShuffledBatches(digits0.train[:48], 16, seed=3), resume=ckpt)


def test_recipes_are_named_and_recorded(digits0):
    assert set(RECIPES) == {"paper", "recommended", "reconstruction-flip", "reconstruction-fast"}  # controls are the sweep's
    assert RECIPES["recommended"].version == 2 and RECIPES["paper"].version == 1
    assert dict(GanomalyHooks().recipes()) == dict(RECIPES)  # the base mapping (paper), extended
    with pytest.raises(TypeError):
        RECIPES["mine"] = RECIPES["paper"]  # read-only: one list, derived everywhere
    assert RunConfig(method="P-KDGAN-II-23").recipe == "paper"
    assert RunConfig(method="recommended").recipe == "recommended"
    assert RunConfig(method="student-alone").recipe is None
    paper = RECIPES["paper"].schedule(2)
    assert [s.structure.name for s in paper.stages] == ["KDGAN-2", "KDGAN-3"]
    assert all(s.distillation is None for s in paper.stages)  # Eq. 6: the family's own K
    cfg = RunConfig(dataset="digits", normal_class=0, method="teacher", epochs=1, teacher_widths=TINY_TEACHER,
                    student_widths=TINY_STUDENT, lr=2e-4)
    _, teacher = run(cfg, digits0, verbose=False)
    record, _ = run(cfg.replace(method="recommended"), digits0, teacher, verbose=False)
    assert record["recipe"] == "recommended" and record["recipe_version"] == 2
    assert record["schedule"]["stages"][0]["lr_rule"]["name"] == "mup"
    assert sorted(g["lr_factor"] for g in record["history"][0]["lr_groups"]["student.generator"]) == [1.0, 4.0]
    assert record["schedule"]["stages"][0]["distillation"] == RECIPES["recommended"].schedule(1).stages[0].distillation


def test_views_run_both_generators_on_transformed_inputs_without_moving_batch_norm_statistics(hooks, tiny_pair,
                                                                                               digits0):
    teacher, student = tiny_pair
    plain = DistillationLoss([DistillTerm("x_hat", "l1")])
    viewed = DistillationLoss([DistillTerm("x_hat", "l1"), DistillTerm("rot/x_hat", "l1", 0.0)],
                              views={"rot": {"fn": "rot90", "k": 1}})
    runs = {}
    for name, k in (("plain", plain), ("viewed", viewed)):
        t, s = copy.deepcopy(teacher), copy.deepcopy(student)
        torch.manual_seed(0)
        history = DistillationEngine(hooks, t, s, distillation=k).fit(Schedule((Stage("KDGAN-1", 1),)),
                                                                        [digits0.train[:16], digits0.train[16:32]])
        runs[name] = (s, history)
    assert runs["viewed"][1][0]["losses"]["K/K_rot/x_hat"] > 0  # the view ran and was compared
    buffers = lambda gan: {k: v for k, v in gan.state_dict().items() if "running" in k or "num_batches" in k}  # noqa
    for key, value in buffers(runs["plain"][0]).items():
        assert torch.equal(value, buffers(runs["viewed"][0])[key]), key  # the rotated images left no trace in BN
    with pytest.raises(ValueError, match=r"view 'rot': 'rot90' takes no argument\(s\) \['turns'\]"):
        DistillationLoss([DistillTerm("x_hat")], views={"rot": {"fn": "rot90", "turns": 1}})
    assert DistillationLoss.from_spec(viewed.spec()).views == {"rot": {"fn": "rot90", "k": 1}}


def test_hook_return_values_are_checked_with_the_hook_named(hooks, tiny_pair, digits0):
    from gankd_ganomaly.hooks import GanomalyHooks

    class ListForward(GanomalyHooks):
        def generator_forward(self, generator, inputs):
            return list(generator(inputs))

    class FloatLoss(GanomalyHooks):
        def discriminator_loss(self, gan, batch, outputs):
            return 0.5

    teacher, student = tiny_pair
    with pytest.raises(TypeError, match="ListForward.generator_forward must return a mapping of output names"):
        DistillationEngine(ListForward(in_channels=1), teacher, student).fit(
            Schedule((Stage("KDGAN-2", 1),)), [digits0.train[:8]])
    with pytest.raises(TypeError, match=r"FloatLoss.discriminator_loss must return gankd.Losses\(total, terms\).*"
                                        "for the student it returned float"):
        DistillationEngine(FloatLoss(in_channels=1), None, student).fit(
            Schedule((Stage("student-alone", 1),)), [digits0.train[:8]])
