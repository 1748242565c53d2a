"""Compile the kernels for real GPUs without one: `genbench kernels --compile sm_90 [sm_80 ...]`.

What is compiled is what would launch. The benchmarks' triton workloads run on meta tensors
inside `genbench.kernels.device.planning(target)`: every launcher computes its plan (dtypes,
strides, constexprs, splits, the autotune candidates its pruning keeps) for the target's SM
count and shared-memory limit, exactly as on that GPU, and each kernel launch it reaches is
recorded instead of run (`recording`). Each recorded launch is specialised as Triton's
JITFunction.run would specialise it (its own binder: dtypes, 16-byte alignment and
divisibility of integers, integers equal to 1 as constants) and compiled with
triton.compile for the target in a process pool, every distinct specialisation (sizes
that differ in divisibility by 16 compile apart, as at run time). Besides the benchmarks'
cases, the example calls the tests make of each op are planned too (named
"tests <op> '<example>' <dtype>"). Per kernel and configuration the report
gives: compiled or the compiler's error, registers per thread and spill bytes (ptxas -v,
from Triton's own ptxas run), shared memory against the target's per-block limit, the
widest global load and whether loads are asynchronous copies (from the PTX), and the MMA
instructions used (wgmma on sm_90, mma.sync, or none: FMA).

The pass bound: every kept configuration compiles, spills at most SPILL_BOUND bytes and fits
the target's shared memory. The launchers' pruning is what must keep it so.

Triton kernels are plain Python functions under the interpreter (TRITON_INTERPRET=1), so
`compile_report` runs the planning and the compiles in a child process with the variable
removed and a fresh Triton cache (ptxas is only run, and its log only seen, on a cache miss).
`precompile` is the same planning for the current CUDA device, compiled in parallel into
Triton's ordinary cache before timing: the autotuner's one-after-another compiles become
cache hits.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tabulate import tabulate

from genbench.errors import GenbenchError
from genbench.kernels.device import TARGETS, GpuTarget

SPILL_BOUND = 0  # bytes of spill stores + loads a kept configuration may have


@dataclass(frozen=True)
class Task:
    """One kernel specialisation under one configuration, ready for triton.compile (picklable)."""

    module: str
    kernel: str
    signature: dict[str, str]
    constexprs: dict
    attrs: dict
    options: dict
    capability: int
    config: str  # e.g. "BLOCK_M=128 BLOCK_N=64 w4 s3"
    spec: str  # dtypes and the non-block constexprs, e.g. "*bf16 S_H=2 KH=4"

    @property
    def key(self) -> str:
        return repr((self.module, self.kernel, self.signature, sorted(self.constexprs.items()),
                     sorted(self.attrs.items()), sorted(self.options.items()), self.capability))


@dataclass
class Planned:
    """The distinct tasks of one target and, per task key, the cases that launch it."""

    target: GpuTarget
    tasks: dict[str, Task] = field(default_factory=dict)
    used_by: dict[str, list[str]] = field(default_factory=dict)


# ----------------------------------------------------------------------------- recording launches


def config_text(kwargs: dict) -> str:
    blocks = " ".join(f"{k}={v}" for k, v in kwargs.items() if k.startswith("BLOCK"))
    return f"{blocks} w{kwargs.get('num_warps', 4)} s{kwargs.get('num_stages', 3)}"


def spec_text(signature: dict, constexprs: dict, names: list[str]) -> str:
    pointers = sorted({t for t in signature.values() if t.startswith("*")})
    consts = [f"{names[path[0]]}={value}" for path, value in sorted(constexprs.items())
              if not names[path[0]].startswith("BLOCK") and len(path) == 1]
    return " ".join(pointers + consts)


class Recorder:
    """Turns launches into Tasks for one target, as JITFunction.run would specialise them."""

    def __init__(self, target: GpuTarget):
        from triton.backends.compiler import GPUTarget
        from triton.compiler import make_backend

        self.capability = target.capability
        self.backend = make_backend(GPUTarget("cuda", target.capability, 32))
        self.binders: dict[int, Any] = {}
        self.tasks: list[Task] = []

    def record(self, fn, args: tuple, kwargs: dict) -> None:
        from triton import knobs
        from triton.runtime.jit import create_function_from_signature

        kwargs = dict(kwargs)  # as JITFunction.run, before it binds the arguments
        kwargs["debug"] = kwargs.get("debug", fn.debug) or knobs.runtime.debug
        kwargs["instrumentation_mode"] = knobs.compilation.instrumentation_mode
        binder = self.binders.get(id(fn))
        if binder is None:
            binder = self.binders[id(fn)] = create_function_from_signature(fn.signature, fn.params, self.backend)
        bound, specialization, options = binder(*args, **kwargs)
        options, signature, constexprs, attrs = fn._pack_args(self.backend, kwargs, bound, specialization, options)
        names = [p.name for p in fn.params]
        self.tasks.append(Task(fn.fn.__module__, fn.fn.__name__, signature, constexprs, attrs, dict(options.__dict__),
                               self.capability, config_text(kwargs), spec_text(signature, constexprs, names)))


@contextlib.contextmanager
def recording(recorder: Recorder):
    """Kernel launches (direct or autotuned) are recorded by `recorder` instead of run; an
    autotuned launch records every configuration its pruning keeps, as Autotuner.run would
    benchmark them."""
    from triton.runtime.autotuner import Autotuner
    from triton.runtime.jit import JITFunction

    def jit_run(self, *args, grid, warmup, **kwargs):
        recorder.record(self, args, kwargs)

    def autotuned_run(self, *args, **kwargs):
        kwargs = {k: v for k, v in kwargs.items() if k not in ("grid", "warmup")}
        self.nargs = dict(zip(self.arg_names, args))
        configs = self.prune_configs(kwargs) if len(self.configs) > 1 else self.configs
        self.nargs = None
        for config in configs:
            recorder.record(self.fn, args, {**kwargs, **config.all_kwargs()})

    saved = JITFunction.run, Autotuner.run
    JITFunction.run, Autotuner.run = jit_run, autotuned_run
    try:
        yield recorder
    finally:
        JITFunction.run, Autotuner.run = saved


def plan_target(target: GpuTarget, selection, examples: bool = True) -> Planned:
    """The launches, for `target`, of the selected cases' workloads of genbench's own providers
    and (with `examples`) of the example calls the tests make of the selected benches' ops
    (KernelOp.examples), named "tests <op> '<example>' <dtype>..." for --cases patterns (e.g.
    'tests*': only those)."""
    from genbench.kernelbench import case_name, is_own_provider, selected_benches, selected_providers

    planned = Planned(target)
    chosen = selected_benches(selection, compile_only=True, examples=examples)
    for bench, cases in chosen:
        own = {name: build for name, build in selected_providers(bench, selection).items() if is_own_provider(name)}
        for case, (provider, build) in itertools.product(cases, own.items()):
            label = f"{bench.op} {case_name(case)}" + ("" if provider == "triton" else f" {provider}")
            call = lambda: run_workload(build(case, device="meta"), bench.modes)  # noqa: E731
            add(planned, label, plan_calls(target, label, call))
    for op in dict.fromkeys(bench.kernel_op or bench.op for bench, _ in chosen) if examples else ():
        for label, call in example_calls(op):
            if selection.matches(label):
                add(planned, label, plan_calls(target, label, call))
    return planned


def add(planned: Planned, label: str, tasks: list[Task]) -> None:
    for task in tasks:
        planned.tasks.setdefault(task.key, task)
        users = planned.used_by.setdefault(task.key, [])
        if label not in users:
            users.append(label)


def plan_calls(target: GpuTarget, label: str, call) -> list[Task]:
    """The tasks of the launches `call()` (named `label`) makes on meta tensors planned for `target`."""
    from genbench.kernels.device import planning

    recorder = Recorder(target)
    try:
        with planning(target), recording(recorder):
            call()
    except Exception as exc:  # a launcher that cannot plan on meta tensors is a bug: name where
        raise RuntimeError(f"planning {label} for {target.name} failed: {type(exc).__name__}: {exc}") from exc
    return recorder.tasks


def run_workload(workload, modes) -> None:
    if workload is not None:  # None: the provider does not apply to the case
        for mode in modes:
            workload.by_mode(mode)()


EXAMPLE_DTYPES = ("float32", "float16", "bfloat16")


def example_calls(op: str) -> list[tuple[str, Any]]:
    """(label, call) for each example call of the registered KernelOp `op` (what the property
    tests run: fp32, and fp16/bf16 on CUDA), forward and backward, on meta tensors; fp32 under
    TF32 off (the tests' setting) and on (torch's default for cuDNN, which conv follows)."""
    import torch

    import genbench.kernels  # noqa: F401  (registers the ops)
    from genbench.registry import KERNELS

    kernel_op = KERNELS.get(op)
    calls = []
    for dtype_name in EXAMPLE_DTYPES:
        dtype = getattr(torch, dtype_name)
        for example in kernel_op.examples(dtype, torch.device("meta"), torch.Generator().manual_seed(0)):
            for tf32 in ((False, True) if dtype == torch.float32 else (None,)):
                label = f"tests {op} '{example.label}' {dtype_name}" + ("" if tf32 is None else f" tf32={tf32}")
                calls.append((label, lambda e=example, t=tf32: run_example(kernel_op.triton, e, t)))
    return calls


def run_example(triton_fn, example, allow_tf32: bool | None) -> None:
    import torch

    kwargs = {k: v.detach().requires_grad_(k in example.grad) if torch.is_tensor(v) else v
              for k, v in example.kwargs.items()}
    saved = torch.backends.cudnn.allow_tf32
    try:
        if allow_tf32 is not None:
            torch.backends.cudnn.allow_tf32 = allow_tf32
        out = triton_fn(**kwargs)
        outs = [o for o in (out if isinstance(out, tuple) else (out,)) if torch.is_tensor(o) and o.requires_grad]
        if outs:
            torch.autograd.backward(outs, [torch.ones_like(o) for o in outs])
    finally:
        torch.backends.cudnn.allow_tf32 = saved


# ----------------------------------------------------------------------------- compiling

PTXAS_REGS = re.compile(r"Used (\d+) registers")
PTXAS_SPILL = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")
PTX_LOAD = re.compile(r"^\s*(?:@%p\d+\s+)?ld\.global[.\w]*?(?:\.v(\d))?\.[bsuf](\d+)\s", re.M)
PTX_ASYNC = re.compile(r"^\s*(?:@%p\d+\s+)?cp\.async\.c[ag]\.shared\.global(?:\.L2::\w+)?\s+\[[^]]*\],\s*\[[^]]*\],\s*"
                       r"(0x[0-9a-fA-F]+|\d+)", re.M)


def ptx_facts(ptx: str) -> dict:
    """Widest global load (bytes), whether there are async copies, and the MMA used."""
    widths = [int(v or 1) * int(bits) // 8 for v, bits in PTX_LOAD.findall(ptx)]
    copies = [int(n, 0) for n in PTX_ASYNC.findall(ptx)]  # bytes, written in hex by LLVM
    mma = "wgmma" if "wgmma.mma_async" in ptx else ("mma" if re.search(r"\bmma\.sync", ptx) else "fma")
    return {"widest_load": max(widths + copies, default=0), "async_copies": len(copies) + ptx.count("cp.async.bulk"),
            "mma": mma}


def compile_task(task: Task) -> dict:
    """Compile one task for its target (a pool worker); never raises: errors are results."""
    import importlib

    import triton
    from triton import knobs
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    fn = getattr(importlib.import_module(task.module), task.kernel)
    started = time.perf_counter()
    log = io.StringIO()
    knobs.nvidia.dump_ptxas_log = True  # Triton runs ptxas -v and prints its log: keep it
    try:
        with contextlib.redirect_stdout(log):
            kernel = triton.compile(ASTSource(fn, task.signature, task.constexprs, task.attrs),
                                    target=GPUTarget("cuda", task.capability, 32), options=task.options)
    except Exception as exc:  # the compiler's error is the result
        message = " ".join(str(exc).split())
        return {"ok": False, "error": f"{type(exc).__name__}: {message}"[:300],
                "seconds": time.perf_counter() - started}
    text = log.getvalue()
    regs = [int(n) for n in PTXAS_REGS.findall(text)]
    spills = [(int(s), int(lo)) for s, lo in PTXAS_SPILL.findall(text)]
    return {"ok": True, "registers": max(regs) if regs else None,
            "spill_stores": max((s for s, _ in spills), default=None),
            "spill_loads": max((lo for _, lo in spills), default=None),
            "shared": int(kernel.metadata.shared), "seconds": time.perf_counter() - started,
            **ptx_facts(kernel.asm["ptx"])}


def compile_all(tasks: list[Task], workers: int, progress=lambda s: None) -> list[dict]:
    """Compile tasks in a pool of `workers` processes (in this process for 1), saying how far it got."""
    def report(i: int, result: dict, count: int) -> dict:
        facts = (f"{result['registers']} regs, spills {result['spill_stores']}/{result['spill_loads']} B, "
                 f"{result['shared'] // 1024} KiB smem" if result["ok"] else result["error"][:120])
        progress(f"[{count}/{len(tasks)}] sm_{tasks[i].capability} {tasks[i].kernel} {tasks[i].config}: {facts} "
                 f"({result['seconds']:.0f} s)")
        return result

    if workers <= 1 or len(tasks) <= 1:
        return [report(i, compile_task(t), i + 1) for i, t in enumerate(tasks)]
    import multiprocessing
    from concurrent.futures import as_completed

    # The largest tiles first: the pool finishes together rather than on one late 128-wide tile.
    order = sorted(range(len(tasks)), key=lambda i: -tile_size(tasks[i]))
    done = {}
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(compile_task, tasks[i]): i for i in order}
        for count, future in enumerate(as_completed(futures), 1):
            done[futures[future]] = report(futures[future], future.result(), count)
    return [done[i] for i in range(len(tasks))]


def tile_size(task: Task) -> int:
    size = 1
    for n in re.findall(r"BLOCK_\w+=(\d+)", task.config):
        size *= int(n)
    return size


def rows_for(planned: Planned, results: list[dict]) -> list[dict]:
    target = planned.target
    rows = []
    for (key, task), result in zip(planned.tasks.items(), results):
        users = planned.used_by[key]
        if result["ok"] and result.get("registers") is None:  # no ptxas run: nothing to vouch for
            result = {**result, "ok": False, "error": "compiled, but ptxas -v reported nothing (a Triton cache hit?)"}
        spill = (result.get("spill_stores") or 0) + (result.get("spill_loads") or 0)
        rows.append({"target": target.name, "kernel": task.kernel, "spec": task.spec, "config": task.config,
                     "used_by": users, "smem_limit": target.shared_memory_per_block, **result,
                     "spill": spill if result["ok"] else None,
                     "over_smem": bool(result["ok"] and result["shared"] > target.shared_memory_per_block)})
    return rows


def compile_rows(targets: list[str], selection, workers: int, progress=lambda s: None) -> list[dict]:
    """Plan and compile the selection for each target (TRITON_INTERPRET must be unset)."""
    planned = [plan_target(TARGETS[name], selection) for name in targets]
    tasks = [t for p in planned for t in p.tasks.values()]
    results = compile_all(tasks, workers, progress)
    rows, start = [], 0
    for p in planned:
        rows += rows_for(p, results[start:start + len(p.tasks)])
        start += len(p.tasks)
    return rows


# ----------------------------------------------------------------------------- report


@dataclass(frozen=True)
class CompileReport:
    rows: list[dict]
    table: str
    summary: str

    @property
    def failures(self) -> list[dict]:
        """Rows breaking the bound: a compile error, spills above SPILL_BOUND, shared memory over the limit."""
        return [r for r in self.rows if not r["ok"] or r["spill"] > SPILL_BOUND or r["over_smem"]]


def verdict(row: dict) -> str:
    if not row["ok"]:
        return row["error"]
    problems = ([f"spills {row['spill']} B"] if row["spill"] > SPILL_BOUND else []) + \
        (["over shared memory"] if row["over_smem"] else [])
    return "; ".join(problems) or "compiled"


def render(rows: list[dict]) -> CompileReport:
    table_rows = []
    for r in rows:
        used = r["used_by"]
        table_rows.append({
            "target": r["target"], "kernel": r["kernel"], "specialisation": r["spec"], "config": r["config"],
            "result": verdict(r), "regs": r.get("registers") if r["ok"] else "",
            "spill st/ld B": f"{r['spill_stores']}/{r['spill_loads']}" if r["ok"] else "",
            "smem KiB / limit": f"{r['shared'] / 1024:.0f} / {r['smem_limit'] // 1024}" if r["ok"] else "",
            "loads": (f"{'async' if r['async_copies'] else 'sync'} {r['widest_load']}B" if r["ok"] else ""),
            "mma": r.get("mma", "") if r["ok"] else "", "s": f"{r['seconds']:.1f}",
            "used by": used[0] + (f" (+{len(used) - 1})" if len(used) > 1 else "")})
    frame = pd.DataFrame(table_rows)
    table = tabulate(frame, headers="keys", tablefmt="github", showindex=False, disable_numparse=True) \
        if table_rows else "(nothing selected)"
    counts = []
    for (target, kernel), group in pd.DataFrame(rows).groupby(["target", "kernel"], sort=True) if rows else []:
        ok = group["ok"]
        counts.append({"target": target, "kernel": kernel, "configurations": len(group),
                       "compiled": int(ok.sum()), "errors": int((~ok).sum()),
                       f"spilling (> {SPILL_BOUND} B)": int((group["spill"].fillna(0) > SPILL_BOUND).sum()),
                       "over shared memory": int(group["over_smem"].sum()),
                       "max regs": int(group["registers"].max()) if group["registers"].notna().any() else "",
                       "compile s": f"{group['seconds'].sum():.0f}"})
    summary = tabulate(pd.DataFrame(counts), headers="keys", tablefmt="github", showindex=False,
                       disable_numparse=True) if counts else ""
    return CompileReport(rows, table, summary)


def check_targets(targets: list[str]) -> None:
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        raise GenbenchError(f"Unknown GPU target(s) {', '.join(unknown)} for --compile; known: "
                            f"{', '.join(TARGETS)} (e.g. --compile sm_90 sm_80).")


def compile_report(targets: list[str], selection, workers: int | None = None) -> CompileReport:
    """Plan and compile in a child process without TRITON_INTERPRET and with a fresh Triton
    cache (so ptxas runs and reports), its progress on stderr; return the rendered report."""
    from genbench.kernelbench import selected_benches

    check_targets(targets)
    selected_benches(selection, compile_only=True, examples=True)  # a selection error is the user's: say so here
    workers = workers or max(1, os.cpu_count() or 1)
    with tempfile.TemporaryDirectory(prefix="genbench-compile-") as tmp:
        out = Path(tmp) / "rows.json"
        env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
        env["TRITON_CACHE_DIR"] = str(Path(tmp) / "triton-cache")
        command = [sys.executable, "-m", "genbench.kernelbench.compile", "--json", str(out),
                   "--workers", str(workers), "--targets", *targets, "--selection", json.dumps(selection.to_json())]
        done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL)  # progress on stderr, as it goes
        if done.returncode != 0 or not out.is_file():
            raise GenbenchError(f"The compile process failed (exit {done.returncode}); its messages are above.")
        rows = json.loads(out.read_text())
    if not rows:
        raise GenbenchError(f"--cases {' '.join(selection.cases)} selects nothing to compile: patterns match case "
                            "names as the timing table shows them, or the tests' example calls ('tests*').")
    return render(rows)


def precompile(selection, workers: int, progress=lambda s: None) -> int:
    """Compile, in parallel into Triton's cache, every launch the selection would make on the
    current CUDA device; return the number of distinct compiles. The autotuner then finds them
    cached. Planning failures are reported and skipped (the timing compiles as before)."""
    import torch

    from genbench.kernels.device import cuda_target

    target = cuda_target(torch.cuda.current_device())
    try:
        planned = plan_target(target, selection, examples=False)
    except Exception as exc:  # a private Triton API changed, say: time anyway
        progress(f"precompile skipped: planning failed ({type(exc).__name__}: {exc})"[:300])
        return 0
    tasks = list(planned.tasks.values())
    progress(f"precompiling {len(tasks)} kernel specialisations on {workers} processes")
    results = compile_all(tasks, workers)
    failed = sum(not r["ok"] for r in results)
    if failed:
        progress(f"{failed} specialisation(s) did not compile (the autotuner skips them as it would)")
    return len(tasks)


def main(argv: list[str] | None = None) -> int:
    """Child-process entry of compile_report: plan, compile, write the rows as JSON."""
    from genbench.kernelbench import Selection
    from genbench.kernels.device import interpreter_enabled

    parser = argparse.ArgumentParser(prog="python -m genbench.kernelbench.compile")
    parser.add_argument("--targets", nargs="+", required=True)
    parser.add_argument("--selection", required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args(argv)
    if interpreter_enabled():
        raise SystemExit("TRITON_INTERPRET=1: the kernels are interpreted functions here; unset it to compile.")
    rows = compile_rows(args.targets, Selection.from_json(json.loads(args.selection)), args.workers,
                        progress=lambda s: print(s, file=sys.stderr, flush=True))
    args.json.write_text(json.dumps(rows, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
