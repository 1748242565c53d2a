"""Reference for GroupNorm followed by an optional per-example scale-shift and SiLU.

    y = act(GroupNorm(x; groups, weight, bias, eps) · (1 + scale) + shift)

x (B, C, *spatial) (NCHW or channels-last); weight, bias (C,) or None; scale, shift
(B, C) or None (the U-Net's adaptive group norm: scale-shift from the time embedding,
Nichol & Dhariwal 2021); act SiLU (x·sigmoid(x)) or none. Statistics per (example,
group) over C/groups channels and every position, in fp32 (two-pass, as nn.GroupNorm).

Eager: nn.functional.group_norm, then one elementwise op per step (scale-shift, SiLU),
each a full read and write of the activation: 2 + 2·(steps) passes where the fused kernel
needs one read for the statistics, one read and one write for the output.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from genbench.errors import ConfigError

ACTIVATIONS = ("silu", "none")


def check_inputs(x, num_groups: int, weight, bias, scale, shift, activation: str) -> None:
    if x.ndim < 2:
        raise ConfigError(f"group_norm_silu expects x (B, C, ...); got {tuple(x.shape)}.")
    c = x.shape[1]
    if num_groups < 1 or c % num_groups:
        raise ConfigError(f"group_norm_silu: {c} channels do not split into {num_groups} groups; "
                          "num_groups must divide C.")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != (c,):
            raise ConfigError(f"group_norm_silu: {name} must have shape ({c},); got {tuple(t.shape)}.")
    for name, t in (("scale", scale), ("shift", shift)):
        if t is not None and tuple(t.shape) != (x.shape[0], c):
            raise ConfigError(f"group_norm_silu: {name} must have shape ({x.shape[0]}, {c}) (per example and "
                              f"channel); got {tuple(t.shape)}.")
    if activation not in ACTIVATIONS:
        raise ConfigError(f"group_norm_silu: unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}.")


def group_norm_silu(x: torch.Tensor, num_groups: int, weight: torch.Tensor | None = None,
                    bias: torch.Tensor | None = None, eps: float = 1e-5, scale: torch.Tensor | None = None,
                    shift: torch.Tensor | None = None, activation: str = "silu") -> torch.Tensor:
    """F.group_norm, then x·(1 + scale) + shift, then SiLU: separate eager ops."""
    check_inputs(x, num_groups, weight, bias, scale, shift, activation)
    y = F.group_norm(x, num_groups, weight, bias, eps)
    extra = (1,) * (x.ndim - 2)
    if scale is not None:
        y = y * (1 + scale.to(y.dtype).view(*scale.shape, *extra))
    if shift is not None:
        y = y + shift.to(y.dtype).view(*shift.shape, *extra)
    return F.silu(y) if activation == "silu" else y


@functools.lru_cache(maxsize=None)
def compiled_group_norm_silu():
    """torch.compile of the eager reference (inductor fuses the normalisation and the epilogue)."""
    return torch.compile(group_norm_silu)
