"""Fused GroupNorm (+ per-example scale-shift) + SiLU: public op and layer. The Triton
kernel is being written; until it lands the op has no Triton implementation and "auto"
runs the reference.

    y = group_norm_silu(x, num_groups, weight, bias, eps=1e-5, scale=None, shift=None,
                        activation="silu", backend="auto")
"""

from __future__ import annotations

import torch
from torch import nn

from genbench.baselines.groupnorm_silu import group_norm_silu as reference
from genbench.registry import KERNELS

OP_NAME = "group_norm_silu"


def group_norm_silu(x, num_groups: int, weight=None, bias=None, eps: float = 1e-5, scale=None, shift=None,
                    activation: str = "silu", backend: str = "auto"):
    """act(GroupNorm(x)·(1 + scale) + shift); backend: "auto" (Triton on CUDA), "triton" or "torch"."""
    from genbench.kernels import dispatch  # the package imports this module

    return dispatch(OP_NAME, backend, x.device)(x, num_groups, weight, bias, eps, scale, shift, activation)


class GroupNormSiLU(nn.GroupNorm):
    """nn.GroupNorm (same parameters and state) with the SiLU (and an optional per-example
    scale-shift passed to forward) fused, through `group_norm_silu` with `backend`."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True, *,
                 activation: str = "silu", backend: str = "auto"):
        super().__init__(num_groups, num_channels, eps, affine)
        self.activation, self.backend = activation, backend

    def forward(self, x: torch.Tensor, scale: torch.Tensor | None = None,
                shift: torch.Tensor | None = None) -> torch.Tensor:
        return group_norm_silu(x, self.num_groups, self.weight, self.bias, self.eps, scale, shift,
                               self.activation, self.backend)

    def resolved_backend(self, device) -> str:
        from genbench.kernels import resolve_backend

        return resolve_backend(OP_NAME, self.backend, device)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, activation={self.activation}, backend={self.backend}"


def _register() -> None:
    from genbench.kernels import KernelOp

    KERNELS.register(OP_NAME, KernelOp(
        name=OP_NAME, reference=reference, triton=None,
        summary="GroupNorm + per-example scale-shift + SiLU in one pass over statistics and one over the output, fwd+bwd",
    ))


_register()
