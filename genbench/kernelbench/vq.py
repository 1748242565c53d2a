"""Benchmark and interpreter check of the VQ nearest-codebook search.

Forward only (the indices are discrete). Cases (N, K, D): VQ-VAE workloads -- N = batch x
latent positions, e.g. 128 x 8 x 8 = 8192 or 64 x 32 x 32 = 65536, codebooks of 512 to
8192 codes of width 64 or 256 -- in fp32 and bf16, and one bf16 case whose N x K fp32
distance matrix (N·K·4 bytes = 256 GiB) cannot fit on any current GPU: eager and compile
record an out-of-memory failure there while the kernel, which never builds that matrix,
runs. Every provider returns indices only. Providers: triton (the kernel, fp32 on the exact
IEEE path), triton_tf32x3 (fp32 cases only: the kernel with fp32_precision="tf32x3", three
TF32 tensor-core products, about fp32 accuracy), eager (the reference) and compile.

Bytes (s = element size): read x (N·D·s) and the codebook (K·D·s), write int64 indices
(8·N). FLOPs: 2·N·K·D useful (one multiply-add per row, code and dimension; the norms and
the argmin are not counted).
"""

from __future__ import annotations

import torch

from genbench.baselines.vq import compiled_vq_nearest
from genbench.baselines.vq import vq_nearest as reference
from genbench.kernelbench.base import BENCHES, Case, OpBench, Workload

SHAPES = ((8192, 512, 64), (65536, 1024, 64), (262144, 4096, 256), (1048576, 8192, 256))
DTYPES = (torch.float32, torch.bfloat16)
OOM_SHAPE = (4194304, 16384, 64)  # eager's N x K fp32 matrix: 256 GiB
# --quick: a VQ-VAE's latents at 64 x 32x32 against 1024 codes (bf16) and a small fp32 batch
QUICK = {((65536, 1024, 64), torch.bfloat16), ((8192, 512, 64), torch.float32)}
CHECK_SHAPES = ((1, 1, 1, None), (7, 5, 3, None), (33, 70, 33, None), (33, 70, 33, 3), (20, 17, 16, 2))
DISTANCE_TOLERANCE = 1e-5  # relative to the row's ||x||^2 + max ||e||^2 (fp32 rounding)
MARGIN = 1e-4  # gaps between the best two true distances below this (same scale) count as ties


def cases() -> list[Case]:
    grid = [Case({"N": n, "K": k, "D": d}, dt) for dt in DTYPES for n, k, d in SHAPES]
    n, k, d = OOM_SHAPE
    return grid + [Case({"N": n, "K": k, "D": d}, torch.bfloat16)]


def bytes_moved(case: Case, mode: str) -> int:
    n, k, d = case.shape["N"], case.shape["K"], case.shape["D"]
    return (n + k) * d * case.dtype.itemsize + 8 * n


def flops(case: Case, mode: str) -> int:
    return 2 * case.shape["N"] * case.shape["K"] * case.shape["D"]


def workload(impl, fp32_only: bool = False) -> callable:
    """Builder of `impl`'s forward on a case; with fp32_only, None (not applicable) for other dtypes."""
    def build(case: Case, device: str = "cuda") -> Workload | None:
        if fp32_only and case.dtype != torch.float32:
            return None
        n, k, d = case.shape["N"], case.shape["K"], case.shape["D"]
        x = torch.randn(n, d, device=device, dtype=case.dtype)
        codebook = torch.randn(k, d, device=device, dtype=case.dtype)
        return Workload(forward=lambda: impl(x, codebook))

    return build


def triton_impl(x, codebook, fp32_precision: str = "ieee"):
    from genbench.kernels.vq import triton_vq_nearest

    return triton_vq_nearest(x, codebook, fp32_precision=fp32_precision)


def true_distances(x: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """(N, K) squared distances in float64 on the CPU (cancellation error ~1e-16 of the scale)."""
    x, codebook = x.double().cpu(), codebook.double().cpu()
    d = x.pow(2).sum(1)[:, None] + codebook.pow(2).sum(1)[None, :] - 2 * x @ codebook.T
    return d.clamp_min(0)


def compare(x, codebook, indices, distance=None, margin: float = MARGIN) -> dict:
    """Mismatches of the kernel's indices (and distances) against the reference.

    Scale s = ||x||^2 + max ||e||^2 per row. A row's index must equal the reference's where
    the best two true distances differ by more than margin·s; everywhere its code must be
    within margin·s of the minimum. dist_err = max |distance - true distance| / s.
    """
    ref = reference(x, codebook).cpu()
    indices = indices.cpu()
    true = true_distances(x, codebook)  # (N, K)
    scale = x.double().cpu().pow(2).sum(1) + codebook.double().cpu().pow(2).sum(1).max()  # (N,)
    top = true.topk(min(2, true.shape[1]), dim=1, largest=False).values
    gap = top[:, 1] - top[:, 0] if top.shape[1] > 1 else torch.full_like(scale, float("inf"))
    clear = gap > margin * scale
    chosen = true.gather(1, indices[:, None])[:, 0]
    not_nearest = chosen - top[:, 0] > margin * scale
    index_differs = clear & (indices != ref)
    dist_err = 0.0
    if distance is not None and len(scale):
        dist_err = float(((distance.cpu().double() - chosen).abs() / scale).max())
    return {"wrong": int((not_nearest | index_differs).sum()), "not_nearest": int(not_nearest.sum()),
            "index_differs": int(index_differs.sum()), "dist_err": dist_err}


def check() -> list[dict]:
    """Kernel vs reference in fp32 on small odd shapes (runs in the interpreter on CPU);
    `split` forces the number of codebook ranges, covering the merge kernel."""
    from genbench.kernels.vq import vq_nearest_forward

    rows = []
    device = "cuda" if torch.cuda.is_available() else "cpu"
    for n, k, d, split in CHECK_SHAPES:
        g = torch.Generator().manual_seed(n * 10000 + k * 100 + d)
        x, codebook = torch.randn(n, d, generator=g).to(device), torch.randn(k, d, generator=g).to(device)
        indices, distance = vq_nearest_forward(x, codebook, return_distance=True, split=split)
        result = compare(x, codebook, indices, distance)
        rows.append({"op": "vq_nearest", "case": f"N={n},K={k},D={d},split={split or 'auto'}",
                     "wrong indices, max|dist err|/scale": f"{result['wrong']}, {result['dist_err']:.1e}",
                     "ok": result["wrong"] == 0 and result["dist_err"] < DISTANCE_TOLERANCE})
    return rows


BENCHES.register("vq_nearest", OpBench(
    op="vq_nearest",
    cases=cases,
    providers={"triton": workload(triton_impl),
               "triton_tf32x3": workload(lambda x, e: triton_impl(x, e, "tf32x3"), fp32_only=True),
               "eager": workload(reference), "compile": workload(lambda x, e: compiled_vq_nearest()(x, e))},
    bytes_moved=bytes_moved,
    check=check,
    modes=("fwd",),
    flops=flops,
    quick=lambda c: (tuple(c.shape.values()), c.dtype) in QUICK,
))
