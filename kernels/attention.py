"""Non-causal attention, FlashAttention-2 style: Triton kernels (forward; backward as a
preprocess, a dK/dV pass and a dQ pass), launchers, autograd, the public op.

    o = attention(q, k, v, scale=None, backend="auto")
    o = softmax(q·kᵀ·scale) · v          q (B, H, S_q, D), k, v (B, H, S_k, D); scale = 1/sqrt(D) by default

The definition is the reference, genbench.baselines.attention. Supported by the kernel:
any B, H, S_q, S_k (not multiples of the block: masked; S_k = 0 gives the reference's
empty sum, zeros), head dims 1..256
(padded to the next power of two >= 16 with masks), any scale, fp32/fp16/bf16 with one
dtype for q, k, v, any strides (q, k, v as views of one (B, S, 3, H, D) projection, the
usual layout, are read in place). Anything else raises a ConfigError with
backend="triton".

Forward (one program per (batch·head, BLOCK_M query rows)). The query tile stays on
chip; the program walks the keys in BLOCK_N blocks keeping, per row, the running
maximum m and sum l of the softmax and an fp32 (BLOCK_M, D) accumulator (online
softmax):
    s = q·kᵀ · scale·log2(e)               (fp32; base-2 units, so exp is one exp2)
    m' = max(m, rowmax s);  p = exp2(s - m');  α = exp2(m - m')
    l = α·l + rowsum p;  acc = α·acc + p·v  (p cast to the input dtype for the dot)
and finally o = acc / l and the row log-sum-exp L = m + log2(l) (fp32, base 2, B·H·S_q
values) for backward. The S_q x S_k score matrix never exists in memory. The full key
blocks run without masks; one last partial block (S_k % BLOCK_N != 0) runs with its
columns past S_k set to -inf. Every block holds at least one real key (S_k >= 1), so m
is finite after the first block and no row is ever all -inf (0/0 cannot occur). Rows
and key rows past the end are read at clamped indices (duplicates of the last row: real
values, no NaN or overflow) and never stored. Scores of any magnitude are safe: p <= 1
and l >= 1 always; exp2 of a large negative difference underflows to 0 as it should.

Backward (FlashAttention-2, deterministic, no atomics). With P = exp2(s - L) recomputed
from the saved L, dP = dO·vᵀ and Δ = rowsum(dO∘O):
    dS = P∘(dP - Δ);   dV = Pᵀ·dO;   dK = scale·dSᵀ·q;   dQ = scale·dS·k
1. preprocess: Δ (B·H·S_q, fp32) from O and dO;
2. dK/dV: one program per (batch·head, BLOCK_N keys) keeps its k, v tiles and fp32 dK,
   dV accumulators and walks the query blocks (the partial last one masked: its P is
   zeroed), recomputing S and P;
3. dQ: one program per (batch·head, BLOCK_M queries) walks the key blocks (the partial
   last one masked with -inf), recomputing S, P and dP.
Each output element is written by exactly one program, so the result is bitwise
reproducible run to run.

FLOPs. Useful: 4·B·H·S_q·S_k·D forward (q·kᵀ and p·v), backward 2.5x that
(10·B·H·S_q·S_k·D: dV, dP, dK, dQ plus the recomputed q·kᵀ). The kernels execute the
forward's 4 and, in backward, 8 (dK/dV pass: q·kᵀ, Pᵀ·dO, v·dOᵀ, dSᵀ·q) + 6 (dQ pass:
q·kᵀ, dO·vᵀ, dS·k) = 14·B·H·S_q·S_k·D: the separate dQ pass recomputes S and dP (4
more units, +40% over the useful count), the price of having no atomics. Head-dim
padding: D is padded to BLOCK_D = max(16, next_pow2(D)) in registers (masked loads,
nothing copied), so D = 40 or 80 issue the MACs of 64 or 128 (1.6x), D = 96 those of
128 (1.33x); powers of two >= 16 cost nothing. TFLOP/s figures count the useful FLOPs.

Memory traffic (s = element size). Forward: q read once, k and v once per query block
(S_q/BLOCK_M times; mostly from L2: programs of one head run together), o written once,
L written (4 bytes per row): HBM traffic close to (2·S_q + 2·S_k)·B·H·D·s. Backward: Δ
reads o, dO; the dK/dV pass reads k, v once and q, dO, L, Δ once per key block; the
dQ pass reads q, dO, L, Δ once and k, v once per query block; dq, dk, dv written once
(allocated contiguous (B, H, S, D), in the inputs' dtype). Beyond the inputs and
outputs autograd keeps only L (B·H·S_q fp32): no S_q x S_k matrix anywhere, forward or
backward.

Precision. Products accumulate in fp32 (tl.dot). fp16/bf16 use tensor cores with P and
dS rounded to the input dtype before their dots (as FlashAttention does). fp32 inputs
default to fp32_precision="ieee": exact fp32 FMA dots, as the reference computes;
"tf32" (10-bit mantissa, tensor cores) and "tf32x3" (three TF32 products, about fp32
accuracy) are opt-in. The Triton interpreter always computes IEEE fp32 (bf16 there is
meaningless: tests run fp32 on the CPU, fp16/bf16 only on CUDA).

Block sizes. On CUDA, @triton.autotune picks (BLOCK_M, BLOCK_N, warps, stages) per
(B·H, S_q, S_k, D, dtype, precision) for each of the three main kernels, after pruning
tiles longer than the (power-of-two-rounded) sequence, tiles whose shared-memory
estimate exceeds the device's per-block limit (the forward's estimate is what Triton
allocates on sm_90) and tiles whose fp32 accumulator and score tiles exceed
MAX_ACC_PER_THREAD values per thread: 160 on sm_90 (at 192, ptxas -v reports spills for
D = 128 with 4 warps; below it none for the tensor-core tiles of fp16/bf16), 96 before
sm_90, whose mma.sync also keeps operand fragments in registers. IEEE fp32 has its own lists (FMA_CONFIGS):
Triton's FMA dot holds each thread's operand rows whole in registers, so the exact path
runs 16-row tiles on 8 warps, spill-free up to head dim 64 for sm_90 and sm_80; above 64
every tile spills -- the exact path, not a fast one ("tf32x3", on tensor cores at about
fp32 accuracy, is the faster one). Every loop's k/v (or q/dO) loads are asynchronous
copies, software-pipelined num_stages deep: that needs vectorisable loads, i.e. a
head-dim stride of 1 (which Triton specialises on), HEAD_DIM a compile-time constant
(masked loads of a D that is not a power of two still vectorise), and rows whose start
the compiler knows is 16-byte aligned. Triton marks integer arguments divisible by 16
only, so a row stride of D = 40 (80 bytes in bf16) looked unaligned and was read with
scalar 2-byte loads: the launcher passes ALIGN, the largest power of two <= 16 dividing
every batch, head and row stride, and the kernels write each stride as
stride // ALIGN * ALIGN, which the compiler sees as a multiple of ALIGN (16-byte vectors
and asynchronous copies at D = 40, checked with `genbench kernels --compile`).
The interpreter runs one fixed 16 x 16 configuration.

Indexing: offsets within one (batch, head) slice are int32 (checked), the slice base
int64; batch·head and the query blocks share the 1-D grid (the query block fastest).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from genbench.baselines.attention import attention as reference
from genbench.baselines.attention import check_inputs
from genbench.errors import ConfigError
from genbench.kernels.device import autocast_dtype, capability, check_kernel_device, shared_memory_limit
from genbench.kernels.device import interpreter_enabled as interpreting
from genbench.kernels.dispatch import KernelOp, OpExample, dispatch, example_randn
from genbench.registry import KERNELS

OP_NAME = "attention"
KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
FP32_PRECISIONS = ("ieee", "tf32x3", "tf32")
LOG2E = 1.4426950408889634  # log2(e): exp(x) = exp2(x·log2(e))
MAX_HEAD_DIM = 256
INTERPRETER_BLOCK = 16  # BLOCK_M = BLOCK_N under the interpreter
PREPROCESS_BLOCK_M = 64  # rows per program of the Δ = rowsum(dO∘O) kernel on CUDA
# fp32 accumulator and score values per thread a tile may need: above, ptxas spills. sm_90's
# wgmma reads its operands from shared memory; sm_80's mma.sync holds operand fragments in
# registers too, and spills from 128 values (128x64 forward, 64x64 and 64x128 backward, D = 64).
MAX_ACC_PER_THREAD = {90: 160, 80: 96}
# (BLOCK_M, BLOCK_N, num_warps, num_stages); M counts query rows, N key rows, in every kernel.
FWD_CONFIGS = ((128, 128, 8, 3), (128, 64, 4, 3), (128, 64, 8, 3), (128, 64, 4, 4), (128, 32, 4, 4),
               (64, 64, 4, 3), (64, 32, 4, 4), (64, 64, 4, 2), (32, 32, 4, 2))
DKDV_CONFIGS = ((32, 128, 4, 3), (32, 128, 8, 3), (64, 128, 8, 3), (16, 128, 4, 4), (64, 64, 4, 3),
                (32, 64, 4, 3), (64, 64, 4, 2), (32, 32, 4, 2))
DQ_CONFIGS = ((128, 32, 4, 3), (128, 32, 8, 3), (128, 64, 8, 3), (128, 16, 4, 4), (64, 64, 4, 3),
              (64, 32, 4, 3), (64, 64, 4, 2), (32, 32, 4, 2))
# Wide heads, BLOCK_D >= WIDE_HEAD. On sm_90 only 8-warp tiles: 4-warp dK/dV 32x32 spilled
# 160 B at D = 128. Before sm_90, mma.sync holds the D-wide operands' fragments in registers
# and the lists above spilled 8 B to 2.3 KB at D = 128 on sm_80; these compile clean there
# (168-253 registers) and are used there only.
WIDE_HEAD = 128
WIDE_HEAD_BEFORE_SM90 = {"fwd": ((32, 64, 8, 2), (32, 32, 8, 2), (32, 32, 4, 2)),
                         "dkdv": ((16, 32, 8, 2), (32, 32, 8, 2)), "dq": ((32, 32, 8, 2), (32, 32, 4, 2))}
# IEEE fp32: Triton's FMA dot holds each thread's operand rows whole (BLOCK_D long), so the
# exact path needs few outputs per thread: 16-row tiles on 8 warps. At head dims up to 64
# these compile without spills for sm_90 and sm_80 (128-212 registers; 4 warps, or 32x32
# tiles in backward, spill 300-800 bytes); above 64 every tile spills (use "tf32x3").
FMA_CONFIGS = {"fwd": ((16, 16, 8, 2), (16, 16, 8, 3), (32, 16, 8, 2), (16, 32, 8, 2)),
               "dkdv": ((16, 16, 8, 2), (16, 16, 8, 3)), "dq": ((16, 16, 8, 2), (16, 16, 8, 3))}


# ----------------------------------------------------------------------------- kernels


@triton.jit
def _program_block(S, H, BLOCK: tl.constexpr):
    """This program's (batch·head, first row of its block, batch, head): programs run over
    (batch·head, block of S rows) with the block fastest."""
    pid = tl.program_id(0)
    n_blocks = tl.cdiv(S, BLOCK)
    bh = pid // n_blocks
    return bh, (pid % n_blocks) * BLOCK, (bh // H).to(tl.int64), (bh % H).to(tl.int64)


@triton.jit
def _aligned(stride, ALIGN: tl.constexpr):
    """stride, which the launcher checked is a multiple of ALIGN, written so the compiler knows it
    too: Triton marks integer arguments divisible only by 16, so a row of D = 40 (80 bytes in
    bf16) would otherwise be read with scalar 2-byte loads and no asynchronous copies."""
    return stride // ALIGN * ALIGN


@triton.jit
def _head_offset(b, h, stride_b, stride_h, ALIGN: tl.constexpr):
    """Element offset of the (batch b, head h) slice."""
    return b * _aligned(stride_b, ALIGN) + h * _aligned(stride_h, ALIGN)


@triton.jit
def _tile_ptrs(base, rows, offs_d, stride_s, stride_d, ALIGN: tl.constexpr):
    """Pointers to the (rows, BLOCK_D) tile of one head's (S, D) matrix."""
    return base + rows[:, None] * _aligned(stride_s, ALIGN) + offs_d[None, :] * stride_d


@triton.jit
def _load_rows(ptrs, mask_d, EVEN_D: tl.constexpr):
    """A (rows, BLOCK_D) tile at ptrs, native dtype; head-dim padding (d >= D) reads 0."""
    if EVEN_D:
        return tl.load(ptrs)
    return tl.load(ptrs, mask=mask_d[None, :], other=0.0)


@triton.jit
def _fwd_block(acc, l_i, m_i, q, k_ptrs, v_ptrs, cols, S_K, mask_d, qk_scale,
               MASK_N: tl.constexpr, EVEN_D: tl.constexpr, INPUT_PRECISION: tl.constexpr):
    """One key block of the online softmax: returns the updated (acc, l, m)."""
    k = _load_rows(k_ptrs, mask_d, EVEN_D)  # (BLOCK_N, BLOCK_D)
    s = tl.dot(q, tl.trans(k), input_precision=INPUT_PRECISION) * qk_scale  # (BLOCK_M, BLOCK_N), base 2
    if MASK_N:
        s = tl.where((cols < S_K)[None, :], s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, 1))  # finite: every block holds a real key
    p = tl.exp2(s - m_new[:, None])
    alpha = tl.exp2(m_i - m_new)  # 0 on the first block (m = -inf)
    l_i = l_i * alpha + tl.sum(p, 1)
    v = _load_rows(v_ptrs, mask_d, EVEN_D)
    acc = acc * alpha[:, None]
    acc = tl.dot(p.to(v.dtype), v, acc, input_precision=INPUT_PRECISION)
    return acc, l_i, m_new


@triton.jit
def _attn_fwd_kernel(
    q_ptr, k_ptr, v_ptr, o_ptr, lse_ptr,
    BH, H, S_Q, S_K, qk_scale,
    stride_qb, stride_qh, stride_qs, stride_qd,
    stride_kb, stride_kh, stride_ks, stride_kd,
    stride_vb, stride_vh, stride_vs, stride_vd,
    stride_ob, stride_oh, stride_os, stride_od,
    HEAD_DIM: tl.constexpr, ALIGN: tl.constexpr, EVEN_D: tl.constexpr, INPUT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """Program -> (batch·head, query block), the query block fastest. Writes o and L (base 2)."""
    bh, start_m, b, h = _program_block(S_Q, H, BLOCK_M)
    q_base = q_ptr + _head_offset(b, h, stride_qb, stride_qh, ALIGN)
    k_base = k_ptr + _head_offset(b, h, stride_kb, stride_kh, ALIGN)
    v_base = v_ptr + _head_offset(b, h, stride_vb, stride_vh, ALIGN)

    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < HEAD_DIM
    rows = tl.minimum(offs_m, S_Q - 1)  # rows past S_q repeat the last one; never stored
    q = _load_rows(_tile_ptrs(q_base, rows, offs_d, stride_qs, stride_qd, ALIGN), mask_d, EVEN_D)

    m_i = tl.full((BLOCK_M,), float("-inf"), dtype=tl.float32)
    l_i = tl.zeros((BLOCK_M,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_M, BLOCK_D), dtype=tl.float32)
    k_ptrs = _tile_ptrs(k_base, offs_n, offs_d, stride_ks, stride_kd, ALIGN)
    v_ptrs = _tile_ptrs(v_base, offs_n, offs_d, stride_vs, stride_vd, ALIGN)
    n_full = (S_K // BLOCK_N) * BLOCK_N
    for start_n in range(0, n_full, BLOCK_N):  # full key blocks: no masks
        acc, l_i, m_i = _fwd_block(acc, l_i, m_i, q, k_ptrs, v_ptrs, offs_n, S_K, mask_d, qk_scale,
                                   False, EVEN_D, INPUT_PRECISION)
        k_ptrs += BLOCK_N * stride_ks
        v_ptrs += BLOCK_N * stride_vs
    if n_full < S_K:  # the partial last block: columns past S_k get -inf
        cols = n_full + offs_n
        keys = tl.minimum(cols, S_K - 1)
        k_ptrs = _tile_ptrs(k_base, keys, offs_d, stride_ks, stride_kd, ALIGN)
        v_ptrs = _tile_ptrs(v_base, keys, offs_d, stride_vs, stride_vd, ALIGN)
        acc, l_i, m_i = _fwd_block(acc, l_i, m_i, q, k_ptrs, v_ptrs, cols, S_K, mask_d, qk_scale,
                                   True, EVEN_D, INPUT_PRECISION)

    o = acc / l_i[:, None]  # l >= 1: the row maximum contributes exp2(0)
    mask_m = offs_m < S_Q
    o_base = o_ptr + _head_offset(b, h, stride_ob, stride_oh, ALIGN)
    o_ptrs = _tile_ptrs(o_base, offs_m, offs_d, stride_os, stride_od, ALIGN)
    tl.store(o_ptrs, o.to(o_ptr.dtype.element_ty), mask=mask_m[:, None] & mask_d[None, :])
    tl.store(lse_ptr + bh.to(tl.int64) * S_Q + offs_m, m_i + tl.log2(l_i), mask=mask_m)


@triton.jit
def _attn_bwd_preprocess_kernel(
    o_ptr, do_ptr, delta_ptr,
    H, S_Q,
    stride_ob, stride_oh, stride_os, stride_od,
    stride_gb, stride_gh, stride_gs, stride_gd,
    HEAD_DIM: tl.constexpr, ALIGN: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """Δ[bh, m] = sum_d o[b, h, m, d]·dO[b, h, m, d] in fp32."""
    bh, start_m, b, h = _program_block(S_Q, H, BLOCK_M)
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    mask = (offs_m < S_Q)[:, None] & (offs_d < HEAD_DIM)[None, :]
    o_base = o_ptr + _head_offset(b, h, stride_ob, stride_oh, ALIGN)
    do_base = do_ptr + _head_offset(b, h, stride_gb, stride_gh, ALIGN)
    o = tl.load(_tile_ptrs(o_base, offs_m, offs_d, stride_os, stride_od, ALIGN), mask=mask, other=0.0).to(tl.float32)
    do = tl.load(_tile_ptrs(do_base, offs_m, offs_d, stride_gs, stride_gd, ALIGN), mask=mask, other=0.0).to(tl.float32)
    tl.store(delta_ptr + bh.to(tl.int64) * S_Q + offs_m, tl.sum(o * do, 1), mask=offs_m < S_Q)


@triton.jit
def _dkdv_block(dk, dv, k, v, q_ptrs, do_ptrs, lse_ptrs, delta_ptrs, rows, S_Q, mask_d, qk_scale,
                MASK_M: tl.constexpr, EVEN_D: tl.constexpr, INPUT_PRECISION: tl.constexpr):
    """One query block's contribution to a key block's dK (unscaled) and dV."""
    q = _load_rows(q_ptrs, mask_d, EVEN_D)  # (BLOCK_M, BLOCK_D)
    lse = tl.load(lse_ptrs)  # (BLOCK_M,)
    s_t = tl.dot(k, tl.trans(q), input_precision=INPUT_PRECISION) * qk_scale  # (BLOCK_N, BLOCK_M) = Sᵀ
    p_t = tl.exp2(s_t - lse[None, :])
    if MASK_M:  # query rows past S_q (clamped duplicates) contribute nothing
        p_t = tl.where((rows < S_Q)[None, :], p_t, 0.0)
    do = _load_rows(do_ptrs, mask_d, EVEN_D)
    dv = tl.dot(p_t.to(do.dtype), do, dv, input_precision=INPUT_PRECISION)
    dp_t = tl.dot(v, tl.trans(do), input_precision=INPUT_PRECISION)
    delta = tl.load(delta_ptrs)
    ds_t = p_t * (dp_t - delta[None, :])
    dk = tl.dot(ds_t.to(q.dtype), q, dk, input_precision=INPUT_PRECISION)
    return dk, dv


@triton.jit
def _attn_bwd_dkdv_kernel(
    q_ptr, k_ptr, v_ptr, do_ptr, lse_ptr, delta_ptr, dk_ptr, dv_ptr,
    BH, H, S_Q, S_K, qk_scale, scale,
    stride_qb, stride_qh, stride_qs, stride_qd,
    stride_kb, stride_kh, stride_ks, stride_kd,
    stride_vb, stride_vh, stride_vs, stride_vd,
    stride_gb, stride_gh, stride_gs, stride_gd,
    stride_db, stride_dh, stride_ds, stride_dd,
    HEAD_DIM: tl.constexpr, ALIGN: tl.constexpr, EVEN_D: tl.constexpr, INPUT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """Program -> (batch·head, key block), the key block fastest: dK and dV of BLOCK_N keys
    over every query block. dk and dv share one layout (stride_d*)."""
    bh, start_n, b, h = _program_block(S_K, H, BLOCK_N)
    q_base = q_ptr + _head_offset(b, h, stride_qb, stride_qh, ALIGN)
    do_base = do_ptr + _head_offset(b, h, stride_gb, stride_gh, ALIGN)
    stats = bh.to(tl.int64) * S_Q  # row offset of this head in L and Δ

    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_m = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < HEAD_DIM
    keys = tl.minimum(offs_n, S_K - 1)  # key rows past S_k repeat the last one; never stored
    k_base = k_ptr + _head_offset(b, h, stride_kb, stride_kh, ALIGN)
    v_base = v_ptr + _head_offset(b, h, stride_vb, stride_vh, ALIGN)
    k = _load_rows(_tile_ptrs(k_base, keys, offs_d, stride_ks, stride_kd, ALIGN), mask_d, EVEN_D)
    v = _load_rows(_tile_ptrs(v_base, keys, offs_d, stride_vs, stride_vd, ALIGN), mask_d, EVEN_D)
    dk = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)
    dv = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)

    q_ptrs = _tile_ptrs(q_base, offs_m, offs_d, stride_qs, stride_qd, ALIGN)
    do_ptrs = _tile_ptrs(do_base, offs_m, offs_d, stride_gs, stride_gd, ALIGN)
    lse_ptrs = lse_ptr + stats + offs_m
    delta_ptrs = delta_ptr + stats + offs_m
    m_full = (S_Q // BLOCK_M) * BLOCK_M
    for start_m in range(0, m_full, BLOCK_M):  # full query blocks: no masks
        dk, dv = _dkdv_block(dk, dv, k, v, q_ptrs, do_ptrs, lse_ptrs, delta_ptrs, offs_m, S_Q, mask_d, qk_scale,
                             False, EVEN_D, INPUT_PRECISION)
        q_ptrs += BLOCK_M * stride_qs
        do_ptrs += BLOCK_M * stride_gs
        lse_ptrs += BLOCK_M
        delta_ptrs += BLOCK_M
    if m_full < S_Q:  # the partial last query block, at clamped rows, masked
        rows = m_full + offs_m
        rc = tl.minimum(rows, S_Q - 1)
        q_ptrs = _tile_ptrs(q_base, rc, offs_d, stride_qs, stride_qd, ALIGN)
        do_ptrs = _tile_ptrs(do_base, rc, offs_d, stride_gs, stride_gd, ALIGN)
        dk, dv = _dkdv_block(dk, dv, k, v, q_ptrs, do_ptrs, lse_ptr + stats + rc, delta_ptr + stats + rc, rows, S_Q,
                             mask_d, qk_scale, True, EVEN_D, INPUT_PRECISION)

    dk = dk * scale  # S = scale·q·kᵀ
    mask = (offs_n < S_K)[:, None] & mask_d[None, :]
    out = _tile_ptrs(_head_offset(b, h, stride_db, stride_dh, ALIGN), offs_n, offs_d, stride_ds, stride_dd, ALIGN)
    tl.store(dk_ptr + out, dk.to(dk_ptr.dtype.element_ty), mask=mask)
    tl.store(dv_ptr + out, dv.to(dv_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _dq_block(dq, q, do, lse, delta, k_ptrs, v_ptrs, cols, S_K, mask_d, qk_scale,
              MASK_N: tl.constexpr, EVEN_D: tl.constexpr, INPUT_PRECISION: tl.constexpr):
    """One key block's contribution to a query block's dQ (unscaled)."""
    k = _load_rows(k_ptrs, mask_d, EVEN_D)  # (BLOCK_N, BLOCK_D)
    s = tl.dot(q, tl.trans(k), input_precision=INPUT_PRECISION) * qk_scale  # (BLOCK_M, BLOCK_N)
    if MASK_N:
        s = tl.where((cols < S_K)[None, :], s, float("-inf"))
    p = tl.exp2(s - lse[:, None])
    v = _load_rows(v_ptrs, mask_d, EVEN_D)
    dp = tl.dot(do, tl.trans(v), input_precision=INPUT_PRECISION)
    ds = p * (dp - delta[:, None])
    return tl.dot(ds.to(k.dtype), k, dq, input_precision=INPUT_PRECISION)


@triton.jit
def _attn_bwd_dq_kernel(
    q_ptr, k_ptr, v_ptr, do_ptr, lse_ptr, delta_ptr, dq_ptr,
    BH, H, S_Q, S_K, qk_scale, scale,
    stride_qb, stride_qh, stride_qs, stride_qd,
    stride_kb, stride_kh, stride_ks, stride_kd,
    stride_vb, stride_vh, stride_vs, stride_vd,
    stride_gb, stride_gh, stride_gs, stride_gd,
    stride_db, stride_dh, stride_ds, stride_dd,
    HEAD_DIM: tl.constexpr, ALIGN: tl.constexpr, EVEN_D: tl.constexpr, INPUT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """Program -> (batch·head, query block), the query block fastest: dQ of BLOCK_M rows
    over every key block."""
    bh, start_m, b, h = _program_block(S_Q, H, BLOCK_M)
    k_base = k_ptr + _head_offset(b, h, stride_kb, stride_kh, ALIGN)
    v_base = v_ptr + _head_offset(b, h, stride_vb, stride_vh, ALIGN)
    stats = bh.to(tl.int64) * S_Q

    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < HEAD_DIM
    rows = tl.minimum(offs_m, S_Q - 1)  # rows past S_q repeat the last one; never stored
    q_base = q_ptr + _head_offset(b, h, stride_qb, stride_qh, ALIGN)
    do_base = do_ptr + _head_offset(b, h, stride_gb, stride_gh, ALIGN)
    q = _load_rows(_tile_ptrs(q_base, rows, offs_d, stride_qs, stride_qd, ALIGN), mask_d, EVEN_D)
    do = _load_rows(_tile_ptrs(do_base, rows, offs_d, stride_gs, stride_gd, ALIGN), mask_d, EVEN_D)
    lse = tl.load(lse_ptr + stats + rows)
    delta = tl.load(delta_ptr + stats + rows)
    dq = tl.zeros((BLOCK_M, BLOCK_D), dtype=tl.float32)

    k_ptrs = _tile_ptrs(k_base, offs_n, offs_d, stride_ks, stride_kd, ALIGN)
    v_ptrs = _tile_ptrs(v_base, offs_n, offs_d, stride_vs, stride_vd, ALIGN)
    n_full = (S_K // BLOCK_N) * BLOCK_N
    for start_n in range(0, n_full, BLOCK_N):  # full key blocks: no masks
        dq = _dq_block(dq, q, do, lse, delta, k_ptrs, v_ptrs, offs_n, S_K, mask_d, qk_scale,
                       False, EVEN_D, INPUT_PRECISION)
        k_ptrs += BLOCK_N * stride_ks
        v_ptrs += BLOCK_N * stride_vs
    if n_full < S_K:  # the partial last key block: columns past S_k get P = 0
        cols = n_full + offs_n
        keys = tl.minimum(cols, S_K - 1)
        k_ptrs = _tile_ptrs(k_base, keys, offs_d, stride_ks, stride_kd, ALIGN)
        v_ptrs = _tile_ptrs(v_base, keys, offs_d, stride_vs, stride_vd, ALIGN)
        dq = _dq_block(dq, q, do, lse, delta, k_ptrs, v_ptrs, cols, S_K, mask_d, qk_scale,
                       True, EVEN_D, INPUT_PRECISION)

    dq = dq * scale
    mask = (offs_m < S_Q)[:, None] & mask_d[None, :]
    out = _tile_ptrs(_head_offset(b, h, stride_db, stride_dh, ALIGN), offs_m, offs_d, stride_ds, stride_dd, ALIGN)
    tl.store(dq_ptr + out, dq.to(dq_ptr.dtype.element_ty), mask=mask)


# ----------------------------------------------------------------------------- launch plans

KERNELS_BY_KIND = {"fwd": _attn_fwd_kernel, "dkdv": _attn_bwd_dkdv_kernel, "dq": _attn_bwd_dq_kernel}
CONFIGS_BY_KIND = {"fwd": FWD_CONFIGS, "dkdv": DKDV_CONFIGS, "dq": DQ_CONFIGS}


@dataclass(frozen=True)
class Params:
    """Everything but the tensors, as given to AttentionFunction."""

    scale: float
    input_precision: str  # tl.dot's: "ieee", "tf32x3" or "tf32" (fp32 only; fp16/bf16 ignore it)


def block_d(head_dim: int) -> int:
    """The head dim padded to a power of two >= 16 (tl.dot needs every dimension >= 16)."""
    return max(16, triton.next_power_of_2(head_dim))


def smem_bytes(kind: str, config: triton.Config, bd: int, itemsize: int) -> int:
    """Rough shared-memory estimate: the resident tiles plus the pipelined ones."""
    bm, bn, stages = config.kwargs["BLOCK_M"], config.kwargs["BLOCK_N"], config.num_stages
    if kind == "fwd":  # q resident; k, v pipelined
        return (bm + stages * 2 * bn) * bd * itemsize
    if kind == "dkdv":  # k, v resident; q, dO pipelined; Pᵀ and dSᵀ staged for their dots
        return (2 * bn * bd + stages * 2 * bm * bd + 2 * bm * bn) * itemsize
    return (2 * bm * bd + stages * 2 * bn * bd + 2 * bm * bn) * itemsize  # dq: q, dO resident; k, v pipelined


def acc_per_thread(kind: str, config: triton.Config, bd: int) -> int:
    """fp32 values per thread the tile's accumulators and score tiles hold (register pressure)."""
    bm, bn = config.kwargs["BLOCK_M"], config.kwargs["BLOCK_N"]
    values = {"fwd": bm * bd + bm * bn, "dkdv": 2 * bn * bd + 2 * bm * bn, "dq": bm * bd + 2 * bm * bn}[kind]
    return values // (32 * config.num_warps)


def shape(config: triton.Config) -> tuple[int, int, int, int]:
    """(BLOCK_M, BLOCK_N, num_warps, num_stages), as the lists above write a configuration."""
    return config.kwargs["BLOCK_M"], config.kwargs["BLOCK_N"], config.num_warps, config.num_stages


def pruner(kind: str, fma: bool):
    """early_config_prune for one kernel kind: tiles no longer than the sequences (rounded up
    to a power of two), within the shared-memory budget and register estimate; from
    BLOCK_D = WIDE_HEAD on, 8 warps on sm_90's tensor cores, WIDE_HEAD_BEFORE_SM90 before."""
    def prune(configs, named_args, **kwargs):
        q = named_args["q_ptr"]
        bd, itemsize, arch = kwargs["BLOCK_D"], q.element_size(), capability(q.device)
        limit, max_acc = shared_memory_limit(q.device), MAX_ACC_PER_THREAD[90 if arch >= 90 else 80]
        longest_m = max(16, triton.next_power_of_2(named_args["S_Q"]))
        longest_n = max(16, triton.next_power_of_2(named_args["S_K"]))
        wide = bd >= WIDE_HEAD and not fma
        listed = (WIDE_HEAD_BEFORE_SM90 if wide and arch < 90 else FMA_CONFIGS if fma else CONFIGS_BY_KIND)[kind]

        def unfit(c) -> bool:  # not this GPU's list, or a 4-warp tile at a wide head on sm_90
            return shape(c) not in listed or (wide and arch >= 90 and c.num_warps < 8)

        fits = [c for c in configs if c.kwargs["BLOCK_M"] <= longest_m and c.kwargs["BLOCK_N"] <= longest_n
                and smem_bytes(kind, c, bd, itemsize) <= limit and acc_per_thread(kind, c, bd) <= max_acc
                and not unfit(c)]
        return fits or [min(configs, key=lambda c: (unfit(c), acc_per_thread(kind, c, bd),
                                                    smem_bytes(kind, c, bd, itemsize)))]

    return prune


@functools.cache
def autotuned(kind: str, fma: bool):
    """The `kind` kernel ("fwd", "dkdv", "dq") under @triton.autotune (CUDA only; built on
    first use), with the IEEE fp32 (FMA) or the tensor-core configurations (and the wide-head
    ones of GPUs before sm_90, which the pruning keeps there only)."""
    shapes = FMA_CONFIGS[kind] if fma else tuple(dict.fromkeys(CONFIGS_BY_KIND[kind] + WIDE_HEAD_BEFORE_SM90[kind]))
    configs = [triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=s) for m, n, w, s in shapes]
    return triton.autotune(configs, key=["BH", "S_Q", "S_K", "HEAD_DIM", "INPUT_PRECISION"],
                           prune_configs_by={"early_config_prune": pruner(kind, fma)})(KERNELS_BY_KIND[kind])


def launch(kind: str, program_rows: str, args: tuple, meta: dict, bh: int, rows: int) -> None:
    """Launch `kind` over bh x cdiv(rows, BLOCK_<program_rows>) programs: the fixed
    interpreter blocks, or the autotuned ones on CUDA."""
    if interpreting():
        blocks = {"BLOCK_M": INTERPRETER_BLOCK, "BLOCK_N": INTERPRETER_BLOCK}
        KERNELS_BY_KIND[kind][(bh * triton.cdiv(rows, INTERPRETER_BLOCK),)](*args, **meta, **blocks)
    else:
        fma = meta["INPUT_PRECISION"] == "ieee"
        autotuned(kind, fma)[lambda m: (bh * triton.cdiv(rows, m[program_rows]),)](*args, **meta)


def slice_span(t: torch.Tensor) -> int:
    """The largest element offset within one (batch, head) slice of a (B, H, S, D) tensor."""
    return max(0, t.shape[2] - 1) * t.stride(2) + max(0, t.shape[3] - 1) * t.stride(3)


def check_kernel_inputs(q, k, v, fp32_precision: str) -> None:
    check_inputs(q, k, v)
    if q.dtype not in KERNEL_DTYPES or k.dtype != q.dtype or v.dtype != q.dtype:
        raise ConfigError(f"The Triton attention kernel takes q, k, v of one dtype among fp32/fp16/bf16; got "
                          f"{q.dtype}, {k.dtype}, {v.dtype}. Cast them, or use backend='torch' (float64 too).")
    if fp32_precision not in FP32_PRECISIONS:
        raise ConfigError(f"attention: fp32_precision={fp32_precision!r}; choose one of "
                          f"{', '.join(FP32_PRECISIONS)} ('ieee' is exact fp32).")
    if not 1 <= q.shape[3] <= MAX_HEAD_DIM:
        raise ConfigError(f"The Triton attention kernel takes head dims 1 to {MAX_HEAD_DIM}; got {q.shape[3]}. "
                          "Use backend='torch'.")
    check_kernel_device(OP_NAME, q)
    for name, t in (("q", q), ("k", k), ("v", v)):
        if slice_span(t) >= 2**31:
            raise ConfigError(f"attention: one (batch, head) slice of {name} spans 2^31 elements or more; the "
                              "kernel indexes within a slice in int32. Use backend='torch'.")


def input_precision(dtype: torch.dtype, fp32_precision: str) -> str:
    # fp16/bf16 ignore input_precision; give them the default ("tf32") so no path changes.
    return fp32_precision if dtype == torch.float32 else "tf32"


def row_alignment(*tensors: torch.Tensor) -> int:
    """ALIGN: the largest power of two <= 16 dividing every batch, head and row stride of the
    tensors (elements). With 16-byte aligned data it lets masked rows of a head dim such as 40
    load as 16-byte vectors and asynchronous copies (see _aligned)."""
    align = 16
    for t in tensors:
        for stride in t.stride()[:3]:
            align = math.gcd(align, stride)
    return align


def common_meta(head_dim: int, p: Params, *tensors: torch.Tensor) -> dict:
    bd = block_d(head_dim)
    return {"HEAD_DIM": head_dim, "ALIGN": row_alignment(*tensors), "EVEN_D": bd == head_dim,
            "INPUT_PRECISION": p.input_precision, "BLOCK_D": bd}


# ----------------------------------------------------------------------------- launchers


def attention_forward(q, k, v, p: Params) -> tuple[torch.Tensor, torch.Tensor]:
    """o (B, H, S_q, D) contiguous in q's dtype and L (B, H, S_q) fp32 (base-2 log-sum-exp)."""
    B, H, S_q, D = q.shape
    S_k = k.shape[2]
    o = torch.empty((B, H, S_q, D), device=q.device, dtype=q.dtype)
    lse = torch.empty((B, H, S_q), device=q.device, dtype=torch.float32)
    if o.numel() == 0:
        return o, lse
    if S_k == 0:  # no keys: an empty sum, as the reference gives
        return o.zero_(), lse.fill_(float("-inf"))
    args = (q, k, v, o, lse, B * H, H, S_q, S_k, p.scale * LOG2E,
            *q.stride(), *k.stride(), *v.stride(), *o.stride())
    launch("fwd", "BLOCK_M", args, common_meta(D, p, q, k, v, o), B * H, S_q)
    return o, lse


def attention_backward(do, q, k, v, o, lse, p: Params, need_dq: bool = True, need_dkdv: bool = True):
    """(dq, dk, dv), contiguous in the inputs' dtype (None where not needed)."""
    B, H, S_q, D = q.shape
    S_k = k.shape[2]
    dq = torch.empty((B, H, S_q, D), device=q.device, dtype=q.dtype) if need_dq else None
    dk = torch.empty((B, H, S_k, D), device=q.device, dtype=q.dtype) if need_dkdv else None
    dv = torch.empty((B, H, S_k, D), device=q.device, dtype=q.dtype) if need_dkdv else None
    if B * H * D == 0 or S_q == 0 or S_k == 0:  # nothing flows: zeros (empty tensors stay empty)
        return tuple(None if t is None else t.zero_() for t in (dq, dk, dv))
    if slice_span(do) >= 2**31:  # an upstream gradient with enormous strides: int32 offsets need a copy
        do = do.contiguous()
    meta = common_meta(D, p, *(t for t in (q, k, v, o, do, dq, dk, dv) if t is not None))
    delta = torch.empty((B, H, S_q), device=q.device, dtype=torch.float32)
    block_m = INTERPRETER_BLOCK if interpreting() else PREPROCESS_BLOCK_M
    _attn_bwd_preprocess_kernel[(B * H * triton.cdiv(S_q, block_m),)](
        o, do, delta, H, S_q, *o.stride(), *do.stride(), HEAD_DIM=D, ALIGN=meta["ALIGN"], BLOCK_M=block_m,
        BLOCK_D=meta["BLOCK_D"])
    common = (B * H, H, S_q, S_k, p.scale * LOG2E, p.scale, *q.stride(), *k.stride(), *v.stride(), *do.stride())
    if need_dkdv:
        launch("dkdv", "BLOCK_N", (q, k, v, do, lse, delta, dk, dv, *common, *dk.stride()), meta, B * H, S_k)
    if need_dq:
        launch("dq", "BLOCK_M", (q, k, v, do, lse, delta, dq, *common, *dq.stride()), meta, B * H, S_q)
    return dq, dk, dv


# ----------------------------------------------------------------------------- autograd


class AttentionFunction(torch.autograd.Function):
    """Saves q, k, v, o and the row log-sum-exp L (B·H·S_q fp32): nothing S_q x S_k."""

    @staticmethod
    def forward(ctx, q, k, v, p: Params):
        o, lse = attention_forward(q, k, v, p)
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.p = p
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, o, lse = ctx.saved_tensors
        need_dq = ctx.needs_input_grad[0]
        need_dkdv = ctx.needs_input_grad[1] or ctx.needs_input_grad[2]
        dq, dk, dv = attention_backward(do, q, k, v, o, lse, ctx.p, need_dq, need_dkdv)
        return dq, dk, dv, None


# ----------------------------------------------------------------------------- public op


def triton_attention(q, k, v, scale: float | None = None, *, fp32_precision: str = "ieee"):
    """The Triton implementation (forward, and backward through autograd).

    fp32_precision applies to fp32 inputs only: "ieee" (exact, default), "tf32x3", "tf32".
    Under autocast, q, k, v are cast to the autocast dtype first (as for SDPA).
    """
    check_inputs(q, k, v)
    dtype = autocast_dtype(q.device)
    if dtype is not None:
        q, k, v = (t if t.dtype == torch.float64 else t.to(dtype) for t in (q, k, v))
    check_kernel_inputs(q, k, v, fp32_precision)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    if not math.isfinite(scale):
        raise ConfigError(f"attention: scale must be finite; got {scale}.")
    p = Params(scale, input_precision(q.dtype, fp32_precision))
    if torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v)):
        return AttentionFunction.apply(q, k, v, p)
    return attention_forward(q, k, v, p)[0]


def attention(q, k, v, scale: float | None = None, backend: str = "auto"):
    """softmax(q kᵀ · scale) v; backend: "auto" (Triton on CUDA), "triton" or "torch"."""
    return dispatch(OP_NAME, backend, q.device)(q, k, v, scale)


def _register() -> None:
    KERNELS.register(OP_NAME, KernelOp(
        name=OP_NAME, function=attention, reference=reference, triton=triton_attention,
        summary="non-causal attention without the S x S matrix (online softmax), fwd+bwd",
        examples=examples,
    ))


def examples(dtype, device, generator):
    """Self-attention with a sequence length that is no tile multiple and head dim 40 (padded to
    64 in the kernel); cross-attention with fewer keys than queries."""

    def qkv(s_q, s_k, d):
        return {name: example_randn(generator, 2, 2, s, d, dtype=dtype, device=device)
                for name, s in (("q", s_q), ("k", s_k), ("v", s_k))}

    return [OpExample("self S=19 D=40", qkv(19, 19, 40), ("q", "k", "v")),
            OpExample("cross S_q=9 S_k=5 D=16", {**qkv(9, 5, 16), "scale": 0.3}, ("q", "k", "v"))]


_register()
