"""The importance-weighted likelihood estimate: bounds, monotonicity, and convergence to
the closed-form log p(x) of probabilistic PCA."""

from __future__ import annotations

import math

import pytest
import torch

from genbench.data import load_dataset
from genbench.metrics.likelihood import iwae_nll
from genbench.models.vae import VAE, VAEOptions, standard_normal_log_prob


class PPCA:
    """x = W z + b + sigma e, z ~ N(0, I): log p(x) = log N(x; b, W W^T + sigma^2 I).

    The proposal q(z|x) is the exact posterior with its mean shifted and its variance
    inflated, so the ELBO is strictly below log p(x) and IWAE must close the gap."""

    def __init__(self, d=5, latent=2, sigma=0.5, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.W = torch.randn(d, latent, generator=g, dtype=torch.float64)
        self.b = torch.randn(d, generator=g, dtype=torch.float64)
        self.sigma = sigma
        m = self.W.T @ self.W + sigma**2 * torch.eye(latent, dtype=torch.float64)
        self.post_cov = sigma**2 * torch.linalg.inv(m)
        self.post_map = torch.linalg.inv(m) @ self.W.T

    def log_px(self, x):
        cov = self.W @ self.W.T + self.sigma**2 * torch.eye(len(self.b), dtype=torch.float64)
        return torch.distributions.MultivariateNormal(self.b, cov).log_prob(x)

    def sample(self, n, generator):
        z = torch.randn(n, self.W.shape[1], generator=generator, dtype=torch.float64)
        return z @ self.W.T + self.b + self.sigma * torch.randn(n, len(self.b), generator=generator, dtype=torch.float64)

    def importance_log_weights(self, x, k, generator):
        mean = (x - self.b) @ self.post_map.T + 0.3  # (B, latent), shifted on purpose
        q = torch.distributions.MultivariateNormal(mean, 2.0 * self.post_cov)
        z = q.sample((k,)) if generator is None else q.mean + torch.randn(
            (k, *mean.shape), generator=generator, dtype=torch.float64) @ torch.linalg.cholesky(2.0 * self.post_cov).T
        log_prior = standard_normal_log_prob(z).sum(-1)
        recon = z @ self.W.T + self.b  # (k, B, d)
        log_lik = torch.distributions.Normal(recon, self.sigma).log_prob(x).sum(-1)
        return log_lik + log_prior - q.log_prob(z)


def test_iwae_converges_to_closed_form_log_likelihood_of_ppca():
    model = PPCA()
    g = torch.Generator().manual_seed(1)
    x = model.sample(200, g)
    exact = -model.log_px(x).mean().item()
    gaps = []
    for k in (1, 10, 100, 2000):
        nll = iwae_nll(model, x, k, torch.Generator().manual_seed(2)).mean().item()
        gaps.append(nll - exact)
    assert gaps[0] > 0.1  # the ELBO (K=1) is visibly loose with this proposal
    assert all(a > b for a, b in zip(gaps, gaps[1:])), gaps  # tighter with every K
    assert gaps[-1] < 0.01 and gaps[-1] > -0.01  # converged to log p(x)


@pytest.fixture(scope="module")
def trained_vae():
    data = load_dataset("digits")
    torch.manual_seed(0)
    model = VAE(VAEOptions(hidden=128), data.info, "torch")
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(150):
        x = model.likelihood.prepare(data.train.x[torch.randint(len(data.train), (64,), generator=g)], g)
        recon, kl, _ = model.elbo_terms(x, g)
        optimiser.zero_grad()
        (recon + kl).mean().backward()
        optimiser.step()
    x = model.likelihood.prepare(data.test.x, torch.Generator().manual_seed(0))
    return model.eval(), x


def test_iwae_k1_is_the_elbo_and_the_bound_tightens_with_k(trained_vae):
    model, x = trained_vae
    with torch.no_grad():
        recon, kl, _ = model.elbo_terms(x, torch.Generator().manual_seed(5))
        neg_elbo = (recon + kl).mean().item()  # analytic KL
        # K = 1 is the ELBO with a one-sample KL estimate: equal in expectation.
        k1 = [iwae_nll(model, x, 1, torch.Generator().manual_seed(s)).mean().item() for s in range(20)]
        nll = {k: iwae_nll(model, x, k, torch.Generator().manual_seed(5)).mean().item() for k in (8, 64, 256)}
    nll[1] = sum(k1) / len(k1)
    assert nll[1] == pytest.approx(neg_elbo, abs=0.3)
    assert nll[1] > nll[8] > nll[64] > nll[256]
    assert nll[1] - nll[256] > 0.5  # a real gain in nats on digits


def test_importance_weights_have_k_rows(trained_vae):
    model, x = trained_vae
    with torch.no_grad():
        w = model.importance_log_weights(x[:7], 3, torch.Generator().manual_seed(0))
    assert w.shape == (3, 7) and torch.isfinite(w).all()
    assert math.isfinite(iwae_nll(model, x[:7], 130, None).sum().item())  # k beyond one chunk
