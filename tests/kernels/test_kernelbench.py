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
