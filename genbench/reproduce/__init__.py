"""`genbench reproduce`: published results, re-checked by genbench's own code.

Each reproduction (base.Reproduction; one module each, registered in REPRODUCTIONS) names
its paper, the table or figure, its setup and where it differs from the paper's, the claims
it tests and a verdict per claim. `run_reproduction` runs one under a profile ("cpu": the
budget a 2-core machine finishes; "gpu": longer) and writes its results as ordinary
records into a results folder, so `genbench report` shows them (the Reproductions
section: paper and genbench side by side) and `genbench compare` reads them. A reproduction
whose records are complete in the folder is not run again (a killed `reproduce all`
resumes).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from genbench.harness.recorder import environment_fields, make_record
from genbench.harness.store import (COMPLETE_METRIC, DIVERGED_METRIC, RESULTS_FILE, append_records, check_writable,
                                    completed_run_ids)
from genbench.registry import REPRODUCTIONS
from genbench.reproduce.base import CLAIM_METRIC, PROFILES, VERDICTS, Check, Measurement, Reproduction
from genbench.reproduce.ddim_oracle import DDIM_ORACLE
from genbench.reproduce.dirac_gan import DIRAC_GAN
from genbench.utils.hashing import json_hash
from genbench.values import declare_values

__all__ = ["CLAIM_METRIC", "PROFILES", "VERDICTS", "Check", "Measurement", "Reproduction", "run_reproduction"]

SUITE = "reproduce"
VERDICT_VALUE = {"reproduced": 1.0, "not reproduced": 0.0, "inconclusive": None}

for _reproduction in (DIRAC_GAN, DDIM_ORACLE):
    REPRODUCTIONS.register(_reproduction.name, _reproduction)

declare_values("reproduce", {
    CLAIM_METRIC: ("higher", "verdict", "1 when genbench reproduced the published claim, 0 when it did not, "
                                        "none when inconclusive (the verdict and reason in the provenance)"),
    "dirac/distance@*": ("lower", "distance", "Dirac-GAN: distance of (theta, psi) to the equilibrium (0, 0)"),
    "ddim_oracle/w2@*": ("lower", "W2", "2-Wasserstein distance of a sampler's Gaussian fit to the data's, "
                                         "with the exact noise predictor"),
}, conditions=("profile",), outcomes=("claim", "published", "measured", "verdict", "reason", "paper", "where"))


def run_id_of(name: str, profile: str) -> str:
    return json_hash({"reproduction": name, "profile": profile})


def run_reproduction(name: str, profile: str, out_dir: Path) -> list[Check] | None:
    """Run one reproduction into out_dir/results.jsonl; None when it is already complete there."""
    reproduction: Reproduction = REPRODUCTIONS.get(name)
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    out_dir = Path(out_dir)
    check_writable(out_dir)
    run_id = run_id_of(name, profile)
    if run_id in completed_run_ids(out_dir / RESULTS_FILE):
        return None
    import genbench.objectives  # noqa: F401  the registered losses and regularisers the reproductions use

    start = time.perf_counter()
    measurement = reproduction.run(profile)
    wall = time.perf_counter() - start
    append_records(out_dir / RESULTS_FILE, records(reproduction, profile, run_id, measurement, wall))
    return measurement.checks


def records(reproduction: Reproduction, profile: str, run_id: str, measurement: Measurement, wall: float) -> list[dict]:
    common = {**environment_fields(torch.device("cpu")), "run_id": run_id, "attempt": run_id[:12], "suite": SUITE,
              "model": reproduction.name, "objective": f"profile={profile}", "dataset": reproduction.name,
              "seed": 0, "backend": "none", "precision": "fp64"}
    paper = {"paper": reproduction.paper, "where": reproduction.where, "profile": profile}
    out = [make_record(common, metric, value, unit, step, {"profile": profile})
           for metric, (unit, points) in measurement.curves.items() for step, value in points]
    out += [make_record(common, metric, value, unit, None, {"profile": profile})
            for metric, (value, unit) in measurement.values.items()]
    out += [make_record(common, CLAIM_METRIC, VERDICT_VALUE[c.verdict], "verdict", None,
                        {**paper, "claim": c.claim, "published": c.published, "measured": c.measured,
                         "verdict": c.verdict, "reason": c.reason}) for c in measurement.checks]
    out.append(make_record(common, DIVERGED_METRIC, 0.0, "bool", None, {}))
    out.append(make_record(common, COMPLETE_METRIC, 1.0, "bool", None,
                           {**paper, "setup": reproduction.setup, "budget": reproduction.budget[profile],
                            "wall_seconds": round(wall, 2), "config": {"reproduction": measurement.config}}))
    return out
