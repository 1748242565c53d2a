"""pytest-benchmark suite for non-causal attention (CUDA only; skipped elsewhere).

    pytest tests/perf/test_attention_perf.py --benchmark-autosave
    pytest tests/perf --benchmark-compare --benchmark-compare-fail=median:10%

Each round runs one forward (or one forward+backward) and synchronises, so the figure is
device time. Providers: the Triton kernel, SDPA forced to its flash backend, SDPA's
default dispatch (the backend it picked is in extra_info), eager. `genbench kernels
--ops attention` is the fuller benchmark (do_bench with cold L2, TFLOP/s against the
matmul peak, torch.compile, peak memory).
"""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.cuda

# (B, H, S, D): d64 at S 1024 and 4096 (FlashAttention's 16k-token batches), d128, and the
# U-Net's 4 heads of 64 at 16x16 and 32x32 feature maps.
CASES = [(16, 32, 1024, 64), (4, 32, 4096, 64), (16, 16, 1024, 128), (64, 4, 256, 64), (16, 4, 1024, 64)]
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
PROVIDERS = ["triton", "sdpa_flash", "sdpa", "eager"]


def providers():
    from genbench.baselines.attention import attention, sdpa_attention, sdpa_backend_attention
    from genbench.kernels.attention import triton_attention

    return {"triton": triton_attention, "sdpa_flash": lambda q, k, v: sdpa_backend_attention(q, k, v, backend="flash"),
            "sdpa": sdpa_attention, "eager": attention}


def setup(provider, dtype, B, H, S, D, requires_grad):
    from genbench.baselines.attention import sdpa_backend_choice

    fn = providers()[provider]
    q, k, v = (torch.randn(B, H, S, D, device="cuda", dtype=DTYPES[dtype], requires_grad=requires_grad)
               for _ in range(3))
    info = {"B": B, "H": H, "S": S, "D": D, "dtype": dtype, "provider": provider,
            "gpu": torch.cuda.get_device_name(), "tflops_per_round": 4 * B * H * S * S * D / 1e12}
    if provider == "sdpa":
        info["sdpa_backend"] = sdpa_backend_choice(q, k, v)
    return fn, (q, k, v), info


def run(benchmark, step, info):
    for _ in range(3):  # autotune / warm up outside the timed rounds
        step()
    benchmark.extra_info.update(info)
    benchmark.pedantic(step, rounds=20, warmup_rounds=2)


@pytest.mark.parametrize("B, H, S, D", CASES, ids=[f"B{b}-H{h}-S{s}-D{d}" for b, h, s, d in CASES])
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("provider", PROVIDERS)
def test_forward(benchmark, provider, dtype, B, H, S, D):
    fn, (q, k, v), info = setup(provider, dtype, B, H, S, D, requires_grad=False)

    def step():
        fn(q, k, v)
        torch.cuda.synchronize()

    run(benchmark, step, info)


@pytest.mark.parametrize("B, H, S, D", CASES, ids=[f"B{b}-H{h}-S{s}-D{d}" for b, h, s, d in CASES])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_forward_backward(benchmark, provider, B, H, S, D):
    fn, (q, k, v), info = setup(provider, "bf16", B, H, S, D, requires_grad=True)
    do = torch.randn(B, H, S, D, device="cuda", dtype=torch.bfloat16)
    info["tflops_per_round"] *= 3.5  # forward + backward (2.5x forward) useful FLOPs

    def step():
        torch.autograd.backward(fn(q, k, v), do)
        q.grad = k.grad = v.grad = None
        torch.cuda.synchronize()

    run(benchmark, step, info)
