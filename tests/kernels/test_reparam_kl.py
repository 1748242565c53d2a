"""The Triton reparam+KL kernel against the reference.

On the CPU the kernel runs in the Triton interpreter (conftest sets TRITON_INTERPRET=1),
in fp32 on small shapes; fp16/bf16 and large shapes run only with CUDA.

Tolerances (fp32, per the parameter tuples): z is one fused multiply-add per element,
so it matches to a few ulps (rtol 1e-6); kl is a sum over D whose order differs from
torch's reduction (rtol 1e-5); gradients are elementwise (rtol 1e-5). On CUDA,
fp16/bf16 z is rounded once to the input dtype: one rounding of the output dtype.
"""

from __future__ import annotations

import pytest
import torch
from scipy import stats

from genbench.baselines.reparam_kl import LOGVAR_LIMIT
from genbench.baselines.reparam_kl import reparameterize_kl as reference
from genbench.kernels.reparam_kl import block_sizes, triton_reparameterize_kl

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
FP32_TOL = {"z": (1e-6, 1e-6), "kl": (1e-5, 1e-5), "grad": (1e-5, 1e-6)}  # (rtol, atol)


def inputs(B, D, scale=2.0, seed=0, dtype=torch.float32, layout="contiguous"):
    """mu, logvar (scaled by `scale`), eps on DEVICE; the layout is made on the device."""
    g = torch.Generator().manual_seed(seed)
    both = torch.randn(B, 2 * D, generator=g)
    both[:, D:] *= scale
    eps = torch.randn(B, D, generator=g).to(DEVICE, dtype)
    both = both.to(DEVICE, dtype)
    if layout == "halves":  # the usual case: both halves of one encoder output
        return both[:, :D], both[:, D:], eps
    mu, logvar = both[:, :D].contiguous(), both[:, D:].contiguous()
    if layout == "transposed":  # same values, column-major storage
        mu, logvar = mu.T.contiguous().T, logvar.T.contiguous().T
    return mu, logvar, eps


def run_both(mu, logvar, eps, beta=1.0, free_bits=0.0, use_dz=True, use_dkl=True, seed=0):
    """z, kl and (dmu, dlogvar) from the kernel and from the reference."""
    g = torch.Generator(device=DEVICE).manual_seed(seed)
    dz = torch.randn(mu.shape, generator=g, device=DEVICE) if use_dz else None
    dkl = torch.randn(mu.shape[0], generator=g, device=DEVICE) if use_dkl else None
    out = []
    for fn in (triton_reparameterize_kl, reference):
        m, lv = mu.detach().clone().requires_grad_(), logvar.detach().clone().requires_grad_()
        z, kl = fn(m, lv, eps, beta=beta, free_bits=free_bits)
        loss = (z.float() * dz).sum() if use_dz else 0.0
        loss = loss + ((kl * dkl).sum() if use_dkl else 0.0)
        grads = torch.autograd.grad(loss, (m, lv)) if mu.numel() else (torch.zeros_like(m), torch.zeros_like(lv))
        out.append((z.detach(), kl.detach(), grads))
    return out


def assert_close(actual, expected, tol):
    rtol, atol = tol
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol)


def assert_match(kernel, ref, tol=FP32_TOL, grad_scale=1.0):
    (z, kl, (dmu, dlv)), (z_r, kl_r, (dmu_r, dlv_r)) = kernel, ref
    assert z.dtype == z_r.dtype and kl.dtype == torch.float32
    assert_close(z, z_r, tol["z"])
    assert_close(kl, kl_r.float(), tol["kl"])
    rtol, atol = tol["grad"]
    assert_close(dmu, dmu_r, (rtol, atol * grad_scale))
    assert_close(dlv, dlv_r, (rtol, atol * grad_scale))


SHAPES = [(1, 1), (1, 7), (5, 33), (17, 130), (64, 16), (3, 1025), (2, 2049)]


@pytest.mark.parametrize("B, D", SHAPES)
@pytest.mark.parametrize("beta, free_bits", [(1.0, 0.0), (2.5, 0.0), (1.0, 0.5), (0.3, 1.2)])
def test_kernel_matches_reference(B, D, beta, free_bits):
    mu, logvar, eps = inputs(B, D)
    kernel, ref = run_both(mu, logvar, eps, beta, free_bits)
    assert_match(kernel, ref, grad_scale=max(1.0, beta))


@pytest.mark.parametrize("layout", ["halves", "transposed"])
@pytest.mark.parametrize("free_bits", [0.0, 0.4])
def test_non_contiguous_inputs(layout, free_bits):
    mu, logvar, eps = inputs(9, 21, layout=layout)
    assert not mu.is_contiguous() and not logvar.is_contiguous()
    assert_match(*run_both(mu, logvar, eps, free_bits=free_bits))


@pytest.mark.parametrize("use_dz, use_dkl", [(True, False), (False, True)])
def test_gradient_from_one_output_only(use_dz, use_dkl):
    mu, logvar, eps = inputs(6, 19)
    assert_match(*run_both(mu, logvar, eps, free_bits=0.2, use_dz=use_dz, use_dkl=use_dkl))


@pytest.mark.parametrize("extreme", [100.0, 1e4, -100.0, -1e4, 88.0, -88.0])
def test_extreme_logvar_stays_finite_and_matches(extreme):
    mu, logvar, eps = inputs(4, 11)
    logvar[:, ::2] = extreme
    kernel, ref = run_both(mu, logvar, eps)
    z, kl, (dmu, dlv) = kernel
    for t in (z, kl, dmu, dlv):
        assert torch.isfinite(t).all()
    # exp(60) ~ 1e26: compare kl and dlogvar relatively only.
    tol = {"z": (1e-6, 1e-6), "kl": (1e-5, 0.0), "grad": (1e-5, 1e-6)}
    assert_match(kernel, ref, tol)
    assert (dlv[:, ::2] == 0).all() == (abs(extreme) > LOGVAR_LIMIT)  # clamp passes no gradient


def test_empty_and_zero_width_batches():
    for B, D in ((0, 8), (4, 0)):
        mu, logvar, eps = inputs(B, D)
        z, kl = triton_reparameterize_kl(mu, logvar, eps)
        assert z.shape == (B, D) and kl.shape == (B,)
        assert torch.equal(kl, torch.zeros(B, device=DEVICE))


def test_kernel_noise_is_standard_normal_and_reused_in_backward():
    B, D = 200, 150  # 30,000 draws
    mu = torch.zeros(B, D, device=DEVICE, requires_grad=True)
    logvar = torch.zeros(B, D, device=DEVICE, requires_grad=True)
    z, _ = triton_reparameterize_kl(mu, logvar, seed=1234)
    eps = z.detach().flatten().cpu().double().numpy()  # mu = 0, sigma = 1: z is the noise
    n = eps.size
    assert abs(eps.mean()) < 4 / n**0.5  # 4 standard errors
    assert abs(eps.var() - 1) < 4 * (2 / n) ** 0.5
    assert stats.kstest(eps, "norm").pvalue > 1e-3
    # Backward regenerates the same noise: d z / d logvar = eps * sigma / 2 = z / 2 here.
    (dlogvar,) = torch.autograd.grad(z.sum(), logvar)
    assert torch.equal(dlogvar, 0.5 * z.detach())


def test_kernel_noise_depends_on_seed_and_offset():
    mu, logvar = torch.zeros(8, 64, device=DEVICE), torch.zeros(8, 64, device=DEVICE)
    a = triton_reparameterize_kl(mu, logvar, seed=1)[0]
    assert torch.equal(a, triton_reparameterize_kl(mu, logvar, seed=1)[0])
    assert not torch.equal(a, triton_reparameterize_kl(mu, logvar, seed=2)[0])
    assert not torch.equal(a, triton_reparameterize_kl(mu, logvar, seed=1, offset=8 * 64)[0])
    g1, g2 = (torch.Generator(device=DEVICE).manual_seed(7) for _ in range(2))
    assert torch.equal(triton_reparameterize_kl(mu, logvar, generator=g1)[0],
                       triton_reparameterize_kl(mu, logvar, generator=g2)[0])


def test_kernel_drawn_noise_saves_no_noise_tensor():
    mu = torch.randn(16, 32, device=DEVICE, requires_grad=True)
    logvar = torch.randn(16, 32, device=DEVICE, requires_grad=True)
    z, kl = triton_reparameterize_kl(mu, logvar, seed=3)
    saved = z.grad_fn.saved_tensors
    assert [t for t in saved if t is not None] == [mu, logvar] or all(
        t.data_ptr() in (mu.data_ptr(), logvar.data_ptr()) for t in saved if t is not None)
    assert sum(t is None for t in saved) == 1  # the eps slot is empty


def test_bad_inputs():
    mu, logvar, eps = inputs(3, 4)
    with pytest.raises(TypeError, match="float64"):
        triton_reparameterize_kl(mu.double(), logvar.double(), eps.double())
    with pytest.raises(ValueError, match="eps.detach"):
        triton_reparameterize_kl(mu, logvar, eps.requires_grad_())
    with pytest.raises(ValueError, match=r"\(B, D\)"):
        triton_reparameterize_kl(mu, logvar[:, :3], None)


def test_block_sizes_cover_any_width():
    for D in (1, 3, 16, 100, 1024, 5000):
        block_b, block_d, warps = block_sizes(D)
        assert block_d >= min(D, 1024) and block_b >= 1 and warps in (4, 8)
        assert block_d & (block_d - 1) == 0  # Triton tiles are powers of two


@pytest.mark.cuda
@pytest.mark.parametrize("dtype, z_tol", [(torch.float16, (1e-3, 1e-3)), (torch.bfloat16, (8e-3, 8e-3))])
@pytest.mark.parametrize("B, D", [(1, 3), (1024, 64), (65536, 16), (257, 1000)])
def test_half_precision_on_cuda(dtype, z_tol, B, D):
    """fp16/bf16 inputs, fp32 arithmetic in both: they differ by one output rounding."""
    mu, logvar, eps = inputs(B, D, dtype=dtype)
    kernel, ref = run_both(mu, logvar, eps, free_bits=0.1)
    tol = {"z": z_tol, "kl": (1e-4, 1e-3), "grad": z_tol}
    assert_match(kernel, ref, tol)


@pytest.mark.cuda
def test_large_batch_on_cuda():
    mu, logvar, eps = inputs(65536, 256)
    kernel, ref = run_both(mu, logvar, eps, beta=0.5, free_bits=0.05)
    tol = {"z": (1e-5, 1e-5), "kl": (1e-4, 1e-3), "grad": (1e-4, 1e-5)}
    assert_match(kernel, ref, tol)
