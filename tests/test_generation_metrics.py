"""gankd.generation_metrics on cases with known answers (FD, KID, precision/recall on given features)."""
import numpy as np
import pytest
import torch

from gankd.generation_metrics import frechet_distance, generation_metrics, kernel_distance, precision_recall

torch.set_num_threads(1)


def gaussian(n: int, d: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d))


def test_frechet_distance_identical_sets_is_zero():
    a = gaussian(500, 16, 0)
    assert abs(frechet_distance(a, a)) < 1e-8
    assert abs(frechet_distance(torch.from_numpy(a).float(), a.astype(np.float32))) < 1e-5  # tensors or arrays


def test_frechet_distance_of_a_shifted_copy_is_the_squared_shift():
    """B = A + s: the covariances agree exactly, so FD = |s|^2 exactly (not only in expectation)."""
    a = gaussian(400, 8, 1)
    shift = np.array([3.0, -1.0, 0.5, 0, 0, 0, 2.0, 0])
    assert frechet_distance(a, a + shift) == pytest.approx(float(shift @ shift), rel=1e-9, abs=1e-9)


def test_frechet_distance_of_a_scaled_copy_matches_the_closed_form():
    """B = c A: FD = |mu_A|^2 (1 - c)^2 + Tr(S_A) (1 - c)^2, from A's own sample mean and covariance."""
    a = gaussian(300, 6, 2) + 0.3
    c = 2.5
    mu, cov = a.mean(0), np.cov(a, rowvar=False)
    expected = (mu @ mu) * (1 - c) ** 2 + np.trace(cov) * (1 - c) ** 2
    assert frechet_distance(a, c * a) == pytest.approx(expected, rel=1e-8)


def test_frechet_distance_of_independent_shifted_gaussians_is_the_shift_plus_a_small_bias():
    """Independent draws of N(0, I) and N(s, I) in 4 dims: FD -> |s|^2 = 4 as N grows (bias ~ D^2/N)."""
    shift = np.array([2.0, 0, 0, 0])
    fd = frechet_distance(gaussian(20000, 4, 3), gaussian(20000, 4, 4) + shift)
    assert fd == pytest.approx(4.0, abs=0.05)


def unbiased_poly_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """An independent implementation of Binkowski et al.'s unbiased MMD^2, kernel (x.y/d + 1)^3."""
    d = x.shape[1]
    k = lambda p, q: (p @ q.T / d + 1) ** 3  # noqa: E731
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    m = len(x)
    return float((kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean())


def test_kid_equals_the_unbiased_polynomial_mmd_on_one_full_subset():
    x, y = gaussian(200, 5, 5), gaussian(200, 5, 6) + 0.7
    kid, std = kernel_distance(x, y, subsets=1, subset_size=200)
    assert kid == pytest.approx(unbiased_poly_mmd2(x, y), rel=1e-9) and std == 0.0


def test_kid_is_about_zero_for_one_distribution_and_grows_with_the_shift():
    x, y = gaussian(2000, 8, 7), gaussian(2000, 8, 8)
    same, same_std = kernel_distance(x, y, subsets=20, subset_size=1000)
    assert abs(same) < 3 * max(same_std, 1e-4)  # unbiased: zero within its spread
    assert abs(kernel_distance(x, x, subsets=20, subset_size=1000)[0]) < 0.01
    shifted = [kernel_distance(x, y + s, subsets=20, subset_size=1000)[0] for s in (0.25, 0.5, 1.0)]
    assert 0.01 < shifted[0] < shifted[1] < shifted[2]


def test_precision_recall_identical_disjoint_and_dropped_mode():
    real = np.concatenate([gaussian(300, 4, 9), gaussian(300, 4, 10) + 20.0])  # two far-apart modes
    assert precision_recall(real, real) == (1.0, 1.0)
    assert precision_recall(gaussian(300, 4, 11) + 100.0, real) == (0.0, 0.0)  # disjoint supports
    precision, recall = precision_recall(gaussian(300, 4, 12), real)  # one mode only, and inside it
    assert precision > 0.85 and 0.4 < recall < 0.55  # a fresh draw: a few samples fall outside the k-NN balls


def test_generation_metrics_gathers_every_estimator_and_errors_name_the_argument():
    a = gaussian(300, 4, 13)
    m = generation_metrics(a, a + 1.0, kid_subsets=5, kid_subset_size=300)
    assert set(m) == {"fd", "kid", "kid_std", "precision", "recall"}
    assert m["fd"] == pytest.approx(4.0, rel=1e-9) and m["kid"] > 0
    with pytest.raises(ValueError, match="features_a has 4 features per sample but features_b has 3"):
        frechet_distance(a, a[:, :3])
    with pytest.raises(ValueError, match=r"generated must be a 2-d array of features \(N, D\), got shape \(300,\)"):
        precision_recall(a[:, 0], a)
    with pytest.raises(ValueError, match="non-finite"):
        frechet_distance(np.full((4, 4), np.nan), a)
    with pytest.raises(ValueError, match="subsets must be an integer >= 1, got 0"):
        kernel_distance(a, a, subsets=0)
