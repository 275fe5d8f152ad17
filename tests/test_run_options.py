"""`gankd train` as a user meets it from their own folders: paths relative to the config file, `--set` into list
items, `--threads` (recorded, a resume with another count warned about), resume refusals that name the nested key,
`evaluate.every`, and the teacher model file a two-stage run leaves for a second run."""
import json

import pytest
import torch
import yaml

from gankd.modelfile import read_model
from gankd.run import RunConfigError, apply_overrides
from gankd.runfolder import key_differences

from conftest import gankd_command

DATA = {"factory": "gankd.examples.points:batches", "args": {"n_batches": 2}}
TWO_STAGE = {  # stage 2 fine-tunes the teacher: the run trains both GANs
    "family": "gankd.examples.points:PointHooks", "data": DATA, "teacher": {"width": 16}, "student": {"width": 4},
    "evaluate": {"factory": "gankd.examples.points:distances", "every": 2},
    "schedule": {"name": "two-stage", "stages": [
        {"structure": "KDGAN-4", "epochs": 1, "optimizer": {"lr": 0.002}},
        {"structure": "KDGAN-3", "epochs": 1, "optimizer": {"lr": 0.002}}]}}


gankd = gankd_command


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """configs/ holds the config files; the commands run from work/, another folder."""
    root = tmp_path_factory.mktemp("project")
    (root / "configs").mkdir()
    (root / "work").mkdir()
    (root / "configs" / "two_stage.yaml").write_text(yaml.safe_dump(TWO_STAGE, sort_keys=False))
    gankd("train", "--config", "../configs/two_stage.yaml", "--out", "first", "--threads", "1", "--quiet",
          "--set", "schedule.stages.1.epochs=3", cwd=root / "work")
    return root


def test_set_reaches_list_items_and_threads_are_recorded(project):
    record = json.loads((project / "work" / "first" / "record.json").read_text())
    assert [h["structure"] for h in record["history"]] == ["KDGAN-4", "KDGAN-3", "KDGAN-3", "KDGAN-3"]
    assert record["torch_threads"] == 1 and record["world_size"] == 1
    # evaluate.every 2: epochs 2 and 4 of the run, plus the last epoch of each stage (1 of stage 1, 3 of stage 2)
    assert [bool(h["metrics"]) for h in record["history"]] == [True, False, True, True]


def test_a_two_stage_run_leaves_a_teacher_model_file_a_second_run_accepts(project):
    header, weights = read_model(project / "work" / "first" / "teacher.pt")
    assert header["role"] == "teacher" and header["width"] == 16
    # the teacher was fine-tuned in stage 2: its file holds the trained weights, not the initial ones
    torch.manual_seed(0)
    from gankd.examples.points import PointHooks

    fresh = PointHooks().build_gan(16)
    assert not torch.equal(weights["generator.0.weight"], fresh.generator[0].weight)
    second = {**TWO_STAGE, "teacher": {"checkpoint": "../work/first/teacher.pt"}, "schedule": "KDGAN-2",
              "epochs": 1}
    (project / "configs" / "second.yaml").write_text(yaml.safe_dump(second, sort_keys=False))
    elsewhere = project / "configs"  # a third working folder: the path is the config file's, not the cwd's
    gankd("train", "--config", "second.yaml", "--out", "../work/second", "--quiet", cwd=elsewhere)
    header, _ = read_model(project / "work" / "second" / "model.pt")
    assert header["role"] == "student"
    assert not (project / "work" / "second" / "teacher.pt").exists()  # KDGAN-2 does not train the teacher


def test_resume_refusal_names_the_nested_key_and_its_two_values(project):
    refused = gankd("train", "--config", "../configs/two_stage.yaml", "--out", "first", "--resume",
                    "--set", "schedule.stages.1.epochs=2", cwd=project / "work", check=False)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "(schedule.stages.1.epochs: 3 -> 2)" in refused.stderr


def test_resume_with_another_thread_count_is_warned_about(project):
    resumed = gankd("train", "--config", "../configs/two_stage.yaml", "--out", "first", "--resume", "--quiet",
                    "--threads", "2", "--set", "schedule.stages.1.epochs=3", cwd=project / "work")
    assert "warning: resuming with 2 torch thread(s) where the interrupted run used 1" in resumed.stderr


def test_override_and_difference_helpers():
    config = {"schedule": {"stages": [{"epochs": 1}, {"epochs": 2}]}}
    assert apply_overrides(config, ["schedule.stages.0.epochs=5"])["schedule"]["stages"][0] == {"epochs": 5}
    with pytest.raises(RunConfigError, match=r"schedule.stages is a list of 2 item\(s\); address one by its index "
                                             r"0..1, got '2'"):
        apply_overrides(config, ["schedule.stages.2.epochs=5"])
    changed = apply_overrides(config, ["schedule.stages.1.epochs=4", "seed=3"])
    assert key_differences(config, changed) == ["schedule.stages.1.epochs: 2 -> 4", "seed: None -> 3"]
    assert key_differences({"a": [1, 2]}, {"a": [1]}) == ["a: [1, 2] -> [1]"]  # a list that changed length: whole
    assert key_differences({"w": [64, 128]}, {"w": [32, 128]}) == ["w: [64, 128] -> [32, 128]"]  # numbers: whole
