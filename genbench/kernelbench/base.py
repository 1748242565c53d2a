"""Kernel benchmark machinery: timing, bandwidth, peak memory, records.

Conventions (printed with every table):
- Times: triton.testing.do_bench (warm-up and repetitions in ms; L2 flushed between
  repetitions, i.e. cold cache): median with 20/80 quantiles. For kernels under 20 µs a
  CUDA-graph figure (do_bench_cudagraph, hot cache) is recorded beside it.
- GB/s from the bytes the op must move (inputs read + outputs written, counted
  analytically per op), and as a fraction of the device-to-device copy bandwidth
  measured in the same process.
- Peak memory: torch.cuda.max_memory_allocated during one forward+backward, above what
  was allocated before it.
"""

from __future__ import annotations

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
    """Callables timing one provider on one case; backward reuses one retained graph."""

    forward: Callable[[], Any]
    backward: Callable[[], Any]
    forward_backward: Callable[[], Any]
    grad_to_none: list[torch.Tensor] = field(default_factory=list)

    def by_mode(self, mode: str) -> Callable[[], Any]:
        return {"fwd": self.forward, "bwd": self.backward, "fwd_bwd": self.forward_backward}[mode]


@dataclass(frozen=True)
class OpBench:
    op: str
    cases: Callable[[], list[Case]]
    providers: dict[str, Callable[[Case], Workload]]  # provider name -> workload builder
    bytes_moved: Callable[[Case, str], int]  # case, mode -> bytes that must move
    check: Callable[[], list[dict[str, Any]]]  # interpreter correctness rows (CPU)
    baseline_providers: tuple[str, ...] = ("eager", "compile")  # ratios are ours / these


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


def peak_memory_bytes(workload: Workload, device: torch.device) -> int:
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    workload.forward_backward()
    torch.cuda.synchronize(device)
    return int(torch.cuda.max_memory_allocated(device) - before)


def bench_records(bench: OpBench, device: torch.device, attempt: str, progress=lambda s: None) -> list[dict]:
    """Time every case x provider x mode of one op; return result records."""
    copy_gbps = copy_bandwidth_gbps(device)
    env = environment_fields(device)
    records = []
    for case in bench.cases():
        for provider, build in bench.providers.items():
            progress(f"{bench.op} {case.label} {case.dtype_name} {provider}")
            workload = build(case)
            common = {**env, "run_id": json_hash([bench.op, case.label, case.dtype_name, provider]),
                      "attempt": attempt, "suite": "kernels", "model": bench.op, "objective": provider,
                      "dataset": f"{case.label},{case.dtype_name}", "seed": 0, "backend": provider,
                      "precision": case.dtype_name}
            for mode in MODES:
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
                records.append(make_record(common, f"{mode}/time", t["median"], "ms", None, prov))
                records.append(make_record(common, f"{mode}/bandwidth", gbps, "GB/s", None, prov))
            try:
                peak, prov = peak_memory_bytes(workload, device), {"measured": "max_memory_allocated above baseline"}
            except Exception as exc:
                peak, prov = None, {"error": f"{type(exc).__name__}: {exc}"[:300]}
            records.append(make_record(common, "fwd_bwd/peak_memory", peak, "bytes", None, prov))
            del workload
    return records
