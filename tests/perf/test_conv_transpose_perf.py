"""pytest-benchmark suite for the 2-D transposed convolution (CUDA only; skipped elsewhere).

    pytest tests/perf --benchmark-autosave
    pytest tests/perf --benchmark-compare --benchmark-compare-fail=median:10%

Providers: triton (triton_conv_transpose2d), cudnn (the reference: F.conv_transpose2d and
eager epilogue ops) and compile (torch.compile of the reference: cuDNN for the convolution,
one fused pointwise epilogue). The generator's upsampling layers, k4 s2 p1, bf16, in the
"plain" form (no bias, no activation), plus one with the fused bias + ReLU epilogue.
Each round runs the forward (or forward+backward) and synchronises, so the figure is
device time. `genbench kernels` is the fuller benchmark (do_bench, quantiles, TFLOP/s).
extra_info carries the useful multiply-adds (no multiply by an inserted zero).
"""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.cuda

SHAPES = {"B128-512to256-H8": (128, 512, 256, 8), "B128-128to64-H32": (128, 128, 64, 32),
          "B128-64to3-H32": (128, 64, 3, 32)}  # B, C_in, C_out, H = W
CASES = [(name, "plain") for name in SHAPES] + [("B128-128to64-H32", "bias_relu")]
KERNEL, STRIDE, PADDING = 4, 2, 1
DTYPE = torch.bfloat16


def providers():
    from genbench.baselines.conv_transpose import compiled_conv_transpose2d, conv_transpose2d
    from genbench.kernels.conv_transpose import triton_conv_transpose2d

    return {"triton": triton_conv_transpose2d, "cudnn": conv_transpose2d,
            "compile": lambda *args, **kwargs: compiled_conv_transpose2d()(*args, **kwargs)}


def setup(provider, shape, epilogue, requires_grad):
    """The call to time (one forward) and the info to record."""
    from genbench.baselines.conv_transpose import useful_macs

    B, C_in, C_out, H = SHAPES[shape]
    x = torch.randn(B, C_in, H, H, device="cuda", dtype=DTYPE, requires_grad=requires_grad)
    weight = (torch.randn(C_in, C_out, KERNEL, KERNEL, device="cuda", dtype=DTYPE) / (C_in * 4) ** 0.5)
    weight.requires_grad_(requires_grad)
    bias = torch.randn(C_out, device="cuda", dtype=DTYPE, requires_grad=requires_grad) if epilogue != "plain" else None
    activation = "relu" if epilogue == "bias_relu" else "none"
    fn = providers()[provider]

    def forward():
        return fn(x, weight, bias, STRIDE, PADDING, 0, activation=activation)

    macs = useful_macs(B, C_in, C_out, (H, H), (KERNEL, KERNEL), (STRIDE, STRIDE), (PADDING, PADDING), (0, 0))
    info = {"B": B, "C_in": C_in, "C_out": C_out, "H": H, "kernel": KERNEL, "stride": STRIDE, "padding": PADDING,
            "epilogue": epilogue, "dtype": "bf16", "provider": provider, "useful_macs": macs,
            "gpu": torch.cuda.get_device_name()}
    return forward, (x, weight, bias), info


def run(benchmark, step, info, rounds=20):
    for _ in range(3):  # autotune / compile and warm up outside the timed rounds
        step()
    benchmark.extra_info.update(info)
    benchmark.pedantic(step, rounds=rounds, warmup_rounds=2)


@pytest.mark.parametrize("shape, epilogue", CASES, ids=[f"{s}-{e}" for s, e in CASES])
@pytest.mark.parametrize("provider", ["triton", "cudnn", "compile"])
def test_forward(benchmark, provider, shape, epilogue):
    forward, _, info = setup(provider, shape, epilogue, requires_grad=False)

    def step():
        forward()
        torch.cuda.synchronize()

    run(benchmark, step, {**info, "tflops_per_round": 2 * info["useful_macs"] / 1e12})


@pytest.mark.parametrize("shape, epilogue", CASES, ids=[f"{s}-{e}" for s, e in CASES])
@pytest.mark.parametrize("provider", ["triton", "cudnn", "compile"])
def test_forward_backward(benchmark, provider, shape, epilogue):
    forward, leaves, info = setup(provider, shape, epilogue, requires_grad=True)
    y = forward()
    dy = torch.randn_like(y)
    leaves = [t for t in leaves if t is not None]

    def step():
        for t in leaves:
            t.grad = None
        forward().backward(dy)
        torch.cuda.synchronize()

    # forward, input gradient and weight gradient: three times the forward's useful MACs
    run(benchmark, step, {**info, "tflops_per_round": 3 * 2 * info["useful_macs"] / 1e12})
