"""Benchmark and interpreter check of non-causal attention (FlashAttention-2 style kernel).

Providers, each on the same q, k, v (B, H, S, D) and upstream gradient:
  triton      genbench.kernels.attention.triton_attention (autotuned; the first call tunes)
  sdpa_flash  F.scaled_dot_product_attention restricted to its flash backend
              (sdpa_kernel(FLASH_ATTENTION)); where flash cannot run the case the
              measurement is recorded as failed, never replaced by another backend
  sdpa        F.scaled_dot_product_attention with torch's default dispatch; the backend
              it picked is recorded (`sdpa_backend`, from torch._fused_sdp_choice)
  eager       the reference, genbench.baselines.attention (S x S scores materialised)
  compile     torch.compile of the reference

Cases (B, H, S, D), bf16 unless said: the FlashAttention benchmark convention (16k
tokens per batch, hidden H·D = 2048) at D = 64 for S = 256, 1024, 4096, at S = 1024 for
D = 32 and 128, an odd S = 1000, and S = 1024 in fp16; plus the U-Net's attention layers
(models: 4 heads of 64 on 16x16 and 8x8 feature maps of a batch of 64: S = 256 and 64),
the 16x16 one also with q, k, v as views of one (B, S, 3, H, D) projection (variant
`packed`, the layout a fused qkv linear gives; every provider reads the same views) and in
fp32 as the fp32 models run it (the kernel's exact IEEE path; SDPA and eager under torch's
TF32 flags as they stand).

Useful FLOPs (docs/kernels.md, Measurement conventions): forward 4·B·H·S²·D (q·kᵀ and p·v), backward 2.5x
forward (10·B·H·S²·D), forward+backward 14·B·H·S²·D. Recomputation is not counted (the
kernel executes 14·B·H·S²·D in backward: see genbench.kernels.attention).

Bytes that must move (s = element size; N = B·H·S·D): forward reads q, k, v and writes o:
4·N·s; backward reads q, k, v, o, dO and writes dq, dk, dv: 8·N·s; forward+backward
their sum. The log-sum-exp statistics and any S x S intermediate are not counted.
"""

from __future__ import annotations

import torch

from genbench.baselines.attention import attention as reference
from genbench.baselines.attention import compiled_attention, sdpa_attention, sdpa_backend_attention, sdpa_backend_choice
from genbench.kernelbench.base import BENCHES, Case, OpBench, Workload, check_row, relative_errors, seeded_generator

PACKED = "packed"
# (B, H, S, D, dtype, variant)
SHAPES = (
    (64, 32, 256, 64, torch.bfloat16, ""),
    (16, 32, 1024, 64, torch.bfloat16, ""),
    (4, 32, 4096, 64, torch.bfloat16, ""),
    (16, 64, 1024, 32, torch.bfloat16, ""),
    (16, 16, 1024, 128, torch.bfloat16, ""),
    (16, 32, 1000, 64, torch.bfloat16, ""),
    (16, 32, 1024, 64, torch.float16, ""),
    (64, 4, 256, 64, torch.bfloat16, ""),
    (64, 4, 256, 64, torch.bfloat16, PACKED),
    (64, 4, 64, 64, torch.bfloat16, ""),
    (64, 4, 256, 64, torch.float32, ""),
)
# --quick: the U-Net's 16x16 attention layer and the FlashAttention convention at S = 1024
QUICK = {((64, 4, 256, 64), torch.bfloat16, ""), ((16, 32, 1024, 64), torch.bfloat16, "")}
CHECK_TOLERANCE = 1e-5  # max|err| / max|ref| against float64; fp32 IEEE dots, exp2 vs exp: ~1e-7 measured
# (B, H, S_q, S_k, D, scale, packed): odd sizes, masked head dims, S_q != S_k, one key
CHECKS = (
    (1, 2, 17, 33, 40, None, False),
    (2, 1, 50, 7, 16, 0.3, False),
    (1, 3, 20, 20, 24, None, True),
    (1, 1, 5, 1, 64, None, False),
)


def cases() -> list[Case]:
    return [Case({"B": b, "H": h, "S": s, "D": d}, dtype, variant) for b, h, s, d, dtype, variant in SHAPES]


def elements(case: Case) -> int:
    s = case.shape
    return s["B"] * s["H"] * s["S"] * s["D"]


def flops(case: Case, mode: str) -> int:
    """Useful FLOPs: forward 4·B·H·S²·D; backward 2.5x that; forward+backward 3.5x."""
    s = case.shape
    fwd = 4 * s["B"] * s["H"] * s["S"] ** 2 * s["D"]
    return {"fwd": fwd, "bwd": fwd * 5 // 2, "fwd_bwd": fwd * 7 // 2}[mode]


def bytes_moved(case: Case, mode: str) -> int:
    """q, k, v, o forward; q, k, v, o, dO, dq, dk, dv backward (formulas in the module docstring)."""
    n, size = elements(case), case.dtype.itemsize
    return {"fwd": 4 * n * size, "bwd": 8 * n * size, "fwd_bwd": 12 * n * size}[mode]


# ----------------------------------------------------------------------------- workloads


def make_qkv(case: Case, device, requires_grad: bool = True, seed: int = 0):
    """q, k, v (B, H, S, D) ~ N(0, 1): contiguous, or (variant `packed`) views of one
    (B, S, 3, H, D) tensor (its gradient is what autograd fills)."""
    b, h, s, d = (case.shape[n] for n in ("B", "H", "S", "D"))
    g = seeded_generator(device, seed)
    if case.variant == PACKED:
        qkv = torch.randn(b, s, 3, h, d, device=device, dtype=case.dtype, generator=g).requires_grad_(requires_grad)
        return (*(qkv[:, :, i].transpose(1, 2) for i in range(3)), [qkv])
    leaves = [torch.randn(b, h, s, d, device=device, dtype=case.dtype, generator=g).requires_grad_(requires_grad)
              for _ in range(3)]
    return (*leaves, leaves)


def triton_impl(q, k, v):
    from genbench.kernels.attention import triton_attention

    return triton_attention(q, k, v)


def compile_impl(q, k, v):
    return compiled_attention()(q, k, v)


IMPLS = {"triton": triton_impl, "sdpa_flash": lambda q, k, v: sdpa_backend_attention(q, k, v, backend="flash"),
         "sdpa": sdpa_attention, "eager": reference, "compile": compile_impl}


def provenance(provider: str, q, k, v) -> dict:
    if provider == "sdpa":
        return {"sdpa_backend": sdpa_backend_choice(q, k, v)}
    if provider == "sdpa_flash":
        return {"sdpa_backend": "flash (forced)"}
    if provider == "triton":
        return {"kernel": "triton (online softmax; bwd: preprocess + dK/dV pass + dQ pass)"}
    return {"kernel": {"eager": "eager matmul + softmax", "compile": "torch.compile of eager"}[provider]}


def workload(provider: str, device: str = "cuda"):
    """fwd / bwd / fwd_bwd of o = attention(q, k, v), gradients for q, k, v.
    (`device` other than cuda: for tests of the workload logic at tiny sizes.)"""
    impl = IMPLS[provider]

    def build(case: Case, device: str = device) -> Workload:
        if provider == "compile":
            torch._dynamo.reset()  # static shapes per case; no recompile limit across cases
        q, k, v, leaves = make_qkv(case, device)
        o = impl(q, k, v)  # warm-up (autotune, compile) and the graph `backward` replays
        g = seeded_generator(device, 1)  # the same dO for every provider
        do = torch.randn(o.shape, device=device, dtype=o.dtype, generator=g)
        torch.autograd.backward(o, do, retain_graph=True)

        def forward_backward():
            torch.autograd.backward(impl(q, k, v), do)

        return Workload(forward=lambda: impl(q, k, v),
                        backward=lambda: torch.autograd.backward(o, do, retain_graph=True),
                        forward_backward=forward_backward, grad_to_none=leaves,
                        provenance={**provenance(provider, q, k, v), "layout": case.variant or "contiguous"})

    return build


# ----------------------------------------------------------------------------- interpreter check


def check_config(config: tuple) -> dict:
    """The kernel (fp32, IEEE dots) against the reference in float64: o, dq, dk, dv.
    Errors relative to each tensor's max, or to 1 (the inputs' scale) where that is larger:
    with S_k = 1, dq and dk are exactly 0 and the kernel's are rounding noise (~1e-7)."""
    from genbench.kernels.attention import triton_attention

    b, h, s_q, s_k, d, scale, packed = config
    device = "cuda" if torch.cuda.is_available() else "cpu"
    g = torch.Generator().manual_seed(b * 1000 + s_q * 10 + s_k)
    if packed:  # one (B, S, 3, H, D) tensor, q, k, v its strided views
        base = torch.randn(b, s_q, 3, h, d, generator=g)
        q, k, v = (base[:, :, i].transpose(1, 2) for i in range(3))
    else:
        q, k, v = (torch.randn(b, h, n, d, generator=g) for n in (s_q, s_k, s_k))
    do = torch.randn(b, h, s_q, d, generator=g)

    def run(fn, dtype, dev):
        if packed:
            leaf = base.to(device=dev, dtype=dtype).requires_grad_()
            ts = [leaf[:, :, i].transpose(1, 2) for i in range(3)]
            wrt = [leaf]
        else:
            ts = [t.to(device=dev, dtype=dtype).requires_grad_() for t in (q, k, v)]
            wrt = ts
        o = fn(*ts, scale)
        grads = torch.autograd.grad(o, wrt, do.to(device=dev, dtype=dtype))
        return [o.detach(), *(grads[0].unbind(dim=2) if packed else grads)]  # packed: dq, dk, dv slices

    ref = run(reference, torch.float64, "cpu")
    out = run(triton_attention, torch.float32, device)
    label = f"B={b},H={h},S_q={s_q},S_k={s_k},D={d}{f',scale={scale}' if scale else ''}{',packed' if packed else ''}"
    return check_row("attention", label, "max|err|/max|ref| (o, dq, dk, dv)", relative_errors(out, ref, floor=1.0),
                     CHECK_TOLERANCE)


def check() -> list[dict]:
    """Kernel vs reference on small odd configurations (the interpreter on CPU)."""
    return [check_config(c) for c in CHECKS]


BENCHES.register("attention", OpBench(
    op="attention",
    cases=cases,
    providers={name: workload(name) for name in IMPLS},
    bytes_moved=bytes_moved,
    check=check,
    baseline_providers=("sdpa_flash", "sdpa", "eager", "compile"),
    flops=flops,
    quick=lambda c: (tuple(c.shape.values()), c.dtype, c.variant) in QUICK,
))
