"""Training on real data reaches real figures (scikit-learn digits, the embedded dataset)."""
import torch

from gankd import DistillationEngine, OptimizerConfig, get_schedule
from gankd.batches import ShuffledBatches
from gankd_ganomaly.evaluation import evaluate_auroc
from gankd_ganomaly.hooks import GanomalyHooks


def test_short_teacher_run_detects_novel_digits(digits0):
    """Measured: widths 16-32-64, lr 2e-4, batch 16, 10 epochs reach AUROC 1.000 for seeds 0, 1, 2
    (an untrained model scores ~0.4-0.8); 0.95 leaves margin for platform differences."""
    torch.manual_seed(0)
    hooks = GanomalyHooks(in_channels=1)
    gan = hooks.build_gan((16, 32, 64))
    DistillationEngine(hooks, gan, None).fit(get_schedule("teacher", 10, OptimizerConfig(lr=2e-4)),
                                             ShuffledBatches(digits0.train, 16, seed=0))
    assert evaluate_auroc(hooks, gan, digits0.test, digits0.test_labels) >= 0.95


def test_kdgan1_pulls_the_student_towards_the_teacher(hooks, tiny_pair, digits0):
    teacher, student = tiny_pair
    engine = DistillationEngine(hooks, teacher, student)
    history = engine.fit(get_schedule("KDGAN-1", 4, OptimizerConfig(lr=2e-3)), ShuffledBatches(digits0.train, 16))
    k = [h["losses"]["K"] for h in history]
    assert k[-1] < 0.5 * k[0], k
    assert set(history[0]["losses"]) == {"K", "K/K_z1", "K/K_x_hat", "K/K_z2"}
