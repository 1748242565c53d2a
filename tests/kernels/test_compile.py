"""`genbench kernels --compile TARGET...`: every kernel configuration compiled for real GPUs on
a machine without one (genbench.kernelbench.compile), and the planning it rests on.

Under pytest TRITON_INTERPRET=1 (tests/conftest.py) and the kernels are interpreted
functions, so whatever plans or compiles runs in a child process without the variable, as
the command itself does. The compiling test is CI's check that the launchers' pruning keeps
only configurations that compile without spills and fit the target's shared memory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from genbench.cli import main
from genbench.errors import ConfigError, GenbenchError
from genbench.kernelbench import Selection
from genbench.kernelbench.compile import SPILL_BOUND, compile_report, ptx_facts, render
from genbench.kernels.conv_transpose import GEMM_CONFIGS
from genbench.kernels.device import TARGETS, check_kernel_device, planning, shared_memory_limit, sm_count

# CI's reduced selection: the tests' fp32 and bf16 example calls of every op (every kernel
# and dot path: tensor cores, TF32, IEEE FMA; masked head dims; channels-last and NCHW), and
# the DCGAN's widest hidden layer in bf16 -- the largest tiles of the most-used kernel.
CI_SELECTION = Selection(cases=("tests*float32 tf32=False", "tests*bfloat16",
                                "B=128,C_in=512,C_out=256,H=8,W=8,k=4,s=2,p=1,bf16"),
                         ops=("attention", "conv_transpose2d", "group_norm_silu", "reparam_kl", "vq_nearest"))


def test_published_shared_memory_limits_per_target():
    """Opt-in maximum per block, CUDA C++ Programming Guide: 9.0 227 KiB, 8.0 163 KiB, 8.6/8.9 99 KiB."""
    assert TARGETS["sm_90"].shared_memory_per_block == 227 * 1024
    assert TARGETS["sm_80"].shared_memory_per_block == 163 * 1024
    assert TARGETS["sm_86"].shared_memory_per_block == TARGETS["sm_89"].shared_memory_per_block == 99 * 1024


def test_meta_tensors_plan_for_the_target_only_inside_planning(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")  # as on a GPU machine (nothing is launched here)
    meta = torch.empty(2, 3, device="meta")
    assert sm_count(meta.device) is None
    with pytest.raises(ConfigError, match="runs on CUDA"):
        check_kernel_device("op", meta)
    with planning(TARGETS["sm_80"]):
        assert sm_count(meta.device) == 108 and shared_memory_limit(meta.device) == 163 * 1024
        check_kernel_device("op", meta)  # accepted: nothing runs, launches are recorded
        assert sm_count(torch.device("cpu")) is None  # the interpreter's tensors are not planned
    assert shared_memory_limit(torch.device("cpu")) == 227 * 1024  # the interpreter: the H100's


PTX = """
    @%p1 ld.global.v4.b32 { %r1, %r2, %r3, %r4 }, [ %rd1 + 0 ];
    ld.global.b16 %rs1, [%rd2];
    cp.async.cg.shared.global [ %r5 + 0 ], [ %rd3 + 0 ], 0x10, %r6;
    wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%f1}, %rd4, %rd5, 1, 1, 1, 0, 1;
"""


def test_ptx_facts_find_vector_widths_async_copies_and_the_mma():
    facts = ptx_facts(PTX)
    assert facts == {"widest_load": 16, "async_copies": 1, "mma": "wgmma"}
    scalar = ptx_facts("ld.global.b16 %rs1, [%rd2];\n fma.rn.f32 %f1, %f2, %f3, %f4;")
    assert scalar == {"widest_load": 2, "async_copies": 0, "mma": "fma"}


def row(**overrides):
    base = {"target": "sm_90", "kernel": "_k", "spec": "*bf16", "config": "BLOCK_M=64 w4 s3", "used_by": ["op case"],
            "smem_limit": 227 * 1024, "ok": True, "registers": 128, "spill_stores": 0, "spill_loads": 0,
            "shared": 64 * 1024, "seconds": 1.0, "widest_load": 16, "async_copies": 2, "mma": "wgmma", "spill": 0,
            "over_smem": False}
    return {**base, **overrides}


def test_report_flags_errors_spills_and_shared_memory_over_the_limit():
    rows = [row(), row(config="a", spill_stores=8, spill_loads=8, spill=16),
            row(config="b", shared=230 * 1024, over_smem=True),
            row(config="c", ok=False, error="PTXASError: ptxas fatal", spill=None, over_smem=False)]
    report = render(rows)
    assert [r["config"] for r in report.failures] == ["a", "b", "c"]
    assert "spills 16 B" in report.table and "over shared memory" in report.table and "PTXASError" in report.table
    summary = report.summary.splitlines()[2]
    assert [c.strip() for c in summary.strip("|").split("|")][2:7] == ["4", "3", "1", "1", "1"]


def test_cli_compile_exits_1_on_a_configuration_breaking_the_bounds(monkeypatch, capsys):
    from genbench.kernelbench import compile as compile_module

    monkeypatch.setattr(compile_module, "compile_report",
                        lambda targets, selection, workers: render([row(spill=24, spill_stores=24)]))
    assert main(["kernels", "--compile", "sm_90"]) == 1
    assert "spill more than 0 bytes" in capsys.readouterr().err
    monkeypatch.setattr(compile_module, "compile_report", lambda targets, selection, workers: render([row()]))
    assert main(["kernels", "--compile", "sm_90", "sm_80"]) == 0


def test_cli_refuses_an_unknown_target(capsys):
    assert main(["kernels", "--compile", "sm_75"]) == 2
    err = capsys.readouterr().err
    assert "sm_75" in err and "sm_90" in err and "Traceback" not in err


def test_compile_refuses_a_selection_of_nothing():
    with pytest.raises(GenbenchError, match="Nothing to compile in train_step"):
        compile_report(["sm_90"], Selection(ops=("train_step",)))


PLAN_SCRIPT = """
import json, sys
from genbench.kernelbench import Selection
from genbench.kernelbench.compile import plan_target
from genbench.kernels.device import TARGETS
selection = Selection.from_json(json.loads(sys.argv[1]))
out = {}
for name in ("sm_90", "sm_80"):
    planned = plan_target(TARGETS[name], selection)
    out[name] = [{"kernel": t.kernel, "spec": t.spec, "config": t.config, "constexprs": {str(k): str(v) for k, v in
                  t.constexprs.items()}, "used_by": planned.used_by[key]} for key, t in planned.tasks.items()]
print(json.dumps(out))
"""


def plan_in_child(selection: Selection) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, "-c", PLAN_SCRIPT, json.dumps(selection.to_json())], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_planning_follows_the_launchers_for_each_target():
    """The DCGAN layer in NCHW and channels-last: the launchers run NCHW through the
    channels-last path, so both layouts launch the very same kernels (channel stride 1
    specialised on everything gathered and stored), each with the whole bf16 tile list
    (C_out = 256: no tile is too wide, all fit the target's shared memory) but the weight
    gradient's 256-row one."""
    nchw = "B=128,C_in=512,C_out=256,H=8,W=8,k=4,s=2,p=1,bf16"
    cl = "B=128,C_in=512,C_out=256,H=8,W=8,k=4,s=2,p=1,channels_last,bf16"
    plans = plan_in_child(Selection(ops=("conv_transpose2d",), cases=(nchw, cl)))
    unit_strides = {"_conv_transpose_fwd_kernel": ("stride_xc=1", "stride_yc=1"),
                    "_conv_transpose_dgrad_kernel": ("stride_gc=1", "stride_xc=1"),
                    "_conv_transpose_wgrad_kernel": ("stride_xc=1", "stride_gc=1")}
    for name, tasks in plans.items():
        assert {t["kernel"] for t in tasks} == set(unit_strides)
        for t in tasks:
            assert sorted(u.removeprefix("conv_transpose2d ") for u in t["used_by"]) == sorted([nchw, cl]), t
            assert all(s in t["spec"] for s in unit_strides[t["kernel"]]), t
        for kernel in unit_strides:
            expected = len(GEMM_CONFIGS["half"]) - (kernel == "_conv_transpose_wgrad_kernel")
            assert len([t for t in tasks if t["kernel"] == kernel]) == expected, (name, kernel)


def test_compile_sm90_keeps_every_configuration_within_the_bounds():
    """CI: compile CI_SELECTION for sm_90 (a couple of minutes on 2 cores): every configuration the
    launchers keep compiles, spills at most SPILL_BOUND bytes and fits 227 KiB of shared memory."""
    report = compile_report(["sm_90"], CI_SELECTION, workers=2)
    kernels = {r["kernel"] for r in report.rows}
    assert {"_attn_fwd_kernel", "_attn_bwd_dkdv_kernel", "_attn_bwd_dq_kernel", "_conv_transpose_fwd_kernel",
            "_conv_transpose_dgrad_kernel", "_conv_transpose_wgrad_kernel", "_gn_silu_fwd_kernel",
            "_gn_silu_bwd_kernel", "_reparam_kl_fwd_kernel", "_vq_nearest_fwd_kernel"} <= kernels
    assert report.failures == [], report.table
    assert all(r["spill"] <= SPILL_BOUND and r["shared"] <= 227 * 1024 for r in report.rows)


def test_precompile_plans_the_selection_for_the_current_gpu_without_the_tests_calls(monkeypatch):
    """Before timing, the selection's launches on this GPU (its capability, SMs and shared memory)
    are compiled in a pool into Triton's cache; the tests' example calls are not."""
    from genbench.kernelbench import compile as compile_module
    from genbench.kernels import device

    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index: (9, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: "NVIDIA H100 80GB HBM3")
    monkeypatch.setattr(device, "_cuda_properties", lambda index: (132, 227 * 1024))
    planned, compiled = [], []

    def plan(target, selection, examples=True):
        planned.append((target, selection, examples))
        p = compile_module.Planned(target)
        p.tasks = {"a": "task a", "b": "task b"}
        return p

    monkeypatch.setattr(compile_module, "plan_target", plan)
    monkeypatch.setattr(compile_module, "compile_all", lambda tasks, workers: compiled.append((tasks, workers))
                        or [{"ok": True}, {"ok": False}])
    messages = []
    assert compile_module.precompile(Selection(quick=True), 16, messages.append) == 2
    (target, selection, examples), = planned
    assert (target.name, target.capability, target.multiprocessors) == ("sm_90", 90, 132) and not examples
    assert selection == Selection(quick=True) and compiled == [(["task a", "task b"], 16)]
    assert any("1 specialisation(s) did not compile" in m for m in messages)

    monkeypatch.setattr(compile_module, "plan_target", lambda *a, **k: (_ for _ in ()).throw(AttributeError("x")))
    assert compile_module.precompile(Selection(), 16, messages.append) == 0  # planning failed: time anyway
    assert "precompile skipped" in messages[-1]


def test_a_compile_without_a_ptxas_report_is_not_vouched_for():
    """Spills are read from ptxas -v, which only runs on a Triton cache miss: no report, no pass."""
    from genbench.kernelbench.compile import Planned, Task, rows_for

    task = Task("m", "_k", {}, {}, {}, {}, 90, "BLOCK_M=64 w4 s3", "*bf16")
    planned = Planned(TARGETS["sm_90"], {"k": task}, {"k": ["op case"]})
    result = {"ok": True, "registers": None, "spill_stores": None, "spill_loads": None, "shared": 0, "seconds": 0.1,
              "widest_load": 16, "async_copies": 1, "mma": "wgmma"}
    (got,) = rows_for(planned, [result])
    assert not got["ok"] and "ptxas" in got["error"]
    assert render([got]).failures == [got]
