"""The DCGAN example (examples/dcgan_family.py) runs through the unchanged engine: a second GAN family."""
import copy
import sys
from pathlib import Path

import pytest
import torch

from gankd import DistillationEngine, DistillationLoss, DistillTerm, OptimizerConfig, Schedule, Stage, get_structure

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from dcgan_family import DCGANHooks  # noqa: E402

torch.set_num_threads(1)

TINY_TEACHER = (8, 16, 32)
TINY_STUDENT = (2, 4, 8)
NETWORKS = ("teacher.generator", "teacher.discriminator", "student.generator", "student.discriminator")
EXPECTED_CHANGES = {  # (teacher G, teacher D, student G, student D)
    "KDGAN-1": (False, False, True, False),
    "KDGAN-2": (False, False, True, True),
    "KDGAN-3": (True, True, True, False),
}


@pytest.fixture(scope="module")
def digits_batches():
    """Real data: two batches of 16 scikit-learn digits of every class, (16, 1, 32, 32) in [-1, 1]."""
    from sklearn.datasets import load_digits

    images = torch.from_numpy(load_digits().images[:32, None]).float() / 8.0 - 1.0
    images = torch.nn.functional.interpolate(images, size=(32, 32), mode="bilinear", align_corners=False)
    return [images[:16], images[16:]]


def build(hooks):
    torch.manual_seed(0)
    return hooks.build_gan(TINY_TEACHER), hooks.build_gan(TINY_STUDENT)


def modules(teacher, student):
    return {f"{w}.{p}": getattr(g, p) for w, g in (("teacher", teacher), ("student", student))
            for p in ("generator", "discriminator")}


@pytest.mark.parametrize("name", sorted(EXPECTED_CHANGES))
def test_structure_changes_exactly_its_networks(name, digits_batches):
    hooks = DCGANHooks(channels=1, teacher_widths=TINY_TEACHER, seed=0)
    teacher, student = build(hooks)
    nets = modules(teacher, student)
    before = {n: copy.deepcopy(m.state_dict()) for n, m in nets.items()}  # parameters and BN buffers
    engine = DistillationEngine(hooks, teacher, student)
    history = engine.fit(Schedule((Stage(get_structure(name), 1, OptimizerConfig(lr=2e-4)),)), digits_batches)
    changed = tuple(any(not torch.equal(before[n][k], v) for k, v in nets[n].state_dict().items())
                    for n in NETWORKS)
    assert changed == EXPECTED_CHANGES[name]
    # the student's 1x1 projection is trained through K in every structure
    proj = student.generator.proj.weight
    assert not torch.equal(before["student.generator"]["proj.weight"], proj)
    losses = history[0]["losses"]
    assert {"K", "K/K_image", "K/K_feat"} <= set(losses)
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())


def test_same_latent_for_teacher_and_student_and_reproducible(digits_batches):
    hooks = DCGANHooks(channels=1, teacher_widths=TINY_TEACHER, seed=3)
    z = hooks.generator_inputs(digits_batches[0])
    assert z.shape == (16, hooks.latent_dim, 1, 1)
    assert torch.equal(z, DCGANHooks(channels=1, seed=3).generator_inputs(digits_batches[0]))
    assert not torch.equal(z, hooks.generator_inputs(digits_batches[0]))  # a fresh draw each step


def test_projection_term(digits_batches):
    hooks = DCGANHooks(channels=1, teacher_widths=TINY_TEACHER)
    teacher, student = build(hooks)
    z = hooks.generator_inputs(digits_batches[0])
    t_out, s_out = hooks.generator_forward(teacher.generator, z), hooks.generator_forward(student.generator, z)
    assert t_out["image"].shape == s_out["image"].shape == (16, 1, 32, 32)
    assert t_out["feat"].shape == (16, 16, 8, 8) and s_out["feat"].shape == (16, 4, 8, 8)
    assert torch.equal(t_out["feat_proj"], t_out["feat"])  # the teacher's projection is the identity
    with pytest.raises(ValueError, match="shape"):
        DistillationLoss([DistillTerm("feat", "l2")])(t_out, s_out)
    terms, total = hooks.distillation_loss()(t_out, s_out)
    assert set(terms) == {"K_image", "K_feat"} and torch.isfinite(total)
    total.backward()
    assert student.generator.proj.weight.grad is not None
    assert student.generator.proj.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.generator.parameters())  # K never moves the teacher


def test_resume_is_bit_identical_because_the_latent_rng_is_checkpointed(digits_batches, tmp_path):
    from gankd import CheckpointCallback, load_checkpoint

    def engine(callbacks=()):
        hooks = DCGANHooks(channels=1, teacher_widths=TINY_TEACHER, seed=0)
        teacher, student = build(hooks)
        return DistillationEngine(hooks, teacher, student, callbacks=list(callbacks))

    schedule = Schedule((Stage(get_structure("KDGAN-2"), 2, OptimizerConfig(lr=2e-3)),))
    full = engine()
    full.fit(schedule, digits_batches)

    class StopAfterFirstEpoch(CheckpointCallback):
        def on_epoch_end(self, engine, state, record):
            super().on_epoch_end(engine, state, record)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        engine([StopAfterFirstEpoch(tmp_path / "ckpt.pt")]).fit(schedule, digits_batches)
    resumed = engine()
    resumed.fit(schedule, digits_batches, resume=load_checkpoint(tmp_path / "ckpt.pt"))
    for key, value in full.student.state_dict().items():
        assert torch.equal(resumed.student.state_dict()[key], value), key
