"""Backend dispatch between each op's Triton kernel and its PyTorch reference.

Every op is registered in KERNELS (genbench.registry) as a KernelOp: its public function,
its reference (genbench.baselines) and, where one exists, its Triton implementation.
Backends:
- "torch":  the reference, on any device;
- "triton": the Triton kernel; on CUDA, or on the CPU under TRITON_INTERPRET=1
            (set before triton is imported; the interpreter is slow and for tests);
- "auto":   "triton" on CUDA when the op has a kernel, else "torch".
Backends are resolved explicitly per call site (`resolve_backend`) and the harness
records the resolved name; nothing switches at import time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch

from genbench.errors import ConfigError
from genbench.kernels.device import interpreter_enabled
from genbench.registry import KERNELS

Backend = Literal["auto", "triton", "torch"]
BACKENDS: tuple[str, ...] = ("auto", "triton", "torch")


@dataclass(frozen=True)
class OpExample:
    """One small call of an op, the same on every backend, for the shared property tests
    (tests/kernels/test_op_properties.py): every argument by keyword, and which of them are
    differentiable inputs."""

    label: str
    kwargs: dict  # the op's arguments by name (tensors and settings); `backend` is added by the caller
    grad: tuple[str, ...] = ()  # names of the differentiable tensor arguments


@dataclass(frozen=True)
class KernelOp:
    name: str
    function: Callable  # the public op: (..., backend=) -> outputs
    reference: Callable  # genbench.baselines.<op>: same signature as the public function
    triton: Callable | None  # the Triton-backed implementation, None until it lands
    summary: str
    # (dtype, device, generator) -> small calls covering the op's options: registering an op
    # puts it under the property tests (gradient layouts, gradcheck, dtypes) with no other edit.
    examples: Callable[[torch.dtype, torch.device, torch.Generator], list[OpExample]]


def example_randn(generator: torch.Generator, *shape: int, dtype: torch.dtype, device) -> torch.Tensor:
    """N(0, 1) drawn on the CPU from `generator` (so every device sees the same values), then moved."""
    return torch.randn(*shape, generator=generator).to(device=device, dtype=dtype)


def resolve_backend(op: str, backend: str, device: torch.device | str) -> str:
    """Turn a requested backend into the one that will run ("triton" or "torch")."""
    if backend not in BACKENDS:
        raise ConfigError(f"Unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}.")
    kernel_op: KernelOp = KERNELS.get(op)
    on_cuda = torch.device(device).type == "cuda"
    if backend == "torch":
        return "torch"
    if backend == "auto":
        return "triton" if on_cuda and kernel_op.triton is not None else "torch"
    if kernel_op.triton is None:
        raise ConfigError(
            f"Op {op!r} has no Triton kernel yet; run it with backend='torch' or 'auto'."
        )
    if not on_cuda and not interpreter_enabled():
        raise ConfigError(
            f"backend='triton' for {op!r} on {torch.device(device).type} needs CUDA, or "
            "TRITON_INTERPRET=1 set in the environment before genbench is imported "
            "(the Triton interpreter: slow, for tests). Use backend='torch' or 'auto' on CPU."
        )
    return "triton"


def dispatch(op: str, backend: str, device: torch.device | str) -> Callable:
    """The implementation of `op` that `backend` resolves to on `device`."""
    kernel_op: KernelOp = KERNELS.get(op)
    resolved = resolve_backend(op, backend, device)
    return kernel_op.triton if resolved == "triton" else kernel_op.reference
