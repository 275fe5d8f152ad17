"""What `pip install gankd` does to a user's environment, and what the package metadata promises.

The install test builds a fresh virtualenv that already holds the torch this suite runs with (and torch's own
requirements, linked from the running environment: instant, and the same build the user has), then asks pip what
``pip install <checkout>[onnx]`` would do (``--dry-run --report``; the base dependencies plus the ONNX extra).
It fails if pip would add or replace any torch, torchvision, triton, CUDA or nvidia package: the dependency list
must never make pip swap the user's torch.
"""
from __future__ import annotations

import importlib.metadata as metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {k: v for k, v in os.environ.items() if k not in ("GANKD_DEBUG", "PYTHONPATH")}

# what a torch build brings with it: replacing or adding any of these means pip touched the user's torch
_TORCH_BUILD = re.compile(r"^(torch|torchvision|triton|nvidia-.*|cuda-.*|pytorch-triton.*)$")
# pip's words when it cannot reach an index (no network, no local wheels): the test is skipped, not failed
_OFFLINE = ("Could not find a version that satisfies", "No matching distribution found", "NewConnectionError",
            "Temporary failure in name resolution", "Network is unreachable", "Failed to establish a new connection",
            "ProxyError", "Max retries exceeded")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def torch_builds(report: dict) -> list[str]:
    """``name==version`` of every torch-build package a ``pip install --report`` would install."""
    return sorted(f"{item['metadata']['name']}=={item['metadata']['version']}" for item in report["install"]
                  if _TORCH_BUILD.match(_canonical(item["metadata"]["name"])))


def _link_installed(names: list[str], site: Path) -> list[str]:
    """Link each installed distribution of ``names`` and everything it requires into ``site``: the new
    environment then holds exactly these distributions (pip reads their ``.dist-info``). Returns their names."""
    from packaging.requirements import Requirement

    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if _canonical(name) in seen:
            continue
        seen.add(_canonical(name))
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional requirement that is not installed: pip resolves it like any other
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
        base = Path(dist.locate_file(""))
        for top in sorted({Path(f).parts[0] for f in dist.files or [] if not str(f).startswith("..")}):
            if (base / top).exists() and not (site / top).exists():
                (site / top).symlink_to(base / top)
    return sorted(seen)


def _checkout_copy(dest: Path) -> Path:
    """What pip reads to build the package's metadata (so the build writes nothing into the checkout)."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    for package in ("gankd", "gankd_ganomaly"):
        shutil.copytree(ROOT / package, dest / package, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


@pytest.mark.skipif(importlib.util.find_spec("pip") is None, reason="needs pip in the test environment")
def test_pip_install_keeps_the_installed_torch(tmp_path: Path) -> None:
    try:
        installed_torch = metadata.version("torch")
    except metadata.PackageNotFoundError:
        pytest.skip("torch is not installed as a distribution here")
    env_dir = tmp_path / "env"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               capture_output=True, text=True, check=True).stdout.strip())
    linked = _link_installed(["torch"], site)
    assert "torch" in linked
    report_path = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--dry-run", "--quiet",
                           "--disable-pip-version-check", "--report", str(report_path),
                           f"{_checkout_copy(tmp_path / 'src')}[onnx]"],
                          capture_output=True, text=True, env=ENV, timeout=300)
    if proc.returncode != 0 and any(word in proc.stderr for word in _OFFLINE):
        pytest.skip("pip cannot reach a package index here: " + proc.stderr.strip().splitlines()[-1])
    assert proc.returncode == 0, proc.stderr
    report = json.loads(report_path.read_text())
    names = {_canonical(item["metadata"]["name"]) for item in report["install"]}
    # the report is the install of this checkout and its ONNX extra
    assert {"gankd", "fvcore", "onnxruntime", "onnxscript"} <= names, names
    assert torch_builds(report) == [], (
        f"pip would add or replace torch-build packages next to the installed torch {installed_torch}: "
        f"{torch_builds(report)}; a dependency in pyproject.toml pulls them")


def test_torch_builds_finds_what_a_torchvision_dependency_pulled() -> None:
    # the install list pip reported for `pip install .` when torchvision was a hard dependency (torch 2.13.0+cpu
    # installed): the check above must name these
    pulled = [("gankd", "0.1.0"), ("fvcore", "0.1.5.post20221221"), ("torchvision", "0.29.1"), ("torch", "2.14.1"),
              ("cuda-toolkit", "13.0.3.0"), ("nvidia-cudnn-cu13", "9.24.0.43"), ("triton", "3.8.0"),
              ("tqdm", "4.70.1")]
    report = {"install": [{"metadata": {"name": n, "version": v}} for n, v in pulled]}
    assert torch_builds(report) == ["cuda-toolkit==13.0.3.0", "nvidia-cudnn-cu13==9.24.0.43", "torch==2.14.1",
                                    "torchvision==0.29.1", "triton==3.8.0"]


def _pyproject() -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli", reason="reading pyproject.toml on Python 3.10 needs tomli")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_python_versions_agree_in_metadata_and_readme() -> None:
    project = _pyproject()["project"]
    classified = sorted((int(m.group(1)), int(m.group(2))) for c in project["classifiers"]
                        if (m := re.fullmatch(r"Programming Language :: Python :: (\d+)\.(\d+)", c)))
    lowest, highest = classified[0], classified[-1]
    assert project["requires-python"] == f">={lowest[0]}.{lowest[1]}"
    assert classified == [(3, minor) for minor in range(lowest[1], highest[1] + 1)]
    readme = (ROOT / "README.md").read_text()
    assert f"Python {lowest[0]}.{lowest[1]}-{highest[0]}.{highest[1]}" in readme
    assert lowest <= sys.version_info[:2] <= highest, "the suite runs on a Python the package does not claim"


def test_lock_pins_every_dependency_and_no_torchvision() -> None:
    """`make test` installs requirements.lock, then the package with --no-deps: the lock must hold every base
    dependency, pinned, and not torchvision (which would bring or need another torch build)."""
    from packaging.requirements import Requirement

    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"requirements.lock: {line!r} is not pinned with =="
            pins[_canonical(name)] = version
    dependencies = [Requirement(text) for text in _pyproject()["project"]["dependencies"]]
    missing = [str(r) for r in dependencies if _canonical(r.name) not in pins]
    assert missing == [], f"base dependencies without a pin in requirements.lock: {missing}"
    unsatisfied = [f"{r} (lock: {pins[_canonical(r.name)]})" for r in dependencies
                   if not r.specifier.contains(pins[_canonical(r.name)], prereleases=True)]
    assert unsatisfied == []
    assert "torchvision" not in pins


def test_download_with_a_torchvision_built_for_another_torch(tmp_path: Path) -> None:
    # the failure torchvision 0.28.0 from PyPI gives beside torch 2.13.0+cpu, reproduced by a stand-in package
    fake = tmp_path / "site" / "torchvision"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('raise RuntimeError("operator torchvision::nms does not exist")\n')
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "gankd_ganomaly", "teacher", "--dataset", "mnist", "--download",
                           "--data-root", str(tmp_path / "data"), "--out", str(out), "--quiet", "--threads", "1"],
                          capture_output=True, text=True, timeout=120,
                          env={**ENV, "PYTHONPATH": f"{fake.parent}{os.pathsep}{ROOT}", "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "RuntimeError: operator torchvision::nms does not exist" in lines[0]
    assert "`pip install torchvision==0." in lines[0] and str(tmp_path / "data") in lines[0]
    assert not out.exists()


@pytest.mark.parametrize("torch_version, command", [
    ("2.13.0+cpu", "pip install torchvision==0.28.0 --index-url https://download.pytorch.org/whl/cpu"),
    ("2.14.1", "pip install torchvision==0.29.1"),
    ("2.1.2+cu121", "pip install torchvision==0.16.2 --index-url https://download.pytorch.org/whl/cu121"),
    ("3.0.0", "pip install a torchvision built for torch 3.0.0"),
])
def test_torchvision_install_hint(torch_version: str, command: str) -> None:
    from gankd_ganomaly.data.builtin import _torchvision_install_hint

    assert _torchvision_install_hint(torch_version) == command
