"""pytest-benchmark suite for the reparam+KL op (CUDA only; skipped elsewhere).

    pytest tests/perf --benchmark-autosave
    pytest tests/perf --benchmark-compare --benchmark-compare-fail=median:10%

Each round runs forward+backward and synchronises, so the figure is device time.
`genbench kernels` is the fuller benchmark (do_bench, bandwidth, quantiles).
"""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.cuda

CASES = [(64, 16), (1024, 256), (65536, 64), (65536, 1024)]


def providers():
    from genbench.baselines.reparam_kl import compiled_reparameterize_kl, reparameterize_kl
    from genbench.kernels.reparam_kl import triton_reparameterize_kl

    return {"triton": triton_reparameterize_kl, "eager": reparameterize_kl,
            "compile": lambda mu, lv, eps: compiled_reparameterize_kl()(mu, lv, eps)}


@pytest.mark.parametrize("B, D", CASES, ids=[f"B{b}-D{d}" for b, d in CASES])
@pytest.mark.parametrize("provider", ["triton", "eager", "compile"])
def test_forward_backward(benchmark, provider, B, D):
    fn = providers()[provider]
    mu = torch.randn(B, D, device="cuda", requires_grad=True)
    logvar = torch.randn(B, D, device="cuda", requires_grad=True)
    eps, dz, dkl = torch.randn(B, D, device="cuda"), torch.randn(B, D, device="cuda"), torch.randn(B, device="cuda")

    def step():
        mu.grad = logvar.grad = None
        z, kl = fn(mu, logvar, eps)
        torch.autograd.backward((z, kl), (dz, dkl))
        torch.cuda.synchronize()

    for _ in range(3):  # compile and warm up outside the timed rounds
        step()
    benchmark.extra_info.update({"B": B, "D": D, "provider": provider, "gpu": torch.cuda.get_device_name()})
    benchmark.pedantic(step, rounds=50, warmup_rounds=5)
