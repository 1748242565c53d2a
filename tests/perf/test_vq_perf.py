"""pytest-benchmark suite for the VQ nearest-codebook search (CUDA only; skipped elsewhere).

    pytest tests/perf --benchmark-autosave
    pytest tests/perf --benchmark-compare --benchmark-compare-fail=median:10%

Each round runs one search and synchronises, so the figure is device time (forward
only: the op has no backward). `genbench kernels` is the fuller benchmark (do_bench,
TFLOP/s against the matmul peak, the case where eager runs out of memory).
"""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.cuda

CASES = [(8192, 512, 64), (65536, 1024, 64), (262144, 4096, 256)]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def providers():
    from genbench.baselines.vq import compiled_vq_nearest, vq_nearest
    from genbench.kernels.vq import triton_vq_nearest

    return {"triton": triton_vq_nearest, "eager": vq_nearest,
            "compile": lambda x, e: compiled_vq_nearest()(x, e)}


@pytest.mark.parametrize("N, K, D", CASES, ids=[f"N{n}-K{k}-D{d}" for n, k, d in CASES])
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("provider", ["triton", "eager", "compile"])
def test_forward(benchmark, provider, dtype, N, K, D):
    fn = providers()[provider]
    x = torch.randn(N, D, device="cuda", dtype=DTYPES[dtype])
    codebook = torch.randn(K, D, device="cuda", dtype=DTYPES[dtype])

    def step():
        fn(x, codebook)
        torch.cuda.synchronize()

    for _ in range(3):  # autotune / compile and warm up outside the timed rounds
        step()
    benchmark.extra_info.update({"N": N, "K": K, "D": D, "dtype": dtype, "provider": provider,
                                 "tflops_per_round": 2 * N * K * D / 1e12, "gpu": torch.cuda.get_device_name()})
    benchmark.pedantic(step, rounds=20, warmup_rounds=2)
