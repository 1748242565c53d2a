"""The Triton attention kernels (genbench.kernels.attention) against the reference.

On the CPU the kernels run in the Triton interpreter (conftest sets TRITON_INTERPRET=1),
in fp32, on tiny shapes with 16 x 16 blocks: sequence lengths 1, 17, 64 and 100 cover one
partial block, several full ones and full + partial; head dims 16, 32 and 64 are
unpadded, 24 and 40 are padded with masks. fp16/bf16, TF32, SDPA and large shapes run
only with CUDA. Every comparison covers o and the gradients dq, dk, dv of <o, dO> for a
random upstream dO, against genbench.baselines.attention in float64.

Errors are max|kernel - reference| / max(max|reference|, 1) per tensor (the inputs are
O(1), so 1 is their scale; it keeps exact zeros, e.g. dq and dk when S_k = 1, from
turning rounding noise into an infinite relative error). Tolerances:
- fp32 (interpreter, or IEEE dots on CUDA): 1e-5. The kernel sums D <= 64 products per
  score and S_k <= 100 terms per output in fp32, in another order than the reference, and
  takes exp2(s·log2 e) for exp(s): a few ulps of the scores (|s| <~ 10 here) and
  sqrt(n)-ulp summation errors, measured 2e-7 to 6e-7. An indexing or masking error is
  of the order of the scale itself.
- Scores of magnitude 1e4 (large-input test): 1e-2 of each output's natural scale
  (max|v| for o, max|dO| for dv, |scale|·max|k|·max|dO|·max|v| for dq, likewise dk). An
  ulp of a base-2 score of 1.4e4 is 2^-10 in fp32, so any fp32 softmax weight carries
  relative errors of ~1e-3 there, and backward's P = exp2(s - L), recomputed with
  another rounding of s than forward's, differs from it by exp2 of a few such ulps:
  ~3e-3 of dv measured (eager fp32, which reuses its P, gets 1e-7 where P is one-hot).
- CUDA fp16/bf16: the kernel rounds P and dS to the input dtype before their dots, as
  FlashAttention does; compared with float64 its error must stay within twice SDPA's
  on the same inputs plus one unit of the dtype's rounding (2^-11 fp16, 2^-8 bf16), and
  under an absolute bound of 8 such units.
- CUDA fp32: 2e-5 with IEEE or tf32x3 dots (sums up to S_k = 1000 terms; the GPU's exp2
  is approximate to ~2 ulps); TF32 3e-3 (10-bit mantissa products, sqrt(n)-sized sums).
"""

from __future__ import annotations

import importlib
import math

import pytest
import torch

from genbench.baselines.attention import attention as reference
from genbench.baselines.attention import sdpa_attention, sdpa_backend_attention, sdpa_backend_choice
from genbench.errors import ConfigError
from genbench.kernelbench import attention as bench
from genbench.kernelbench.base import Case
from genbench.kernels import resolve_backend
from genbench.kernels.attention import attention, block_d, pruner, triton_attention
from genbench.registry import KERNELS

attention_module = importlib.import_module("genbench.kernels.attention")  # the module; genbench.kernels.attention is the op
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
FP32_TOL = 1e-5
HALF_UNIT = {torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}
NAMES = ("o", "dq", "dk", "dv")


def qkv(B, H, S_q, S_k, D, seed=0, scale=1.0, offset=(0.0, 0.0, 0.0)):
    """q (B, H, S_q, D), k, v (B, H, S_k, D) ~ offset + scale·N(0, 1), fp32 on the CPU."""
    g = torch.Generator().manual_seed(seed)
    return tuple(off + scale * torch.randn(B, H, s, D, generator=g) for s, off in zip((S_q, S_k, S_k), offset))


def upstream(shape, seed=7):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def output_and_grads(fn, tensors, dtype, device, do=None, **kwargs):
    """(o, dq, dk, dv) of fn on fresh leaves cast to dtype on device; dO from `upstream`."""
    leaves = [t.detach().to(device=device, dtype=dtype).requires_grad_() for t in tensors]
    o = fn(*leaves, **kwargs)
    do = upstream(o.shape) if do is None else do
    grads = torch.autograd.grad(o, leaves, do.to(device=device, dtype=dtype))
    return (o.detach(), *grads)


def errors(out, ref):
    """max|a - r| / max(max|r|, 1) for each pair."""
    return [float((a.detach().cpu().double() - r.cpu().double()).abs().max()
                  / r.abs().max().clamp_min(1.0)) if r.numel() else 0.0 for a, r in zip(out, ref)]


def assert_close(out, ref, tol, names=NAMES):
    errs = errors(out, ref)
    bad = {n: f"{e:.2e}" for n, e in zip(names, errs) if not e <= tol}
    assert not bad, f"errors above {tol:g}: {bad}"


def check_against_reference(tensors, tol=FP32_TOL, **kwargs):
    out = output_and_grads(triton_attention, tensors, torch.float32, DEVICE, **kwargs)
    ref = output_and_grads(reference, tensors, torch.float64, "cpu", **kwargs)
    assert all(torch.isfinite(t).all() for t in out)
    assert_close(out, ref, tol)
    return out


# IEEE fp32 on both sides on CUDA (tests/conftest.py: ieee_fp32): cuDNN and cuBLAS without TF32,
# so references and SDPA in fp32 are exact fp32 and the kernel (allow_tf32=None) follows cuDNN.
pytestmark = pytest.mark.usefixtures("ieee_fp32")


# ----------------------------------------------------------------------------- interpreter (fp32)


@pytest.mark.parametrize("S_q, S_k, D", [
    (1, 1, 16), (1, 100, 32), (100, 1, 40), (17, 17, 64), (17, 64, 16), (64, 17, 40), (64, 64, 32),
    (64, 100, 64), (100, 64, 16), (100, 100, 40), (17, 100, 32), (100, 17, 64), (1, 17, 40), (64, 1, 16),
])
def test_kernel_matches_float64_reference(S_q, S_k, D):
    B, H = (2, 1) if (S_q + S_k) % 2 else (1, 2)
    check_against_reference(qkv(B, H, S_q, S_k, D, seed=S_q * 1000 + S_k + D))


@pytest.mark.parametrize("D", [1, 24, 33])
def test_head_dims_padded_to_a_power_of_two(D):
    assert block_d(D) == max(16, 2 ** math.ceil(math.log2(D)))
    check_against_reference(qkv(1, 2, 20, 19, D, seed=D))


def test_qkv_as_views_of_one_projection_and_a_strided_upstream_gradient():
    """The usual layout: one (B, S, 3, H, D) projection, q, k, v its strided views; dO arrives
    transposed from a (B, S, H, D) consumer. Gradients flow into the one projection."""
    B, S, H, D = 2, 33, 3, 40
    base = torch.randn(B, S, 3, H, D, generator=torch.Generator().manual_seed(1))
    do = upstream((B, S, H, D)).transpose(1, 2)  # (B, H, S, D) view, not contiguous

    def run(fn, dtype):
        leaf = base.to(DEVICE if fn is triton_attention else "cpu", dtype).requires_grad_()
        q, k, v = (leaf[:, :, i].transpose(1, 2) for i in range(3))
        assert not q.is_contiguous()
        o = fn(q, k, v)
        (grad,) = torch.autograd.grad(o, leaf, do.to(leaf.device, dtype))
        return (o.detach(), *grad.unbind(dim=2))

    out = run(triton_attention, torch.float32)
    assert out[0].shape == (B, H, S, D) and out[0].is_contiguous()
    assert_close(out, run(reference, torch.float64), FP32_TOL)


def test_head_dim_strided_layout():
    """q, k, v laid out (B, H, D, S) in memory (a channels-first projection): stride over D is S."""
    q, k, v = (t.transpose(2, 3).contiguous().transpose(2, 3) for t in qkv(1, 2, 23, 30, 16, seed=2))
    assert q.stride(3) == 23 and k.stride(2) == 1
    out = output_and_grads(triton_attention, (q, k, v), torch.float32, DEVICE)
    assert_close(out, output_and_grads(reference, (q, k, v), torch.float64, "cpu"), FP32_TOL)


@pytest.mark.parametrize("scale", [0.05, 1.0, -0.5, 0.0])
def test_scale_argument(scale):
    check_against_reference(qkv(1, 2, 18, 21, 32, seed=3), scale=scale)


def test_default_scale_is_inverse_sqrt_head_dim():
    tensors = qkv(1, 1, 9, 12, 40, seed=4)
    a = triton_attention(*tensors)
    b = triton_attention(*tensors, scale=1 / math.sqrt(40))
    assert torch.equal(a, b)


@pytest.mark.parametrize("case", ["one_hot", "offset"])
def test_scores_of_magnitude_1e4_neither_overflow_nor_underflow(case):
    """one_hot: scores ~ N(0, 1e4^2), gaps of thousands between a row's top two; offset:
    every score near -1e4 with O(1) differences (all of them matter). Errors relative to
    each output's natural scale (the one_hot gradients of q and k are ~0 in float64)."""
    if case == "one_hot":
        tensors, scale = qkv(1, 2, 17, 40, 16, seed=5, scale=25.0), 4.0
    else:
        tensors, scale = qkv(1, 2, 17, 40, 16, seed=6, scale=0.05, offset=(25.0, -25.0, 0.0)), 1.0
    q, k, v = tensors
    out = output_and_grads(triton_attention, tensors, torch.float32, DEVICE, scale=scale)
    ref = output_and_grads(reference, tensors, torch.float64, "cpu", scale=scale)
    assert all(torch.isfinite(t).all() for t in out)
    top = lambda t: float(t.abs().max())  # noqa: E731
    do = upstream(ref[0].shape)
    natural = [top(v), scale * top(k) * top(do) * top(v), scale * top(q) * top(do) * top(v), top(do)]
    errs = {n: float((a.cpu().double() - r).abs().max()) / s for n, a, r, s in zip(NAMES, out, ref, natural)}
    assert max(errs.values()) < 1e-2, errs
    if case == "offset":
        assert 0.01 < top(out[0]) < 1.0  # a proper average of v: neither one row nor 0/0


def test_only_the_gradients_asked_for_are_computed(monkeypatch):
    q, k, v = qkv(1, 2, 20, 17, 16, seed=8)
    launched = []
    original = attention_module.launch
    monkeypatch.setattr(attention_module, "launch", lambda kind, *a: launched.append(kind) or original(kind, *a))
    ref = output_and_grads(reference, (q, k, v), torch.float64, "cpu")
    qd = q.clone().requires_grad_()
    (dq,) = torch.autograd.grad(triton_attention(qd, k, v), qd, upstream((1, 2, 20, 16)))
    assert launched == ["fwd", "dq"]
    assert_close([dq], [ref[1]], FP32_TOL)
    launched.clear()
    vd = v.clone().requires_grad_()
    (dv,) = torch.autograd.grad(triton_attention(q, k, vd), vd, upstream((1, 2, 20, 16)))
    assert launched == ["fwd", "dkdv"]
    assert_close([dv], [ref[3]], FP32_TOL)


def test_inference_keeps_no_graph():
    q, k, v = (t.requires_grad_() for t in qkv(1, 1, 5, 6, 16, seed=9))
    with torch.no_grad():
        o = triton_attention(q, k, v)
    assert o.grad_fn is None and not o.requires_grad
    assert triton_attention(q, k, v).grad_fn is not None


def test_backward_is_deterministic():
    tensors = qkv(2, 1, 37, 50, 24, seed=10)
    first = output_and_grads(triton_attention, tensors, torch.float32, DEVICE)
    second = output_and_grads(triton_attention, tensors, torch.float32, DEVICE)
    assert all(torch.equal(a, b) for a, b in zip(first, second))


@pytest.mark.parametrize("B, H, S_q, S_k", [(0, 2, 5, 5), (1, 2, 0, 5), (1, 2, 4, 0)])
def test_empty_sizes_match_the_reference(B, H, S_q, S_k):
    """No keys: the reference's empty sum, zeros (and zero gradients); empty stays empty."""
    tensors = qkv(B, H, S_q, S_k, 16, seed=11)
    out = output_and_grads(triton_attention, tensors, torch.float32, DEVICE)
    ref = output_and_grads(reference, tensors, torch.float64, "cpu")
    assert [t.shape for t in out] == [t.shape for t in ref]
    assert_close(out, ref, 0.0)


def test_bad_inputs_are_refused_with_the_fix():
    q, k, v = qkv(1, 2, 5, 6, 16)
    call = lambda *t, **kw: attention(*t, backend="triton", **kw)  # noqa: E731
    with pytest.raises(ConfigError, match=r"\(B, H, S, D\)"):
        call(q[0], k[0], v[0])
    with pytest.raises(ConfigError, match="share"):
        call(q, k[..., :8], v[..., :8])
    with pytest.raises(ConfigError, match="one sequence length"):
        call(q, k, v[:, :, :5])
    with pytest.raises(ConfigError, match="float64.*backend='torch'|backend='torch'.*float64"):
        call(q.double(), k.double(), v.double())
    with pytest.raises(ConfigError, match="one dtype"):
        call(q, k.half(), v)
    with pytest.raises(ConfigError, match="fp32/fp16/bf16"):
        call(q.int(), k.int(), v.int())
    with pytest.raises(ConfigError, match="different devices"):
        call(q, k.to("meta"), v)
    with pytest.raises(ConfigError, match="head dims 1 to 256"):
        call(*qkv(1, 1, 2, 2, 257))
    with pytest.raises(ConfigError, match="fp32_precision"):
        triton_attention(q, k, v, fp32_precision="fast")
    with pytest.raises(ConfigError, match="finite"):
        triton_attention(q, k, v, scale=float("inf"))
    with pytest.raises(ConfigError, match="Unknown backend"):
        attention(q, k, v, backend="cuda")


def test_cpu_without_the_interpreter_is_refused(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ConfigError, match="runs on CUDA.*backend='torch'"):
        attention_module.check_kernel_inputs(*qkv(1, 1, 2, 2, 16), "ieee")
    with pytest.raises(ConfigError, match="needs CUDA"):
        attention(*qkv(1, 1, 2, 2, 16), backend="triton")


def test_public_op_dispatches_by_backend(monkeypatch):
    q, k, v = qkv(1, 2, 7, 9, 16, seed=12)
    assert KERNELS.get("attention").triton is triton_attention
    assert resolve_backend("attention", "auto", "cpu") == "torch"
    assert resolve_backend("attention", "auto", "cuda") == "triton"
    calls = []
    monkeypatch.setattr(attention_module, "attention_forward",
                        lambda *a: calls.append("triton") or (torch.zeros(1), None))
    assert torch.equal(attention(q, k, v, 0.3, backend="torch"), reference(q, k, v, 0.3)) and calls == []
    attention(q, k, v, backend="triton")
    assert calls == ["triton"]


def test_tf32_precisions_are_accepted():
    """Opt-in fp32 precisions (the interpreter computes IEEE fp32 whatever is asked)."""
    tensors = qkv(1, 1, 17, 17, 16, seed=13)
    exact = triton_attention(*tensors)
    for precision in ("tf32", "tf32x3"):
        assert torch.allclose(triton_attention(*tensors, fp32_precision=precision), exact, atol=3e-3)


class _FakeTensor:
    device = torch.device("cpu")  # the interpreter's: the H100's shared-memory limit
    def __init__(self, itemsize):
        self.itemsize = itemsize

    def element_size(self):
        return self.itemsize


@pytest.mark.parametrize("kind", ["fwd", "dkdv", "dq"])
def test_autotune_prune_fits_the_sequence_shared_memory_and_registers(kind):
    import triton

    configs = [triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=s)
               for m, n, w, s in attention_module.CONFIGS_BY_KIND[kind]]
    prune = pruner(kind, False)
    wide = prune(configs, {"q_ptr": _FakeTensor(2), "S_Q": 4096, "S_K": 4096}, BLOCK_D=64)
    assert len(wide) >= 4
    short = prune(configs, {"q_ptr": _FakeTensor(2), "S_Q": 64, "S_K": 64}, BLOCK_D=64)
    assert short and all(c.kwargs["BLOCK_M"] <= 64 and c.kwargs["BLOCK_N"] <= 64 for c in short)
    deep = prune(configs, {"q_ptr": _FakeTensor(4), "S_Q": 4096, "S_K": 4096}, BLOCK_D=256)
    assert len(deep) == 1 or all(attention_module.smem_bytes(kind, c, 256, 4) <= 227 * 1024
                                 for c in deep)  # what fits, or the one smallest tile
    tiny = prune(configs, {"q_ptr": _FakeTensor(2), "S_Q": 1, "S_K": 1}, BLOCK_D=16)
    assert len(tiny) >= 1  # never empty: the smallest tile is kept


@pytest.mark.parametrize("kind", ["fwd", "dkdv", "dq"])
def test_autotune_prune_holds_fewer_accumulators_per_thread_before_sm90(kind):
    """sm_80's mma.sync keeps operand fragments in registers: tiles above 96 accumulator values per
    thread (which spill there) are pruned for it, while sm_90 keeps them up to 160."""
    import triton

    from genbench.kernels.device import TARGETS, planning

    configs = [triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=s)
               for m, n, w, s in attention_module.CONFIGS_BY_KIND[kind]]
    q = torch.empty(16, 32, 1024, 64, dtype=torch.bfloat16, device="meta")
    kept = {}
    for name in ("sm_80", "sm_90"):
        with planning(TARGETS[name]):
            kept[name] = pruner(kind, False)(configs, {"q_ptr": q, "S_Q": 1024, "S_K": 1024}, BLOCK_D=64)
    acc = {name: max(attention_module.acc_per_thread(kind, c, 64) for c in cs) for name, cs in kept.items()}
    assert acc["sm_80"] <= 96 < acc["sm_90"] <= 160
    assert set(map(str, kept["sm_80"])) < set(map(str, kept["sm_90"]))


# ----------------------------------------------------------------------------- the benchmark


def test_bench_counts_follow_the_conventions():
    case = Case({"B": 2, "H": 3, "S": 10, "D": 8}, torch.bfloat16)
    fwd = 4 * 2 * 3 * 10**2 * 8
    assert [bench.flops(case, m) for m in ("fwd", "bwd", "fwd_bwd")] == [fwd, 2.5 * fwd, 3.5 * fwd]
    n = 2 * 3 * 10 * 8
    assert [bench.bytes_moved(case, m) for m in ("fwd", "bwd", "fwd_bwd")] == [4 * n * 2, 8 * n * 2, 12 * n * 2]


def test_bench_cases_cover_the_issue_and_the_unet():
    shapes = {(c.shape["B"], c.shape["H"], c.shape["S"], c.shape["D"], c.dtype, c.variant) for c in bench.cases()}
    bf16 = torch.bfloat16
    for s in (256, 1024, 4096):
        assert any(x[2] == s and x[3] == 64 and x[4] == bf16 for x in shapes)
    assert any(x[2] == 1024 and x[3] == 32 for x in shapes) and any(x[2] == 1024 and x[3] == 128 for x in shapes)
    assert {(64, 4, 256, 64, bf16, ""), (64, 4, 64, 64, bf16, ""), (64, 4, 256, 64, bf16, "packed")} <= shapes
    assert any(x[2] % 64 for x in shapes) and any(x[4] == torch.float16 for x in shapes)
    from genbench.kernelbench import BENCHES

    assert list(BENCHES.get("attention").providers) == ["triton", "sdpa_flash", "sdpa", "eager", "compile"]


@pytest.mark.parametrize("variant", ["", "packed"])
def test_bench_workloads_run_every_mode_and_agree(variant):
    """The workload logic at a tiny fp32 size on the CPU (triton in the interpreter)."""
    case = Case({"B": 1, "H": 2, "S": 20, "D": 16}, torch.float32, variant)
    grads = {}
    for provider in ("triton", "eager", "sdpa"):
        w = bench.workload(provider, device=DEVICE)(case)
        for mode in ("fwd", "bwd", "fwd_bwd"):
            for t in w.grad_to_none:
                t.grad = None
            w.by_mode(mode)()
        grads[provider] = [t.grad.clone() for t in w.grad_to_none]
        assert w.provenance["layout"] == (variant or "contiguous")
    assert "sdpa_backend" in w.provenance
    for provider in ("eager", "sdpa"):
        assert_close(grads["triton"], grads[provider], 1e-5, names=[f"grad {i}" for i in range(3)])


def test_bench_check_rows_pass():
    rows = bench.check()
    assert len(rows) == len(bench.CHECKS) and all(r["ok"] for r in rows), rows


def test_sdpa_helpers_force_and_name_a_backend():
    q, k, v = qkv(1, 2, 9, 9, 16, seed=14)
    assert torch.allclose(sdpa_backend_attention(q, k, v, backend="math"), reference(q, k, v), atol=1e-6)
    assert sdpa_backend_choice(q, k, v) in ("flash", "efficient", "cudnn", "math", "unknown")
    with pytest.raises(ConfigError, match="Unknown SDPA backend"):
        sdpa_backend_attention(q, k, v, backend="fastest")


# ----------------------------------------------------------------------------- CUDA only


def half_errors(dtype, B, H, S, D, packed=False, seed=0):
    """(errors of triton, errors of SDPA) against float64, both on the same dtype inputs."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    if packed:
        base = torch.randn(B, S, 3, H, D, device="cuda", generator=g).to(dtype)
        tensors = [base[:, :, i].transpose(1, 2) for i in range(3)]
    else:
        tensors = [torch.randn(B, H, S, D, device="cuda", generator=g).to(dtype) for _ in range(3)]
    do = torch.randn(B, H, S, D, device="cuda", generator=g)
    ref = output_and_grads(reference, tensors, torch.float64, "cuda", do=do)
    out = output_and_grads(triton_attention, tensors, dtype, "cuda", do=do)
    sdpa = output_and_grads(sdpa_attention, tensors, dtype, "cuda", do=do)
    return errors(out, ref), errors(sdpa, ref)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("B, H, S, D, packed", [
    (2, 4, 1024, 64, False), (1, 2, 1000, 40, False), (3, 2, 77, 128, False), (16, 4, 64, 64, True),
    (2, 3, 257, 32, False), (1, 1, 1, 16, False),
])
def test_half_precision_on_cuda_within_sdpa_error(dtype, B, H, S, D, packed):
    ours, theirs = half_errors(dtype, B, H, S, D, packed, seed=S + D)
    unit = HALF_UNIT[dtype]
    for name, a, b in zip(NAMES, ours, theirs):
        assert a <= 2 * b + unit and a <= 8 * unit, f"{name}: triton {a:.2e}, sdpa {b:.2e}"


@pytest.mark.cuda
@pytest.mark.parametrize("precision, tol", [("ieee", 2 * FP32_TOL), ("tf32x3", 2 * FP32_TOL), ("tf32", 3e-3)])
@pytest.mark.parametrize("B, H, S_q, S_k, D", [(2, 4, 1024, 1024, 64), (1, 3, 300, 77, 80), (1, 2, 129, 1000, 128)])
def test_fp32_precisions_on_cuda(precision, tol, B, H, S_q, S_k, D):
    tensors = qkv(B, H, S_q, S_k, D, seed=S_q)
    out = output_and_grads(triton_attention, tensors, torch.float32, "cuda", fp32_precision=precision)
    ref = output_and_grads(reference, tensors, torch.float64, "cuda")
    assert_close(out, ref, tol)


@pytest.mark.cuda
def test_matches_sdpa_flash_on_cuda():
    g = torch.Generator(device="cuda").manual_seed(15)
    tensors = [torch.randn(4, 8, 1024, 64, device="cuda", generator=g, dtype=torch.bfloat16) for _ in range(3)]
    do = torch.randn(4, 8, 1024, 64, device="cuda", generator=g, dtype=torch.bfloat16)
    out = output_and_grads(triton_attention, tensors, torch.bfloat16, "cuda", do=do)
    flash = output_and_grads(lambda q, k, v: sdpa_backend_attention(q, k, v, backend="flash"), tensors,
                             torch.bfloat16, "cuda", do=do)
    assert_close(out, flash, 4 * HALF_UNIT[torch.bfloat16])


@pytest.mark.cuda
def test_deterministic_and_large_grid_on_cuda():
    """Bitwise-equal gradients run to run (no atomics), and more than 65535 batch·heads."""
    tensors = qkv(2, 3, 1000, 1000, 64, seed=16)
    first = output_and_grads(triton_attention, tensors, torch.bfloat16, "cuda")
    second = output_and_grads(triton_attention, tensors, torch.bfloat16, "cuda")
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    many = qkv(70000, 1, 5, 3, 16, seed=17)
    assert_close(output_and_grads(triton_attention, many, torch.float32, "cuda"),
                 output_and_grads(reference, many, torch.float64, "cuda"), FP32_TOL)


@pytest.mark.cuda
def test_sdpa_backend_is_named_on_cuda():
    q = torch.randn(2, 4, 256, 64, device="cuda", dtype=torch.bfloat16)
    assert sdpa_backend_choice(q, q, q) in ("flash", "efficient", "cudnn")
    sdpa_backend_attention(q, q, q, backend="flash")
