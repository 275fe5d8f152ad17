"""GANomaly adapter: networks, losses, score, FLOPs, evaluation modes, CLI; real digits data."""
import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from gankd import DistillationEngine, Losses, get_schedule
from gankd_ganomaly.evaluation import anomaly_scores, auroc, evaluate_auroc
from gankd_ganomaly.evaluation.flops import compression_report, count_generator
from gankd_ganomaly.hooks import GanomalyHooks
from gankd_ganomaly.networks import TEACHER_WIDTHS, GanomalyGenerator

PAPER = {"cifar10": 24.45, "mnist": 311.11, "fmnist": 700.0}


def test_teacher_counts_match_the_paper():
    counts = count_generator(3, TEACHER_WIDTHS)
    assert counts["params"] == 5_123_712 and abs(counts["params"] / 5.12e6 - 1) < 0.01
    assert counts["flops"] == 56_008_704 and abs(counts["flops"] / 56.0e6 - 1) < 0.01


@pytest.mark.parametrize("dataset", sorted(PAPER))
def test_student_flop_ratios_within_5_percent_of_the_paper(dataset):
    report = compression_report(dataset)
    assert abs(report["flops_ratio"] / PAPER[dataset] - 1) < 0.05, report["flops_ratio"]
    assert report["student"]["flops"] < report["teacher"]["flops"]


def test_generator_shapes_and_named_errors():
    g = GanomalyGenerator(3, (8, 16, 64)).eval()
    z1, x_hat, z2 = g(torch.zeros(2, 3, 32, 32))
    assert z1.shape == z2.shape == (2, 256, 1, 1) and x_hat.shape == (2, 3, 32, 32)
    assert x_hat.abs().max() <= 1
    with pytest.raises(ValueError, match=r"expected images of shape \(N, 3, 32, 32\), got \(2, 1, 32, 32\)"):
        g(torch.zeros(2, 1, 32, 32))
    with pytest.raises(ValueError, match=r"expected images of shape \(N, 3, 32, 32\), got \(2, 3, 28, 28\)"):
        g(torch.zeros(2, 3, 28, 28))
    with pytest.raises(ValueError, match=r"widths must be three positive integers .* got \(8, 16\)"):
        GanomalyGenerator(3, (8, 16))


def test_generator_and_discriminator_losses_follow_eq_2_to_5(hooks, tiny_pair, digits0):
    gan, _ = tiny_pair
    x = digits0.train[:8]
    out = dict(hooks.generator_forward(gan.generator, x))
    g = hooks.generator_loss(gan, x, out)
    _, f_real = gan.discriminator(x)
    _, f_fake = gan.discriminator(out["x_hat"])
    con = (x - out["x_hat"]).abs().mean()
    enc = ((out["z1"] - out["z2"]) ** 2).mean()
    adv = ((f_real - f_fake) ** 2).mean()
    assert g.terms["con"].item() == pytest.approx(con.item(), rel=1e-5)
    assert g.terms["enc"].item() == pytest.approx(enc.item(), rel=1e-5)
    assert g.terms["adv"].item() == pytest.approx(adv.item(), rel=1e-4)
    assert g.total.item() == pytest.approx(10 * con.item() + enc.item() + adv.item(), rel=1e-5)
    d = hooks.discriminator_loss(gan, x, out)
    real_logit, _ = gan.discriminator(x)
    fake_logit, _ = gan.discriminator(out["x_hat"].detach())
    expected = 0.5 * (F.softplus(-real_logit).mean() + F.softplus(fake_logit).mean())
    assert d.total.item() == pytest.approx(expected.item(), rel=1e-5)


def test_distillation_loss_is_eq_6(hooks, tiny_pair, digits0):
    teacher, student = tiny_pair
    x = digits0.train[:4]
    t = dict(hooks.generator_forward(teacher.generator, x))
    s = dict(hooks.generator_forward(student.generator, x))
    values, total = hooks.distillation_loss()(t, s)
    assert set(values) == {"K_z1", "K_x_hat", "K_z2"}
    manual = (((t["z1"] - s["z1"]) ** 2).mean() + (t["x_hat"] - s["x_hat"]).abs().mean()
              + ((t["z2"] - s["z2"]) ** 2).mean())
    assert total.item() == pytest.approx(manual.item(), rel=1e-5)


def test_score_is_mean_squared_latent_difference(hooks, tiny_pair, digits0):
    gan, _ = tiny_pair
    gan.eval()
    x = digits0.test[:5]
    z1, _, z2 = gan.generator(x)
    assert torch.allclose(hooks.score(gan, x), ((z1 - z2) ** 2).mean(dim=(1, 2, 3)))


def test_discriminator_reinitialised_when_its_loss_collapses(tiny_pair, digits0):
    teacher, _ = tiny_pair
    hooks = GanomalyHooks(in_channels=1, reinit_threshold=1e9)  # every D loss counts as collapsed
    engine = DistillationEngine(hooks, teacher, None)
    engine.fit(get_schedule("teacher", 1), [digits0.train[:8], digits0.train[8:16]])
    assert hooks.discriminator_resets == 2
    never = GanomalyHooks(in_channels=1)
    DistillationEngine(never, teacher, None).fit(get_schedule("teacher", 1), [digits0.train[:8]])
    assert never.discriminator_resets == 0


def test_bn_modes_differ_and_leave_running_stats_untouched(hooks, tiny_pair, digits0):
    gan, _ = tiny_pair
    DistillationEngine(hooks, gan, None).fit(get_schedule("teacher", 1), [digits0.train[:16]])
    before = {k: v.clone() for k, v in gan.state_dict().items()}
    eval_scores = anomaly_scores(hooks, gan, digits0.test[:64], bn_mode="eval")
    batch_scores = anomaly_scores(hooks, gan, digits0.test[:64], bn_mode="batch", batch_size=32)
    assert not torch.allclose(eval_scores, batch_scores)
    assert all(torch.equal(before[k], v) for k, v in gan.state_dict().items())
    assert gan.training  # mode restored
    with pytest.raises(ValueError, match="bn_mode must be one of .* got 'train'"):
        anomaly_scores(hooks, gan, digits0.test[:4], bn_mode="train")


def test_auroc_on_known_scores():
    labels = torch.tensor([0, 0, 1, 1])
    assert auroc(torch.tensor([0.1, 0.2, 0.3, 0.4]), labels) == 1.0
    assert auroc(torch.tensor([0.4, 0.3, 0.2, 0.1]), labels) == 0.0
    assert auroc(torch.tensor([0.1, 0.3, 0.2, 0.4]), labels) == 0.75
    with pytest.raises(ValueError, match="both normal"):
        auroc(torch.tensor([0.1, 0.2]), torch.tensor([0, 0]))


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "gankd_ganomaly", *args, *(["--threads", "1"] if args[0] == "demo" else [])], capture_output=True, text=True,
                          check=True, timeout=600)


@pytest.mark.parametrize("dataset", ["cifar10", "mnist", "fmnist"])
def test_flops_command_json(dataset):
    report = json.loads(run_cli("flops", "--dataset", dataset, "--json").stdout)
    assert set(report) == {"teacher", "student", "params_ratio", "flops_ratio"}
    assert report["flops_ratio"] == pytest.approx(report["teacher"]["flops"] / report["student"]["flops"])
    assert abs(report["flops_ratio"] / PAPER[dataset] - 1) < 0.05


def test_demo_command_prints_table_and_writes_json(tmp_path):
    path = tmp_path / "demo.json"
    proc = run_cli("demo", "--teacher-epochs", "1", "--student-epochs", "1", "--student-seeds", "2",
                   "--seed", "4", "--json", str(path), "--quiet")
    figures = json.loads(path.read_text())
    for key in ("teacher_auroc", "student_alone_auroc", "pkdgan_auroc", "recommended_auroc", "params_ratio",
                "flops_ratio", "wall_s"):
        assert key in figures
    assert figures["flops_ratio"] == pytest.approx(figures["teacher_flops"] / figures["student_flops"])
    assert figures["student_seeds"] == [4, 5]
    recommended = figures["runs"]["recommended"]
    assert [r["seed"] for r in recommended] == [4, 5] and recommended[0]["recipe"] == "recommended"
    assert [r["seed"] for r in figures["runs"]["teacher"]] == [4]
    # the figure is the mean over the student's seeds, each seed its own run
    assert figures["recommended_auroc"] == pytest.approx(sum(r["auroc_last"] for r in recommended) / 2)
    assert figures["student_aurocs"]["recommended"] == [r["auroc_last"] for r in recommended]
    assert len(figures["runs"]["P-KDGAN-II-23"][0]["auroc_per_epoch"]) == 2
    for row in ("teacher", "student alone", "paper P-KDGAN-II-23", "recommended"):
        assert row in proc.stdout
    assert f"{figures['pkdgan_auroc']:.4f}" in proc.stdout and f"{figures['recommended_auroc']:.4f}" in proc.stdout
    assert "students: mean of seeds 4, 5" in proc.stdout
    for r in recommended:  # each seed's AUROC printed whole (a 1.0 must not read as .0000)
        assert f" {r['auroc_last']:.4f}" in proc.stdout
