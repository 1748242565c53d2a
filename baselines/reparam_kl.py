"""Reference for the fused reparameterisation + Gaussian KL op.

    logvar <- clamp(logvar, -LOGVAR_LIMIT, LOGVAR_LIMIT)
    z    = mu + exp(0.5 * logvar) * eps                          # (B, D)
    kl_d = 0.5 * (mu^2 + exp(logvar) - 1 - logvar)               # (B, D), KL(N(mu, s^2) || N(0, 1))
    kl   = beta * sum_d max(kl_d, free_bits)                     # (B,)

Free bits (Kingma et al. 2016, "Improving Variational Inference with Inverse
Autoregressive Flow", sec. C.8): each latent dimension's KL is floored at `free_bits`
nats, so the objective stops pushing a dimension's KL below it (the floor applies per
example here). Arithmetic is at least fp32 (fp16/bf16 inputs are promoted; fp64 stays
fp64, so gradcheck works); z is returned in the input dtype, kl in the arithmetic dtype.

Overflow guard: exp(logvar) overflows fp32 at logvar > 88.7, so logvar is clamped to
[-LOGVAR_LIMIT, LOGVAR_LIMIT] = [-60, 60] (sigma from 1e-13 to 1e13; the KL stays finite
even summed over a million dimensions). Outside that range the gradient w.r.t. logvar is
zero, as for torch.clamp; a posterior that far out is degenerate anyway. The Triton
kernel applies the same clamp, so both backends compute the same function.

Memory traffic (eager): reads mu, logvar, eps (3·B·D elements), writes z and kl, plus
about six B×D temporaries (std, z, mu², exp(logvar), kl_d, clamp) written and read back
by separate kernels, and autograd keeps several of them for backward. A fused kernel
moves only the inputs and outputs.
"""

from __future__ import annotations

import functools

import torch

LOGVAR_LIMIT = 60.0


def reparameterize_kl(
    mu: torch.Tensor,
    logvar: torch.Tensor,
    eps: torch.Tensor | None = None,
    *,
    beta: float = 1.0,
    free_bits: float = 0.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (z, kl) for a diagonal Gaussian posterior; see the module docstring.

    mu, logvar: (B, D). eps: (B, D) standard-normal noise, drawn with `generator`
    when None.
    """
    check_inputs(mu, logvar, eps)
    compute = torch.promote_types(mu.dtype, torch.float32)
    mu_c = mu.to(compute)  # (B, D)
    logvar_c = logvar.to(compute).clamp(-LOGVAR_LIMIT, LOGVAR_LIMIT)  # (B, D)
    if eps is None:
        eps = torch.randn(mu.shape, device=mu.device, dtype=compute, generator=generator)
    z = mu_c + torch.exp(0.5 * logvar_c) * eps.to(compute)  # (B, D)
    kl_d = 0.5 * (mu_c * mu_c + torch.exp(logvar_c) - 1.0 - logvar_c)  # (B, D)
    if free_bits > 0:
        kl_d = torch.clamp(kl_d, min=free_bits)
    kl = beta * kl_d.sum(dim=-1)  # (B,)
    return z.to(mu.dtype), kl


def check_inputs(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor | None) -> None:
    """Shape/dtype checks shared by the reference and the kernel launchers."""
    if mu.ndim != 2 or mu.shape != logvar.shape:
        raise ValueError(
            f"reparameterize_kl expects mu and logvar of one shape (B, D); got "
            f"{tuple(mu.shape)} and {tuple(logvar.shape)}. Flatten the latent to (B, D) first."
        )
    if eps is not None and eps.shape != mu.shape:
        raise ValueError(f"eps must have mu's shape {tuple(mu.shape)}; got {tuple(eps.shape)}.")
    if not (mu.is_floating_point() and logvar.is_floating_point()):
        raise TypeError(f"mu and logvar must be floating point; got {mu.dtype} and {logvar.dtype}.")


@functools.cache
def compiled_reparameterize_kl():
    """torch.compile of the reference (built on first use: compiling is slow)."""
    return torch.compile(reparameterize_kl, dynamic=True)
