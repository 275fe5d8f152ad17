"""gankd core: registries, distillation terms, structures, schedules (no training)."""
import json

import pytest
import torch

from gankd import (DISTILL_LOSSES, DistillationLoss, DistillTerm, OptimizerConfig, Registry, Schedule, Stage,
                   Structure, get_schedule, get_structure, register_distill_loss)


def test_registry_duplicate_and_unknown_names():
    reg = Registry("widget")
    reg.register("a", 1)
    with pytest.raises(KeyError, match=r"widget 'a' is registered twice: by test_core and by test_core; register "
                                       r"yours as 'test_core.a' .* or pass override=True"):
        reg.register("a", 2)
    assert reg.register("a", 3, override=True) == 3 and reg.get("a") == 3
    with pytest.raises(KeyError, match=r"unknown widget 'b'; registered: a"):
        reg.get("b")


def test_a_package_that_registers_a_later_builtin_name_gets_one_line_naming_both_owners(tmp_path, monkeypatch):
    """A plugin module written before `cosine` was built in: its import names gankd.distill and itself and
    the way out; its namespaced twin imports, and so does the bare one with override=True."""
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "oldplugin.py").write_text(
        "from gankd import register_distill_loss\n\n@register_distill_loss('cosine')\n"
        "def cosine(s, t):\n    return (s - t).abs().mean()\n")
    with pytest.raises(KeyError) as err:
        __import__("oldplugin")
    message = err.value.args[0]
    assert message == ("distillation loss 'cosine' is registered twice: by gankd.distill and by oldplugin; register "
                       "yours as 'oldplugin.cosine' (a dotted name, which no gankd built-in takes) or pass "
                       "override=True to replace the other") and "\n" not in message
    (tmp_path / "newplugin.py").write_text(
        "from gankd import register_distill_loss\n\n@register_distill_loss('newplugin.cosine')\n"
        "def cosine(s, t):\n    return (s - t).abs().mean()\n")
    import importlib

    module = importlib.import_module("newplugin")
    assert DISTILL_LOSSES.get("newplugin.cosine").fn is module.cosine
    assert DISTILL_LOSSES.owner("newplugin.cosine") == "newplugin" and DISTILL_LOSSES.owner("cosine") == "gankd.distill"
    importlib.reload(module)  # the same module registering its own function again replaces it
    assert DISTILL_LOSSES.get("newplugin.cosine").fn is module.cosine
    builtin = DISTILL_LOSSES.get("cosine")
    try:
        register_distill_loss("cosine", override=True)(module.cosine)
        assert DISTILL_LOSSES.get("cosine").fn is module.cosine and DISTILL_LOSSES.owner("cosine") == "newplugin"
    finally:
        DISTILL_LOSSES.register("cosine", builtin, override=True, source=builtin.fn)


def test_builtin_names_are_bare_so_dotted_names_stay_free_for_other_packages():
    from gankd import ADAPTORS, DERIVED_OUTPUTS, INPUT_TRANSFORMS, SCHEDULES, STRUCTURES

    for registry in (DISTILL_LOSSES, ADAPTORS, DERIVED_OUTPUTS, INPUT_TRANSFORMS, SCHEDULES, STRUCTURES):
        builtins = [n for n in registry.names() if registry.owner(n).startswith("gankd.")]
        assert builtins and not [n for n in builtins if "." in n], registry.kind


def test_builtin_distill_losses_and_decorator():
    assert {"l1", "l2", "mse", "smooth_l1"} <= set(DISTILL_LOSSES.names())
    with pytest.raises(KeyError, match="registered twice: by gankd.distill and by test_core"):
        register_distill_loss("l1")(lambda s, t: (s - t).abs().sum())
    with pytest.raises(KeyError, match=r"unknown distillation loss 'kl_div'; registered: .*l1, l2"):
        DistillTerm("z1", "kl_div")


def test_custom_registered_loss_is_usable():
    name = "test_max_abs"
    if name not in DISTILL_LOSSES:
        @register_distill_loss(name)
        def max_abs(s, t):
            return (s - t).abs().max()
    loss = DistillationLoss([(("x"), name, 2.0)])
    values, total = loss({"x": torch.zeros(3)}, {"x": torch.tensor([1.0, -4.0, 2.0])})
    assert values["K_x"].item() == 4.0 and total.item() == 8.0


def test_distillation_loss_values_and_weighted_total():
    t = {"z1": torch.zeros(2, 2), "x_hat": torch.zeros(2, 2), "z2": torch.ones(2, 2)}
    s = {"z1": torch.full((2, 2), 2.0), "x_hat": torch.full((2, 2), -3.0), "z2": torch.full((2, 2), 1.5)}
    k = DistillationLoss([DistillTerm("z1", "l2", 1.0), DistillTerm("x_hat", "l1", 0.5), DistillTerm("z2", "smooth_l1", 2.0)])
    values, total = k(t, s)
    assert values["K_z1"].item() == pytest.approx(4.0)         # mean (2-0)^2
    assert values["K_x_hat"].item() == pytest.approx(3.0)      # mean |(-3)-0|
    assert values["K_z2"].item() == pytest.approx(0.125)       # 0.5 * 0.5^2 (|d| < 1)
    assert total.item() == pytest.approx(4.0 + 1.5 + 0.25)


def test_distillation_detaches_teacher_and_rejects_mismatched_shapes():
    teacher = torch.ones(2, 4, requires_grad=True)
    student = torch.zeros(2, 4, requires_grad=True)
    _, total = DistillationLoss([DistillTerm("z1", "l2")])({"z1": teacher}, {"z1": student})
    total.backward()
    assert teacher.grad is None and student.grad is not None
    with pytest.raises(ValueError, match=r"K_z1: student output 'z1' has shape \(2, 3\) but teacher .* \(2, 4\)"):
        DistillationLoss([DistillTerm("z1")])({"z1": torch.zeros(2, 4)}, {"z1": torch.zeros(2, 3)})
    with pytest.raises(KeyError, match=r"student generator has no output 'z1'; it returned \['x'\]"):
        DistillationLoss([DistillTerm("z1")])({"z1": torch.zeros(1)}, {"x": torch.zeros(1)})
    with pytest.raises(ValueError, match="weight for .z1. must be a finite number >= 0, got -1"):
        DistillTerm("z1", "l2", -1.0)


# The paper's Sec. 3.2, written out rather than derived from the flags.
PAPER_STRUCTURES = {
    #           alpha beta mu nu lam   T.G    T.D    S.G    S.D   teacher frozen
    "KDGAN-1": ((0, 0, 0, 0, 1), (False, False, True, False), True),
    "KDGAN-2": ((0, 0, 1, 1, 1), (False, False, True, True), True),
    "KDGAN-3": ((1, 1, 0, 0, 1), (True, True, True, False), False),
    "KDGAN-4": ((1, 1, 1, 1, 1), (True, True, True, True), False),
    "teacher": ((1, 1, 0, 0, 0), (True, True, False, False), False),
    "student-alone": ((0, 0, 1, 1, 0), (False, False, True, True), True),
}


@pytest.mark.parametrize("name", sorted(PAPER_STRUCTURES))
def test_structure_presets_match_the_paper(name):
    flags, trains, frozen = PAPER_STRUCTURES[name]
    s = get_structure(name)
    assert (s.alpha, s.beta, s.mu, s.nu, s.lam) == flags
    assert (s.trains_teacher_generator, s.trains_teacher_discriminator,
            s.trains_student_generator, s.trains_student_discriminator) == trains
    assert s.teacher_frozen is frozen


def test_structure_validation_names_the_bad_flag():
    with pytest.raises(ValueError, match="nu must be a finite number >= 0, got -1"):
        Structure(mu=1, nu=-1)
    with pytest.raises(ValueError, match="all five weights are 0, so it would train nothing"):
        Structure()
    with pytest.raises(KeyError, match="unknown structure 'KDGAN-9'; registered: KDGAN-1"):
        get_structure("KDGAN-9")


def test_schedule_presets_and_round_trip(tmp_path):
    s = get_schedule("P-KDGAN-II-23", 7, OptimizerConfig(lr=1e-3))
    assert [(st.structure.name, st.epochs) for st in s.stages] == [("KDGAN-2", 7), ("KDGAN-3", 7)]
    assert [st.structure.name for st in get_schedule("P-KDGAN-II-24", 1).stages] == ["KDGAN-2", "KDGAN-4"]
    assert [st.structure.name for st in get_schedule("P-KDGAN-I", 1).stages] == ["KDGAN-2"]
    assert s.total_epochs == 14 and s.stages[1].optimizer.lr == 1e-3
    for suffix in (".json", ".yaml"):
        path = tmp_path / f"schedule{suffix}"
        s.save(path)
        assert Schedule.load(path) == s
    assert Schedule.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    with pytest.raises(KeyError, match="unknown schedule 'P-KDGAN-III'; registered: .*P-KDGAN-II-23"):
        get_schedule("P-KDGAN-III", 3)


def test_stage_and_optimizer_validation():
    with pytest.raises(ValueError, match="epochs must be an integer >= 1, got 0"):
        Stage(get_structure("KDGAN-2"), 0)
    with pytest.raises(ValueError, match="lr must be a finite number > 0, got -0.1"):
        OptimizerConfig(lr=-0.1)
    with pytest.raises(ValueError, match="has no stages"):
        Schedule(())


def test_own_gan_guide_shows_the_example_code_itself():
    """docs/own_gan.md carries its code in the page; every block must still be the example's code (the family
    shipped in gankd/examples/points.py, the script in examples/own_gan_minimal.py)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    example = [line.strip() for name in ("gankd/examples/points.py", "examples/own_gan_minimal.py")
               for line in (root / name).read_text().splitlines() if line.strip()]
    blocks = re.findall(r"```python\n(.*?)```", (root / "docs" / "own_gan.md").read_text(), flags=re.S)
    blocks = [b for b in blocks if b.lstrip().startswith(("def ", "class ", "@"))]  # the example's functions
    assert len(blocks) >= 8
    for block in blocks:
        lines = [line.strip() for line in block.splitlines() if line.strip()]
        start = example.index(lines[0])
        assert example[start:start + len(lines)] == lines, lines[0]
