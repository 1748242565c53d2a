"""Builds a run's records with its shared fields and appends them in batches."""

from __future__ import annotations

import secrets
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genbench.harness.store import SCHEMA_VERSION, START_METRIC, append_records, sanitize_value
from genbench.utils import measure

if TYPE_CHECKING:  # the kernel benches use this module on machines without the evaluation stack
    from genbench.harness.spec import Run


def environment_fields(device) -> dict[str, Any]:
    """The record fields that describe where and with what a number was measured."""
    return {
        "schema_version": SCHEMA_VERSION,
        "device": measure.device_name(device),
        "versions": measure.versions(),
        "git_commit": measure.git_commit(),
    }


def make_record(common: dict[str, Any], metric: str, value: Any, unit: str, step: int | None,
                provenance: dict[str, Any]) -> dict[str, Any]:
    prov = dict(provenance)
    return {
        **common,
        "step": step,
        "metric": metric,
        "value": sanitize_value(value, prov),
        "unit": unit,
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "provenance": prov,
    }


class RunRecorder:
    """Collects one attempt's records; `flush` appends them to the results file."""

    def __init__(self, run: Run, results_path: Path, backend: str):
        self.results_path = results_path
        self.attempt = secrets.token_hex(6)
        self.pending: list[dict[str, Any]] = []
        self.common = {
            **environment_fields(run.device),
            "run_id": run.run_id,
            "attempt": self.attempt,
            "suite": run.suite,
            "model": run.model_label,
            "objective": run.objective_label,
            "dataset": run.config.dataset,
            "seed": run.config.seed,
            "backend": backend,
            "precision": run.config.precision,
        }
        # The attempt's first record: on disk it alone carries the shared fields (store.py).
        self.emit(START_METRIC, None, "event", None)

    def emit(self, metric: str, value: Any, unit: str, step: int | None = None, **provenance: Any) -> None:
        self.pending.append(make_record(self.common, metric, value, unit, step, provenance))

    def flush(self) -> None:
        append_records(self.results_path, self.pending, compact=True)
        self.pending = []
