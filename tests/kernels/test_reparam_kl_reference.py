"""The reparam_kl reference (genbench.baselines.reparam_kl) and kernel dispatch.

The reference is what the Triton kernel will be tested against, so it is checked here
against closed forms, torch.distributions and torch.autograd.gradcheck (float64).

Tolerances (stated per parameter set):
- fp32 against a float64 closed form: one rounding per elementwise op, and a sum over D
  terms of O(1) magnitude, so rtol ~1e-5 and atol scaled with D.
- fp16/bf16 inputs: the arithmetic is fp32 and only z is rounded to the input dtype once:
  |err| <= half an ulp of the dtype (2^-11 fp16, 2^-8 bf16 relative) -> rtol 1e-3 / 8e-3.
  kl stays fp32 computed from the exactly upcast inputs -> fp32 tolerance.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

import genbench.kernels as gk
from genbench.baselines.reparam_kl import reparameterize_kl as reference
from genbench.errors import ConfigError, UnknownNameError
from genbench.registry import KERNELS


def make_inputs(B, D, dtype=torch.float32, seed=0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(B, D, generator=g, dtype=torch.float64).to(dtype)
    logvar = (0.8 * torch.randn(B, D, generator=g, dtype=torch.float64)).to(dtype)
    eps = torch.randn(B, D, generator=g, dtype=torch.float64).to(dtype)
    if requires_grad:
        mu.requires_grad_(True)
        logvar.requires_grad_(True)
    return mu, logvar, eps


def closed_form(mu, logvar, eps, beta=1.0, free_bits=0.0):
    """float64 z and kl from the formulas in the module docstring."""
    mu, logvar, eps = (t.detach().double() for t in (mu, logvar, eps))
    z = mu + torch.exp(0.5 * logvar) * eps
    kl_d = 0.5 * (mu**2 + torch.exp(logvar) - 1.0 - logvar)
    kl = beta * torch.clamp(kl_d, min=free_bits).sum(-1)
    return z, kl


# (B, D, rtol, atol): fp32 vs float64; atol grows with D because kl sums D terms.
FP32_SHAPES = [
    pytest.param(1, 1, 1e-5, 1e-6, id="1x1"),
    pytest.param(4, 7, 1e-5, 1e-5, id="4x7"),
    pytest.param(3, 33, 1e-5, 5e-5, id="3x33-odd"),
    pytest.param(16, 128, 1e-5, 2e-4, id="16x128"),
]


# ---------------------------------------------------------------- gradcheck (float64)


def free_bits_inputs(B=3, D=6, free_bits=0.5, seed=0):
    """mu/logvar whose kl_d sits at least 0.05 nats away from the floor on either side.

    Even dims: |mu| <= 0.3, |logvar| <= 0.3 -> kl_d <= 0.07 (below 0.5).
    Odd dims: |mu| in [1.5, 2] -> kl_d >= 1.125 (above 0.5).
    """
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(B, D, generator=g, dtype=torch.float64)
    sign = torch.where(torch.rand(B, D, generator=g, dtype=torch.float64) < 0.5, -1.0, 1.0)
    low = (u - 0.5) * 0.6  # in [-0.3, 0.3]
    high = sign * (1.5 + 0.5 * u)
    odd = (torch.arange(D) % 2 == 1).expand(B, D)
    mu = torch.where(odd, high, low)
    logvar = (torch.rand(B, D, generator=g, dtype=torch.float64) - 0.5) * 0.6
    eps = torch.randn(B, D, generator=g, dtype=torch.float64)
    kl_d = 0.5 * (mu**2 + logvar.exp() - 1 - logvar)
    assert ((kl_d - free_bits).abs() > 0.05).all()
    assert (kl_d < free_bits).any() and (kl_d > free_bits).any()
    return mu.requires_grad_(True), logvar.requires_grad_(True), eps


@pytest.mark.parametrize(
    "beta, free_bits",
    [
        pytest.param(1.0, 0.0, id="plain"),
        pytest.param(2.5, 0.0, id="beta"),
        pytest.param(0.7, 0.5, id="beta+free_bits"),
    ],
)
def test_gradcheck_float64(beta, free_bits):
    if free_bits > 0:
        mu, logvar, eps = free_bits_inputs(free_bits=free_bits)
    else:
        mu, logvar, eps = make_inputs(3, 5, dtype=torch.float64, requires_grad=True)

    def fn(mu, logvar):
        return reference(mu, logvar, eps, beta=beta, free_bits=free_bits)

    assert torch.autograd.gradcheck(fn, (mu, logvar), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_float64_inputs_keep_float64_precision():
    # A reference that computes in fp32 for float64 inputs cannot be gradchecked and
    # loses precision the caller asked for.
    mu, logvar, eps = make_inputs(4, 9, dtype=torch.float64)
    z, kl = reference(mu, logvar, eps, beta=1.3)
    z_ref, kl_ref = closed_form(mu, logvar, eps, beta=1.3)
    assert z.dtype == torch.float64
    torch.testing.assert_close(z, z_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(kl.double(), kl_ref, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- values (fp32)


@pytest.mark.parametrize("B, D, rtol, atol", FP32_SHAPES)
def test_z_and_kl_match_closed_form(B, D, rtol, atol):
    mu, logvar, eps = make_inputs(B, D)
    z, kl = reference(mu, logvar, eps)
    z_ref, kl_ref = closed_form(mu, logvar, eps)
    assert z.shape == (B, D) and kl.shape == (B,)
    assert z.dtype == torch.float32 and kl.dtype == torch.float32
    torch.testing.assert_close(z.double(), z_ref, rtol=rtol, atol=1e-6)
    torch.testing.assert_close(kl.double(), kl_ref, rtol=rtol, atol=atol)


@pytest.mark.parametrize("B, D, rtol, atol", FP32_SHAPES)
def test_kl_matches_torch_distributions(B, D, rtol, atol):
    mu, logvar, eps = make_inputs(B, D)
    _, kl = reference(mu, logvar, eps)
    posterior = Normal(mu.double(), torch.exp(0.5 * logvar.double()))
    prior = Normal(torch.zeros_like(mu, dtype=torch.float64), torch.ones_like(mu, dtype=torch.float64))
    expected = kl_divergence(posterior, prior).sum(-1)
    torch.testing.assert_close(kl.double(), expected, rtol=rtol, atol=atol)


def test_kl_is_zero_at_the_prior_and_positive_elsewhere():
    mu, logvar = torch.zeros(2, 5), torch.zeros(2, 5)
    _, kl = reference(mu, logvar, torch.randn(2, 5))
    assert torch.equal(kl, torch.zeros(2))
    mu, logvar, eps = make_inputs(8, 6)
    _, kl = reference(mu, logvar, eps)
    assert (kl > 0).all()


@pytest.mark.parametrize("beta", [0.0, 0.25, 2.5, 10.0])
def test_beta_scales_kl_and_not_z(beta):
    mu, logvar, eps = make_inputs(5, 11)
    z1, kl1 = reference(mu, logvar, eps, beta=1.0)
    zb, klb = reference(mu, logvar, eps, beta=beta)
    assert torch.equal(z1, zb)
    torch.testing.assert_close(klb, beta * kl1, rtol=1e-6, atol=1e-6)


def test_free_bits_floor_exact_sum_and_zero_gradients():
    # dims 0, 1, 3: kl_d ~ 0.014 < 0.5 (floored); dim 2: kl_d = 0.5 * (4 + e - 1 - 1).
    beta, free_bits = 2.0, 0.5
    mu = torch.tensor([[0.1, -0.1, 2.0, 0.1]], requires_grad=True)
    logvar = torch.tensor([[-0.2, 0.2, 1.0, -0.2]], requires_grad=True)
    eps = torch.tensor([[0.3, -1.0, 0.5, 2.0]])
    z, kl = reference(mu, logvar, eps, beta=beta, free_bits=free_bits)
    kl_dim2 = 0.5 * (4.0 + math.e - 1.0 - 1.0)
    expected = beta * (3 * free_bits + kl_dim2)
    assert kl.item() == pytest.approx(expected, rel=1e-6)

    kl.sum().backward()
    floored = [0, 1, 3]
    assert torch.equal(mu.grad[0, floored], torch.zeros(3))
    assert torch.equal(logvar.grad[0, floored], torch.zeros(3))
    assert mu.grad[0, 2].item() == pytest.approx(beta * 2.0, rel=1e-6)
    assert logvar.grad[0, 2].item() == pytest.approx(beta * 0.5 * (math.e - 1.0), rel=1e-6)


def test_free_bits_zero_is_no_floor_and_large_floor_is_constant():
    mu, logvar, eps = make_inputs(4, 6)
    _, kl_plain = reference(mu, logvar, eps)
    _, kl_zero = reference(mu, logvar, eps, free_bits=0.0)
    assert torch.equal(kl_plain, kl_zero)
    # A floor above every kl_d: each example's kl is D * free_bits.
    _, kl_big = reference(mu, logvar, eps, free_bits=100.0, beta=0.5)
    torch.testing.assert_close(kl_big, torch.full((4,), 0.5 * 6 * 100.0))


@pytest.mark.parametrize("free_bits", [0.0, 0.3])
def test_gradients_match_analytic_fp32(free_bits):
    beta = 1.7
    mu, logvar, eps = make_inputs(6, 10, requires_grad=True)
    z, kl = reference(mu, logvar, eps, beta=beta, free_bits=free_bits)
    gz = torch.randn(6, 10, generator=torch.Generator().manual_seed(3))
    gkl = torch.randn(6, generator=torch.Generator().manual_seed(4))
    (z * gz).sum().add((kl * gkl).sum()).backward()

    m, lv, e = mu.detach().double(), logvar.detach().double(), eps.double()
    kl_d = 0.5 * (m**2 + lv.exp() - 1 - lv)
    active = (kl_d > free_bits).double() if free_bits > 0 else torch.ones_like(kl_d)
    grad_mu = gz.double() + gkl.double()[:, None] * beta * m * active
    grad_lv = gz.double() * 0.5 * torch.exp(0.5 * lv) * e + gkl.double()[:, None] * beta * 0.5 * (lv.exp() - 1) * active
    torch.testing.assert_close(mu.grad.double(), grad_mu, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logvar.grad.double(), grad_lv, rtol=1e-5, atol=1e-5)


def test_non_contiguous_inputs():
    mu, logvar, eps = make_inputs(9, 5)
    mu_t, logvar_t, eps_t = (t.t().contiguous().t() for t in (mu, logvar, eps))
    assert not mu_t.is_contiguous()
    z, kl = reference(mu_t, logvar_t, eps_t)
    z_ref, kl_ref = reference(mu, logvar, eps)
    torch.testing.assert_close(z, z_ref, rtol=0, atol=0)
    torch.testing.assert_close(kl, kl_ref, rtol=1e-6, atol=1e-6)


def test_large_logvar_does_not_overflow_kl_in_fp16_inputs():
    # exp(logvar) for logvar = 15 overflows fp16 (max 65504) but not fp32: kl is fp32.
    mu = torch.zeros(1, 2, dtype=torch.float16)
    logvar = torch.tensor([[15.0, -15.0]], dtype=torch.float16)
    _, kl = reference(mu, logvar, torch.zeros(1, 2, dtype=torch.float16))
    expected = 0.5 * ((math.exp(15) - 1 - 15) + (math.exp(-15) - 1 + 15))
    assert torch.isfinite(kl).all()
    assert kl.item() == pytest.approx(expected, rel=1e-5)


# ---------------------------------------------------------------- low precision


@pytest.mark.parametrize(
    "dtype, z_rtol, z_atol",
    [
        pytest.param(torch.float16, 1e-3, 1e-3, id="fp16"),  # 2^-11 relative rounding of z
        pytest.param(torch.bfloat16, 8e-3, 8e-3, id="bf16"),  # 2^-8 relative rounding of z
    ],
)
def test_half_inputs_return_z_in_input_dtype_and_kl_in_fp32(dtype, z_rtol, z_atol):
    mu, logvar, eps = make_inputs(7, 13, dtype=dtype)
    z, kl = reference(mu, logvar, eps, beta=0.9)
    assert z.dtype == dtype
    assert kl.dtype == torch.float32
    # Reference on the exactly upcast inputs, in fp32.
    z32, kl32 = reference(mu.float(), logvar.float(), eps.float(), beta=0.9)
    torch.testing.assert_close(z.float(), z32, rtol=z_rtol, atol=z_atol)
    torch.testing.assert_close(kl, kl32, rtol=1e-6, atol=1e-6)  # fp32 arithmetic both ways


def test_half_inputs_backward_gives_grads_in_input_dtype():
    mu, logvar, eps = make_inputs(3, 4, dtype=torch.bfloat16, requires_grad=True)
    z, kl = reference(mu, logvar, eps)
    (z.float().sum() + kl.sum()).backward()
    assert mu.grad.dtype == torch.bfloat16 and logvar.grad.dtype == torch.bfloat16
    assert torch.isfinite(mu.grad.float()).all() and torch.isfinite(logvar.grad.float()).all()


# ---------------------------------------------------------------- noise from a generator


def test_without_eps_the_generator_makes_it_deterministic():
    mu, logvar, _ = make_inputs(64, 32)
    z1, kl1 = reference(mu, logvar, generator=torch.Generator().manual_seed(7))
    z2, kl2 = reference(mu, logvar, generator=torch.Generator().manual_seed(7))
    z3, kl3 = reference(mu, logvar, generator=torch.Generator().manual_seed(8))
    assert torch.equal(z1, z2)
    assert not torch.equal(z1, z3)
    assert torch.equal(kl1, kl2) and torch.equal(kl1, kl3)  # kl does not depend on the noise
    # The implied noise is standard normal: 2048 draws, mean within ~4 sigma (0.09).
    noise = (z1 - mu) / torch.exp(0.5 * logvar)
    assert abs(noise.mean().item()) < 0.09
    assert abs(noise.std().item() - 1.0) < 0.07


def test_without_eps_matches_explicit_eps_from_same_generator():
    mu, logvar, _ = make_inputs(5, 6)
    z, _ = reference(mu, logvar, generator=torch.Generator().manual_seed(11))
    eps = torch.randn(5, 6, generator=torch.Generator().manual_seed(11))
    z_explicit, _ = reference(mu, logvar, eps)
    torch.testing.assert_close(z, z_explicit, rtol=0, atol=0)


# ---------------------------------------------------------------- shapes


def test_mismatched_shapes_raise_helpful_value_error():
    mu, logvar = torch.zeros(4, 3), torch.zeros(4, 4)
    with pytest.raises(ValueError) as info:
        reference(mu, logvar, None)
    message = str(info.value)
    assert "(4, 3)" in message and "(4, 4)" in message
    assert "(B, D)" in message


@pytest.mark.parametrize("shape", [(2, 3, 4), (5,)], ids=["3d", "1d"])
def test_non_2d_inputs_raise_value_error(shape):
    mu, logvar = torch.zeros(shape), torch.zeros(shape)
    with pytest.raises(ValueError) as info:
        reference(mu, logvar, None)
    message = str(info.value)
    assert str(tuple(shape)) in message
    assert "Flatten" in message or "(B, D)" in message


@pytest.mark.parametrize("eps_shape", [(4, 5), (4, 3), (12,), (1, 4)])
def test_eps_of_wrong_shape_raises_value_error(eps_shape):
    mu, logvar = torch.zeros(3, 4), torch.zeros(3, 4)
    with pytest.raises(ValueError) as info:
        reference(mu, logvar, torch.zeros(eps_shape))
    message = str(info.value)
    assert "eps" in message
    assert "(3, 4)" in message and str(tuple(eps_shape)) in message


def test_integer_inputs_rejected():
    with pytest.raises(TypeError):
        reference(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long), None)


@pytest.mark.parametrize("D", [1, 8])
def test_empty_batch(D):
    mu = torch.zeros(0, D, requires_grad=True)
    logvar = torch.zeros(0, D, requires_grad=True)
    z, kl = reference(mu, logvar, torch.zeros(0, D), free_bits=0.1)
    assert z.shape == (0, D) and kl.shape == (0,)
    (z.sum() + kl.sum()).backward()
    assert mu.grad.shape == (0, D) and logvar.grad.shape == (0, D)
    z, kl = reference(mu, logvar, generator=torch.Generator().manual_seed(0))
    assert z.shape == (0, D) and kl.shape == (0,)


# ---------------------------------------------------------------- dispatch


@pytest.mark.parametrize("device", ["cpu", torch.device("cpu")], ids=["str", "device"])
def test_resolve_auto_and_torch_on_cpu(device):
    assert gk.resolve_backend("reparam_kl", "auto", device) == "torch"
    assert gk.resolve_backend("reparam_kl", "torch", device) == "torch"


def test_resolve_triton_on_cpu_needs_the_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ConfigError) as info:
        gk.resolve_backend("reparam_kl", "triton", "cpu")
    message = str(info.value)
    assert "reparam_kl" in message and "TRITON_INTERPRET=1" in message
    assert "torch" in message  # says what to use instead
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert gk.resolve_backend("reparam_kl", "triton", "cpu") == "triton"


# Explicit ids: a bare "cuda" id would collide with the `cuda` marker's keyword.
@pytest.mark.parametrize("backend", ["cuda", "Torch", "", "eager"],
                         ids=["device-name", "capitalised", "empty", "eager"])
def test_resolve_unknown_backend_is_config_error(backend):
    with pytest.raises(ConfigError) as info:
        gk.resolve_backend("reparam_kl", backend, "cpu")
    message = str(info.value)
    assert repr(backend) in message
    for choice in ("auto", "triton", "torch"):
        assert choice in message


def test_resolve_unknown_op_is_unknown_name_error():
    with pytest.raises(UnknownNameError) as info:
        gk.resolve_backend("reparam_kll", "auto", "cpu")
    assert "'reparam_kl'" in str(info.value)  # closest name suggested


def test_op_is_registered_with_the_baseline_reference():
    op = KERNELS.get("reparam_kl")
    assert isinstance(op, gk.KernelOp)
    assert op.name == "reparam_kl"
    assert op.reference is reference
    assert gk.dispatch("reparam_kl", "torch", "cpu") is reference
    assert gk.dispatch("reparam_kl", "auto", "cpu") is reference


@pytest.mark.parametrize("backend", ["torch", "auto"])
@pytest.mark.parametrize("beta, free_bits", [(1.0, 0.0), (0.5, 0.2)])
def test_public_op_equals_reference(backend, beta, free_bits):
    mu, logvar, eps = make_inputs(6, 9, requires_grad=True)
    mu2, logvar2 = (t.detach().clone().requires_grad_(True) for t in (mu, logvar))
    z, kl = gk.reparameterize_kl(mu, logvar, eps, beta=beta, free_bits=free_bits, backend=backend)
    z_ref, kl_ref = reference(mu2, logvar2, eps, beta=beta, free_bits=free_bits)
    assert torch.equal(z, z_ref) and torch.equal(kl, kl_ref)
    (z.sum() + kl.sum()).backward()
    (z_ref.sum() + kl_ref.sum()).backward()
    assert torch.equal(mu.grad, mu2.grad) and torch.equal(logvar.grad, logvar2.grad)


def test_public_op_generator_path_equals_reference():
    mu, logvar, _ = make_inputs(4, 3)
    z, kl = gk.reparameterize_kl(mu, logvar, generator=torch.Generator().manual_seed(5), backend="torch")
    z_ref, kl_ref = reference(mu, logvar, generator=torch.Generator().manual_seed(5))
    assert torch.equal(z, z_ref) and torch.equal(kl, kl_ref)


def test_public_op_triton_backend_on_cpu_without_interpreter_is_config_error(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    mu, logvar, eps = make_inputs(2, 3)
    with pytest.raises(ConfigError, match="TRITON_INTERPRET"):
        gk.reparameterize_kl(mu, logvar, eps, backend="triton")
