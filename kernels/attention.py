"""Non-causal attention (FlashAttention-2 style): public op. The Triton kernel is being
written; until it lands the op has no Triton implementation and "auto" runs the reference.

    o = attention(q, k, v, scale=None, backend="auto")      q, k, v (B, H, S, D)
"""

from __future__ import annotations

from genbench.baselines.attention import attention as reference
from genbench.registry import KERNELS

OP_NAME = "attention"


def attention(q, k, v, scale: float | None = None, backend: str = "auto"):
    """softmax(q kᵀ · scale) v; backend: "auto" (Triton on CUDA), "triton" or "torch"."""
    from genbench.kernels import dispatch  # the package imports this module

    return dispatch(OP_NAME, backend, q.device)(q, k, v, scale)


def _register() -> None:
    from genbench.kernels import KernelOp

    KERNELS.register(OP_NAME, KernelOp(
        name=OP_NAME, reference=reference, triton=None,
        summary="non-causal attention without the S x S matrix (online softmax), fwd+bwd",
    ))


_register()
