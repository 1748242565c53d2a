"""Benchmarks and interpreter checks of the 2-D transposed convolution (three benches).

  conv_transpose2d           the plain op (bias, no activation): providers triton, cudnn
                             (F.conv_transpose2d, the reference, algorithms chosen by
                             heuristic: torch's default) and cudnn_tuned (the same with
                             torch.backends.cudnn.benchmark on: the fastest algorithm cuDNN
                             finds by timing); fwd, bwd, fwd_bwd.
  conv_transpose2d_epilogue  bias + activation fused (ReLU on hidden layers, tanh on the
                             64->3 output layer): triton (fused), eager (cuDNN, then one
                             eager op per epilogue step: the reference), compile
                             (torch.compile of the reference: cuDNN + one fused pointwise
                             kernel); fwd, bwd, fwd_bwd.
  conv_transpose2d_bn        inference BatchNorm (running statistics folded into a
                             per-channel scale/shift by fold_batchnorm) + ReLU, no conv
                             bias (a following BatchNorm makes it redundant, as in the
                             models), under torch.no_grad: triton / eager / compile; fwd only.

Cases, every one k=4 s=2 p=1 (output 2H x 2W), (B, C_in, C_out, H): (128, 512, 256, 8),
(128, 256, 128, 16), (128, 128, 64, 32) -- hidden layers of the DCGAN generator at 128 px
(models/gan_nets.py, width 64: 512->512 at 4 px, then these three, then 64->3 at 64 px) --
(128, 64, 3, 32), the output layer of the DCGAN generator at 64 px, and (128, 64, 32, 8),
the widest-output hidden layer of the conv VAE decoder at 32 px (models/nets.py, channels
32: 128->64 at 4 px, 64->32 at 8 px, 32->C at 16 px); all in bf16 NCHW. The main shapes (128, 512, 256, 8) and (128, 128, 64, 32) also in bf16
channels-last (variant `channels_last`: x, weight and y in that memory format) and in
fp32 NCHW with TF32 as torch.backends.cudnn.allow_tf32 has it when the cases are listed
(`tf32=on|off` in the case; cuDNN and the kernel both follow that flag, and %peak divides
by a matmul measured under the same TF32 setting). The BN bench leaves out the output
layer, which has no BatchNorm.

Useful FLOPs (genbench.baselines.conv_transpose.useful_macs: no multiply by an inserted
zero, no tap landing outside the output), M = B·C_in·C_out·v(H)·v(W) with v the (input
position, tap) pairs along an axis whose output is in range (v(8) = 30 at k4 s2 p1):
forward 2·M; backward = input gradient + weight gradient, each 2·M: 4·M; forward+backward
6·M. The bias gradient and the epilogue are not counted.

Bytes that must move (s = element size of the case's dtype; X = B·C_in·H·W, Y =
B·C_out·H_out·W_out, Wt = C_in·C_out·k², b = C_out·s with a bias, 0 without; the BN
bench adds scale and shift, 2·C_out·4 bytes fp32):
  forward   (X + Wt + Y)·s + b                   read x, weight, bias; write y once
  backward  (Y + X + Wt + X + Wt)·s + b [+ Y·s]  read dy, x, weight; write dx, dW, db;
                                                  with an activation also read y (its
                                                  derivative is taken from the output)
  fwd_bwd   forward + backward
Intermediate traffic a provider adds (eager's separate epilogue passes, the kernel's
weight repack) is not counted: GB/s is what the op must move over the time it took.
"""

from __future__ import annotations

import torch

from genbench.baselines.conv_transpose import (
    compiled_conv_transpose2d,
    fold_batchnorm,
    output_size,
    useful_macs,
)
from genbench.baselines.conv_transpose import conv_transpose2d as reference
from genbench.errors import GenbenchError
from genbench.kernelbench.base import BENCHES, Case, OpBench, Workload, check_row, relative_errors

KERNEL, STRIDE, PADDING = 4, 2, 1
# (B, C_in, C_out, H): see the module docstring
LAYERS = ((128, 512, 256, 8), (128, 256, 128, 16), (128, 128, 64, 32), (128, 64, 3, 32), (128, 64, 32, 8))
MAIN_LAYERS = ((128, 512, 256, 8), (128, 128, 64, 32))
OUTPUT_LAYERS = ((128, 64, 3, 32),)  # end in tanh; no BatchNorm
# --quick: the DCGAN's widest hidden layer in bf16 NCHW (the benchmark's main layout) and a
# hidden layer in fp32 as the fp32 models run it; the fused tanh output layer; the folded BN layer.
QUICK = {((128, 512, 256, 8), torch.bfloat16, ""), ((128, 128, 64, 32), torch.float32, "")}
QUICK_EPILOGUE = {((128, 64, 3, 32), torch.bfloat16, "")}
QUICK_BN = {((128, 512, 256, 8), torch.bfloat16, "")}
CHANNELS_LAST = "channels_last"
INIT_STD = 0.05  # weights ~ N(0, 0.05^2): activations stay O(1) (timings do not depend on values)
CHECK_TOLERANCE = 1e-5  # max|err| / max|ref| against a float64 reference; fp32 IEEE dots over K <= 150
BN_EPS = 1e-5


# ----------------------------------------------------------------------------- cases and counts


def layer_case(batch: int, c_in: int, c_out: int, size: int, dtype: torch.dtype, variant: str = "",
               allow_tf32: bool | None = None) -> Case:
    shape = {"B": batch, "C_in": c_in, "C_out": c_out, "H": size, "W": size, "k": KERNEL, "s": STRIDE, "p": PADDING}
    return Case(shape, dtype, variant, allow_tf32)


def layer(case: Case) -> tuple[int, int, int, int]:
    return case.shape["B"], case.shape["C_in"], case.shape["C_out"], case.shape["H"]


def cases() -> list[Case]:
    """Every layer in bf16 NCHW; the main ones also bf16 channels-last and fp32 (TF32 as
    torch.backends.cudnn.allow_tf32 has it now)."""
    tf32 = bool(torch.backends.cudnn.allow_tf32)
    return ([layer_case(*shape, torch.bfloat16) for shape in LAYERS]
            + [layer_case(*shape, torch.bfloat16, CHANNELS_LAST) for shape in MAIN_LAYERS]
            + [layer_case(*shape, torch.float32, allow_tf32=tf32) for shape in MAIN_LAYERS])


def bn_cases() -> list[Case]:
    return [c for c in cases() if layer(c) not in OUTPUT_LAYERS]


def activation_of(case: Case) -> str:
    return "tanh" if layer(case) in OUTPUT_LAYERS else "relu"


def sizes(case: Case) -> tuple[int, int, int, int, int]:
    """(X, Y, Wt, H_out, W_out): element counts of x, y and the weight; the output size."""
    s = case.shape
    h_out, w_out = (output_size(n, s["k"], s["s"], s["p"], 0) for n in (s["H"], s["W"]))
    x = s["B"] * s["C_in"] * s["H"] * s["W"]
    y = s["B"] * s["C_out"] * h_out * w_out
    return x, y, s["C_in"] * s["C_out"] * s["k"] ** 2, h_out, w_out


def macs(case: Case) -> int:
    s = case.shape
    return useful_macs(s["B"], s["C_in"], s["C_out"], (s["H"], s["W"]), (s["k"], s["k"]), (s["s"], s["s"]),
                       (s["p"], s["p"]), (0, 0))


def flops(case: Case, mode: str) -> int:
    """Useful FLOPs: forward 2·M; backward (dgrad + wgrad) 4·M; forward+backward 6·M."""
    return {"fwd": 2, "bwd": 4, "fwd_bwd": 6}[mode] * macs(case)


def byte_counter(has_bias: bool, has_activation: bool, folded_bn: bool = False):
    """bytes_moved(case, mode) for one bench (formulas in the module docstring)."""
    def bytes_moved(case: Case, mode: str) -> int:
        x, y, wt, _, _ = sizes(case)
        s, c_out = case.dtype.itemsize, case.shape["C_out"]
        bias = c_out * s if has_bias else 0
        fwd = (x + wt + y) * s + bias + (2 * c_out * 4 if folded_bn else 0)
        bwd = (y + 2 * x + 2 * wt) * s + bias + (y * s if has_activation else 0)
        return {"fwd": fwd, "bwd": bwd, "fwd_bwd": fwd + bwd}[mode]

    return bytes_moved


# ----------------------------------------------------------------------------- workloads


def triton_impl(*args, **kwargs):
    from genbench.kernels.conv_transpose import triton_conv_transpose2d

    return triton_conv_transpose2d(*args, **kwargs)


def compile_impl(*args, **kwargs):
    return compiled_conv_transpose2d()(*args, **kwargs)


IMPLS = {"triton": triton_impl, "cudnn": reference, "cudnn_tuned": reference, "eager": reference,
         "compile": compile_impl}


def cudnn_tuned(fn):
    """fn with torch.backends.cudnn.benchmark on during the call (forward and backward):
    cuDNN times its algorithms for each new shape and keeps the fastest, instead of
    choosing by heuristic. The flag is global and read at call time, hence per call."""
    def call():
        with torch.backends.cudnn.flags(enabled=True, benchmark=True, deterministic=False,
                                        allow_tf32=torch.backends.cudnn.allow_tf32):
            return fn()

    return call


def inputs(case: Case, device, requires_grad: bool, bias: bool = True) -> dict:
    """x, weight, bias of one case (channels-last variant: x and weight in that format)."""
    b, c_in, c_out, h = layer(case)
    fmt = torch.channels_last if case.variant == CHANNELS_LAST else torch.contiguous_format
    x = torch.randn(b, c_in, h, case.shape["W"], device=device, dtype=case.dtype).contiguous(memory_format=fmt)
    k = case.shape["k"]
    weight = (INIT_STD * torch.randn(c_in, c_out, k, k, device=device, dtype=case.dtype)).contiguous(memory_format=fmt)
    bias_t = INIT_STD * torch.randn(c_out, device=device, dtype=case.dtype) if bias else None
    tensors = {"x": x, "weight": weight, "bias": bias_t}
    for t in tensors.values():
        if t is not None:
            t.requires_grad_(requires_grad)
    return tensors


def folded_batchnorm(c_out: int, device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) of an eval-mode BatchNorm2d with random running statistics and affine terms."""
    norm = torch.nn.BatchNorm2d(c_out, eps=BN_EPS).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        norm.running_mean.normal_(0.0, 0.5, generator=g)
        norm.running_var.uniform_(0.5, 2.0, generator=g)
        norm.weight.normal_(1.0, 0.2, generator=g)
        norm.bias.normal_(0.0, 0.2, generator=g)
    with torch.no_grad():  # constants of an inference layer (the kernel refuses ones that require grad)
        scale, shift = fold_batchnorm(norm)
    return scale.to(device), shift.to(device)


def check_tf32(case: Case) -> None:
    """cuDNN reads torch.backends.cudnn.allow_tf32 at call time: it must still be the case's setting."""
    if case.allow_tf32 is not None and bool(torch.backends.cudnn.allow_tf32) != case.allow_tf32:
        raise GenbenchError(f"torch.backends.cudnn.allow_tf32 is {torch.backends.cudnn.allow_tf32} but the case was "
                            f"listed with {case.allow_tf32}: cuDNN would not compute as the case says.")


def ran_under(case: Case, provider: str, activation: str) -> dict:
    benchmark = provider == "cudnn_tuned" or bool(torch.backends.cudnn.benchmark)
    return {"cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32), "cudnn_benchmark": benchmark,
            "memory_format": case.variant or "contiguous", "activation": activation,
            "conv": "cuDNN (F.conv_transpose2d)" if provider != "triton" else "triton (sub-pixel phases)"}


def prepare(provider: str) -> None:
    """compile: a fresh dynamo cache per case, so each case compiles static shapes and the
    per-function recompile limit (8) never sends a later case back to eager silently."""
    if provider == "compile":
        torch._dynamo.reset()


def training_workload(provider: str, activation_for, device: str = "cuda"):
    """fwd / bwd / fwd_bwd of y = act(conv_transpose(x, W) + b), gradients for x, W and b.
    (`device` other than cuda: for tests of the workload logic at tiny sizes.)"""
    impl = IMPLS[provider]

    def build(case: Case, device: str = device) -> Workload:
        check_tf32(case)
        prepare(provider)
        t = inputs(case, device, requires_grad=True)
        x, w, b = t["x"], t["weight"], t["bias"]
        activation = activation_for(case)
        kwargs = {"activation": activation}
        if provider == "triton" and case.allow_tf32 is not None:
            kwargs["allow_tf32"] = case.allow_tf32

        wrap = cudnn_tuned if provider == "cudnn_tuned" else (lambda fn: fn)

        @wrap
        def forward():
            return impl(x, w, b, STRIDE, PADDING, **kwargs)

        y = forward()  # warm-up (autotune, compile, cuDNN's algorithm search) and the graph `backward` replays
        dy = torch.randn_like(y)
        backward = wrap(lambda: torch.autograd.backward(y, dy, retain_graph=True))
        backward()

        @wrap
        def forward_backward():
            torch.autograd.backward(forward(), dy)

        return Workload(forward=forward, backward=backward, forward_backward=forward_backward,
                        grad_to_none=[x, w, b], provenance=ran_under(case, provider, activation))

    return build


def bn_workload(provider: str, device: str = "cuda"):
    """Forward of y = relu(conv_transpose(x, W)·scale + shift) under torch.no_grad."""
    impl = IMPLS[provider]

    def build(case: Case, device: str = device) -> Workload:
        check_tf32(case)
        prepare(provider)
        t = inputs(case, device, requires_grad=False, bias=False)
        scale, shift = folded_batchnorm(case.shape["C_out"], device)
        kwargs = {"activation": "relu", "scale": scale, "shift": shift}
        if provider == "triton" and case.allow_tf32 is not None:
            kwargs["allow_tf32"] = case.allow_tf32

        def forward():
            with torch.no_grad():
                return impl(t["x"], t["weight"], None, STRIDE, PADDING, **kwargs)

        forward()  # warm-up
        return Workload(forward=forward, provenance={**ran_under(case, provider, "relu"), "folded": "BatchNorm2d (eval)"})

    return build


# ----------------------------------------------------------------------------- interpreter checks

# (B, C_in, C_out, H, W, kernel, stride, padding, output_padding, activation, channels_last, wgrad_split, bn)
PLAIN_CHECKS = (
    (2, 3, 5, 5, 4, 4, 2, 1, 0, "none", False, None, False),
    (1, 5, 3, 4, 7, 3, 2, 1, 1, "none", True, None, False),
    (2, 4, 17, 3, 5, (5, 3), (1, 2), (2, 0), (0, 1), "none", False, 2, False),
)
EPILOGUE_CHECKS = (
    (2, 3, 5, 5, 4, 4, 2, 1, 0, "relu", False, None, False),
    (1, 6, 3, 5, 5, 4, 2, 1, 0, "tanh", True, 2, False),
    (3, 2, 4, 3, 4, 3, 1, 1, 0, "leaky_relu", False, None, False),
)
BN_CHECKS = (
    (2, 3, 4, 3, 5, 4, 2, 1, 0, "relu", False, None, True),
    (1, 5, 6, 4, 3, 3, 2, 0, 1, "relu", True, None, True),
)


def check_config(config: tuple, bench_op: str) -> dict:
    """The kernel (fp32, IEEE dots) against the reference in float64 on the CPU: y and,
    unless folded BN (inference only), dx, dW, db. Errors relative to each tensor's max;
    the row is labelled with `bench_op`, the registered bench that checks it."""
    from genbench.kernels.conv_transpose import triton_conv_transpose2d

    b, c_in, c_out, h, w, k, s, p, op, act, channels_last, split, bn = config
    kh, kw = (k, k) if isinstance(k, int) else k
    device = "cuda" if torch.cuda.is_available() else "cpu"
    g = torch.Generator().manual_seed(b * 1000 + c_in * 100 + c_out * 10 + h)
    x = torch.randn(b, c_in, h, w, generator=g)
    weight = torch.randn(c_in, c_out, kh, kw, generator=g) / (c_in * kh * kw) ** 0.5
    bias = None if bn else torch.randn(c_out, generator=g)
    scale, shift = folded_batchnorm(c_out, "cpu", seed=c_out) if bn else (None, None)
    options = {"activation": act, "scale": scale, "shift": shift}
    fmt = torch.channels_last if channels_last else torch.contiguous_format

    def run(fn, tensors, dtype, dev, **extra):
        leaves = [t.to(device=dev, dtype=dtype).contiguous(memory_format=fmt if t.ndim == 4 else torch.contiguous_format)
                  .requires_grad_(not bn) if t is not None else None for t in tensors]
        vec = {k2: (v.to(dev) if torch.is_tensor(v) else v) for k2, v in options.items()}
        with torch.set_grad_enabled(not bn):
            y = fn(leaves[0], leaves[1], leaves[2], s, p, op, **vec, **extra)
            if bn:
                return [y.detach()]
            dy = torch.randn(y.shape, generator=torch.Generator().manual_seed(7)).to(device=dev, dtype=dtype)
            grads = torch.autograd.grad((y * dy).sum(), [t for t in leaves if t is not None])
        return [y.detach(), *grads]

    ref = run(reference, (x, weight, bias), torch.float64, "cpu")
    out = run(triton_conv_transpose2d, (x, weight, bias), torch.float32, device, allow_tf32=False, wgrad_split=split)
    layout = ",channels_last" if channels_last else ""
    label = (f"B={b},C_in={c_in},C_out={c_out},H={h},W={w},k={k},s={s},p={p},op={op},{act}"
             f"{',bn' if bn else ''}{layout}{f',split={split}' if split else ''}")
    return check_row(bench_op, label, f"max|err|/max|ref| ({'y' if bn else 'y, dx, dW, db'})",
                     relative_errors(out, ref), CHECK_TOLERANCE)


def checker(op: str, configs: tuple):
    def check() -> list[dict]:
        """Kernel vs reference on small odd configurations (the interpreter on CPU)."""
        return [check_config(c, op) for c in configs]

    return check


# ----------------------------------------------------------------------------- registration


BENCHES.register("conv_transpose2d", OpBench(
    op="conv_transpose2d",
    cases=cases,
    providers={name: training_workload(name, lambda c: "none") for name in ("triton", "cudnn", "cudnn_tuned")},
    bytes_moved=byte_counter(has_bias=True, has_activation=False),
    check=checker("conv_transpose2d", PLAIN_CHECKS),
    baseline_providers=("cudnn", "cudnn_tuned"),
    flops=flops,
    quick=lambda c: (layer(c), c.dtype, c.variant) in QUICK,
))

BENCHES.register("conv_transpose2d_epilogue", OpBench(
    op="conv_transpose2d_epilogue",
    cases=cases,
    providers={name: training_workload(name, activation_of) for name in ("triton", "eager", "compile")},
    bytes_moved=byte_counter(has_bias=True, has_activation=True),
    check=checker("conv_transpose2d_epilogue", EPILOGUE_CHECKS),
    flops=flops,
    quick=lambda c: (layer(c), c.dtype, c.variant) in QUICK_EPILOGUE,
    kernel_op="conv_transpose2d",
))

BENCHES.register("conv_transpose2d_bn", OpBench(
    op="conv_transpose2d_bn",
    cases=bn_cases,
    providers={name: bn_workload(name) for name in ("triton", "eager", "compile")},
    bytes_moved=byte_counter(has_bias=False, has_activation=True, folded_bn=True),
    check=checker("conv_transpose2d_bn", BN_CHECKS),
    modes=("fwd",),
    flops=flops,
    quick=lambda c: (layer(c), c.dtype, c.variant) in QUICK_BN,
    kernel_op="conv_transpose2d",
))
