"""`genbench kernels`: time each kernel op against its baselines, save and compare.

Layout of the results (one folder per GPU kind, since timings only compare on one):
    results/kernels/<gpu>/<UTC stamp>/results.jsonl   records (the schema of harness/store.py)
    results/kernels/<gpu>/<UTC stamp>/table.md        the table printed to the terminal
    results/kernels/<gpu>/baselines/<NAME>.jsonl      saved with --save NAME

`--compare NAME --fail-above PCT` compares the median times with a saved baseline of the
same GPU kind and exits with code 1 when any provider's time rose by more than PCT.
Without CUDA the timing mode refuses (CPU timings of GPU kernels mean nothing); `--check`
runs the correctness-only interpreter comparison instead.
"""

from __future__ import annotations

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
    "`graph µs` is do_bench_cudagraph (hot cache), taken for kernels under 20 µs. "
    "GB/s from the bytes the op must move; `%copy` = that over the device-to-device copy "
    "bandwidth measured in the same run. `vs <provider>` (on triton's rows) = that provider's time / "
    "triton's time for the same case and mode (> 1: triton faster). Peak memory: "
    "max_memory_allocated over one forward+backward (forward-only ops: one forward; train_step: one "
    "training step). Ops with a FLOP count also show TFLOP/s from useful FLOPs only and `%peak` = that "
    "over torch.matmul (8192^3, the case's dtype; fp32 under the case's TF32 setting, `tf32=on|off` in "
    "the case, else without TF32) measured in the same run. Benches of whole training steps show "
    "examples/s instead of GB/s. A `failed:` time is a provider that errored (e.g. out of memory)."
)


@dataclass(frozen=True)
class Comparison:
    table: str
    regressions: int


def select(ops: list[str] | None) -> list:
    return [BENCHES.get(op) for op in (ops or BENCHES.names())]


def run_benchmarks(ops: list[str] | None, out_root: Path, progress=print) -> Path:
    """Benchmark the ops on the current CUDA device; return the folder with the records."""
    import torch

    from genbench.kernelbench.base import bench_records, gpu_slug

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
    for bench in select(ops):
        append_records(out / RESULTS_FILE, bench_records(bench, device, stamp, progress))
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


def compare_timings(baseline: list[dict], current: list[dict], fail_above_pct: float) -> Comparison:
    """Median time per (op, case, provider, mode): current vs baseline."""
    def times(records):
        return {(r["model"], r["dataset"], r["objective"], r["metric"]): r["value"]
                for r in records if r["metric"].endswith("/time") and r["value"] is not None}

    old, new = times(baseline), times(current)
    rows, regressions = [], 0
    for key in sorted(old.keys() & new.keys()):
        change = 100.0 * (new[key] / old[key] - 1.0)
        verdict = "REGRESSION" if change > fail_above_pct else ("faster" if change < -fail_above_pct else "")
        regressions += verdict == "REGRESSION"
        rows.append({"op": key[0], "case": key[1], "provider": key[2], "mode": key[3].removesuffix("/time"),
                     "baseline µs": f"{1e3 * old[key]:.1f}", "now µs": f"{1e3 * new[key]:.1f}",
                     "change": f"{change:+.1f}%", "": verdict})
    missing = len(old.keys() ^ new.keys())
    note = f"\n\n{missing} timing(s) present in only one of the two sets were not compared." if missing else ""
    versions = {tuple(sorted(r["versions"].items())) for r in baseline[:1] + current[:1]}
    if len(versions) > 1:
        note += "\n\nNote: the baseline was measured with other versions: " + \
            "; ".join(str(dict(v)) for v in versions)
    table = tabulate(pd.DataFrame(rows), headers="keys", tablefmt="github", showindex=False, disable_numparse=True) if rows else "(nothing in common)"
    return Comparison(table + note, regressions)


def run_checks(ops: list[str] | None) -> tuple[str, bool]:
    """Correctness-only: each op's kernel vs reference (interpreter on CPU)."""
    rows = [row for bench in select(ops) for row in bench.check()]
    ok = all(r["ok"] for r in rows)
    frame = pd.DataFrame(rows).fillna("")  # ops name their error columns differently
    frame = frame[[c for c in frame.columns if c != "ok"] + ["ok"]]
    return tabulate(frame, headers="keys", tablefmt="github", showindex=False, disable_numparse=True), ok


__all__ = ["BENCHES", "MODES", "compare_timings", "run_benchmarks", "run_checks", "save_baseline", "timing_table"]
