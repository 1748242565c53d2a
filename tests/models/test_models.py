"""Networks and likelihoods: shapes, and the units conventions on known answers."""

from __future__ import annotations

import math

import pytest
import torch

from genbench.data.base import DatasetInfo
from genbench.errors import ConfigError
from genbench.models.autoencoder import Autoencoder, AutoencoderOptions
from genbench.models.vae import VAE, VAEOptions
from genbench.models.likelihood import BIN_WIDTH, Likelihood


def info(shape, kind="image"):
    return DatasetInfo(name="t", spec="t", kind=kind, shape=shape, classes=None, content_hash="0",
                       source="test", split="none")


@pytest.mark.parametrize("shape", [(1, 16, 16), (3, 32, 32), (1, 28, 28), (1, 64, 64), (3, 8, 8)])
@pytest.mark.parametrize("arch", ["mlp", "conv"])
@pytest.mark.parametrize("likelihood, sigma", [("bernoulli", None), ("gaussian", None), ("gaussian", 1.0)])
def test_models_map_images_to_their_shape(shape, arch, likelihood, sigma):
    x = torch.rand(2, *shape) * 2 - 1
    for cls, opts in ((Autoencoder, AutoencoderOptions), (VAE, VAEOptions)):
        model = cls(opts(arch=arch, likelihood=likelihood, decoder_sigma=sigma, hidden=32, channels=8), info(shape))
        out = model.reconstruct_output(x)
        assert out.shape == (2, model.likelihood.out_channels(shape[0]), *shape[1:])
        assert model.sample(3).shape == (3, *shape)
        assert model.likelihood.nll(out, model.likelihood.prepare(x, None)).shape == (2,)


def test_vae_elbo_terms_and_points():
    model = VAE(VAEOptions(likelihood="gaussian", hidden=16), info((2,), "points"))
    x = torch.randn(5, 2)
    recon, kl, kl_obj = model.elbo_terms(x, None)
    assert recon.shape == kl.shape == (5,) and torch.equal(kl, kl_obj) and (kl >= 0).all()
    _, kl2, kl_obj2 = model.elbo_terms(x, torch.Generator().manual_seed(0), beta=3.0)
    assert torch.allclose(kl_obj2, 3 * kl2)


def test_conv_rejects_odd_or_tiny_images():
    with pytest.raises(ConfigError, match="even image sides"):
        VAE(VAEOptions(arch="conv"), info((1, 7, 7)))
    with pytest.raises(ConfigError, match="arch='mlp'"):
        VAE(VAEOptions(arch="conv"), info((2,), "points"))


def test_bernoulli_half_is_one_bit_per_dim():
    lik = Likelihood("bernoulli", None, quantised=True)
    target = torch.bernoulli(torch.full((4, 1, 4, 4), 0.5))
    nll = lik.nll(torch.zeros(4, 1, 4, 4), target)
    assert torch.allclose(lik.bits_per_dim(nll, 16), torch.ones(4))


def test_uniform_density_over_the_dequantised_range_is_eight_bits_per_dim():
    """A density uniform over [-1 - w/2, 1 + w/2] (256 bins of width w = 2/255) assigns
    each 8-bit level probability 1/256: exactly 8 bits/dim under our convention."""
    lik = Likelihood("gaussian", None, quantised=True)
    dims = 10
    width = 256 * BIN_WIDTH
    nll = torch.tensor([dims * math.log(width)])
    assert torch.allclose(lik.bits_per_dim(nll, dims), torch.tensor([8.0]))


def test_dequantisation_stays_within_the_level_bin():
    lik = Likelihood("gaussian", None, quantised=True)
    x = torch.linspace(-1, 1, 256).repeat(100)
    y = lik.prepare(x, torch.Generator().manual_seed(0))
    assert (y - x).abs().max() <= BIN_WIDTH / 2 + 1e-7
    assert abs(float((y - x).mean())) < 1e-4
    assert torch.equal(Likelihood("gaussian", None, quantised=False).prepare(x, None), x)


def test_gaussian_nll_matches_torch_distributions():
    lik = Likelihood("gaussian", None, quantised=False)
    out = torch.randn(3, 4)
    target = torch.randn(3, 2)
    mean, log_sigma = lik.split(out)
    expected = -torch.distributions.Normal(mean, log_sigma.exp()).log_prob(target).sum(1)
    assert torch.allclose(lik.nll(out, target), expected, atol=1e-5)
    fixed = Likelihood("gaussian", 1.0, quantised=False)
    assert torch.allclose(fixed.nll(mean, target), 0.5 * ((target - mean) ** 2).sum(1) + math.log(2 * math.pi), atol=1e-5)


@pytest.mark.parametrize("kind, sigma", [("foo", None), ("Gaussian", None), ("bernoulli", 0.5), ("gaussian", 0.0)])
def test_an_unknown_likelihood_or_a_misplaced_sigma_is_refused(kind, sigma):
    """Likelihood's branches test for "bernoulli" and treat anything else as Gaussian: an
    unknown kind (or a sigma Bernoulli would ignore) must be refused, not scored as Gaussian."""
    with pytest.raises(ConfigError, match="likelihood|sigma"):
        Likelihood(kind, sigma, quantised=True)
