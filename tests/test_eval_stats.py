"""Sample-quality statistics give their known values on constructed sets."""

from __future__ import annotations

import math

import pytest
import torch
from unigen_eval import stats
from unigen_std.metrics import mode_stats


def gaussian(n: int, d: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_stats_identical_sets_are_perfect():
    x = gaussian(400, 6, 0)
    assert stats.fid(x, x) == pytest.approx(0.0, abs=1e-6)
    assert stats.precision_recall(x, x) == (1.0, 1.0)
    density, coverage = stats.density_coverage(x, x)
    assert coverage == 1.0
    assert density >= 1.0  # every point lies in its own ball and in its k neighbours' balls at least


def test_stats_fid_of_a_shift_is_the_squared_distance_of_the_means():
    x = gaussian(500, 5, 1)
    shift = torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0], dtype=torch.float64)
    assert stats.fid(x, x + shift) == pytest.approx(float(shift.pow(2).sum()), abs=1e-6)


def test_stats_fid_matches_the_formula_with_scipy_sqrtm():
    from scipy.linalg import sqrtm

    a, b = gaussian(300, 4, 2), gaussian(300, 4, 3) @ torch.tensor([[2.0, 0.3, 0, 0], [0, 1, 0, 0], [0, 0, 0.5, 0], [0, 0, 0.1, 1]], dtype=torch.float64) + 0.7
    ca, cb = torch.cov(a.T).numpy(), torch.cov(b.T).numpy()
    expected = float(((a.mean(0) - b.mean(0)) ** 2).sum()) + float((ca + cb - 2 * sqrtm(ca @ cb).real).trace())
    assert stats.fid(a, b) == pytest.approx(expected, rel=1e-6)


def test_stats_kid_is_the_unbiased_mmd_with_a_cubic_kernel():
    a, b = gaussian(30, 3, 4), gaussian(25, 3, 5) + 0.5

    def k(x, y):
        return (sum(float(x[i]) * float(y[i]) for i in range(3)) / 3 + 1) ** 3

    aa = sum(k(a[i], a[j]) for i in range(30) for j in range(30) if i != j) / (30 * 29)
    bb = sum(k(b[i], b[j]) for i in range(25) for j in range(25) if i != j) / (25 * 24)
    ab = sum(k(a[i], b[j]) for i in range(30) for j in range(25)) / (30 * 25)
    assert stats.kid(a, b) == pytest.approx(aa + bb - 2 * ab, rel=1e-9)
    assert abs(stats.kid(gaussian(800, 3, 6), gaussian(800, 3, 7))) < 0.05 < stats.kid(a, b)


def test_stats_collapsed_generator_has_precision_but_no_recall():
    real = gaussian(300, 4, 8)
    fake = real[:1].repeat(300, 1) + 1e-6 * gaussian(300, 4, 9)  # every sample near one real point
    precision, recall = stats.precision_recall(real, fake)
    assert precision == 1.0
    assert recall <= 1 / 300
    density, coverage = stats.density_coverage(real, fake)
    assert coverage <= 6 / 300  # only the balls that hold that one point


def test_stats_density_and_coverage_on_a_line():
    real = torch.arange(6, dtype=torch.float64).reshape(-1, 1)  # 0..5: k=1 radius is 1 everywhere
    fake = torch.tensor([[0.0], [0.5], [10.0]], dtype=torch.float64)
    density, coverage = stats.density_coverage(real, fake, k=1)
    # 0 lies in the balls of 0 and 1; 0.5 in those of 0 and 1; 10 in none: (2 + 2 + 0) / (1 * 3)
    assert density == pytest.approx(4 / 3)
    assert coverage == pytest.approx(2 / 6)
    precision, recall = stats.precision_recall(real, fake, k=1)
    assert precision == pytest.approx(2 / 3)
    # fake radii (k=1): 0.5, 0.5, 9.5; the ball around 10 reaches 0.5..19.5, so reals 1..5 are in it, and 0 lies in the first
    assert recall == 1.0


def test_stats_classifier_score_and_class_entropy():
    confident = torch.eye(10)[torch.arange(200) % 10] * 0.999 + 0.0001
    assert stats.classifier_score(confident) == pytest.approx(10, rel=0.02)
    assert stats.classifier_score(torch.eye(10)[torch.zeros(200, dtype=torch.long)]) == pytest.approx(1.0)
    assert stats.class_entropy(torch.arange(80) % 8, 8) == pytest.approx(math.log(8))
    assert stats.class_entropy(torch.zeros(80, dtype=torch.long), 8) == 0.0


def test_stats_matched_accuracy_finds_the_best_assignment():
    labels = torch.arange(100) % 5
    codes = (labels * 3 + 1) % 5  # a permutation of the labels
    assert stats.matched_accuracy(codes, labels) == 1.0
    codes[:10] = 0
    gen = torch.Generator().manual_seed(0)
    noisy_codes, noisy_labels = torch.randint(6, (300,), generator=gen), torch.randint(6, (300,), generator=gen)
    counts = torch.zeros(6, 6, dtype=torch.long)
    counts.index_put_((noisy_codes, noisy_labels), torch.ones(300, dtype=torch.long), accumulate=True)
    assert stats.matched_accuracy(noisy_codes, noisy_labels) == pytest.approx(stats._brute_force(counts) / 300)
    assert stats.matched_accuracy(torch.zeros(50, dtype=torch.long), torch.arange(50) % 2) == 0.5
    ten = torch.diag(torch.arange(1, 11)) + 0  # 10 values: the greedy fallback finds the diagonal
    assert stats._brute_force(ten[torch.randperm(10, generator=gen)]) == 55


def ring() -> torch.Tensor:
    angles = torch.arange(8, dtype=torch.float64) * 2 * math.pi / 8
    return torch.stack([angles.cos(), angles.sin()], 1)


def test_stats_modes_of_a_collapsed_generator_on_the_ring():
    modes = ring()
    out = mode_stats(modes[3].repeat(500, 1) + 0.001, modes, 0.01)
    assert out["modes_captured"] == 1 and out["hq_fraction"] == 1.0
    assert out["mode_kl"] == pytest.approx(math.log(8))  # reverse KL(generated || uniform) of a point mass


def test_stats_modes_of_a_known_mixture():
    modes = ring()
    gen = torch.Generator().manual_seed(0)
    # 3/4 of the samples on mode 0, 1/4 on mode 5, all within sigma; and 100 far-away points near mode 2
    x = torch.cat([modes[0].repeat(300, 1), modes[5].repeat(100, 1)]) + 0.01 * torch.randn(400, 2, generator=gen, dtype=torch.float64)
    far = modes[2] * 1.2  # 0.2 from mode 2: nearest mode 2, but 20 sigma away
    out = mode_stats(torch.cat([x, far.repeat(100, 1)]), modes, 0.01)
    assert out["modes_captured"] == 2
    assert out["hq_fraction"] == pytest.approx(400 / 500, abs=0.01)  # a 2-D Gaussian leaves 3 sigma with p ~ 0.011
    p = torch.tensor([0.6, 0.2, 0.2], dtype=torch.float64)
    assert out["mode_kl"] == pytest.approx(float((p * (p * 8).log()).sum()), rel=1e-6)  # mode_stats counts in float32


def test_stats_spread_is_one_on_the_data_and_zero_on_points():
    modes = ring()
    gen = torch.Generator().manual_seed(1)
    data = modes[torch.arange(40000) % 8] + 0.01 * torch.randn(40000, 2, generator=gen, dtype=torch.float64)
    assert mode_stats(data, modes, 0.01)["hq_spread"] == pytest.approx(1.0, abs=0.01)
    half = modes[torch.arange(40000) % 8] + 0.005 * torch.randn(40000, 2, generator=gen, dtype=torch.float64)
    assert mode_stats(half, modes, 0.01)["hq_spread"] == pytest.approx(0.5 / math.sqrt(0.94945), abs=0.02)  # nearly all within 3 sigma
    assert mode_stats(modes[3].repeat(500, 1), modes, 0.01)["hq_spread"] == 0.0
    assert math.isnan(mode_stats(modes * 2, modes, 0.01)["hq_spread"])  # no high-quality sample
