"""Measurements: timing, peak memory, and the environment every record carries."""

from __future__ import annotations

import functools
import platform
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

import genbench


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def timed(device: torch.device, sink: dict[str, float], key: str) -> Iterator[None]:
    """Wall time of the block (device work included) into sink[key] in seconds."""
    synchronize(device)
    start = time.perf_counter()
    try:
        yield
    finally:
        synchronize(device)
        sink[key] = time.perf_counter() - start


def quantiles(values: list[float]) -> dict[str, float]:
    """Median with 20/80 quantiles, the summary every timing is reported with."""
    arr = np.asarray(values, dtype=np.float64)
    return {
        "median": float(np.median(arr)),
        "q20": float(np.quantile(arr, 0.2)),
        "q80": float(np.quantile(arr, 0.8)),
        "n": int(arr.size),
    }


class PeakMemory:
    """Peak memory of a block. CUDA: torch.cuda.max_memory_allocated, reset at the start. CPU:
    the rise of the process's resident set over the block -- the peak (VmHWM, reset at the
    start where Linux allows it, /proc/self/clear_refs) minus the resident set at the start
    (VmRSS) -- so a small model is not charged the interpreter, torch and the datasets the
    process already holds; the process's own peak is kept as `process_peak_bytes`."""

    def __init__(self, device: torch.device):
        self.device = device
        self.kind = ""
        self.baseline = 0

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.kind = "torch.cuda.max_memory_allocated"
            return
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.baseline = proc_status_bytes("VmRSS") or 0
            self.kind = "peak RSS above the RSS at run start (VmHWM - VmRSS; the peak reset at run start)"
        except OSError:
            self.kind = "peak RSS of the process (VmHWM/ru_maxrss; could not reset: includes earlier work)"

    def process_peak_bytes(self) -> int:
        """The process's peak resident set (CPU), or max_memory_allocated (CUDA)."""
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device))
        peak = proc_status_bytes("VmHWM")
        if peak is not None:
            return peak
        import resource  # not on every platform; Linux/macOS have it

        scale = 1 if sys.platform == "darwin" else 1024
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * scale

    def peak_bytes(self) -> int:
        """What the block added at its peak (see the class docstring)."""
        return max(0, self.process_peak_bytes() - self.baseline)

    def provenance(self) -> dict[str, int | str]:
        fields: dict[str, int | str] = {"measured": self.kind}
        if self.device.type != "cuda":
            fields.update(process_peak_bytes=self.process_peak_bytes(), baseline_bytes=self.baseline)
        return fields


def proc_status_bytes(field: str) -> int | None:
    """A memory field of /proc/self/status ("VmRSS", "VmHWM") in bytes; None off Linux."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return None


def median_rate(step_seconds: list[float], items_per_step: int) -> tuple[float, dict[str, float]]:
    """items/s from the median step time, with the step-time quantiles."""
    q = quantiles(step_seconds)
    return items_per_step / q["median"], q


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {cpu_model()} ({torch.get_num_threads()} threads)"


@functools.cache
def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


@functools.cache
def versions() -> dict[str, str | None]:
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    return {
        "genbench": genbench.__version__,
        "torch": torch.__version__,
        "triton": triton_version,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cuda": torch.version.cuda,
    }


DIRTY_SUFFIX = "-dirty"  # git_commit's mark of a checkout with uncommitted changes


@functools.cache
def git_commit() -> str | None:
    """Commit of the genbench checkout (DIRTY_SUFFIX appended if modified), None outside git."""
    root = Path(genbench.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=10)
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10)
        return commit.stdout.strip() + (DIRTY_SUFFIX if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None
