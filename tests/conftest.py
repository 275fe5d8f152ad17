import pytest
import torch

from gankd import Callback

from gankd_ganomaly.data import load_one_class
from gankd_ganomaly.hooks import GanomalyHooks

torch.set_num_threads(1)  # robust on a shared 2-core machine (see docs/performance notes)

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
