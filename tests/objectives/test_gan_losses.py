"""Tests for genbench/objectives/gan.py: GAN losses and regularisers.

Every loss is checked against values worked out by hand (math.log / math.exp) on the
fixed scores d_real = [2, -1], d_fake = [0.5, -3]; every gradient penalty against the
closed form of a linear critic (score = w.x, so ||grad|| = ||w||) or a quadratic one
(score = ||x||^2, so grad = 2x).
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

import genbench.objectives  # noqa: F401  (registers the GAN losses)
from genbench.objectives import gan
from genbench.models.gan_output import DOutput
from genbench.registry import LOSSES, REGULARIZERS

GAN_LOSSES = ["minimax", "non-saturating", "lsgan", "wgan", "wgan-gp", "dragan", "hinge", "ebgan", "began", "ragan"]
REAL = [2.0, -1.0]
FAKE = [0.5, -3.0]


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def out(scores, embedding=None, requires_grad=False) -> DOutput:
    score = torch.tensor(scores, dtype=torch.float64, requires_grad=requires_grad)
    emb = None if embedding is None else torch.tensor(embedding, dtype=torch.float64)
    return DOutput(score=score, embedding=emb)


def loss_of(name: str):
    return LOSSES.get(name)


def d_step(name, real, fake, state=None, **options):
    spec = loss_of(name)
    opts = spec.options(**options)
    state = state if state is not None else (spec.init_state(opts) if spec.init_state else {})
    return spec.discriminator(real, fake, opts, state)


def g_step(name, real, fake, state=None, **options):
    spec = loss_of(name)
    opts = spec.options(**options)
    state = state if state is not None else (spec.init_state(opts) if spec.init_state else {})
    return spec.generator(real, fake, opts, state)


def close(tensor, expected, tol=1e-9):
    return abs(float(torch.as_tensor(tensor).detach()) - expected) < tol


# ----------------------------------------------------------------------------- registry


def test_registry_lists_exactly_the_gan_losses():
    gan_names = [n for n in LOSSES.names() if getattr(LOSSES.get(n), "family", None) == "gan"]
    assert sorted(gan_names) == sorted(GAN_LOSSES)


@pytest.mark.parametrize("name", GAN_LOSSES)
def test_every_gan_loss_is_complete(name):
    spec = LOSSES.get(name)
    assert spec.family == "gan" and spec.name == name
    assert spec.disc_output in ("logit", "critic", "energy-l2", "energy-l1")
    assert isinstance(spec.summary, str) and spec.summary.strip()
    assert dataclasses.is_dataclass(spec.options)
    spec.options()  # the defaults are valid
    for reg_name, reg_options in spec.regularizers:
        assert reg_name in REGULARIZERS
        REGULARIZERS.get(reg_name).options(**reg_options)  # the default options are valid
    for fn in (spec.discriminator, spec.generator):
        assert fn.__doc__ and "20" in fn.__doc__  # names the paper (year)


def test_expected_output_kinds_and_defaults():
    kinds = {n: LOSSES.get(n).disc_output for n in GAN_LOSSES}
    assert kinds["wgan"] == kinds["wgan-gp"] == "critic"
    assert kinds["ebgan"] == "energy-l2" and kinds["began"] == "energy-l1"
    assert {kinds[n] for n in ("minimax", "non-saturating", "lsgan", "dragan", "hinge", "ragan")} == {"logit"}
    assert LOSSES.get("wgan").regularizers == (("clip", {"clip_value": 0.01}),)
    assert LOSSES.get("wgan-gp").regularizers == (("gp", {"weight": 10.0}),)
    assert LOSSES.get("dragan").regularizers == (("dragan", {"weight": 10.0}),)
    assert [n for n in GAN_LOSSES if LOSSES.get(n).needs_real_in_generator_step] == ["ragan"]


def test_regularizers_registered_with_their_kind():
    kinds = {n: REGULARIZERS.get(n).kind for n in ("gp", "dragan", "r1", "r2", "clip")}
    assert kinds == {"gp": "penalty", "dragan": "penalty", "r1": "penalty", "r2": "penalty", "clip": "post_step"}
    for n in kinds:
        assert REGULARIZERS.get(n).summary.strip()


@pytest.mark.parametrize(
    "cls, bad",
    [
        (gan.BceOptions, {"label_smoothing": 1.0}),
        (gan.BceOptions, {"label_smoothing": -0.1}),
        (gan.LsganOptions, {"a": 1.0, "b": 1.0}),
        (gan.EbganOptions, {"margin": 0.0}),
        (gan.EbganOptions, {"pt_weight": -1.0}),
        (gan.BeganOptions, {"gamma": 0.0}),
        (gan.BeganOptions, {"lambda_k": -0.1}),
        (gan.GradientPenaltyOptions, {"weight": -1.0}),
        (gan.DraganOptions, {"c": -0.5}),
        (gan.R1Options, {"gamma": -1.0}),
        (gan.ClipOptions, {"clip_value": 0.0}),
    ],
)
def test_options_reject_bad_values(cls, bad):
    with pytest.raises(ValueError):
        cls(**bad)


# ----------------------------------------------------------------------------- logit losses


def test_minimax_and_non_saturating_discriminator_by_hand():
    expected = mean(-math.log(sig(r)) for r in REAL) + mean(-math.log(1 - sig(f)) for f in FAKE)
    for name in ("minimax", "non-saturating", "dragan"):
        terms = d_step(name, out(REAL), out(FAKE))
        assert close(terms["loss"], expected)
        assert close(terms["d_real"], 0.5) and close(terms["d_fake"], -1.25)


def test_minimax_generator_is_saturating_log_one_minus_d():
    expected = mean(math.log(1 - sig(f)) for f in FAKE)
    assert close(g_step("minimax", None, out(FAKE))["loss"], expected)


def test_non_saturating_generator_by_hand():
    expected = mean(-math.log(sig(f)) for f in FAKE)
    for name in ("non-saturating", "dragan"):
        assert close(g_step(name, None, out(FAKE))["loss"], expected)


def test_non_saturating_gradient_does_not_vanish_where_minimax_saturates():
    # D confidently rejects the fake (logit -10): minimax's gradient is ~sigmoid(-10), NS's ~1.
    grads = {}
    for name in ("minimax", "non-saturating"):
        fake = out([-10.0], requires_grad=True)
        g_step(name, None, fake)["loss"].backward()
        grads[name] = abs(float(fake.score.grad[0]))
    assert grads["minimax"] == pytest.approx(sig(-10.0), rel=1e-9)
    assert grads["non-saturating"] == pytest.approx(1 - sig(-10.0), rel=1e-9)


@pytest.mark.parametrize("name", ["minimax", "non-saturating", "dragan"])
def test_one_sided_label_smoothing_is_bce_with_target_one_minus_s(name):
    s = 0.1
    t = 1 - s
    real_term = mean(-(t * math.log(sig(r)) + (1 - t) * math.log(1 - sig(r))) for r in REAL)
    fake_term = mean(-math.log(1 - sig(f)) for f in FAKE)  # one-sided: fake target stays 0
    smoothed = d_step(name, out(REAL), out(FAKE), label_smoothing=s)["loss"]
    assert close(smoothed, real_term + fake_term)
    plain = d_step(name, out(REAL), out(FAKE))["loss"]
    # The change is exactly s * mean(-log(1 - sig(r)) + log sig(r)) = s * mean(r).
    assert close(smoothed - plain, s * mean(REAL))
    # G losses do not smooth.
    assert close(g_step(name, None, out(FAKE), label_smoothing=s)["loss"], g_step(name, None, out(FAKE))["loss"])


def test_logit_losses_are_stable_for_huge_logits():
    real, fake = out([1e4, -1e4]), out([1e4, -1e4])
    for name in ("minimax", "non-saturating", "ragan", "hinge", "lsgan"):
        terms = d_step(name, real, fake)
        assert math.isfinite(float(terms["loss"].detach()))
        assert math.isfinite(float(g_step(name, real, fake)["loss"].detach()))
    # -log sigmoid(-1e4) = 1e4 exactly in softplus form, not inf.
    assert close(g_step("non-saturating", None, out([-1e4]))["loss"], 1e4, tol=1e-6)


def test_lsgan_by_hand_with_default_and_custom_coding():
    expected_d = 0.5 * mean((r - 1) ** 2 for r in REAL) + 0.5 * mean(f ** 2 for f in FAKE)
    assert close(d_step("lsgan", out(REAL), out(FAKE))["loss"], expected_d)
    assert close(g_step("lsgan", None, out(FAKE))["loss"], 0.5 * mean((f - 1) ** 2 for f in FAKE))
    # The -1-1-0 coding (Mao et al. 2017, b - c = 1, b - a = 2).
    expected_d = 0.5 * mean((r - 1) ** 2 for r in REAL) + 0.5 * mean((f + 1) ** 2 for f in FAKE)
    assert close(d_step("lsgan", out(REAL), out(FAKE), a=-1.0, b=1.0, c=0.0)["loss"], expected_d)
    assert close(g_step("lsgan", None, out(FAKE), a=-1.0, b=1.0, c=0.0)["loss"], 0.5 * mean(f ** 2 for f in FAKE))


@pytest.mark.parametrize("name", ["wgan", "wgan-gp"])
def test_wasserstein_by_hand(name):
    terms = d_step(name, out(REAL), out(FAKE))
    assert close(terms["loss"], -1.25 - 0.5)  # mean(d_fake) - mean(d_real)
    assert close(terms["wasserstein_estimate"], 1.75)
    assert close(g_step(name, None, out(FAKE))["loss"], 1.25)


def test_hinge_by_hand():
    # relu(1 - 2) = 0, relu(1 + 1) = 2; relu(1 + 0.5) = 1.5, relu(1 - 3) = 0.
    assert close(d_step("hinge", out(REAL), out(FAKE))["loss"], mean([0.0, 2.0]) + mean([1.5, 0.0]))
    assert close(g_step("hinge", None, out(FAKE))["loss"], 1.25)


def test_ragan_by_hand():
    m_real, m_fake = mean(REAL), mean(FAKE)  # 0.5, -1.25
    expected_d = mean(-math.log(sig(r - m_fake)) for r in REAL) + mean(-math.log(1 - sig(f - m_real)) for f in FAKE)
    expected_g = mean(-math.log(sig(f - m_real)) for f in FAKE) + mean(-math.log(1 - sig(r - m_fake)) for r in REAL)
    assert close(d_step("ragan", out(REAL), out(FAKE))["loss"], expected_d)
    assert close(g_step("ragan", out(REAL), out(FAKE))["loss"], expected_g)


def test_ragan_generator_uses_the_real_scores():
    base = g_step("ragan", out(REAL), out(FAKE))["loss"]
    shifted = g_step("ragan", out([r + 1.0 for r in REAL]), out(FAKE))["loss"]
    assert float(shifted.detach()) > float(base.detach()) + 0.1  # the real data look more real: harder for G
    with pytest.raises(ValueError, match="needs_real_in_generator_step"):
        g_step("ragan", None, out(FAKE))


# ----------------------------------------------------------------------------- energy losses


def test_ebgan_margin_by_hand():
    real, fake = out([0.2, 0.4]), out([0.1, 0.7])
    # mean real energy 0.3; relu(0.5 - 0.1) = 0.4, relu(0.5 - 0.7) = 0.
    assert close(d_step("ebgan", real, fake, margin=0.5)["loss"], 0.3 + mean([0.4, 0.0]))
    # A fake already above the margin adds nothing; a bigger margin pulls it back in.
    assert close(d_step("ebgan", real, fake, margin=2.0)["loss"], 0.3 + mean([1.9, 1.3]))


def test_pulling_away_term_extremes_and_by_hand():
    orthogonal = torch.eye(3, dtype=torch.float64)
    assert float(gan.pulling_away_term(orthogonal)) == pytest.approx(0.0, abs=1e-12)
    identical = torch.tensor([[1.0, 2.0, -1.0]] * 4, dtype=torch.float64)
    assert float(gan.pulling_away_term(identical)) == pytest.approx(1.0, abs=1e-12)
    # [1, 0] vs [3, 3]: cos^2 = 1/2 both ways; PT = (1/2 + 1/2) / (2 * 1). Scale-invariant.
    pair = torch.tensor([[1.0, 0.0], [3.0, 3.0]], dtype=torch.float64)
    assert float(gan.pulling_away_term(pair)) == pytest.approx(0.5, abs=1e-12)
    with pytest.raises(ValueError):
        gan.pulling_away_term(torch.ones(1, 3))


def test_ebgan_generator_adds_weighted_pulling_away_term():
    fake = out([0.1, 0.7], embedding=[[1.0, 0.0], [3.0, 3.0]])
    terms = g_step("ebgan", None, fake, pt_weight=0.1)
    assert close(terms["loss"], 0.4 + 0.1 * 0.5)
    assert close(terms["pulling_away"], 0.5)
    assert close(g_step("ebgan", None, out([0.1, 0.7]), pt_weight=0.0)["loss"], 0.4)
    with pytest.raises(ValueError, match="embedding"):
        g_step("ebgan", None, out([0.1, 0.7]), pt_weight=0.1)


def test_began_losses_and_convergence_measure_by_hand():
    real, fake = out([0.2, 0.4]), out([0.1, 0.3])  # L(x) = 0.3, L(G(z)) = 0.2
    terms = d_step("began", real, fake, state={"k": 0.5})
    assert close(terms["loss"], 0.3 - 0.5 * 0.2)
    assert close(terms["began_k"], 0.5)
    assert close(terms["began_m"], 0.3 + abs(0.5 * 0.3 - 0.2), tol=1e-6)  # 0.35, logged as float32
    assert close(g_step("began", real, fake, state={"k": 0.5})["loss"], 0.2)
    spec = loss_of("began")
    assert spec.init_state(spec.options()) == {"k": 0.0}


def test_began_k_update_and_clipping():
    spec = loss_of("began")
    real, fake = out([0.2, 0.4]), out([0.1, 0.3])
    state = {"k": 0.5}
    new = spec.update_state(state, real, fake, spec.options())
    assert new["k"] == pytest.approx(0.5 + 0.001 * (0.5 * 0.3 - 0.2), abs=1e-12)  # 0.49995
    assert state == {"k": 0.5}  # pure: the input state is untouched
    assert isinstance(new["k"], float)
    # gamma L(x) - L(G(z)) < 0 at k = 0: clipped at 0; a huge gain pushes it to 1.
    assert spec.update_state({"k": 0.0}, real, fake, spec.options())["k"] == 0.0
    assert spec.update_state({"k": 0.9}, out([1.0, 1.0]), out([0.0, 0.0]), spec.options(lambda_k=10.0))["k"] == 1.0
    assert spec.update_state({"k": 0.5}, real, fake, spec.options(gamma=1.0, lambda_k=0.1))["k"] == pytest.approx(0.51)


@pytest.mark.parametrize("name", GAN_LOSSES)
def test_logs_are_detached_scalars_and_loss_has_gradient(name):
    emb = [[1.0, 0.0], [0.0, 1.0]]
    real = out([0.2, 0.4], embedding=emb, requires_grad=True)
    fake = out([0.1, 0.7], embedding=emb, requires_grad=True)
    for terms in (d_step(name, real, fake), g_step(name, real, fake)):
        assert "loss" in terms and terms["loss"].requires_grad and terms["loss"].ndim == 0
        assert "d_fake" in terms and "d_real" in terms
        for key, value in terms.items():
            if key != "loss":
                assert isinstance(value, torch.Tensor) and value.ndim == 0 and not value.requires_grad, key


# ----------------------------------------------------------------------------- penalties


class LinearCritic(nn.Module):
    """score = w . flatten(x) + b: ||grad_x score|| = ||w|| everywhere."""

    def __init__(self, shape):
        super().__init__()
        self.linear = nn.Linear(math.prod(shape), 1)
        self.seen = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return DOutput(score=self.linear(x.flatten(1)).squeeze(1))


class SquareCritic(nn.Module):
    """score = scale * ||x||^2: grad = 2 scale x, so ||grad||^2 = 4 scale^2 ||x||^2."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1.5))

    def forward(self, x):
        return DOutput(score=self.scale * x.flatten(1).pow(2).sum(1))


SHAPES = [pytest.param((2,), id="points"), pytest.param((3, 4, 4), id="images")]


def batch(shape, seed, n=5):
    g = torch.Generator().manual_seed(seed)
    return torch.randn((n, *shape), generator=g)


def apply(name, critic, real, fake, seed=0, **options):
    reg = REGULARIZERS.get(name)
    gen = None if seed is None else torch.Generator().manual_seed(seed)
    return reg.apply(critic, real, fake, reg.options(**options), gen)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", ["gp", "dragan"])
def test_one_centred_penalties_on_a_linear_critic_are_closed_form(name, shape):
    torch.manual_seed(0)
    critic = LinearCritic(shape)
    real, fake = batch(shape, 1), batch(shape, 2)
    w_norm = float(critic.linear.weight.detach().norm())
    terms = apply(name, critic, real, fake, weight=7.0)
    assert float(terms["loss"].detach()) == pytest.approx(7.0 * (w_norm - 1) ** 2, rel=1e-5)
    assert float(terms[f"{name}_penalty"]) == pytest.approx(float(terms["loss"].detach()))
    assert float(terms["grad_norm_mean"]) == pytest.approx(w_norm, rel=1e-5)
    assert not terms[f"{name}_penalty"].requires_grad
    # Gradients flow from the penalty into the critic: d/dw [k (||w|| - 1)^2] = 2k (||w|| - 1) w / ||w||.
    terms["loss"].backward()
    w = critic.linear.weight.detach()
    expected = 2 * 7.0 * (w_norm - 1) * w / w_norm
    torch.testing.assert_close(critic.linear.weight.grad, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("shape", SHAPES)
def test_gp_evaluates_per_example_interpolates(shape):
    critic = LinearCritic(shape)
    real, fake = batch(shape, 1), batch(shape, 2)
    apply("gp", critic, real, fake)
    (x_hat,) = critic.seen
    # x_hat - fake = eps (real - fake) with one eps in [0, 1] per example.
    ratio = ((x_hat - fake) / (real - fake)).flatten(1)  # (N, D)
    assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio), atol=1e-4)
    assert ((ratio >= -1e-5) & (ratio <= 1 + 1e-5)).all()
    assert ratio[:, 0].std() > 0  # a different eps per example
    # Reproducible with the same generator; generator=None works too.
    again = LinearCritic(shape)
    again.load_state_dict(critic.state_dict())
    apply("gp", again, real, fake)
    torch.testing.assert_close(again.seen[0], x_hat)
    assert math.isfinite(float(apply("gp", critic, real, fake, seed=None)["loss"].detach()))


def test_gp_matches_an_explicit_autograd_computation_on_a_nonlinear_critic():
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))

    def wrapped(x):
        return DOutput(score=critic(x).squeeze(1))

    real, fake = batch((2,), 1, n=6), batch((2,), 2, n=6)
    terms = apply("gp", wrapped, real, fake, seed=3, weight=10.0)
    eps = torch.rand(6, generator=torch.Generator().manual_seed(3)).view(-1, 1)  # the documented draw
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat)
    expected = 10.0 * ((grad.norm(dim=1) - 1) ** 2).mean()
    assert float(terms["loss"].detach()) == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
def test_dragan_perturbs_real_data_within_c_std(shape):
    critic = LinearCritic(shape)
    real, fake = batch(shape, 1), batch(shape, 2)
    apply("dragan", critic, real, fake, c=0.5)
    (x_hat,) = critic.seen
    delta = x_hat - real  # = (1 - alpha) c std(x) u, with alpha, u in [0, 1]
    bound = 0.5 * float(real.std(correction=0))
    assert (delta >= -1e-6).all() and (delta <= bound + 1e-6).all()
    assert float(delta.abs().max()) > 0.05 * bound  # actually perturbed
    # c = 0 evaluates at the real data itself.
    critic.seen.clear()
    apply("dragan", critic, real, fake, c=0.0)
    torch.testing.assert_close(critic.seen[0], real)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", ["r1", "r2"])
def test_zero_centred_penalties_on_a_linear_critic(name, shape):
    torch.manual_seed(0)
    critic = LinearCritic(shape)
    terms = apply(name, critic, batch(shape, 1), batch(shape, 2), gamma=4.0)
    w_norm2 = float(critic.linear.weight.detach().pow(2).sum())
    assert float(terms["loss"].detach()) == pytest.approx(4.0 / 2 * w_norm2, rel=1e-5)
    assert float(terms[f"{name}_penalty"]) == pytest.approx(float(terms["loss"].detach()))
    terms["loss"].backward()  # d/dw gamma/2 ||w||^2 = gamma w
    torch.testing.assert_close(critic.linear.weight.grad, 4.0 * critic.linear.weight.detach(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("shape", SHAPES)
def test_r1_is_taken_on_real_and_r2_on_fake(shape):
    critic = SquareCritic()
    real, fake = batch(shape, 1), 3.0 * batch(shape, 2)
    gamma, scale = 10.0, 1.5
    for name, x in (("r1", real), ("r2", fake)):
        terms = apply(name, critic, real.clone(), fake.clone(), gamma=gamma)
        expected = gamma / 2 * (4 * scale ** 2 * x.flatten(1).pow(2).sum(1)).mean()
        assert float(terms["loss"].detach()) == pytest.approx(float(expected), rel=1e-5)
        assert float(terms["grad_norm_mean"]) == pytest.approx(float((2 * scale * x.flatten(1).norm(dim=1)).mean()), rel=1e-5)
        critic.zero_grad()
        terms["loss"].backward()  # d/dscale gamma/2 * 4 scale^2 E||x||^2 = 2 expected / scale
        assert float(critic.scale.grad) == pytest.approx(2 * float(expected) / scale, rel=1e-5)
    assert not real.requires_grad and not fake.requires_grad  # inputs untouched


def test_clip_clamps_every_parameter():
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 1))
    with torch.no_grad():
        module[0].weight.mul_(100)
        module[2].bias.fill_(-5.0)
        module[0].bias.fill_(0.003)
    reg = REGULARIZERS.get("clip")
    assert reg.apply(module, reg.options(clip_value=0.01)) is None
    with torch.no_grad():
        for p in module.parameters():
            assert float(p.abs().max()) <= 0.01
        assert float(module[2].bias) == pytest.approx(-0.01)
        assert torch.all(module[0].bias == 0.003)  # values inside the box are untouched
        assert float(module[0].weight.abs().max()) == pytest.approx(0.01)
