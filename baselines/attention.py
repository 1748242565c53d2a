"""Reference for non-causal scaled dot-product attention.

    o = softmax(q·kᵀ·scale) · v          q (B, H, S_q, D), k, v (B, H, S_k, D); scale = 1/sqrt(D) by default

Eager: materialises the (B, H, S_q, S_k) score and probability matrices (in the input
dtype, softmax in fp32): 2·B·H·S_q·S_k elements written and read back, which is what a
flash kernel avoids. FLOPs: 4·B·H·S_q·S_k·D forward (two matmuls), backward 2.5x that.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

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
    """softmax(q kᵀ · scale) v, eagerly: scores in the input dtype, softmax in fp32."""
    check_inputs(q, k, v)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = torch.matmul(q, k.transpose(-2, -1)) * scale  # (B, H, S_q, S_k)
    probs = scores.float().softmax(dim=-1).to(v.dtype)
    return torch.matmul(probs, v)  # (B, H, S_q, D)


def sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    """torch.nn.functional.scaled_dot_product_attention (its backend is chosen by torch)."""
    check_inputs(q, k, v)
    return F.scaled_dot_product_attention(q, k, v, scale=scale)


@functools.lru_cache(maxsize=None)
def compiled_attention():
    """torch.compile of the eager reference."""
    return torch.compile(attention)
