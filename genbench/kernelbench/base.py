"""Kernel benchmark machinery: timing, bandwidth, peak memory, records.

Conventions (printed with every table):
- Times: triton.testing.do_bench (warm-up and repetitions in ms; L2 flushed between
  repetitions, i.e. cold cache): median with 20/80 quantiles. For kernels under 20 µs a
  CUDA-graph figure (do_bench_cudagraph, hot cache) is recorded beside it; backward modes
  capture the forward and backward together with the gradients reset per replay
  (grad_to_none), and `bwd` is that graph's time minus the forward's (`graph_timing`).
- GB/s (ops that declare `bytes_moved`) from the bytes the op must move (inputs read +
  outputs written, counted analytically per op), and as a fraction of the
  device-to-device copy bandwidth measured in the same process.
- examples/s (benches that declare `examples`, e.g. a whole training step): examples
  processed per call over the median time.
- TFLOP/s (ops that declare `flops`): useful FLOPs only, counted analytically per op,
  and as a fraction of the matmul peak measured in the same process: torch.matmul of two
  8192 x 8192 matrices in the case's dtype (fp16/bf16: tensor cores). fp32: under the
  case's TF32 setting where the case declares one (`Case.allow_tf32`, e.g. an op whose
  kernel and cuDNN follow torch.backends.cudnn.allow_tf32: the TF32 tensor-core peak),
  else under torch's matmul TF32 flag as it stands (off by default: the fp32 SIMT peak).
  Cached per (dtype, TF32 flag); the records say which flag the peak was measured under.
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
from genbench import registry
from genbench.registry import Registry
from genbench.utils.hashing import json_hash
from genbench.values import declare_values

MODES = ("fwd", "bwd", "fwd_bwd")
QUANTILES = [0.5, 0.2, 0.8]
CUDAGRAPH_BELOW_MS = 0.020  # also time kernels faster than this with CUDA graphs
COPY_BYTES = 1 << 29  # 512 MiB source buffer for the copy-bandwidth peak
MATMUL_PEAK_SIZE = 8192  # square matmul timed for the compute peak


@dataclass(frozen=True)
class Case:
    shape: dict[str, int]  # named sizes, e.g. {"B": 64, "D": 16}
    dtype: torch.dtype
    variant: str = ""  # what the sizes do not say, e.g. "channels_last"; shown in the label
    # fp32 cases whose providers may use TF32 tensor cores: whether they do (the %peak
    # matmul is then measured under the same setting). None: not applicable; the matmul
    # peak runs under torch's matmul TF32 flag as it stands.
    allow_tf32: bool | None = None

    @property
    def label(self) -> str:
        parts = [f"{k}={v}" for k, v in self.shape.items()]
        if self.variant:
            parts.append(self.variant)
        if self.allow_tf32 is not None:
            parts.append(f"tf32={'on' if self.allow_tf32 else 'off'}")
        return ",".join(parts)

    @property
    def dtype_name(self) -> str:
        return {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[self.dtype]


@dataclass
class Workload:
    """Callables timing one provider on one case, one per mode: "fwd" -> forward, "bwd" ->
    backward (reusing one retained graph), "fwd_bwd" -> forward_backward. A bench leaves
    None what it does not have: forward-only ops (OpBench.modes == ("fwd",)) backward and
    forward_backward; a whole training step (modes ("fwd_bwd",)) forward and backward.
    `provenance` is added to every record of this workload (e.g. the kernel backends a
    model resolved, a flag the provider ran under)."""

    forward: Callable[[], Any] | None = None
    backward: Callable[[], Any] | None = None
    forward_backward: Callable[[], Any] | None = None
    grad_to_none: list[torch.Tensor] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)

    def by_mode(self, mode: str) -> Callable[[], Any]:
        fn = {"fwd": self.forward, "bwd": self.backward, "fwd_bwd": self.forward_backward}[mode]
        if fn is None:
            raise ValueError(f"this workload has no {mode!r} callable; declare the op's modes in its OpBench")
        return fn


@dataclass(frozen=True)
class OpBench:
    op: str
    cases: Callable[[], list[Case]]
    # provider name -> workload builder ("triton" first): build(case, device="cuda"), or None where
    # the provider does not apply to the case (nothing is recorded). On the meta device (inside
    # genbench.kernels.device.planning) the triton workloads only plan their launches.
    providers: dict[str, Callable[..., Workload]]
    # case, mode -> bytes that must move (GB/s and %copy columns); None where bandwidth
    # means nothing (a whole training step)
    bytes_moved: Callable[[Case, str], int] | None
    check: Callable[[], list[dict[str, Any]]]  # interpreter correctness rows (CPU)
    # Unused by the table, which shows `vs <provider>` for every other provider of a case.
    baseline_providers: tuple[str, ...] = ("eager", "compile")
    modes: tuple[str, ...] = MODES  # what the op has: ("fwd",) for a forward-only op
    flops: Callable[[Case, str], int] | None = None  # case, mode -> useful FLOPs (TFLOP/s columns)
    examples: Callable[[Case], int] | None = None  # case -> examples per call (examples/s column)
    # Extra keyword arguments of triton.testing.do_bench (e.g. a longer `rep` for calls of
    # tens of ms, so the median has enough samples); None: time_ms's defaults.
    do_bench_options: dict[str, Any] | None = None
    # The representative cases `--quick` times (one or two per op: the models' layers); None: the first case.
    quick: Callable[[Case], bool] | None = None
    # Whether the triton workload plans on meta tensors (`--compile`, precompilation); False for
    # whole training steps, whose kernels are the ops' own.
    compiles: bool = True
    # The registered KernelOp (genbench.registry.KERNELS) this bench times; its example calls (the
    # tests' configurations) are compiled with the bench's cases. None: the bench's own name.
    kernel_op: str | None = None

    def is_quick(self, case: Case) -> bool:
        return self.quick(case) if self.quick is not None else case == self.cases()[0]

    @property
    def peak_memory_mode(self) -> str:
        """The mode whose peak memory is recorded: forward+backward where the op has it."""
        return "fwd_bwd" if "fwd_bwd" in self.modes else self.modes[-1]


BENCHES: Registry[OpBench] = registry.BENCHES  # `genbench list benches`

# What bench_records writes per case x provider x mode (genbench/values.py); op, provider and
# case are the records' model, objective and dataset.
declare_values("kernel-bench", {
    **{f"{mode}/time": ("lower", "ms", f"median {mode} time (do_bench, cold L2); q20_ms/q80_ms beside it")
       for mode in MODES},
    **{f"{mode}/bandwidth": ("higher", "GB/s", f"bytes the op must move / median {mode} time") for mode in MODES},
    **{f"{mode}/examples_per_second": ("higher", "examples/s", f"examples / median {mode} time") for mode in MODES},
    **{f"{mode}/throughput": ("higher", "TFLOP/s", f"FLOPs / median {mode} time") for mode in MODES},
    **{f"{mode}/peak_memory": ("lower", "bytes", "max_memory_allocated above the baseline") for mode in MODES},
}, conditions=("method", "measured", "bytes", "flops", "examples", "case_allow_tf32"),
   outcomes=("q20_ms", "q80_ms", "cudagraph_ms", "cudagraph_error", "cudagraph_method", "copy_bandwidth_gbps",
             "fraction_of_copy_bw", "tflops", "matmul_peak_tflops", "fraction_of_matmul_peak", "matmul_allow_tf32",
             "error", "failed_in", "kernel_backends"))


def seeded_generator(device, seed: int):
    """A generator on `device` seeded with `seed`; None on the meta device (nothing is drawn there)."""
    if torch.device(device).type == "meta":
        return None
    return torch.Generator(device=device).manual_seed(seed)


def relative_errors(out: list[torch.Tensor], ref: list[torch.Tensor], floor: float = 1e-12) -> list[float]:
    """max|out - ref| / max(max|ref|, floor) per output, in float64 on the CPU: the figure
    every bench's --check reports against its reference."""
    return [float((a.detach().cpu().double() - r.detach().cpu().double()).abs().max()
                  / r.detach().cpu().double().abs().max().clamp_min(floor)) for a, r in zip(out, ref)]


def check_row(op: str, case: str, what: str, errors: list[float], tolerance: float) -> dict:
    """One --check table row: the op, the case, the errors under their heading `what`, and ok."""
    return {"op": op, "case": case, what: ", ".join(f"{e:.1e}" for e in errors), "ok": max(errors) < tolerance}


def gpu_slug(device: torch.device) -> str:
    return re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(device).lower()).strip("-")


def time_ms(fn: Callable[[], Any], grad_to_none: list[torch.Tensor], warmup: float = 25,
            rep: float = 100) -> dict[str, float]:
    """do_bench median and 20/80 quantiles in ms (warmup and rep: do_bench's, in ms)."""
    import triton.testing

    median, q20, q80 = triton.testing.do_bench(fn, warmup=warmup, rep=rep, grad_to_none=grad_to_none,
                                               quantiles=QUANTILES)
    return {"median": median, "q20": q20, "q80": q80}


def cudagraph_ms(fn: Callable[[], Any], grad_to_none: list[torch.Tensor] | None = None
                 ) -> tuple[float | None, str | None]:
    """Median time under CUDA graphs (hot cache), or (None, why it could not be taken)."""
    import triton.testing

    try:
        return float(triton.testing.do_bench_cudagraph(fn, rep=20, grad_to_none=grad_to_none,
                                                       return_mode="median")), None
    except Exception as exc:  # capture fails for some providers; say so in the record
        return None, f"{type(exc).__name__}: {exc}"[:200]


GRAPH_METHODS = {
    "fwd": "do_bench_cudagraph of the forward",
    "fwd_bwd": "do_bench_cudagraph of forward+backward captured together, gradients set to None per replay",
    "bwd": "forward+backward graph minus forward graph (a backward replaying a retained graph cannot be "
           "captured on its own)",
}


def graph_timing(workload: Workload, mode: str, graphs: dict[str, tuple[float | None, str | None]]) -> dict:
    """The CUDA-graph figure of one mode, as provenance fields. Backward modes capture the
    forward and backward together (autograd's graph is built inside the capture, the
    gradients are reset to None per replay: grad_to_none), and `bwd` is that minus the
    forward's graph. `graphs` caches the captured figures of one workload across its modes."""
    def graph(kind: str) -> tuple[float | None, str | None]:
        if kind not in graphs:
            grads = workload.grad_to_none if kind == "fwd_bwd" else None
            graphs[kind] = cudagraph_ms(workload.by_mode(kind), grads)
        return graphs[kind]

    if mode == "bwd":
        (both, err_both), (fwd, err_fwd) = graph("fwd_bwd"), graph("fwd")
        ms, error = (both - fwd, None) if both is not None and fwd is not None else (None, err_both or err_fwd)
    else:
        ms, error = graph(mode)
    return {"cudagraph_ms": ms, "cudagraph_error": error, "cudagraph_method": GRAPH_METHODS[mode]}


def copy_bandwidth_gbps(device: torch.device) -> float:
    src = torch.empty(COPY_BYTES // 4, dtype=torch.float32, device=device).normal_()
    dst = torch.empty_like(src)
    ms = time_ms(lambda: dst.copy_(src), [])["median"]
    return 2 * COPY_BYTES / (ms * 1e-3) / 1e9


def peak_tf32_flag(dtype: torch.dtype, allow_tf32: bool | None = None) -> bool | None:
    """The TF32 flag a matmul peak for `dtype` is measured (and cached) under: None for
    fp16/bf16 (it does not apply); for fp32 the given flag, else torch's matmul flag now."""
    if dtype != torch.float32:
        return None
    return bool(torch.backends.cuda.matmul.allow_tf32) if allow_tf32 is None else bool(allow_tf32)


def matmul_peak_tflops(device: torch.device, dtype: torch.dtype, allow_tf32: bool | None = None) -> float:
    """TFLOP/s of torch.matmul on two MATMUL_PEAK_SIZE^2 matrices in `dtype` (do_bench
    median), fp32 under torch.backends.cuda.matmul.allow_tf32 = `allow_tf32` (None: the
    flag as it stands), which is restored afterwards. Cached per (device, dtype, flag)."""
    return _matmul_peak_tflops(device, dtype, peak_tf32_flag(dtype, allow_tf32))


@functools.cache
def _matmul_peak_tflops(device: torch.device, dtype: torch.dtype, allow_tf32: bool | None) -> float:
    n = MATMUL_PEAK_SIZE
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    previous = torch.backends.cuda.matmul.allow_tf32
    try:
        if allow_tf32 is not None:
            torch.backends.cuda.matmul.allow_tf32 = allow_tf32
        ms = time_ms(lambda: torch.matmul(a, b), [])["median"]
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous
    return 2 * n**3 / (ms * 1e-3) / 1e12


def case_peak(device: torch.device, case: Case) -> float:
    """The matmul peak a case's %peak divides by: its dtype, under its TF32 setting."""
    if case.allow_tf32 is None:  # torch's flag as it stands (the call of benches without a TF32 setting)
        return matmul_peak_tflops(device, case.dtype)
    return matmul_peak_tflops(device, case.dtype, allow_tf32=case.allow_tf32)


def peak_memory_bytes(workload: Workload, device: torch.device, mode: str = "fwd_bwd") -> int:
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    workload.by_mode(mode)()
    torch.cuda.synchronize(device)
    return int(torch.cuda.max_memory_allocated(device) - before)


def compute_provenance(prov: dict, flops: int, ms: float, peak: float, case: Case | None = None) -> float:
    """Add FLOPs, TFLOP/s and the fraction of the same-dtype matmul peak to prov; return TFLOP/s.
    `matmul_allow_tf32`: the TF32 flag the peak's matmul ran under (None for fp16/bf16)."""
    tflops = flops / (ms * 1e-3) / 1e12
    flag = peak_tf32_flag(case.dtype, case.allow_tf32) if case is not None \
        else bool(torch.backends.cuda.matmul.allow_tf32)
    prov.update({"flops": flops, "tflops": tflops, "matmul_peak_tflops": peak,
                 "fraction_of_matmul_peak": tflops / peak, "matmul_allow_tf32": flag})
    return tflops


def bench_records(bench: OpBench, device: torch.device, attempt: str, progress=lambda s: None,
                  cases: list[Case] | None = None, providers: dict[str, Callable[..., Workload]] | None = None
                  ) -> list[dict]:
    """Time every case x provider x mode of one op (or the given cases and providers); return result records."""
    copy_gbps = copy_bandwidth_gbps(device) if bench.bytes_moved is not None else None
    env = environment_fields(device)
    cases = bench.cases() if cases is None else cases
    providers = bench.providers if providers is None else providers
    # Peaks first, while the device is empty (cached per dtype and TF32 flag across ops).
    peaks = {(c.dtype, c.allow_tf32): case_peak(device, c) for c in cases} if bench.flops else {}
    records = []
    for case in cases:
        for provider, build in providers.items():
            progress(f"{bench.op} {case.label} {case.dtype_name} {provider}")
            common = {**env, "run_id": json_hash([bench.op, case.label, case.dtype_name, provider]),
                      "attempt": attempt, "suite": "kernels", "model": bench.op, "objective": provider,
                      "dataset": f"{case.label},{case.dtype_name}", "seed": 0, "backend": provider,
                      "precision": case.dtype_name}
            try:
                workload = build(case)  # builders may warm up (compile, autotune): that can fail too
                if workload is None:  # the provider does not apply to this case
                    continue
            except Exception as exc:  # every mode recorded as failed, never dropped
                error = {"error": f"{type(exc).__name__}: {exc}"[:300], "failed_in": "workload build"}
                records += [make_record(common, f"{mode}/time", None, "ms", None, error) for mode in bench.modes]
                torch.cuda.empty_cache()
                continue
            extra, graphs = dict(workload.provenance), {}
            if case.allow_tf32 is not None:
                extra["case_allow_tf32"] = case.allow_tf32
            for mode in bench.modes:
                try:
                    t = time_ms(workload.by_mode(mode), workload.grad_to_none, **(bench.do_bench_options or {}))
                except Exception as exc:  # recorded as a failed measurement, never dropped
                    records.append(make_record(common, f"{mode}/time", None, "ms", None,
                                               {"error": f"{type(exc).__name__}: {exc}"[:300], **extra}))
                    continue
                prov = {"q20_ms": t["q20"], "q80_ms": t["q80"], "method": "triton.testing.do_bench, cold L2, median",
                        **extra}
                gbps = None
                if bench.bytes_moved is not None:
                    moved = bench.bytes_moved(case, mode)
                    gbps = moved / (t["median"] * 1e-3) / 1e9
                    prov.update({"bytes": moved, "copy_bandwidth_gbps": copy_gbps,
                                 "fraction_of_copy_bw": gbps / copy_gbps})
                rate = None
                if bench.examples is not None:
                    prov["examples"] = bench.examples(case)
                    rate = prov["examples"] / (t["median"] * 1e-3)
                if t["median"] < CUDAGRAPH_BELOW_MS:
                    prov.update(graph_timing(workload, mode, graphs))
                tflops = None
                if bench.flops is not None:
                    tflops = compute_provenance(prov, bench.flops(case, mode), t["median"],
                                                peaks[(case.dtype, case.allow_tf32)], case)
                records.append(make_record(common, f"{mode}/time", t["median"], "ms", None, prov))
                if gbps is not None:
                    records.append(make_record(common, f"{mode}/bandwidth", gbps, "GB/s", None, prov))
                if rate is not None:
                    records.append(make_record(common, f"{mode}/examples_per_second", rate, "examples/s", None, prov))
                if tflops is not None:
                    records.append(make_record(common, f"{mode}/throughput", tflops, "TFLOP/s", None, prov))
            peak_mode = bench.peak_memory_mode
            try:
                peak = peak_memory_bytes(workload, device, peak_mode)
                prov = {"measured": "max_memory_allocated above baseline", **extra}
            except Exception as exc:
                peak, prov = None, {"error": f"{type(exc).__name__}: {exc}"[:300], **extra}
            records.append(make_record(common, f"{peak_mode}/peak_memory", peak, "bytes", None, prov))
            del workload
            torch.cuda.empty_cache()  # a provider that ran out of memory leaves the next one room
    return records
