"""The engine executes structures and schedules as the flags say, on real digits batches."""
import copy

import pytest
import torch

from gankd import (Callback, DistillationEngine, NonFiniteLossError, OptimizerConfig, Schedule, Stage,
                   get_schedule, get_structure)

from test_core import PAPER_STRUCTURES

NETWORKS = ("teacher.generator", "teacher.discriminator", "student.generator", "student.discriminator")


def snapshot(teacher, student):
    return {f"{who}.{part}": copy.deepcopy(getattr(gan, part).state_dict())
            for who, gan in (("teacher", teacher), ("student", student)) for part in ("generator", "discriminator")}


def params_changed(before, after_module):
    after = dict(after_module.named_parameters())
    return any(not torch.equal(before[k], after[k]) for k in after)


@pytest.mark.parametrize("name", sorted(PAPER_STRUCTURES))
def test_each_structure_updates_exactly_its_networks(name, hooks, tiny_pair, digits0):
    teacher, student = tiny_pair
    before = snapshot(teacher, student)
    grads_seen = {}

    class GradProbe(Callback):
        def on_step_end(self, engine, state, step):
            grads_seen["teacher"] = [p.grad for p in teacher.parameters()]
            grads_seen["teacher_training"] = teacher.training
            grads_seen["optimizers"] = sorted(state.optimizers)

    engine = DistillationEngine(hooks, teacher, student, callbacks=[GradProbe()])
    engine.fit(Schedule((Stage(get_structure(name), 1),)), [digits0.train[:16]])
    modules = {f"{w}.{p}": getattr(g, p) for w, g in (("teacher", teacher), ("student", student))
               for p in ("generator", "discriminator")}
    changed = tuple(params_changed(before[n], modules[n]) for n in NETWORKS)
    _, expected, frozen = PAPER_STRUCTURES[name]
    assert changed == expected
    assert grads_seen["optimizers"] == sorted(n for n, e in zip(NETWORKS, expected) if e)
    if frozen:
        # a frozen teacher: no autograd, no optimizer, eval mode (running stats untouched)
        assert all(g is None for g in grads_seen["teacher"])
        assert grads_seen["teacher_training"] is False
        for k, v in teacher.state_dict().items():
            assert torch.equal(v, before["teacher." + k.split(".", 1)[0]][k.split(".", 1)[1]]), k


def test_schedule_runs_stages_in_order_and_carries_weights(hooks, tiny_pair, digits0):
    teacher, student = tiny_pair
    seen = []

    class StageProbe(Callback):
        def on_stage_start(self, engine, state):
            seen.append(("start", state.structure.name, copy.deepcopy(engine.student.state_dict())))

        def on_stage_end(self, engine, state):
            seen.append(("end", state.structure.name, copy.deepcopy(engine.student.state_dict())))

    schedule = get_schedule("P-KDGAN-II-23", 2, OptimizerConfig(lr=1e-3))
    engine = DistillationEngine(hooks, teacher, student, callbacks=[StageProbe()])
    history = engine.fit(schedule, [digits0.train[:16], digits0.train[16:32]])
    assert [h["structure"] for h in history] == ["KDGAN-2", "KDGAN-2", "KDGAN-3", "KDGAN-3"]
    assert [h["global_epoch"] for h in history] == [1, 2, 3, 4]
    assert [(e, n) for e, n, _ in seen] == [("start", "KDGAN-2"), ("end", "KDGAN-2"),
                                           ("start", "KDGAN-3"), ("end", "KDGAN-3")]
    end_one, start_two = seen[1][2], seen[2][2]
    assert all(torch.equal(end_one[k], start_two[k]) for k in end_one)       # stage 2 starts where 1 ended
    assert any(not torch.equal(seen[0][2][k], end_one[k]) for k in end_one)  # and stage 1 did train
    # losses of each stage are logged under the paper's names
    assert {"L_g^S", "L_d^S", "K", "K/K_z1", "K/K_x_hat", "K/K_z2"} <= set(history[0]["losses"])
    assert {"L_g^T", "L_d^T", "K"} <= set(history[2]["losses"]) and "L_g^S" not in history[2]["losses"]
    # requires_grad is restored after the schedule
    assert all(p.requires_grad for p in teacher.parameters())


def test_engine_refuses_schedules_it_cannot_run(hooks, tiny_pair):
    teacher, student = tiny_pair
    with pytest.raises(ValueError, match="stage 'KDGAN-2' uses the teacher .* but the engine has no teacher"):
        DistillationEngine(hooks, None, student).fit(get_schedule("KDGAN-2", 1), [torch.zeros(2, 1, 32, 32)])
    with pytest.raises(ValueError, match="trains the student .* but the engine has no student"):
        DistillationEngine(hooks, teacher, None).fit(get_schedule("KDGAN-1", 1), [torch.zeros(2, 1, 32, 32)])
    with pytest.raises(ValueError, match="yielded no batches"):
        DistillationEngine(hooks, teacher, student).fit(get_schedule("KDGAN-1", 1), [])


def test_nan_input_stops_with_a_named_error(hooks, tiny_pair, digits0):
    teacher, student = tiny_pair
    bad = digits0.train[:8].clone()
    bad[3, 0, 5, 5] = float("nan")
    engine = DistillationEngine(hooks, teacher, student)
    with pytest.raises(NonFiniteLossError, match=r"stage 0 \(KDGAN-2\), epoch 1, step 2: .*L_g\^S"):
        engine.fit(get_schedule("KDGAN-2", 1), [digits0.train[:8], bad])


# --- speed switches: channels-last layout, torch.compile ---------------------------------------------------------


class _StopAfterFirstEpoch(Callback):
    def on_epoch_end(self, engine, state, record):
        raise KeyboardInterrupt  # what a killed run leaves: the checkpoint of epoch 1


def _fit_kdgan4(hooks, pair, batches, resume=None, callbacks=(), **switches):
    """Two epochs of KDGAN-4 (all four networks train) from copies of ``pair``; returns the engine."""
    torch.manual_seed(1)
    engine = DistillationEngine(hooks, *copy.deepcopy(pair), callbacks=list(callbacks), **switches)
    try:
        engine.fit(get_schedule("KDGAN-4", 2, OptimizerConfig(lr=1e-3)), batches, resume=resume)
    except KeyboardInterrupt:
        pass
    return engine


def _relative_gap(a, b, start):
    """||weights of a - weights of b|| / ||weights of a - start||: how far apart two runs from ``start`` end,
    relative to how far training moved them (teacher and student parameters together)."""
    gap = moved = 0.0
    for who, init in zip(("teacher", "student"), start):
        for p, q, p0 in zip(getattr(a, who).parameters(), getattr(b, who).parameters(), init.parameters()):
            gap += (p - q).pow(2).sum().item()
            moved += (p - p0).pow(2).sum().item()
    return (gap / moved) ** 0.5


def test_channels_last_trains_the_same_weights_in_the_other_layout(hooks, tiny_pair, digits0):
    batches = [digits0.train[:16], digits0.train[16:32]]
    plain = _fit_kdgan4(hooks, tiny_pair, batches)
    both = _fit_kdgan4(hooks, tiny_pair, batches, channels_last=True)
    only_teacher = _fit_kdgan4(hooks, tiny_pair, batches, channels_last=["teacher"])
    conv = lambda gan: gan.generator.encoder1.features[6].weight  # noqa: E731  (>1 input channel: unambiguous)
    cl = torch.channels_last
    assert conv(both.teacher).is_contiguous(memory_format=cl) and conv(both.student).is_contiguous(memory_format=cl)
    assert conv(only_teacher.teacher).is_contiguous(memory_format=cl)
    assert conv(only_teacher.student).is_contiguous() and not conv(plain.teacher).is_contiguous(memory_format=cl)
    # same math, other float rounding; Adam's first steps (update ~ lr * sign(g)) turn rounding noise in
    # near-zero gradients into full steps, so whole runs drift apart a little: measured 0.08 of the distance
    # trained, against ~0.4 for a wrong update (see the resume test below)
    assert _relative_gap(plain, both, tiny_pair) < 0.15
    assert _relative_gap(plain, only_teacher, tiny_pair) < 0.15
    with pytest.raises(ValueError, match="channels_last must be True, False or a collection of 'teacher'/'student'"):
        DistillationEngine(hooks, *tiny_pair, channels_last=["generator"])


def test_resume_in_the_other_layout_continues_the_same_run(hooks, tiny_pair, digits0, tmp_path):
    """A standard-layout checkpoint resumed channels-last: the fused Adam state must follow the new layout."""
    from gankd import CheckpointCallback, load_checkpoint

    batches = [digits0.train[:16], digits0.train[16:32]]
    uninterrupted = _fit_kdgan4(hooks, tiny_pair, batches)
    _fit_kdgan4(hooks, tiny_pair, batches, callbacks=[CheckpointCallback(tmp_path / "c.pt"), _StopAfterFirstEpoch()])
    resumed = _fit_kdgan4(hooks, tiny_pair, batches, resume=load_checkpoint(tmp_path / "c.pt"), channels_last=True)
    assert len(resumed.history) == 2 and resumed.stage_state is None  # epoch 2 ran, fit() ended cleanly
    # measured 4e-6; with the optimizer state left in the checkpoint's layout the fused Adam pairs the wrong
    # elements and the gap is ~0.4
    assert _relative_gap(uninterrupted, resumed, tiny_pair) < 1e-3


def test_compile_switch_compiles_every_network_and_keeps_parameter_names(hooks, tiny_pair):
    engine = DistillationEngine(hooks, *copy.deepcopy(tiny_pair), compile=True)
    for gan in (engine.teacher, engine.student):
        assert gan.generator._compiled_call_impl is not None and gan.discriminator._compiled_call_impl is not None
    assert list(engine.student.state_dict()) == list(tiny_pair[1].state_dict())  # checkpoints stay compatible
