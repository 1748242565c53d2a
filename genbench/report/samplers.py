"""Diffusion samplers: per model/objective/dataset a table of quality and samples/s against
sampler steps (DDPM fixed-small and fixed-large vs DDIM), mean ± std over seeds; per
model/dataset a figure of both against steps (log x), one line per objective and sampler;
then the likelihood bound of each objective next to its FID.

The records are the `sampler_sweep` metric's (genbench/metrics/samplers.py):
sampler/<quantity>@<point>, grouped by the point's provenance, never by parsing the name.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib import ticker

from genbench.report.base import SETTING, Inputs, better_label, by_metric_fn, rel, save_figure, short
from genbench.report.producers import VALUES, value_spec
from genbench.report.tables import drop_blank, markdown_table, mean_std
from genbench.report.verdicts import verdict_cell
from genbench.utils.hashing import json_hash

SWEEP_FN = "sampler_sweep"
TITLE = VALUES.get(SWEEP_FN).section  # as the metric declares it

# Sweep quantities (the <quantity> of sampler/<quantity>@<point>) with their column titles.
KID_SCALE = value_spec("quality/kid", {"metric_fn": "quality"}).shown_scale  # as the metric declares it
SWEEP_QUANTITIES = {"fid": "FID", "kid": f"KID ×{KID_SCALE:g}", "modes_captured": "modes captured",
                    "high_quality_pct": "% high quality", "reverse_kl": "reverse KL (nats)",
                    "samples_per_s": "samples/s"}
SWEEP_SCALE = {"kid": KID_SCALE}  # quantities shown scaled, as their metric declares
SWEEP_FIGURE_QUALITY = ("fid", "high_quality_pct")  # drawn against steps: the first one recorded
SWEEP_POINT = ["sampler", "variance", "eta", "steps"]  # provenance fields that name a sweep point
SWEEP_NOTE_KEYS = ("n_samples", "sample_seed", "timesteps", "weights", "extractor", "extractor_weights_hash",
                   "reference_split", "n_reference", "kid_subsets", "kid_subset_size", "preprocessing",
                   "n_modes", "mode_sigma", "n_sigmas", "batch", "timing", "device")
# The likelihood-bound view: one row per objective, these metrics side by side when recorded.
BOUND_COLUMNS = {"test/nll_bpd": "NLL bound (bits/dim)", "test/nll": "NLL bound (nats/example)",
                 "quality/fid": "FID", "quality/kid": f"KID ×{KID_SCALE:g}", "coverage/modes_captured": "modes captured",
                 "coverage/high_quality_pct": "% high quality",
                 "perf/train_throughput": "train ex/s",
                 "perf/sample_throughput": "samples/s (default sampler)"}
NOTE = ("Each point draws the run's `eval_samples` samples from the EMA weights with the run's seed "
        "(the same seed at every point); FID/KID use the `quality` metric's extractor and reference "
        "set, so they compare with its numbers. samples/s is timed per generation batch, "
        "device-synchronised, after a warm-up (scoring not included). Fixed-large variance is "
        "expected to degrade when the sampler skips steps (docs/evaluation.md, diffusion specifics).\n\n")


def section(inputs: Inputs) -> str:
    sweep = sweep_records(inputs.final)
    if sweep.empty:
        return "(no run recorded a sampler sweep: only diffusion models record one)"
    parts = [setting_part(setting, runs, inputs) for setting, runs in sweep.groupby(SETTING, sort=True)]
    return NOTE + "\n\n".join(parts)


def setting_part(setting: tuple, runs: pd.DataFrame, inputs: Inputs) -> str:
    """Per objective a table, then the figure, the likelihood-bound view and the provenance."""
    title = f"{setting[0]} on {setting[1]}" + (f" ({setting[-1]})" if setting[-1] else "")
    tables = [f"*{objective}* ({setting[2]}, backend {setting[3]}, {setting[4]})\n\n{sweep_table(rows)}"
              for objective, rows in runs.groupby("objective", sort=True)]
    figure = sweep_figure(runs, title, inputs)
    bound = bound_view(inputs, setting)
    return (f"### {title}\n\n" + "\n\n".join(tables) + f"\n\n{figure}\n\n{bound}\n\n"
            + sweep_provenance_note(runs))


def sweep_records(final: pd.DataFrame) -> pd.DataFrame:
    """The sampler-sweep records with their quantity and point fields as columns (taken
    from the provenance, the name is only split for the quantity)."""
    sweep = by_metric_fn(final, SWEEP_FN).copy()
    if sweep.empty:
        return sweep
    sweep["quantity"] = sweep["metric"].map(lambda m: short(m).split("@", 1)[0])
    for key in SWEEP_POINT:
        sweep[key] = sweep["provenance"].map(lambda p, key=key: p.get(key))
    sweep["sampler_label"] = [sampler_label(s, v, e) for s, v, e in
                              zip(sweep["sampler"], sweep["variance"], sweep["eta"])]
    return sweep


def sampler_label(sampler: str, variance: str | None, eta: float | None) -> str:
    if sampler == "ddim":
        return f"DDIM eta={eta:g}" if eta is not None else "DDIM"
    return f"{str(sampler).upper()} {variance}" if variance else str(sampler).upper()


def sweep_table(rows: pd.DataFrame) -> str:
    """One row per (sampler, steps), one column per quantity; cells mean ± std over seeds."""
    quantities = [q for q in SWEEP_QUANTITIES if q in set(rows["quantity"])]
    table = []
    for label in pd.unique(rows["sampler_label"]):  # the metric's own order: DDPM small, large, DDIM
        by_label = rows[rows["sampler_label"] == label]
        for steps in sorted(by_label["steps"].unique()):
            cells = by_label[by_label["steps"] == steps]
            table.append({"sampler": label, "steps": int(steps),
                          **{SWEEP_QUANTITIES[q]: mean_std(cells[cells["quantity"] == q]["value"] * SWEEP_SCALE.get(q, 1))
                             for q in quantities}})
    return markdown_table(pd.DataFrame(table).fillna(""))


def sweep_figure(runs: pd.DataFrame, title: str, inputs: Inputs) -> str:
    """Quality and samples/s against steps (log x), a line per objective and sampler,
    mean over seeds with the seeds' std as error bars."""
    quality = next((q for q in SWEEP_FIGURE_QUALITY if q in set(runs["quantity"])), None)
    panels = [q for q in (quality, "samples_per_s") if q is not None and q in set(runs["quantity"])]
    if not panels:
        return ""
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for ax, quantity in zip(axes[0], panels):
        sweep_panel(ax, runs, quantity)
    fig.suptitle(title, fontsize=9)
    name = f"samplers-{json_hash(title + '|' + '|'.join(runs['group'].unique()))}.png"
    path = save_figure(fig, inputs.figures / name)
    return f"![sampler sweep]({rel(path, inputs.out_dir)})"


def sweep_panel(ax, runs: pd.DataFrame, quantity: str) -> None:
    """One quantity against steps: a line per objective (line style) and sampler (colour)."""
    objectives = sorted(runs["objective"].unique())
    labels = list(pd.unique(runs["sampler_label"]))
    colours = {label: f"C{i}" for i, label in enumerate(labels)}
    styles = ["-", "--", ":", "-."]
    for j, objective in enumerate(objectives):
        for label in labels:
            cells = runs[(runs["objective"] == objective) & (runs["sampler_label"] == label)
                         & (runs["quantity"] == quantity)]
            stats = cells.groupby("steps")["value"].agg(["mean", "std"]).dropna(subset=["mean"])
            if stats.empty:
                continue
            name = label if len(objectives) == 1 else f"{label}, {objective}"
            ax.errorbar(stats.index, stats["mean"], yerr=stats["std"].fillna(0.0), color=colours[label],
                        ls=styles[j % len(styles)], marker="o", ms=3, capsize=2, lw=1, label=name)
    values = runs[runs["quantity"] == quantity]
    log_axes(ax, sorted(runs["steps"].unique()), values["value"].dropna(),
             log_y=quantity in ("fid", "kid", "samples_per_s"))
    ax.set_xlabel("sampler steps (network evaluations per sample)")
    ax.set_ylabel(SWEEP_QUANTITIES[quantity] + better_label(values.iloc[0]), fontsize=8)
    ax.legend(fontsize=6)


def log_axes(ax, steps: list, values: pd.Series, log_y: bool) -> None:
    """Log x with the sweep's step counts as ticks; log y for positive values spanning
    a wide range; plain numbers as labels."""
    ax.set_xscale("log")
    ax.set_xticks(steps)
    ax.xaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    if log_y and len(values) and (values > 0).all():
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
        narrow = values.max() < 10 * values.min()  # within a decade: label the minor ticks too
        ax.yaxis.set_minor_formatter(ticker.FormatStrFormatter("%g") if narrow else ticker.NullFormatter())


def bound_view(inputs: Inputs, setting: tuple) -> str:
    """Likelihood bound (bits/dim) next to FID and throughput, one row per objective
    (e.g. L_simple vs the variational-bound weighting), mean ± std over seeds."""
    final = inputs.final
    runs = final[(final[SETTING].astype(str).agg(" | ".join, axis=1) == " | ".join(map(str, setting)))
                 & final["metric"].isin(list(BOUND_COLUMNS))]
    if runs.empty or "test/nll_bpd" not in set(runs["metric"]) and "test/nll" not in set(runs["metric"]):
        return "(no likelihood bound recorded for this model and dataset)"
    columns = [m for m in BOUND_COLUMNS if m in set(runs["metric"])]
    rows = []
    for objective, by_objective in runs.groupby("objective", sort=True):
        rows.append({"objective": objective, "verdict": verdict_cell(by_objective["run_id"], inputs.verdicts),
                     **{BOUND_COLUMNS[m]: mean_std(by_objective[by_objective["metric"] == m]["value"]
                                                   * (KID_SCALE if m == "quality/kid" else 1)) for m in columns}})
    table = markdown_table(drop_blank(pd.DataFrame(rows).fillna(""), "verdict"))
    figure = bound_figure(runs, setting, inputs)
    return (f"Likelihood bound by objective\n\n{table}\n\n" + "\n".join(bound_sources(runs))
            + (f"\n\n{figure}" if figure else ""))


def bound_sources(runs: pd.DataFrame) -> list[str]:
    """Which estimator gave the bound, and which samples the FID/KID scored."""
    nll = runs[runs["metric"].isin(["test/nll_bpd", "test/nll"])]["provenance"]
    estimators = sorted({f"{p.get('estimator')} ({p.get('convention')}, "
                         f"{p.get('n_examples')} {p.get('split')} examples)" for p in nll})
    samples = sorted({str(p.get("samples")) for p in runs[runs["metric"] == "quality/fid"]["provenance"]})
    return ([f"- likelihood: {e}" for e in estimators]
            + [f"- FID/KID: the `quality` metric, samples: {s}" for s in samples])


def bound_figure(runs: pd.DataFrame, setting: tuple, inputs: Inputs) -> str:
    """bits/dim against FID, one point per objective with the seeds' std as error bars."""
    x_metric, y_metric = "test/nll_bpd", "quality/fid"
    values = runs[runs["metric"].isin([x_metric, y_metric])].pivot_table(
        index=["objective", "run_id"], columns="metric", values="value")
    if x_metric not in values or y_metric not in values:
        return ""
    stats = values.dropna().groupby("objective")[[x_metric, y_metric]].agg(["mean", "std"])
    if len(stats) < 2:
        return ""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for objective, row in stats.iterrows():
        ax.errorbar(row[(x_metric, "mean")], row[(y_metric, "mean")], xerr=fillna0(row[(x_metric, "std")]),
                    yerr=fillna0(row[(y_metric, "std")]), fmt="o", capsize=2)
        ax.annotate(objective, (row[(x_metric, "mean")], row[(y_metric, "mean")]), fontsize=6)
    ax.set_xlabel("NLL bound, bits/dim (lower is better)")
    ax.set_ylabel("FID (lower is better)")
    ax.set_title(f"{setting[0]} on {setting[1]}: likelihood vs sample quality", fontsize=9)
    path = save_figure(fig, inputs.figures / f"bound-{json_hash(list(map(str, setting)))}.png")
    return f"![likelihood bound vs FID]({rel(path, inputs.out_dir)})"


def fillna0(x: float) -> float:
    return 0.0 if pd.isna(x) else float(x)


def sweep_provenance_note(runs: pd.DataFrame) -> str:
    """Units and the settings every sweep number shares (timing quantiles stay in the records)."""
    units = runs.drop_duplicates("quantity")
    lines = [f"- `{q}`: {u}" for q, u in zip(units["quantity"], units["unit"])]
    for key in SWEEP_NOTE_KEYS:
        shown = sorted({str(p[key]) for p in runs["provenance"] if key in p})
        if shown:
            more = f" (+{len(shown) - 6} more)" if len(shown) > 6 else ""
            lines.append(f"- {key}: {'; '.join(shown[:6])}{more}")
    return "Units and provenance of the sweep:\n\n" + "\n".join(lines)
