"""Where the Triton kernels run: on CUDA, or on the CPU under the Triton interpreter."""

from __future__ import annotations

import os

import torch

from genbench.errors import ConfigError


def interpreter_enabled() -> bool:
    """TRITON_INTERPRET=1: kernels run in the (slow) interpreter, one program at a time."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def check_kernel_device(op: str, x: torch.Tensor) -> None:
    """Refuse to launch `op`'s kernel where it cannot run, naming the ways out."""
    if x.device.type != "cuda" and not interpreter_enabled():
        raise ConfigError(f"The Triton {op} kernel runs on CUDA; x is on {x.device}. Use backend='torch' "
                          "(or 'auto'), or set TRITON_INTERPRET=1 before importing genbench for the (slow) "
                          "interpreter.")
