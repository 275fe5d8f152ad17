"""The reproduction pipeline on a tiny grid of real digits data: sweep -> records -> report, and resuming.

Budget "smoke" (1 epoch per stage, first 64 training images); the AUROC values mean nothing, the test checks
that they travel unchanged from the runs into the records and from the records into the report's tables.
"""
from __future__ import annotations

import io
import json
import pickle
import re

import numpy as np
import pytest
import torch

from gankd_ganomaly import reproduce_cli
from gankd_ganomaly.data import load_one_class
from gankd_ganomaly.study.records import fmt_auroc, fmt_mean_std, fmt_pp, fmt_ratio
from gankd_ganomaly.data.cifar_prep import LOSSY_MARKER, SOURCE_MARKER, cifar10_provenance, prepare_cifar10_subset
from gankd_ganomaly.study.budgets import BUDGETS
from gankd_ganomaly.study.sweep import record_path, run_sweep, teacher_path

torch.set_num_threads(1)

METHODS = ["teacher", "student-alone", "P-KDGAN-II-23", "ocsvm"]
SEEDS = [0, 1]
CLASS = 5  # digits' stand-in for the paper's Figure-2 MNIST class
REQUIRED_FIELDS = ("dataset", "normal_class", "method", "seed", "schedule", "epochs_per_stage", "batch_size", "lr",
                   "bn_mode_at_test", "auroc_last", "auroc_per_epoch", "params", "flops", "wall_s", "version",
                   "config", "budget", "budget_spec", "data_source", "lossy_cifar10_jpeg", "train_images",
                   "test_images", "train_subsample", "test_subsample")


class Interrupted(Exception):
    pass


def _row(markdown: str, first_cell: str, after: str | None = None) -> str:
    """The first table row starting with ``| first_cell |`` (after the heading line containing ``after``)."""
    text = markdown if after is None else markdown[markdown.index(after):]
    match = re.search(rf"^\| {re.escape(first_cell)} \|.*$", text, flags=re.M)
    assert match, f"no row {first_cell!r} after {after!r}"
    return match.group(0)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Run the grid, interrupted after its second record, then resumed; returns what each step did."""
    out = tmp_path_factory.mktemp("sweep")
    seen = []

    def interrupt_after_two(path, record):
        seen.append(path)
        if len(seen) == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        run_sweep(["digits"], [CLASS], METHODS, SEEDS, "smoke", out, threads=1, command="pytest sweep",
                  on_record=interrupt_after_two, log=lambda line: None)
    first = {p: p.stat().st_mtime_ns for p in seen}
    ckpt = teacher_path(out, "digits", CLASS, 0, "smoke")
    ckpt_mtime = ckpt.stat().st_mtime_ns
    resumed = run_sweep(["digits"], [CLASS], METHODS, SEEDS, "smoke", out, threads=1, command="pytest sweep",
                        log=lambda line: None)
    return {"out": out, "first": first, "ckpt": ckpt, "ckpt_mtime": ckpt_mtime, "resumed": resumed}


def _records(out):
    return {(m, s): json.loads(record_path(out, "digits", CLASS, m, s).read_text())
            for m in METHODS for s in (SEEDS if m != "ocsvm" else [0])}


def test_interrupted_sweep_resumes_without_redoing_finished_runs(sweep):
    out, first, resumed = sweep["out"], sweep["first"], sweep["resumed"]
    # baselines run first, then the seed-0 teacher: those two records landed before the interruption
    assert sorted(p.parent.name for p in first) == ["ocsvm", "teacher"]
    for path, mtime in first.items():
        assert path.stat().st_mtime_ns == mtime, f"{path} was rewritten on resume"
        assert str(path) in resumed.skipped and str(path) not in resumed.ran
    assert sweep["ckpt"].stat().st_mtime_ns == sweep["ckpt_mtime"], "the seed-0 teacher was retrained"
    expected_total = 1 + len(SEEDS) * 3
    assert len(resumed.ran) == expected_total - 2 and not resumed.failed and not resumed.blocked
    for (m, s), r in _records(out).items():
        assert r["status"] == "ok"
    # a third pass has nothing left to do
    again = run_sweep(["digits"], [CLASS], METHODS, SEEDS, "smoke", out, threads=1, log=lambda line: None)
    assert again.ran == [] and len(again.skipped) == expected_total
    # stopped between the teacher's checkpoint and its record: the record comes back from the checkpoint
    teacher_record = record_path(out, "digits", CLASS, "teacher", 0)
    saved = json.loads(teacher_record.read_text())
    teacher_record.unlink()
    restored = run_sweep(["digits"], [CLASS], METHODS, SEEDS, "smoke", out, threads=1, log=lambda line: None)
    assert restored.ran == [str(teacher_record)] and json.loads(teacher_record.read_text()) == saved
    assert sweep["ckpt"].stat().st_mtime_ns == sweep["ckpt_mtime"]


def test_records_carry_the_run_description(sweep):
    out = sweep["out"]
    budget = BUDGETS["smoke"]
    for (method, seed), r in _records(out).items():
        missing = [k for k in REQUIRED_FIELDS if k not in r]
        assert not missing, f"{method}/seed{seed} lacks {missing}"
        assert (r["dataset"], r["normal_class"], r["method"], r["seed"]) == ("digits", CLASS, method, seed)
        assert r["budget"] == "smoke" and r["budget_spec"] == budget.to_dict()
        assert r["lossy_cifar10_jpeg"] is False
        assert r["train_images"] == budget.max_train_images and r["train_subsample"].startswith("first 64")
        assert r["test_images"] == r["test_images_available"] and r["test_subsample"] is None  # full test split
        assert 0.0 <= r["auroc_last"] <= 1.0
        if method == "ocsvm":
            assert r["hyperparameters"]["nu"] == 0.1 and r["hyperparameters"]["gamma"] == "scale"
            continue
        assert r["command"] == "pytest sweep"
        assert r["auroc_last"] == r["auroc_per_epoch"][-1]  # the last epoch, never the best
        stages = 1 if method != "P-KDGAN-II-23" else 2
        assert r["epochs_per_stage"] == [budget.epochs(method)] * stages
        assert len(r["auroc_per_epoch"]) == sum(r["epochs_per_stage"])
        assert r["batch_size"] == budget.batch_size and r["lr"] == budget.lr and r["bn_mode_at_test"] == "eval"
        assert r["config"]["method"] == method and r["config"]["seed"] == seed
        if method != "teacher":
            assert r["params"] < _records(out)[("teacher", seed)]["params"]
        if method == "P-KDGAN-II-23":  # distilled from the teacher of the same seed, through its checkpoint
            assert r["teacher_checkpoint"] == f"teachers/digits_c{CLASS}_s{seed}_smoke.pt"
            assert r["teacher_auroc_last"] == _records(out)[("teacher", seed)]["auroc_last"]


def test_report_tables_hold_the_records_numbers(sweep, tmp_path):
    out = sweep["out"]
    recs = _records(out)
    auroc = {(m, s): r["auroc_last"] for (m, s), r in recs.items()}
    # through the CLI (its own main, as `python -m gankd_ganomaly.reproduce_cli`): a finished sweep re-runs as a no-op
    mtimes = {k: record_path(out, "digits", CLASS, *k).stat().st_mtime_ns for k in recs}
    assert reproduce_cli.main(["reproduce", "--budget", "smoke", "--datasets", "digits", "--classes", "figure2",
                               "--methods", ",".join(METHODS), "--seeds", "0-1", "--out", str(out),
                               "--threads", "1"]) == 0
    assert mtimes == {k: record_path(out, "digits", CLASS, *k).stat().st_mtime_ns for k in recs}
    md_path, plots = tmp_path / "results.md", tmp_path / "figures"
    assert reproduce_cli.main(["report", "--records", str(out), "--out", str(md_path),
                               "--plots-dir", str(plots)]) == 0
    md = md_path.read_text()

    def seeds(m):
        return [auroc[(m, s)] for s in SEEDS]

    # Table 2: per-class teacher (mean ± std over the two seeds) next to our OC-SVM, and the paper's (none: digits)
    row = _row(md, str(CLASS), after="Table 2")
    assert fmt_mean_std(seeds("teacher")) in row and fmt_auroc(auroc[("ocsvm", 0)]) in row
    assert fmt_mean_std(seeds("teacher")) == (f"{np.mean(seeds('teacher')):.4f} ± "
                                              f"{np.std(seeds('teacher'), ddof=1):.4f} (n=2)")
    assert _row(md, "0", after="Table 2").count("—") == 6  # class without runs: dashes
    # Table 3: mean over classes (one class here) ± std over seeds
    for method in ("student-alone", "P-KDGAN-II-23"):
        vals = seeds(method)
        assert f"{np.mean(vals):.4f} ± {np.std(vals, ddof=1):.4f} (1/10 cl. x 2 seeds)" in _row(md, method,
                                                                                              after="Table 3")
    assert "—" in _row(md, "KDGAN-1", after="Table 3")  # not run: no number
    # Table 4: drops over paired (class, seed) runs, in points, and the compression ratios of the records
    row4 = _row(md, "digits (scikit-learn) (ours)", after="Table 4")
    t, sa, pk = recs[("teacher", 0)], recs[("student-alone", 0)], recs[("P-KDGAN-II-23", 0)]
    drop_sa = np.mean([100 * (auroc[("teacher", s)] - auroc[("student-alone", s)]) for s in SEEDS])
    drop_pk = np.mean([100 * (auroc[("teacher", s)] - auroc[("P-KDGAN-II-23", s)]) for s in SEEDS])
    for text in (fmt_pp(drop_sa), fmt_pp(drop_pk), fmt_ratio(t["params"] / pk["params"]),
                 fmt_ratio(t["flops"] / pk["flops"]), "2 / 2"):
        assert f"| {text} |" in row4, (text, row4)
    assert sa["params"] == pk["params"]
    # Figure-2 class table, statistics sentence, header facts, the plot
    assert fmt_mean_std(seeds("P-KDGAN-II-23")) in _row(md, "P-KDGAN-II-23", after="Figure-2 classes")
    gain = np.mean(seeds("P-KDGAN-II-23")) - np.mean(seeds("student-alone"))
    assert f"{100 * gain:+.2f} AUROC points over 1 class(es)" in md and "gain not reproduced" in md
    # the P-KDGAN student at the end of each stage: the stage's last evaluated epoch, mean over seeds
    pk_epochs = [recs[("P-KDGAN-II-23", s)]["auroc_per_epoch"] for s in SEEDS]
    stage_row = _row(md, "digits (scikit-learn)", after="end of each stage")
    assert f"| {np.mean([a[0] for a in pk_epochs]):.4f} (KDGAN-2, 1 cl.) |" in stage_row
    assert f"| {np.mean([a[1] for a in pk_epochs]):.4f} (KDGAN-3, 1 cl.) |" in stage_row
    assert "`smoke`" in md and "pytest sweep" in md and "Batch norm at test time:** eval" in md
    assert (plots / f"fig2_digits_c{CLASS}_smoke.png").stat().st_size > 1000
    assert f"](figures/fig2_digits_c{CLASS}_smoke.png)" in md


def test_report_renders_controlled_runs_against_their_base(tmp_path, capsys):
    study = {"format": "gankd-controlled-runs", "dataset": "mnist", "normal_class": 8, "seed": 0,
             "baseline": "cpu budget", "command": "python results/gap_study.py", "test_images": 10000,
             "protocol": "one factor changed at a time",
             "runs": {"teacher/base": {"factor": "baseline", "auroc_last": 0.78, "auroc_per_epoch": [0.78],
                                       "wall_s": 90.0},
                      "teacher/lr-0.002": {"factor": "lr 2e-3", "auroc_last": 0.8125, "auroc_per_epoch": [0.8125],
                                           "wall_s": 91.0},
                      "P-KDGAN-II-23/base": {"factor": "baseline", "auroc_last": 0.655, "wall_s": 130.0,
                                             "auroc_per_epoch": [0.5, 0.9, 0.6, 0.7, 0.655, 0.655]},
                      "P-KDGAN-II-24": {"factor": "method", "base": "P-KDGAN-II-23/base", "auroc_last": 0.7,
                                        "auroc_per_epoch": [0.7], "wall_s": 120.0}}}
    path = tmp_path / "study.json"
    path.write_text(json.dumps(study))
    md_path = tmp_path / "results.md"
    (tmp_path / "none").mkdir()
    assert reproduce_cli.main(["report", "--records", str(tmp_path / "none"), "--out", str(md_path), "--no-plots",
                               "--controlled", str(path)]) == 0
    md = md_path.read_text()
    assert "## Controlled runs on the largest gaps" in md and "normal class 8" in md
    assert "| teacher/lr-0.002 | lr 2e-3 | 0.8125 | +3.25 | — | 91 |" in md
    assert "| P-KDGAN-II-23/base | baseline | 0.6550 | — | 0.3000 | 130 |" in md  # spread of the last 5 epochs
    assert "| P-KDGAN-II-24 | method | 0.7000 | +4.50 |" in md  # against the base it names
    path.write_text(json.dumps({**study, "format": "something else"}))
    capsys.readouterr()
    # the CLI's error boundary: one line naming the problem, exit status 1 (the ValueError itself with --debug)
    assert reproduce_cli.main(["report", "--records", str(tmp_path / "none"), "--out", str(md_path), "--no-plots",
                               "--controlled", str(path)]) == 1
    err = capsys.readouterr().err
    assert "error: ValueError:" in err and "not a controlled-runs file" in err
    with pytest.raises(ValueError, match="not a controlled-runs file"):
        reproduce_cli.main(["--debug", "report", "--records", str(tmp_path / "none"), "--out", str(md_path),
                            "--no-plots", "--controlled", str(path)])


def test_records_of_another_budget_are_not_mixed(sweep):
    from gankd_ganomaly.study.sweep import SweepError

    with pytest.raises(SweepError, match="budget 'smoke'"):
        run_sweep(["digits"], [CLASS], ["student-alone"], [0], "cpu", sweep["out"], log=lambda line: None)


def _fake_partial(tmp_path, n_train=40, n_test=20):
    """A cifar10_partial.npz-like file and a matching cifar10_jpeg.npz-like file (random pixels, JPEG-encoded)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (n_train, 3072), dtype=np.uint8)
    test = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    train_labels, test_labels = (np.arange(n_train) % 10).astype(np.uint8), (np.arange(n_test) % 10).astype(np.uint8)
    np.savez(tmp_path / "partial.npz", train_data=train, train_labels=train_labels, test_data=test,
             test_labels=test_labels)

    def encode(rows):
        blobs = []
        for row in rows:
            buf = io.BytesIO()
            Image.fromarray(row.reshape(3, 32, 32).transpose(1, 2, 0)).save(buf, format="JPEG", quality=75)
            blobs.append(np.frombuffer(buf.getvalue(), dtype=np.uint8))
        offsets = np.concatenate([[0], np.cumsum([len(b) for b in blobs])]).astype(np.int64)
        return np.concatenate(blobs), offsets

    (tj, to), (sj, so) = encode(train), encode(test)
    np.savez(tmp_path / "jpeg.npz", train_jpeg=tj, train_offsets=to, test_jpeg=sj, test_offsets=so,
             train_labels=train_labels, test_labels=test_labels)
    return train, test


def test_cifar10_subsets_are_written_and_labelled(tmp_path):
    train, test = _fake_partial(tmp_path)
    exact_dir = prepare_cifar10_subset(tmp_path / "exact", tmp_path / "partial.npz")
    jpeg_dir = prepare_cifar10_subset(tmp_path / "jpeg", tmp_path / "partial.npz", jpeg_npz=tmp_path / "jpeg.npz")
    assert not (exact_dir / LOSSY_MARKER).exists() and (jpeg_dir / LOSSY_MARKER).exists()
    assert json.loads((jpeg_dir / SOURCE_MARKER).read_text())["variant"] == "jpeg-subset"
    exact = cifar10_provenance(tmp_path / "exact")
    assert (exact["cifar10_variant"], exact["lossy_cifar10_jpeg"]) == ("exact-subset", False)
    lossy = cifar10_provenance(tmp_path / "jpeg")
    assert (lossy["cifar10_variant"], lossy["lossy_cifar10_jpeg"]) == ("jpeg-subset", True)
    assert cifar10_provenance(tmp_path / "exact", cifar_jpeg=True)["lossy_cifar10_jpeg"] is True
    # the loader reads both; same images and labels, exact pixels only in the exact one
    a, b = load_one_class("cifar10", 3, root=tmp_path / "exact"), load_one_class("cifar10", 3, root=tmp_path / "jpeg")
    assert a.train.shape == b.train.shape == (4, 3, 32, 32) and torch.equal(a.test_labels, b.test_labels)
    expected = torch.from_numpy(train[3::10].reshape(-1, 3, 32, 32).astype(np.float32)) / 255 * 2 - 1
    assert torch.allclose(a.train, expected, atol=1e-6) and not torch.allclose(b.train, expected, atol=1e-3)


def test_batches_written_by_to_batches_py_are_recognised_as_lossy(tmp_path):
    dest = tmp_path / "cifar-10-batches-py"
    dest.mkdir()
    batch = {b"batch_label": b"test_batch", b"labels": [0, 1], b"data": np.zeros((2, 3072), np.uint8),
             b"filenames": [b"test_batch_00000.png", b"test_batch_00001.png"]}
    (dest / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
    assert cifar10_provenance(tmp_path) == {"cifar10_variant": "jpeg-full", "lossy_cifar10_jpeg": True,
                                            "cifar10_marker": None}
    batch[b"filenames"] = [b"leptodactylus_pentadactylus_s_000004.png", b"camion_s_000148.png"]
    (dest / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
    assert cifar10_provenance(tmp_path)["lossy_cifar10_jpeg"] is False


def test_sweep_runs_the_recommended_recipe_and_the_reconstruction_control(tmp_path):
    from gankd_ganomaly.study.sweep import record_path, run_sweep

    run_sweep(["digits"], [3], ["recommended", "student-alone-wcon40"], [0], "smoke", tmp_path, log=lambda line: None)
    rec = json.loads(record_path(tmp_path, "digits", 3, "recommended", 0).read_text())
    assert rec["recipe"] == "recommended" and rec["teacher_checkpoint"]  # its teacher was trained first
    assert rec["schedule"]["stages"][0]["distillation"]["terms"][0]["output"] == "x_hat"
    control = json.loads(record_path(tmp_path, "digits", 3, "student-alone-wcon40", 0).read_text())
    assert control["method"] == "student-alone-wcon40" and control["recipe"] is None
    assert control["config"]["loss_weights"]["w_con"] == 40.0 and control["config"]["method"] == "student-alone"
    # a second process that trains no teacher leaves the students of a missing teacher for later
    later = run_sweep(["digits"], [3], ["recommended"], [1], "smoke", tmp_path, log=lambda line: None,
                      existing_teachers=True)
    assert later.ran == [] and not record_path(tmp_path, "digits", 3, "recommended", 1).exists()
    assert not record_path(tmp_path, "digits", 3, "teacher", 1).exists()


def test_report_beyond_the_paper_section_tests_the_recipe_against_alone_and_control(tmp_path):
    from gankd_ganomaly.study.report import write_report
    from gankd_ganomaly.study.sweep import RECORD_FORMAT, record_path

    def write(out, method, c, seed, auroc):
        path = record_path(out, "mnist", c, method, seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"record_format": RECORD_FORMAT, "budget": "cpu", "dataset": "mnist",
                                    "normal_class": c, "method": method, "seed": seed, "status": "ok",
                                    "auroc_last": auroc, "auroc_per_epoch": [auroc], "params": 100, "flops": 100}))

    paper, beyond = tmp_path / "paper", tmp_path / "beyond"
    for c in range(6):
        for seed in (0, 1):
            write(paper, "P-KDGAN-II-23", c, seed, 0.70)
            write(beyond, "teacher", c, seed, 0.95)
            write(beyond, "student-alone", c, seed, 0.80 + 0.01 * c)
            write(beyond, "student-alone-wcon40", c, seed, 0.86 + 0.01 * c)
            write(beyond, "recommended", c, seed, 0.85 + 0.01 * c + (0.002 if c % 2 else -0.002))
            write(beyond, "student-alone-fast", c, seed, 0.84 + 0.01 * c)
            write(beyond, "reconstruction-fast", c, seed, 0.83 + 0.01 * c)
    result = write_report(paper, tmp_path / "results.md", None, beyond=[beyond])
    text = (tmp_path / "results.md").read_text()
    assert "## Beyond the paper: the `recommended` recipe" in text
    assert "MNIST: `recommended` **beats** the student trained alone (+5.00 points, one-sided Wilcoxon p=0.0156" in text
    assert "against its control (w_con 40) it gains -1.00" in text
    assert "  - MNIST: gain +5.00 at p=0.0156: met; teacher gap +7.50 against at most +6.25: not met." in text
    assert "| 0.7000 ± 0.0000 (6/10 cl. x 2 seeds) |" in text  # the P-KDGAN-II-23 column comes from --records
    stats = result["statistics"]["cpu/beyond/mnist"]
    assert stats["teacher_gap_alone"] == pytest.approx(0.125) and stats["teacher_gap_recipe"] == pytest.approx(0.075)
    # a second recipe gets its own table, tested against its own control
    assert "### The student at five times the learning rate: `reconstruction-fast`" in text
    assert "against its control (5x lr, no teacher) it gains -1.00" in text
    fast = result["statistics"]["cpu/beyond/reconstruction-fast/mnist"]
    assert fast["vs_alone"]["mean_gain"] == pytest.approx(0.03) and fast["teacher_gap_recipe"] == pytest.approx(0.095)


def test_full_data_section_pairs_each_student_with_its_seeds_student_alone():
    from gankd_ganomaly.study.records import _group
    from gankd_ganomaly.study.sections import full_data_section

    def rec(method, seed, auroc, curve=None):
        return {"budget": "full-data", "dataset": "mnist", "normal_class": 5, "method": method, "seed": seed,
                "auroc_last": auroc, "auroc_per_epoch": curve or [auroc]}

    records = [rec("teacher", 0, 0.97, [0.90, 0.96, 0.97, 0.95, 0.97]), rec("teacher", 1, 0.95),
               rec("student-alone", 0, 0.90), rec("student-alone", 1, 0.80),
               rec("recommended", 0, 0.92), rec("recommended", 1, 0.79), rec("P-KDGAN-II-23", 0, 0.75)]
    text = "\n".join(full_data_section(_group(records)["full-data"]))
    assert "| MNIST 5 | 0.9600 ± 0.0141 (n=2) | 0.8500 ± 0.0707 (n=2) | 0.7500 | 0.8550 ± 0.0919 (n=2) |" in text
    assert "| s0 +2.00, s1 -1.00 | s0 -15.00 | +11.00 -> +10.50 |" in text
    assert "mean +0.50 points over 2 (class, seed) pairs, positive in 1 of 2" in text
    assert "over its last 4 epochs, mean 2.00 points over 1 teachers" in text  # the seed-1 curve is too short
    assert "reconstruction-fast" not in text  # no records of it: no table
    records += [rec("student-alone-fast", 0, 0.86), rec("reconstruction-fast", 0, 0.91)]
    text = "\n".join(full_data_section(_group(records)["full-data"]))
    assert "### `reconstruction-fast` at the `full-data` budget" in text
    assert "| MNIST 5 | 0.8500 ± 0.0707 (n=2) | 0.8600 | 0.9100 | s0 +1.00 | s0 +5.00 |" in text
    assert "- `reconstruction-fast` - `student-alone-fast`: mean +5.00 points over 1 (class, seed) pairs" in text
    assert full_data_section(_group([{**r, "budget": "cpu"} for r in records])["cpu"]) == []


def test_shards_are_disjoint_and_together_the_whole_grid(tmp_path, capsys):
    """`reproduce --shard K/N --dry-run` for K = 1..N: disjoint run lists whose union is the unsharded dry run,
    every student in the part of its teacher; a malformed shard is a usage error naming it."""
    def planned(*extra: str) -> list[str]:
        args = ["reproduce", "--datasets", "digits,mnist", "--classes", "0-2", "--seeds", "0-1", "--methods",
                "teacher,student-alone,P-KDGAN-II-23,ocsvm", "--out", str(tmp_path / "sweep"), "--dry-run", *extra]
        assert reproduce_cli.main(args) == 0
        return re.findall(r"would run (.+?) \(~", capsys.readouterr().err)

    whole = planned()
    assert len(whole) == 2 * 3 * (2 * 3 + 1)  # datasets x classes x (seeds x methods + one baseline run)
    parts = [planned("--shard", f"{k}/3") for k in (1, 2, 3)]
    assert sorted(sum(parts, [])) == sorted(whole)  # the union, each run once
    assert all(len(p) >= 10 for p in parts)  # balanced: 12 cells over 3 parts
    for part in parts:
        for run in part:
            if run.endswith("P-KDGAN-II-23"):
                assert run.replace("P-KDGAN-II-23", "teacher") in part
    with pytest.raises(SystemExit) as usage:
        reproduce_cli.main(["reproduce", "--shard", "4/3", "--dry-run"])
    assert usage.value.code == 2 and "expected K/N with 1 <= K <= N (e.g. 2/8), got '4/3'" in capsys.readouterr().err
