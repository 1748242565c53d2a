"""VQ nearest-codebook search: Triton kernels, launchers, public op.

    indices = vq_nearest(x, codebook, return_distance=False, backend="auto")
    indices, distance = vq_nearest(x, codebook, return_distance=True)

    indices[n]  = argmin_j ||x_n - e_j||^2  =  argmax_j t_nj,   t_nj = x_n.e_j - ||e_j||^2 / 2
    distance[n] = ||x_n - e_{indices[n]}||^2                    (fp32, recomputed exactly)

x (N, D), codebook e (K, D); the definition is the reference, genbench.baselines.vq.
||x_n||^2 is the same for every j, so it drops out of the argmin; halving the rest is
exact in floating point, so argmax_j t_nj picks the same code as argmin_j of
||e_j||^2 - 2 x_n.e_j and saves one multiply per score.

Algorithm. h_j = ||e_j||^2 / 2 is computed once per call, in fp32, by a torch reduction
(K·D reads: small next to the search). One program takes BLOCK_N rows of x and walks its
share of the codebook in BLOCK_K tiles. Each tile's (BLOCK_N, BLOCK_K) scores start as
-h_j and receive x.e with tl.dot over D (in one BLOCK_D chunk when D fits, x then loaded
once per program; otherwise an inner loop over D chunks), accumulated in fp32. Each row
keeps a running (max, argmax) in registers: the N x K score matrix never exists.

Ties break like torch.argmin on the reference: the lowest index wins. Within a tile the
leftmost maximum is taken; across tiles (and across the K splits below, merged in code
order) the running best is replaced only by a strictly larger score. Padded codes
(j >= K) load h = +inf, so their score is -inf and never wins (a row whose every score
is -inf or NaN keeps index 0, like torch.argmin on all-equal values). NaN scores never
win: unlike torch.argmin, a NaN in a codebook row does not select it.

Small N: with fewer row blocks than about twice the SM count, the codebook is split into
SPLIT ranges of K_PER_SPLIT codes (a multiple of every BLOCK_K) on a second grid axis;
each program writes its range's (best score, index) to a (SPLIT, N) buffer and a small
second kernel merges the ranges in code order. Deterministic, no atomics.

Distance (optional): recomputed as sum_d (x_nd - e_{i,d})^2 in fp32 for the chosen code,
gathering its row (N·D more reads). Not ||x||^2 + ||e||^2 - 2 x.e, whose cancellation
loses every digit when x sits close to a code -- the usual case late in training.

Precision. fp16/bf16 inputs use tensor cores (products exact in fp32, fp32 accumulation).
fp32 inputs default to fp32_precision="ieee": exact fp32 FMA (no tensor cores), as the
reference computes. "tf32x3" (three TF32 tensor-core products, about fp32 accuracy) and
"tf32" (10-bit mantissa: near-ties may pick a different code) trade exactness for speed.
The Triton interpreter always computes in IEEE fp32. float64 is refused (backend="torch").
Mixed input dtypes are promoted to the wider one (a copy of the narrower input).

Layout. Any strides are accepted and passed to the kernel; nothing is copied.

Block sizes. On CUDA, @triton.autotune picks among a few (BLOCK_N, BLOCK_K, warps,
stages) configurations per (K, D, K_PER_SPLIT, dtypes), after pruning the ones whose
shared-memory estimate exceeds the device's per-block limit (IEEE fp32 has its own, smaller list: the FMA
dot is register-bound). BLOCK_D is the next power of two of D when that is at most 256
(fp16/bf16), 64 (tf32 paths) or 16 (IEEE fp32): x stays resident; wider D loops over
chunks of 64, 32 or 16. Every kept (path, configuration) compiles for sm_90 and sm_80
without register spills at the benchmarks' and tests' specialisations (wgmma on the
tensor-core paths of sm_90; `genbench kernels --compile sm_90 sm_80`). fp32 inputs run
exact by default; "tf32x3" is the fast fp32 path (the benchmark times it beside the exact
one). Loads are asynchronous (pipelined) only when D and the row strides are multiples of
16 (Triton specialises such integers and can then vectorise the masked loads); an odd D
such as 33 runs unpipelined. Tiles are powers of two: a D that is not one is padded with
masked zeros inside the chunk (D = 33 costs the MACs of D = 64 on the one-chunk path). The interpreter runs one
fixed small configuration (16 x 16 x 16, and the auto split sees 1 SM).

Memory traffic: x (N·D) is read once per (row block, split) program -- once when D fits
one chunk, once per codebook tile otherwise (from L1/L2) -- and the codebook (K·D) once
per row block (from L2 after the first); writes N int64 indices (+ N fp32 distances).
FLOPs: 2·N·K·D useful (one multiply-add per x/code/dimension triple).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from genbench.baselines.vq import check_inputs
from genbench.baselines.vq import vq_nearest as reference
from genbench.errors import ConfigError
from genbench.kernels.device import capability, check_kernel_device, shared_memory_limit, sm_count
from genbench.kernels.device import interpreter_enabled as interpreting
from genbench.kernels.dispatch import KernelOp, OpExample, dispatch, example_randn
from genbench.registry import KERNELS

OP_NAME = "vq_nearest"
KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
FP32_PRECISIONS = ("ieee", "tf32x3", "tf32")
# Per dot path: the widest D held as one chunk (x then stays resident), and the chunk
# width when D is wider (an inner, pipelined loop over D). Chosen from the registers
# and spills ptxas -v reports for the configurations below on sm_90.
ONE_CHUNK_MAX_D = {"half": 256, "tf32": 64, "ieee": 16}
LOOP_BLOCK_D = {"half": 64, "tf32": 32, "ieee": 16}
EPILOGUE_BLOCK_D = 32  # D chunk of the exact-distance gather (register pressure)
WAVES = 2  # aim for at least this many programs per SM before splitting K
INTERPRETER_BLOCK = 16  # BLOCK_N = BLOCK_K = max BLOCK_D under the interpreter
# (BLOCK_N, BLOCK_K, num_warps, num_stages). Every BLOCK_K divides GPU_K_GRANULE.
GPU_CONFIGS = ((128, 128, 8, 3), (128, 128, 8, 2), (128, 64, 4, 4), (64, 128, 4, 3), (64, 64, 4, 3),
               (64, 64, 8, 3))
# IEEE fp32: the FMA dot holds its operands in registers. At 64 accumulators per thread
# (128x128 on 8 warps, 128x64 or 64x128 on 4) ptxas reports 254-255 registers and spills on
# sm_90 or sm_80; these hold 32 or fewer (112-190 registers, no spills on either).
FMA_CONFIGS = ((64, 64, 4, 3), (64, 64, 8, 3), (32, 128, 4, 3))
# tf32x3 before sm_90: three mma.sync products keep split operand fragments in registers, and
# ptxas spills from 32 accumulators per thread (8 to 1884 bytes at D = 64 on sm_80), or at 16
# with a 64-wide x block held resident: there x stays resident up to D = 32 only.
TF32X3_MAX_ACC_BEFORE_SM90 = 16
GPU_K_GRANULE = 128
NOMINAL_BLOCK_N = 128  # rows per program assumed when choosing the K split


# ----------------------------------------------------------------------------- kernels


@triton.jit
def _load_rows(ptr, rows, offs_d, stride_r, stride_d, mask):
    """(BLOCK, BLOCK_D) tile of rows `rows` of a strided 2-D tensor, native dtype, 0 where masked."""
    return tl.load(ptr + rows[:, None] * stride_r + offs_d[None, :] * stride_d, mask=mask, other=0.0)


@triton.jit
def _load_codes_t(e_ptr, codes, offs_d, stride_ek, stride_ed, mask):
    """(BLOCK_D, BLOCK_K) tile of e^T for codes `codes`, native dtype, 0 where masked."""
    return tl.load(e_ptr + codes[None, :] * stride_ek + offs_d[:, None] * stride_ed, mask=mask, other=0.0)


@triton.jit
def _exact_distance(x_ptr, e_ptr, rows, codes, mask_n, D,
                    stride_xn, stride_xd, stride_ek, stride_ed,
                    BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    """sum_d (x[rows, d] - e[codes, d])^2 in fp32: one code per row, (BLOCK_N,)."""
    acc = tl.zeros((BLOCK_N,), dtype=tl.float32)
    for d0 in range(0, D, BLOCK_D):
        offs_d = d0 + tl.arange(0, BLOCK_D)
        mask = mask_n[:, None] & (offs_d < D)[None, :]
        x = _load_rows(x_ptr, rows, offs_d, stride_xn, stride_xd, mask).to(tl.float32)
        e = _load_rows(e_ptr, codes, offs_d, stride_ek, stride_ed, mask).to(tl.float32)
        diff = x - e
        acc += tl.sum(diff * diff, axis=1)
    return acc


@triton.jit
def _tile_scores(x_tile, x_ptr, e_ptr, h_ptr, rows, codes, mask_n, mask_k, D,
                 stride_xn, stride_xd, stride_ek, stride_ed,
                 ONE_CHUNK: tl.constexpr, INPUT_PRECISION: tl.constexpr,
                 BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr):
    """t = x.e - ||e||^2/2 for a (BLOCK_N, BLOCK_K) tile, fp32; -inf for padded codes."""
    h = tl.load(h_ptr + codes, mask=mask_k, other=float("inf"))  # (BLOCK_K,)
    acc = tl.zeros((BLOCK_N, BLOCK_K), dtype=tl.float32) - h[None, :]
    if ONE_CHUNK:  # x_tile holds the whole (BLOCK_N, D) block
        offs_d = tl.arange(0, BLOCK_D)
        e = _load_codes_t(e_ptr, codes, offs_d, stride_ek, stride_ed, (offs_d < D)[:, None] & mask_k[None, :])
        acc = tl.dot(x_tile, e, acc, input_precision=INPUT_PRECISION)
    else:
        for d0 in range(0, D, BLOCK_D):
            offs_d = d0 + tl.arange(0, BLOCK_D)
            mask_d = offs_d < D
            x = _load_rows(x_ptr, rows, offs_d, stride_xn, stride_xd, mask_n[:, None] & mask_d[None, :])
            e = _load_codes_t(e_ptr, codes, offs_d, stride_ek, stride_ed, mask_d[:, None] & mask_k[None, :])
            acc = tl.dot(x, e, acc, input_precision=INPUT_PRECISION)
    return acc


@triton.jit
def _vq_nearest_fwd_kernel(
    x_ptr, e_ptr, h_ptr, part_t_ptr, part_i_ptr, idx_ptr, dist_ptr,
    N, K, D, K_PER_SPLIT,
    stride_xn, stride_xd, stride_ek, stride_ed,
    FINAL: tl.constexpr, HAS_DIST: tl.constexpr, ONE_CHUNK: tl.constexpr,
    INPUT_PRECISION: tl.constexpr, EPI_BLOCK_D: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """Program (i, s): rows [i·BLOCK_N, +BLOCK_N) against codes [s·K_PER_SPLIT, +K_PER_SPLIT).

    FINAL (one split): writes int64 indices (and exact distances). Otherwise writes the
    range's best score and index to part_t / part_i at [s, row] for the merge kernel.
    """
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)  # (BLOCK_N,)
    mask_n = offs_n < N
    rows = offs_n.to(tl.int64)  # N·D may exceed 2^31
    split = tl.program_id(1)
    k_start = split * K_PER_SPLIT
    k_end = tl.minimum(k_start + K_PER_SPLIT, K)
    offs_d = tl.arange(0, BLOCK_D)
    x_tile = tl.zeros((BLOCK_N, BLOCK_D), dtype=x_ptr.dtype.element_ty)
    if ONE_CHUNK:  # loaded once, reused for every codebook tile
        x_tile = _load_rows(x_ptr, rows, offs_d, stride_xn, stride_xd, mask_n[:, None] & (offs_d < D)[None, :])
    best = tl.full((BLOCK_N,), float("-inf"), dtype=tl.float32)
    best_idx = tl.zeros((BLOCK_N,), dtype=tl.int32)
    cols = tl.arange(0, BLOCK_K)
    for k0 in range(k_start, k_end, BLOCK_K):
        codes = k0 + cols  # (BLOCK_K,)
        mask_k = codes < k_end
        t = _tile_scores(x_tile, x_ptr, e_ptr, h_ptr, rows, codes.to(tl.int64), mask_n, mask_k, D,
                         stride_xn, stride_xd, stride_ek, stride_ed,
                         ONE_CHUNK, INPUT_PRECISION, BLOCK_N, BLOCK_K, BLOCK_D)  # (BLOCK_N, BLOCK_K)
        tile_best = tl.max(t, axis=1)  # (BLOCK_N,)
        tile_arg = tl.min(tl.where(t == tile_best[:, None], cols[None, :], BLOCK_K), axis=1)  # leftmost
        better = tile_best > best  # strict: an earlier tile keeps a tie
        best = tl.where(better, tile_best, best)
        best_idx = tl.where(better, k0 + tile_arg, best_idx)
    if FINAL:
        tl.store(idx_ptr + rows, best_idx.to(tl.int64), mask=mask_n)
        if HAS_DIST:
            dist = _exact_distance(x_ptr, e_ptr, rows, best_idx.to(tl.int64), mask_n, D,
                                   stride_xn, stride_xd, stride_ek, stride_ed, BLOCK_N, EPI_BLOCK_D)
            tl.store(dist_ptr + rows, dist, mask=mask_n)
    else:
        part = split.to(tl.int64) * N + rows
        tl.store(part_t_ptr + part, best, mask=mask_n)
        tl.store(part_i_ptr + part, best_idx, mask=mask_n)


@triton.jit
def _vq_nearest_merge_kernel(
    part_t_ptr, part_i_ptr, x_ptr, e_ptr, idx_ptr, dist_ptr,
    N, D, SPLIT,
    stride_xn, stride_xd, stride_ek, stride_ed,
    HAS_DIST: tl.constexpr, BLOCK_N: tl.constexpr, EPI_BLOCK_D: tl.constexpr,
):
    """Merge the SPLIT (score, index) candidates per row in code order (strictly larger
    replaces, so the lowest index keeps a tie); write int64 indices and distances."""
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < N
    rows = offs_n.to(tl.int64)
    best = tl.load(part_t_ptr + rows, mask=mask_n, other=float("-inf"))
    best_idx = tl.load(part_i_ptr + rows, mask=mask_n, other=0)
    part = rows
    for _ in range(1, SPLIT):  # ranges in code order
        part += N
        t = tl.load(part_t_ptr + part, mask=mask_n, other=float("-inf"))
        i = tl.load(part_i_ptr + part, mask=mask_n, other=0)
        better = t > best
        best = tl.where(better, t, best)
        best_idx = tl.where(better, i, best_idx)
    tl.store(idx_ptr + rows, best_idx.to(tl.int64), mask=mask_n)
    if HAS_DIST:
        dist = _exact_distance(x_ptr, e_ptr, rows, best_idx.to(tl.int64), mask_n, D,
                               stride_xn, stride_xd, stride_ek, stride_ed, BLOCK_N, EPI_BLOCK_D)
        tl.store(dist_ptr + rows, dist, mask=mask_n)


# ----------------------------------------------------------------------------- launchers


@dataclass(frozen=True)
class Plan:
    """How one call is launched (everything but the autotuned BLOCK_N/BLOCK_K/warps/stages)."""

    block_d: int
    one_chunk: bool  # D <= block_d: x is loaded once per program
    input_precision: str  # tl.dot's input_precision
    split: int  # codebook ranges on grid axis 1
    k_per_split: int  # codes per range, a multiple of every BLOCK_K


def dot_path(dtype: torch.dtype, fp32_precision: str) -> str:
    """'half' (fp16/bf16 tensor cores), 'tf32' (fp32 on tensor cores) or 'ieee' (fp32 FMA)."""
    if dtype != torch.float32:
        return "half"
    return "ieee" if fp32_precision == "ieee" else "tf32"


def choose_split(N: int, K: int, granule: int, sms: int) -> int:
    """Codebook ranges so that (row blocks x ranges) reaches about WAVES programs per SM."""
    row_blocks = triton.cdiv(N, NOMINAL_BLOCK_N)
    return max(1, min(triton.cdiv(K, granule), triton.cdiv(WAVES * sms, row_blocks)))


def plan(x: torch.Tensor, K: int, fp32_precision: str, split: int | None = None) -> Plan:
    """Block width over D, dot precision and the K split for x (N, D) against K codes."""
    N, D = x.shape
    path = dot_path(x.dtype, fp32_precision)
    if interpreting():
        one_max, loop_d, granule, sms = INTERPRETER_BLOCK, INTERPRETER_BLOCK, INTERPRETER_BLOCK, 1
    else:
        one_max, loop_d, granule = ONE_CHUNK_MAX_D[path], LOOP_BLOCK_D[path], GPU_K_GRANULE
        sms = sm_count(x.device)
        if fp32_precision == "tf32x3" and capability(x.device) < 90:  # see TF32X3_MAX_ACC_BEFORE_SM90
            one_max = loop_d
    block_d = max(triton.next_power_of_2(D), 16)  # tl.dot needs every dim >= 16
    if block_d > one_max:
        block_d = loop_d
    if split is None:
        split = choose_split(N, K, granule, sms)
    k_per_split = triton.cdiv(triton.cdiv(K, max(1, split)), granule) * granule
    # fp16/bf16 ignore input_precision; give them the default ("tf32") so no path changes.
    precision = fp32_precision if x.dtype == torch.float32 else "tf32"
    return Plan(block_d=block_d, one_chunk=D <= block_d, input_precision=precision,
                split=triton.cdiv(K, k_per_split), k_per_split=k_per_split)


def smem_bytes(config: triton.Config, block_d: int, one_chunk: bool, itemsize: int) -> int:
    """Rough shared-memory estimate: pipelined operand tiles (+ the resident x block)."""
    bn, bk, stages = config.kwargs["BLOCK_N"], config.kwargs["BLOCK_K"], config.num_stages
    if one_chunk:
        return (bn * block_d + stages * bk * block_d) * itemsize
    return stages * (bn + bk) * block_d * itemsize


def acc_per_thread(config: triton.Config) -> int:
    return config.kwargs["BLOCK_N"] * config.kwargs["BLOCK_K"] // (32 * config.num_warps)


def prune_configs(configs, named_args, **kwargs):
    """Drop configurations over the device's shared memory and, for tf32x3 before sm_90, over
    TF32X3_MAX_ACC_BEFORE_SM90 accumulators per thread (keep the smallest if none fit)."""
    x = named_args["x_ptr"]
    size = lambda c: smem_bytes(c, kwargs["BLOCK_D"], kwargs["ONE_CHUNK"], x.element_size())  # noqa: E731
    max_acc = TF32X3_MAX_ACC_BEFORE_SM90 if kwargs.get("INPUT_PRECISION") == "tf32x3" and capability(x.device) < 90 \
        else None
    fits = [c for c in configs if size(c) <= shared_memory_limit(x.device)
            and (max_acc is None or acc_per_thread(c) <= max_acc)]
    return fits or [min(configs, key=lambda c: (acc_per_thread(c), size(c)))]


@functools.cache
def autotuned_kernel(fma: bool):
    """The forward kernel under @triton.autotune (CUDA only; built on first use), with the
    IEEE fp32 (FMA) or the tensor-core configurations."""
    configs = [triton.Config({"BLOCK_N": bn, "BLOCK_K": bk}, num_warps=w, num_stages=s)
               for bn, bk, w, s in (FMA_CONFIGS if fma else GPU_CONFIGS)]
    return triton.autotune(configs, key=["K", "D", "K_PER_SPLIT", "BLOCK_D", "INPUT_PRECISION", "HAS_DIST"],
                           prune_configs_by={"early_config_prune": prune_configs})(_vq_nearest_fwd_kernel)


def check_kernel_inputs(x: torch.Tensor, codebook: torch.Tensor, fp32_precision: str) -> None:
    check_inputs(x, codebook)
    for name, t in (("x", x), ("codebook", codebook)):
        if t.dtype not in KERNEL_DTYPES:
            raise ConfigError(f"The Triton vq_nearest kernel takes fp32/fp16/bf16; {name} is {t.dtype}. "
                              "Use backend='torch' for float64 (the reference handles it).")
    if fp32_precision not in FP32_PRECISIONS:
        raise ConfigError(f"vq_nearest: fp32_precision={fp32_precision!r}; choose one of "
                          f"{', '.join(FP32_PRECISIONS)} ('ieee' is exact fp32).")
    check_kernel_device(OP_NAME, x)
    if codebook.shape[0] >= 2**31:
        raise ConfigError(f"vq_nearest: K={codebook.shape[0]} codes; the kernel indexes codes in int32.")


def launch_search(x, codebook, h, idx, dist, p: Plan) -> None:
    """The search kernel (and the merge kernel when the codebook is split)."""
    N, D = x.shape
    K = codebook.shape[0]
    final = p.split == 1
    part_t = idx if final else torch.empty((p.split, N), device=x.device, dtype=torch.float32)
    part_i = idx if final else torch.empty((p.split, N), device=x.device, dtype=torch.int32)
    args = (x, codebook, h, part_t, part_i, idx, idx if dist is None else dist, N, K, D, p.k_per_split,
            x.stride(0), x.stride(1), codebook.stride(0), codebook.stride(1))
    meta = {"FINAL": final, "HAS_DIST": dist is not None and final, "ONE_CHUNK": p.one_chunk,
            "INPUT_PRECISION": p.input_precision, "EPI_BLOCK_D": min(p.block_d, EPILOGUE_BLOCK_D),
            "BLOCK_D": p.block_d}
    if interpreting():
        block = INTERPRETER_BLOCK
        _vq_nearest_fwd_kernel[(triton.cdiv(N, block), p.split)](*args, **meta, BLOCK_N=block, BLOCK_K=block)
    else:
        autotuned_kernel(p.input_precision == "ieee")[lambda m: (triton.cdiv(N, m["BLOCK_N"]), p.split)](*args, **meta)
    if not final:
        block_n = 128
        _vq_nearest_merge_kernel[(triton.cdiv(N, block_n),)](
            part_t, part_i, x, codebook, idx, dist if dist is not None else idx, N, D, p.split,
            x.stride(0), x.stride(1), codebook.stride(0), codebook.stride(1),
            HAS_DIST=dist is not None, BLOCK_N=block_n, EPI_BLOCK_D=min(p.block_d, EPILOGUE_BLOCK_D),
        )


def half_norms(codebook: torch.Tensor) -> torch.Tensor:
    """h_j = ||e_j||^2 / 2 in fp32, (K,): one torch reduction per call (K·D reads)."""
    return codebook.float().square().sum(dim=1).mul_(0.5)


@torch.no_grad()
def vq_nearest_forward(x: torch.Tensor, codebook: torch.Tensor, return_distance: bool = False,
                       fp32_precision: str = "ieee", split: int | None = None):
    """Launch the search: indices (N,) int64 [, distance (N,) fp32]. `split` forces the
    number of codebook ranges (tests use it to cover the merge kernel)."""
    check_kernel_inputs(x, codebook, fp32_precision)
    if x.dtype != codebook.dtype:  # tl.dot takes one dtype: promote to the wider
        common = torch.promote_types(x.dtype, codebook.dtype)
        x, codebook = x.to(common), codebook.to(common)
    N, D = x.shape
    idx = torch.zeros((N,), device=x.device, dtype=torch.int64)
    dist = torch.zeros((N,), device=x.device, dtype=torch.float32) if return_distance else None
    if N > 0 and D > 0:  # D = 0: every code is at distance 0, index 0 like the reference
        p = plan(x, codebook.shape[0], fp32_precision, split)
        launch_search(x, codebook, half_norms(codebook), idx, dist, p)
    return (idx, dist) if return_distance else idx


# ----------------------------------------------------------------------------- public op


def triton_vq_nearest(x: torch.Tensor, codebook: torch.Tensor, return_distance: bool = False, *,
                      fp32_precision: str = "ieee"):
    """The Triton implementation (no autograd: the indices are discrete).

    fp32_precision applies to fp32 inputs only: "ieee" (exact, default), "tf32x3", "tf32".
    """
    return vq_nearest_forward(x, codebook, return_distance, fp32_precision)


def vq_nearest(x: torch.Tensor, codebook: torch.Tensor, return_distance: bool = False, backend: str = "auto"):
    """Nearest codebook row for each row of x (N, D); codebook (K, D).

    Returns indices (N,) int64, and with return_distance also the squared distances (N,)
    fp32. backend: "auto" (Triton on CUDA, reference on CPU), "triton", or "torch".
    """
    return dispatch(OP_NAME, backend, x.device)(x, codebook, return_distance=return_distance)


def _register() -> None:
    KERNELS.register(OP_NAME, KernelOp(
        name=OP_NAME, function=vq_nearest, reference=reference, triton=triton_vq_nearest,
        summary="argmin_j ||x - e_j||^2 over a codebook without the N x K distance matrix",
        examples=examples,
    ))


def examples(dtype, device, generator):
    """No differentiable input (the indices are discrete): a transposed x against an odd codebook."""
    x = example_randn(generator, 9, 13, dtype=dtype, device=device).t()  # (13, 9), transposed
    codebook = example_randn(generator, 17, 9, dtype=dtype, device=device)
    return [OpExample("N=13 K=17 D=9", {"x": x, "codebook": codebook, "return_distance": True})]


_register()
