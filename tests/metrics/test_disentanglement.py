"""Known-answer tests for the beta-VAE metric, the FactorVAE metric and MIG.

What "near 1" and "near 0" mean here:
- An "encoder" returning the true factor indices (plus tiny noise) scores 1 on the two
  accuracy metrics and on MIG for factors with at most MIG_BINS values; a factor with more
  values than bins cannot reach 1 (the bins merge its values): with 20 bins the
  orientation (40 values) and positions (32) score ~0.8, with 40 bins every factor ~1.
- The accuracy metrics are classification accuracies: their floor is chance, 1 / F for F
  used factors (0.2 on `shapes`), not 0. A code that carries no information about the data
  scores chance. A random projection of the pixels is not such a code: it is entangled
  but informative, and both accuracy metrics are known to reward that (the beta-VAE
  metric's linear classifier reads which factor was fixed from the pattern of |z1 - z2|;
  Kim & Mnih 2018 sec. 4): on `shapes` it scores ~0.6 (beta-VAE) and ~0.35 (FactorVAE).
  We assert it stays far below the true factors' score and MIG is near 0 (< 0.05).
"""

import numpy as np
import pytest
import torch

from genbench.data import load_dataset
from genbench.data.shapes import sample_factors
from genbench.metrics.disentanglement import (
    FactorSampler,
    beta_vae_score,
    discretise,
    entropy,
    factor_vae_score,
    mig_score,
    mutual_information,
)

SMALL = {"n_train": 2000, "n_eval": 2000}  # fewer points where the full settings are not the point


def rng(seed=0):
    return np.random.default_rng(seed)


@pytest.fixture(scope="module")
def factors():
    return sample_factors(16384, rng(0))  # (N, 5) like `shapes`: independent, uniform


@pytest.fixture(scope="module")
def oracle(factors):
    return factors + 0.01 * rng(1).standard_normal(factors.shape)  # (N, 5) the true factors


@pytest.fixture(scope="module")
def projection():
    data = load_dataset("shapes?n=4096")
    x = torch.cat([data.train.x, data.test.x]).flatten(1)  # (N, 1024)
    w = torch.randn(x.shape[1], 10, generator=torch.Generator().manual_seed(0))  # random Gaussian matrix
    return (x @ w).numpy(), torch.cat([data.train.factors, data.test.factors]).numpy()  # (N, 10), (N, 5)


def test_true_factors_score_one(factors, oracle):
    beta = beta_vae_score(oracle, factors, rng())  # full settings: 10000 / 5000 points, L = 64
    fvae = factor_vae_score(oracle, factors, rng())  # 10000 / 5000 votes, L = 100
    assert beta.score > 0.99 and fvae.score > 0.99
    assert (beta.n_train, beta.n_eval, beta.batch, fvae.batch, fvae.n_active_dims) == (10000, 5000, 64, 100, 5)
    mig = mig_score(oracle, factors)
    assert mig.per_factor[0] > 0.99 and mig.per_factor[1] > 0.99  # shape (3 values), scale (6)
    assert 0.75 < min(mig.per_factor[2:]) and mig.score > 0.85  # > 20 values: merged by the 20 bins
    assert mig_score(oracle, factors, bins=40).score > 0.98


def test_random_projection_of_pixels(projection, oracle, factors):
    reps, f = projection
    assert mig_score(reps, f).score < 0.05
    beta, fvae = beta_vae_score(reps, f, rng()), factor_vae_score(reps, f, rng())
    assert 0.2 < beta.score < 0.75 and 0.2 < fvae.score < 0.5  # above chance (0.2), far below 1


def test_uninformative_code_scores_chance(factors):
    noise = rng(2).standard_normal((len(factors), 10))  # independent of the data
    chance, tol = 0.2, 4 * np.sqrt(0.2 * 0.8 / 2000)  # 4 binomial standard errors
    assert abs(beta_vae_score(noise, factors, rng(), **SMALL).score - chance) < tol
    assert abs(factor_vae_score(noise, factors, rng(), **SMALL).score - chance) < tol
    assert mig_score(noise, factors).score < 0.01


def test_single_valued_factor_is_skipped(factors, oracle):
    f = np.concatenate([factors, np.zeros((len(factors), 1), np.int64)], 1)  # a 6th, constant factor
    for result in (beta_vae_score(oracle, f, rng(), **SMALL), factor_vae_score(oracle, f, rng(), **SMALL),
                   mig_score(oracle, f)):
        assert result.factors_used == (0, 1, 2, 3, 4) and result.factors_skipped == (5,)
        assert result.score > 0.85


def test_collapsed_dims_are_pruned(factors, oracle):
    reps = np.concatenate([oracle, np.full((len(oracle), 3), 2.0), 1e-3 * oracle[:, :1]], 1)  # + 4 collapsed
    result = factor_vae_score(reps, factors, rng(), **SMALL)
    assert result.n_active_dims == 5 and result.score > 0.99
    dead = factor_vae_score(np.zeros((len(factors), 4)), factors, rng(), **SMALL)
    assert dead.n_active_dims == 0 and dead.score == 0.0


def test_deterministic_given_the_generator(factors, oracle):
    reps = oracle[:, :3] + rng(3).standard_normal((len(oracle), 3))
    for fn in (beta_vae_score, factor_vae_score):
        assert fn(reps, factors, rng(5), **SMALL) == fn(reps, factors, rng(5), **SMALL)


def test_sampler_shares_the_fixed_value(factors):
    sampler = FactorSampler(factors)
    ks = sampler.choose(500, rng())
    anchors = rng(1).integers(0, len(factors), (500, 8))
    same = sampler.same_value(ks, anchors, rng(2))  # (500, 8)
    assert (factors[same, ks[:, None]] == factors[anchors, ks[:, None]]).all()
    assert (factors[same, (ks[:, None] + 1) % 5] != factors[anchors, (ks[:, None] + 1) % 5]).mean() > 0.5
    assert set(np.unique(ks)) == {0, 1, 2, 3, 4}


def test_discretise_matches_histogram_bins():
    x = rng().standard_normal((5000, 7)).astype(np.float32)
    edges = [np.histogram(x[:, j], 20)[1][:-1] for j in range(7)]  # disentanglement_lib's binning
    expected = np.stack([np.digitize(x[:, j], edges[j]) - 1 for j in range(7)], 1)
    np.testing.assert_array_equal(discretise(x, 20), expected)
    assert (discretise(np.ones((5, 2)), 20) == 0).all()


def test_mutual_information_known_answers():
    v = rng().integers(0, 4, 20000)
    codes = np.stack([v, rng(1).integers(0, 4, 20000)], 1)  # (N, 2): a copy of v, an independent draw
    mi = mutual_information(codes, v[:, None], bins=4)[:, 0]
    assert mi[0] == pytest.approx(entropy(v)) and entropy(v) == pytest.approx(np.log(4), abs=1e-3)
    assert 0 <= mi[1] < 1e-3


@pytest.mark.parametrize("reps, f, match", [
    (np.zeros((10, 3)), np.zeros((9, 2), np.int64), "same N"),
    (np.full((10, 3), np.nan), np.zeros((10, 2), np.int64), "NaN"),
    (np.zeros((10, 3)), -np.ones((10, 2), np.int64), "non-negative"),
    (np.zeros((10, 3)), np.zeros((10, 2), np.int64), "single value"),
])
def test_bad_inputs(reps, f, match):
    for fn in (lambda r, g: beta_vae_score(r, g, rng()), lambda r, g: factor_vae_score(r, g, rng()), mig_score):
        with pytest.raises(ValueError, match=match):
            fn(reps, f)
