"""Reference for non-causal scaled dot-product attention.

    o = softmax(q·kᵀ·scale) · v          q (B, H, S_q, D), k, v (B, H, S_k, D); scale = 1/sqrt(D) by default

Eager: materialises the (B, H, S_q, S_k) score and probability matrices (in the input
dtype, softmax in fp32): 2·B·H·S_q·S_k elements written and read back, which is what a
flash kernel avoids. FLOPs: 4·B·H·S_q·S_k·D forward (two matmuls), backward 2.5x that.

SDPA baselines: `sdpa_attention` lets torch choose the backend; `sdpa_backend_attention`
forces one (flash, efficient, cudnn, math) and fails where that one cannot run;
`sdpa_backend_choice` names the backend torch's dispatch picks for given inputs (what a
benchmark records beside an `sdpa` figure).
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from genbench.errors import ConfigError


def check_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ConfigError(f"attention expects q, k, v shaped (B, H, S, D); got {tuple(q.shape)}, "
                          f"{tuple(k.shape)}, {tuple(v.shape)}.")
    if k.shape != v.shape or q.shape[:2] != k.shape[:2] or q.shape[3] != k.shape[3]:
        raise ConfigError(f"attention: q {tuple(q.shape)}, k {tuple(k.shape)} and v {tuple(v.shape)} must share "
                          "B, H and D, and k, v one sequence length.")
    if len({q.device, k.device, v.device}) != 1:
        raise ConfigError(f"attention: q, k, v are on different devices ({q.device}, {k.device}, {v.device}).")


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    """softmax(q kᵀ · scale) v, eagerly: scores in the input dtype, softmax in fp32 (or float64)."""
    check_inputs(q, k, v)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = torch.matmul(q, k.transpose(-2, -1)) * scale  # (B, H, S_q, S_k)
    # At least fp32 (float64 stays float64: the reference must be exact enough for gradcheck).
    probs = scores.to(torch.promote_types(scores.dtype, torch.float32)).softmax(dim=-1).to(v.dtype)
    return torch.matmul(probs, v)  # (B, H, S_q, D)


def sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    """torch.nn.functional.scaled_dot_product_attention (its backend is chosen by torch)."""
    check_inputs(q, k, v)
    return F.scaled_dot_product_attention(q, k, v, scale=scale)


@functools.lru_cache(maxsize=None)
def compiled_attention():
    """torch.compile of the eager reference."""
    return torch.compile(attention)


SDPA_BACKENDS = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
                 "cudnn": SDPBackend.CUDNN_ATTENTION, "math": SDPBackend.MATH}
SDPA_NAMES = {v: k for k, v in SDPA_BACKENDS.items()}


def sdpa_backend_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None,
                           backend: str = "flash") -> torch.Tensor:
    """SDPA restricted to one backend (`SDPA_BACKENDS`): a RuntimeError where it cannot run
    these inputs (e.g. flash on fp32 or on the CPU without its kernel), never a silent
    fallback. The backward runs the same backend's backward (chosen at forward time)."""
    check_inputs(q, k, v)
    if backend not in SDPA_BACKENDS:
        raise ConfigError(f"Unknown SDPA backend {backend!r}; choose one of {', '.join(SDPA_BACKENDS)}.")
    with sdpa_kernel([SDPA_BACKENDS[backend]]):
        return F.scaled_dot_product_attention(q, k, v, scale=scale)


def sdpa_backend_choice(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None) -> str:
    """The backend torch's SDPA dispatch picks for these inputs under the current
    `sdpa_kernel` restrictions ("flash", "efficient", "cudnn", "math", ...), from
    torch._fused_sdp_choice (private: "unknown" if this torch lacks it)."""
    try:
        choice = SDPBackend(torch._fused_sdp_choice(q, k, v, None, 0.0, False, scale=scale))
    except (AttributeError, RuntimeError, TypeError, ValueError):
        return "unknown"
    return SDPA_NAMES.get(choice, choice.name.lower())
