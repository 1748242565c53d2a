"""Provenance: the environment every number was measured in (device, versions, commit),
then one row per run: its data hash, budget, kernel backends and precision."""

from __future__ import annotations

import pandas as pd

from genbench.harness.store import COMPLETE_METRIC
from genbench.report.base import Inputs
from genbench.report.tables import drop_uniform, markdown_table

TITLE = "Provenance"


def section(inputs: Inputs) -> str:
    complete = inputs.frame[inputs.frame["metric"] == COMPLETE_METRIC]
    runs = drop_uniform(pd.DataFrame(run_rows(complete)), ["settings"])  # the column only where settings differ
    return "\n".join(environment_lines(complete)) + "\n\n" + markdown_table(runs)


def run_rows(complete: pd.DataFrame) -> list[dict]:
    rows = []
    for _, r in complete.sort_values(["group", "seed"]).iterrows():
        prov = r["provenance"]
        data = prov.get("dataset", {})
        rows.append({
            "run_id": r["run_id"], "model": r["model"], "objective": r["objective"], "seed": r["seed"],
            "dataset (hash)": f"{r['dataset']} ({data.get('content_hash')})",
            "n train/test": f"{data.get('n_train')}/{data.get('n_test')}",
            "steps": prov.get("config", {}).get("run", {}).get("steps"),
            "settings": r["settings"],
            "kernels": ", ".join(f"{k}={v}" for k, v in (prov.get("kernel_backends") or {}).items()) or "none",
            "precision": r["precision"],
        })
    return rows


def environment_lines(complete: pd.DataFrame) -> list[str]:
    env = complete.assign(v=complete["versions"].astype(str)).drop_duplicates(["device", "git_commit", "v"])
    return [
        f"- device: {r['device']}; torch {r['versions'].get('torch')}, triton "
        f"{r['versions'].get('triton')}, genbench {r['versions'].get('genbench')}, python "
        f"{r['versions'].get('python')}, numpy {r['versions'].get('numpy')}; git commit {r['git_commit']}"
        for _, r in env.iterrows()
    ]
