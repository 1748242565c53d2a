"""Benchmark and interpreter check of the fused GroupNorm + scale-shift + SiLU op.

Providers: triton (triton_group_norm_silu), eager (the reference: F.group_norm, then one
eager op per step -- x·(1 + scale), + shift, SiLU) and compile (torch.compile of the
reference: inductor's fused normalisation + epilogue). Modes fwd, bwd, fwd_bwd; gradients
for x, weight, bias and, with scale-shift, scale and shift (in the U-Net they come from the
time embedding and are trained).

Cases: the GroupNorm(32) layers of the 32 px DDPM U-Net (base width 128, channel
multipliers 1, 2, 2: 128 channels at 32x32, 256 at 16x16 and 8x8), batch 128 (64 for
256 channels at 32x32, the decoder's widest map), each with the adaptive scale-shift
(variant `scale_shift`: the second norm of a ResBlock) and without (`plain`: the first);
bf16 NCHW, plus the 128 x 32x32 layer in fp32 and in bf16 channels-last. Parameters are in
the case's dtype (a model cast to bf16).

Bytes that must move (s = element size, N = B·C·H·W; P = 2·C·s for weight and bias,
+ 2·B·C·s for scale and shift with scale-shift):
  forward   2·N·s + P              read x once, write y once, read the parameters
  backward  3·N·s + 2·P            read x and dy, write dx; read the parameters, write their gradients
  fwd_bwd   forward + backward
The saved statistics (B·G·12 bytes for the kernel), a second read of x when a group does not
fit one tile, and the eager ops' intermediate tensors are not counted: GB/s is what the op
must move over the time it took, and %copy relates it to the device's copy bandwidth.
"""

from __future__ import annotations

import torch

from genbench.baselines.groupnorm_silu import compiled_group_norm_silu
from genbench.baselines.groupnorm_silu import group_norm_silu as reference
from genbench.kernelbench.base import BENCHES, Case, OpBench, Workload, check_row, relative_errors, seeded_generator


GROUPS = 32
EPS = 1e-5
CHANNELS_LAST = "channels_last"
# (B, C, H, scale_shift): see the module docstring
LAYERS = ((128, 128, 32, True), (128, 128, 32, False), (128, 256, 16, True), (128, 256, 8, True),
          (64, 256, 32, False))
MAIN = (128, 128, 32, True)
CHECK_TOLERANCE = 1e-5  # max|err| / max|ref| against a float64 reference (fp32 in the interpreter)
# (B, C, spatial, groups, scale_shift, channels_last, offset, config): planned one-tile,
# channels-last, a looped plan at offset 1e4, a split plan, 3-D x with non-power-of-two CG
CHECKS = (
    (2, 12, (3, 5), 4, True, False, 0.0, None),
    (2, 64, (8, 8), 32, True, True, 0.0, None),
    (1, 24, (5, 7), 3, False, False, 1e4, (4, 8, 1)),
    (2, 16, (9, 9), 4, True, False, 100.0, (2, 16, 3)),
    (2, 36, (6,), 3, True, False, 0.0, None),
)


def layer_case(batch: int, channels: int, size: int, scale_shift: bool, dtype: torch.dtype,
               channels_last: bool = False) -> Case:
    variant = "scale_shift" if scale_shift else "plain"
    if channels_last:
        variant += f",{CHANNELS_LAST}"
    return Case({"B": batch, "C": channels, "H": size, "W": size, "G": GROUPS}, dtype, variant)


def cases() -> list[Case]:
    return ([layer_case(*layer, torch.bfloat16) for layer in LAYERS]
            + [layer_case(*MAIN, torch.float32), layer_case(*MAIN, torch.bfloat16, channels_last=True)])


def has_scale_shift(case: Case) -> bool:
    return case.variant.startswith("scale_shift")


def bytes_moved(case: Case, mode: str) -> int:
    b, c = case.shape["B"], case.shape["C"]
    n, s = b * c * case.shape["H"] * case.shape["W"], case.dtype.itemsize
    params = 2 * c * s + (2 * b * c * s if has_scale_shift(case) else 0)
    fwd = 2 * n * s + params
    bwd = 3 * n * s + 2 * params
    return {"fwd": fwd, "bwd": bwd, "fwd_bwd": fwd + bwd}[mode]


# ----------------------------------------------------------------------------- workloads


def triton_impl(*args):
    from genbench.kernels.groupnorm_silu import triton_group_norm_silu

    return triton_group_norm_silu(*args)


def compile_impl(*args):
    return compiled_group_norm_silu()(*args)


IMPLS = {"triton": triton_impl, "eager": reference, "compile": compile_impl}


def inputs(case: Case, device="cuda", seed: int = 0) -> dict:
    """x (in the case's memory format), weight, bias and, with scale-shift, scale and shift,
    every one requiring grad; dy for the backward."""
    b, c, h, w = (case.shape[k] for k in ("B", "C", "H", "W"))
    g = seeded_generator(device, seed)
    make = lambda *shape: torch.randn(*shape, generator=g, device=device, dtype=case.dtype)  # noqa: E731
    fmt = torch.channels_last if CHANNELS_LAST in case.variant else torch.contiguous_format
    x = make(b, c, h, w).contiguous(memory_format=fmt)
    weight, bias = 1.0 + 0.1 * make(c), 0.1 * make(c)
    scale, shift = (0.1 * make(b, c), 0.1 * make(b, c)) if has_scale_shift(case) else (None, None)
    tensors = {"x": x, "weight": weight, "bias": bias, "scale": scale, "shift": shift}
    for t in tensors.values():
        if t is not None:
            t.requires_grad_()
    return {**tensors, "dy": make(b, c, h, w).contiguous(memory_format=fmt)}


def workload(provider: str, device: str = "cuda"):
    """fwd / bwd / fwd_bwd of y = group_norm_silu(x, 32, weight, bias, eps, scale, shift).
    (`device` other than cuda: for tests of the workload logic at tiny sizes.)"""
    impl = IMPLS[provider]

    def build(case: Case, device: str = device) -> Workload:
        if provider == "compile":  # a fresh dynamo cache per case: static shapes, no recompile limit
            torch._dynamo.reset()
        t = inputs(case, device)

        def forward():
            return impl(t["x"], GROUPS, t["weight"], t["bias"], EPS, t["scale"], t["shift"], "silu")

        y = forward()  # warm-up (autotune, compile) and the graph `backward` replays
        backward = lambda: torch.autograd.backward(y, t["dy"], retain_graph=True)  # noqa: E731
        backward()

        def forward_backward():
            torch.autograd.backward(forward(), t["dy"])

        leaves = [v for k, v in t.items() if k != "dy" and v is not None]
        provenance = {"memory_format": CHANNELS_LAST if CHANNELS_LAST in case.variant else "contiguous",
                      "scale_shift": has_scale_shift(case), "groups": GROUPS}
        if provider == "triton":
            provenance["plan"] = triton_plan(case, t["x"].device)
        return Workload(forward=forward, backward=backward, forward_backward=forward_backward,
                        grad_to_none=leaves, provenance=provenance)

    return build


def triton_plan(case: Case, device: torch.device) -> str:
    """The kernel's launch plans for the case (candidates before autotuning), for the record."""
    from genbench.kernels.groupnorm_silu import Geometry, plan, sm_count

    g = Geometry(case.shape["B"], case.shape["C"], case.shape["H"] * case.shape["W"], GROUPS)
    parts = []
    for kind in ("fwd", "bwd"):
        p = plan(kind, g, CHANNELS_LAST in case.variant, case.dtype.itemsize, sm_count(device))
        configs = " | ".join(f"g{c.block_g} s{c.block_s}{' one' if c.one_tile else ''} w{c.num_warps}"
                             for c in p.configs)
        parts.append(f"{kind}: split {p.split}, {configs}")
    return "; ".join(parts)


# ----------------------------------------------------------------------------- interpreter checks


def check_config(config: tuple) -> dict:
    """The kernel (fp32) against the reference in float64 on the CPU: y, dx, dweight,
    dbias (and dscale, dshift). Errors relative to each tensor's max."""
    from genbench.kernels.groupnorm_silu import triton_group_norm_silu

    b, c, spatial, groups, scale_shift, channels_last, offset, forced = config
    device = "cuda" if torch.cuda.is_available() else "cpu"
    g = torch.Generator().manual_seed(b * 100 + c)
    x = offset + torch.randn(b, c, *spatial, generator=g)
    weight, bias = 1.0 + 0.5 * torch.randn(c, generator=g), 0.5 * torch.randn(c, generator=g)
    scale, shift = (0.5 * torch.randn(b, c, generator=g), torch.randn(b, c, generator=g)) if scale_shift \
        else (None, None)
    dy = torch.randn(x.shape, generator=g)

    def run(fn, dtype, dev, **extra):
        def leaf(t):
            if t is None:
                return None
            t = t.to(dev, dtype)
            if channels_last and t.ndim > 2:
                t = t.movedim(1, -1).contiguous().movedim(-1, 1)
            return t.requires_grad_()

        leaves = [leaf(t) for t in (x, weight, bias, scale, shift)]
        y = fn(leaves[0], groups, leaves[1], leaves[2], EPS, leaves[3], leaves[4], "silu", **extra)
        grads = torch.autograd.grad(y, [t for t in leaves if t is not None], dy.to(dev, dtype))
        return [y.detach(), *grads]

    ref = run(reference, torch.float64, "cpu")
    out = run(triton_group_norm_silu, torch.float32, device, config=forced)
    label = (f"B={b},C={c},S={'x'.join(map(str, spatial))},G={groups}{',scale_shift' if scale_shift else ''}"
             f"{',channels_last' if channels_last else ''}{f',offset={offset:g}' if offset else ''}"
             f"{f',config={forced}' if forced else ''}")
    return check_row("group_norm_silu", label, "max|err|/max|ref| (y, dx, dw, db[, dscale, dshift])",
                     relative_errors(out, ref), CHECK_TOLERANCE)


def check() -> list[dict]:
    """Kernel vs float64 reference on small odd configurations (the interpreter on CPU)."""
    return [check_config(c) for c in CHECKS]


BENCHES.register("group_norm_silu", OpBench(
    op="group_norm_silu",
    cases=cases,
    providers={name: workload(name) for name in ("triton", "eager", "compile")},
    bytes_moved=bytes_moved,
    check=check,
    quick=lambda c: c == layer_case(*MAIN, torch.bfloat16),  # the ResBlock's second norm, 128 ch at 32x32
))
