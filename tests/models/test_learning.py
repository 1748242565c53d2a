"""Learning checks: trained briefly on digits, the models beat their initialisation
on held-out data by a wide margin."""

from __future__ import annotations

import pytest
import torch

from genbench.data import load_dataset
from genbench.harness.spec import resolve, run_config
from genbench.models import build_model
from tests.models.training import fit, held_out

pytestmark = pytest.mark.slow


def train(model_name, steps, objective=None, objective_options=None, **model_options):
    run = resolve(run_config({"model": model_name, "device": "cpu", "steps": steps, "objective": objective,
                              "objective_options": objective_options or {},
                              "model_options": model_options}, "test"))
    data = load_dataset("digits")
    torch.manual_seed(0)
    model = build_model(run.model_spec, run.model_options, data.info, "auto")
    before = held_out(model, data)
    fit(run, data, model)
    return before, held_out(model, data)


def test_vae_elbo_on_held_out_digits_improves_markedly():
    before, after = train("vae", 400)
    # At initialisation the Bernoulli decoder predicts ~0.5 everywhere: ~256 ln 2 = 177 nats.
    assert before["test/elbo"] < -150
    assert after["test/elbo"] > before["test/elbo"] + 50
    assert after["test/neg_elbo_bpd"] < 0.75 * before["test/neg_elbo_bpd"]
    assert after["test/kl"] > 1.0  # the posterior carries information: no total collapse


def test_gaussian_conv_vae_bits_per_dim_improves():
    before, after = train("vae", 300, arch="conv", likelihood="gaussian")
    assert after["test/neg_elbo_bpd"] < before["test/neg_elbo_bpd"] - 1.0


def test_autoencoder_reconstruction_improves():
    before, after = train("ae", 300)
    assert after["test/recon_mse"] < 0.3 * before["test/recon_mse"]


def test_denoising_autoencoder_reconstruction_improves():
    before, after = train("ae", 300, objective="denoise", objective_options={"corruption": "mask", "level": 0.3})
    assert after["test/recon_mse"] < 0.3 * before["test/recon_mse"]


def test_sparse_autoencoder_reconstruction_improves():
    before, after = train("sparse-ae", 300)
    assert after["test/recon_nll"] < before["test/recon_nll"] - 50


def test_iwae_bound_on_held_out_digits_improves_markedly():
    before, after = train("vae", 300, objective="iwae", objective_options={"k": 5})
    assert after["test/elbo"] > before["test/elbo"] + 50
