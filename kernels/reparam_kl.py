"""Fused reparameterisation + Gaussian KL: Triton kernels, launchers, autograd, public op.

    z, kl = reparameterize_kl(mu, logvar, eps=None, beta=1.0, free_bits=0.0, backend="auto")

    z    = mu + exp(logvar / 2) * eps                      (B, D), in mu's dtype
    kl   = beta * sum_d max(KL_d, free_bits)               (B,), fp32
    KL_d = (mu^2 + exp(logvar) - 1 - logvar) / 2

The maths, the free-bits rule and the logvar clamp are those of the reference,
genbench.baselines.reparam_kl. Arithmetic is fp32 for fp32/fp16/bf16 inputs.

Memory traffic. Forward reads mu and logvar (and eps when given) and writes z and kl:
(2 or 3)·B·D elements in, B·D + B out -- nothing else. Without eps the kernel draws
N(0, 1) noise with Philox from (seed, offset + row·D + col), and backward regenerates
the same noise instead of storing it, so autograd keeps only mu and logvar. Backward
reads mu, logvar, dz (B·D), dkl (B) and eps if given, and writes dmu and dlogvar in one
pass, from both upstream gradients (each read through its own strides: autograd hands
backward expanded, stride-0 gradients for sums, e.g. dkl from kl.sum()):

    dmu     = dz + dkl·beta·mu·m
    dlogvar = dz·eps·std/2 + dkl·beta·(exp(logvar) - 1)/2·m,     m = [KL_d >= free_bits]
    (dlogvar is also zero where the logvar clamp is active)

Forward: one program per BLOCK_B rows, looping over D in BLOCK_D chunks and keeping each
row's KL in registers -- a deterministic reduction, no atomics. Backward has no
reduction: a 2-D grid of (BLOCK_B x BLOCK_D) tiles. Inputs may be non-contiguous (the
usual case: mu and logvar are column halves of one encoder output); strides are passed
to the kernels, so nothing is copied.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from genbench.baselines.reparam_kl import LOGVAR_LIMIT, check_inputs
from genbench.baselines.reparam_kl import reparameterize_kl as reference
from genbench.kernels.dispatch import KernelOp, OpExample, dispatch, example_randn
from genbench.registry import KERNELS

OP_NAME = "reparam_kl"
TILE_ELEMENTS = 4096  # elements per program tile: enough in flight to cover memory latency
MAX_BLOCK_D = 1024


# ----------------------------------------------------------------------------- kernels


@triton.jit
def _load_tile(ptr, rows, offs_d, stride_b, stride_d, mask):
    """A (BLOCK_B, BLOCK_D) tile of a strided 2-D tensor, as fp32 (0 where masked)."""
    ptrs = ptr + rows[:, None] * stride_b + offs_d[None, :] * stride_d
    return tl.load(ptrs, mask=mask, other=0.0).to(tl.float32)


@triton.jit
def _noise_tile(eps_ptr, rows, offs_d, stride_eb, stride_ed, mask, seed, offset, D,
                HAS_EPS: tl.constexpr):
    """The tile's N(0, 1) noise: loaded from eps, or Philox at offset + row*D + col."""
    if HAS_EPS:
        return _load_tile(eps_ptr, rows, offs_d, stride_eb, stride_ed, mask)
    return tl.randn(seed, offset + rows[:, None] * D + offs_d[None, :])


@triton.jit
def _reparam_kl_fwd_kernel(
    mu_ptr, logvar_ptr, eps_ptr, z_ptr, kl_ptr,
    B, D,
    stride_mb, stride_md, stride_lb, stride_ld, stride_eb, stride_ed,
    seed, offset, beta, free_bits, logvar_limit,
    HAS_EPS: tl.constexpr, FREE_BITS: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_D: tl.constexpr,
):
    offs_b = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)  # (BLOCK_B,)
    mask_b = offs_b < B
    rows = offs_b.to(tl.int64)  # B*D may exceed 2^31
    kl_row = tl.zeros((BLOCK_B,), dtype=tl.float32)
    for d0 in range(0, D, BLOCK_D):
        offs_d = d0 + tl.arange(0, BLOCK_D)  # (BLOCK_D,)
        mask = mask_b[:, None] & (offs_d < D)[None, :]  # (BLOCK_B, BLOCK_D)
        mu = _load_tile(mu_ptr, rows, offs_d, stride_mb, stride_md, mask)
        logvar = _load_tile(logvar_ptr, rows, offs_d, stride_lb, stride_ld, mask)
        logvar = tl.minimum(tl.maximum(logvar, -logvar_limit), logvar_limit)
        eps = _noise_tile(eps_ptr, rows, offs_d, stride_eb, stride_ed, mask, seed, offset, D, HAS_EPS)
        std = tl.exp(0.5 * logvar)
        z = mu + std * eps
        tl.store(z_ptr + rows[:, None] * D + offs_d[None, :], z.to(z_ptr.dtype.element_ty), mask=mask)
        kl_d = 0.5 * (mu * mu + std * std - 1.0 - logvar)
        if FREE_BITS:
            kl_d = tl.maximum(kl_d, free_bits)
        kl_row += tl.sum(tl.where(mask, kl_d, 0.0), axis=1)
    tl.store(kl_ptr + offs_b, beta * kl_row, mask=mask_b)


@triton.jit
def _reparam_kl_bwd_kernel(
    dz_ptr, dkl_ptr, mu_ptr, logvar_ptr, eps_ptr, dmu_ptr, dlogvar_ptr,
    B, D,
    stride_gb, stride_gd, stride_kb, stride_mb, stride_md, stride_lb, stride_ld, stride_eb, stride_ed,
    seed, offset, beta, free_bits, logvar_limit,
    HAS_DZ: tl.constexpr, HAS_DKL: tl.constexpr, HAS_EPS: tl.constexpr, FREE_BITS: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_D: tl.constexpr,
):
    offs_b = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)  # (BLOCK_B,)
    offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)  # (BLOCK_D,)
    mask_b = offs_b < B
    mask = mask_b[:, None] & (offs_d < D)[None, :]
    rows = offs_b.to(tl.int64)
    mu = _load_tile(mu_ptr, rows, offs_d, stride_mb, stride_md, mask)
    raw_logvar = _load_tile(logvar_ptr, rows, offs_d, stride_lb, stride_ld, mask)
    logvar = tl.minimum(tl.maximum(raw_logvar, -logvar_limit), logvar_limit)
    inside = (raw_logvar >= -logvar_limit) & (raw_logvar <= logvar_limit)  # clamp's gradient mask
    var = tl.exp(logvar)
    dmu = tl.zeros((BLOCK_B, BLOCK_D), dtype=tl.float32)
    dlogvar = tl.zeros((BLOCK_B, BLOCK_D), dtype=tl.float32)
    if HAS_DZ:
        dz = _load_tile(dz_ptr, rows, offs_d, stride_gb, stride_gd, mask)
        eps = _noise_tile(eps_ptr, rows, offs_d, stride_eb, stride_ed, mask, seed, offset, D, HAS_EPS)
        dmu += dz
        dlogvar += dz * eps * 0.5 * tl.sqrt(var)
    if HAS_DKL:
        # dkl is often expanded (kl.sum() hands backward a stride-0 gradient): use its stride.
        g = beta * tl.load(dkl_ptr + rows * stride_kb, mask=mask_b, other=0.0).to(tl.float32)[:, None]
        if FREE_BITS:
            kl_d = 0.5 * (mu * mu + var - 1.0 - logvar)
            g = tl.where(kl_d >= free_bits, g, 0.0)  # the floor passes no gradient
        dmu += g * mu
        dlogvar += g * 0.5 * (var - 1.0)
    dlogvar = tl.where(inside, dlogvar, 0.0)
    out = rows[:, None] * D + offs_d[None, :]
    tl.store(dmu_ptr + out, dmu.to(dmu_ptr.dtype.element_ty), mask=mask)
    tl.store(dlogvar_ptr + out, dlogvar.to(dlogvar_ptr.dtype.element_ty), mask=mask)


# ----------------------------------------------------------------------------- launchers


def block_sizes(D: int) -> tuple[int, int, int]:
    """(BLOCK_B, BLOCK_D, num_warps): tiles of about TILE_ELEMENTS elements."""
    block_d = min(triton.next_power_of_2(max(D, 1)), MAX_BLOCK_D)
    block_b = max(1, TILE_ELEMENTS // block_d)
    return block_b, block_d, 4 if block_b * block_d <= 2048 else 8


def check_kernel_inputs(mu, logvar, eps) -> None:
    check_inputs(mu, logvar, eps)
    for name, t in (("mu", mu), ("logvar", logvar), ("eps", eps)):
        if t is None:
            continue
        if t.dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise TypeError(f"The Triton reparam_kl kernel takes fp32/fp16/bf16; {name} is {t.dtype}. "
                            "Use backend='torch' for float64.")
        if t.device != mu.device:
            raise ValueError(f"{name} is on {t.device} but mu is on {mu.device}.")


def reparam_kl_forward(mu, logvar, eps, beta: float, free_bits: float, seed: int, offset: int = 0):
    """Launch the forward kernel: returns z (B, D) in mu's dtype and kl (B,) fp32."""
    check_kernel_inputs(mu, logvar, eps)
    B, D = mu.shape
    z = torch.empty((B, D), device=mu.device, dtype=mu.dtype)
    kl = torch.empty((B,), device=mu.device, dtype=torch.float32)
    if B == 0:
        return z, kl
    if D == 0:
        return z, kl.zero_()
    block_b, block_d, warps = block_sizes(D)
    e = eps if eps is not None else mu  # placeholder pointer when the kernel draws noise
    _reparam_kl_fwd_kernel[(triton.cdiv(B, block_b),)](
        mu, logvar, e, z, kl, B, D,
        mu.stride(0), mu.stride(1), logvar.stride(0), logvar.stride(1), e.stride(0), e.stride(1),
        seed, offset, float(beta), float(free_bits), LOGVAR_LIMIT,
        HAS_EPS=eps is not None, FREE_BITS=free_bits > 0,
        BLOCK_B=block_b, BLOCK_D=block_d, num_warps=warps,
    )
    return z, kl


def reparam_kl_backward(dz, dkl, mu, logvar, eps, beta: float, free_bits: float, seed: int, offset: int = 0):
    """Launch the backward kernel: (dmu, dlogvar) in the inputs' dtypes. dz or dkl may be None."""
    B, D = mu.shape
    dmu = torch.empty((B, D), device=mu.device, dtype=mu.dtype)
    dlogvar = torch.empty((B, D), device=mu.device, dtype=logvar.dtype)
    if B == 0 or D == 0:
        return dmu, dlogvar
    block_b, block_d, warps = block_sizes(D)
    e = eps if eps is not None else mu
    g = dz if dz is not None else mu
    k = dkl if dkl is not None else mu[:, 0]
    _reparam_kl_bwd_kernel[(triton.cdiv(B, block_b), triton.cdiv(D, block_d))](
        g, k, mu, logvar, e, dmu, dlogvar, B, D,
        g.stride(0), g.stride(1), k.stride(0), mu.stride(0), mu.stride(1), logvar.stride(0), logvar.stride(1),
        e.stride(0), e.stride(1),
        seed, offset, float(beta), float(free_bits), LOGVAR_LIMIT,
        HAS_DZ=dz is not None, HAS_DKL=dkl is not None, HAS_EPS=eps is not None,
        FREE_BITS=free_bits > 0, BLOCK_B=block_b, BLOCK_D=block_d, num_warps=warps,
    )
    return dmu, dlogvar


# ----------------------------------------------------------------------------- autograd


class ReparamKLFunction(torch.autograd.Function):
    """Saves mu, logvar (and eps only if the caller gave it); kernel-drawn noise is
    regenerated in backward from the saved seed and offset."""

    @staticmethod
    def forward(ctx, mu, logvar, eps, beta, free_bits, seed, offset):
        z, kl = reparam_kl_forward(mu, logvar, eps, beta, free_bits, seed, offset)
        ctx.save_for_backward(mu, logvar, eps)
        ctx.params = (beta, free_bits, seed, offset)
        ctx.set_materialize_grads(False)  # an unused output costs no zero tensor in backward
        return z, kl

    @staticmethod
    def backward(ctx, dz, dkl):
        mu, logvar, eps = ctx.saved_tensors
        if dz is None and dkl is None:
            return (None,) * 7
        beta, free_bits, seed, offset = ctx.params
        dmu, dlogvar = reparam_kl_backward(dz, dkl, mu, logvar, eps, beta, free_bits, seed, offset)
        return dmu, dlogvar, None, None, None, None, None


# ----------------------------------------------------------------------------- public op


def triton_reparameterize_kl(mu, logvar, eps=None, *, beta: float = 1.0, free_bits: float = 0.0,
                             generator: torch.Generator | None = None, seed: int | None = None,
                             offset: int = 0):
    """The Triton implementation. Without eps, noise comes from Philox(seed, offset);
    a seed not given is drawn from `generator` (or torch's global generator)."""
    if eps is not None and eps.requires_grad:
        raise ValueError("The Triton reparam_kl kernel does not differentiate w.r.t. eps; pass eps.detach().")
    if eps is None and seed is None:
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=generator.device if generator else "cpu"))
    return ReparamKLFunction.apply(mu, logvar, eps, beta, free_bits, seed or 0, offset)


def reparameterize_kl(
    mu: torch.Tensor,
    logvar: torch.Tensor,
    eps: torch.Tensor | None = None,
    *,
    beta: float = 1.0,
    free_bits: float = 0.0,
    generator: torch.Generator | None = None,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """z = mu + exp(logvar/2)·eps and beta·Σ_d max(KL_d, free_bits); mu, logvar (B, D).

    backend: "auto" (Triton on CUDA, reference on CPU), "triton", or "torch".
    """
    impl = dispatch(OP_NAME, backend, mu.device)
    return impl(mu, logvar, eps, beta=beta, free_bits=free_bits, generator=generator)


def examples(dtype, device, generator):
    """Column halves of one encoder output (the models' layout), odd D; plain and free bits."""
    stats = example_randn(generator, 5, 2 * 37, dtype=dtype, device=device)
    eps = example_randn(generator, 5, 37, dtype=dtype, device=device)
    calls = []
    for label, settings in (("plain", {}), ("beta2,free_bits", {"beta": 2.0, "free_bits": 0.3})):
        mu, logvar = stats.clone().chunk(2, dim=1)  # (5, 37) each, row stride 74
        calls.append(OpExample(label, {"mu": mu, "logvar": logvar, "eps": eps, **settings}, ("mu", "logvar")))
    return calls


def _register() -> None:
    KERNELS.register(
        OP_NAME,
        KernelOp(
            name=OP_NAME,
            function=reparameterize_kl,
            reference=reference,
            triton=triton_reparameterize_kl,
            summary="z = mu + exp(logvar/2)*eps and per-example KL(N(mu, s^2) || N(0, I)), fused fwd+bwd",
            examples=examples,
        ),
    )


_register()
