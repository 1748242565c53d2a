"""Peak memory of a run on the CPU is what the run added, not the whole process (issue 20)."""

from __future__ import annotations

import sys

import pytest
import torch

from genbench.utils.measure import PeakMemory, proc_status_bytes

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
MIB = 2**20


def test_cpu_peak_is_the_rise_over_the_start_not_the_process():
    held = torch.ones(64 * MIB // 4)  # 64 MiB the process holds before the block: not the block's
    memory = PeakMemory(torch.device("cpu"))
    memory.reset()
    block = torch.ones(128 * MIB // 4)  # 128 MiB touched inside the block, then freed
    del block
    peak, fields = memory.peak_bytes(), memory.provenance()
    assert 120 * MIB <= peak <= 200 * MIB, peak / MIB  # the allocation, plus allocator slack
    assert fields["process_peak_bytes"] >= peak + fields["baseline_bytes"] - MIB
    assert fields["baseline_bytes"] >= held.numel() * 4  # the held tensor is in the start figure
    assert proc_status_bytes("VmRSS") <= fields["process_peak_bytes"]
    assert "above the RSS at run start" in fields["measured"]
