"""Fused GroupNorm (+ per-example scale-shift) + SiLU: Triton kernels (forward, backward,
parameter-gradient reduction), launchers, autograd, the public op and a layer.

    y = group_norm_silu(x, num_groups, weight=None, bias=None, eps=1e-5, scale=None, shift=None,
                        activation="silu", backend="auto")
    y = act(GroupNorm(x)·(1 + scale) + shift),   GroupNorm(x) = (x - mean)·rstd·weight + bias

The definition is the reference, genbench.baselines.group_norm_silu: x (B, C, *spatial),
statistics per (example, group) over C/G channels and every position S = prod(spatial);
weight, bias (C,); scale, shift (B, C) (the U-Net's adaptive group norm). Supported by the
kernel: x fp32/fp16/bf16 (parameters any float dtype, read as fp32), any number of
spatial dims (3-D, 4-D, 5-D x), any strides whose spatial dims merge into one stride --
NCHW, channels-last (NHWC, NDHWC), channel slices, expanded gradients -- otherwise x is
copied to contiguous first. y and dx come in x's dtype and memory format. Under autocast
the kernel keeps x's dtype (arithmetic is fp32 inside); the reference follows
F.group_norm's autocast policy (fp32 output).

Canonical view. x is addressed as (B, C, S) with strides (sb, sc, ss): NCHW has ss = 1,
channels-last sc = 1. A program owns BLOCK_G whole groups of one example (BLOCK_G·CG
channels, CG = C/G rounded up to a power of two inside the tile) and walks S in tiles of
(BLOCK_G·CG) x BLOCK_S elements. The same code serves both layouts; Triton specialises
the unit stride, so loads are vectorised along S for NCHW and along C for channels-last.
For channels-last the plan wants enough groups per program for tile rows of 64
contiguous bytes (two 32-byte sectors): a one-tile candidate with rows of at least 16
bytes and a looped one with 64-byte rows are both proposed and autotuning picks. For
NCHW a group is one contiguous run.

Statistics (fp32, shifted two-pass + Chan). Every value is first shifted by a pivot K,
the group's first element: v = x - K is exact for x near K (Sterbenz), so an offset such
as 1e4 + randn costs no precision. Per tile, per group: mean m_t = sum(v)/n_t, then
M2_t = sum((v - m_t)^2) over the tile held in registers (two passes over registers, one
over memory). Tiles, and programs, combine by Chan's parallel formula
    n = n_a + n_b,  m = m_a + d·n_b/n,  M2 = M2_a + M2_b + d²·n_a·n_b/n,  d = m_b - m_a.
The mean is kept as the unevaluated sum K + m (saved as `mean` (B, G, 2) = (K, m)) and
x - mean is evaluated as (x - K) - m in forward and backward; rstd = 1/sqrt(M2/n + eps)
(biased variance, as nn.GroupNorm). Sums are fp32 in a fixed order: deterministic.

Forward, three plans (`plan`):
  one tile  the program's groups fit in one register tile (group padded to powers of two
            <= 16384 elements; every U-Net group at 32 px, e.g. 8 ch x 32x32): x is read
            once, statistics and output from registers. Traffic: read x, write y.
  looped    larger groups: pass 1 over the group's tiles (statistics), pass 2 re-reads
            each tile and writes y. The re-read follows within the same program, mostly
            from L2. Traffic: read x twice (once from DRAM when L2 holds the program's
            groups), write y.
  split     few (example, group) pairs for the SMs and large groups (>= 32768 elements,
            e.g. 16 ch x 64x64 at batch 1): the statistics pass is split over SPLIT
            programs per group, each writing its chunk's (m, M2) (B·G·SPLIT·8 bytes, no
            atomics); the apply kernel's programs each combine all SPLIT partials of their
            groups by Chan in a fixed order (deterministic), the first writes the saved
            statistics, and each normalises its chunk. Traffic: read x twice, write y.
  Plus per-channel parameters (2·C), per-example scale/shift (2·B·C), saved statistics
  (B·G·12 bytes). The epilogue folds everything per channel: u = (v - m)·(rstd·w·(1+s))
  + (b·(1+s) + t), then y = u·sigmoid(u), one store in x's dtype.

Backward. With x̂ = (x - mean)·rstd, u as above, du = dy·act'(u) (SiLU: σ(u)(1 + u(1 - σ(u))),
recomputed from x and the saved statistics -- no activation is saved) and per (example,
channel) sums over positions A = Σ du, Bx = Σ du·x̂:
    dshift = A,  dscale = w·Bx + b·A,  dbias = Σ_b (1+s)·A,  dweight = Σ_b (1+s)·Bx,
    dx = rstd·(du·w(1+s) - c1 - x̂·c2),  c1 = Σ_{c in g} w(1+s)·A / N,  c2 = Σ_{c in g} w(1+s)·Bx / N.
The same three plans: one tile (x and dy read once, <= 8192 elements: two tiles live),
looped (pass 1 sums A, Bx; pass 2 re-reads x, dy and writes dx), split (partial A, Bx per
chunk, then a dx kernel summing the SPLIT partials in order). Every plan writes A, Bx per
(example, chunk, channel) in fp32 (B·SPLIT·C·8 bytes); a small kernel over channel
blocks then sums them over examples and chunks in a fixed order into dweight, dbias and
writes dscale, dshift: deterministic, no atomics. Traffic: read x and dy (twice when
looped or split), write dx; plus parameters, 2·B·C·8 bytes of partials, the parameter
gradients. Autograd saves x, weight, bias, scale, shift, mean (B, G, 2) and rstd (B, G).

Block sizes: on CUDA @triton.autotune over the few configurations `plan` proposes for
the shape (<= 4: groups per program, one tile or looped, warps; the plan is cached per
shape); forced configurations (`config=`, tests) and the interpreter run the first. Where
nothing is padded (C/G a power of two, G a multiple of the groups per program, S a
multiple of the tile: every U-Net layer) the kernels compile without masks (EVEN).
Indexing: one example's C·S elements must be < 2^31 (int32), the batch offset is int64.

Numerics beyond the statistics: all arithmetic is fp32 (y rounded once to x's dtype; dx
likewise; parameter gradients accumulated in fp32 and rounded to the parameter's dtype).
On CUDA σ(u) = rcp.approx.ftz(1 + ex2.approx.ftz(-u·log2 e)) (inline PTX, one MUFU op
each, <= 2 ulp: about 2e-7 relative), so the kernels cost ~16 (forward) and ~25
(backward) SASS instructions per element on sm_90, about 35-40% of the H100's issue rate
at 3 TB/s in bf16 -- memory-bound with room to spare; the
interpreter computes 1/(1 + exp(-u)) in IEEE fp32. u -> -inf gives y = -0 and no NaN; a
NaN in x makes its (example, group) NaN, as in the reference, and nothing else.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from torch import nn

from genbench.baselines.groupnorm_silu import check_inputs
from genbench.baselines.groupnorm_silu import group_norm_silu as reference
from genbench.errors import ConfigError
from genbench.kernels.device import check_kernel_device
from genbench.kernels.device import sm_count as device_sms
from genbench.kernels.device import interpreter_enabled as interpreting
from genbench.kernels.dispatch import KernelOp, OpExample, dispatch, example_randn, resolve_backend
from genbench.registry import KERNELS


OP_NAME = "group_norm_silu"
KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
ACT_CODES = {"none": 0, "silu": 1}
ONE_TILE_MAX = {"fwd": 16384, "bwd": 8192}  # elements of a register tile holding whole groups
TILE_TARGET = 4096  # elements per program tile: enough bytes in flight per program
ROW_BYTES = 64  # channels-last: contiguous bytes per tile row (two 32-byte sectors)
SPLIT_MIN_GROUP = 32768  # only groups this large are split across programs
INTERPRETER_SMS = 4  # nominal SM count under the interpreter (no split unless forced)
PARAM_BLOCK_B, PARAM_BLOCK_C = 64, 16  # parameter-gradient kernel: (examples, channels) per tile


# ----------------------------------------------------------------------------- device helpers


@triton.jit
def _program_groups(G, SPLIT, BLOCK_G: tl.constexpr):
    """This program's (example b, first group g0, chunk `split` of S, its groups, their mask,
    their (example, group) rows): programs run over (example, block of groups, chunk), the
    chunk fastest."""
    pid = tl.program_id(0)
    split = pid % SPLIT
    rest = pid // SPLIT
    n_gb = tl.cdiv(G, BLOCK_G)
    b = rest // n_gb
    g0 = (rest % n_gb) * BLOCK_G
    offs_g = g0 + tl.arange(0, BLOCK_G)
    return b, g0, split, offs_g, offs_g < G, b * G + offs_g


@triton.jit
def _channels(g0, C, G, CG: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_CG: tl.constexpr):
    """Channels of groups g0 .. g0 + BLOCK_G - 1 as a (BLOCK_G·BLOCK_CG,) vector ordered
    (group, channel in group), and their mask (padding channels, groups past G)."""
    ch = tl.arange(0, BLOCK_G * BLOCK_CG)
    if CG == BLOCK_CG:  # contiguous channel run: the compiler sees it (vector loads in channels-last)
        c = g0 * CG + ch
        mask = c < C
    else:
        gi = ch // BLOCK_CG
        ci = ch % BLOCK_CG
        c = (g0 + gi) * CG + ci
        mask = (ci < CG) & (g0 + gi < G)
    return c, mask


@triton.jit
def _group_sum(v, BLOCK_G: tl.constexpr, BLOCK_CG: tl.constexpr):
    """(BLOCK_G·BLOCK_CG,) per channel -> (BLOCK_G,) per group."""
    return tl.sum(tl.reshape(v, (BLOCK_G, BLOCK_CG)), axis=1)


@triton.jit
def _per_channel(v, BLOCK_G: tl.constexpr, BLOCK_CG: tl.constexpr):
    """(BLOCK_G,) per group -> (BLOCK_G·BLOCK_CG,) per channel."""
    return tl.reshape(tl.broadcast_to(v[:, None], (BLOCK_G, BLOCK_CG)), (BLOCK_G * BLOCK_CG,))


@triton.jit
def _load_tile(base, c, mask_c, offs_s, mask_s, stride_c, stride_s, EVEN: tl.constexpr):
    """A (channels, BLOCK_S) tile as fp32, 0 where masked (EVEN: nothing is)."""
    ptrs = base + c[:, None] * stride_c + offs_s[None, :] * stride_s
    if EVEN:
        return tl.load(ptrs).to(tl.float32)
    return tl.load(ptrs, mask=mask_c[:, None] & mask_s[None, :], other=0.0).to(tl.float32)


@triton.jit
def _zero_outside(v, mask, EVEN: tl.constexpr):
    """v, with 0 where masked (padding must not reach a sum, nor overflow an exp)."""
    if EVEN:
        return v
    return tl.where(mask, v, 0.0)


@triton.jit
def _tile_moments(v, mask, n_t, BLOCK_G: tl.constexpr, BLOCK_CG: tl.constexpr, EVEN: tl.constexpr):
    """Per group: mean and M2 of the tile's shifted values v (0 where masked), n_t values each;
    and the deviations v - mean (0 where masked)."""
    m_t = _group_sum(tl.sum(v, axis=1), BLOCK_G, BLOCK_CG) / tl.maximum(n_t, 1.0)
    d = _zero_outside(v - _per_channel(m_t, BLOCK_G, BLOCK_CG)[:, None], mask, EVEN)
    return m_t, _group_sum(tl.sum(d * d, axis=1), BLOCK_G, BLOCK_CG), d


@triton.jit
def _chan(n_a, m_a, M2_a, n_b, m_b, M2_b):
    """Chan et al.'s parallel combination of (count, mean, M2)."""
    n = n_a + n_b
    frac = n_b / tl.maximum(n, 1.0)
    delta = m_b - m_a
    return n, m_a + delta * frac, M2_a + M2_b + delta * delta * n_a * frac


@triton.jit
def _stats_loop(x_b, c, mask_c, kc, n_ch, s_lo, s_hi, stride_c, stride_s,
                BLOCK_G: tl.constexpr, BLOCK_CG: tl.constexpr, BLOCK_S: tl.constexpr, EVEN: tl.constexpr):
    """(n, mean, M2) per group of x - K over positions [s_lo, s_hi), tile by tile."""
    n = tl.zeros((BLOCK_G,), dtype=tl.float32)
    m = tl.zeros((BLOCK_G,), dtype=tl.float32)
    M2 = tl.zeros((BLOCK_G,), dtype=tl.float32)
    for s0 in range(s_lo, s_hi, BLOCK_S):
        offs_s = s0 + tl.arange(0, BLOCK_S)
        mask_s = offs_s < s_hi
        mask = mask_c[:, None] & mask_s[None, :]
        v = _zero_outside(_load_tile(x_b, c, mask_c, offs_s, mask_s, stride_c, stride_s, EVEN) - kc[:, None],
                          mask, EVEN)
        n_t = n_ch * tl.minimum(s_hi - s0, BLOCK_S).to(tl.float32)
        m_t, M2_t, _ = _tile_moments(v, mask, n_t, BLOCK_G, BLOCK_CG, EVEN)
        n, m, M2 = _chan(n, m, M2, n_t, m_t, M2_t)
    return n, m, M2


@triton.jit
def _channel_affine(b, c, mask_c, w_ptr, bias_ptr, scale_ptr, shift_ptr, stride_sb, stride_sc, stride_tb, stride_tc,
                    HAS_W: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_SCALE: tl.constexpr, HAS_SHIFT: tl.constexpr):
    """Per channel (fp32): w, b, 1 + s, and the folded gain = w·(1+s), offset = b·(1+s) + t,
    so that u = x̂·gain + offset."""
    one = tl.full(c.shape, 1.0, tl.float32)
    w = tl.load(w_ptr + c, mask=mask_c, other=0.0).to(tl.float32) if HAS_W else one
    bias = tl.load(bias_ptr + c, mask=mask_c, other=0.0).to(tl.float32) if HAS_BIAS else one * 0.0
    if HAS_SCALE:
        f = 1.0 + tl.load(scale_ptr + b * stride_sb + c * stride_sc, mask=mask_c, other=0.0).to(tl.float32)
    else:
        f = one
    t = tl.load(shift_ptr + b * stride_tb + c * stride_tc, mask=mask_c, other=0.0).to(tl.float32) \
        if HAS_SHIFT else one * 0.0
    return w, bias, f, w * f, bias * f + t


@triton.jit
def _sigmoid(u, FAST: tl.constexpr):
    """1 / (1 + exp(-u)); u -> -inf gives 0 (exp overflows to inf), never NaN from finite u.
    FAST (CUDA): ex2.approx.ftz and rcp.approx.ftz, one MUFU op each (<= 2 ulp); else exact
    IEEE operations (the interpreter has no inline PTX)."""
    if FAST:
        e = tl.inline_asm_elementwise("ex2.approx.ftz.f32 $0, $1;", "=r,r", [u * -1.4426950408889634],
                                      dtype=tl.float32, is_pure=True, pack=1)
        return tl.inline_asm_elementwise("rcp.approx.ftz.f32 $0, $1;", "=r,r", [1.0 + e],
                                         dtype=tl.float32, is_pure=True, pack=1)
    return 1.0 / (1.0 + tl.exp(-u))


@triton.jit
def _activate(u, ACT: tl.constexpr, FAST: tl.constexpr):
    if ACT == 1:  # u·σ(u)
        u = u * _sigmoid(u, FAST)
    return u


@triton.jit
def _activation_grad(dy, u, ACT: tl.constexpr, FAST: tl.constexpr):
    if ACT == 1:  # d(u·σ(u))/du = σ(u)·(1 + u·(1 - σ(u)))
        sig = _sigmoid(u, FAST)
        dy = dy * sig * (1.0 + u * (1.0 - sig))
    return dy


@triton.jit
def _store_tile(base, c, mask_c, offs_s, mask_s, stride_c, stride_s, value, EVEN: tl.constexpr):
    ptrs = base + c[:, None] * stride_c + offs_s[None, :] * stride_s
    if EVEN:
        tl.store(ptrs, value.to(base.dtype.element_ty))
    else:
        tl.store(ptrs, value.to(base.dtype.element_ty), mask=mask_c[:, None] & mask_s[None, :])


# ----------------------------------------------------------------------------- kernels


@triton.jit
def _gn_silu_fwd_kernel(
    x_ptr, y_ptr, w_ptr, bias_ptr, scale_ptr, shift_ptr, mean_ptr, rstd_ptr, part_ptr,
    B, C, S, G, S_PER_SPLIT, SPLIT, eps,
    stride_xb, stride_xc, stride_xs, stride_yb, stride_yc, stride_ys,
    stride_sb, stride_sc, stride_tb, stride_tc,
    CG: tl.constexpr, BLOCK_CG: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_S: tl.constexpr,
    PHASE: tl.constexpr, ONE_TILE: tl.constexpr, EVEN: tl.constexpr,
    HAS_W: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_SCALE: tl.constexpr, HAS_SHIFT: tl.constexpr,
    ACT: tl.constexpr, FAST: tl.constexpr,
):
    """Program -> (example b, groups g0 .. g0+BLOCK_G-1, chunk `split` of S).

    PHASE 0: statistics and output (SPLIT = 1); ONE_TILE: the whole group in one tile.
    PHASE 1: statistics of the chunk -> part (B·G, SPLIT, 2) = (mean of x - K, M2).
    PHASE 2: combine the SPLIT partials, then output of the chunk.
    mean (B·G, 2) = (K, mean of x - K), rstd (B·G,): written by the chunk-0 program.
    EVEN: no padding anywhere (whole groups, S a multiple of BLOCK_S): no masks.
    """
    b, g0, split, offs_g, mask_g, row = _program_groups(G, SPLIT, BLOCK_G)
    c, mask_c = _channels(g0, C, G, CG, BLOCK_G, BLOCK_CG)
    n_ch = _group_sum(mask_c.to(tl.float32), BLOCK_G, BLOCK_CG)  # channels per group (0: past G)
    x_b = x_ptr + b.to(tl.int64) * stride_xb
    y_b = y_ptr + b.to(tl.int64) * stride_yb
    k = tl.load(x_b + offs_g * CG * stride_xc, mask=mask_g, other=0.0).to(tl.float32)  # pivot: first element
    kc = _per_channel(k, BLOCK_G, BLOCK_CG)
    s_lo = split * S_PER_SPLIT
    s_hi = tl.minimum(s_lo + S_PER_SPLIT, S)

    if ONE_TILE:
        offs_s = tl.arange(0, BLOCK_S)
        mask_s = offs_s < S
        mask = mask_c[:, None] & mask_s[None, :]
        v = _zero_outside(_load_tile(x_b, c, mask_c, offs_s, mask_s, stride_xc, stride_xs, EVEN) - kc[:, None],
                          mask, EVEN)
        n = n_ch * S
        m, M2, d = _tile_moments(v, mask, n, BLOCK_G, BLOCK_CG, EVEN)
        rstd = 1.0 / tl.sqrt(M2 / tl.maximum(n, 1.0) + eps)
        tl.store(mean_ptr + row * 2, k, mask=mask_g)
        tl.store(mean_ptr + row * 2 + 1, m, mask=mask_g)
        tl.store(rstd_ptr + row, rstd, mask=mask_g)
        _, _, _, gain, offset = _channel_affine(b, c, mask_c, w_ptr, bias_ptr, scale_ptr, shift_ptr, stride_sb,
                                                stride_sc, stride_tb, stride_tc, HAS_W, HAS_BIAS, HAS_SCALE, HAS_SHIFT)
        gain = gain * _per_channel(rstd, BLOCK_G, BLOCK_CG)
        u = d * gain[:, None] + offset[:, None]  # d = (x - K) - m
        _store_tile(y_b, c, mask_c, offs_s, mask_s, stride_yc, stride_ys, _activate(u, ACT, FAST), EVEN)
    else:
        if PHASE == 2:
            n = tl.zeros((BLOCK_G,), dtype=tl.float32)
            m = tl.zeros((BLOCK_G,), dtype=tl.float32)
            M2 = tl.zeros((BLOCK_G,), dtype=tl.float32)
            for j in range(SPLIT):  # in order: every program of the group gets the same result
                n_j = n_ch * tl.minimum(S_PER_SPLIT, S - j * S_PER_SPLIT).to(tl.float32)
                p = part_ptr + (row * SPLIT + j) * 2
                m_j = tl.load(p, mask=mask_g, other=0.0)
                M2_j = tl.load(p + 1, mask=mask_g, other=0.0)
                n, m, M2 = _chan(n, m, M2, n_j, m_j, M2_j)
        else:
            n, m, M2 = _stats_loop(x_b, c, mask_c, kc, n_ch, s_lo, s_hi, stride_xc, stride_xs,
                                   BLOCK_G, BLOCK_CG, BLOCK_S, EVEN)
        if PHASE == 1:
            p = part_ptr + (row * SPLIT + split) * 2
            tl.store(p, m, mask=mask_g)
            tl.store(p + 1, M2, mask=mask_g)
        else:
            rstd = 1.0 / tl.sqrt(M2 / tl.maximum(n, 1.0) + eps)
            first = mask_g & ((offs_g * 0 + split) == 0)  # the chunk-0 program
            tl.store(mean_ptr + row * 2, k, mask=first)
            tl.store(mean_ptr + row * 2 + 1, m, mask=first)
            tl.store(rstd_ptr + row, rstd, mask=first)
            _, _, _, gain, offset = _channel_affine(b, c, mask_c, w_ptr, bias_ptr, scale_ptr, shift_ptr, stride_sb,
                                                    stride_sc, stride_tb, stride_tc,
                                                    HAS_W, HAS_BIAS, HAS_SCALE, HAS_SHIFT)
            gain = gain * _per_channel(rstd, BLOCK_G, BLOCK_CG)
            mc = _per_channel(m, BLOCK_G, BLOCK_CG)
            for s0 in range(s_lo, s_hi, BLOCK_S):
                offs_s = s0 + tl.arange(0, BLOCK_S)
                mask_s = offs_s < s_hi
                x = _load_tile(x_b, c, mask_c, offs_s, mask_s, stride_xc, stride_xs, EVEN)
                v = _zero_outside(x - kc[:, None], mask_c[:, None] & mask_s[None, :], EVEN)  # padding stays finite
                u = (v - mc[:, None]) * gain[:, None] + offset[:, None]
                _store_tile(y_b, c, mask_c, offs_s, mask_s, stride_yc, stride_ys, _activate(u, ACT, FAST), EVEN)


@triton.jit
def _bwd_tile(x_b, dy_b, c, mask_c, offs_s, mask_s, kc, mc, rc, gain, offset,
              stride_xc, stride_xs, stride_gc, stride_gs, ACT: tl.constexpr, FAST: tl.constexpr, EVEN: tl.constexpr):
    """(x̂, du) of one tile, 0 where masked."""
    mask = mask_c[:, None] & mask_s[None, :]
    x = _load_tile(x_b, c, mask_c, offs_s, mask_s, stride_xc, stride_xs, EVEN)
    dy = _load_tile(dy_b, c, mask_c, offs_s, mask_s, stride_gc, stride_gs, EVEN)
    xh = _zero_outside(((x - kc[:, None]) - mc[:, None]) * rc[:, None], mask, EVEN)
    du = _activation_grad(dy, xh * gain[:, None] + offset[:, None], ACT, FAST)
    return xh, _zero_outside(du, mask, EVEN)


@triton.jit
def _gn_silu_bwd_kernel(
    x_ptr, dy_ptr, dx_ptr, w_ptr, bias_ptr, scale_ptr, shift_ptr, mean_ptr, rstd_ptr, part_ptr,
    B, C, S, G, S_PER_SPLIT, SPLIT,
    stride_xb, stride_xc, stride_xs, stride_gb, stride_gc, stride_gs, stride_db, stride_dc, stride_ds,
    stride_sb, stride_sc, stride_tb, stride_tc,
    CG: tl.constexpr, BLOCK_CG: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_S: tl.constexpr,
    PHASE: tl.constexpr, ONE_TILE: tl.constexpr, EVEN: tl.constexpr, STORE_PARTIALS: tl.constexpr,
    HAS_W: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_SCALE: tl.constexpr, HAS_SHIFT: tl.constexpr,
    ACT: tl.constexpr, FAST: tl.constexpr,
):
    """Program -> (example b, groups g0 .. g0+BLOCK_G-1, chunk `split` of S).

    PHASE 0: sums A, Bx and dx (SPLIT = 1); ONE_TILE: x and dy of the groups in one tile.
    PHASE 1: sums of the chunk only -> part (B, SPLIT, 2, C) = (A, Bx).
    PHASE 2: sum the SPLIT partials in order, then dx of the chunk.
    """
    b, g0, split, offs_g, mask_g, row = _program_groups(G, SPLIT, BLOCK_G)
    c, mask_c = _channels(g0, C, G, CG, BLOCK_G, BLOCK_CG)
    b64 = b.to(tl.int64)
    x_b = x_ptr + b64 * stride_xb
    dy_b = dy_ptr + b64 * stride_gb
    dx_b = dx_ptr + b64 * stride_db
    kc = _per_channel(tl.load(mean_ptr + row * 2, mask=mask_g, other=0.0), BLOCK_G, BLOCK_CG)
    mc = _per_channel(tl.load(mean_ptr + row * 2 + 1, mask=mask_g, other=0.0), BLOCK_G, BLOCK_CG)
    rc = _per_channel(tl.load(rstd_ptr + row, mask=mask_g, other=0.0), BLOCK_G, BLOCK_CG)
    _, _, _, gain, offset = _channel_affine(b, c, mask_c, w_ptr, bias_ptr, scale_ptr, shift_ptr, stride_sb, stride_sc,
                                            stride_tb, stride_tc, HAS_W, HAS_BIAS, HAS_SCALE, HAS_SHIFT)
    s_lo = split * S_PER_SPLIT
    s_hi = tl.minimum(s_lo + S_PER_SPLIT, S)
    part_b = part_ptr + (b64 * SPLIT + split) * 2 * C
    n_ch = _group_sum(mask_c.to(tl.float32), BLOCK_G, BLOCK_CG)  # channels per group (0: past G)
    inv_n = _per_channel(1.0 / tl.maximum(n_ch * S, 1.0), BLOCK_G, BLOCK_CG)  # 1 / (group size)

    if ONE_TILE:
        offs_s = tl.arange(0, BLOCK_S)
        mask_s = offs_s < S
        xh, du = _bwd_tile(x_b, dy_b, c, mask_c, offs_s, mask_s, kc, mc, rc, gain, offset,
                           stride_xc, stride_xs, stride_gc, stride_gs, ACT, FAST, EVEN)
        a_sum = tl.sum(du, axis=1)
        b_sum = tl.sum(du * xh, axis=1)
        if STORE_PARTIALS:
            tl.store(part_b + c, a_sum, mask=mask_c)
            tl.store(part_b + C + c, b_sum, mask=mask_c)
        c1 = _per_channel(_group_sum(gain * a_sum, BLOCK_G, BLOCK_CG), BLOCK_G, BLOCK_CG) * inv_n
        c2 = _per_channel(_group_sum(gain * b_sum, BLOCK_G, BLOCK_CG), BLOCK_G, BLOCK_CG) * inv_n
        dx = rc[:, None] * (du * gain[:, None] - c1[:, None] - xh * c2[:, None])
        _store_tile(dx_b, c, mask_c, offs_s, mask_s, stride_dc, stride_ds, dx, EVEN)
    else:
        a_sum = tl.zeros(c.shape, dtype=tl.float32)
        b_sum = tl.zeros(c.shape, dtype=tl.float32)
        if PHASE == 2:
            for j in range(SPLIT):  # in order: deterministic
                p = part_ptr + (b64 * SPLIT + j) * 2 * C
                a_sum += tl.load(p + c, mask=mask_c, other=0.0)
                b_sum += tl.load(p + C + c, mask=mask_c, other=0.0)
        else:
            for s0 in range(s_lo, s_hi, BLOCK_S):
                offs_s = s0 + tl.arange(0, BLOCK_S)
                xh, du = _bwd_tile(x_b, dy_b, c, mask_c, offs_s, offs_s < s_hi, kc, mc, rc, gain, offset,
                                   stride_xc, stride_xs, stride_gc, stride_gs, ACT, FAST, EVEN)
                a_sum += tl.sum(du, axis=1)
                b_sum += tl.sum(du * xh, axis=1)
            if STORE_PARTIALS:
                tl.store(part_b + c, a_sum, mask=mask_c)
                tl.store(part_b + C + c, b_sum, mask=mask_c)
        if PHASE != 1:
            c1 = _per_channel(_group_sum(gain * a_sum, BLOCK_G, BLOCK_CG), BLOCK_G, BLOCK_CG) * inv_n
            c2 = _per_channel(_group_sum(gain * b_sum, BLOCK_G, BLOCK_CG), BLOCK_G, BLOCK_CG) * inv_n
            for s0 in range(s_lo, s_hi, BLOCK_S):
                offs_s = s0 + tl.arange(0, BLOCK_S)
                mask_s = offs_s < s_hi
                xh, du = _bwd_tile(x_b, dy_b, c, mask_c, offs_s, mask_s, kc, mc, rc, gain, offset,
                                   stride_xc, stride_xs, stride_gc, stride_gs, ACT, FAST, EVEN)
                dx = rc[:, None] * (du * gain[:, None] - c1[:, None] - xh * c2[:, None])
                _store_tile(dx_b, c, mask_c, offs_s, mask_s, stride_dc, stride_ds, dx, EVEN)


@triton.jit
def _gn_silu_param_kernel(
    part_ptr, w_ptr, bias_ptr, scale_ptr, dw_ptr, dbias_ptr, dscale_ptr, dshift_ptr,
    B, C, SPLIT, stride_sb, stride_sc,
    HAS_W: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_SCALE: tl.constexpr,
    NEED_DW: tl.constexpr, NEED_DBIAS: tl.constexpr, NEED_DSCALE: tl.constexpr, NEED_DSHIFT: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_C: tl.constexpr,
):
    """Program -> BLOCK_C channels. From part (B, SPLIT, 2, C) = (A, Bx):
    dshift = A, dscale = w·Bx + b·A per (example, channel) (contiguous (B, C));
    dweight = Σ_b (1+s)·Bx, dbias = Σ_b (1+s)·A, summed over examples in order."""
    offs_c = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    mask_c = offs_c < C
    w = tl.load(w_ptr + offs_c, mask=mask_c, other=0.0).to(tl.float32) if HAS_W else 1.0
    bias = tl.load(bias_ptr + offs_c, mask=mask_c, other=0.0).to(tl.float32) if HAS_BIAS else 0.0
    dw = tl.zeros((BLOCK_C,), dtype=tl.float32)
    db = tl.zeros((BLOCK_C,), dtype=tl.float32)
    for b0 in range(0, B, BLOCK_B):
        offs_b = b0 + tl.arange(0, BLOCK_B)
        mask = (offs_b < B)[:, None] & mask_c[None, :]
        a_sum = tl.zeros((BLOCK_B, BLOCK_C), dtype=tl.float32)
        b_sum = tl.zeros((BLOCK_B, BLOCK_C), dtype=tl.float32)
        for j in range(SPLIT):
            p = part_ptr + ((offs_b.to(tl.int64) * SPLIT + j) * 2 * C)[:, None] + offs_c[None, :]
            a_sum += tl.load(p, mask=mask, other=0.0)
            b_sum += tl.load(p + C, mask=mask, other=0.0)
        out = offs_b[:, None] * C + offs_c[None, :]
        if NEED_DSHIFT:
            tl.store(dshift_ptr + out, a_sum.to(dshift_ptr.dtype.element_ty), mask=mask)
        if NEED_DSCALE:
            tl.store(dscale_ptr + out, (w * b_sum + bias * a_sum).to(dscale_ptr.dtype.element_ty), mask=mask)
        if HAS_SCALE:
            f = 1.0 + tl.load(scale_ptr + offs_b[:, None] * stride_sb + offs_c[None, :] * stride_sc,
                              mask=mask, other=0.0).to(tl.float32)
            a_sum = a_sum * f
            b_sum = b_sum * f
        dw += tl.sum(b_sum, axis=0)
        db += tl.sum(a_sum, axis=0)
    if NEED_DW:
        tl.store(dw_ptr + offs_c, dw.to(dw_ptr.dtype.element_ty), mask=mask_c)
    if NEED_DBIAS:
        tl.store(dbias_ptr + offs_c, db.to(dbias_ptr.dtype.element_ty), mask=mask_c)


# ----------------------------------------------------------------------------- launch plans


@dataclass(frozen=True)
class Config:
    block_g: int  # groups per program
    block_s: int  # positions per tile
    one_tile: bool  # the program's groups fit in one tile (PHASE 0 only)
    num_warps: int
    even: bool = False  # no padding: whole groups of CG = a power of two, S a multiple of block_s

    def meta(self) -> dict:
        return {"BLOCK_G": self.block_g, "BLOCK_S": self.block_s, "ONE_TILE": self.one_tile, "EVEN": self.even}


@dataclass(frozen=True)
class Plan:
    configs: tuple[Config, ...]  # candidates, best guess first (autotuned on CUDA when more than one)
    split: int  # programs per group along S (1: fused statistics and output)
    s_per_split: int


@dataclass(frozen=True)
class Geometry:
    batch: int
    channels: int
    positions: int  # S = prod(spatial)
    groups: int

    @property
    def group_channels(self) -> int:
        return self.channels // self.groups


def pow2(n: int) -> int:
    return triton.next_power_of_2(max(int(n), 1))


def warps_for(tile: int) -> int:
    return max(4, min(16, tile // 512))


@functools.lru_cache(maxsize=1024)
def plan(kind: str, g: Geometry, channels_last: bool, itemsize: int, sms: int,
         force: tuple[int, int, int] | None = None) -> Plan:
    """Block sizes and split for `kind` ("fwd" or "bwd"); see the module docstring.
    Cached: a model calls it with a handful of shapes.

    force = (block_g, block_s, split): a fixed configuration (tests; powers of two)."""
    cg, s = g.group_channels, g.positions

    def done(configs, split: int, per_split: int) -> Plan:
        def even(c: Config) -> bool:
            return cg == pow2(cg) and g.groups % c.block_g == 0 and s % c.block_s == 0 and per_split % c.block_s == 0
        return Plan(tuple(dataclasses.replace(c, even=even(c)) for c in configs), split, per_split)

    bcg, s2, g2 = pow2(cg), pow2(s), pow2(g.groups)
    if force is not None:
        block_g, block_s, split = force
        if any(v < 1 or v & (v - 1) for v in (block_g, block_s)) or split < 1:
            raise ConfigError(f"group_norm_silu config {force}: block_g and block_s are powers of two, split >= 1.")
        per_split = triton.cdiv(triton.cdiv(s, split), block_s) * block_s
        split = triton.cdiv(s, per_split)
        return done([Config(block_g, block_s, split == 1 and block_s >= s, 4)], split, per_split)
    group_tile = bcg * s2
    # Channels-last: groups per program giving tile rows of ROW_BYTES contiguous bytes.
    row_groups = min(g2, pow2(triton.cdiv(ROW_BYTES, bcg * itemsize))) if channels_last else 1
    fits = 0  # the most groups (a power of two) that fit one register tile
    while 2 * max(fits, 1) <= g2 and 2 * max(fits, 1) * group_tile <= ONE_TILE_MAX[kind]:
        fits = 2 * max(fits, 1)
    fits = fits or (1 if group_tile <= ONE_TILE_MAX[kind] else 0)
    configs = []
    if fits:
        bg = min(fits, max(row_groups, TILE_TARGET // group_tile))
        while bg > 1 and g.batch * triton.cdiv(g.groups, bg) < 2 * sms:  # keep two waves of programs
            bg //= 2
        if not channels_last or bg * bcg * itemsize >= 16:  # rows of at least half a sector
            warps = warps_for(bg * group_tile)
            configs.append(Config(bg, s2, True, warps))
            if warps > 4:
                configs.append(Config(bg, s2, True, warps // 2))
            if 2 * bg <= fits:
                configs.append(Config(2 * bg, s2, True, warps_for(2 * bg * group_tile)))
        if configs and not channels_last:
            return done(configs, 1, s)
    # Looped: tiles of about TILE_TARGET elements (channels-last: a candidate beside one tile).
    bg = row_groups
    bs = max(16, min(s2, TILE_TARGET // (bg * bcg)))
    programs = g.batch * triton.cdiv(g.groups, bg)
    if not configs and cg * s >= SPLIT_MIN_GROUP and programs < sms:
        split = max(1, min(triton.cdiv(2 * sms, programs), triton.cdiv(s, 4 * bs)))
        per_split = triton.cdiv(triton.cdiv(s, split), bs) * bs
        split = triton.cdiv(s, per_split)
        if split > 1:
            return done([Config(bg, bs, False, 8)], split, per_split)
    configs.append(Config(bg, bs, bs >= s, 8))
    if 2 * bs <= s2 and len(configs) < 3:
        configs.append(Config(bg, 2 * bs, False, 8))
    return done(configs, 1, s)


def sm_count(device: torch.device) -> int:
    """The device's SMs (CUDA, or a planned target); INTERPRETER_SMS under the interpreter."""
    return device_sms(device) or INTERPRETER_SMS


def bcs_strides(t: torch.Tensor) -> tuple[int, int, int] | None:
    """(stride_b, stride_c, stride_s) of t (B, C, *spatial) viewed as (B, C, S), or None
    when the spatial dims do not merge into one stride."""
    dims = [(n, st) for n, st in zip(t.shape[2:], t.stride()[2:]) if n != 1]
    for (_, outer), (n, inner) in itertools.pairwise(dims):
        if outer != inner * n:
            return None
    return t.stride(0), t.stride(1), dims[-1][1] if dims else 1


def as_bcs(t: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """t itself and its (B, C, S) strides, or a contiguous copy when the spatial dims do not merge."""
    strides = bcs_strides(t)
    if strides is None:
        t = t.contiguous()
        strides = bcs_strides(t)
    return t, strides


def is_channels_last(t: torch.Tensor) -> bool:
    """Channels are the fastest axis (stride 1) and there is more than one position."""
    return t.ndim > 2 and t.shape[1] > 1 and math.prod(t.shape[2:]) > 1 and t.stride(1) == 1


def empty_like_layout(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A dense tensor of x's shape in x's memory format (channels-last or contiguous)."""
    if is_channels_last(x):
        return torch.empty((x.shape[0], *x.shape[2:], x.shape[1]), device=x.device, dtype=dtype).movedim(-1, 1)
    return torch.empty(x.shape, device=x.device, dtype=dtype)


KEY = ["B", "C", "S", "G", "stride_xc", "stride_xs"]


@functools.cache
def autotuned(kind: str, configs: tuple[Config, ...]):
    """The kernel under @triton.autotune over `configs` (CUDA only; built on first use)."""
    kernel = {"fwd": _gn_silu_fwd_kernel, "bwd": _gn_silu_bwd_kernel}[kind]
    tconfigs = [triton.Config(c.meta(), num_warps=c.num_warps) for c in configs]
    return triton.autotune(tconfigs, key=KEY)(kernel)


def launch(kind: str, p: Plan, phase: int, grid_of, args: tuple, meta: dict) -> None:
    """One config directly (interpreter, forced, or a single candidate), else autotuned.
    Phases 1 and 2 of a split run the first config (one_tile off)."""
    kernel = {"fwd": _gn_silu_fwd_kernel, "bwd": _gn_silu_bwd_kernel}[kind]
    configs = p.configs if phase == 0 else tuple(dataclasses.replace(c, one_tile=False) for c in p.configs[:1])
    meta = {**meta, "PHASE": phase, "FAST": not interpreting()}
    if interpreting() or len(configs) == 1:
        c = configs[0]
        kernel[grid_of(c.meta())](*args, **meta, **c.meta(), num_warps=c.num_warps)
    else:
        autotuned(kind, configs)[grid_of](*args, **meta)


# ----------------------------------------------------------------------------- launchers


def check_kernel_inputs(x, num_groups, weight, bias, scale, shift, activation) -> None:
    check_inputs(x, num_groups, weight, bias, scale, shift, activation)
    if x.dtype not in KERNEL_DTYPES:
        raise ConfigError(f"The Triton group_norm_silu kernel takes x in fp32/fp16/bf16; got {x.dtype}. "
                          "Use backend='torch' for it.")
    for name, t in (("weight", weight), ("bias", bias), ("scale", scale), ("shift", shift)):
        if t is None:
            continue
        if not t.is_floating_point():
            raise ConfigError(f"group_norm_silu: {name} must be a floating-point tensor; got {t.dtype}.")
        if t.device != x.device:
            raise ConfigError(f"group_norm_silu: {name} is on {t.device} but x is on {x.device}.")
    check_kernel_device(OP_NAME, x)
    if x[:1].numel() >= 2**31:
        raise ConfigError("group_norm_silu: one example of x has 2^31 elements or more; the kernel indexes "
                          "within an example in int32. Use backend='torch'.")


def geometry(x: torch.Tensor, num_groups: int) -> Geometry:
    return Geometry(x.shape[0], x.shape[1], math.prod(x.shape[2:]), num_groups)


def vector_args(x, weight, bias, scale, shift):
    """Pointers (placeholders where absent: never read) and the scale/shift strides."""
    w = weight.contiguous() if weight is not None else x
    b = bias.contiguous() if bias is not None else x
    s = scale if scale is not None else x
    t = shift if shift is not None else x
    strides = (*(scale.stride() if scale is not None else (0, 0)), *(shift.stride() if shift is not None else (0, 0)))
    flags = {"HAS_W": weight is not None, "HAS_BIAS": bias is not None, "HAS_SCALE": scale is not None,
             "HAS_SHIFT": shift is not None}
    return (w, b, s, t), strides, flags


def group_norm_silu_forward(x, num_groups: int, weight, bias, eps: float, scale, shift, activation: str,
                            config: tuple[int, int, int] | None = None):
    """y (x's shape, dtype and memory format), mean (B, G, 2) fp32 = (pivot K, mean of x - K),
    rstd (B, G) fp32."""
    g = geometry(x, num_groups)
    mean = torch.empty((g.batch, g.groups, 2), device=x.device, dtype=torch.float32)
    rstd = torch.empty((g.batch, g.groups), device=x.device, dtype=torch.float32)
    x, (sxb, sxc, sxs) = as_bcs(x)
    y = empty_like_layout(x, x.dtype)
    if y.numel() == 0:
        return y, mean.fill_(float("nan")), rstd.fill_(float("nan"))
    _, (syb, syc, sys_) = as_bcs(y)
    p = plan("fwd", g, is_channels_last(x), x.element_size(), sm_count(x.device), config)
    (w, b, s, t), vstrides, flags = vector_args(x, weight, bias, scale, shift)
    part = torch.empty((g.batch * g.groups, p.split, 2), device=x.device, dtype=torch.float32) if p.split > 1 else mean
    args = (x, y, w, b, s, t, mean, rstd, part, g.batch, g.channels, g.positions, g.groups, p.s_per_split, p.split,
            float(eps), sxb, sxc, sxs, syb, syc, sys_, *vstrides)
    meta = {"CG": g.group_channels, "BLOCK_CG": pow2(g.group_channels), "ACT": ACT_CODES[activation], **flags}
    grid = lambda m: (g.batch * triton.cdiv(g.groups, m["BLOCK_G"]) * p.split,)  # noqa: E731
    if p.split == 1:
        launch("fwd", p, 0, grid, args, meta)
    else:
        launch("fwd", p, 1, grid, args, meta)
        launch("fwd", p, 2, grid, args, meta)
    return y, mean, rstd


def group_norm_silu_backward(dy, x, num_groups: int, weight, bias, scale, shift, mean, rstd, activation: str,
                             needs: tuple[bool, bool, bool, bool, bool], config: tuple[int, int, int] | None = None):
    """(dx, dweight, dbias, dscale, dshift), None where `needs` (x, weight, bias, scale, shift) is False."""
    g = geometry(x, num_groups)
    need_x, need_w, need_b, need_s, need_t = needs
    x, (sxb, sxc, sxs) = as_bcs(x)
    dy, (sgb, sgc, sgs) = as_bcs(dy)
    dx = empty_like_layout(x, x.dtype) if need_x else None
    dw = torch.empty_like(weight) if need_w else None
    db = torch.empty_like(bias) if need_b else None
    ds = torch.empty(scale.shape, device=x.device, dtype=scale.dtype) if need_s else None
    dt = torch.empty(shift.shape, device=x.device, dtype=shift.dtype) if need_t else None
    params = need_w or need_b or need_s or need_t
    if x.numel() == 0 or not (need_x or params):
        for t in (dx, dw, db, ds, dt):
            if t is not None:
                t.zero_()
        return dx, dw, db, ds, dt
    p = plan("bwd", g, is_channels_last(x), x.element_size(), sm_count(x.device), config)
    (w, b, s, t), vstrides, flags = vector_args(x, weight, bias, scale, shift)
    store = params or p.split > 1  # the partial sums feed the parameter kernel and a split's dx kernel
    part = torch.empty((g.batch, p.split, 2, g.channels), device=x.device, dtype=torch.float32) if store else mean
    out = dx if dx is not None else x  # placeholder when dx is not wanted (phase 1 only)
    _, (sdb, sdc, sds) = as_bcs(out)
    args = (x, dy, out, w, b, s, t, mean, rstd, part, g.batch, g.channels, g.positions, g.groups,
            p.s_per_split, p.split, sxb, sxc, sxs, sgb, sgc, sgs, sdb, sdc, sds, *vstrides)
    meta = {"CG": g.group_channels, "BLOCK_CG": pow2(g.group_channels), "ACT": ACT_CODES[activation],
            "STORE_PARTIALS": store, **flags}
    grid = lambda m: (g.batch * triton.cdiv(g.groups, m["BLOCK_G"]) * p.split,)  # noqa: E731
    if need_x and p.split == 1:
        launch("bwd", p, 0, grid, args, meta)
    else:
        launch("bwd", p, 1, grid, args, meta)
        if need_x:
            launch("bwd", p, 2, grid, args, meta)
    if params:
        ph = torch.empty(0, device=x.device, dtype=torch.float32)
        _gn_silu_param_kernel[(triton.cdiv(g.channels, PARAM_BLOCK_C),)](
            part, w, b, s, dw if dw is not None else ph, db if db is not None else ph,
            ds if ds is not None else ph, dt if dt is not None else ph,
            g.batch, g.channels, p.split, *vstrides[:2],
            HAS_W=flags["HAS_W"], HAS_BIAS=flags["HAS_BIAS"], HAS_SCALE=flags["HAS_SCALE"],
            NEED_DW=need_w, NEED_DBIAS=need_b, NEED_DSCALE=need_s, NEED_DSHIFT=need_t,
            BLOCK_B=PARAM_BLOCK_B, BLOCK_C=PARAM_BLOCK_C, num_warps=4,
        )
    return dx, dw, db, ds, dt


# ----------------------------------------------------------------------------- autograd


class GroupNormSiLUFunction(torch.autograd.Function):
    """Saves x, the parameters, scale/shift, mean (B, G, 2) and rstd (B, G); backward
    recomputes x̂ and the activation from them (no normalised activation is stored)."""

    @staticmethod
    def forward(ctx, x, weight, bias, scale, shift, num_groups, eps, activation, config):
        y, mean, rstd = group_norm_silu_forward(x, num_groups, weight, bias, eps, scale, shift, activation, config)
        ctx.save_for_backward(x, weight, bias, scale, shift, mean, rstd)
        ctx.params = (num_groups, activation, config)
        ctx.set_materialize_grads(False)
        return y

    @staticmethod
    def backward(ctx, dy):
        if dy is None:
            return (None,) * 9
        x, weight, bias, scale, shift, mean, rstd = ctx.saved_tensors
        num_groups, activation, config = ctx.params
        grads = group_norm_silu_backward(dy, x, num_groups, weight, bias, scale, shift, mean, rstd, activation,
                                         tuple(ctx.needs_input_grad[:5]), config)
        return (*grads, None, None, None, None)


# ----------------------------------------------------------------------------- public op


def triton_group_norm_silu(x, num_groups: int, weight=None, bias=None, eps: float = 1e-5, scale=None, shift=None,
                           activation: str = "silu", *, config: tuple[int, int, int] | None = None):
    """The Triton implementation (forward, and backward through autograd).

    config = (groups per program, positions per tile, programs per group along S): a fixed
    launch configuration (powers of two; tests use it to reach the looped and split paths);
    None: planned, autotuned on CUDA."""
    check_kernel_inputs(x, num_groups, weight, bias, scale, shift, activation)
    config = tuple(config) if config is not None else None
    needs_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (x, weight, bias, scale, shift))
    if not needs_grad:
        return group_norm_silu_forward(x, num_groups, weight, bias, eps, scale, shift, activation, config)[0]
    return GroupNormSiLUFunction.apply(x, weight, bias, scale, shift, num_groups, float(eps), activation, config)


def group_norm_silu(x, num_groups: int, weight=None, bias=None, eps: float = 1e-5, scale=None, shift=None,
                    activation: str = "silu", backend: str = "auto"):
    """act(GroupNorm(x)·(1 + scale) + shift); backend: "auto" (Triton on CUDA), "triton" or "torch"."""
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
        return resolve_backend(OP_NAME, self.backend, device)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, activation={self.activation}, backend={self.backend}"


def examples(dtype, device, generator):
    """Affine GroupNorm + SiLU on offset inputs (variance must not cancel), with a per-example
    scale-shift, NCHW and channels-last; plain GroupNorm without the activation."""

    def tensors(*shape, offset=0.0):
        return example_randn(generator, *shape, dtype=dtype, device=device) + offset

    x = tensors(2, 8, 5, 3, offset=3.0)
    affine = {"weight": tensors(8), "bias": tensors(8), "scale": tensors(2, 8), "shift": tensors(2, 8)}
    grads = ("x", "weight", "bias", "scale", "shift")
    return [
        OpExample("NCHW affine scale-shift", {"x": x, "num_groups": 4, **affine}, grads),
        OpExample("channels-last affine scale-shift",
                  {"x": x.contiguous(memory_format=torch.channels_last), "num_groups": 2, **affine}, grads),
        OpExample("no activation, no affine", {"x": tensors(3, 6, 7), "num_groups": 3, "activation": "none"}, ("x",)),
    ]


def _register() -> None:
    KERNELS.register(OP_NAME, KernelOp(
        name=OP_NAME, function=group_norm_silu, reference=reference, triton=triton_group_norm_silu, examples=examples,
        summary="GroupNorm + per-example scale-shift + SiLU: shifted two-pass/Chan statistics, one read of x "
                "when a group fits a tile, fwd+bwd, NCHW and channels-last",
    ))


_register()
