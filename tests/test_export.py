"""Deployment export: a trained student exported to TorchScript (and ONNX where available) scores
the digits test split exactly as the eager model does (eval mode), to 1e-5."""
import json

import pytest
import torch
import torch.nn.functional as F

from gankd import DistillationEngine, get_schedule
from gankd.batches import ShuffledBatches
from gankd_ganomaly.evaluation import anomaly_scores
from gankd_ganomaly.data import dataset_spec
from gankd_ganomaly.deploy import (LAYOUTS, BatchLastScorer, GanomalyScorer, default_layout, export_onnx,
                                   export_torchscript, onnx_available, scoring_module, to_torchscript)
from gankd_ganomaly.deploy.batch_last import _conv2x2_batch_last, _taps_2x2
from gankd_ganomaly.deploy.folded import _Col2ImDeconv, _NativeDeconv, _SubpixelDeconv
from gankd_ganomaly.hooks import GanomalyHooks
from gankd_ganomaly.networks import TEACHER_WIDTHS

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning")

ATOL = 1e-5  # the parity bar (absolute)
RTOL = 1e-4  # and, since a briefly trained student's scores are small, a bar relative to their scale


def assert_parity(scores, eager):
    assert scores.shape == eager.shape
    diff = (scores - eager).abs().max()
    assert diff <= ATOL, diff
    assert diff <= RTOL * eager.abs().max(), (diff, eager.abs().max())


@pytest.fixture(scope="module")
def trained(digits0):
    """A tiny MNIST-width student trained a few steps (student-alone) on digits class 0, and its eager scores."""
    hooks = GanomalyHooks(in_channels=1)
    torch.manual_seed(0)
    student = hooks.build_gan(dataset_spec("mnist").student_widths)
    engine = DistillationEngine(hooks, None, student)
    engine.fit(get_schedule("student-alone", 1), ShuffledBatches(digits0.train, 16, seed=0))
    student.train()  # as training leaves it: export must use eval-mode statistics anyway
    eager = anomaly_scores(hooks, student, digits0.test, batch_size=256, bn_mode="eval")
    assert student.training  # anomaly_scores restored the mode
    return hooks, student, eager


def _scores(model, images, batch_size=256):
    with torch.inference_mode():
        return torch.cat([model(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])


def test_eager_scores_are_not_trivial(trained):
    """Parity means something only if the scores vary (checked relative to their scale below)."""
    _, _, eager = trained
    assert eager.shape == (540,) and torch.isfinite(eager).all()
    assert eager.std() > 1e-3 * eager.mean() > 0


@pytest.mark.parametrize("optimize, layout", [(True, None)] + [(True, layout) for layout in LAYOUTS] + [(False, None)])
def test_torchscript_scores_match_eager(trained, digits0, tmp_path, optimize, layout):
    hooks, student, eager = trained
    before = {k: v.clone() for k, v in student.state_dict().items()}
    path = export_torchscript(student, 1, tmp_path / "student.pt", optimize=optimize, layout=layout)
    loaded = torch.jit.load(str(path))
    assert_parity(_scores(loaded, digits0.test), eager)
    # any batch size, including 1, gives the same per-image scores
    assert_parity(_scores(loaded, digits0.test[:7], batch_size=1), eager[:7])
    # exporting neither changed the model nor its mode
    assert student.training
    assert all(torch.equal(before[k], v) for k, v in student.state_dict().items())


def test_scoring_module_accepts_a_gan_or_its_generator(trained, digits0):
    _, student, eager = trained
    for source in (student, student.generator):
        assert_parity(_scores(scoring_module(source), digits0.test), eager)


def test_default_layout_follows_the_widths():
    """Measured choices (benchmarks/): channels-last for widths >= 8, batch-last for widths <= 8."""
    hooks = GanomalyHooks(in_channels=1)
    widths = (TEACHER_WIDTHS, dataset_spec("cifar10").student_widths, dataset_spec("mnist").student_widths, dataset_spec("fmnist").student_widths, (4, 16, 64))
    picks = [default_layout(hooks.build_gan(w).generator) for w in widths]
    assert picks == ["channels_last", "channels_last", "batch_last", "batch_last", "standard"]
    assert isinstance(scoring_module(hooks.build_gan(dataset_spec("mnist").student_widths)), BatchLastScorer)
    assert isinstance(scoring_module(hooks.build_gan(dataset_spec("mnist").student_widths), layout="standard"), GanomalyScorer)


def test_export_checks_channels_type_and_layout(trained, tmp_path):
    _, student, _ = trained
    with pytest.raises(ValueError, match=r"layout must be one of \('standard', 'channels_last', 'batch_last'\)"):
        to_torchscript(student, 1, layout="nhwc")
    with pytest.raises(ValueError, match="in_channels=3, but the generator takes 1-channel images"):
        to_torchscript(student, 3)
    with pytest.raises(TypeError, match="GanomalyGenerator"):
        to_torchscript(torch.nn.Linear(2, 2), 1)


@pytest.mark.parametrize("cin, cout", [(64, 16), (16, 8), (8, 3), (2, 1), (64, 3), (1, 1)])
@pytest.mark.parametrize("form", [_NativeDeconv, _SubpixelDeconv, _Col2ImDeconv])
@pytest.mark.parametrize("channels_last", [False, True])
def test_transposed_conv_rewrites_equal_the_layer(cin, cout, form, channels_last):
    """Each fast form of the stride-2 4x4 transposed conv (+ReLU) computes the layer itself."""
    torch.manual_seed(0)
    x = torch.randn(3, cin, 4, 4)
    weight, bias = torch.randn(cin, cout, 4, 4), torch.randn(cout)
    expected = torch.relu(F.conv_transpose2d(x, weight, bias, stride=2, padding=1))
    layer = form(weight.double(), bias.double(), channels_last, False)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        assert torch.allclose(layer(x), expected, rtol=1e-5, atol=1e-4 * expected.abs().max())


def test_batch_last_2x2_convolution_equals_conv2d_and_chains_on_its_own_views():
    """The batch-last 2x2 conv (four products on shifted views) is F.conv2d, also when its input is the
    row-padded view a previous one returned."""
    torch.manual_seed(0)
    x = torch.randn(5, 3, 9, 11)  # (N, C, H, W)
    w1, b1, w2 = torch.randn(4, 3, 2, 2), torch.randn(4), torch.randn(2, 4, 2, 2)
    expected1 = F.conv2d(x, w1, b1)
    expected2 = F.conv2d(expected1, w2)
    x_bl = x.permute(1, 2, 3, 0).contiguous()  # (C, H, W, N)
    y1 = _conv2x2_batch_last(x_bl, _taps_2x2(w1), b1.unsqueeze(1))
    assert y1.shape == (4, 8, 10, 5) and not y1.is_contiguous()  # rows keep the input's length
    y2 = _conv2x2_batch_last(y1, _taps_2x2(w2), None)
    assert torch.allclose(y1.permute(3, 0, 1, 2), expected1, atol=1e-5)
    assert torch.allclose(y2.permute(3, 0, 1, 2), expected2, atol=1e-4)


@pytest.mark.parametrize("channels, widths", [(3, TEACHER_WIDTHS), (3, dataset_spec("cifar10").student_widths),
                                             (1, dataset_spec("mnist").student_widths), (1, dataset_spec("fmnist").student_widths),
                                             (3, dataset_spec("mnist").student_widths)])
@pytest.mark.parametrize("layout, phase_tail", [("standard", False), ("standard", True), ("channels_last", False),
                                                ("channels_last", True), ("batch_last", True)])
def test_every_form_of_the_scoring_graph_matches_eager(channels, widths, layout, phase_tail):
    """The paper's teacher and students, each layout and each form of the last layers, scripted and frozen."""
    hooks = GanomalyHooks(in_channels=channels)
    torch.manual_seed(0)
    gan = hooks.build_gan(widths)
    gan.train()
    with torch.no_grad():  # realistic batch-norm running statistics
        for _ in range(3):
            gan.generator(torch.rand(32, channels, 32, 32) * 2 - 1)
    gan.eval()
    images = torch.rand(9, channels, 32, 32) * 2 - 1
    with torch.inference_mode():
        eager = hooks.score(gan, images)
        module = BatchLastScorer(gan.generator) if layout == "batch_last" else \
            GanomalyScorer(gan.generator, layout == "channels_last", phase_tail)
        scorer = torch.jit.freeze(torch.jit.script(module))
        assert_parity(scorer(images), eager)
        assert_parity(scorer(images.contiguous(memory_format=torch.channels_last)), eager)  # either input layout
        assert_parity(scorer(images[:1]), eager[:1])


def test_export_command_writes_a_matching_scorer(trained, digits0, tmp_path, capsys):
    """`gankd-ganomaly export model.pt student.ts`: a saved model.pt (as runs write it) -> a scorer file."""
    from gankd_ganomaly import experiment
    from gankd_ganomaly.cli import main

    hooks, student, eager = trained
    experiment.save_model(tmp_path / "model.pt", student, experiment.RunConfig(dataset="digits", method="student-alone"))
    assert main(["export", str(tmp_path / "model.pt"), str(tmp_path / "student.ts")]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["format"] == "torchscript" and record["widths"] == list(dataset_spec("mnist").student_widths)
    assert record["layout"] == "batch_last"  # the default for a 2-4-8 student
    assert_parity(_scores(torch.jit.load(record["path"]), digits0.test), eager)
    assert main(["export", str(tmp_path / "model.pt"), str(tmp_path / "std.ts"), "--layout", "standard"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["layout"] == "standard"
    assert_parity(_scores(torch.jit.load(record["path"]), digits0.test), eager)
    assert main(["export", str(tmp_path / "model.pt"), str(tmp_path / "s.onnx"), "--layout", "batch_last"]) == 1
    assert "layout applies to the rewritten TorchScript graph only" in capsys.readouterr().err


def _needs_onnx():
    ok, why = onnx_available()
    if not ok:
        pytest.skip(why + " (the [onnx] extra; requirements.lock pins it, so `make test` runs this)")
    pytest.importorskip("onnxruntime", reason="ONNX parity needs onnxruntime: pip install 'gankd[onnx]'")


@pytest.fixture(scope="module")
def trained64(digits0):
    """A 4-8-16 GANomaly generator at image size 64 (with the pyramid block), He-initialised, its batch-norm
    running statistics taken from digits 0 resized to 64, the resized test images and its eager scores. Not
    trained: with GANomaly's N(0, 0.02) initialisation, or after a step of training, a generator this small at
    64x64 gives near-constant scores (std/mean < 1e-3) or latents of 1e-14, which would make parity trivial."""
    hooks = GanomalyHooks(in_channels=1, image_size=64)
    images = F.interpolate(digits0.train, size=64, mode="bilinear", align_corners=False)
    test = F.interpolate(digits0.test, size=64, mode="bilinear", align_corners=False)
    torch.manual_seed(0)
    gan = hooks.build_gan((4, 8, 16))
    with torch.no_grad():
        for m in gan.generator.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                torch.nn.init.kaiming_normal_(m.weight, a=0.2)
        gan.generator.train()
        for batch in images.split(32):
            gan.generator(batch)  # running statistics of real images
    return hooks, gan, test, anomaly_scores(hooks, gan, test, batch_size=256, bn_mode="eval")


@pytest.mark.parametrize("size, optimize", [(32, True), (32, False), (64, False)])
def test_onnx_scores_match_eager_under_onnxruntime(trained, trained64, digits0, tmp_path, size, optimize):
    from gankd_ganomaly.deploy import OnnxScorer

    _needs_onnx()
    if size == 32:
        (_, student, eager), images = trained, digits0.test
    else:
        _, student, images, eager = trained64
    path = export_onnx(student, 1, tmp_path / "student.onnx", optimize=optimize)
    scorer = OnnxScorer(path, threads=1)
    assert (scorer.in_channels, scorer.image_size) == (1, size)  # read from the file's declared input
    assert eager.std() > 1e-3 * eager.mean() > 0
    assert_parity(scorer(images, batch_size=100), eager)  # several runs of the session, the last one short
    with pytest.raises(ValueError, match=rf"expected images of shape \(N, 1, {size}, {size}\)"):
        scorer(torch.zeros(2, 1, 96, 96))


def _csv_scores(text):
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(text)))
    return torch.tensor([float(r["score"]) for r in rows], dtype=torch.float64), [r.get("is_novel") for r in rows]


def test_score_and_evaluate_run_an_exported_onnx_file(trained, digits0, tmp_path, capsys):
    """`gankd-ganomaly score --checkpoint s.onnx` scores as the model file does (onnxruntime), with the threshold
    and dataset the export wrote beside it; evaluate gives the same AUROC."""
    from gankd_ganomaly import experiment
    from gankd_ganomaly.cli import main

    _needs_onnx()
    _, student, eager = trained
    ranked = eager.sort().values
    threshold = float(ranked[269] + ranked[270]) / 2  # between two scores: the decisions cannot flip on rounding
    cfg = experiment.RunConfig(dataset="digits", normal_class=0, method="student-alone")
    experiment.save_model(tmp_path / "model.pt", student, cfg, threshold={"value": threshold, "target_fpr": 0.01})
    assert main(["export", str(tmp_path / "model.pt"), str(tmp_path / "s.onnx")]) == 0
    capsys.readouterr()
    csvs = {}
    for name in ("model.pt", "s.onnx"):
        assert main(["score", "--checkpoint", str(tmp_path / name), "--output", str(tmp_path / f"{name}.csv"),
                     "--threads", "1"]) == 0
        csvs[name] = _csv_scores((tmp_path / f"{name}.csv").read_text())
    (eager_csv, eager_novel), (onnx_csv, onnx_novel) = csvs["model.pt"], csvs["s.onnx"]
    assert len(onnx_csv) == 540 and onnx_novel == eager_novel and onnx_novel.count("1") == 270
    assert_parity(onnx_csv.float(), eager_csv.float())
    results = {}
    for name in ("model.pt", "s.onnx"):
        assert main(["evaluate", "--checkpoint", str(tmp_path / name), "--json", str(tmp_path / f"{name}.json"),
                     "--threads", "1"]) == 0
        results[name] = json.loads((tmp_path / f"{name}.json").read_text())
    assert results["s.onnx"]["runtime"] == "onnxruntime" and results["s.onnx"]["threshold"] == threshold
    assert abs(results["s.onnx"]["auroc"] - results["model.pt"]["auroc"]) < 1e-6
    assert results["s.onnx"]["fpr_at_threshold"] == results["model.pt"]["fpr_at_threshold"]
    capsys.readouterr()
    # what an exported scorer cannot do is refused by name, before any scoring
    assert main(["score", "--checkpoint", str(tmp_path / "s.onnx"), "--widths", "2,4,8"]) == 1
    assert "--widths does not apply" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(tmp_path / "s.onnx"), "--plots", str(tmp_path / "p")]) == 1
    assert "--plots draws the model's reconstructions" in capsys.readouterr().err
    (tmp_path / "bad.onnx").write_bytes(b"not an onnx graph" * 10)
    assert main(["score", "--checkpoint", str(tmp_path / "bad.onnx"), "--dataset", "digits"]) == 1
    assert f"cannot load ONNX scorer '{tmp_path / 'bad.onnx'}'" in capsys.readouterr().err


def test_onnx_without_packages_names_them(monkeypatch, trained, tmp_path):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name in ("onnx", "onnxscript"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    _, student, _ = trained
    with pytest.raises(RuntimeError, match=r"pip install 'gankd\[onnx\]'.*pip install onnx onnxscript"):
        export_onnx(student, 1, tmp_path / "x.onnx")


def test_one_score_function_for_the_hooks_the_scorers_and_the_derived_output(trained, digits0):
    """GanomalyHooks.score, the `squared_error` derived output and the exported graphs compute one function,
    gankd.functional.squared_error; it scripts, and its batch-last form gives the same values."""
    from gankd import DERIVED_OUTPUTS
    from gankd.functional import squared_error

    hooks, student, eager = trained
    images = digits0.test[:64]
    student.eval()
    with torch.no_grad():
        z1, _, z2 = student.generator(images)
        score = hooks.score(student, images)
    student.train()
    assert z1.shape == (64, 256, 1, 1)
    expected = ((z1 - z2) ** 2).sum(dim=(1, 2, 3)) / 256  # written out: the mean over the 256 latent values
    assert torch.allclose(score, expected, rtol=1e-6, atol=0) and torch.equal(score, eager[:64])
    derived = DERIVED_OUTPUTS.get("squared_error")({"z1": z1, "z2": z2}, a="z1", b="z2")
    assert torch.equal(derived, score)
    scripted = torch.jit.script(squared_error)
    assert torch.equal(scripted(z1, z2), score)
    batch_last = scripted(z1.flatten(1).t().contiguous(), z2.flatten(1).t().contiguous(), -1)  # (latent, N)
    assert torch.allclose(batch_last, score, rtol=1e-6, atol=0)
