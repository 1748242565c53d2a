"""Known-answer tests for mode coverage on the 2-D toy mixtures."""

import math

import pytest
import torch

from genbench.data import load_dataset
from genbench.metrics.coverage import mode_coverage


@pytest.fixture(scope="module", params=["toy2d-ring8", "toy2d-grid25"])
def mixture(request):
    d = load_dataset(request.param)
    return d.test.x, d.test.y, torch.tensor(d.info.extras["modes"]), d.info.extras["mode_sigma"]


def test_true_mixture_captures_everything(mixture):
    x, _, modes, sigma = mixture
    r = mode_coverage(x, modes, sigma)
    assert r.modes_captured == r.n_modes == len(modes)
    # a 2-D Gaussian lies within 3 sigma with probability 1 - exp(-4.5) = 98.9%
    assert 97.5 < r.high_quality_pct < 100.0
    assert r.reverse_kl < 0.02
    assert (r.n_samples, r.threshold) == (2500, pytest.approx(3 * sigma))
    assert sum(r.counts) == r.n_high_quality == round(r.high_quality_pct * 25)


@pytest.mark.parametrize("m", [1, 3])
def test_dropping_modes(mixture, m):
    x, y, modes, sigma = mixture
    k = len(modes)
    keep = y >= m  # drop the samples of modes 0..m-1
    r = mode_coverage(x[keep], modes, sigma)
    assert r.modes_captured == k - m
    assert r.counts[:m] == (0,) * m
    assert r.reverse_kl == pytest.approx(math.log(k / (k - m)), abs=0.02)


def test_far_samples_are_not_high_quality(mixture):
    _, _, modes, sigma = mixture
    far = torch.full((100, 2), 50.0)
    r = mode_coverage(far, modes, sigma)
    # No histogram: the rule scores the KL's maximum, log K, as a collapse onto one mode
    # would score (the closed form of the next test), so every seed enters the average.
    assert (r.modes_captured, r.n_high_quality, r.high_quality_pct) == (0, 0, 0.0)
    assert r.reverse_kl == pytest.approx(math.log(len(modes)))


def test_one_mode_gives_log_k(mixture):
    _, _, modes, sigma = mixture
    g = torch.Generator().manual_seed(0)
    x = modes[2] + 0.5 * sigma * torch.randn(500, 2, generator=g)
    r = mode_coverage(x, modes, sigma)
    assert (r.modes_captured, r.high_quality_pct) == (1, 100.0)
    assert r.counts[2] == 500
    assert r.reverse_kl == pytest.approx(math.log(len(modes)), rel=1e-12)


def test_three_sigma_boundary_and_nan():
    modes = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    x = torch.tensor([[0.299, 0.0], [0.301, 0.0], [float("nan"), 0.0], [10.0, float("inf")]])
    r = mode_coverage(x, modes, sigma=0.1)
    assert r.n_high_quality == 1 and r.counts == (1, 0) and r.high_quality_pct == 25.0
    assert r.reverse_kl == pytest.approx(math.log(2))


def test_bad_inputs_raise():
    modes = torch.zeros(3, 2)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        mode_coverage(torch.zeros(5, 3), modes, 0.1)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        mode_coverage(torch.zeros(0, 2), modes, 0.1)
    with pytest.raises(ValueError, match="sigma"):
        mode_coverage(torch.zeros(5, 2), modes, 0.0)
