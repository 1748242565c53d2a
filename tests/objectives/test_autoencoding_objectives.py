"""Autoencoder and VAE objectives against hand-computed cases, and their schedules."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from genbench.data.base import DatasetInfo
from genbench.errors import ConfigError
from genbench.models.autoencoder import SparseAutoencoder, SparseAutoencoderOptions
from genbench.models.vae import VAE, VAEOptions
from genbench.objectives.autoencoding import (
    BetaVaeOptions, DenoiseOptions, ElboOptions, IwaeOptions, SparseOptions, bernoulli_kl, beta_vae_loss,
    capacity, corrupt, denoise_loss, elbo_loss, iwae_bound, iwae_loss, sparse_loss, warmup_weight,
)
from genbench.utils.options import build_options


def info(shape=(1, 4, 4)):
    return DatasetInfo(name="t", spec="t", kind="image", shape=shape, classes=None, content_hash="0",
                       source="test", split="none")


def test_bernoulli_kl_matches_hand_computation():
    rho, rho_hat = 0.05, torch.tensor([0.05, 0.5])
    expected = [0.0, 0.05 * math.log(0.05 / 0.5) + 0.95 * math.log(0.95 / 0.5)]
    assert torch.allclose(bernoulli_kl(rho, rho_hat), torch.tensor(expected), atol=1e-6)


def test_sparse_loss_is_reconstruction_plus_weighted_kl_of_mean_activations():
    model = SparseAutoencoder(SparseAutoencoderOptions(latent_dim=3, hidden=8, likelihood="bernoulli"), info())
    x = torch.ones(2, 1, 4, 4)  # binarises to all ones whatever the generator
    opts = SparseOptions(rho=0.1, weight=2.0)
    terms = sparse_loss(model, x, opts, torch.Generator().manual_seed(0))
    code = torch.sigmoid(model.encoder(x))  # (2, 3)
    recon = model.likelihood.nll(model.decoder(code), x).mean()
    rho_hat = code.mean(0)
    penalty = sum(0.1 * math.log(0.1 / r) + 0.9 * math.log(0.9 / (1 - r)) for r in rho_hat.tolist())
    assert torch.allclose(terms["loss"], recon + 2.0 * penalty, atol=1e-5)
    assert torch.allclose(terms["sparsity_kl"], torch.tensor(penalty), atol=1e-5)


@pytest.mark.parametrize("corruption, level", [("mask", 0.3), ("salt-pepper", 0.4)])
def test_corruption_hits_the_stated_fraction(corruption, level):
    x = torch.full((200, 1, 16, 16), 0.25)
    noisy = corrupt(x, DenoiseOptions(corruption, level), -1.0, 1.0, torch.Generator().manual_seed(0))
    changed = (noisy != x).float().mean()
    assert abs(float(changed) - level) < 0.01
    assert set(noisy[noisy != x].unique().tolist()) <= {-1.0, 1.0}
    if corruption == "mask":
        assert (noisy[noisy != x] == -1.0).all()


def test_gaussian_corruption_has_the_stated_std():
    x = torch.zeros(100000)
    noisy = corrupt(x, DenoiseOptions("gaussian", 0.3), -1.0, 1.0, torch.Generator().manual_seed(0))
    assert abs(float(noisy.std()) - 0.3) < 0.005


class Identity(nn.Module):
    """An 'autoencoder' that returns its input as Gaussian mean: the denoising loss is the
    NLL of the clean data given the corrupted copy."""
    likelihood = None

    def reconstruct_output(self, x):
        return x


def test_denoise_loss_scores_the_clean_target_from_the_corrupted_input():
    from genbench.models.likelihood import Likelihood

    model = Identity()
    model.likelihood = Likelihood("gaussian", 1.0, quantised=False)  # points: no dequantisation
    x = torch.full((4, 10), 0.5)
    opts = DenoiseOptions("mask", 0.5)
    terms = denoise_loss(model, x, opts, torch.Generator().manual_seed(0))
    noisy = corrupt(x, opts, 0.0, 1.0, torch.Generator().manual_seed(0))  # the same draws
    expected = (0.5 * math.log(2 * math.pi) * 10 + 0.5 * ((x - noisy) ** 2).sum(1)).mean()
    assert torch.allclose(terms["loss"], expected)
    assert float(terms["loss"]) > 0.5 * math.log(2 * math.pi) * 10  # the corruption costs something


def test_denoise_options_are_validated():
    with pytest.raises(ConfigError, match="fraction"):
        build_options(DenoiseOptions, {"corruption": "mask", "level": 1.5}, "objective 'denoise'")


def test_warmup_and_capacity_schedules():
    assert warmup_weight(None, 100) == 1.0 and warmup_weight(5, 0) == 1.0
    assert warmup_weight(25, 100) == 0.25 and warmup_weight(500, 100) == 1.0
    opts = BetaVaeOptions(capacity_max=20.0, capacity_steps=100)
    assert capacity(0, opts) == 0.0 and capacity(50, opts) == 10.0 and capacity(1000, opts) == 20.0


def small_vae(seed=0):
    torch.manual_seed(seed)
    return VAE(VAEOptions(latent_dim=3, hidden=16), info())


def test_elbo_warmup_scales_only_the_kl_term():
    model, x = small_vae(), torch.rand(8, 1, 4, 4) * 2 - 1
    full = elbo_loss(model, x, ElboOptions(), torch.Generator().manual_seed(1), step=10)
    warm = elbo_loss(model, x, ElboOptions(warmup_steps=40), torch.Generator().manual_seed(1), step=10)
    assert torch.allclose(warm["loss"], full["recon_nll"] + 0.25 * full["kl"], atol=1e-5)
    assert float(warm["kl_weight"]) == 0.25


def test_beta_vae_capacity_objective_matches_hand_computation():
    model, x = small_vae(), torch.rand(8, 1, 4, 4) * 2 - 1
    opts = BetaVaeOptions(capacity_max=10.0, capacity_steps=10, gamma=5.0)
    terms = beta_vae_loss(model, x, opts, torch.Generator().manual_seed(1), step=3)
    expected = terms["recon_nll"] + 5.0 * (terms["kl"] - 3.0).abs()
    assert torch.allclose(terms["loss"], expected, atol=1e-5)
    plain = beta_vae_loss(model, x, BetaVaeOptions(beta=4.0), torch.Generator().manual_seed(1), step=3)
    assert torch.allclose(plain["loss"], plain["recon_nll"] + 4.0 * plain["kl"], atol=1e-5)


def test_iwae_bound_is_logmeanexp_of_the_weights():
    log_w = torch.tensor([[0.0, -1.0], [math.log(3.0), -1.0]])  # (k=2, B=2)
    assert torch.allclose(iwae_bound(log_w), torch.tensor([math.log(2.0), -1.0]))


def test_iwae_with_k1_is_the_single_sample_elbo():
    """With the same eps, the K=1 log weight is -recon + log p(z) - log q(z|x), whose
    expectation is the ELBO with the analytic KL: averaged over many draws they agree."""
    model = small_vae()
    x = torch.bernoulli(torch.full((1, 1, 4, 4), 0.5), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        log_w = model.importance_log_weights(x.expand(20000, -1, -1, -1), 1, torch.Generator().manual_seed(0))
        recon, kl, _ = model.elbo_terms(x.expand(20000, -1, -1, -1), torch.Generator().manual_seed(0))
        mu, logvar = model.encode(x)
    # Same generator, same eps: log w + recon NLL is the one-sample KL estimate's negative,
    # log p(z) - log q(z|x) = sum(-z^2/2) - sum(-eps^2/2 - logvar/2) (the 2 pi terms cancel).
    eps = torch.randn((20000, 3), generator=torch.Generator().manual_seed(0))
    z = mu + torch.exp(0.5 * logvar) * eps
    expected = (-0.5 * z**2).sum(1) - (-0.5 * eps**2 - 0.5 * logvar).sum(1)
    assert torch.allclose(log_w[0] + recon, expected, atol=1e-4)
    elbo = -(recon + kl).mean()
    assert abs(float(log_w.mean() - elbo)) < 4 * float(log_w.std()) / math.sqrt(20000)
    loss = iwae_loss(model, x, IwaeOptions(k=1), torch.Generator().manual_seed(0))
    assert torch.isfinite(loss["loss"])


def test_iwae_bound_tightens_with_k_on_average():
    model, x = small_vae(), torch.rand(64, 1, 4, 4) * 2 - 1
    x = torch.bernoulli((x + 1) / 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        bounds = [float(iwae_bound(model.importance_log_weights(x, k, torch.Generator().manual_seed(1))).mean())
                  for k in (1, 10, 100)]
    assert bounds[0] < bounds[1] < bounds[2]


def test_iwae_options_reject_k0():
    with pytest.raises(ConfigError, match="k must be"):
        build_options(IwaeOptions, {"k": 0}, "objective 'iwae'")


@pytest.mark.slow
def test_larger_beta_gives_lower_kl_on_a_fixed_seed():
    from genbench.data import load_dataset
    from genbench.metrics import EvalContext
    from genbench.metrics.autoencoding import elbo
    from genbench.train.batches import epoch_batches

    data = load_dataset("digits")
    kls = {}
    for beta in (1.0, 8.0):
        torch.manual_seed(0)
        model = VAE(VAEOptions(hidden=64), data.info)
        optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
        generator = torch.Generator().manual_seed(0)
        batches = epoch_batches(data.train.x, 64, generator)
        for step in range(1, 201):
            loss = elbo_loss(model, next(batches), ElboOptions(beta=beta), generator, step)["loss"]
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        model.eval()
        values = {v.metric: v.value for v in elbo(EvalContext(model, data, torch.device("cpu"), 512))}
        kls[beta] = values["test/kl"]
    assert kls[8.0] < 0.5 * kls[1.0]
