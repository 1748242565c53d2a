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


def timed(provider, mode, us, spread=0.02, **kwargs):
    """A timing record of `us` microseconds whose q20/q80 sit `spread` (a fraction) either side."""
    r = record(provider, mode, us * 1e-3, **kwargs)
    r["provenance"].update({"q20_ms": us * 1e-3 * (1 - spread), "q80_ms": us * 1e-3 * (1 + spread)})
    return r


def failed(provider, mode, **kwargs):
    r = record(provider, mode, 0.0, **kwargs)
    r["value"], r["provenance"] = None, {"error": "RuntimeError: launch failed"}
    return r


def verdicts(result) -> dict[str, str]:
    """provider/mode -> the gate's verdict, from the comparison table."""
    names = header(result.table)
    rows = [dict(zip(names, (c.strip() for c in line.strip("|").split("|"))))
            for line in result.table.split("\n\n")[0].splitlines()[2:]]
    return {f"{r['provider']}/{r['mode']}": r[""] for r in rows}


def test_gate_fails_a_kernel_slower_beyond_threshold_spread_and_floor():
    base = [timed("triton", "fwd", 100.0), timed("triton", "bwd", 200.0)]
    now = [timed("triton", "fwd", 130.0), timed("triton", "bwd", 205.0)]
    result = compare_timings(base, now, fail_above_pct=10)
    assert result.regressions == 1
    assert verdicts(result) == {"triton/fwd": "REGRESSION", "triton/bwd": ""}  # +2.5%: under the threshold
    assert "+30.0%" in result.table
    assert compare_timings(base, now, fail_above_pct=35).regressions == 0


def test_gate_passes_a_change_within_the_recorded_spread():
    """+15% on the median, but the runs' middle 60% overlap (q20 now 115·0.8 = 92 < q80 before 120)."""
    base, now = [timed("triton", "fwd", 100.0, spread=0.2)], [timed("triton", "fwd", 115.0, spread=0.2)]
    result = compare_timings(base, now, fail_above_pct=10)
    assert result.regressions == 0 and verdicts(result)["triton/fwd"] == ""
    tight = compare_timings([timed("triton", "fwd", 100.0)], [timed("triton", "fwd", 115.0)], fail_above_pct=10)
    assert tight.regressions == 1  # the same medians with a tight spread do fail


def test_gate_fails_a_failed_or_missing_timing_of_our_kernels():
    base = [timed("triton", "fwd", 100.0), timed("triton", "bwd", 100.0), timed("triton", "fwd_bwd", 200.0)]
    now = [failed("triton", "fwd"), timed("triton", "fwd_bwd", 200.0)]  # bwd not measured at all
    result = compare_timings(base, now, fail_above_pct=10)
    assert verdicts(result) == {"triton/fwd": "FAILED", "triton/bwd": "MISSING", "triton/fwd_bwd": ""}
    assert result.regressions == 2


def test_gate_fails_a_timing_that_failed_in_both_sets():
    assert compare_timings([failed("triton", "fwd")], [failed("triton", "fwd")], 10).regressions == 1


def test_gate_leaves_baseline_providers_ungated():
    base = [timed("eager", "fwd", 100.0), timed("compile", "fwd", 100.0), timed("cudnn", "bwd", 100.0)]
    now = [timed("eager", "fwd", 300.0), failed("compile", "fwd")]  # cudnn bwd missing
    result = compare_timings(base, now, fail_above_pct=10)
    assert result.regressions == 0
    assert verdicts(result) == {"eager/fwd": "slower (not gated)", "compile/fwd": "failed (not gated)",
                                "cudnn/bwd": "missing (not gated)"}


def test_gate_covers_every_triton_variant_provider():
    result = compare_timings([timed("triton_tf32x3", "fwd", 100.0)], [timed("triton_tf32x3", "fwd", 200.0)], 10)
    assert result.regressions == 1


def test_gate_absolute_floor_for_microsecond_kernels():
    """5 µs -> 6.5 µs is +30% with separated spreads, but 1.5 µs is launch jitter below the 2 µs floor."""
    base, now = [timed("triton", "fwd", 5.0)], [timed("triton", "fwd", 6.5)]
    assert compare_timings(base, now, fail_above_pct=10).regressions == 0
    assert compare_timings(base, now, fail_above_pct=10, floor_us=1.0).regressions == 1


def test_gate_expects_only_what_the_selection_times():
    """A --quick or --ops run is not missing the baseline's other timings; a full run is."""
    from genbench.kernelbench import Selection

    other = record("triton", "fwd", 0.1, case="B=1,D=1,fp32")
    other["model"] = "attention"
    base = [timed("triton", "fwd", 100.0), other]
    now = [timed("triton", "fwd", 100.0)]
    assert compare_timings(base, now, 10).regressions == 1  # attention's timing is missing
    assert compare_timings(base, now, 10, selection=Selection(ops=("reparam_kl",))).regressions == 0
    assert compare_timings(base, now, 10, selection=Selection(cases=("B=64*",))).regressions == 0
    assert compare_timings(base, now, 10, selection=Selection(providers=("eager",))).regressions == 0


def test_compare_reports_new_timings_and_version_changes():
    base = [timed("triton", "fwd", 10.0)]
    now = [timed("triton", "fwd", 10.0, versions={"torch": "2.6"}), timed("triton", "bwd", 10.0)]
    result = compare_timings(base, now, 10)
    assert verdicts(result)["triton/bwd"] == "new" and result.regressions == 0
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
    assert set(bench.providers) == {"triton", "triton_tf32x3", "eager", "compile"}
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


# ----------------------------------------------------------------------------- conv_transpose2d


def conv_record(provider, mode, ms, op="conv_transpose2d", case="B=128,C_in=512,C_out=256,H=8,W=8,k=4,s=2,p=1,bf16",
                metric="time"):
    r = record(provider, mode, ms, case=case, metric=metric)
    r["model"], r["precision"] = op, "bf16"
    if metric == "time":
        r["provenance"].update({"flops": 2 * 10**9, "matmul_peak_tflops": 800.0})  # 200 TFLOP/s at 10 µs
    return r


def header(table: str) -> list[str]:
    return [c.strip() for c in table.splitlines()[0].strip("|").split("|")]


def row_of(table: str, provider: str, mode: str = "fwd", op: str | None = None) -> dict[str, str]:
    names = header(table)
    for line in table.splitlines()[2:]:
        cells = dict(zip(names, (c.strip() for c in line.strip("|").split("|"))))
        if cells["provider"] == provider and cells["mode"] == mode and (op is None or cells["op"] == op):
            return cells
    raise AssertionError(f"no {provider}/{mode} row in\n{table}")


def test_conv_transpose_benches_are_registered_with_their_providers_and_modes():
    from genbench.kernelbench import BENCHES

    plain, epilogue, bn = (BENCHES.get(n) for n in ("conv_transpose2d", "conv_transpose2d_epilogue", "conv_transpose2d_bn"))
    assert list(plain.providers) == ["triton", "cudnn", "cudnn_tuned"] and plain.modes == ("fwd", "bwd", "fwd_bwd")
    assert list(epilogue.providers) == ["triton", "eager", "compile"] and epilogue.modes == ("fwd", "bwd", "fwd_bwd")
    assert list(bn.providers) == ["triton", "eager", "compile"] and bn.modes == ("fwd",)
    assert all(b.flops is not None and b.bytes_moved is not None for b in (plain, epilogue, bn))


def test_conv_transpose_cases_cover_the_layers_layouts_and_dtypes():
    from genbench.kernelbench.conv_transpose import (
        CHANNELS_LAST,
        LAYERS,
        MAIN_LAYERS,
        activation_of,
        bn_cases,
        cases,
        layer,
    )

    all_cases = cases()
    assert len(all_cases) == len(LAYERS) + 2 * len(MAIN_LAYERS)
    keys = [(c.label, c.dtype_name) for c in all_cases]
    assert len(set(keys)) == len(keys)  # every case is its own record key
    bf16 = [c for c in all_cases if c.dtype == torch.bfloat16]
    assert {layer(c) for c in bf16 if not c.variant} == set(LAYERS)
    assert {layer(c) for c in bf16 if c.variant == CHANNELS_LAST} == set(MAIN_LAYERS)
    fp32 = [c for c in all_cases if c.dtype == torch.float32]
    assert {layer(c) for c in fp32} == set(MAIN_LAYERS)
    assert all(c.allow_tf32 == torch.backends.cudnn.allow_tf32 for c in fp32)  # the flag cuDNN follows
    assert all(c.allow_tf32 is None for c in bf16)
    nchw = next(c for c in bf16 if layer(c) == (128, 512, 256, 8) and not c.variant)
    cl = next(c for c in bf16 if layer(c) == (128, 512, 256, 8) and c.variant)
    assert nchw.label == "B=128,C_in=512,C_out=256,H=8,W=8,k=4,s=2,p=1"
    assert cl.label == nchw.label + ",channels_last"
    f32 = next(c for c in fp32 if layer(c) == (128, 512, 256, 8))
    assert f32.label == nchw.label + f",tf32={'on' if torch.backends.cudnn.allow_tf32 else 'off'}"
    assert [activation_of(c) for c in all_cases if layer(c) == (128, 64, 3, 32)] == ["tanh"]
    assert {activation_of(c) for c in all_cases if layer(c) != (128, 64, 3, 32)} == {"relu"}
    assert all(layer(c) != (128, 64, 3, 32) for c in bn_cases())  # the output layer has no BatchNorm
    assert len(bn_cases()) == len(all_cases) - 1


def test_case_label_shows_variant_and_tf32_only_when_set():
    assert Case({"B": 2}, torch.float32).label == "B=2"
    assert Case({"B": 2}, torch.float32, "channels_last").label == "B=2,channels_last"
    assert Case({"B": 2}, torch.float32, allow_tf32=False).label == "B=2,tf32=off"
    assert Case({"B": 2}, torch.float32, "x", True).label == "B=2,x,tf32=on"


def brute_force_useful_macs(b, c_in, c_out, h, w, k, s, p, op) -> int:
    """(input position, tap) pairs whose output position lies in the output, counted one by one."""
    h_out, w_out = (h - 1) * s - 2 * p + k + op, (w - 1) * s - 2 * p + k + op
    pairs = sum(1 for i in range(h) for j in range(w) for kh in range(k) for kw in range(k)
                if 0 <= i * s - p + kh < h_out and 0 <= j * s - p + kw < w_out)
    return b * c_in * c_out * pairs


def zero_inserted_products(h, w, k, s, p, op) -> tuple[int, int]:
    """(nonzero, all) per-channel-pair products of the explicit zero-inserted formulation:
    insert s-1 zeros between input elements, pad by k-1-p (plus output_padding at the end),
    then a dense k x k convolution. Only products with a real input element are useful."""
    import torch.nn.functional as F

    real = torch.zeros(1, 1, (h - 1) * s + 1, (w - 1) * s + 1, dtype=torch.float64)
    real[..., ::s, ::s] = 1.0  # 1 where an input element sits, 0 at inserted zeros
    e = k - 1 - p
    real = F.pad(real, (e, e + op, e, e + op))  # padding zeros are not useful either
    hits = F.conv2d(real, torch.ones(1, 1, k, k, dtype=torch.float64))  # per output: taps on real elements
    return int(hits.sum()), hits.numel() * k * k


@pytest.mark.parametrize("h, w, k, s, p, op", [(8, 8, 4, 2, 1, 0), (5, 3, 4, 2, 1, 1), (4, 7, 3, 2, 0, 1),
                                              (3, 5, 5, 1, 2, 0), (6, 6, 3, 2, 1, 1)])
def test_useful_macs_match_a_brute_force_count_of_nonzero_products(h, w, k, s, p, op):
    from genbench.baselines.conv_transpose import useful_macs

    b, c_in, c_out = 2, 3, 5
    useful = useful_macs(b, c_in, c_out, (h, w), (k, k), (s, s), (p, p), (op, op))
    assert useful == brute_force_useful_macs(b, c_in, c_out, h, w, k, s, p, op)
    nonzero, dense = zero_inserted_products(h, w, k, s, p, op)
    assert useful == b * c_in * c_out * nonzero
    if s == 2:
        assert dense > 3 * nonzero  # stride 2: about 3/4 of the zero-inserted products multiply a zero


def test_conv_transpose_flops_count_useful_macs_forward_dgrad_and_wgrad():
    from genbench.kernelbench.conv_transpose import flops, layer_case

    case = layer_case(128, 512, 256, 8, torch.bfloat16)
    # k4 s2 p1 on 8 px: 8 inputs x 4 taps, less the 2 taps that land outside 16 outputs = 30 per axis
    macs = 128 * 512 * 256 * 30 * 30
    assert flops(case, "fwd") == 2 * macs
    assert flops(case, "bwd") == 2 * flops(case, "fwd")  # input gradient + weight gradient
    assert flops(case, "fwd_bwd") == 3 * flops(case, "fwd")


def test_conv_transpose_bytes_moved_follow_the_docstring_formulas():
    from genbench.kernelbench import BENCHES
    from genbench.kernelbench.conv_transpose import layer_case

    case = layer_case(2, 3, 5, 4, torch.bfloat16)  # y: 2 x 5 x 8 x 8
    x, y, wt = 2 * 3 * 4 * 4, 2 * 5 * 8 * 8, 3 * 5 * 16
    plain, epilogue, bn = (BENCHES.get(n).bytes_moved for n in ("conv_transpose2d", "conv_transpose2d_epilogue",
                                                                  "conv_transpose2d_bn"))
    assert plain(case, "fwd") == (x + wt + y) * 2 + 5 * 2
    assert plain(case, "bwd") == (y + 2 * x + 2 * wt) * 2 + 5 * 2  # dy, x, W read; dx, dW, db written
    assert plain(case, "fwd_bwd") == plain(case, "fwd") + plain(case, "bwd")
    assert epilogue(case, "fwd") == plain(case, "fwd")  # the fused epilogue writes y once
    assert epilogue(case, "bwd") == plain(case, "bwd") + y * 2  # y read for the activation's derivative
    assert bn(case, "fwd") == (x + wt + y) * 2 + 2 * 5 * 4  # no bias; fp32 scale and shift


def test_timing_table_ratio_columns_follow_each_ops_providers():
    conv = [conv_record("triton", "fwd", 0.010), conv_record("cudnn", "fwd", 0.015)]
    table = timing_table(conv)
    assert "vs cudnn" in header(table) and "vs eager" not in header(table) and "vs compile" not in header(table)
    assert row_of(table, "triton")["vs cudnn"] == "1.50x"
    assert "vs cudnn" not in row_of(table, "cudnn") or row_of(table, "cudnn")["vs cudnn"] == ""
    # old ops keep their columns, in their old order; mixed tables give each op its own ratios
    old = [record("triton", "fwd", 0.010), record("eager", "fwd", 0.025), record("compile", "fwd", 0.012),
           record("triton", "fwd_bwd", 0.02), record("triton", "fwd_bwd", 3.0, metric="peak_memory")]
    assert header(timing_table(old)) == ["op", "case", "mode", "provider", "median µs", "[q20, q80] µs", "graph µs",
                                         "GB/s", "%copy", "vs eager", "vs compile", "peak MiB"]
    mixed = timing_table(old + conv)
    assert header(mixed)[-4:] == ["vs eager", "vs compile", "vs cudnn", "peak MiB"]
    assert row_of(mixed, "triton", op="reparam_kl")["vs eager"] == "2.50x"
    assert row_of(mixed, "triton", op="reparam_kl")["vs cudnn"] == ""
    conv_row = row_of(mixed, "triton", op="conv_transpose2d")
    assert conv_row["vs cudnn"] == "1.50x" and conv_row["vs eager"] == "" and conv_row["TFLOP/s"] == "200.0"


def test_timing_table_epilogue_op_compares_with_eager_and_compile():
    op = "conv_transpose2d_epilogue"
    table = timing_table([conv_record("triton", "bwd", 0.010, op=op), conv_record("eager", "bwd", 0.013, op=op),
                          conv_record("compile", "bwd", 0.011, op=op)])
    row = row_of(table, "triton", mode="bwd")
    assert row["vs eager"] == "1.30x" and row["vs compile"] == "1.10x"


def train_record(provider, ms, metric="time"):
    r = record(provider, "fwd_bwd", ms, case="B=128,C=3,H=64,W=64,gan-dcgan,tf32=on,fp32", metric=metric)
    r["model"] = "train_step"
    if metric == "time":
        r["provenance"] = {"q20_ms": ms * 0.9, "q80_ms": ms * 1.1, "examples": 128}
    return r


def test_timing_table_shows_examples_per_second_and_no_bandwidth_without_bytes():
    table = timing_table([train_record("triton", 20.0), train_record("eager", 30.0),
                          train_record("triton", 5.0, metric="peak_memory")])
    names = header(table)
    assert "examples/s" in names and "GB/s" not in names and "%copy" not in names and "TFLOP/s" not in names
    row = row_of(table, "triton", mode="fwd_bwd")
    assert row["examples/s"] == "6400" and row["vs eager"] == "1.50x" and row["peak MiB"] == "5.0"
    assert row_of(table, "eager", mode="fwd_bwd")["examples/s"] == f"{128 / 0.030:.0f}"
    # beside an op with bytes, the train rows leave GB/s blank and the op's rows examples/s
    mixed = timing_table([train_record("triton", 20.0), record("triton", "fwd", 0.01)])
    assert "GB/s" in header(mixed) and "examples/s" in header(mixed)
    assert row_of(mixed, "triton", mode="fwd_bwd")["GB/s"] == "" and row_of(mixed, "triton")["examples/s"] == ""


def patch_measurements(monkeypatch, base, peaks=None, timings=None):
    monkeypatch.setattr(base, "copy_bandwidth_gbps", lambda device: 3000.0)

    def peak(device, dtype, allow_tf32=None):
        if peaks is not None:
            peaks.append((dtype, allow_tf32))
        return 800.0 if allow_tf32 is None else 400.0

    def time_ms(fn, grad_to_none, **options):
        if timings is not None:
            timings.append(options)
        fn()
        return {"median": 0.5, "q20": 0.4, "q80": 0.6}

    monkeypatch.setattr(base, "matmul_peak_tflops", peak)
    monkeypatch.setattr(base, "time_ms", time_ms)
    monkeypatch.setattr(base, "peak_memory_bytes", lambda w, device, mode: (w.by_mode(mode)(), 1024)[1])
    monkeypatch.setattr(base.torch.cuda, "empty_cache", lambda: None)


def test_bench_records_without_bytes_with_examples_and_a_failing_build(monkeypatch):
    from genbench.kernelbench import base

    timings = []
    patch_measurements(monkeypatch, base, timings=timings)
    monkeypatch.setattr(base, "copy_bandwidth_gbps", lambda device: pytest.fail("no bytes: no copy peak needed"))

    def broken(case):
        raise RuntimeError("compile failed")

    bench = base.OpBench(op="toy_step", cases=lambda: [Case({"B": 8}, torch.float32, "m")],
                         providers={"triton": lambda c: base.Workload(forward_backward=lambda: None,
                                                                      provenance={"kernel_backends": {"op": "triton"}}),
                                    "eager": broken},
                         bytes_moved=None, check=list, modes=("fwd_bwd",), examples=lambda c: c.shape["B"],
                         do_bench_options={"rep": 1000})
    records = base.bench_records(bench, torch.device("cpu"), "a")
    by = {(r["objective"], r["metric"]): r for r in records}
    assert set(by) == {("triton", "fwd_bwd/time"), ("triton", "fwd_bwd/examples_per_second"),
                       ("triton", "fwd_bwd/peak_memory"), ("eager", "fwd_bwd/time")}
    assert by[("triton", "fwd_bwd/examples_per_second")]["value"] == pytest.approx(8 / 0.5e-3)
    assert by[("triton", "fwd_bwd/examples_per_second")]["unit"] == "examples/s"
    prov = by[("triton", "fwd_bwd/time")]["provenance"]
    assert "bytes" not in prov and prov["examples"] == 8 and prov["kernel_backends"] == {"op": "triton"}
    assert by[("eager", "fwd_bwd/time")]["value"] is None
    assert "compile failed" in by[("eager", "fwd_bwd/time")]["provenance"]["error"]
    assert timings == [{"rep": 1000}]
    for r in records:
        validate_record(r)
    assert "examples/s" in timing_table(records)


def test_bench_records_take_the_matmul_peak_under_the_cases_tf32_setting(monkeypatch):
    from genbench.kernelbench import base

    peaks = []
    patch_measurements(monkeypatch, base, peaks=peaks)
    cases = [Case({"N": 1}, torch.float32, allow_tf32=True), Case({"N": 1}, torch.float32),
             Case({"N": 1}, torch.bfloat16)]
    bench = base.OpBench(op="toy", cases=lambda: cases, providers={"triton": lambda c: base.Workload(forward=lambda: 1)},
                         bytes_moved=lambda c, m: 1000, check=list, modes=("fwd",), flops=lambda c, m: 10**9)
    records = base.bench_records(bench, torch.device("cpu"), "a")
    assert peaks == [(torch.float32, True), (torch.float32, None), (torch.bfloat16, None)]
    times = {r["dataset"]: r["provenance"] for r in records if r["metric"] == "fwd/time"}
    assert times["N=1,tf32=on,fp32"]["matmul_peak_tflops"] == 400.0
    assert times["N=1,tf32=on,fp32"]["matmul_allow_tf32"] is True and times["N=1,tf32=on,fp32"]["case_allow_tf32"]
    assert times["N=1,fp32"]["matmul_peak_tflops"] == 800.0
    assert times["N=1,fp32"]["matmul_allow_tf32"] == bool(torch.backends.cuda.matmul.allow_tf32)
    assert times["N=1,bf16"]["matmul_allow_tf32"] is None  # TF32 does not apply to bf16


def test_matmul_peak_is_cached_per_tf32_flag_and_restores_torchs_flag(monkeypatch):
    from genbench.kernelbench import base

    seen = []
    monkeypatch.setattr(base, "MATMUL_PEAK_SIZE", 4)
    monkeypatch.setattr(base, "time_ms", lambda fn, g: (fn(), seen.append(torch.backends.cuda.matmul.allow_tf32),
                                                         {"median": 1.0})[2])
    before = torch.backends.cuda.matmul.allow_tf32
    base._matmul_peak_tflops.cache_clear()
    try:
        cpu = torch.device("cpu")
        base.matmul_peak_tflops(cpu, torch.float32, allow_tf32=True)
        base.matmul_peak_tflops(cpu, torch.float32, allow_tf32=True)  # cached
        base.matmul_peak_tflops(cpu, torch.float32, allow_tf32=False)
        base.matmul_peak_tflops(cpu, torch.float32)  # torch's flag as it stands: same key as its value
        base.matmul_peak_tflops(cpu, torch.bfloat16, allow_tf32=True)  # TF32 does not apply: flag left alone
        assert seen == [True, False, before]
        assert torch.backends.cuda.matmul.allow_tf32 == before
    finally:
        base._matmul_peak_tflops.cache_clear()
        torch.backends.cuda.matmul.allow_tf32 = before


def test_conv_transpose_checks_pass_in_the_interpreter():
    from genbench.kernelbench import run_checks

    table, ok = run_checks(["conv_transpose2d"])
    assert ok, table
    assert table.count("| conv_transpose2d ") == 3 and "channels_last" in table


def tiny_case(dtype=torch.float32, variant="", allow_tf32=None):
    from genbench.kernelbench.conv_transpose import layer_case

    return layer_case(2, 3, 4, 3, dtype, variant, allow_tf32)


@pytest.mark.parametrize("variant, tf32", [("", False), ("channels_last", False), ("", True)],
                         ids=["nchw", "channels_last", "tf32-as-cudnn"])
def test_conv_transpose_workloads_run_every_mode_and_agree_across_providers(variant, tf32):
    """The workload builders at a tiny size: cuDNN's provider (the reference, CPU here) and
    the kernel (the interpreter without CUDA) give the same forward, and every mode runs.
    tf32: an fp32 case listed with cuDNN's TF32 flag, which the kernel is then given."""
    from genbench.kernelbench.conv_transpose import activation_of, training_workload

    device = "cuda" if torch.cuda.is_available() else "cpu"
    case = tiny_case(variant=variant, allow_tf32=bool(torch.backends.cudnn.allow_tf32) if tf32 else None)
    tolerance = {"rtol": 1e-2, "atol": 1e-2} if tf32 and device == "cuda" else {"rtol": 1e-4, "atol": 1e-5}
    outputs = {}
    for provider in ("triton", "cudnn", "cudnn_tuned"):
        torch.manual_seed(0)  # same inputs for every provider
        work = training_workload(provider, activation_of, device)(case)
        for mode in ("fwd", "bwd", "fwd_bwd"):
            work.by_mode(mode)()
        x = work.grad_to_none[0]
        assert x.is_contiguous(memory_format=torch.channels_last) == (variant == "channels_last")
        outputs[provider] = work.forward().detach().cpu()
        assert outputs[provider].shape == (2, 4, 6, 6)
        assert work.provenance["activation"] == "relu" and work.provenance["memory_format"] == (variant or "contiguous")
        assert work.provenance["cudnn_benchmark"] == (provider == "cudnn_tuned") or torch.backends.cudnn.benchmark
    torch.testing.assert_close(outputs["triton"], outputs["cudnn"], **tolerance)
    torch.testing.assert_close(outputs["cudnn_tuned"], outputs["cudnn"], **tolerance)
    assert not torch.backends.cudnn.benchmark  # the tuned provider restores the global flag


def test_conv_transpose_bn_workload_is_forward_only_and_matches():
    from genbench.kernelbench.conv_transpose import bn_workload

    device = "cuda" if torch.cuda.is_available() else "cpu"
    outputs = {}
    for provider in ("triton", "eager"):
        torch.manual_seed(0)
        work = bn_workload(provider, device)(tiny_case())
        assert work.backward is None and work.forward_backward is None
        outputs[provider] = work.forward().cpu()
    assert (outputs["eager"] >= 0).all()
    torch.testing.assert_close(outputs["triton"], outputs["eager"], rtol=1e-4, atol=1e-5)


def test_workload_refuses_a_case_whose_tf32_setting_no_longer_holds(monkeypatch):
    from genbench.kernelbench.conv_transpose import (
        activation_of,
        layer_case,
        training_workload,
    )

    case = layer_case(2, 3, 4, 3, torch.float32, allow_tf32=not torch.backends.cudnn.allow_tf32)
    with pytest.raises(GenbenchError, match="allow_tf32"):
        training_workload("cudnn", activation_of, "cpu")(case)


# ----------------------------------------------------------------------------- train_step


def test_train_step_bench_is_registered_as_one_training_step_with_examples():
    from genbench.kernelbench import BENCHES
    from genbench.kernelbench.train_step import cases, examples

    bench = BENCHES.get("train_step")
    assert bench.modes == ("fwd_bwd",) and list(bench.providers) == ["triton", "eager"]
    assert bench.bytes_moved is None and bench.flops is None and bench.examples is examples
    labels = {(c.label, c.dtype_name) for c in cases()}
    assert len(labels) == len(cases()) == 5
    assert {c.variant for c in cases()} == {"gan-dcgan", "vae-conv", "ddpm-unet"}
    gan = next(c for c in cases() if c.variant == "gan-dcgan")
    assert (gan.shape["B"], gan.shape["H"], gan.dtype) == (128, 64, torch.float32) and examples(gan) == 128
    assert all(c.shape["B"] == (64 if c.variant == "ddpm-unet" else 128) for c in cases())


@pytest.mark.parametrize("variant, options", [("gan-dcgan", {"width": 8, "latent_dim": 8}),
                                              ("vae-conv", {"channels": 8, "latent_dim": 4})])
def test_train_step_runs_a_step_on_cpu_with_the_torch_backend(variant, options):
    from genbench.kernelbench.train_step import training_step

    case = Case({"B": 4, "C": 3, "H": 16, "W": 16}, torch.float32, variant)
    ts = training_step(case, "torch", "cpu", model_options=options)
    before = [p.detach().clone() for p in ts.model.parameters()]
    scalars = ts.step()
    second = ts.step()
    assert scalars and all(torch.isfinite(torch.tensor(v)) for v in {**scalars, **second}.values())
    assert any(not torch.equal(a, p) for a, p in zip(before, ts.model.parameters()))  # the optimiser stepped
    assert set(ts.kernel_backends.values()) <= {"torch"}
    if variant == "gan-dcgan":
        assert {"d_loss", "g_loss"} <= set(scalars)  # one D step and one G step


def test_train_step_check_compares_backends_end_to_end():
    from genbench.kernelbench import BENCHES

    rows = BENCHES.get("train_step").check()
    assert len(rows) == 3 and all(r["ok"] for r in rows), rows  # one check case per variant


def test_benches_do_bench_options_are_time_ms_arguments():
    import inspect

    from genbench.kernelbench import BENCHES, base

    accepted = set(inspect.signature(base.time_ms).parameters) - {"fn", "grad_to_none"}
    for name in BENCHES.names():
        assert set(BENCHES.get(name).do_bench_options or {}) <= accepted, name
    assert BENCHES.get("train_step").do_bench_options["rep"] >= 1000  # steps of tens of ms


# ----------------------------------------------------------------------------- selection


def test_quick_selection_takes_one_or_two_cases_per_op_and_no_training_step():
    from genbench.kernelbench import BENCHES, Selection, case_name, selected_benches

    chosen = {bench.op: cases for bench, cases in selected_benches(Selection(quick=True))}
    assert set(chosen) == set(BENCHES.names()) - {"train_step"}
    for op, cases in chosen.items():
        assert 1 <= len(cases) <= 2, op
        assert all(c in BENCHES.get(op).cases() for c in cases)
    assert [case_name(c) for c in chosen["attention"]] == ["B=16,H=32,S=1024,D=64,bf16", "B=64,H=4,S=256,D=64,bf16"]


def test_case_patterns_and_providers_narrow_the_selection():
    from genbench.kernelbench import BENCHES, Selection, case_name, selected_benches, selected_providers

    selection = Selection(ops=("attention", "vq_nearest"), cases=("*H=4,S=256,D=64,bf16",),
                          providers=("triton", "sdpa"))
    chosen = [(b.op, [case_name(c) for c in cases]) for b, cases in selected_benches(selection)]
    assert chosen == [("attention", ["B=64,H=4,S=256,D=64,bf16"])]
    assert list(selected_providers(BENCHES.get("attention"), selection)) == ["triton", "sdpa"]
    assert list(selected_providers(BENCHES.get("attention"), Selection())) == list(BENCHES.get("attention").providers)


@pytest.mark.parametrize("selection, message", [
    ({"cases": ("nothing*",)}, "matches no case"),
    ({"providers": ("cudnn_turbo",)}, "Unknown provider"),
    ({"ops": ("attenton",)}, "Did you mean 'attention'"),
])
def test_selections_that_select_nothing_are_the_users_error(selection, message):
    from genbench.kernelbench import Selection, selected_benches

    with pytest.raises(GenbenchError, match=message):
        selected_benches(Selection(**selection))


def test_cli_refuses_a_bad_selection_before_anything_runs(capsys, tmp_path):
    assert main(["kernels", "--cases", "nothing*", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "matches no case" in err and "Traceback" not in err
    assert not any(tmp_path.iterdir())


def test_selection_round_trips_through_json():
    from genbench.kernelbench import Selection

    selection = Selection(ops=("vq_nearest",), cases=("*bf16",), providers=("triton",), quick=True)
    assert Selection.from_json(selection.to_json()) == selection


def test_bench_records_time_only_the_selected_cases_and_providers(monkeypatch):
    from genbench.kernelbench import base

    patch_measurements(monkeypatch, base)
    built = []
    cases = [Case({"N": 1}, torch.float32), Case({"N": 2}, torch.float32)]
    bench = base.OpBench(op="toy", cases=lambda: cases,
                         providers={p: lambda c, p=p: built.append((p, c.shape["N"])) or base.Workload(forward=int)
                                    for p in ("triton", "eager")},
                         bytes_moved=None, check=list, modes=("fwd",))
    records = base.bench_records(bench, torch.device("cpu"), "a", cases=cases[1:],
                                 providers={"eager": bench.providers["eager"]})
    assert built == [("eager", 2)]
    assert {(r["objective"], r["dataset"]) for r in records} == {("eager", "N=2,fp32")}


def test_a_provider_that_does_not_apply_to_a_case_records_nothing(monkeypatch):
    """VQ's triton_tf32x3 is an fp32 path: bf16 cases have no such timing (so none can go missing)."""
    from genbench.kernelbench import BENCHES, base

    patch_measurements(monkeypatch, base)
    vq = BENCHES.get("vq_nearest")
    bf16 = next(c for c in vq.cases() if c.dtype == torch.bfloat16)
    assert vq.providers["triton_tf32x3"](bf16) is None
    bench = base.OpBench(op="toy", cases=lambda: [bf16], providers={"triton_tf32x3": vq.providers["triton_tf32x3"]},
                         bytes_moved=None, check=list, modes=("fwd",))
    assert base.bench_records(bench, torch.device("cpu"), "a") == []


# ----------------------------------------------------------------------------- CUDA graphs


class GraphRecorder:
    """Stands in for triton.testing.do_bench_cudagraph: records what it was asked to capture."""

    def __init__(self, times):
        self.calls, self.times = [], times

    def __call__(self, fn, rep=20, grad_to_none=None, quantiles=None, return_mode="mean"):
        self.calls.append((fn, grad_to_none))
        return self.times[fn]


def test_backward_graphs_capture_forward_and_backward_together_with_grad_to_none(monkeypatch):
    import triton.testing

    from genbench.kernelbench import base

    leaf = torch.zeros(3, requires_grad=True)
    forward, backward, both = (lambda: "fwd"), (lambda: "bwd"), (lambda: "fwd_bwd")
    workload = base.Workload(forward=forward, backward=backward, forward_backward=both, grad_to_none=[leaf])
    graphs = GraphRecorder({forward: 0.004, both: 0.010})
    monkeypatch.setattr(triton.testing, "do_bench_cudagraph", graphs)
    cache = {}
    bwd = base.graph_timing(workload, "bwd", cache)
    assert bwd["cudagraph_ms"] == pytest.approx(0.006) and bwd["cudagraph_error"] is None
    assert "minus forward" in bwd["cudagraph_method"]
    assert graphs.calls == [(both, [leaf]), (forward, None)]  # never the retained-graph backward alone
    assert base.graph_timing(workload, "fwd_bwd", cache)["cudagraph_ms"] == 0.010
    assert base.graph_timing(workload, "fwd", cache)["cudagraph_ms"] == 0.004
    assert len(graphs.calls) == 2  # captured once per workload, reused across modes


def test_a_failed_capture_is_recorded_with_its_error(monkeypatch):
    import triton.testing

    from genbench.kernelbench import base

    def refuse(fn, **kwargs):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(triton.testing, "do_bench_cudagraph", refuse)
    workload = base.Workload(forward=lambda: 1, forward_backward=lambda: 2)
    bwd = base.graph_timing(workload, "bwd", {})
    assert bwd["cudagraph_ms"] is None and "stream is capturing" in bwd["cudagraph_error"]


def test_bench_records_take_graph_figures_for_microsecond_modes(monkeypatch):
    from genbench.kernelbench import base

    patch_measurements(monkeypatch, base)
    monkeypatch.setattr(base, "time_ms", lambda fn, grads, **kw: {"median": 0.005, "q20": 0.004, "q80": 0.006})
    asked = []
    monkeypatch.setattr(base, "graph_timing", lambda w, mode, graphs: asked.append(mode) or {"cudagraph_ms": 0.003})
    bench = base.OpBench(op="toy", cases=lambda: [Case({"N": 1}, torch.float32)],
                         providers={"triton": lambda c: base.Workload(forward=lambda: 1, backward=lambda: 1,
                                                                     forward_backward=lambda: 1)},
                         bytes_moved=None, check=list)
    records = base.bench_records(bench, torch.device("cpu"), "a")
    assert asked == ["fwd", "bwd", "fwd_bwd"]
    assert all(r["provenance"]["cudagraph_ms"] == 0.003 for r in records if r["metric"].endswith("/time"))


@pytest.mark.cuda
def test_backward_graph_of_a_real_workload_resets_gradients():
    from genbench.kernelbench import BENCHES, base

    bench = BENCHES.get("reparam_kl")
    case = next(c for c in bench.cases() if c.shape == {"B": 64, "D": 16} and c.dtype == torch.float32)
    workload = bench.providers["triton"](case)
    timing = base.graph_timing(workload, "bwd", {})
    assert timing["cudagraph_error"] is None and timing["cudagraph_ms"] is not None
    assert all(t.grad is None or torch.isfinite(t.grad).all() for t in workload.grad_to_none)


@pytest.mark.parametrize("argv, message", [(["--fail-floor-us", "-1"], "--fail-floor-us"), (["--jobs", "-2"], "--jobs")])
def test_cli_refuses_bad_gate_and_job_numbers(argv, message, capsys):
    assert main(["kernels", *argv]) == 2
    assert message in capsys.readouterr().err
