"""Gumbel-softmax VAE: the relaxation, the KL and the objective on known answers; the
straight-through estimator; the temperature schedule; training through the harness
parts; and a learning check on held-out digits."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from genbench.data import load_dataset
from genbench.data.base import DatasetInfo
from genbench.harness.spec import resolve, run_config
from genbench.models import gumbel
from genbench.models.gumbel import (
    GumbelVAE,
    GumbelVAEOptions,
    categorical_kl_uniform,
    gumbel_softmax,
)
from genbench.objectives.gumbel import GumbelElboOptions, gumbel_elbo_loss
from tests.models.training import fit, held_out

LOGITS = torch.log(torch.tensor([1.0, 2.0, 3.0]))  # q = (1/6, 1/3, 1/2)


def info(shape):
    return DatasetInfo(name="t", spec="t", kind="image", shape=shape, classes=None, content_hash="0",
                       source="test", split="none")


def softplus(v: float) -> float:
    return math.log1p(math.exp(v))


def test_relaxed_sample_by_hand():
    noise = torch.zeros(3)
    assert torch.allclose(gumbel_softmax(LOGITS, noise, 1.0, hard=False), torch.tensor([1, 2, 3]) / 6)
    assert torch.allclose(gumbel_softmax(LOGITS, noise, 0.5, hard=False), torch.tensor([1, 4, 9]) / 14)
    noise = torch.tensor([2.0, 0.0, 0.0])  # shifts the argmax to class 0: 2 > log 3 - log 1
    assert torch.equal(gumbel_softmax(LOGITS, noise, 0.5, hard=True), torch.tensor([1.0, 0.0, 0.0]))


def test_categorical_kl_against_a_direct_computation():
    q = torch.tensor([1, 2, 3]) / 6
    by_hand = sum(float(p) * math.log(float(p) * 3) for p in q)
    assert math.isclose(float(categorical_kl_uniform(LOGITS)), by_hand, rel_tol=1e-6)
    logits = torch.randn(4, 5, 7, generator=torch.Generator().manual_seed(0)) * 3
    uniform = torch.distributions.Categorical(logits=torch.zeros(7))
    direct = torch.distributions.kl_divergence(torch.distributions.Categorical(logits=logits), uniform)
    torch.testing.assert_close(categorical_kl_uniform(logits), direct)  # (4, 5)
    assert torch.allclose(categorical_kl_uniform(torch.zeros(2, 7)), torch.zeros(2))


class FixedLogits(nn.Module):
    def forward(self, x):
        return LOGITS.expand(x.shape[0], 3)


def hand_model(monkeypatch, **options) -> GumbelVAE:
    """N=1 variable with K=3 classes, q = (1/6, 1/3, 1/2) for every x; the decoder maps a
    code y to Bernoulli logits 6y over three pixels; Gumbel noise switched off."""
    monkeypatch.setattr(gumbel, "gumbel_noise", lambda shape, generator, device: torch.zeros(shape))
    model = GumbelVAE(GumbelVAEOptions(n_latent=1, n_classes=3, hidden=4, anneal_rate=0.0, **options), info((1, 1, 3)))
    model.encoder = FixedLogits()
    model.decoder = nn.Sequential(nn.Linear(3, 3, bias=False), nn.Unflatten(1, (1, 1, 3)))
    with torch.no_grad():
        model.decoder[0].weight.copy_(6 * torch.eye(3))
    return model


X = torch.tensor([[[[1.0, -1.0, 1.0]]]])  # binarises to (1, 0, 1) whatever the generator
KL = (1 / 6) * math.log(1 / 2) + (1 / 2) * math.log(3 / 2)  # the (1/3)·log(1) term is zero


def test_objective_relaxed_by_hand(monkeypatch):
    terms = gumbel_elbo_loss(hand_model(monkeypatch), X, GumbelElboOptions(beta=2.0), None, step=5)
    # y = softmax(log q / 1) = q, decoder logits 6q = (1, 2, 3); BCE = softplus(-o) where x=1, softplus(o) where x=0
    recon = softplus(-1) + softplus(2) + softplus(-3)
    assert math.isclose(float(terms["recon_nll"]), recon, rel_tol=1e-6)
    assert math.isclose(float(terms["kl"]), KL, rel_tol=1e-6)
    assert math.isclose(float(terms["loss"].detach()), recon + 2 * KL, rel_tol=1e-6)
    assert math.isclose(float(terms["elbo"]), -(recon + KL), rel_tol=1e-6)
    assert float(terms["tau"]) == 1.0


@pytest.mark.parametrize("hard, step", [(True, 5), (False, None)])
def test_objective_one_hot_by_hand(monkeypatch, hard, step):
    """Straight-through in training and the discrete draw in evaluation both decode the
    argmax one-hot (0, 0, 1): decoder logits (0, 0, 6)."""
    terms = gumbel_elbo_loss(hand_model(monkeypatch, hard=hard), X, GumbelElboOptions(), None, step=step)
    recon = 2 * math.log(2) + softplus(-6)
    assert math.isclose(float(terms["recon_nll"]), recon, rel_tol=1e-6)
    assert math.isclose(float(terms["loss"].detach()), recon + KL, rel_tol=1e-6)
    assert ("tau" in terms) == (step is not None)


def digits_model(**options) -> tuple[GumbelVAE, torch.Tensor]:
    data = load_dataset("digits")
    torch.manual_seed(0)
    model = GumbelVAE(GumbelVAEOptions(hidden=64, **options), data.info)
    return model, model.likelihood.prepare(data.train.x[:16], torch.Generator().manual_seed(0))


def decoder_inputs(model, x, step):
    seen = []
    handle = model.decoder.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    recon, _, _ = model.elbo_terms(x, torch.Generator().manual_seed(1), step=step)
    handle.remove()
    return recon, seen[0].view(x.shape[0], model.n_latent, model.n_classes)


def test_straight_through_is_one_hot_forward_with_encoder_gradients():
    model, x = digits_model(hard=True)
    recon, codes = decoder_inputs(model, x, step=1)
    torch.testing.assert_close(codes, F.one_hot(codes.argmax(-1), 10).float(), atol=1e-6, rtol=0)
    recon.mean().backward()  # the reconstruction term alone: no KL gradient
    grads = [p.grad for p in model.encoder.parameters()]
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0


def test_relaxed_codes_are_soft_and_evaluation_codes_discrete():
    model, x = digits_model()
    _, soft = decoder_inputs(model, x, step=1)
    torch.testing.assert_close(soft.sum(-1), torch.ones(16, 20))
    assert (soft.max(-1).values < 1 - 1e-3).any()
    _, hard = decoder_inputs(model, x, step=None)
    assert torch.equal(hard, F.one_hot(hard.argmax(-1), 10).float())


def test_gumbel_max_draws_follow_q():
    model, _ = digits_model()
    logits = LOGITS.expand(1, 20000, 3)  # (B=1, N=20000, K=3): 20000 independent draws
    codes = model.latent_sample(logits, torch.Generator().manual_seed(0), step=None)
    torch.testing.assert_close(codes.mean((0, 1)), torch.tensor([1, 2, 3]) / 6, atol=0.015, rtol=0)


def test_temperature_schedule():
    model, _ = digits_model(tau0=2.0, tau_min=0.5, anneal_rate=1e-3)
    assert model.temperature(0) == 2.0
    assert math.isclose(model.temperature(100), 2.0 * math.exp(-0.1))
    assert model.temperature(10_000) == 0.5
    default, _ = digits_model()  # the default schedule reaches tau_min = 0.5 at step ln 2 / 1e-3
    assert default.temperature(690) > 0.5 and default.temperature(700) == 0.5


def test_options_are_validated():
    for bad in ({"n_classes": 1}, {"tau_min": 0.0}, {"tau_min": 2.0}, {"anneal_rate": -1.0}, {"n_latent": 0}):
        with pytest.raises(ValueError):
            GumbelVAEOptions(**bad)
    with pytest.raises(ValueError):
        GumbelElboOptions(beta=-1.0)


@torch.no_grad()
def test_importance_weights_with_one_sample_average_to_the_elbo():
    """For discrete draws E_q[log w] = ELBO exactly; both sides are averaged over 4000 draws."""
    model, x = digits_model()
    x = x[:4]
    log_w = model.importance_log_weights(x, 4000, torch.Generator().manual_seed(0))  # (k, B)
    recon, kl, _ = model.elbo_terms(x.repeat(4000, 1, 1, 1), torch.Generator().manual_seed(1))
    elbo = -(recon + kl).view(4000, 4)
    torch.testing.assert_close(log_w.mean(0), elbo.mean(0), atol=0.1, rtol=0)


@torch.no_grad()
def test_capabilities_have_their_shapes():
    model, x = digits_model()
    probs = model.encode_latent(x)
    assert probs.shape == (16, 20, 10) and torch.allclose(probs.sum(-1), torch.ones(16, 20))
    assert model.representation(x).shape == (16, 200) and model.capabilities.representation == "categorical-probs"
    decoded = model.decode_latent(probs)
    assert decoded.shape == (16, 1, 16, 16) and decoded.abs().max() <= 1
    assert model.reconstruct_output(x).shape == (16, 1, 16, 16)
    g = torch.Generator().manual_seed(0)
    assert model.sample(5, g).shape == model.sample(5, g, draw="sample").shape == (5, 1, 16, 16)
    assert model.importance_log_weights(x, 3, g).shape == (3, 16)
    assert model.kernel_backends() == {}


@pytest.mark.parametrize("dataset, options", [("digits", {"hidden": 64}),
                                              ("shapes?n=512", {"arch": "conv", "channels": 8, "hard": True})])
def test_trains_a_few_steps_through_its_objective(dataset, options):
    logged = fit(*build(dataset, 6, options))
    assert set(logged[-1]) >= {"loss", "recon_nll", "kl", "elbo", "tau", "grad_norm"}
    assert all(math.isfinite(v) for scalars in logged for v in scalars.values())


def build(dataset, steps, model_options):
    """(run, data, model): gumbel-vae at initialisation, with its default objective."""
    run = resolve(run_config({"model": "gumbel-vae", "dataset": dataset, "device": "cpu", "steps": steps,
                              "log_every": 1, "model_options": model_options}, "test"))
    assert run.objective.name == "gumbel-elbo"
    data = load_dataset(dataset)
    torch.manual_seed(0)
    return run, data, GumbelVAE(run.model_options, data.info)


@pytest.mark.slow
def test_held_out_elbo_on_digits_improves_markedly():
    run, data, model = build("digits", 400, {})
    before = held_out(model, data)
    logged = fit(run, data, model)
    after = held_out(model, data)
    # At initialisation the Bernoulli decoder predicts ~0.5 everywhere: ~256 ln 2 = 177 nats.
    assert before["test/elbo"] < -150
    assert after["test/elbo"] > before["test/elbo"] + 50
    assert after["test/neg_elbo_bpd"] < 0.75 * before["test/neg_elbo_bpd"]
    assert math.isclose(logged[-1]["tau"], math.exp(-0.4), rel_tol=1e-6)  # annealing from tau0 = 1 at rate 1e-3
