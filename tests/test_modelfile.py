"""One model-file reader: gankd.modelfile reads the current format and, through registered upgraders, earlier ones,
including a family's (found through its `gankd.model_upgraders` entry point, without importing it first)."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import gankd.modelfile as modelfile
from gankd import CheckpointError
from gankd.examples.points import PointHooks

REPO = Path(__file__).resolve().parents[1]


def test_a_registered_upgrader_turns_an_old_file_into_the_current_one(tmp_path):
    gan = PointHooks().build_gan(4)
    old = {"format": "points-v0", "hidden": 4, "weights": gan.state_dict()}
    torch.save(old, tmp_path / "old.pt")
    with pytest.raises(CheckpointError, match=r"is not a gankd model file \(format 'points-v0'"):
        modelfile.read_model(tmp_path / "old.pt")

    def upgrade(payload):
        if not (isinstance(payload, dict) and payload.get("format") == "points-v0"):
            return None
        return {"format": modelfile.MODEL_FORMAT, "format_version": 1, "version": None,
                "family": "gankd.examples.points:PointHooks", "family_args": {}, "role": "student",
                "width": payload["hidden"], "metadata": {}, "state_dict": payload["weights"]}

    modelfile.MODEL_UPGRADERS.register("tests.points-v0", upgrade)
    try:
        loaded, header = modelfile.load_model(tmp_path / "old.pt")
    finally:
        modelfile.MODEL_UPGRADERS._items.pop("tests.points-v0", None)  # the registry has no public removal
        modelfile.MODEL_UPGRADERS._owners.pop("tests.points-v0", None)
    assert header["upgraded_from"] == "tests.points-v0" and header["width"] == 4
    for k, v in gan.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)


def test_an_earlier_ganomaly_sweep_teacher_reads_through_the_core_alone(tmp_path):
    """A fresh interpreter that imports only gankd reads a sweep teacher of the earlier format: the family's
    upgrader module comes from its entry point."""
    from gankd_ganomaly.hooks import GanomalyHooks

    gan = GanomalyHooks(in_channels=1).build_gan([4, 8, 16])
    torch.save({"format": "gankd-reproduce-teacher", "version": "0.1.0", "budget": "smoke", "record_json": "{}",
                "config": {"dataset": "digits", "normal_class": 3, "teacher_widths": [4, 8, 16]},
                "state_dict": gan.state_dict()}, tmp_path / "teacher.pt")
    script = textwrap.dedent(f"""
        import sys
        from gankd.modelfile import load_model
        gan, header = load_model({str(tmp_path / "teacher.pt")!r}, role="teacher")
        assert "gankd_ganomaly.experiment.model_file" in sys.modules
        print(header["upgraded_from"], header["family"], header["width"], header["metadata"]["dataset"],
              sum(p.numel() for p in gan.generator.parameters()))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ganomaly.sweep-teacher-v0", "ganomaly", "[4,", "8,", "16]", "digits",
                                  str(sum(p.numel() for p in gan.generator.parameters()))]
