"""Hierarchical (ladder) VAE: the standardisation that lets the N(0, I) reparam/KL op
score a KL against a Gaussian prior, the precision-weighted posterior, the bounds
(ELBO, IWAE) against each other, backend agreement, training through the "elbo" and
"iwae" objectives, and a learning check on held-out digits."""

from __future__ import annotations

import math

import pytest
import torch
from genbench.kernels import reparameterize_kl

from genbench.data import load_dataset
from genbench.harness.spec import resolve, run_config
from genbench.models.hvae import HVAE, HVAEOptions, precision_weighted, standardise
from genbench.objectives.autoencoding import iwae_bound
from tests.models.training import fit, held_out


def gaussians(n=6, d=5, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    mu_q, mu_p = torch.randn(2, n, d, generator=g, dtype=dtype) * 2
    logvar_q, logvar_p = torch.randn(2, n, d, generator=g, dtype=dtype) * 1.5
    return mu_q, logvar_q, mu_p, logvar_p, torch.randn(n, d, generator=g, dtype=dtype)


@pytest.mark.parametrize("backend, dtype", [("torch", torch.float64), ("triton", torch.float32)])
def test_standardised_op_gives_the_kl_between_two_gaussians_and_a_draw_from_q(backend, dtype):
    """KL(N(mu', var') || N(0, I)) with mu' = (mu_q - mu_p)/sigma_p, logvar' = logvar_q -
    logvar_p equals KL(N(mu_q, var_q) || N(mu_p, var_p)); mu_p + sigma_p·z' = mu_q + sigma_q·eps."""
    mu_q, logvar_q, mu_p, logvar_p, eps = gaussians(dtype=dtype)
    z_std, kl = reparameterize_kl(*standardise(mu_q, logvar_q, mu_p, logvar_p), eps, backend=backend)
    closed_form = 0.5 * (logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p) ** 2) / logvar_p.exp() - 1).sum(-1)
    q = torch.distributions.Normal(mu_q, (0.5 * logvar_q).exp())
    p = torch.distributions.Normal(mu_p, (0.5 * logvar_p).exp())
    torch.testing.assert_close(kl.to(dtype), closed_form)
    torch.testing.assert_close(kl.to(dtype), torch.distributions.kl_divergence(q, p).sum(-1))
    torch.testing.assert_close(mu_p + (0.5 * logvar_p).exp() * z_std, mu_q + (0.5 * logvar_q).exp() * eps)


def test_precision_weighted_combination():
    mu_hat, logvar_hat, mu_p, logvar_p, _ = gaussians(dtype=torch.float64)
    mu_q, logvar_q = precision_weighted(mu_hat, logvar_hat, mu_p, logvar_p)
    var_q = 1 / (1 / logvar_hat.exp() + 1 / logvar_p.exp())
    torch.testing.assert_close(logvar_q.exp(), var_q)
    torch.testing.assert_close(mu_q, (mu_hat / logvar_hat.exp() + mu_p / logvar_p.exp()) * var_q)


def digits_model(backend="auto", **options) -> tuple[HVAE, torch.Tensor]:
    data = load_dataset("digits")
    torch.manual_seed(0)
    model = HVAE(HVAEOptions(**({"hidden_dims": (64, 32)} | options)), data.info, backend)
    return model, model.likelihood.prepare(data.train.x[:16], torch.Generator().manual_seed(0))


def seeded(seed=1):
    return torch.Generator().manual_seed(seed)


def test_layer_kls_sum_to_the_kl_and_beta_scales_only_the_objective():
    model, x = digits_model()
    layers = model.layer_kls(x, seeded())
    recon, kl, kl_objective = model.elbo_terms(x, seeded())
    assert layers.shape == (2, 16) and (layers >= 0).all()
    torch.testing.assert_close(layers.sum(0), kl)
    assert torch.equal(kl, kl_objective)
    recon3, kl3, kl_objective3 = model.elbo_terms(x, seeded(), beta=3.0)
    torch.testing.assert_close(kl3, kl)
    torch.testing.assert_close(recon3, recon)
    torch.testing.assert_close(kl_objective3, 3 * kl)
    _, _, floored = model.elbo_terms(x, seeded(), free_bits=1.0)
    assert (floored >= sum(model.latent_dims) * 1.0 - 1e-4).all() and (floored >= kl - 1e-5).all()


@torch.no_grad()
def test_importance_weights_with_one_sample_average_to_the_elbo():
    """E_q[log w] = E_q[log p(x|z_1)] - E_q[sum_i KL_i(z_{i+1})]: the single-sample ELBO
    that elbo_terms estimates. Both sides averaged over 4000 draws per example."""
    model, x = digits_model()
    x = x[:4]
    log_w = model.importance_log_weights(x, 4000, seeded(0))  # (k, B)
    recon, kl, _ = model.elbo_terms(x.repeat(4000, 1, 1, 1), seeded(1))
    elbo = -(recon + kl).view(4000, 4)
    torch.testing.assert_close(log_w.mean(0), elbo.mean(0), atol=0.3, rtol=0)


@torch.no_grad()
def test_more_importance_samples_tighten_the_bound():
    model, x = digits_model()
    log_w = model.importance_log_weights(x, 1000, seeded(0)).view(100, 10, 16)  # 100 groups of K = 10
    k1 = log_w.mean((0, 1))  # (B,) K = 1, averaged over draws
    k10 = iwae_bound(log_w.transpose(0, 1)).mean(0)  # (B,) K = 10, averaged over 100 groups
    k1000 = iwae_bound(log_w.flatten(0, 1))  # (B,)
    assert (k1.mean() < k10.mean() - 0.5) and (k10.mean() < k1000.mean() - 0.5)


@pytest.mark.parametrize("beta, free_bits", [(1.0, 0.0), (2.0, 0.5)])
def test_backends_give_the_same_terms_and_gradients(beta, free_bits):
    results = {}
    for backend in ("triton", "torch"):
        model, x = digits_model(backend)
        x = x[:4]
        assert model.kernel_backends() == {"reparam_kl": backend}
        terms = model.elbo_terms(x, seeded(), beta=beta, free_bits=free_bits)
        sum(t.mean() for t in terms[::2]).backward()  # recon + kl_objective
        log_w = model.importance_log_weights(x, 3, seeded(2)).detach()
        results[backend] = terms, log_w, {n: p.grad for n, p in model.named_parameters()}
    (t_terms, t_log_w, t_grads), (r_terms, r_log_w, r_grads) = results["triton"], results["torch"]
    for t, r in zip(t_terms, r_terms):
        torch.testing.assert_close(t, r, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(t_log_w, r_log_w, rtol=1e-5, atol=1e-4)
    for name in r_grads:
        torch.testing.assert_close(t_grads[name], r_grads[name], rtol=1e-4, atol=1e-6, msg=name)


@torch.no_grad()
def test_capabilities_have_their_shapes():
    model, x = digits_model(latent_dims=(8, 6, 4), hidden_dims=(32, 32, 16))
    assert model.representation(x).shape == (16, 18) and model.capabilities.representation == "gaussian-mean"
    # The representation is the deterministic mean pass, its top block q(z_L|x)'s mean.
    torch.testing.assert_close(model.representation(x)[:, -4:], model.encode_latent(x))
    decoded = model.decode_latent(model.encode_latent(x))
    assert decoded.shape == (16, 1, 16, 16) and decoded.abs().max() <= 1
    assert model.reconstruct_output(x).shape == (16, 1, 16, 16)
    g = seeded()
    assert model.sample(5, g).shape == model.sample(5, g, draw="sample").shape == (5, 1, 16, 16)
    assert model.layer_kls(x, g).shape == (3, 16)
    assert model.importance_log_weights(x, 3, g).shape == (3, 16)


def test_options_are_validated():
    for bad in ({"latent_dims": (8,), "hidden_dims": (8,)}, {"hidden_dims": (8, 8, 8)},
                {"latent_dims": (8, 0)}, {"likelihood": "gaussian", "decoder_sigma": 0.0}):
        with pytest.raises(ValueError):
            HVAEOptions(**bad)


def build(dataset, steps, objective=None, model_options=None):
    """(run, data, model): hvae at initialisation."""
    config = {"model": "hvae", "dataset": dataset, "device": "cpu", "steps": steps, "log_every": 1,
              "model_options": model_options or {}}
    run = resolve(run_config(config | ({"objective": objective} if objective else {}), "test"))
    data = load_dataset(dataset)
    torch.manual_seed(0)
    return run, data, HVAE(run.model_options, data.info)


@pytest.mark.parametrize("dataset", ["digits", "shapes?n=512"])
@pytest.mark.parametrize("objective, logs", [("elbo", "elbo"), ("iwae", "iwae_bound")])
def test_trains_a_few_steps_through_the_vae_objectives(dataset, objective, logs):
    run, data, model = build(dataset, 4, objective, {"hidden_dims": (64, 32)})
    logged = fit(run, data, model)
    assert logs in logged[-1] and all(math.isfinite(v) for s in logged for v in s.values())


@pytest.mark.slow
def test_held_out_elbo_on_digits_improves_markedly():
    run, data, model = build("digits", 400)
    before = held_out(model, data)
    fit(run, data, model)
    after = held_out(model, data)
    # At initialisation the Bernoulli decoder predicts ~0.5 everywhere: ~256 ln 2 = 177 nats.
    assert before["test/elbo"] < -150
    assert after["test/elbo"] > before["test/elbo"] + 50
    assert after["test/neg_elbo_bpd"] < 0.75 * before["test/neg_elbo_bpd"]
