"""Reference for 2-D transposed convolution with an optional epilogue.

    y = act((conv_transpose2d(x, weight) + bias) * scale + shift)

x (B, C_in, H, W); weight (C_in, C_out, kH, kW), PyTorch's ConvTranspose2d layout;
bias, scale, shift (C_out,) or None; act one of ACTIVATIONS. scale and shift are an
inference BatchNorm folded into a per-channel affine map (`fold_batchnorm`).

    H_out = (H - 1)·stride - 2·padding + kH + output_padding      (dilation 1)

Eager: torch.nn.functional.conv_transpose2d (cuDNN on a GPU) with the bias, then one
elementwise op per epilogue step, each a full read and write of y. torch.compile of
this function leaves the convolution to cuDNN (inductor does not generate transposed
convolutions) and fuses the epilogue into one pointwise kernel.

Useful work: every input element meets every tap of the kernel whose output position
lands inside the output, one multiply-add per (C_in, C_out) pair there:
    MACs = B · C_in · C_out · valid_pairs(H) · valid_pairs(W)   (`useful_macs`)
A zero-inserted (fractionally strided) formulation would do about stride² times as
many, the extra ones multiplying inserted zeros; they are not counted.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from genbench.errors import ConfigError

ACTIVATIONS = ("none", "relu", "leaky_relu", "tanh")


def pair(value, name: str) -> tuple[int, int]:
    """An int or a pair of ints, as a pair (height, width)."""
    items = (value, value) if isinstance(value, int) else tuple(value)
    if len(items) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
        raise ConfigError(f"conv_transpose2d: {name} must be an int or a pair of ints; got {value!r}.")
    return items


def output_size(size: int, kernel: int, stride: int, padding: int, output_padding: int, dilation: int = 1) -> int:
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + 1 + output_padding


def valid_pairs(size: int, kernel: int, stride: int, padding: int, out_size: int) -> int:
    """(input position, tap) pairs along one axis whose output i·stride - padding + k is in range."""
    return sum(1 for i in range(size) for k in range(kernel) if 0 <= i * stride - padding + k < out_size)


def useful_macs(batch: int, c_in: int, c_out: int, hw: tuple[int, int], kernel: tuple[int, int],
                stride: tuple[int, int], padding: tuple[int, int], output_padding: tuple[int, int]) -> int:
    """Multiply-adds that touch no inserted zero and no padding (one direction: fwd, dgrad or wgrad)."""
    axes = [valid_pairs(n, k, s, p, output_size(n, k, s, p, op))
            for n, k, s, p, op in zip(hw, kernel, stride, padding, output_padding)]
    return batch * c_in * c_out * axes[0] * axes[1]


def check_inputs(x: torch.Tensor, weight: torch.Tensor, bias, scale, shift, stride, padding,
                 output_padding, groups: int, dilation, activation: str, negative_slope: float) -> None:
    """Shape, option and device checks shared by the reference and the kernel."""
    if x.ndim != 4 or weight.ndim != 4:
        raise ConfigError(f"conv_transpose2d expects x (B, C_in, H, W) and weight (C_in, C_out/groups, kH, kW); "
                          f"got x {tuple(x.shape)} and weight {tuple(weight.shape)}.")
    if x.shape[1] != weight.shape[0]:
        raise ConfigError(f"conv_transpose2d: x has C_in={x.shape[1]} channels but weight.shape[0] is "
                          f"{weight.shape[0]}; ConvTranspose2d weights are laid out (C_in, C_out/groups, kH, kW).")
    c_out = weight.shape[1] * groups
    for name, t in (("bias", bias), ("scale", scale), ("shift", shift)):
        if t is not None and (t.ndim != 1 or t.shape[0] != c_out):
            raise ConfigError(f"conv_transpose2d: {name} must have shape ({c_out},); got {tuple(t.shape)}.")
        if t is not None and t.device != x.device:
            raise ConfigError(f"conv_transpose2d: {name} is on {t.device} but x on {x.device}.")
    if (scale is None) != (shift is None):
        raise ConfigError("conv_transpose2d: give scale and shift together (a folded BatchNorm: fold_batchnorm).")
    if weight.device != x.device:
        raise ConfigError(f"conv_transpose2d: weight is on {weight.device} but x on {x.device}.")
    if activation not in ACTIVATIONS:
        raise ConfigError(f"conv_transpose2d: unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}.")
    if activation == "leaky_relu" and not negative_slope >= 0:
        raise ConfigError(f"conv_transpose2d: negative_slope must be >= 0 (the backward reads the sign of the "
                          f"output); got {negative_slope}.")
    s, p, op, d = (pair(v, n) for v, n in ((stride, "stride"), (padding, "padding"),
                                            (output_padding, "output_padding"), (dilation, "dilation")))
    if min(s) < 1 or min(p) < 0 or min(op) < 0 or min(d) < 1:
        raise ConfigError(f"conv_transpose2d: stride and dilation >= 1, padding and output_padding >= 0; "
                          f"got stride={s}, padding={p}, output_padding={op}, dilation={d}.")
    if any(o >= max(si, di) for o, si, di in zip(op, s, d)):
        raise ConfigError(f"conv_transpose2d: output_padding {op} must be smaller than the stride {s} "
                          "(or the dilation), as in torch.nn.ConvTranspose2d.")
    out = [output_size(n, k, si, pi, oi, di) for n, k, si, pi, oi, di in zip(x.shape[2:], weight.shape[2:], s, p, op, d)]
    if min(out) < 1:
        raise ConfigError(f"conv_transpose2d: the output would be {out[0]}x{out[1]}; reduce the padding.")


def apply_epilogue(y: torch.Tensor, scale, shift, activation: str, negative_slope: float) -> torch.Tensor:
    """(y·scale + shift) then the activation, one elementwise op each (what eager runs)."""
    if scale is not None:
        y = y * scale.to(y.dtype)[:, None, None] + shift.to(y.dtype)[:, None, None]
    if activation == "relu":
        return F.relu(y)
    if activation == "leaky_relu":
        return F.leaky_relu(y, negative_slope)
    if activation == "tanh":
        return torch.tanh(y)
    return y


def conv_transpose2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, stride=1, padding=0,
                     output_padding=0, groups: int = 1, dilation=1, *, activation: str = "none",
                     negative_slope: float = 0.01, scale: torch.Tensor | None = None,
                     shift: torch.Tensor | None = None) -> torch.Tensor:
    """F.conv_transpose2d (cuDNN on a GPU), then the epilogue as separate eager ops."""
    check_inputs(x, weight, bias, scale, shift, stride, padding, output_padding, groups, dilation,
                 activation, negative_slope)
    bias = None if bias is None else bias.to(x.dtype)
    y = F.conv_transpose2d(x, weight, bias, stride, padding, output_padding, groups, dilation)
    return apply_epilogue(y, scale, shift, activation, negative_slope)


@functools.lru_cache(maxsize=None)
def compiled_conv_transpose2d():
    """torch.compile of the reference: cuDNN for the convolution, one fused pointwise epilogue."""
    return torch.compile(conv_transpose2d)


def fold_batchnorm(norm: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """An inference BatchNorm as (scale, shift), fp32: norm(v) = v·scale + shift with the running statistics."""
    if norm.running_mean is None or norm.running_var is None:
        raise ConfigError("fold_batchnorm needs running statistics (track_running_stats=True).")
    inv_std = torch.rsqrt(norm.running_var.float() + norm.eps)
    gamma = norm.weight.float() if norm.weight is not None else torch.ones_like(inv_std)
    beta = norm.bias.float() if norm.bias is not None else torch.zeros_like(inv_std)
    scale = gamma * inv_std
    return scale, beta - norm.running_mean.float() * scale
