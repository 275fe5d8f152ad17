"""gankd.runfolder: the checks every training command makes on its output folder, without any GAN."""
import subprocess
import sys

import pytest

import gankd
from gankd.runfolder import RunFolder, RunFolderError, key_differences

FILES = ("config.yaml", "checkpoint.pt", "model.pt", "record.json")


def test_a_new_or_missing_folder_is_accepted_and_a_file_is_refused(tmp_path):
    RunFolder(tmp_path / "new", FILES).check(resume=False, overwrite=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunFolderError, match=r"--out .*file is a file, not a folder"):
        RunFolder(tmp_path / "file", FILES).check(resume=False, overwrite=False)
    with pytest.raises(RunFolderError, match="contradict each other"):
        RunFolder(tmp_path / "new", FILES).check(resume=True, overwrite=True)


def test_a_folder_holding_a_run_needs_resume_or_overwrite(tmp_path):
    (tmp_path / "model.pt").write_bytes(b"")
    folder = RunFolder(tmp_path, FILES, folders=("tensorboard",), option="--run")
    with pytest.raises(RunFolderError, match=r"already holds a run \(model.pt\).*choose another --run"):
        folder.check(resume=False, overwrite=False)
    with pytest.raises(RunFolderError, match="holds a finished run .* but no checkpoint.pt"):
        folder.check(resume=True, overwrite=False)
    folder.check(resume=False, overwrite=True)
    (tmp_path / "tensorboard").mkdir()
    (tmp_path / "mine.txt").write_text("kept")
    folder.clear()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]  # only the run's own files went


def test_an_overwrite_replaces_the_run_folders_and_cleans_up_after_an_interrupted_one(tmp_path):
    """A run's sub-folders (TensorBoard logs) are run output: an interrupted --overwrite's staging folder holding
    one is removed at the next start, and a committed overwrite drops the old run's; other files stay."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.pt").write_text("old")
    (run / "tensorboard").mkdir()
    (run / "tensorboard" / "old.events").write_text("old")
    (run / "notes.txt").write_text("mine")
    folder = RunFolder(run, FILES, folders=("tensorboard",))
    (folder.staging / "tensorboard").mkdir(parents=True)  # an --overwrite killed before its first checkpoint
    (folder.staging / "config.yaml").write_text("new")
    with folder:
        new = folder.begin_overwrite()
        assert new == folder.staging and sorted(p.name for p in new.iterdir()) == [".gankd.lock"]
        (new / "model.pt").write_text("new")
        (new / "tensorboard").mkdir()
        folder.commit_overwrite()
    assert (run / "model.pt").read_text() == "new" and (run / "notes.txt").read_text() == "mine"
    assert list((run / "tensorboard").iterdir()) == [] and not folder.staging.exists()


def test_resume_refuses_a_checkpoint_of_another_config(tmp_path):
    folder = RunFolder(tmp_path, FILES)
    assert folder.checkpoint_to_resume({"seed": 0}) is None  # nothing to resume: start from the first epoch
    gankd.save_checkpoint(folder.checkpoint, {"format": 1, "metadata": {"config": {"seed": 0, "lr": 0.1}}})
    assert folder.checkpoint_to_resume({"seed": 0, "lr": 0.1})["metadata"]["config"]["seed"] == 0
    with pytest.raises(RunFolderError, match=r"written with another config \(seed: 0 -> 1\)\. Resume with"):
        folder.checkpoint_to_resume({"seed": 1, "lr": 0.1})
    assert key_differences({"a": 1, "b": 2}, {"a": 1, "c": 3}) == ["b: 2 -> None", "c: None -> 3"]


def test_the_folder_is_locked_while_used_and_stale_temporaries_go(tmp_path):
    stale = tmp_path / ".model.pt.a1b2c3d4"  # what atomic_write_bytes leaves when killed mid-write
    stale.write_bytes(b"half")
    child = ("import sys; from gankd.runfolder import RunFolder\n"
             "try:\n    RunFolder(sys.argv[1], ['model.pt']).__enter__()\n"
             "except Exception as err:\n    print(type(err).__name__, err)")
    with RunFolder(tmp_path, FILES):
        assert not stale.exists()
        other = subprocess.run([sys.executable, "-c", child, str(tmp_path)], capture_output=True, text=True,
                               timeout=60)
        assert other.stdout.startswith("FolderLockedError") and "in use by another run" in other.stdout
    free = subprocess.run([sys.executable, "-c", child, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert free.stdout == ""  # released on exit
