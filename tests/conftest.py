import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from gankd import Callback

from gankd_ganomaly.data import load_one_class
from gankd_ganomaly.hooks import GanomalyHooks

torch.set_num_threads(1)  # robust on a shared 2-core machine (see docs/performance notes)

REPO = Path(__file__).resolve().parents[1]
TINY_TEACHER = (4, 8, 16)
TINY_STUDENT = (1, 2, 4)


@pytest.fixture(scope="session")
def digits0():
    """Real data: scikit-learn digits, normal class 0, as (N, 1, 32, 32) in [-1, 1]."""
    return load_one_class("digits", 0)


@pytest.fixture()
def hooks():
    return GanomalyHooks(in_channels=1)


@pytest.fixture()
def tiny_pair(hooks):
    torch.manual_seed(0)
    return hooks.build_gan(TINY_TEACHER), hooks.build_gan(TINY_STUDENT)


class OnEpochEnd(Callback):
    """A callback calling ``fn(engine, state, record)`` at each epoch end, while the stage's optimizers and
    K still exist (tests read them there)."""

    def __init__(self, fn):
        self.fn = fn

    def on_epoch_end(self, engine, state, record):
        self.fn(engine, state, record)


def gankd_command(*args, cwd, env_extra=None, check=True, timeout=300, paths=()) -> subprocess.CompletedProcess:
    """``python -m gankd ARGS`` run in ``cwd`` as a user runs it (``cwd``, ``paths`` and the checkout importable);
    with ``check`` the exit status must be 0."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, [cwd, *paths, REPO])), **(env_extra or {})}
    result = subprocess.run([sys.executable, "-m", "gankd", *map(str, args)], cwd=cwd, env=env, timeout=timeout,
                            capture_output=True, text=True)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def kill_switch_module(source: str, factory: str) -> str:
    """Python source of a module for resume tests: ``source`` (which defines or imports the data factory
    ``factory``), then ``batches(seed=0, **args)``: that factory's batches, wrapped so that the environment variable
    GANKD_TEST_KILL_AT=EPOCH:STEP SIGKILLs the process at that step; the wrapper's state (epoch, and the inner
    batches' own state when they have one) is checkpointed with the run."""
    return source + textwrap.dedent(f'''

        import os as _os
        import signal as _signal

        _inner_factory = {factory}


        class KillingBatches:
            def __init__(self, inner):
                self.inner, self.epoch = inner, 0
                at = _os.environ.get("GANKD_TEST_KILL_AT")
                self.at = tuple(map(int, at.split(":"))) if at else None

            def __iter__(self):
                self.epoch += 1
                for step, batch in enumerate(self.inner, 1):
                    if (self.epoch, step) == self.at:
                        _os.kill(_os.getpid(), _signal.SIGKILL)
                    yield batch

            def state_dict(self):
                inner = self.inner.state_dict() if hasattr(self.inner, "state_dict") else None
                return {{"epoch": self.epoch, "inner": inner}}

            def load_state_dict(self, state):
                self.epoch = int(state["epoch"])
                if state.get("inner") is not None:
                    self.inner.load_state_dict(state["inner"])


        def batches(seed=0, **args):
            return KillingBatches(_inner_factory(seed=seed, **args))
    ''')


# a user's own family: the shipped example copied into their project (as docs/config.md says to start one),
# plus a kill switch for the resume tests (module points_family: PointHooks, batches)
KILLABLE_POINTS_FAMILY = kill_switch_module((REPO / "gankd" / "examples" / "points.py").read_text(), "batches")
