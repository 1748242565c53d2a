"""VAE-GAN (Larsen et al. 2016): the losses on hand-computed cases, which network each loss
trains, divergence handling, the harness end to end, and a learning check on digits."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from genbench.kernels import reparameterize_kl

from genbench.data import load_dataset
from genbench.errors import ConfigError
from genbench.harness.runner import run_all
from genbench.harness.spec import resolve, resolve_all, run_config
from genbench.harness.store import read_records
from genbench.models.vaegan import VAEGAN, VAEGANOptions
from genbench.objectives.vaegan import VAEGANLossOptions, vaegan_loss
from genbench.train import TrainContext
from genbench.train.vaegan import (
    VAEGANTrainerOptions,
    backward_per_network,
    check,
    make_optimisers,
    train_vaegan,
)
from genbench.utils.threads import one_thread

SMALL = {"channels": 8, "d_width": 8, "latent_dim": 4}  # tiny networks: fast on 2 CPU cores


@pytest.fixture(autouse=True)
def single_thread():
    with one_thread():  # tiny networks: threads cost more than they give on 2 cores
        yield


def tiny_model(data, **options) -> VAEGAN:
    torch.manual_seed(0)
    return VAEGAN(VAEGANOptions(**{**SMALL, **options}), data.info)


def harness_run(tmp_path, runs):
    run_all(runs, tmp_path, progress=False, echo=lambda s: None)
    return read_records(tmp_path / "results.jsonl")


def config(**entry):
    return run_config({"model": "vae-gan", "device": "cpu", "steps": 4, "batch_size": 16, "log_every": 2,
                       "warmup_steps": 1, "eval_samples": 100, "eval_batch": 128, "model_options": SMALL,
                       **entry}, "test")


# ----------------------------------------------------------------------------- losses


class StubModel:
    """Fixed encodings, reconstructions and prior decodings; D's features are the pixels."""

    def __init__(self, x_recon, x_prior, mu, logvar, logits):
        self.x_recon, self.x_prior, self.mu, self.logvar, self.logits = x_recon, x_prior, mu, logvar, logits

    def encode(self, x):
        return self.mu, self.logvar

    def reparameterize(self, mu, logvar, generator):
        return reparameterize_kl(mu, logvar, torch.zeros_like(mu), backend="torch")

    def decode(self, z):
        return self.x_prior if torch.equal(z, self.prior(len(z), None)) else self.x_recon

    def prior(self, n, generator):
        return torch.full((n, self.mu.shape[1]), 7.0)

    def discriminate(self, x, layer):
        assert layer == -1
        return x.flatten(1), self.logits  # (3B, D), (3B,)


def test_losses_match_a_hand_computed_case():
    x = torch.tensor([[[[1.0, 0.0]]], [[[0.0, -1.0]]]])  # (B=2, 1, 1, 2)
    x_recon = torch.tensor([[[[0.0, 0.0]]], [[[0.0, 1.0]]]])
    mu, logvar = torch.tensor([[1.0, 0.0], [0.0, 0.0]]), torch.tensor([[0.0, math.log(2.0)], [0.0, 0.0]])
    logits = torch.tensor([2.0, 2.0, -1.0, -1.0, 0.0, 0.0])  # D on x, x~, x_p
    model = StubModel(x_recon, torch.zeros_like(x), mu, logvar, logits)
    terms = vaegan_loss(model, x, VAEGANLossOptions(gamma=0.5, beta=2.0), None)

    kl = (0.5 * 1.0 + 0.5 * (2.0 - 1.0 - math.log(2.0))) / 2  # batch mean of 0.5 * sum(mu^2 + s^2 - 1 - log s^2)
    llike = (0.5 * 1.0 + 0.5 * 4.0) / 2  # 0.5 * ||Dis_l(x) - Dis_l(x~)||^2, batch mean
    softplus = lambda t: math.log1p(math.exp(t))
    gan_d = softplus(-2.0) + softplus(-1.0) + softplus(0.0)
    gan_g = softplus(1.0) + softplus(0.0)  # non-saturating: -log D(x~) - log D(x_p)
    expected = {"kl": kl, "llike": llike, "gan_d": gan_d, "gan_g": gan_g, "loss_enc": 2.0 * kl + llike,
                "loss_dec": 0.5 * llike + gan_g, "loss_dis": gan_d, "recon_mse": (1.0 + 4.0) / 4,
                "d_real": 1 / (1 + math.exp(-2.0)), "d_recon": 1 / (1 + math.exp(1.0)), "d_prior": 0.5}
    assert {k: pytest.approx(float(v), abs=1e-6) for k, v in terms.items()} == expected


def test_reparameterisation_draws_eps_from_the_run_generator(digits):
    model = tiny_model(digits)
    mu, logvar = torch.randn(5, 4), torch.randn(5, 4)
    z, kl = model.reparameterize(mu, logvar, torch.Generator().manual_seed(3))
    eps = torch.randn(5, 4, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(z, mu + torch.exp(0.5 * logvar) * eps, atol=1e-6)
    assert torch.allclose(kl, 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(1), atol=1e-5)


def test_discriminator_exposes_each_layer_and_rejects_a_missing_one(digits):
    model = tiny_model(digits)
    x = digits.train.x[:3]
    first, logit = model.discriminate(x, 0)
    assert first.shape == (3, 8 * 8 * 8) and logit.shape == (3,)  # 16x16 -> 8x8, d_width channels
    assert torch.allclose(first, model.discriminator.layers[0](x).flatten(1))  # pre-activation output
    assert model.discriminate(x, -1)[0].shape == (3, 16 * 4 * 4)  # the last conv layer
    with pytest.raises(ConfigError, match="feature_layer=2"):
        model.discriminate(x, 2)


# ----------------------------------------------------------------------------- which network learns what


def gradients(loss, net):
    return torch.autograd.grad(loss, list(net.parameters()), retain_graph=True, allow_unused=True)


def flat(grads):
    return torch.cat([torch.zeros(1) if g is None else g.flatten() for g in grads])


def test_each_loss_trains_only_its_own_network(digits):
    model = tiny_model(digits)
    nets = model.networks()
    x = digits.train.x[:8]
    terms = vaegan_loss(model, x, VAEGANLossOptions(gamma=0.3), torch.Generator().manual_seed(0))
    expected = {name: flat(gradients(terms[f"loss_{name}"], net)) for name, net in nets.items()}
    # Without the restriction the losses would leak: L_llike into D, the GAN loss into the encoder.
    assert flat(gradients(terms["loss_enc"], nets["dis"])).abs().sum() > 0
    assert flat(gradients(terms["loss_dec"], nets["enc"])).abs().sum() > 0
    assert flat(gradients(terms["loss_dis"], nets["dec"])).abs().sum() > 0

    optimisers = make_optimisers(nets, 1e-3, VAEGANTrainerOptions())
    norms = backward_per_network(terms, nets, optimisers, torch.amp.GradScaler("cpu", enabled=False))
    for name, net in nets.items():
        got = torch.cat([p.grad.flatten() for p in net.parameters()])
        assert torch.allclose(got, expected[name], atol=1e-6), name
        assert float(norms[f"grad_norm_{name}"]) == pytest.approx(float(expected[name].norm()), rel=1e-5)


def test_decoder_gradient_is_gamma_llike_plus_generator_loss(digits):
    """The decoder's gradient splits as gamma * grad(L_llike) + grad(L_G); the encoder's is
    grad(L_prior + L_llike), with no GAN term: the paper's Algorithm 1."""
    model = tiny_model(digits)
    enc, dec = model.encoder, model.decoder
    x = digits.train.x[:8]
    terms = {g: vaegan_loss(model, x, VAEGANLossOptions(gamma=g), torch.Generator().manual_seed(1)) for g in (0.0, 1.0)}
    d0, d1 = flat(gradients(terms[0.0]["loss_dec"], dec)), flat(gradients(terms[1.0]["loss_dec"], dec))
    e0, e1 = flat(gradients(terms[0.0]["loss_enc"], enc)), flat(gradients(terms[1.0]["loss_enc"], enc))
    assert torch.allclose(e0, e1)  # gamma does not touch the encoder
    llike_dec = d1 - d0  # grad(L_llike) w.r.t. the decoder
    terms_half = vaegan_loss(model, x, VAEGANLossOptions(gamma=0.5), torch.Generator().manual_seed(1))
    assert torch.allclose(flat(gradients(terms_half["loss_dec"], dec)), d0 + 0.5 * llike_dec, atol=1e-5)


# ----------------------------------------------------------------------------- the harness


def test_trains_through_the_harness_and_reports_no_likelihood(tmp_path):
    records = harness_run(tmp_path, resolve_all([config()]))
    last = {r["metric"]: r for r in records if r["step"] is None}
    assert last["run/diverged"]["value"] == 0.0
    logged = {(r["metric"], r["step"]) for r in records if r["step"] is not None}
    for key in ("loss_enc", "loss_dec", "loss_dis", "kl", "llike", "gan_d", "gan_g", "recon_mse",
                "grad_norm_enc", "grad_norm_dec", "grad_norm_dis"):
        assert {(f"train/{key}", s) for s in (1, 2, 4)} <= logged, key
    assert last["perf/train_throughput"]["value"] > 0
    assert 0 < last["test/recon_mse"]["value"] < 4
    assert not {m for m in last if m.startswith(("test/elbo", "test/nll", "test/kl"))}  # no pixel likelihood
    complete = last["run/complete"]["provenance"]
    assert complete["kernel_backends"] == {"reparam_kl": "torch", "conv_transpose2d": "torch"}
    assert records[0]["backend"] == "torch"
    for name in ("samples", "reconstructions", "interpolation", "traversal"):
        assert (tmp_path / complete["artefacts"][name]).stat().st_size > 100, name


def test_mlp_vaegan_trains_on_points_and_conv_is_refused(tmp_path):
    records = harness_run(tmp_path, resolve_all([config(dataset="toy2d-ring8", model_options={
        "arch": "mlp", "hidden": 32, "d_width": 32, "latent_dim": 2}, precision="bf16")]))
    last = {r["metric"]: r["value"] for r in records if r["step"] is None}
    assert last["run/diverged"] == 0.0 and "coverage/modes_captured" in last
    with pytest.raises(ConfigError, match="arch='mlp'"):
        VAEGAN(VAEGANOptions(), load_dataset("toy2d-ring8").info)


def test_nan_is_recorded_as_divergence_and_the_suite_goes_on(tmp_path):
    bad, good = resolve_all([config(seed=0), config(seed=1)])

    def nan_from_step_3(model, x, options, generator, step):
        terms = vaegan_loss(model, x, options, generator, step)
        if step >= 3:
            terms["loss_enc"] = terms["loss_enc"] * float("nan")
        return terms

    bad = dataclasses.replace(bad, objective=dataclasses.replace(bad.objective, loss=nan_from_step_3))
    records = harness_run(tmp_path, [bad, good])
    diverged = {r["run_id"]: r for r in records if r["metric"] == "run/diverged"}
    assert diverged[bad.run_id]["value"] == 1.0 and diverged[good.run_id]["value"] == 0.0
    prov = diverged[bad.run_id]["provenance"]
    assert prov["at_step"] == 3 and "non-finite loss" in prov["reason"] and "enc" in prov["reason"]
    assert any(r["run_id"] == bad.run_id and r["metric"] == "train/loss_enc" and r["step"] == 3 for r in records)
    assert any(r["run_id"] == good.run_id and r["metric"] == "test/recon_mse" for r in records)


def test_a_non_finite_gradient_is_divergence():
    finite = {f"loss_{n}": torch.tensor(1.0) for n in ("enc", "dec", "dis")}
    norms = {"grad_norm_enc": torch.tensor(1.0), "grad_norm_dec": torch.tensor(float("inf")),
             "grad_norm_dis": torch.tensor(1.0)}
    assert check(finite, norms, "fp32") == "non-finite gradient norm (inf) in the dec update"
    assert check(finite, norms, "fp16") is None  # fp16: the grad scaler skips the step


def test_options_are_validated():
    with pytest.raises(ValueError, match="gamma"):
        VAEGANLossOptions(gamma=-1.0)
    with pytest.raises(ValueError, match="lr_d_scale"):
        VAEGANTrainerOptions(lr_d_scale=0.0)
    with pytest.raises(ValueError, match="d_width"):
        VAEGANOptions(d_width=0)
    with pytest.raises(ConfigError, match="Did you mean 'gamma'"):
        resolve(config(objective_options={"gama": 1.0}))
    with pytest.raises(ConfigError, match="vae-gan"):
        resolve(config(objective="elbo"))
    with pytest.raises(ConfigError, match="optimizer=adam"):
        resolve(config(trainer_options={"beta1": 0.9}))  # RMSProp by default: no betas
    assert resolve(config(trainer_options={"optimizer": "adam", "beta1": 0.9, "lr": 3e-4})).trainer_options.lr == 3e-4


# ----------------------------------------------------------------------------- the loop outside the harness


def train_directly(run, data, model, config=None):
    """train_vaegan on `model` outside the harness; returns (outcome, logged scalars by step)."""
    logged = {}
    ctx = TrainContext(model, run.objective, run.objective_options, run.trainer_options, data, config or run.config,
                       torch.device("cpu"), torch.Generator().manual_seed(0),
                       lambda step, scalars: logged.update({step: scalars}), lambda *a, **k: None, progress=False)
    return train_vaegan(ctx), logged


def test_fp16_steps_through_one_grad_scaler(digits):
    """fp16 needs CUDA in a run (spec.resolve refuses it on the CPU); the loop itself is
    device-agnostic, so its scaler path is exercised here on the CPU."""
    run = resolve(config(steps=12))
    outcome, logged = train_directly(run, digits, tiny_model(digits), dataclasses.replace(run.config, precision="fp16"))
    assert not outcome.diverged and len(outcome.step_seconds) == 12
    assert 0 < outcome.skipped_steps < 12  # the scale starts at 2^16 and backs off on inf gradients
    assert math.isfinite(logged[12]["loss_enc"])


# ----------------------------------------------------------------------------- learning


def held_out_mse(model, x) -> float:
    model.eval()
    with torch.no_grad():
        mse = float((model.reconstruct_output(x) - x).pow(2).mean())
    model.train()
    return mse


def test_held_out_reconstruction_improves_markedly(digits):
    options = {"channels": 16, "d_width": 16, "latent_dim": 8}
    run = resolve(config(steps=250, batch_size=32, model_options=options))
    model = tiny_model(digits, **options)
    before = held_out_mse(model, digits.test.x)
    outcome, logged = train_directly(run, digits, model)
    assert not outcome.diverged and len(outcome.step_seconds) == 250
    after = held_out_mse(model, digits.test.x)
    assert after < 0.35 * before, (before, after)
    assert logged[250]["kl"] > 1.0  # the code carries information about x
    assert model.sample(4, torch.Generator().manual_seed(0)).abs().max() <= 1.0  # tanh: the data range
