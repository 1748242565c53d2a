"""Kernel benchmark machinery: timing, bandwidth, peak memory, records.

Conventions (printed with every table):
- Times: triton.testing.do_bench (warm-up and repetitions in ms; L2 flushed between
  repetitions, i.e. cold cache): median with 20/80 quantiles. For kernels under 20 µs a
  CUDA-graph figure (do_bench_cudagraph, hot cache) is recorded beside it.
- GB/s from the bytes the op must move (inputs read + outputs written, counted
  analytically per op), and as a fraction of the device-to-device copy bandwidth
  measured in the same process.
- TFLOP/s (ops that declare `flops`): useful FLOPs only, counted analytically per op,
  and as a fraction of the matmul peak measured in the same process: torch.matmul of two
  8192 x 8192 matrices in the case's dtype (fp16/bf16: tensor cores; fp32: under torch's
  TF32 setting, off by default, so the fp32 SIMT peak), cached per dtype.
- Peak memory: torch.cuda.max_memory_allocated during one run of the op's last mode
  (forward+backward by default; forward for forward-only ops), above what was allocated
  before it.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from genbench.harness.recorder import environment_fields, make_record
from genbench.registry import Registry
from genbench.utils.hashing import json_hash

MODES = ("fwd", "bwd", "fwd_bwd")
QUANTILES = [0.5, 0.2, 0.8]
CUDAGRAPH_BELOW_MS = 0.020  # also time kernels faster than this with CUDA graphs
COPY_BYTES = 1 << 29  # 512 MiB source buffer for the copy-bandwidth peak
MATMUL_PEAK_SIZE = 8192  # square matmul timed for the compute peak


@dataclass(frozen=True)
class Case:
    shape: dict[str, int]  # named sizes, e.g. {"B": 64, "D": 16}
    dtype: torch.dtype

    @property
    def label(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.shape.items())

    @property
    def dtype_name(self) -> str:
        return {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[self.dtype]


@dataclass
class Workload:
    """Callables timing one provider on one case; backward reuses one retained graph.
    Forward-only ops (OpBench.modes == ("fwd",)) leave backward and forward_backward None."""

    forward: Callable[[], Any]
    backward: Callable[[], Any] | None = None
    forward_backward: Callable[[], Any] | None = None
    grad_to_none: list[torch.Tensor] = field(default_factory=list)

    def by_mode(self, mode: str) -> Callable[[], Any]:
        fn = {"fwd": self.forward, "bwd": self.backward, "fwd_bwd": self.forward_backward}[mode]
        if fn is None:
            raise ValueError(f"this workload has no {mode!r} callable; declare the op's modes in its OpBench")
        return fn


@dataclass(frozen=True)
class OpBench:
    op: str
    cases: Callable[[], list[Case]]
    providers: dict[str, Callable[[Case], Workload]]  # provider name -> workload builder
    bytes_moved: Callable[[Case, str], int]  # case, mode -> bytes that must move
    check: Callable[[], list[dict[str, Any]]]  # interpreter correctness rows (CPU)
    baseline_providers: tuple[str, ...] = ("eager", "compile")  # ratios are ours / these
    modes: tuple[str, ...] = MODES  # what the op has: ("fwd",) for a forward-only op
    flops: Callable[[Case, str], int] | None = None  # case, mode -> useful FLOPs (TFLOP/s columns)

    @property
    def peak_memory_mode(self) -> str:
        """The mode whose peak memory is recorded: forward+backward where the op has it."""
        return "fwd_bwd" if "fwd_bwd" in self.modes else self.modes[-1]


BENCHES: Registry[OpBench] = Registry("kernel benchmarks")


def gpu_slug(device: torch.device) -> str:
    return re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(device).lower()).strip("-")


def time_ms(fn: Callable[[], Any], grad_to_none: list[torch.Tensor]) -> dict[str, float]:
    import triton.testing

    median, q20, q80 = triton.testing.do_bench(fn, warmup=25, rep=100, grad_to_none=grad_to_none,
                                               quantiles=QUANTILES)
    return {"median": median, "q20": q20, "q80": q80}


def cudagraph_ms(fn: Callable[[], Any]) -> tuple[float | None, str | None]:
    """Median time under CUDA graphs (hot cache), or (None, why it could not be taken)."""
    import triton.testing

    try:
        return float(triton.testing.do_bench_cudagraph(fn, rep=20, return_mode="median")), None
    except Exception as exc:  # capture fails for some providers; say so in the record
        return None, f"{type(exc).__name__}: {exc}"[:200]


def copy_bandwidth_gbps(device: torch.device) -> float:
    src = torch.empty(COPY_BYTES // 4, dtype=torch.float32, device=device).normal_()
    dst = torch.empty_like(src)
    ms = time_ms(lambda: dst.copy_(src), [])["median"]
    return 2 * COPY_BYTES / (ms * 1e-3) / 1e9


@functools.cache
def matmul_peak_tflops(device: torch.device, dtype: torch.dtype) -> float:
    """TFLOP/s of torch.matmul on two MATMUL_PEAK_SIZE^2 matrices in `dtype` (do_bench median)."""
    n = MATMUL_PEAK_SIZE
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    ms = time_ms(lambda: torch.matmul(a, b), [])["median"]
    return 2 * n**3 / (ms * 1e-3) / 1e12


def peak_memory_bytes(workload: Workload, device: torch.device, mode: str = "fwd_bwd") -> int:
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    workload.by_mode(mode)()
    torch.cuda.synchronize(device)
    return int(torch.cuda.max_memory_allocated(device) - before)


def compute_provenance(prov: dict, flops: int, ms: float, peak: float) -> float:
    """Add FLOPs, TFLOP/s and the fraction of the same-dtype matmul peak to prov; return TFLOP/s."""
    tflops = flops / (ms * 1e-3) / 1e12
    prov.update({"flops": flops, "tflops": tflops, "matmul_peak_tflops": peak,
                 "fraction_of_matmul_peak": tflops / peak,
                 "matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32)})
    return tflops


def bench_records(bench: OpBench, device: torch.device, attempt: str, progress=lambda s: None) -> list[dict]:
    """Time every case x provider x mode of one op; return result records."""
    copy_gbps = copy_bandwidth_gbps(device)
    env = environment_fields(device)
    cases = bench.cases()
    # Peaks first, while the device is empty (cached per dtype across ops).
    peaks = {c.dtype: matmul_peak_tflops(device, c.dtype) for c in cases} if bench.flops else {}
    records = []
    for case in cases:
        for provider, build in bench.providers.items():
            progress(f"{bench.op} {case.label} {case.dtype_name} {provider}")
            workload = build(case)
            common = {**env, "run_id": json_hash([bench.op, case.label, case.dtype_name, provider]),
                      "attempt": attempt, "suite": "kernels", "model": bench.op, "objective": provider,
                      "dataset": f"{case.label},{case.dtype_name}", "seed": 0, "backend": provider,
                      "precision": case.dtype_name}
            for mode in bench.modes:
                try:
                    t = time_ms(workload.by_mode(mode), workload.grad_to_none)
                except Exception as exc:  # recorded as a failed measurement, never dropped
                    records.append(make_record(common, f"{mode}/time", None, "ms", None,
                                               {"error": f"{type(exc).__name__}: {exc}"[:300]}))
                    continue
                moved = bench.bytes_moved(case, mode)
                gbps = moved / (t["median"] * 1e-3) / 1e9
                prov = {"q20_ms": t["q20"], "q80_ms": t["q80"], "bytes": moved,
                        "copy_bandwidth_gbps": copy_gbps, "fraction_of_copy_bw": gbps / copy_gbps,
                        "method": "triton.testing.do_bench, cold L2, median"}
                if t["median"] < CUDAGRAPH_BELOW_MS:
                    prov["cudagraph_ms"], prov["cudagraph_error"] = cudagraph_ms(workload.by_mode(mode))
                tflops = None
                if bench.flops is not None:
                    tflops = compute_provenance(prov, bench.flops(case, mode), t["median"], peaks[case.dtype])
                records.append(make_record(common, f"{mode}/time", t["median"], "ms", None, prov))
                records.append(make_record(common, f"{mode}/bandwidth", gbps, "GB/s", None, prov))
                if tflops is not None:
                    records.append(make_record(common, f"{mode}/throughput", tflops, "TFLOP/s", None, prov))
            peak_mode = bench.peak_memory_mode
            try:
                peak = peak_memory_bytes(workload, device, peak_mode)
                prov = {"measured": "max_memory_allocated above baseline"}
            except Exception as exc:
                peak, prov = None, {"error": f"{type(exc).__name__}: {exc}"[:300]}
            records.append(make_record(common, f"{peak_mode}/peak_memory", peak, "bytes", None, prov))
            del workload
            torch.cuda.empty_cache()  # a provider that ran out of memory leaves the next one room
    return records
