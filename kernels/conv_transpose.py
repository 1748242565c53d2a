"""2-D transposed convolution: Triton kernels (forward, input and weight gradients),
launchers, autograd, the public op and a layer.

    y = conv_transpose2d(x, weight, bias, stride, padding, output_padding,
                         activation="none", negative_slope=0.01, scale=None, shift=None, backend="auto")
    y = act((conv_transpose(x, weight) + bias) · scale + shift)

The definition is the reference, genbench.baselines.conv_transpose (x (B, C_in, H, W),
weight (C_in, C_out, kH, kW)). Supported by the kernel: stride 1 or 2, kernel sizes 3 to
5, any padding leaving an output, output_padding < stride, groups 1, dilation 1 (per
axis, so rectangular kernels and strides too), fp32/fp16/bf16, NCHW, channels-last or
any strides (y and dx come in x's memory format). Anything else raises a ConfigError with
backend="triton"; backend="auto" runs the reference for it and says so (`op_backend`,
which models record).

Forward: sub-pixel decomposition. Output row oh receives input row ih through tap kh
when oh = ih·s - p + kh. Writing oh + p = q·s + r (phase r = (oh + p) mod s), the taps
that reach it are kh = r + t·s for t = 0 .. ceil((k - r)/s) - 1, from ih = q - t. So
each of the s² phases (r_h, r_w) is a dense convolution over the lattice q with
ceil((k - r)/s)² taps, writing the output positions oh = q·s + r - p: s² implicit GEMMs
with M = B·(lattice positions), N = C_out, K = C_in·taps. No zero is inserted (a
zero-inserted input wastes 1 - 1/s² of the multiply-adds: 75% at stride 2) and every
output element is written by one program, so there are no atomics. One 1-D grid covers
every (phase, M block, N block), the phase fastest, so the s² programs reading the same
input neighbourhood run together and share it through L2. Inner loop: taps x C_in
chunks, each a (BLOCK_M x BLOCK_K) gather of x (masked at the borders) times a
(BLOCK_K x BLOCK_N) tile of the weight, repacked once per call to (kH, kW, C_in, C_out)
so that tile is contiguous (C_in·C_out·kH·kW elements: small next to the activations).
Epilogue in fp32 registers: bias, then scale/shift (a folded inference BatchNorm; the
bias is folded into the shift), then ReLU / LeakyReLU / tanh, one store in x's dtype.

Input gradient: dx = conv2d(dy', weight) with stride s and padding p -- an ordinary
strided convolution, as an implicit GEMM: M = B·H·W, N = C_in, K = C_out·kH·kW, over
the taps whose output position is in range. dy' = dy · act'(y), the activation's
derivative read from the saved output y (ReLU: y > 0; LeakyReLU: slope where y <= 0,
exact because slope >= 0 keeps the sign; tanh: 1 - y²). No pre-activation is stored.

Weight gradient: for each tap (kh, kw), dW[:, :, kh, kw] = x^T · dy' over the
reduction R = B·H·W input positions (each meets one output position per tap): a GEMM
of M = C_in, N = C_out, K = R. With few (C_in, C_out, tap) tiles -- the last layer of a
generator has C_out = 3 -- R is split across a third grid axis; each split writes its
own fp32 partial (SPLIT, kH, kW, C_in, C_out) and torch sums them: deterministic, no
atomics. Bias gradient: a torch reduction of dy' over (B, H_out, W_out).

Precision. Products go to fp32 accumulators (tl.dot). fp16/bf16 use tensor cores. fp32
uses TF32 tensor cores when allowed (`allow_tf32`; None follows
torch.backends.cudnn.allow_tf32, the switch F.conv_transpose2d obeys, so both sides of
a comparison compute alike) and exact IEEE fp32 otherwise. The Triton interpreter
always computes IEEE fp32. The fused tanh is 1 - 2/(exp(2|v|) + 1) with the sign
restored: absolute error about 1e-7 (relative error grows as |v| -> 0).

Layout. The kernels only see channels-last tensors: they gather rows of channels (x in
the forward and the weight gradient, dy' in both gradients), contiguous in that layout
(16-byte vector loads, asynchronous copies pipelined num_stages deep), and write y and dx
channels-last (rows of C_out or C_in contiguous channels). NCHW goes through that path
inside the launchers: x is laid out channels-last once per forward (2·X·s bytes moved,
the copy saved for the weight gradient), dy' comes channels-last out of the elementwise
pass that applies the activation's derivative (with no activation, one copy of dy: 2·Y·s),
and y and dx are copied back to NCHW (2·Y·s forward, 2·X·s for dx). Read in NCHW, the
gather was scalar 2-byte loads without asynchronous copies; written in NCHW, the strided
epilogue store held the 128-row tiles at 255 registers with spills (sm_90).

Block sizes: @triton.autotune on CUDA over a list per dot path (GEMM_CONFIGS: fp16/bf16,
TF32 with half the K width, IEEE fp32 on FMA units with small tiles), pruned by the output
width (no BLOCK_N wider than next_pow2(N), at least 16) and the device's shared memory per
block. Every listed configuration compiles without register spills for sm_90 and sm_80 at
the benchmarks' and the tests' specialisations (`genbench kernels --compile sm_90 sm_80`).
C_out or C_in below 16 still costs a 16-wide tile on the tensor cores (C_out = 3: 16/3 of
the useful MACs issued); the MAC count reported is the useful one. The interpreter runs
one fixed 16 x 16 x 16 configuration.

Indexing: per-example offsets are int32 (checked: one example's C·H·W < 2^31), the
batch offset int64.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from torch import nn
from torch.nn.utils import parametrize

from genbench.baselines.conv_transpose import apply_epilogue, check_inputs, fold_batchnorm, output_size, pair
from genbench.baselines.conv_transpose import conv_transpose2d as reference
from genbench.errors import ConfigError
from genbench.kernels.device import autocast_dtype, check_kernel_device, shared_memory_limit, sm_count
from genbench.kernels.device import interpreter_enabled as interpreting
from genbench.kernels.dispatch import KernelOp, OpExample, example_randn, resolve_backend
from genbench.registry import KERNELS

OP_NAME = "conv_transpose2d"
KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
SUPPORTED_STRIDES = (1, 2)
SUPPORTED_KERNELS = (3, 4, 5)
ACT_CODES = {"none": 0, "relu": 1, "leaky_relu": 2, "tanh": 3}
INTERPRETER_BLOCK = 16
WAVES = 2  # wgrad: aim for at least this many programs per SM before splitting R
WGRAD_NOMINAL_TILE = 64  # (C_in, C_out) tile assumed when choosing the R split
R_GRANULE = 128  # R per split is a multiple of every BLOCK_K
MIN_R_PER_SPLIT = 2048  # a split shorter than this costs more in partials than it gains
# (BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages) per dot path (`dot_path`): fp16/bf16 and
# TF32 on tensor cores (TF32 with half the K width: the same 128-byte operand rows), IEEE fp32
# on FMA units, whose dot holds both operands in registers: small tiles only. Every one
# compiles without spills for sm_90 and sm_80 at the benchmarks' and models' specialisations
# (`genbench kernels --compile sm_90 sm_80`).
GEMM_CONFIGS = {
    "half": ((128, 128, 64, 8, 3), (128, 128, 32, 8, 4), (128, 64, 64, 4, 4), (64, 128, 64, 4, 4),
             (128, 64, 32, 4, 4), (64, 64, 64, 4, 4), (128, 32, 64, 4, 4), (64, 32, 64, 4, 4),
             (256, 16, 64, 8, 3), (128, 16, 64, 4, 4), (64, 16, 64, 4, 4)),
    "tf32": ((128, 128, 32, 8, 3), (128, 64, 32, 4, 3), (64, 128, 32, 4, 3), (64, 64, 32, 4, 3),
             (128, 32, 32, 4, 3), (64, 32, 32, 4, 3), (64, 16, 32, 4, 3)),
    "ieee": ((64, 64, 16, 4, 2), (64, 32, 16, 4, 2), (32, 64, 16, 4, 2), (32, 32, 16, 4, 2), (64, 16, 16, 4, 2)),
    # Channel rows that are not whole 16-byte vectors (C = 100 in bf16, say) are gathered one
    # element at a time, with an address and a mask each: 64 elements per thread (128 x 64
    # or 256 x 64 tiles) spilled 0.9-3.3 KB, so these tiles hold 8 to 16.
    "unaligned": ((64, 16, 16, 4, 2), (64, 32, 16, 4, 2), (32, 32, 16, 4, 2), (128, 16, 16, 4, 2),
                  (64, 64, 16, 4, 2)),
}


# ----------------------------------------------------------------------------- kernels


@triton.jit
def _activate(v, ACT: tl.constexpr, slope):
    """The epilogue's activation on fp32 values; NaN stays NaN (divergence must show)."""
    if ACT == 1:
        v = tl.where(v < 0, 0.0, v)
    elif ACT == 2:
        v = tl.where(v < 0, v * slope, v)
    elif ACT == 3:
        t = 2.0 / (tl.exp(2.0 * tl.abs(v)) + 1.0)  # exp overflow -> t = 0 -> |tanh| = 1
        v = tl.where(v < 0, t - 1.0, 1.0 - t)
    return v


@triton.jit
def _store_tile(ptr, b, h, w, offs_c, stride_b, stride_c, stride_h, stride_w, acc, mask_m, mask_c):
    """acc (BLOCK_M, BLOCK_N) to a 4-D tensor at rows (b, :, h, w) and channels offs_c, in ptr's dtype."""
    rows = ptr + b.to(tl.int64) * stride_b + h * stride_h + w * stride_w
    tl.store(rows[:, None] + offs_c[None, :] * stride_c, acc.to(ptr.dtype.element_ty),
             mask=mask_m[:, None] & mask_c[None, :])


@triton.jit
def _conv_transpose_fwd_kernel(
    x_ptr, w_ptr, scale_ptr, shift_ptr, y_ptr,
    B, C_IN, H, W, C_OUT, H_OUT, W_OUT, Q_H, Q_W,
    stride_xb, stride_xc, stride_xh, stride_xw,
    stride_yb, stride_yc, stride_yh, stride_yw,
    pad_h, pad_w, slope,
    S_H: tl.constexpr, S_W: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr,
    ACT: tl.constexpr, HAS_SCALE: tl.constexpr, HAS_SHIFT: tl.constexpr, INPUT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """Program -> (phase, M block of the phase's lattice, N block of C_out).

    w_ptr: the weight repacked (KH, KW, C_IN, C_OUT), contiguous. Lattice (Q_H, Q_W) per
    phase, cdiv(H_OUT, S_H) x cdiv(W_OUT, S_W): positions past the output are masked.
    """
    PHASES: tl.constexpr = S_H * S_W
    pid = tl.program_id(0)
    phase = pid % PHASES
    tile = pid // PHASES
    n_blocks = tl.cdiv(C_OUT, BLOCK_N)
    pid_n = tile % n_blocks
    pid_m = tile // n_blocks
    r_h = phase // S_W
    r_w = phase % S_W
    taps_w = (KW - r_w + S_W - 1) // S_W  # ceil((k - r) / s) taps reach this phase
    taps = ((KH - r_h + S_H - 1) // S_H) * taps_w
    q0_h = (pad_h - r_h + S_H - 1) // S_H  # first lattice index whose output row is >= 0
    q0_w = (pad_w - r_w + S_W - 1) // S_W

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    b = offs_m // (Q_H * Q_W)
    rem = offs_m % (Q_H * Q_W)
    qh = q0_h + rem // Q_W
    qw = q0_w + rem % Q_W
    oh = qh * S_H + r_h - pad_h
    ow = qw * S_W + r_w - pad_w
    mask_m = (b < B) & (oh < H_OUT) & (ow < W_OUT)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < C_OUT
    offs_k = tl.arange(0, BLOCK_K)
    x_rows = x_ptr + b.to(tl.int64) * stride_xb  # (BLOCK_M,) pointers to each example

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    c_blocks = tl.cdiv(C_IN, BLOCK_K)
    for kk in range(0, taps * c_blocks):
        tap = kk // c_blocks
        ci = (kk % c_blocks) * BLOCK_K + offs_k
        mask_c = ci < C_IN
        th = tap // taps_w
        tw = tap % taps_w
        ih = qh - th
        iw = qw - tw
        inside = mask_m & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        a = tl.load(x_rows[:, None] + (ih * stride_xh + iw * stride_xw)[:, None] + ci[None, :] * stride_xc,
                    mask=inside[:, None] & mask_c[None, :], other=0.0)
        w_rows = ((r_h + th * S_H) * KW + r_w + tw * S_W) * C_IN + ci  # (BLOCK_K,)
        wt = tl.load(w_ptr + w_rows[:, None] * C_OUT + offs_n[None, :],
                     mask=mask_c[:, None] & mask_n[None, :], other=0.0)
        acc = tl.dot(a, wt, acc, input_precision=INPUT_PRECISION)

    if HAS_SCALE:
        acc = acc * tl.load(scale_ptr + offs_n, mask=mask_n, other=0.0)[None, :]
    if HAS_SHIFT:
        acc = acc + tl.load(shift_ptr + offs_n, mask=mask_n, other=0.0)[None, :]
    acc = _activate(acc, ACT, slope)
    _store_tile(y_ptr, b, oh, ow, offs_n, stride_yb, stride_yc, stride_yh, stride_yw, acc, mask_m, mask_n)


@triton.jit
def _conv_transpose_dgrad_kernel(
    dy_ptr, w_ptr, dx_ptr,
    B, C_IN, H, W, C_OUT, H_OUT, W_OUT,
    stride_gb, stride_gc, stride_gh, stride_gw,
    stride_xb, stride_xc, stride_xh, stride_xw,
    pad_h, pad_w,
    S_H: tl.constexpr, S_W: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """dx[b, ci, ih, iw] = sum_{co, kh, kw} dy[b, co, ih·S - pad + kh, iw·S - pad + kw] · w[ci, co, kh, kw].

    Program -> (M block of B·H·W, N block of C_IN); w_ptr: the weight repacked
    (KH, KW, C_OUT, C_IN), contiguous.
    """
    pid = tl.program_id(0)
    n_blocks = tl.cdiv(C_IN, BLOCK_N)
    pid_n = pid % n_blocks
    pid_m = pid // n_blocks
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    b = offs_m // (H * W)
    ih = (offs_m // W) % H
    iw = offs_m % W
    mask_m = b < B
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < C_IN
    offs_k = tl.arange(0, BLOCK_K)
    g_rows = dy_ptr + b.to(tl.int64) * stride_gb

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    c_blocks = tl.cdiv(C_OUT, BLOCK_K)
    for kk in range(0, KH * KW * c_blocks):
        tap = kk // c_blocks
        co = (kk % c_blocks) * BLOCK_K + offs_k
        mask_c = co < C_OUT
        oh = ih * S_H - pad_h + tap // KW
        ow = iw * S_W - pad_w + tap % KW
        inside = mask_m & (oh >= 0) & (oh < H_OUT) & (ow >= 0) & (ow < W_OUT)
        a = tl.load(g_rows[:, None] + (oh * stride_gh + ow * stride_gw)[:, None] + co[None, :] * stride_gc,
                    mask=inside[:, None] & mask_c[None, :], other=0.0)
        wt = tl.load(w_ptr + (tap * C_OUT + co)[:, None] * C_IN + offs_n[None, :],
                     mask=mask_c[:, None] & mask_n[None, :], other=0.0)
        acc = tl.dot(a, wt, acc, input_precision=INPUT_PRECISION)

    _store_tile(dx_ptr, b, ih, iw, offs_n, stride_xb, stride_xc, stride_xh, stride_xw, acc, mask_m, mask_n)


@triton.jit
def _conv_transpose_wgrad_kernel(
    x_ptr, dy_ptr, part_ptr,
    B, C_IN, H, W, C_OUT, H_OUT, W_OUT, R_PER_SPLIT,
    stride_xb, stride_xc, stride_xh, stride_xw,
    stride_gb, stride_gc, stride_gh, stride_gw,
    pad_h, pad_w,
    S_H: tl.constexpr, S_W: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """part[split, kh, kw, ci, co] = sum over this split's input positions r = (b, ih, iw) of
    x[b, ci, ih, iw] · dy[b, co, ih·S - pad + kh, iw·S - pad + kw] (fp32).

    Program (i, tap, split): i -> (C_IN block, C_OUT block).
    """
    pid = tl.program_id(0)
    tap = tl.program_id(1)
    split = tl.program_id(2)
    n_blocks = tl.cdiv(C_OUT, BLOCK_N)
    pid_n = pid % n_blocks
    pid_m = pid // n_blocks
    offs_ci = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    mask_ci = offs_ci < C_IN
    offs_co = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_co = offs_co < C_OUT
    kh = tap // KW
    kw = tap % KW
    R = B * H * W
    r_start = split * R_PER_SPLIT
    r_end = tl.minimum(r_start + R_PER_SPLIT, R)

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for r0 in range(r_start, r_end, BLOCK_K):
        r = r0 + tl.arange(0, BLOCK_K)
        b = r // (H * W)
        ih = (r // W) % H
        iw = r % W
        oh = ih * S_H - pad_h + kh
        ow = iw * S_W - pad_w + kw
        # Both operands masked where the pair is out of range: a NaN there must not leak in as NaN·0.
        inside = (r < r_end) & (oh >= 0) & (oh < H_OUT) & (ow >= 0) & (ow < W_OUT)
        b64 = b.to(tl.int64)
        a = tl.load(x_ptr + (b64 * stride_xb + ih * stride_xh + iw * stride_xw)[None, :]
                    + offs_ci[:, None] * stride_xc,
                    mask=mask_ci[:, None] & inside[None, :], other=0.0)  # (BLOCK_M, BLOCK_K)
        g = tl.load(dy_ptr + (b64 * stride_gb + oh * stride_gh + ow * stride_gw)[:, None]
                    + offs_co[None, :] * stride_gc,
                    mask=inside[:, None] & mask_co[None, :], other=0.0)  # (BLOCK_K, BLOCK_N)
        acc = tl.dot(a, g, acc, input_precision=INPUT_PRECISION)

    part = part_ptr + (split.to(tl.int64) * KH * KW + tap) * C_IN * C_OUT
    tl.store(part + offs_ci[:, None] * C_OUT + offs_co[None, :], acc,
             mask=mask_ci[:, None] & mask_co[None, :])


# ----------------------------------------------------------------------------- launch plans


@dataclass(frozen=True)
class Geometry:
    """Sizes of one call, per axis (height, width)."""

    batch: int
    c_in: int
    c_out: int
    size: tuple[int, int]  # input H, W
    out: tuple[int, int]  # output H_out, W_out
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]


@dataclass(frozen=True)
class Params:
    """Everything but the tensors, as given to ConvTranspose2dFunction."""

    stride: tuple[int, int]
    padding: tuple[int, int]
    output_padding: tuple[int, int]
    activation: str
    negative_slope: float
    input_precision: str  # tl.dot's: "ieee" or "tf32" (fp32 only; fp16/bf16 ignore it)
    wgrad_split: int | None  # force the weight gradient's R split (tests); None: automatic


def geometry(x: torch.Tensor, weight: torch.Tensor, p: Params) -> Geometry:
    kernel = tuple(weight.shape[2:])
    out = tuple(output_size(n, k, s, pd, op) for n, k, s, pd, op in
                zip(x.shape[2:], kernel, p.stride, p.padding, p.output_padding))
    return Geometry(x.shape[0], x.shape[1], weight.shape[1], tuple(x.shape[2:]), out, kernel, p.stride, p.padding)


def unsupported_reason(weight_shape, stride, output_padding, groups, dilation) -> str | None:
    """Why the kernel cannot run this configuration (None: it can)."""
    if groups != 1:
        return f"groups={groups} (the kernel supports groups=1)"
    if pair(dilation, "dilation") != (1, 1):
        return f"dilation={dilation} (the kernel supports dilation=1)"
    if any(s not in SUPPORTED_STRIDES for s in pair(stride, "stride")):
        return f"stride={stride} (the kernel supports stride 1 or 2)"
    if any(k not in SUPPORTED_KERNELS for k in weight_shape[2:]):
        return f"kernel size {tuple(weight_shape[2:])} (the kernel supports 3, 4 or 5)"
    return None


def memory_format(t: torch.Tensor) -> torch.memory_format:
    """channels_last when t is laid out so (and not also plain contiguous), else contiguous."""
    if t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def input_precision(dtype: torch.dtype, allow_tf32: bool | None) -> str:
    if dtype != torch.float32:
        return "tf32"  # ignored by fp16/bf16 dots; the default keeps their path unchanged
    allow = torch.backends.cudnn.allow_tf32 if allow_tf32 is None else allow_tf32
    return "tf32" if allow else "ieee"


def dot_path(kind: str, dtype: torch.dtype, precision: str, g: Geometry) -> str:
    """'half' (fp16/bf16 tensor cores), 'tf32' (fp32 on tensor cores), 'ieee' (fp32 FMA), or
    'unaligned': tensor cores gathering rows of channels that are not whole 16-byte vectors
    (x's C_in in the forward, dy's C_out in the input gradient), one element at a time
    without asynchronous copies (see GEMM_CONFIGS). The weight gradient's tiles stay small
    on the gathered side and compile clean either way."""
    if dtype == torch.float32 and precision != "tf32":
        return "ieee"
    gathered = {"fwd": g.c_in, "dgrad": g.c_out}.get(kind)
    if gathered is not None and gathered * dtype.itemsize % 16:
        return "unaligned"
    return "half" if dtype != torch.float32 else "tf32"


def smem_bytes(config: triton.Config, itemsize: int) -> int:
    """The pipelined operand tiles: num_stages x (A tile + B tile)."""
    k = config.kwargs
    return config.num_stages * (k["BLOCK_M"] + k["BLOCK_N"]) * k["BLOCK_K"] * itemsize


def fits(configs, itemsize: int, limit: int, **widest: int) -> list:
    """Configurations within the device's shared memory and no wider than `widest` (per
    block name: the GEMM extent rounded up to a power of two, at least 16); never empty:
    the smallest one when none fits."""
    keep = [c for c in configs if smem_bytes(c, itemsize) <= limit
            and all(c.kwargs[name] <= max(16, triton.next_power_of_2(n)) for name, n in widest.items())]
    return keep or [min(configs, key=lambda c: smem_bytes(c, itemsize))]


def prune_configs(configs, named_args, **kwargs):
    """fwd and dgrad: tiles no wider than the GEMM's N (C_out, or C_in for dgrad), within shared memory."""
    out = named_args["y_ptr" if "y_ptr" in named_args else "dx_ptr"]
    n = named_args["C_OUT"] if "y_ptr" in named_args else named_args["C_IN"]
    return fits(configs, out.element_size(), shared_memory_limit(out.device), BLOCK_N=n)


def prune_wgrad(configs, named_args, **kwargs):
    """wgrad tiles (C_in x C_out): no wider than either, within shared memory, at most 128 rows
    of C_in (the 256 x 16 tile, meant for the forward's thin outputs, spilled here on sm_80)."""
    x = named_args["x_ptr"]
    configs = [c for c in configs if c.kwargs["BLOCK_M"] <= 128]
    return fits(configs, x.element_size(), shared_memory_limit(x.device),
                BLOCK_M=named_args["C_IN"], BLOCK_N=named_args["C_OUT"])


KEY = ["B", "C_IN", "H", "W", "C_OUT", "H_OUT", "W_OUT", "S_H", "S_W", "KH", "KW", "INPUT_PRECISION"]
KERNELS_BY_KIND = {"fwd": _conv_transpose_fwd_kernel, "dgrad": _conv_transpose_dgrad_kernel,
                   "wgrad": _conv_transpose_wgrad_kernel}


@functools.cache
def autotuned(kind: str, path: str):
    """The kind ("fwd", "dgrad", "wgrad") of kernel under @triton.autotune over the dot path's
    configurations (CUDA only; built on first use)."""
    configs = [triton.Config({"BLOCK_M": m, "BLOCK_N": n, "BLOCK_K": k}, num_warps=w, num_stages=s)
               for m, n, k, w, s in GEMM_CONFIGS[path]]
    key = KEY + (["ACT"] if kind == "fwd" else [])
    prune = prune_wgrad if kind == "wgrad" else prune_configs
    return triton.autotune(configs, key=key, prune_configs_by={"early_config_prune": prune})(KERNELS_BY_KIND[kind])


def launch(kind: str, grid_of, args: tuple, meta: dict, g: Geometry, dtype: torch.dtype) -> None:
    """Fixed 16x16x16 blocks under the interpreter, autotuned ones on CUDA."""
    if interpreting():
        block = {"BLOCK_M": INTERPRETER_BLOCK, "BLOCK_N": INTERPRETER_BLOCK, "BLOCK_K": INTERPRETER_BLOCK}
        KERNELS_BY_KIND[kind][grid_of(block)](*args, **meta, **block)
    else:
        autotuned(kind, dot_path(kind, dtype, meta["INPUT_PRECISION"], g))[grid_of](*args, **meta)


def in_format(t: torch.Tensor, fmt: torch.memory_format) -> torch.Tensor:
    """A kernel's channels-last output in the caller's memory format (NCHW: one transposing copy)."""
    return t if fmt == torch.channels_last else t.contiguous(memory_format=fmt)


def channels_last(t: torch.Tensor) -> torch.Tensor:
    """t with its channels innermost (stride 1), as the kernels read x and dy: t itself when
    it is so, else a channels-last copy (one read and one write of t)."""
    if t.stride(1) == 1 or t.shape[1] == 1:
        return t
    return t.contiguous(memory_format=torch.channels_last)


def check_kernel_inputs(x, weight, bias, scale, shift, p: Params, groups, dilation) -> None:
    check_inputs(x, weight, bias, scale, shift, p.stride, p.padding, p.output_padding, groups, dilation,
                 p.activation, p.negative_slope)
    reason = unsupported_reason(weight.shape, p.stride, p.output_padding, groups, dilation)
    if reason:
        raise ConfigError(f"The Triton conv_transpose2d kernel does not handle {reason}; "
                          "use backend='torch' (or 'auto', which runs the reference for it).")
    if x.dtype not in KERNEL_DTYPES or weight.dtype != x.dtype:
        raise ConfigError(f"The Triton conv_transpose2d kernel takes x and weight of one dtype among fp32/fp16/"
                          f"bf16; got x {x.dtype}, weight {weight.dtype}. Cast them, or use backend='torch'.")
    check_kernel_device(OP_NAME, x)
    out_example = weight.shape[1] * math.prod(geometry(x, weight, p).out)
    if x[:1].numel() >= 2**31 or out_example >= 2**31 or weight.numel() >= 2**31:
        raise ConfigError("conv_transpose2d: one example of x or y, or the weight, has 2^31 elements or more; "
                          "the kernel indexes within an example in int32. Use backend='torch'.")


def epilogue_vectors(weight, bias, scale, shift) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(scale, shift) in fp32 for the kernel, with the bias folded in: (v + b)·s + t = v·s + (b·s + t)."""
    if scale is None:
        return None, (None if bias is None else bias.float().contiguous())
    scale, shift = scale.float().contiguous(), shift.float()
    return scale, (shift if bias is None else bias.float() * scale + shift).contiguous()


# ----------------------------------------------------------------------------- launchers


def conv_transpose_forward(x, weight, bias, scale, shift, p: Params) -> tuple[torch.Tensor, torch.Tensor]:
    """(y, x_cl): y = act((x ⊛ᵀ weight + bias)·scale + shift) in x's dtype and memory format,
    and x laid out channels-last as the kernel read it (the weight gradient reads it again)."""
    g, y_format = geometry(x, weight, p), memory_format(x)
    y = torch.empty((g.batch, g.c_out, *g.out), device=x.device, dtype=x.dtype, memory_format=torch.channels_last)
    if y.numel() == 0:
        return y.to(memory_format=y_format), x
    if g.c_in == 0:  # no input channels: the epilogue of zero
        return reference(x.new_zeros((g.batch, 1, *g.size)), weight.new_zeros((1, g.c_out, *g.kernel)), bias,
                         p.stride, p.padding, p.output_padding, activation=p.activation,
                         negative_slope=p.negative_slope, scale=scale, shift=shift).to(memory_format=y_format), x
    x = channels_last(x)
    w_packed = weight.permute(2, 3, 0, 1).contiguous()  # (kH, kW, C_in, C_out)
    scale_v, shift_v = epilogue_vectors(weight, bias, scale, shift)
    q = tuple(triton.cdiv(o, s) for o, s in zip(g.out, g.stride))
    m = g.batch * q[0] * q[1]
    phases = g.stride[0] * g.stride[1]
    args = (x, w_packed, scale_v if scale_v is not None else y, shift_v if shift_v is not None else y, y,
            g.batch, g.c_in, *g.size, g.c_out, *g.out, *q, *x.stride(), *y.stride(), *g.padding,
            float(p.negative_slope))
    meta = {"S_H": g.stride[0], "S_W": g.stride[1], "KH": g.kernel[0], "KW": g.kernel[1],
            "ACT": ACT_CODES[p.activation], "HAS_SCALE": scale_v is not None, "HAS_SHIFT": shift_v is not None,
            "INPUT_PRECISION": p.input_precision}
    launch("fwd", lambda b: (phases * triton.cdiv(m, b["BLOCK_M"]) * triton.cdiv(g.c_out, b["BLOCK_N"]),),
           args, meta, g, x.dtype)
    return in_format(y, y_format), x


def conv_transpose_dgrad(dy, weight, x_shape, x_format, p: Params) -> torch.Tensor:
    """dx (B, C_in, H, W) in the input's memory format, dy's dtype; dy channels-last (stride 1
    over channels: `activation_grad` lays it out so)."""
    g = geometry(torch.empty(x_shape, device="meta"), weight, p)
    dx = torch.empty(x_shape, device=dy.device, dtype=dy.dtype, memory_format=torch.channels_last)
    if dx.numel() == 0 or g.c_out == 0:
        return in_format(dx.zero_(), x_format)
    w_packed = weight.to(dy.dtype).permute(2, 3, 1, 0).contiguous()  # (kH, kW, C_out, C_in)
    m = g.batch * g.size[0] * g.size[1]
    args = (dy, w_packed, dx, g.batch, g.c_in, *g.size, g.c_out, *g.out, *dy.stride(), *dx.stride(), *g.padding)
    meta = {"S_H": g.stride[0], "S_W": g.stride[1], "KH": g.kernel[0], "KW": g.kernel[1],
            "INPUT_PRECISION": p.input_precision}
    launch("dgrad", lambda b: (triton.cdiv(m, b["BLOCK_M"]) * triton.cdiv(g.c_in, b["BLOCK_N"]),), args, meta, g,
           dy.dtype)
    return in_format(dx, x_format)


def wgrad_split(g: Geometry, requested: int | None, device: torch.device | None = None) -> tuple[int, int]:
    """(splits, R per split) for the weight gradient's reduction over R = B·H·W on `device`."""
    r = g.batch * g.size[0] * g.size[1]
    if requested is not None:
        split = max(1, requested)
        granule = INTERPRETER_BLOCK if interpreting() else R_GRANULE
    elif interpreting():
        split, granule = 1, INTERPRETER_BLOCK
    else:
        sms = sm_count(device)
        tiles = triton.cdiv(g.c_in, WGRAD_NOMINAL_TILE) * triton.cdiv(g.c_out, WGRAD_NOMINAL_TILE) * g.kernel[0] * g.kernel[1]
        split = max(1, min(triton.cdiv(WAVES * sms, tiles), r // MIN_R_PER_SPLIT))
        granule = R_GRANULE
    per_split = triton.cdiv(triton.cdiv(r, split), granule) * granule
    return triton.cdiv(r, per_split), per_split


def conv_transpose_wgrad(x, dy, weight_shape, p: Params) -> torch.Tensor:
    """dW (C_in, C_out, kH, kW) in fp32 (the caller casts to the weight's dtype); x and dy
    channels-last (as the forward and `activation_grad` lay them out)."""
    g = geometry(x, torch.empty(weight_shape, device="meta"), p)
    kh, kw = g.kernel
    r = g.batch * g.size[0] * g.size[1]
    if r == 0 or g.c_in == 0 or g.c_out == 0:
        return torch.zeros(weight_shape, device=x.device, dtype=torch.float32)
    split, per_split = wgrad_split(g, p.wgrad_split, x.device)
    part = torch.empty((split, kh, kw, g.c_in, g.c_out), device=x.device, dtype=torch.float32)
    args = (x, dy, part, g.batch, g.c_in, *g.size, g.c_out, *g.out, per_split, *x.stride(), *dy.stride(), *g.padding)
    meta = {"S_H": g.stride[0], "S_W": g.stride[1], "KH": kh, "KW": kw, "INPUT_PRECISION": p.input_precision}
    launch("wgrad", lambda b: (triton.cdiv(g.c_in, b["BLOCK_M"]) * triton.cdiv(g.c_out, b["BLOCK_N"]), kh * kw, split),
           args, meta, g, x.dtype)
    total = part[0] if split == 1 else part.sum(dim=0)  # splits summed in order: deterministic
    return total.permute(2, 3, 0, 1)  # (C_in, C_out, kH, kW)


def activation_grad(dy: torch.Tensor, y: torch.Tensor | None, activation: str, slope: float) -> torch.Tensor:
    """dy · act'(pre-activation), from the saved output y (see the module docstring), laid out
    channels-last for the gradient kernels: the layout change rides on the elementwise pass
    (no activation: dy itself when it is channels-last, else one copy)."""
    if activation == "none":
        return channels_last(dy)
    g = torch.empty(dy.shape, device=dy.device, dtype=dy.dtype, memory_format=torch.channels_last)
    if activation == "relu":
        return torch.where(y > 0, dy, dy.new_zeros(()), out=g)
    if activation == "leaky_relu":
        return torch.where(y > 0, dy, dy * slope, out=g)
    yf = y.float()  # tanh
    return g.copy_(dy.float() * (1.0 - yf * yf))


# ----------------------------------------------------------------------------- autograd


class ConvTranspose2dFunction(torch.autograd.Function):
    """Saves x (channels-last, as the kernels read it), the weight and (with an activation) the
    output y; no pre-activation."""

    @staticmethod
    def forward(ctx, x, weight, bias, scale, shift, p: Params):
        y, x_cl = conv_transpose_forward(x, weight, bias, scale, shift, p)
        ctx.save_for_backward(x_cl, weight, y if p.activation != "none" else None)
        ctx.p, ctx.bias_dtype = p, None if bias is None else bias.dtype
        ctx.x_format = memory_format(x)
        return y

    @staticmethod
    def backward(ctx, dy):
        x, weight, y = ctx.saved_tensors
        p = ctx.p
        g = activation_grad(dy, y, p.activation, p.negative_slope)
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dx = conv_transpose_dgrad(g, weight, x.shape, ctx.x_format, p)
        if ctx.needs_input_grad[1]:
            dw = conv_transpose_wgrad(x, g.to(x.dtype), weight.shape, p).to(weight.dtype)
        if ctx.needs_input_grad[2]:
            db = g.sum(dim=(0, 2, 3), dtype=torch.float32).to(ctx.bias_dtype)
        return dx, dw, db, None, None, None


# ----------------------------------------------------------------------------- public op


def triton_conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups: int = 1,
                            dilation=1, *, activation: str = "none", negative_slope: float = 0.01,
                            scale=None, shift=None, allow_tf32: bool | None = None,
                            wgrad_split: int | None = None):
    """The Triton implementation (forward, and backward through autograd).

    scale/shift (a folded BatchNorm) are for inference: with them, nothing may require a
    gradient. allow_tf32 (fp32 only): None follows torch.backends.cudnn.allow_tf32.
    """
    dtype = autocast_dtype(x.device)
    if dtype is not None:  # cast as autocast does for F.conv_transpose2d: every float type but float64
        x, weight = (t if t.dtype == torch.float64 else t.to(dtype) for t in (x, weight))
    p = Params(pair(stride, "stride"), pair(padding, "padding"), pair(output_padding, "output_padding"),
               activation, float(negative_slope), input_precision(x.dtype, allow_tf32), wgrad_split)
    check_kernel_inputs(x, weight, bias, scale, shift, p, groups, dilation)
    needs_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, weight, bias))
    if scale is not None and (needs_grad or scale.requires_grad or shift.requires_grad):
        raise ConfigError("conv_transpose2d: the fused BatchNorm epilogue (scale/shift) is for inference; "
                          "run under torch.no_grad(), or apply the BatchNorm as its own op when training.")
    if not needs_grad:
        return conv_transpose_forward(x, weight, bias, scale, shift, p)[0]
    return ConvTranspose2dFunction.apply(x, weight, bias, scale, shift, p)


def op_backend(backend: str, device, weight_shape, stride=1, output_padding=0, groups: int = 1,
               dilation=1) -> str:
    """The backend a call runs: resolve_backend, except that "auto" takes the reference for a
    configuration the kernel does not handle (and "triton" refuses it)."""

    resolved = resolve_backend(OP_NAME, backend, device)
    reason = unsupported_reason(weight_shape, stride, output_padding, groups, dilation)
    if resolved == "triton" and reason:
        if backend == "triton":
            raise ConfigError(f"backend='triton': the conv_transpose2d kernel does not handle {reason}. "
                              "Use backend='auto' (the reference runs it, and the record says torch) or 'torch'.")
        return "torch"
    return resolved


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups: int = 1, dilation=1, *,
                     activation: str = "none", negative_slope: float = 0.01, scale=None, shift=None,
                     backend: str = "auto"):
    """act((conv_transpose2d(x, weight) + bias)·scale + shift); see the module docstring.

    backend: "auto" (Triton on CUDA where the kernel handles the configuration, else the
    reference), "triton", or "torch".
    """
    impl = {"triton": triton_conv_transpose2d, "torch": reference}[
        op_backend(backend, x.device, weight.shape, stride, output_padding, groups, dilation)]
    return impl(x, weight, bias, stride, padding, output_padding, groups, dilation, activation=activation,
                negative_slope=negative_slope, scale=scale, shift=shift)


class ConvTranspose2d(nn.ConvTranspose2d):
    """nn.ConvTranspose2d (same parameters and state) running through `conv_transpose2d`,
    with the following BatchNorm and activation folded in where that is exact.

    Without `norm`: bias + activation fused into the kernel's epilogue. With a BatchNorm
    `norm`: on the Triton backend, in eval mode without gradients, the running statistics
    are folded into the epilogue (conv + BN + activation, one kernel). Otherwise -- in
    training (batch statistics), with gradients, or on the torch backend -- the BatchNorm
    module and then the activation run as their own torch ops after the convolution: on
    the torch backend that is op for op the nn.Sequential(conv, norm, act) this layer
    replaces (folding would compute the same function with other rounding).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, output_padding=0,
                 bias: bool = True, *, norm: nn.BatchNorm2d | None = None, activation: str = "none",
                 negative_slope: float = 0.01, backend: str = "auto"):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, output_padding, bias=bias)
        if backend not in ("auto", "triton", "torch"):
            raise ConfigError(f"Unknown backend {backend!r}; choose one of auto, triton, torch.")
        if activation not in ACT_CODES:
            raise ConfigError(f"ConvTranspose2d: unknown activation {activation!r}; choose one of {', '.join(ACT_CODES)}.")
        self.norm, self.activation, self.negative_slope, self.backend = norm, activation, negative_slope, backend

    def resolved_backend(self, device) -> str:
        # The weight's shape without reading `.weight`: under spectral norm each read runs
        # a power iteration (and updates its state in training mode).
        weight = (self.parametrizations.weight.original if parametrize.is_parametrized(self, "weight")
                  else self.weight)
        return op_backend(self.backend, device, weight.shape, self.stride, self.output_padding,
                          self.groups, self.dilation)

    def forward(self, x: torch.Tensor, output_size=None) -> torch.Tensor:
        if output_size is not None:
            raise ConfigError("genbench ConvTranspose2d takes no output_size; set output_padding instead.")
        backend = self.resolved_backend(x.device)
        conv = functools.partial(conv_transpose2d, x, self.weight, self.bias, self.stride, self.padding,
                                 self.output_padding, self.groups, self.dilation,
                                 negative_slope=self.negative_slope, backend=backend)
        if self.norm is None:
            return conv(activation=self.activation)
        needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (x, *self.parameters()))
        if backend == "triton" and not self.norm.training and self.norm.track_running_stats and not needs_grad:
            scale, shift = fold_batchnorm(self.norm)
            return conv(activation=self.activation, scale=scale, shift=shift)
        return apply_epilogue(self.norm(conv()), None, None, self.activation, self.negative_slope)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, activation={self.activation}, backend={self.backend}"


def examples(dtype, device, generator):
    """The DCGAN layer geometry (k4 s2 p1) with bias and a fused ReLU on odd sizes, channels-last
    too; k3 stride 1 with a tanh and no bias."""

    def tensors(*shape):
        return example_randn(generator, *shape, dtype=dtype, device=device)

    x, weight, bias = tensors(2, 6, 5, 7), tensors(6, 4, 4, 4) * 0.3, tensors(4)
    k4s2 = {"weight": weight, "bias": bias, "stride": 2, "padding": 1, "activation": "relu"}
    grads = ("x", "weight", "bias")
    return [
        OpExample("k4 s2 p1 relu", {"x": x, **k4s2}, grads),
        OpExample("k4 s2 p1 relu channels-last", {"x": x.contiguous(memory_format=torch.channels_last), **k4s2}, grads),
        OpExample("k3 s1 tanh", {"x": tensors(1, 3, 4, 3), "weight": tensors(3, 5, 3, 3) * 0.3,
                                 "activation": "tanh"}, ("x", "weight")),
    ]


def _register() -> None:
    KERNELS.register(OP_NAME, KernelOp(
        name=OP_NAME, function=conv_transpose2d, reference=reference, triton=triton_conv_transpose2d,
        examples=examples,
        summary="2-D transposed convolution by sub-pixel phases, fused bias/BN/activation epilogue, fwd+bwd",
    ))


_register()
