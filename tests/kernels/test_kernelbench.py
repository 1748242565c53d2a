"""`genbench kernels`: the regression gate, the table's ratios, and behaviour without CUDA.

Timings themselves need a GPU; the logic around them is tested on synthetic records.
"""

from __future__ import annotations

import pytest
import torch

from genbench.cli import main
from genbench.errors import GenbenchError
from genbench.harness.store import RESULTS_FILE, append_records, validate_record
from genbench.kernelbench import baseline_path, compare_timings, save_baseline, timing_table
from genbench.kernelbench.base import Case
from genbench.kernelbench.reparam_kl import bytes_moved


def record(provider, mode, ms, case="B=64,D=16,fp32", metric="time", versions=None):
    value = ms if metric == "time" else ms * 2**20
    return {
        "schema_version": 1, "run_id": "r", "attempt": "a", "suite": "kernels", "model": "reparam_kl",
        "objective": provider, "dataset": case, "seed": 0, "step": None,
        "metric": f"{mode}/{metric}", "value": value, "unit": "ms", "backend": provider, "device": "cuda: X",
        "precision": "fp32", "versions": versions or {"torch": "2.4"}, "git_commit": None, "timestamp": "t",
        "provenance": {"q20_ms": ms * 0.9, "q80_ms": ms * 1.1, "bytes": 1_000_000, "fraction_of_copy_bw": 0.5},
    }


def test_synthetic_records_follow_the_schema():
    validate_record(record("triton", "fwd", 0.01))


def test_compare_flags_only_slowdowns_beyond_the_threshold():
    base = [record("triton", "fwd", 0.010), record("eager", "fwd", 0.040), record("triton", "bwd", 0.020)]
    now = [record("triton", "fwd", 0.0112), record("eager", "fwd", 0.030), record("triton", "bwd", 0.0209)]
    result = compare_timings(base, now, fail_above_pct=10)
    assert result.regressions == 1
    lines = {line.split("|")[3].strip() + "/" + line.split("|")[4].strip(): line for line in result.table.splitlines()[2:]}
    assert "REGRESSION" in lines["triton/fwd"] and "+12.0%" in lines["triton/fwd"]
    assert "faster" in lines["eager/fwd"] and "-25.0%" in lines["eager/fwd"]
    assert "REGRESSION" not in lines["triton/bwd"]  # +4.5%: inside the noise threshold
    assert compare_timings(base, now, fail_above_pct=15).regressions == 0


def test_compare_reports_uncompared_timings_and_version_changes():
    base = [record("triton", "fwd", 0.01)]
    now = [record("triton", "fwd", 0.01, versions={"torch": "2.6"}), record("triton", "bwd", 0.01)]
    result = compare_timings(base, now, 10)
    assert "1 timing(s) present in only one" in result.table
    assert "other versions" in result.table


def test_timing_table_ratios_are_baseline_time_over_triton_time():
    records = [record("triton", "fwd", 0.010), record("eager", "fwd", 0.025), record("compile", "fwd", 0.012),
               record("triton", "fwd_bwd", 0.02), record("triton", "fwd_bwd", 3.0, metric="peak_memory")]
    table = timing_table(records)
    triton_fwd = next(line for line in table.splitlines() if "| triton" in line and "| fwd " in line)
    assert "2.50x" in triton_fwd and "1.20x" in triton_fwd
    assert "3.0" in next(line for line in table.splitlines() if "fwd_bwd" in line)  # peak MiB


def test_failed_measurements_show_as_failed_not_dropped():
    failed = record("compile", "bwd", 0.01)
    failed["value"], failed["provenance"] = None, {"error": "RuntimeError: retain_graph"}
    table = timing_table([record("triton", "bwd", 0.01), failed])
    assert "failed: RuntimeError: retain_graph" in table
    triton_row = next(line for line in table.splitlines() if "| triton" in line)
    assert "x" not in triton_row.split("|")[-2]  # no ratio against a failed baseline


def test_save_and_find_baselines(tmp_path):
    run = tmp_path / "nvidia-x" / "20260101T000000Z"
    run.mkdir(parents=True)
    append_records(run / RESULTS_FILE, [record("triton", "fwd", 0.01)])
    saved = save_baseline(run, "main")
    assert saved == tmp_path / "nvidia-x" / "baselines" / "main.jsonl"
    assert baseline_path(run, "main") == saved
    with pytest.raises(GenbenchError, match="Saved baselines here: main"):
        baseline_path(run, "other")


def test_bytes_moved_counts_inputs_and_outputs_only():
    case = Case({"B": 10, "D": 8}, torch.bfloat16)
    assert bytes_moved(case, "fwd") == 4 * 80 * 2 + 4 * 10  # mu, logvar, eps, z; kl fp32
    assert bytes_moved(case, "bwd") == 6 * 80 * 2 + 4 * 10  # mu, logvar, eps, dz, dmu, dlogvar; dkl
    assert bytes_moved(case, "fwd_bwd") == bytes_moved(case, "fwd") + bytes_moved(case, "bwd")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without CUDA")
def test_timing_without_cuda_refuses_with_a_clear_message(capsys, tmp_path):
    assert main(["kernels", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "CUDA" in err and "--check" in err and "Traceback" not in err
    assert not any(tmp_path.iterdir())


def test_check_mode_compares_kernels_with_references(capsys):
    assert main(["kernels", "--check"]) == 0
    out = capsys.readouterr().out
    assert "reparam_kl" in out and "False" not in out


# ----------------------------------------------------------------------------- vq_nearest


def vq_record(provider, ms, case="N=8192,K=512,D=64,bf16", metric="time", mode="fwd", peak_tflops=800.0):
    """A forward-only record with a FLOP count, as bench_records writes for vq_nearest."""
    r = record(provider, mode, ms, case=case, metric=metric)
    r["model"], r["precision"] = "vq_nearest", "bf16"
    if metric == "time":
        r["provenance"].update({"flops": 2 * 8192 * 512 * 64, "matmul_peak_tflops": peak_tflops})
    return r


def test_vq_bench_is_registered_forward_only_with_flops_and_its_check_passes():
    from genbench.kernelbench import BENCHES
    from genbench.kernelbench.vq import OOM_SHAPE, cases, flops

    bench = BENCHES.get("vq_nearest")
    assert bench.modes == ("fwd",) and bench.peak_memory_mode == "fwd"
    assert set(bench.providers) == {"triton", "eager", "compile"}
    assert flops(Case({"N": 10, "K": 3, "D": 4}, torch.float32), "fwd") == 2 * 10 * 3 * 4
    assert bench.bytes_moved(Case({"N": 10, "K": 3, "D": 4}, torch.bfloat16), "fwd") == (10 + 3) * 4 * 2 + 8 * 10
    n, k, _ = OOM_SHAPE
    assert any(c.shape["N"] * c.shape["K"] * 4 > 80 * 2**30 for c in cases())  # eager cannot fit it
    assert n * k * 4 > 200 * 2**30
    rows = bench.check()
    assert rows and all(r["ok"] for r in rows), rows


def test_reparam_bench_keeps_its_three_modes_and_no_flops():
    from genbench.kernelbench import BENCHES

    bench = BENCHES.get("reparam_kl")
    assert bench.modes == ("fwd", "bwd", "fwd_bwd") and bench.flops is None
    assert bench.peak_memory_mode == "fwd_bwd"


def test_timing_table_shows_tflops_and_fraction_of_matmul_peak():
    records = [vq_record("triton", 0.001), vq_record("eager", 0.010),
               vq_record("triton", 5 * 2**20 / 2**20, metric="peak_memory")]
    table = timing_table(records)
    header = table.splitlines()[0]
    assert "TFLOP/s" in header and "%peak" in header
    triton_row = next(line for line in table.splitlines() if "| triton" in line)
    tflops = 2 * 8192 * 512 * 64 / 1e-6 / 1e12  # 536.9
    assert f"{tflops:.1f}" in triton_row and f"| {100 * tflops / 800:.0f} " in triton_row
    assert "10.00x" in triton_row  # vs eager
    assert "5.0" in triton_row.split("|")[-2]  # peak MiB on the fwd row of a forward-only op


def test_timing_table_without_flops_has_no_tflops_columns():
    table = timing_table([record("triton", "fwd", 0.01), record("eager", "fwd", 0.02)])
    assert "TFLOP/s" not in table and "%peak" not in table


def test_out_of_memory_provider_shows_failed_and_no_ratio():
    oom = vq_record("eager", 0.0, case="N=4194304,K=16384,D=64,bf16")
    oom["value"], oom["provenance"] = None, {"error": "OutOfMemoryError: CUDA out of memory. Tried to allocate 256.00 GiB"}
    table = timing_table([vq_record("triton", 20.0, case="N=4194304,K=16384,D=64,bf16"), oom])
    assert "failed: OutOfMemoryError: CUDA out of memory" in table
    triton_row = next(line for line in table.splitlines() if "| triton" in line)
    assert "x |" not in triton_row


def test_bench_records_for_a_forward_only_op_with_flops(monkeypatch):
    """bench_records' record logic, with the CUDA measurements replaced by constants."""
    from genbench.kernelbench import base

    monkeypatch.setattr(base, "copy_bandwidth_gbps", lambda device: 3000.0)
    monkeypatch.setattr(base, "matmul_peak_tflops", lambda device, dtype: 800.0)
    monkeypatch.setattr(base, "time_ms", lambda fn, g: (fn(), {"median": 0.5, "q20": 0.4, "q80": 0.6})[1])
    monkeypatch.setattr(base, "peak_memory_bytes", lambda w, device, mode: (w.by_mode(mode)(), 1024)[1])
    monkeypatch.setattr(base.torch.cuda, "empty_cache", lambda: None)
    ran = []

    def failing(case):
        def forward():
            raise RuntimeError("out of memory")
        return base.Workload(forward=forward)

    bench = base.OpBench(op="toy", cases=lambda: [Case({"N": 4}, torch.float32)],
                         providers={"triton": lambda c: base.Workload(forward=lambda: ran.append(1)),
                                    "eager": failing},
                         bytes_moved=lambda c, m: 1000, check=list, modes=("fwd",),
                         flops=lambda c, m: 10**9)
    records = base.bench_records(bench, torch.device("cpu"), "a")
    by = {(r["objective"], r["metric"]): r for r in records}
    assert set(by) == {("triton", "fwd/time"), ("triton", "fwd/bandwidth"), ("triton", "fwd/throughput"),
                       ("triton", "fwd/peak_memory"), ("eager", "fwd/time"), ("eager", "fwd/peak_memory")}
    assert by[("triton", "fwd/throughput")]["value"] == pytest.approx(2.0)  # 1e9 FLOP in 0.5 ms
    assert by[("triton", "fwd/time")]["provenance"]["fraction_of_matmul_peak"] == pytest.approx(2.0 / 800)
    assert by[("eager", "fwd/time")]["value"] is None and "out of memory" in by[("eager", "fwd/time")]["provenance"]["error"]
    assert by[("eager", "fwd/peak_memory")]["value"] is None
    for r in records:
        validate_record(r)
