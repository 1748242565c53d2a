"""Appendix: settings and compute per row -- what each configuration was given (steps, batch,
examples seen, learning rate, Adam betas, model, objective and trainer options: penalty
weights, discriminator steps per generator step, ...), what it cost (trainable parameters,
training wall time) -- and each row's sample grids of its best, median and worst seed by
the headline metric, linked by run id; then every failed run with the rules that fired and
what each saw."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from genbench.harness.store import COMPLETE_METRIC
from genbench.report.base import GROUP, Inputs, rel
from genbench.report.references import HEADLINES, HIGHER_IS_BETTER
from genbench.report.tables import drop_uniform, fmt, markdown_table

TITLE = "Appendix: settings, compute and samples per row"
NOT_RECORDED = "not recorded"  # records from before parameter counts were kept


def section(inputs: Inputs) -> str:
    complete = inputs.frame[inputs.frame["metric"] == COMPLETE_METRIC]
    if complete.empty:
        return "(no completed runs)"
    rows = [row(group, runs, inputs) for group, runs in complete.groupby(GROUP, sort=True)]
    shared = shared_options([r["model options"] for r in rows])
    for r in rows:
        r["model options"] = ", ".join(o for o in r["model options"].split(", ") if o not in shared)
    table = drop_uniform(pd.DataFrame(rows)).fillna("")
    common = f"Model options every row shares: {', '.join(sorted(shared))}.\n\n" if shared else ""
    return (markdown_table(table) + "\n\n" + common + "Samples: the sample grid of each row's best, median and worst seed by its "
            "headline metric (" + ", ".join(f"`{m}`" for m in HEADLINES) + "; the lowest seed where none).\n\n"
            + failed_runs(complete, inputs.verdicts))


def failed_runs(complete: pd.DataFrame, verdicts: dict) -> str:
    """One line per failed run: its id, configuration and seed, each rule with what it saw."""
    lines = []
    for _, record in complete.sort_values(["dataset", "objective", "model", "seed"]).iterrows():
        verdict = verdicts.get(record["run_id"])
        if verdict is not None and verdict.failed:
            seen = "; ".join(f"**{rule}**: {what}" for rule, what in verdict.fired)
            lines.append(f"- `{record['run_id']}` {record['model']} · {record['objective']} · {record['dataset']}, "
                         f"seed {record['seed']}: {seen}")
    return ("Failed runs, with the rules that fired:\n\n" + "\n".join(lines)) if lines else "No run failed."


def row(group: tuple, complete: pd.DataFrame, inputs: Inputs) -> dict:
    config = (complete.iloc[0]["provenance"].get("config") or {})
    run = config.get("run") or {}
    steps, batch = run.get("steps"), run.get("batch_size")
    params = complete.iloc[0]["provenance"].get("parameters")
    train_time = inputs.final[(inputs.final["metric"] == "time/train")
                              & inputs.final["run_id"].isin(complete["run_id"])]["value"]
    return {**dict(zip(GROUP, group)), "steps": steps, "batch": batch,
            "examples seen": f"{steps * batch:,}" if steps and batch else "",
            "lr": run.get("lr"), "Adam betas": f"{run.get('adam_beta1')}, {run.get('adam_beta2')}",
            "model options": options(config.get("model_options")),
            "objective options": options(config.get("objective_options")),
            "trainer options": options(run.get("trainer_options")),
            "parameters": options(params) if params else NOT_RECORDED,
            "train time (s)": fmt(float(train_time.median())) + " median" if len(train_time) else "",
            "samples": sample_links(complete, inputs)}


def shared_options(cells: list[str]) -> set[str]:
    """The "k=v" options present in every cell (shown once beneath the table, not per row)."""
    sets = [set(filter(None, c.split(", "))) for c in cells]
    return set.intersection(*sets) if len(sets) > 1 else set()


def options(values: dict | None) -> str:
    return ", ".join(f"{k}={v:,}" if isinstance(v, int) and not isinstance(v, bool) else f"{k}={v}"
                     for k, v in sorted((values or {}).items()))


def sample_links(complete: pd.DataFrame, inputs: Inputs) -> str:
    """Links to the best, median and worst seed's sample grid (by run id)."""
    final = inputs.final[inputs.final["run_id"].isin(complete["run_id"])]
    metric = next((m for m in HEADLINES if m in set(final["metric"])), None)
    order = list(complete.sort_values("seed")["run_id"])
    if metric is not None:
        scored = final[final["metric"] == metric].dropna(subset=["value"]).sort_values("value")
        ranked = list(scored["run_id"])[::-1] if metric in HIGHER_IS_BETTER else list(scored["run_id"])
        order = ranked + [r for r in order if r not in ranked]  # unscored (failed) runs last
    picks: dict[str, str] = {}  # run id -> which pick it is (a run that is both best and median: "best")
    for name, index in (("best", 0), ("median", (len(order) - 1) // 2), ("worst", len(order) - 1)):
        picks.setdefault(order[index], name) if order else None
    links = []
    for run_id, name in picks.items():
        record = complete[complete["run_id"] == run_id].iloc[0]
        path = (record["provenance"].get("artefacts") or {}).get("samples")
        if path:
            links.append(f"[{name} {run_id[:8]}]({rel(Path(record['source_dir']) / path, inputs.out_dir)})")
    return " · ".join(links)
