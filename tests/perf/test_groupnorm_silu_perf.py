"""pytest-benchmark suite for fused GroupNorm + scale-shift + SiLU (CUDA only; skipped elsewhere).

    pytest tests/perf --benchmark-autosave
    pytest tests/perf --benchmark-compare --benchmark-compare-fail=median:10%

Providers: triton (triton_group_norm_silu), eager (F.group_norm, then one eager op per
epilogue step: the reference) and compile (torch.compile of the reference). The 32 px DDPM
U-Net's GroupNorm(32) layers with the time-embedding scale-shift, bf16, NCHW and one
channels-last. Each round runs the forward (or forward+backward) and synchronises, so the
figure is device time. extra_info carries the bytes the op must move (read x, write y;
backward: read x and dy, write dx; plus the parameters), for GB/s. `genbench kernels` is
the fuller benchmark (do_bench, quantiles, fraction of the measured copy bandwidth).
"""

from __future__ import annotations

import pytest
import torch


pytestmark = pytest.mark.cuda

SHAPES = {"B128-C128-H32": (128, 128, 32, False), "B128-C256-H16": (128, 256, 16, False),
          "B128-C256-H8": (128, 256, 8, False), "B128-C128-H32-channels_last": (128, 128, 32, True)}
DTYPE = torch.bfloat16


def setup(provider, shape, requires_grad):
    """The forward call to time, its inputs, dy, and the info to record."""
    from genbench.kernelbench.groupnorm_silu import IMPLS, bytes_moved, layer_case

    B, C, H, channels_last = SHAPES[shape]
    case = layer_case(B, C, H, True, DTYPE, channels_last)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(B, C, H, H, device="cuda", dtype=DTYPE).contiguous(memory_format=fmt)
    weight = 1.0 + 0.1 * torch.randn(C, device="cuda", dtype=DTYPE)
    bias = 0.1 * torch.randn(C, device="cuda", dtype=DTYPE)
    scale, shift = (0.1 * torch.randn(B, C, device="cuda", dtype=DTYPE) for _ in range(2))
    leaves = (x, weight, bias, scale, shift)
    for t in leaves:
        t.requires_grad_(requires_grad)
    dy = torch.randn_like(x)
    impl = IMPLS[provider]
    if provider == "compile":
        torch._dynamo.reset()

    def forward():
        return impl(x, 32, weight, bias, 1e-5, scale, shift, "silu")

    info = {"B": B, "C": C, "H": H, "groups": 32, "scale_shift": True, "dtype": "bf16", "provider": provider,
            "memory_format": "channels_last" if channels_last else "contiguous",
            "bytes_fwd": bytes_moved(case, "fwd"), "bytes_fwd_bwd": bytes_moved(case, "fwd_bwd"),
            "gpu": torch.cuda.get_device_name()}
    return forward, leaves, dy, info


def run(benchmark, step, info, rounds=30):
    for _ in range(3):  # autotune / compile and warm up outside the timed rounds
        step()
    benchmark.extra_info.update(info)
    benchmark.pedantic(step, rounds=rounds, warmup_rounds=2)


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("provider", ["triton", "eager", "compile"])
def test_forward(benchmark, provider, shape):
    forward, _, _, info = setup(provider, shape, requires_grad=False)

    def step():
        with torch.no_grad():
            forward()
        torch.cuda.synchronize()

    run(benchmark, step, {**info, "mode": "fwd"})


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("provider", ["triton", "eager", "compile"])
def test_forward_backward(benchmark, provider, shape):
    forward, leaves, dy, info = setup(provider, shape, requires_grad=True)

    def step():
        for t in leaves:
            t.grad = None
        torch.autograd.backward(forward(), dy)
        torch.cuda.synchronize()

    run(benchmark, step, {**info, "mode": "fwd_bwd"})
