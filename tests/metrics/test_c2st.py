"""Known-answer tests for the classifier two-sample test."""

import pytest
import torch

from genbench.metrics.c2st import c2st


def test_same_distribution_is_chance(digits_images):
    train, test = digits_images
    for seed in (0, 1):
        r = c2st(train, test, seed=seed)
        assert abs(r.accuracy - 0.5) < 3 * r.null_std_error
        assert r.p_value > 0.001


def test_counts_and_settings(digits_images):
    train, test = digits_images
    r = c2st(train, test, seed=0)
    assert (r.n_per_class, r.n_real, r.n_generated, r.n_features) == (359, 1438, 359, 256)
    assert r.n_train + r.n_test == 2 * 359 and abs(r.n_train - r.n_test) <= 1
    assert r.accuracy == r.n_correct / r.n_test
    assert r.std_error == pytest.approx((r.accuracy * (1 - r.accuracy) / r.n_test) ** 0.5)
    assert (r.C, r.max_iter, r.seed) == (1.0, 1000, 0)
    assert c2st(train, test, seed=0) == r


def test_noisy_and_shuffled_are_separable(digits_images):
    _, test = digits_images
    g = torch.Generator().manual_seed(0)
    noisy = (test + 0.5 * torch.randn(test.shape, generator=g)).clamp(-1, 1)  # kept in [-1, 1]
    shuffled = test.reshape(len(test), -1)[:, torch.randperm(256, generator=g)].reshape(test.shape)
    for fake in (noisy, shuffled):
        r = c2st(test, fake, seed=0)
        assert r.accuracy > 0.9 and r.p_value < 1e-10


def test_features_input():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(400, 5, generator=g), torch.randn(400, 5, generator=g) + 2.0  # Bayes accuracy 0.99
    assert c2st(a, b, seed=0).accuracy > 0.9


def test_bad_inputs_raise(digits_images):
    train, test = digits_images
    with pytest.raises(ValueError, match="features per example"):
        c2st(train, test[:, :, :8])
    with pytest.raises(ValueError, match=">= 10"):
        c2st(train, test[:5])
    with pytest.raises(ValueError, match="NaN"):
        c2st(train, test * float("nan"))
    with pytest.raises(ValueError, match=r"\(N, F\)"):
        c2st(train[:, 0, 0, 0], test[:, 0, 0, 0])
