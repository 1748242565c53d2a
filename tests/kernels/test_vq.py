"""The Triton VQ nearest-codebook kernel against the reference.

On the CPU the kernel runs in the Triton interpreter (conftest sets TRITON_INTERPRET=1),
in fp32 on tiny shapes; fp16/bf16, TF32 and large shapes run only with CUDA.

What "matches" means. Kernel and reference both compute in fp32, by different formulas
(the kernel ||e||^2/2 - x.e, the reference cdist), so where two codes are nearly equally
near either may be picked. Against float64 true distances, per row, with scale
s = ||x||^2 + max_j ||e_j||^2 (the size of the terms that cancel):
- where the best two true distances differ by more than MARGIN·s, the kernel's index
  equals the reference's; elsewhere the chosen code is within MARGIN·s of the nearest.
  fp32: MARGIN 1e-5 (about 100 ulps of s: the score error is a few ulps of s times
  sqrt(D) at these widths); TF32 (10-bit mantissa inputs): 5e-3.
- the distance is recomputed exactly for the chosen code, like the reference: it matches
  the chosen code's true distance to rtol 1e-5 of s (fp32 summation order).
Exact ties (duplicated codes, integer-valued inputs whose fp32 arithmetic is exact) must
give exactly the reference's index: the lowest one, as torch.argmin.
"""

from __future__ import annotations

import pytest
import torch

from genbench.baselines.vq import vq_nearest as reference
from genbench.errors import ConfigError
from genbench.kernelbench.vq import compare, true_distances
from genbench.kernels import resolve_backend, vq_nearest
from genbench.kernels import vq as vq_module
from genbench.kernels.vq import (GPU_CONFIGS, choose_split, plan, prune_configs, triton_vq_nearest,
                                 vq_nearest_forward)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
FP32_MARGIN, TF32_MARGIN, DIST_RTOL = 1e-5, 5e-3, 1e-5


def inputs(N, K, D, seed=0, dtype=torch.float32, offset=0.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, D, generator=g) + offset
    codebook = torch.randn(K, D, generator=g) + offset
    return x.to(DEVICE, dtype), codebook.to(DEVICE, dtype)


def assert_nearest(x, codebook, indices, distance=None, margin=FP32_MARGIN):
    """The tolerance rules of the module docstring, row by row (genbench.kernelbench.vq.compare)."""
    assert indices.dtype == torch.int64 and indices.shape == (x.shape[0],)
    result = compare(x, codebook, indices, distance, margin)
    assert result["not_nearest"] == 0, "a chosen code is not (nearly) the nearest"
    assert result["index_differs"] == 0, "index differs from the reference on a clear row"
    if distance is not None:
        assert distance.dtype == torch.float32 and distance.shape == (x.shape[0],)
        assert result["dist_err"] <= DIST_RTOL


@pytest.mark.parametrize("N", [1, 7, 33])
@pytest.mark.parametrize("K", [1, 5, 17, 70])
@pytest.mark.parametrize("D", [1, 3, 16, 33])
def test_kernel_matches_reference(N, K, D):
    x, codebook = inputs(N, K, D, seed=N * 10000 + K * 100 + D)
    indices, distance = triton_vq_nearest(x, codebook, return_distance=True)
    assert_nearest(x, codebook, indices, distance)


@pytest.mark.parametrize("split", [2, 3, 5])
@pytest.mark.parametrize("N, K, D", [(7, 70, 3), (33, 50, 33)])
def test_split_codebook_merges_like_one_pass(N, K, D, split):
    """Codebook ranges on a second grid axis, merged by the second kernel (in code order)."""
    x, codebook = inputs(N, K, D, seed=split)
    indices, distance = vq_nearest_forward(x, codebook, return_distance=True, split=split)
    assert_nearest(x, codebook, indices, distance)
    assert torch.equal(indices, vq_nearest_forward(x, codebook, split=1))


def test_offset_inputs_keep_the_nearest_code():
    """||x||^2 large next to the distances: the cancellation the margin is scaled for."""
    x, codebook = inputs(33, 40, 16, seed=3, offset=20.0)
    indices, distance = triton_vq_nearest(x, codebook, return_distance=True)
    assert_nearest(x, codebook, indices, distance)


def test_distance_is_exact_for_a_point_on_a_code():
    """x equal to a code: distance 0 exactly (no ||x||^2 + ||e||^2 - 2x.e cancellation)."""
    _, codebook = inputs(1, 30, 33, seed=4, offset=50.0)
    x = codebook[[3, 17, 29]].clone()
    indices, distance = triton_vq_nearest(x, codebook, return_distance=True)
    assert indices.tolist() == [3, 17, 29]
    assert torch.equal(distance, torch.zeros(3, device=DEVICE))


@pytest.mark.parametrize("split", [None, 2])
def test_duplicated_codes_give_the_lowest_index(split):
    """Each code appears 2-3 times in shuffled order: the first copy wins, as in torch.argmin."""
    g = torch.Generator().manual_seed(5)
    base = torch.randn(20, 7, generator=g)
    codebook = torch.cat([base, base, base[:8]])[torch.randperm(48, generator=g)].to(DEVICE)
    x = torch.randn(33, 7, generator=g).to(DEVICE)
    indices = vq_nearest_forward(x, codebook, split=split)
    assert torch.equal(indices.cpu(), reference(x, codebook).cpu())
    first_copy = {}
    for j, row in enumerate(codebook.cpu().tolist()):
        first_copy.setdefault(tuple(row), j)
    assert all(first_copy[tuple(codebook[i].tolist())] == i for i in indices.tolist())


@pytest.mark.parametrize("split", [None, 3])
def test_exact_ties_on_integer_inputs_match_torch_argmin(split):
    """Small integers: every product and sum is exact in fp32, so distance ties are exact."""
    g = torch.Generator().manual_seed(6)
    x = torch.randint(-2, 3, (33, 5), generator=g).float().to(DEVICE)
    codebook = torch.randint(-2, 3, (70, 5), generator=g).float().to(DEVICE)
    true = true_distances(x, codebook)
    assert (true == true.min(1, keepdim=True).values).sum(1).gt(1).any()  # the test has ties
    indices = vq_nearest_forward(x, codebook, split=split)
    assert torch.equal(indices.cpu(), true.argmin(1))
    assert torch.equal(indices.cpu(), reference(x, codebook).cpu())


def test_origin_against_codes_of_equal_norm_picks_index_zero():
    codebook = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]] * 5, device=DEVICE)
    x = torch.zeros(7, 2, device=DEVICE)
    assert triton_vq_nearest(x, codebook).tolist() == [0] * 7


def test_identical_rows_get_identical_indices():
    x, codebook = inputs(1, 70, 33, seed=7)
    rows = x.expand(17, 33)  # stride 0 along N
    indices = triton_vq_nearest(rows, codebook)
    assert indices.tolist() == [int(reference(x, codebook))] * 17


@pytest.mark.parametrize("layout", ["column_slice", "transposed", "codebook_transposed", "strided_rows"])
def test_non_contiguous_inputs(layout):
    g = torch.Generator().manual_seed(8)
    wide = torch.randn(33, 40, generator=g).to(DEVICE)
    codebook = torch.randn(17, 19, generator=g).to(DEVICE)
    x = wide[:, 3:22]  # (33, 19), row stride 40
    if layout == "transposed":
        x = x.T.contiguous().T
    elif layout == "codebook_transposed":
        x, codebook = x.contiguous(), codebook.T.contiguous().T
    elif layout == "strided_rows":
        x = wide[::2, ::2][:, :19]
    assert not (x.is_contiguous() and codebook.is_contiguous())
    indices, distance = triton_vq_nearest(x, codebook, return_distance=True)
    assert_nearest(x, codebook, indices, distance)


def test_mixed_dtypes_are_promoted():
    x, codebook = inputs(9, 12, 16, seed=9)
    half = codebook.half()
    indices, distance = triton_vq_nearest(x, half, return_distance=True)
    assert_nearest(x, half.float(), indices, distance)


def test_empty_batch_and_zero_width():
    x, codebook = inputs(0, 5, 3)
    indices, distance = triton_vq_nearest(x, codebook, return_distance=True)
    assert indices.shape == (0,) and indices.dtype == torch.int64 and distance.shape == (0,)
    x, codebook = inputs(4, 5, 0)
    indices, distance = triton_vq_nearest(x, codebook, return_distance=True)
    assert indices.tolist() == reference(x, codebook).tolist() == [0] * 4
    assert distance.tolist() == [0.0] * 4


def test_codebook_parameter_needs_no_grad_handling():
    x, codebook = inputs(5, 6, 16, seed=10)
    codebook = torch.nn.Parameter(codebook)
    indices, distance = triton_vq_nearest(x.requires_grad_(), codebook, return_distance=True)
    assert not indices.requires_grad and not distance.requires_grad


def test_bad_inputs_are_refused_with_the_fix():
    x, codebook = inputs(3, 4, 5)
    with pytest.raises(ConfigError, match="float64.*backend='torch'"):
        triton_vq_nearest(x.double(), codebook.double())
    with pytest.raises(ConfigError, match="fp32/fp16/bf16"):
        triton_vq_nearest(x.int(), codebook.int())
    with pytest.raises(ConfigError, match="D=5 but the codebook's vectors have D=4"):
        triton_vq_nearest(x, codebook[:, :4])
    with pytest.raises(ConfigError, match=r"x \(N, D\)"):
        triton_vq_nearest(x[None], codebook)
    with pytest.raises(ConfigError, match="empty"):
        triton_vq_nearest(x, codebook[:0])
    with pytest.raises(ConfigError, match="codebook on meta"):
        triton_vq_nearest(x, codebook.to("meta"))
    with pytest.raises(ConfigError, match="fp32_precision"):
        triton_vq_nearest(x, codebook, fp32_precision="fast")


def test_cpu_without_the_interpreter_is_refused(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ConfigError, match="runs on CUDA.*backend='torch'"):
        vq_module.check_kernel_inputs(torch.zeros(2, 3), torch.zeros(4, 3), "ieee")


def test_public_op_dispatches_by_backend(monkeypatch):
    x, codebook = inputs(6, 9, 16, seed=11)
    calls = []
    monkeypatch.setattr(vq_module, "vq_nearest_forward",
                        lambda *a, **k: calls.append("triton") or torch.zeros(6, dtype=torch.int64))
    torch_result = vq_nearest(x, codebook, backend="torch")
    assert calls == [] and torch.equal(torch_result, reference(x, codebook))
    vq_nearest(x, codebook, backend="triton")
    assert calls == ["triton"]
    assert resolve_backend("vq_nearest", "auto", "cpu") == "torch"
    assert resolve_backend("vq_nearest", "auto", "cuda") == "triton"


def test_public_op_triton_backend_returns_distances():
    x, codebook = inputs(6, 9, 16, seed=12)
    indices, distance = vq_nearest(x, codebook, return_distance=True, backend="triton")
    assert_nearest(x, codebook, indices, distance)


def test_plan_covers_the_codebook_with_power_of_two_tiles():
    for N, K, D in ((1, 1, 1), (7, 70, 33), (1000, 5000, 256)):
        p = plan(torch.empty(N, D, device=DEVICE), K, "ieee")
        assert p.block_d & (p.block_d - 1) == 0 and p.block_d >= 16
        assert p.one_chunk == (D <= p.block_d)
        assert p.split * p.k_per_split >= K > (p.split - 1) * p.k_per_split


@pytest.mark.parametrize("dtype, precision, D, block_d, one_chunk, input_precision", [
    (torch.bfloat16, "ieee", 64, 64, True, "tf32"),  # fp16/bf16 ignore the fp32 policy
    (torch.bfloat16, "ieee", 256, 256, True, "tf32"),
    (torch.float16, "ieee", 33, 64, True, "tf32"),
    (torch.bfloat16, "ieee", 512, 64, False, "tf32"),
    (torch.float32, "ieee", 64, 16, False, "ieee"),
    (torch.float32, "ieee", 16, 16, True, "ieee"),
    (torch.float32, "tf32x3", 64, 64, True, "tf32x3"),
    (torch.float32, "tf32", 256, 32, False, "tf32"),
])
def test_gpu_plan_block_widths(monkeypatch, dtype, precision, D, block_d, one_chunk, input_precision):
    """The CUDA launch plan, computed on meta tensors planned for an H100 (sm_90, 132 SMs)."""
    from genbench.kernels.device import TARGETS, planning

    monkeypatch.setattr(vq_module, "interpreting", lambda: False)
    with planning(TARGETS["sm_90"]):
        p = plan(torch.empty(8192, D, dtype=dtype, device="meta"), 512, precision)
    assert (p.block_d, p.one_chunk, p.input_precision) == (block_d, one_chunk, input_precision)
    assert (p.split, p.k_per_split) == (4, 128)  # 64 row blocks: 4 ranges of one 128-code tile


def test_split_heuristic_fills_the_gpu_only_for_small_batches():
    assert choose_split(N=8192, K=512, granule=128, sms=132) == 4  # 64 row blocks, 4 code tiles
    assert choose_split(N=8192, K=8192, granule=128, sms=132) == 5  # about 2 programs per SM
    assert choose_split(N=1 << 20, K=8192, granule=128, sms=132) == 1


class _FakeTensor:
    device = torch.device("cpu")  # the interpreter's: the H100's shared-memory limit

    def __init__(self, itemsize):
        self.itemsize = itemsize

    def element_size(self):
        return self.itemsize


def test_autotune_prune_keeps_configs_that_fit_shared_memory():
    import triton

    configs = [triton.Config({"BLOCK_N": bn, "BLOCK_K": bk}, num_warps=w, num_stages=s) for bn, bk, w, s in GPU_CONFIGS]
    kept = prune_configs(configs, {"x_ptr": _FakeTensor(2)}, BLOCK_D=256, ONE_CHUNK=True)
    assert 0 < len(kept) < len(configs)  # bf16, D = 256: three stages of 128 x 256 tiles do not fit
    assert all((c.kwargs["BLOCK_N"] + c.kwargs["BLOCK_K"] * c.num_stages) * 256 * 2 <= 227 * 1024 for c in kept)
    assert len(prune_configs(configs, {"x_ptr": _FakeTensor(2)}, BLOCK_D=64, ONE_CHUNK=True)) == len(configs)


# ----------------------------------------------------------------------------- CUDA only


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("N, K, D", [(1, 3, 1), (8192, 512, 64), (4097, 1000, 33), (65536, 1024, 256), (300, 70, 300)])
def test_half_precision_on_cuda(dtype, N, K, D):
    """Tensor cores on the same fp16/bf16 values the reference upcasts: fp32 tolerances."""
    x, codebook = inputs(N, K, D, seed=N + K, dtype=dtype)
    indices, distance = triton_vq_nearest(x, codebook, return_distance=True)
    rows = torch.randperm(N)[:2048].to(DEVICE)  # float64 truth on a sample of rows
    assert_nearest(x[rows], codebook, indices[rows], distance[rows])


@pytest.mark.cuda
@pytest.mark.parametrize("precision, margin", [("ieee", FP32_MARGIN), ("tf32x3", FP32_MARGIN), ("tf32", TF32_MARGIN)])
@pytest.mark.parametrize("N, K, D", [(65536, 1024, 64), (777, 4096, 256), (33, 70, 33)])
def test_fp32_precisions_on_cuda(precision, margin, N, K, D):
    x, codebook = inputs(N, K, D, seed=K, dtype=torch.float32)
    indices, distance = triton_vq_nearest(x, codebook, return_distance=True, fp32_precision=precision)
    rows = torch.randperm(N)[:2048].to(DEVICE)
    assert_nearest(x[rows], codebook, indices[rows], distance[rows], margin=margin)


@pytest.mark.cuda
def test_ties_on_cuda():
    g = torch.Generator().manual_seed(13)
    x = torch.randint(-2, 3, (5000, 16), generator=g).to(DEVICE, torch.bfloat16)
    codebook = torch.randint(-2, 3, (3000, 16), generator=g).to(DEVICE, torch.bfloat16)
    assert torch.equal(triton_vq_nearest(x, codebook), reference(x, codebook))


@pytest.mark.cuda
def test_runs_where_eager_would_run_out_of_memory():
    """N x K fp32 distances larger than the whole GPU: the kernel never builds them."""
    K, D = 16384, 64
    total = torch.cuda.get_device_properties(0).total_memory
    N = int(1.1 * total / (4 * K))
    assert N * K * 4 > total  # what torch.cdist would allocate
    x, codebook = inputs(4096, K, D, seed=14, dtype=torch.bfloat16)
    x = x.repeat(N // 4096 + 1, 1)[:N]
    indices = triton_vq_nearest(x, codebook)
    assert indices.shape == (N,)
    assert torch.equal(indices[:4096], indices[4096:8192])  # repeated rows, same codes
    assert torch.equal(indices[:4096], reference(x[:4096], codebook))


def test_autotune_prune_keeps_small_tf32x3_tiles_before_sm90():
    """tf32x3 on sm_80 (three mma.sync products) spills from 64 accumulators per thread; sm_90 keeps all."""
    import triton

    from genbench.kernels.device import TARGETS, planning

    configs = [triton.Config({"BLOCK_N": bn, "BLOCK_K": bk}, num_warps=w, num_stages=s) for bn, bk, w, s in GPU_CONFIGS]
    x = torch.empty(8192, 64, device="meta")
    for name, expected in (("sm_80", [(64, 64, 8, 3)]), ("sm_90", list(GPU_CONFIGS))):
        with planning(TARGETS[name]):
            kept = prune_configs(configs, {"x_ptr": x}, BLOCK_D=64, ONE_CHUNK=True, INPUT_PRECISION="tf32x3")
        assert [(c.kwargs["BLOCK_N"], c.kwargs["BLOCK_K"], c.num_warps, c.num_stages) for c in kept] == expected, name
