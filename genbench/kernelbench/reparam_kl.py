"""Benchmark and interpreter check of the fused reparameterisation + KL op.

Shapes from the models: batch B in {64, 1024, 65536} x latent D in {16, 64, 256, 1024},
fp32 and bf16. Every provider gets the same inputs including eps (no provider pays for
random numbers). Bytes (s = element size): forward reads mu, logvar, eps and writes z
(4·B·D·s) plus kl (4·B); backward reads mu, logvar, eps, dz (4·B·D·s) and dkl (4·B) and
writes dmu, dlogvar (2·B·D·s); forward+backward is their sum.
"""

from __future__ import annotations

import torch

from genbench.baselines.reparam_kl import compiled_reparameterize_kl
from genbench.baselines.reparam_kl import reparameterize_kl as reference
from genbench.kernelbench.base import BENCHES, Case, OpBench, Workload, check_row, relative_errors

BATCHES = (64, 1024, 65536)
LATENTS = (16, 64, 256, 1024)
DTYPES = (torch.float32, torch.bfloat16)
CHECK_TOLERANCE = 1e-5  # fp32: a few ulps of the tensor's scale
# --quick: a VAE's latent batch (microseconds: launch-bound) and a bandwidth-bound size
QUICK = {(1024, 64, torch.float32), (65536, 256, torch.bfloat16)}


def cases() -> list[Case]:
    return [Case({"B": b, "D": d}, dt) for dt in DTYPES for b in BATCHES for d in LATENTS]


def bytes_moved(case: Case, mode: str) -> int:
    n, b, s = case.shape["B"] * case.shape["D"], case.shape["B"], case.dtype.itemsize
    fwd = 4 * n * s + 4 * b
    bwd = 6 * n * s + 4 * b
    return {"fwd": fwd, "bwd": bwd, "fwd_bwd": fwd + bwd}[mode]


def workload(impl) -> callable:
    def build(case: Case, device: str = "cuda") -> Workload:
        B, D = case.shape["B"], case.shape["D"]
        make = lambda: torch.randn(B, D, device=device, dtype=case.dtype)  # noqa: E731
        mu, logvar = make().requires_grad_(), make().requires_grad_()
        eps, dz = make(), make()
        dkl = torch.randn(B, device=device)
        z, kl = impl(mu, logvar, eps)

        def forward_backward():
            z2, kl2 = impl(mu, logvar, eps)
            torch.autograd.backward((z2, kl2), (dz, dkl))

        return Workload(
            forward=lambda: impl(mu, logvar, eps),
            backward=lambda: torch.autograd.backward((z, kl), (dz, dkl), retain_graph=True),
            forward_backward=forward_backward,
            grad_to_none=[mu, logvar],
        )

    return build


def triton_impl(mu, logvar, eps):
    from genbench.kernels.reparam_kl import triton_reparameterize_kl

    return triton_reparameterize_kl(mu, logvar, eps)


def check() -> list[dict]:
    """Kernel vs reference in fp32 on small odd shapes (runs in the interpreter on CPU)."""
    from genbench.kernels.reparam_kl import triton_reparameterize_kl

    rows = []
    device = "cuda" if torch.cuda.is_available() else "cpu"
    for B, D, free_bits in ((1, 1, 0.0), (5, 33, 0.0), (17, 130, 0.5), (3, 1025, 0.1)):
        g = torch.Generator().manual_seed(B * 1000 + D)
        mu, logvar, eps, dz = (torch.randn(B, D, generator=g).to(device) for _ in range(4))
        dkl = torch.randn(B, generator=g).to(device)
        out = {}
        for name, fn in (("triton", triton_reparameterize_kl), ("torch", reference)):
            m, lv = mu.clone().requires_grad_(), logvar.clone().requires_grad_()
            z, kl = fn(m, lv, eps, beta=1.5, free_bits=free_bits)
            grads = torch.autograd.grad((z * dz).sum() + (kl * dkl).sum(), (m, lv))
            out[name] = (z.detach(), kl.detach(), *grads)
        # Error relative to each tensor's scale: robust where entries are near zero.
        rows.append(check_row("reparam_kl", f"B={B},D={D},free_bits={free_bits}",
                              "max|err|/max|ref| (z, kl, dmu, dlogvar)",
                              relative_errors(out["triton"], out["torch"]), CHECK_TOLERANCE))
    return rows


BENCHES.register("reparam_kl", OpBench(
    op="reparam_kl",
    cases=cases,
    providers={"triton": workload(triton_impl), "eager": workload(reference),
               "compile": workload(lambda mu, lv, eps: compiled_reparameterize_kl()(mu, lv, eps))},
    bytes_moved=bytes_moved,
    check=check,
    quick=lambda c: (c.shape["B"], c.shape["D"], c.dtype) in QUICK,
))
