"""Builds a run's records with its shared fields and appends them in batches."""

from __future__ import annotations

import secrets
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from genbench.harness import measure
from genbench.harness.spec import Run
from genbench.harness.store import SCHEMA_VERSION, append_records, sanitize_value


class RunRecorder:
    """Collects one attempt's records; `flush` appends them to the results file."""

    def __init__(self, run: Run, results_path: Path, backend: str):
        self.results_path = results_path
        self.attempt = secrets.token_hex(6)
        self.pending: list[dict[str, Any]] = []
        self.common = {
            "schema_version": SCHEMA_VERSION,
            "run_id": run.run_id,
            "attempt": self.attempt,
            "suite": run.suite,
            "model": run.model_label,
            "objective": run.objective_label,
            "dataset": run.config.dataset,
            "seed": run.config.seed,
            "backend": backend,
            "device": measure.device_name(run.device),
            "precision": run.config.precision,
            "versions": measure.versions(),
            "git_commit": measure.git_commit(),
        }

    def emit(self, metric: str, value: Any, unit: str, step: int | None = None, **provenance: Any) -> None:
        prov = dict(provenance)
        record = {
            **self.common,
            "step": step,
            "metric": metric,
            "value": sanitize_value(value, prov),
            "unit": unit,
            "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "provenance": prov,
        }
        self.pending.append(record)

    def flush(self) -> None:
        append_records(self.results_path, self.pending)
        self.pending = []
