"""Fused reparameterisation + Gaussian KL: the public op with backend dispatch.

    z, kl = reparameterize_kl(mu, logvar, eps=None, beta=1.0, free_bits=0.0, backend="auto")

See genbench.baselines.reparam_kl for the maths. Until the Triton kernel lands, every
backend that can run resolves to that reference ("auto" -> "torch"), and forcing
backend="triton" is a clear error rather than a silent substitute.
"""

from __future__ import annotations

import torch

from genbench.baselines.reparam_kl import reparameterize_kl as reference
from genbench.registry import KERNELS

OP_NAME = "reparam_kl"


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
    """z = mu + exp(logvar/2)·eps and beta·Σ_d max(KL_d, free_bits); mu, logvar (B, D)."""
    from genbench.kernels import dispatch  # the package imports this module

    impl = dispatch(OP_NAME, backend, mu.device)
    return impl(mu, logvar, eps, beta=beta, free_bits=free_bits, generator=generator)


def _register() -> None:
    from genbench.kernels import KernelOp

    KERNELS.register(
        OP_NAME,
        KernelOp(
            name=OP_NAME,
            reference=reference,
            triton=None,
            summary="z = mu + exp(logvar/2)*eps and per-example KL(N(mu, s^2) || N(0, I))",
        ),
    )


_register()
