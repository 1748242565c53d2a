"""Where the Triton kernels run: on CUDA, on the CPU under the Triton interpreter, or -- for
planning only -- on the meta device for a named GPU target (`genbench kernels --compile`).

Planning: inside `planning(target)`, the launchers accept meta tensors and compute their
launch plans (block widths, splits, autotune candidates) for `target`'s SM count and
shared-memory limit, exactly as they would on that GPU; whatever reaches a kernel launch
is recorded by the caller instead of run (genbench.kernelbench.compile). Nothing runs.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
from dataclasses import dataclass

import torch

from genbench.errors import ConfigError


@dataclass(frozen=True)
class GpuTarget:
    """What a launch plan needs to know about a GPU: its compute capability, SM count and
    the largest shared memory one block may opt into (bytes)."""

    name: str  # "sm_90"
    capability: int  # 90
    multiprocessors: int  # of the representative GPU below
    shared_memory_per_block: int  # opt-in maximum per block, bytes
    gpu: str  # the GPU the SM count is taken from


# CUDA C++ Programming Guide, "Technical Specifications per Compute Capability": maximum
# shared memory per SM / per block (opt-in): 8.0 164 / 163 KiB, 8.6 and 8.9 100 / 99 KiB,
# 9.0 228 / 227 KiB. SM counts from NVIDIA's data sheets.
TARGETS = {t.name: t for t in (
    GpuTarget("sm_80", 80, 108, 163 * 1024, "A100"),
    GpuTarget("sm_86", 86, 84, 99 * 1024, "RTX 3090 Ti"),
    GpuTarget("sm_89", 89, 128, 99 * 1024, "RTX 4090"),
    GpuTarget("sm_90", 90, 132, 227 * 1024, "H100 SXM5"),
)}

_planned: contextvars.ContextVar[GpuTarget | None] = contextvars.ContextVar("planned_gpu_target", default=None)


def interpreter_enabled() -> bool:
    """TRITON_INTERPRET=1: kernels run in the (slow) interpreter, one program at a time."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@contextlib.contextmanager
def planning(target: GpuTarget):
    """Launch plans on meta tensors are computed for `target` inside this block."""
    token = _planned.set(target)
    try:
        yield target
    finally:
        _planned.reset(token)


def planned_target(device: torch.device) -> GpuTarget | None:
    """The target a meta tensor is planned for (inside `planning`), else None."""
    return _planned.get() if torch.device(device).type == "meta" else None


def sm_count(device: torch.device) -> int | None:
    """SMs of the CUDA device, or of the planned target for a meta tensor; None elsewhere
    (the interpreter: each op says what it assumes there)."""
    device = torch.device(device)
    if device.type == "cuda":
        return _cuda_properties(device.index if device.index is not None else torch.cuda.current_device())[0]
    target = planned_target(device)
    return target.multiprocessors if target else None


def capability(device: torch.device) -> int:
    """Compute capability as an integer (90 for sm_90) of the CUDA device or the planned target;
    the H100's under the interpreter (which has none)."""
    device = torch.device(device)
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return 10 * major + minor
    target = planned_target(device)
    return (target or TARGETS["sm_90"]).capability


def shared_memory_limit(device: torch.device) -> int:
    """Shared memory one block may use on the device (bytes): the CUDA device's opt-in
    maximum, the planned target's, or the H100's under the interpreter (which has none)."""
    device = torch.device(device)
    if device.type == "cuda":
        return _cuda_properties(device.index if device.index is not None else torch.cuda.current_device())[1]
    target = planned_target(device)
    return (target or TARGETS["sm_90"]).shared_memory_per_block


def cuda_target(index: int) -> GpuTarget:
    """The GpuTarget of CUDA device `index` (what launch plans on it assume)."""
    major, minor = torch.cuda.get_device_capability(index)
    sms, shared = _cuda_properties(index)
    return GpuTarget(f"sm_{major}{minor}", 10 * major + minor, sms, shared, torch.cuda.get_device_name(index))


@functools.cache
def _cuda_properties(index: int) -> tuple[int, int]:
    """(SM count, opt-in shared memory per block in bytes) of CUDA device `index`."""
    props = torch.cuda.get_device_properties(index)
    return props.multi_processor_count, props.shared_memory_per_block_optin


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The dtype autocast casts to on the device's type, None where autocast is off (or has no
    meaning: the meta device of planning)."""
    kind = torch.device(device).type
    if kind == "meta" or not torch.is_autocast_enabled(kind):
        return None
    return torch.get_autocast_dtype(kind)


def check_kernel_device(op: str, x: torch.Tensor) -> None:
    """Refuse to launch `op`'s kernel where it cannot run, naming the ways out."""
    if x.device.type == "cuda" or interpreter_enabled() or planned_target(x.device) is not None:
        return
    raise ConfigError(f"The Triton {op} kernel runs on CUDA; x is on {x.device}. Use backend='torch' "
                      "(or 'auto'), or set TRITON_INTERPRET=1 before importing genbench for the (slow) "
                      "interpreter.")
