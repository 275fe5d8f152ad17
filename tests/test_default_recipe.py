"""The default recipe and its tuned control through the sweep (records name recipe, version and rule), and the
report's section that holds `recommended` to its criteria."""
import json

import pytest

from gankd_ganomaly.hooks import RECIPES
from gankd_ganomaly.study.report import write_report
from gankd_ganomaly.study.sweep import RECORD_FORMAT, TUNED_LR_FACTOR, record_path, run_sweep


def test_the_sweep_runs_the_tuned_control_without_a_teacher_and_records_recipe_version_and_rates(tmp_path):
    run_sweep(["digits"], [3], ["student-alone-tuned", "recommended"], [0], "smoke", tmp_path, log=lambda line: None)
    tuned = json.loads(record_path(tmp_path, "digits", 3, "student-alone-tuned", 0).read_text())
    rec = json.loads(record_path(tmp_path, "digits", 3, "recommended", 0).read_text())
    assert (tuned["recipe"], tuned["control_of"], tuned["recipe_version"]) == (None, "recommended", 2)
    assert (rec["recipe"], rec["control_of"], rec["recipe_version"]) == ("recommended", None, 2)
    assert "teacher_checkpoint" in rec and "teacher_checkpoint" not in tuned  # the control has no teacher
    stage = tuned["schedule"]["stages"][0]
    assert stage["structure"]["name"] == "student-alone" and "distillation" not in stage
    assert stage["lr_rule"] == {"name": "mup", "networks": ["student.generator", "student.discriminator"],
                                "reference": [64, 128, 256]}  # the teacher's widths stand in for the teacher
    lr = tuned["lr"] * TUNED_LR_FACTOR
    groups = {g["lr_factor"]: g["lr"] for g in tuned["history"][0]["lr_groups"]["student.generator"]}
    assert groups[1.0] == pytest.approx(lr) and groups[32.0] == pytest.approx(32 * lr)  # digits student 2-4-8
    rec_groups = {g["lr_factor"] for g in rec["history"][0]["lr_groups"]["student.generator"]}
    assert rec_groups == set(groups)  # the same rule, against the real teacher


def _write(out, dataset, method, c, seed, auroc, version=2, budget="cpu", curve=None):
    path = record_path(out, dataset, c, method, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"record_format": RECORD_FORMAT, "budget": budget, "dataset": dataset,
                                "normal_class": c, "method": method, "seed": seed, "status": "ok",
                                "recipe_version": version if method in ("recommended", "student-alone-tuned")
                                else None, "auroc_last": auroc, "auroc_per_epoch": curve or [auroc]}))


def test_the_default_section_states_each_criterion_met_missed_or_not_measured(tmp_path):
    out = tmp_path / "default"
    for c in range(8):
        for method, auroc in (("teacher", 0.95), ("student-alone", 0.80), ("student-alone-tuned", 0.85),
                              ("recommended", 0.86 + 0.001 * c)):
            _write(out, "mnist", method, c, 0, auroc)
        for method, auroc in (("teacher", 0.90), ("student-alone", 0.85), ("student-alone-tuned", 0.92),
                              ("recommended", 0.91)):
            _write(out, "fmnist", method, c, 0, auroc)
    _write(out, "mnist", "recommended", 9, 0, 0.10, version=1)  # another version: never mixed in
    (tmp_path / "none").mkdir()
    result = write_report(tmp_path / "none", tmp_path / "results.md", None, default=[out])
    text = (tmp_path / "results.md").read_text()
    assert f"## The default recipe: `recommended` (version {RECIPES['recommended'].version})" in text
    assert ("- MNIST (8 classes, seed(s) 0): beats `student-alone-tuned` with one-sided p < 0.05: +1.35 points, "
            "p=0.0039 -> **met**; beats `student-alone` with one-sided p < 0.05: +6.35 points, p=0.0039 -> **met**."
            in text)
    assert "within 0.50 points of `student-alone-tuned`: -1.00 -> **missed** by 0.50 points" in text
    assert "- CIFAR-10: **not yet measured**" in text
    assert "Left out: 1 record(s) of `recommended` from another recipe version." in text
    st = result["statistics"]["cpu/default/mnist"]
    assert st["teacher_gap_tuned"] == pytest.approx(0.10) and st["classes"] == list(range(8))


def test_a_long_teacher_grid_is_tested_over_class_seed_pairs_against_the_teacher_lead_and_gap(tmp_path):
    out = tmp_path / "default-full"
    for c in (0, 1, 2, 3, 4):
        for seed in (0, 1, 2):
            bump = 0.001 * (3 * c + seed)  # 15 distinct positive gains
            for method, auroc in (("teacher", 0.95), ("student-alone", 0.80), ("student-alone-tuned", 0.85),
                                  ("recommended", 0.91 + bump)):
                curve = [0.5, None, 0.9, None, auroc] if method == "teacher" else None  # scored at 1, 3, 5
                _write(out, "mnist", method, c, seed, auroc, budget="long-teacher", curve=curve)
            for method, auroc in (("teacher", 0.60), ("student-alone", 0.58), ("student-alone-tuned", 0.58),
                                  ("recommended", 0.58 - bump)):
                _write(out, "cifar10", method, c, seed, auroc, budget="long-teacher")
            _write(out, "mnist", "reconstruction-flip", c, seed, 0.96 - bump, budget="long-teacher")
    (tmp_path / "none").mkdir()
    result = write_report(tmp_path / "none", tmp_path / "results.md", None, default=[out])
    text = (tmp_path / "results.md").read_text()
    assert "against the tuned student alone (`long-teacher` budget)" in text
    assert "one-sided Wilcoxon signed-rank over (class, seed) pairs" in text
    assert ("- MNIST (classes 0, 1, 2, 3, 4; seed(s) 0, 1, 2): teacher leads `student-alone-tuned` by at least 3 "
            "points: +10.00 -> **met**; beats `student-alone-tuned` with one-sided p < 0.05 over 15 pairs: +6.70 "
            "points, p=0.0000 -> **met**; teacher gap at most half the tuned student's: +3.30 against +10.00 -> "
            "**met**." in text)
    assert ("teacher leads `student-alone-tuned` by at least 3 points: +2.00 -> **missed** by 1.00 points; beats "
            "`student-alone-tuned` with one-sided p < 0.05 over 15 pairs: -0.70 points, p=0.9995 -> **missed**; "
            "teacher gap at most half the tuned student's: +2.70 against +2.00 -> **missed**." in text)
    assert "Teacher AUROC during training (mean over classes and seeds; students distil from the last): " \
           "MNIST 0.5000 / 0.9000 / 0.9500 after epochs 1 / 3 / 5." in text  # CIFAR-10's: scored once, no curve
    st = result["statistics"]["long-teacher/default/mnist"]
    assert st["vs_tuned"]["n"] == 15 and st["vs_tuned"]["unit"] == "pair"
    # a candidate recipe in the same grid: the same controls and teachers, the same criteria
    assert "### A candidate default: `reconstruction-flip`" in text
    assert ("- MNIST (classes 0, 1, 2, 3, 4; seed(s) 0, 1, 2): teacher leads `student-alone-tuned` by at least 3 "
            "points: +10.00 -> **met**; beats `student-alone-tuned` with one-sided p < 0.05 over 15 pairs: +10.30 "
            "points, p=0.0000 -> **met**; teacher gap at most half the tuned student's: -0.30 against +10.00 -> "
            "**met**." in text)
    assert "- CIFAR-10: **not yet measured** (no records of `reconstruction-flip` in this sweep)." in text
    flip = result["statistics"]["long-teacher/default/reconstruction-flip/mnist"]
    assert flip["teacher_gap_recipe"] == pytest.approx(-0.003)
