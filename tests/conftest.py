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


def gankd_command(*args, cwd, env_extra=None, check=True, timeout=300) -> subprocess.CompletedProcess:
    """``python -m gankd ARGS`` run in ``cwd`` as a user runs it (``cwd`` and the checkout importable); with
    ``check`` the exit status must be 0."""
    env = {**os.environ, "PYTHONPATH": f"{cwd}{os.pathsep}{REPO}", **(env_extra or {})}
    result = subprocess.run([sys.executable, "-m", "gankd", *map(str, args)], cwd=cwd, env=env, timeout=timeout,
                            capture_output=True, text=True)
    if check:
        assert result.returncode == 0, result.stderr
    return result


KILL_SWITCH = textwrap.dedent('''

    import os
    import signal


    class KillingBatches:
        """The batches of `batches`; GANKD_TEST_KILL_AT=EPOCH:STEP kills the process (SIGKILL) at that step."""

        def __init__(self, batches):
            self.batches, self.epoch = batches, 0
            kill = os.environ.get("GANKD_TEST_KILL_AT")
            self.kill = tuple(map(int, kill.split(":"))) if kill else None

        def __iter__(self):
            self.epoch += 1
            for step, batch in enumerate(self.batches, 1):
                if self.kill == (self.epoch, step):
                    os.kill(os.getpid(), signal.SIGKILL)
                yield batch

        def state_dict(self):
            return {"epoch": self.epoch}

        def load_state_dict(self, state):
            self.epoch = int(state["epoch"])

    _shipped_batches = batches

    def batches(n_batches=8, batch_size=64, seed=0):
        return KillingBatches(_shipped_batches(n_batches, batch_size, seed))
''')
# a user's own family: the shipped example copied into their project (as docs/config.md says to start one),
# plus a kill switch for the resume tests (module points_family: PointHooks, batches)
KILLABLE_POINTS_FAMILY = (REPO / "gankd" / "examples" / "points.py").read_text() + KILL_SWITCH
