"""`genbench kernels`: time each kernel op against its baselines, save and compare.

Layout of the results (one folder per GPU kind, since timings only compare on one):
    results/kernels/<gpu>/<UTC stamp>/results.jsonl   records (the schema of harness/store.py)
    results/kernels/<gpu>/<UTC stamp>/table.md        the table printed to the terminal
    results/kernels/<gpu>/baselines/<NAME>.jsonl      saved with --save NAME

Selection (`Selection`): --ops, --cases (globs over case names), --providers, --quick (each
bench's representative cases). Before timing, the selected kernels' launches are planned and
compiled in parallel into Triton's cache (genbench.kernelbench.compile.precompile), so the
autotuner's compiles, one after another per shape, become cache hits.

`--compare NAME --fail-above PCT` gates genbench's own kernels (providers named "triton" or
"triton_*") against a saved baseline of the same GPU kind and exits with code 1 when one of
them is missing or failed, or got slower by more than PCT% *and* beyond the recorded spread
(its q20 above the baseline's q80) *and* by more than an absolute floor (--fail-floor-us: a
microsecond kernel's jitter is not a regression). Baseline providers (eager, compile, cuDNN,
SDPA) are shown, not gated. Without CUDA the timing mode refuses (CPU timings of GPU kernels
mean nothing); `--check` runs the correctness-only interpreter comparison instead and
`--compile TARGET...` compiles every kernel configuration for GPU targets.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
from tabulate import tabulate

from genbench.errors import GenbenchError
from genbench.harness.store import RESULTS_FILE, append_records, read_records
from genbench.kernelbench import (  # noqa: F401  (register the benchmarks)
    attention,
    conv_transpose,
    groupnorm_silu,
    reparam_kl,
    train_step,
    vq,
)
from genbench.kernelbench.base import BENCHES, MODES

CONVENTIONS = (
    "Times: triton.testing.do_bench median [q20, q80] in µs, cold L2 (flushed between reps); "
    "`graph µs` is do_bench_cudagraph (hot cache), taken for kernels under 20 µs (backward modes: forward "
    "and backward captured together, gradients reset per replay; bwd = that minus the forward's graph). "
    "GB/s from the bytes the op must move; `%copy` = that over the device-to-device copy "
    "bandwidth measured in the same run. `vs <provider>` (on triton's rows) = that provider's time / "
    "triton's time for the same case and mode (> 1: triton faster). Peak memory: "
    "max_memory_allocated over one forward+backward (forward-only ops: one forward; train_step: one "
    "training step). Ops with a FLOP count also show TFLOP/s from useful FLOPs only and `%peak` = that "
    "over torch.matmul (8192^3, the case's dtype; fp32 under the case's TF32 setting, `tf32=on|off` in "
    "the case, else without TF32) measured in the same run. Benches of whole training steps show "
    "examples/s instead of GB/s. A `failed:` time is a provider that errored (e.g. out of memory)."
)


FLOOR_US = 2.0  # default absolute floor of the gate: a change below this many µs never fails


@dataclass(frozen=True)
class Comparison:
    table: str
    regressions: int  # gated timings that failed the gate: slower beyond threshold and spread, missing, failed


@dataclass(frozen=True)
class Selection:
    """What a `genbench kernels` run (timing, --check or --compile) covers.

    ops: bench names (empty: every bench). quick: each bench's representative cases only
    (OpBench.quick). cases: fnmatch patterns over a case's name as the table shows it,
    "<label>,<dtype>" (e.g. "B=128,C_in=512*bf16"); a case is kept when any pattern matches.
    providers: provider names (empty: all); --compile and precompilation plan the selected ones
    of genbench's own (`is_own_provider`), --check ignores it."""

    ops: tuple[str, ...] = ()
    cases: tuple[str, ...] = ()
    providers: tuple[str, ...] = ()
    quick: bool = False

    def matches(self, name: str) -> bool:
        """Whether a case name passes the --cases patterns (every name without patterns)."""
        return not self.cases or any(fnmatch.fnmatchcase(name, p) for p in self.cases)

    def covers(self, op: str, case: str, provider: str) -> bool:
        """Whether this selection would time (op, case name, provider): the gate's test for a
        baseline timing that a run should have produced."""
        if (self.ops and op not in self.ops) or (self.providers and provider not in self.providers):
            return False
        if not self.matches(case):
            return False
        if self.quick:
            bench = BENCHES.get(op) if op in BENCHES else None
            return bench is not None and any(case_name(c) == case for c in bench.cases() if bench.is_quick(c))
        return True

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "Selection":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def case_name(case) -> str:
    """A case as the table and the records' `dataset` field name it."""
    return f"{case.label},{case.dtype_name}"


def select(ops: list[str] | tuple[str, ...] | None) -> list:
    return [BENCHES.get(op) for op in (ops or BENCHES.names())]


def selected_benches(selection: Selection, compile_only: bool = False, examples: bool = False) -> list[tuple]:
    """(bench, its selected cases) for each selected bench with at least one case (with
    `examples`, every selected bench: --compile also compiles the tests' example calls, which
    the patterns may select instead). With compile_only, benches whose workloads cannot be
    planned on meta tensors (OpBench.compiles) are left out. Patterns or providers that select
    nothing are the user's error."""
    benches = [b for b in select(selection.ops) if b.compiles or not compile_only]
    if not benches:
        raise GenbenchError(f"Nothing to compile in {', '.join(selection.ops)}: whole training steps are not "
                            "planned on meta tensors; their kernels are the ops' (compile those).")
    chosen = []
    for bench in benches:
        cases = bench.cases()
        if selection.quick:
            cases = [c for c in cases if bench.is_quick(c)]
        cases = [c for c in cases if selection.matches(case_name(c))]
        if cases or examples:
            chosen.append((bench, cases))
    if not chosen:
        names = ", ".join(case_name(c) for c in benches[0].cases()[:3])
        raise GenbenchError(f"--cases {' '.join(selection.cases)} matches no case of "
                            f"{', '.join(b.op for b in benches)}. Patterns are fnmatch globs over names such as "
                            f"{names} (quote them in the shell).")
    if selection.providers:
        known = {p for bench, _ in chosen for p in bench.providers}
        unknown = sorted(set(selection.providers) - known)
        if unknown:
            raise GenbenchError(f"Unknown provider(s) {', '.join(unknown)} for {', '.join(b.op for b, _ in chosen)}; "
                                f"providers there: {', '.join(sorted(known))}.")
    return chosen


def selected_providers(bench, selection: Selection) -> dict:
    """The bench's provider builders that the selection times (all when none is named)."""
    return {name: build for name, build in bench.providers.items()
            if not selection.providers or name in selection.providers}


def describe_selection(selection: Selection) -> str:
    """`genbench kernels --dry-run`: what a timing run of this selection would time (no GPU needed)."""
    lines = []
    for bench, cases in selected_benches(selection):
        providers = ", ".join(selected_providers(bench, selection))
        lines.append(f"{bench.op}: {len(cases)} case(s) x {providers} x modes {', '.join(bench.modes)}")
        lines += [f"  {case_name(c)}" for c in cases]
    return "\n".join(lines)


def is_own_provider(provider: str) -> bool:
    """genbench's kernels ("triton", "triton_<variant>"): the providers the regression gate covers."""
    return provider == "triton" or provider.startswith("triton_")


def run_benchmarks(selection: Selection, out_root: Path, progress=print, jobs: int = 0) -> Path:
    """Benchmark the selection on the current CUDA device; return the folder with the records.
    jobs: processes precompiling the kernels first (0: one per CPU core; 1: no precompilation)."""
    import os

    import torch

    from genbench.kernelbench.base import bench_records, gpu_slug
    from genbench.kernelbench.compile import precompile

    chosen = selected_benches(selection)  # a selection that selects nothing fails before anything else
    if not torch.cuda.is_available():
        raise GenbenchError(
            "`genbench kernels` times kernels on a CUDA GPU and none is visible: CPU timings "
            "of GPU kernels would mean nothing. Run it on a GPU machine, or use "
            "`genbench kernels --check` for a correctness-only comparison in the Triton interpreter."
        )
    device = torch.device("cuda")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = out_root / gpu_slug(device) / stamp
    out.mkdir(parents=True, exist_ok=True)
    jobs = jobs or os.cpu_count() or 1
    if jobs > 1:
        precompile(selection, jobs, progress)
    for bench, cases in chosen:
        append_records(out / RESULTS_FILE, bench_records(bench, device, stamp, progress, cases,
                                                         selected_providers(bench, selection)))
    table = timing_table(read_records(out / RESULTS_FILE))
    (out / "table.md").write_text(f"# Kernel benchmarks, {stamp}\n\n{CONVENTIONS}\n\n{table}\n")
    return out


# Column order of the timing table; `vs <provider>` columns follow %peak, then peak MiB.
COLUMNS = ("op", "case", "mode", "provider", "median µs", "[q20, q80] µs", "graph µs", "GB/s", "%copy",
           "examples/s", "TFLOP/s", "%peak")


def timing_table(records: list[dict[str, Any]]) -> str:
    """One row per (op, case, mode, provider). The triton row of a case shows `vs <p>` =
    p's median time / triton's for every other provider p of that case and mode (blank
    where p failed). GB/s and %copy where the op declares bytes; examples/s where it
    declares examples per call; TFLOP/s and %peak where it declares FLOPs."""
    frame = pd.DataFrame.from_records(records)
    times = frame[frame["metric"].str.endswith("/time")].copy()
    times["mode"] = times["metric"].str.removesuffix("/time")
    key = ["model", "dataset", "mode"]
    providers = list(dict.fromkeys(times["objective"]))  # in record order: bench_records writes the bench's order
    rows = []
    for _, r in times.sort_values(key + ["objective"]).iterrows():
        p = r["provenance"]
        if pd.isna(r["value"]):
            rows.append({"op": r["model"], "case": r["dataset"], "mode": r["mode"], "provider": r["objective"],
                         "median µs": "failed: " + str(p.get("error", ""))[:60]})
            continue
        same = times[(times[key] == r[key]).all(axis=1)].set_index("objective")["value"]
        seconds = r["value"] * 1e-3
        row = {"op": r["model"], "case": r["dataset"], "mode": r["mode"], "provider": r["objective"],
               "median µs": f"{1e3 * r['value']:.1f}", "[q20, q80] µs": f"[{1e3 * p['q20_ms']:.1f}, {1e3 * p['q80_ms']:.1f}]",
               "graph µs": f"{1e3 * p['cudagraph_ms']:.1f}" if p.get("cudagraph_ms") else ""}
        if p.get("bytes") is not None:  # ops that declare the bytes they must move
            row["GB/s"] = f"{p['bytes'] / seconds / 1e9:.0f}"
            row["%copy"] = f"{100 * p['fraction_of_copy_bw']:.0f}" if p.get("fraction_of_copy_bw") is not None else ""
        if p.get("examples"):  # benches that declare examples per call (a training step)
            row["examples/s"] = f"{p['examples'] / seconds:.0f}"
        if p.get("flops"):  # ops that declare a FLOP count
            tflops = p["flops"] / seconds / 1e12
            row["TFLOP/s"] = f"{tflops:.1f}"
            row["%peak"] = f"{100 * tflops / p['matmul_peak_tflops']:.0f}" if p.get("matmul_peak_tflops") else ""
        if r["objective"] == "triton":
            for base in providers:
                if base != "triton" and base in same.index:
                    value = same[base]
                    row[f"vs {base}"] = "" if pd.isna(value) else f"{value / r['value']:.2f}x"
        rows.append(row)
    # Peak memory is recorded for one mode per op (fwd_bwd, or fwd for forward-only ops).
    peak = frame[frame["metric"].str.endswith("/peak_memory")]
    mem = {(r["model"], r["dataset"], r["objective"], r["metric"].removesuffix("/peak_memory")): r["value"]
           for _, r in peak.iterrows()}
    for row in rows:
        key = (row["op"], row["case"], row["provider"], row["mode"])
        if key in mem or row["mode"] == "fwd_bwd":
            peak = mem.get(key)
            row["peak MiB"] = "" if peak is None or pd.isna(peak) else f"{peak / 2**20:.1f}"
    table = pd.DataFrame(rows)
    ratios = [f"vs {b}" for b in providers if f"vs {b}" in table.columns]
    order = [c for c in COLUMNS if c in table.columns] + ratios + [c for c in ("peak MiB",) if c in table.columns]
    table = table[order + [c for c in table.columns if c not in order]]
    return tabulate(table.fillna(""), headers="keys", tablefmt="github", showindex=False, disable_numparse=True)


def save_baseline(results_dir: Path, name: str) -> Path:
    target = results_dir.parent / "baselines" / f"{name}.jsonl"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(results_dir / RESULTS_FILE, target)
    return target


def baseline_path(results_dir: Path, name: str) -> Path:
    path = results_dir.parent / "baselines" / f"{name}.jsonl"
    if not path.is_file():
        saved = sorted(p.stem for p in path.parent.glob("*.jsonl")) if path.parent.is_dir() else []
        raise GenbenchError(
            f"No saved kernel baseline {name!r} for this GPU ({path}). Saved baselines here: "
            f"{', '.join(saved) or '(none)'}. Create one with `genbench kernels --save {name}`."
        )
    return path


@dataclass(frozen=True)
class Timing:
    """One timing record as the gate reads it (None values: a failed measurement)."""

    median: float | None
    q20: float | None
    q80: float | None
    versions: dict

    @classmethod
    def of(cls, record: dict) -> "Timing":
        p = record.get("provenance") or {}
        return cls(record["value"], p.get("q20_ms"), p.get("q80_ms"), record.get("versions") or {})


def timings(records: list[dict]) -> dict[tuple[str, str, str, str], Timing]:
    """(op, case, provider, mode) -> Timing, failed measurements included."""
    return {(r["model"], r["dataset"], r["objective"], r["metric"].removesuffix("/time")): Timing.of(r)
            for r in records if r["metric"].endswith("/time")}


def gate_verdict(old: Timing | None, new: Timing | None, own: bool, fail_above_pct: float, floor_ms: float) -> str:
    """The gate's word on one timing. Gated (own kernels): "MISSING", "FAILED", "REGRESSION";
    otherwise "faster", "", "new", "fixed", or a baseline provider's "slower"/"failed" (not gated)."""
    if new is None:
        return "MISSING" if own else "missing (not gated)"
    if new.median is None:
        return "FAILED" if own else "failed (not gated)"
    if old is None:
        return "new"
    if old.median is None:
        return "fixed"
    change_pct = 100.0 * (new.median / old.median - 1.0)
    beyond_floor = abs(new.median - old.median) > floor_ms
    if change_pct > fail_above_pct and beyond_floor and spread_separated(old, new):
        return "REGRESSION" if own else "slower (not gated)"
    if change_pct < -fail_above_pct and beyond_floor and spread_separated(new, old):
        return "faster"
    return ""


def spread_separated(low: Timing, high: Timing) -> bool:
    """high's 20% quantile above low's 80% quantile: the two distributions do not overlap in
    their middle 60% (without recorded quantiles, the medians decide)."""
    if None in (low.q80, high.q20):
        return True
    return high.q20 > low.q80


GATE_FAILURES = ("MISSING", "FAILED", "REGRESSION")


def compare_timings(baseline: list[dict], current: list[dict], fail_above_pct: float,
                    floor_us: float = FLOOR_US, selection: Selection | None = None) -> Comparison:
    """Every timing of either set (per op, case, provider, mode), with the gate's verdict; a
    baseline timing the current selection should have produced and did not is missing."""
    old, new = timings(baseline), timings(current)
    selection = selection or Selection()
    expected = {k for k in old if selection.covers(k[0], k[1], k[2])}
    rows, failures = [], 0
    for key in sorted(expected | new.keys()):
        own = is_own_provider(key[2])
        verdict = gate_verdict(old.get(key), new.get(key), own, fail_above_pct, floor_us * 1e-3)
        failures += verdict in GATE_FAILURES
        before, now = old.get(key), new.get(key)
        change = ""
        if before and now and before.median is not None and now.median is not None:
            change = f"{100.0 * (now.median / before.median - 1.0):+.1f}%"
        rows.append({"op": key[0], "case": key[1], "provider": key[2], "mode": key[3],
                     "baseline µs [q20, q80]": spread_text(before), "now µs [q20, q80]": spread_text(now),
                     "change": change, "gated": "yes" if own else "no", "": verdict})
    note = (f"\n\nGate (providers triton, triton_*): fail when missing or failed, or slower by more than "
            f"{fail_above_pct:g}% with the current q20 above the baseline's q80 and by more than {floor_us:g} µs.")
    versions = {tuple(sorted(r["versions"].items())) for r in baseline[:1] + current[:1]}
    if len(versions) > 1:
        note += "\n\nNote: the baseline was measured with other versions: " + \
            "; ".join(str(dict(v)) for v in versions)
    table = tabulate(pd.DataFrame(rows), headers="keys", tablefmt="github", showindex=False,
                     disable_numparse=True) if rows else "(nothing in common)"
    return Comparison(table + note, failures)


def spread_text(t: Timing | None) -> str:
    if t is None:
        return "(none)"
    if t.median is None:
        return "failed"
    spread = f" [{1e3 * t.q20:.1f}, {1e3 * t.q80:.1f}]" if t.q20 is not None and t.q80 is not None else ""
    return f"{1e3 * t.median:.1f}{spread}"


def run_checks(ops: list[str] | tuple[str, ...] | None) -> tuple[str, bool]:
    """Correctness-only: each op's kernel vs reference (interpreter on CPU)."""
    rows = [row for bench in select(ops) for row in bench.check()]
    ok = all(r["ok"] for r in rows)
    frame = pd.DataFrame(rows).fillna("")  # ops name their error columns differently
    frame = frame[[c for c in frame.columns if c != "ok"] + ["ok"]]
    return tabulate(frame, headers="keys", tablefmt="github", showindex=False, disable_numparse=True), ok


__all__ = ["BENCHES", "MODES", "Selection", "compare_timings", "run_benchmarks", "run_checks", "save_baseline",
           "selected_benches", "timing_table"]
