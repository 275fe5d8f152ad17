"""What a stage can ask of the training step: several discriminator updates per generator update, gradient
clipping, learning-rate schedules (checkpointed, so resume stays bit-identical)."""
import copy
import math

import pytest
import torch

from gankd import CheckpointCallback, DistillationEngine, OptimizerConfig, Schedule, Stage, load_checkpoint

from conftest import OnEpochEnd


def _steps(optimizer) -> int:
    return int(next(iter(optimizer.state.values()))["step"])


def test_d_steps_update_the_discriminator_that_many_times_per_generator_step(hooks, tiny_pair, digits0):
    _, student = tiny_pair
    seen = {}

    probe = OnEpochEnd(lambda engine, state, record: seen.update({n: _steps(o) for n, o in state.optimizers.items()}))

    batches = [digits0.train[:8], digits0.train[8:16]]
    DistillationEngine(hooks, None, student, callbacks=[probe]).fit(
        Schedule((Stage("student-alone", 1, OptimizerConfig(lr=2e-4), d_steps=3),)), batches)
    assert seen == {"student.generator": 2, "student.discriminator": 6}
    with pytest.raises(ValueError, match="d_steps must be an integer >= 1, got 0"):
        Stage("student-alone", 1, d_steps=0)


def test_grad_clip_bounds_each_update(hooks, tiny_pair, digits0):
    _, student = tiny_pair
    before = copy.deepcopy(student.generator.state_dict())
    sgd = OptimizerConfig(name="sgd", lr=1.0, betas=(0.0, 0.999))  # momentum 0: update = -lr * clipped gradient
    DistillationEngine(hooks, None, student).fit(
        Schedule((Stage("student-alone", 1, sgd, grad_clip=1e-4),)), [digits0.train[:8]])
    moved = math.sqrt(sum(float((student.generator.state_dict()[k] - v).float().pow(2).sum())
                          for k, v in before.items() if v.is_floating_point() and "running" not in k))
    assert 0 < moved <= 1e-4 * 1.001
    with pytest.raises(ValueError, match="grad_clip must be a number > 0 or None"):
        Stage("student-alone", 1, grad_clip=-1)


def test_cosine_schedule_is_applied_recorded_and_resumed_bit_identically(hooks, tiny_pair, digits0, tmp_path):
    from gankd.batches import ShuffledBatches

    teacher, student = tiny_pair
    stage = Stage("KDGAN-2", 3, OptimizerConfig(lr=1e-3), lr_schedule={"name": "cosine"})
    schedule = Schedule((stage,), name="cosine")
    assert Schedule.from_dict(schedule.to_dict()) == schedule
    start = copy.deepcopy(student)

    def engine(callbacks=()):
        torch.manual_seed(0)
        return DistillationEngine(hooks, teacher, copy.deepcopy(start), callbacks=list(callbacks))

    full = engine()
    history = full.fit(schedule, ShuffledBatches(digits0.train[:32], 16, seed=1))
    lrs = [h["lr"]["student.generator"] for h in history]
    assert lrs == pytest.approx([1e-3 * (1 + math.cos(math.pi * e / 3)) / 2 for e in (1, 2, 3)])

    class StopAfterFirstEpoch(CheckpointCallback):
        def on_epoch_end(self, engine, state, record):
            super().on_epoch_end(engine, state, record)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        engine([StopAfterFirstEpoch(tmp_path / "ckpt.pt")]).fit(schedule, ShuffledBatches(digits0.train[:32], 16, seed=1))
    resumed = engine()
    resumed.fit(schedule, ShuffledBatches(digits0.train[:32], 16, seed=1), resume=load_checkpoint(tmp_path / "ckpt.pt"))
    assert [h["lr"] for h in resumed.history] == [h["lr"] for h in history]
    for key, value in full.student.state_dict().items():
        assert torch.equal(resumed.student.state_dict()[key], value), key
    with pytest.raises(ValueError, match="lr_schedule must be a mapping with name one of cosine, step, linear"):
        Stage("KDGAN-2", 1, lr_schedule={"name": "warmup"})
    assert "lr_schedule" not in Stage("KDGAN-2", 1).to_dict()  # unset fields leave older schedule files as they were


def test_mixed_precision_runs_forwards_in_bf16_and_keeps_float32_weights(hooks, tiny_pair, digits0):
    from gankd_ganomaly.hooks import GanomalyHooks

    seen = {}

    class Probe(GanomalyHooks):
        def generator_loss(self, gan, batch, outputs):
            seen["x_hat"] = outputs["x_hat"].dtype
            return super().generator_loss(gan, batch, outputs)

    teacher, student = tiny_pair
    history = DistillationEngine(Probe(in_channels=1), teacher, student, mixed_precision="bf16").fit(
        Schedule((Stage("KDGAN-2", 1, OptimizerConfig(lr=2e-4)),)), [digits0.train[:16]])
    assert seen["x_hat"] == torch.bfloat16
    assert all(math.isfinite(v) for v in history[0]["losses"].values())
    assert all(p.dtype == torch.float32 for p in student.parameters())
    DistillationEngine(Probe(in_channels=1), teacher, student).fit(
        Schedule((Stage("KDGAN-2", 1, OptimizerConfig(lr=2e-4)),)), [digits0.train[:16]])
    assert seen["x_hat"] == torch.float32  # off by default
    with pytest.raises(ValueError, match="'fp16' needs a CUDA device; use 'bf16' on the CPU"):
        DistillationEngine(hooks, teacher, student, mixed_precision="fp16")
