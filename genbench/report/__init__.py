"""report.md (and figures) from result records.

One row per model x objective x dataset -- split further by precision, backend and
device, because numbers measured under different conditions are not comparable and
must not be averaged together. Each metric is mean ± std over seeds with n; a diverged
run counts in the failure column and is not dropped silently.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import ticker  # noqa: E402
import pandas as pd  # noqa: E402
from tabulate import tabulate  # noqa: E402

from genbench.report.likelihood import (  # noqa: E402
    anomaly_section,
    ar_sampler_section,
    likelihood_section,
)
from genbench.errors import GenbenchError  # noqa: E402
from genbench.report.html import Images, checked_links, write_html_report  # noqa: E402
from genbench.report.precision import precision_section  # noqa: E402
from genbench.report.tables import drop_uniform, mean_std  # noqa: E402
from genbench.harness.store import (  # noqa: E402
    COMPLETE_METRIC,
    DIVERGED_METRIC,
    load_frame,
    unwritable_message,
    write_text_atomic,
)
from genbench.utils.hashing import json_hash  # noqa: E402

GROUP = ["model", "objective", "dataset", "precision", "backend", "device"]
SETTING = ["model", "dataset", "precision", "backend", "device"]  # GROUP without the objective
REPORT_FILE = "report.md"
FIGURES_DIR = "figures"

# Training curves drawn per group, when recorded (single-objective and adversarial loops).
CURVE_METRICS = ["train/loss", "train/d_loss", "train/g_loss", "train/loss_enc", "train/loss_dec",
                 "train/loss_dis", "train/grad_norm", "train/grad_norm_d", "train/grad_norm_g",
                 "train/grad_norm_enc", "train/grad_norm_dec", "train/grad_norm_dis",
                 "train/mse", "train/vlb_bpd"]  # diffusion: epsilon MSE, and the bound for ddpm-vlb
# Headline quality per data kind for the distribution figures: (metric, higher is better).
HEADLINE = [("quality/fid", False), ("coverage/modes_captured", True), ("test/nll_bpd", False)]

# Metric families with a section of their own instead of a generic table in "Results".
SWEEP_FN = "sampler_sweep"  # genbench/metrics/samplers.py: sampler/<quantity>@<point>
OWN_SECTION = {SWEEP_FN: "Diffusion samplers", "anomaly": "Anomaly detection by likelihood",
               "ar_samplers": "Autoregressive samplers"}

# Metrics shown in the performance table, with how to display them.
PERF_COLUMNS = {
    "perf/train_throughput": ("train ex/s", 1.0),
    "perf/sample_throughput": ("samples/s", 1.0),
    "perf/peak_memory": ("peak mem MiB", 1 / 2**20),
    "time/train": ("train s", 1.0),
}


def render_report(result_dirs: list[Path], out_dir: Path | None = None) -> Path:
    """Write report.md, report.html and figures for the completed runs under `result_dirs`.

    Both files link or embed only images inside the results folders and the report's own
    figures (report_html.read_image); each is written whole or not at all. A folder that
    cannot take the report is a GenbenchError naming it, the cause and the fix.
    """
    frame = load_frame(result_dirs)
    out_dir = Path(out_dir or result_dirs[0])
    figures = out_dir / FIGURES_DIR
    try:
        figures.mkdir(parents=True, exist_ok=True)
        text = report_markdown(frame, result_dirs, figures, out_dir)
    except OSError as exc:  # a figure could not be saved: read-only folder, a file in the way, full disk
        raise GenbenchError(unwritable_message(out_dir, exc, "No report was written.")) from None
    roots = (*sorted({Path(d) for d in frame["source_dir"]}), figures)  # what the report may show
    path = out_dir / REPORT_FILE
    write_text_atomic(path, checked_links(text, Images(out_dir, roots)))
    write_html_report(path, frame, roots)  # report.html beside it: the same content, figures embedded
    return path


def report_markdown(frame: pd.DataFrame, result_dirs: list[Path], figures: Path, out_dir: Path) -> str:
    """The report's text; its figures are saved under `figures`, linked relative to `out_dir`."""
    frame["group"] = frame[GROUP].astype(str).agg(" | ".join, axis=1)
    final = frame[frame["step"].isna()]
    sections = [
        header(frame, result_dirs),
        "## Runs\n\n" + status_table(final),
        "## Results\n\n" + metric_sections(final),
        "## Distributions over seeds\n\n" + distribution_figures(final, figures, out_dir),
        "## Rate and distortion\n\n" + rate_distortion_section(final, figures, out_dir),
        "## Diffusion samplers\n\n" + sampler_section(final, figures, out_dir),
        "## Likelihood across families\n\n" + likelihood_section(final),
        "## Anomaly detection by likelihood\n\n" + anomaly_section(final),
        "## Autoregressive samplers\n\n" + ar_sampler_section(final),
        "## Stability\n\n" + stability_table(final),
        "## Performance\n\n" + perf_table(final) + "\n\n" + perf_note(final),
        "## Precision ledger\n\n" + precision_section(final),
        "## Training curves\n\n" + curve_figures(frame, figures, out_dir),
        "## Samples and reconstructions\n\n" + artefact_section(frame, out_dir),
        "## Provenance\n\n" + provenance_section(frame),
    ]
    return "\n\n".join(sections) + "\n"


def header(frame: pd.DataFrame, result_dirs: list[Path]) -> str:
    suites = sorted({s for s in frame["suite"].dropna()}) or ["(ad-hoc runs)"]
    runs = frame["run_id"].nunique()
    return (
        f"# genbench report: {', '.join(suites)}\n\n"
        f"Generated {datetime.now(timezone.utc).isoformat(timespec='seconds')} from "
        f"{runs} completed runs in {', '.join(str(d) for d in result_dirs)}. "
        "Each cell is mean ± std over seeds (n = number of seeds); a diverged run counts "
        "as a failure and contributes no quality numbers."
    )


def status_table(final: pd.DataFrame) -> str:
    """Runs and failures per group: a diverged run is a result, not a gap."""
    rows = []
    for group, runs in final.groupby(GROUP, sort=True):
        diverged = runs[runs["metric"] == DIVERGED_METRIC]["value"]
        rows.append({**dict(zip(GROUP[:5], group[:5])), "runs": len(diverged),
                     "diverged": f"{int(diverged.sum())}/{len(diverged)}"})
    return tabulate(pd.DataFrame(rows), headers="keys", tablefmt="github", showindex=False)


def metric_sections(final: pd.DataFrame) -> str:
    """One table per registered metric, with the provenance of its numbers beneath."""
    evaluated = final[final["provenance"].map(lambda p: "metric_fn" in p)]
    family = evaluated["provenance"].map(lambda p: p["metric_fn"])
    parts = []
    for name in sorted(family.unique()):
        if name in OWN_SECTION:
            parts.append(f"### {name}\n\nIn its own section below: {OWN_SECTION[name]}.")
            continue
        records = evaluated[family == name]
        rows = []
        for group, runs in records.groupby(GROUP, sort=True):
            row = dict(zip(GROUP[:3], group[:3]))
            row["precision"], row["backend"] = group[3], group[4]
            for metric, values in runs.groupby("metric", sort=False):
                column = short(metric)  # the full name where the short one is a row key (quality/precision)
                row[metric if column in GROUP else column] = mean_std(values["value"])
            rows.append(row)
        table = tabulate(pd.DataFrame(rows).fillna(""), headers="keys", tablefmt="github", showindex=False)
        parts.append(f"### {name}\n\n{table}\n\n{provenance_note(records)}")
    return "\n\n".join(parts) or "(no evaluation metrics: every run diverged)"


def distribution_figures(final: pd.DataFrame, figures: Path, out_dir: Path) -> str:
    """Per dataset: the headline metric of every run, one column per model/objective
    (box + each seed as a dot); failed runs are counted in the column label."""
    parts = []
    for dataset, rows in final.groupby("dataset", sort=True):
        metric, higher = next(((m, h) for m, h in HEADLINE if m in set(rows["metric"])), (None, None))
        if metric is None:
            continue
        groups = sorted(rows["group"].unique())
        one_model = rows["model"].nunique() == 1
        values, labels = [], []
        for group in groups:
            runs = rows[rows["group"] == group]
            v = runs[runs["metric"] == metric]["value"].dropna().tolist()
            failed = runs[runs["metric"].isin([DIVERGED_METRIC, "stability/failed"])].groupby("run_id")["value"].max()
            first = runs.iloc[0]
            name = first["objective"] if one_model else f"{first['model']}\n{first['objective']}"
            labels.append(f"{name}\nfailed {int(failed.sum())}/{len(failed)}")
            values.append(v)
        fig, ax = plt.subplots(figsize=(max(5, 1.1 * len(groups)), 4))
        ax.boxplot([v if v else [float("nan")] for v in values], showfliers=False)
        for i, v in enumerate(values, 1):
            ax.scatter([i] * len(v), v, s=12, zorder=3)
        ax.set_xticks(range(1, len(labels) + 1), labels, fontsize=7, rotation=45, ha="right")
        ax.set_ylabel(short(metric) + (" (higher is better)" if higher else " (lower is better)"), fontsize=8)
        model = rows["model"].iloc[0] if one_model else "several models"
        ax.set_title(f"{dataset}: {model}", fontsize=8)
        path = save_figure(fig, figures / f"distribution-{json_hash(dataset)}.png")
        parts.append(f"**{dataset}**: `{metric}`, every seed a dot\n\n![distribution]({rel(path, out_dir)})")
    return "\n\n".join(parts) or "(no headline metric recorded)"


RATE, DISTORTION = "test/kl", "test/elbo_recon_nll"


def rate_distortion_section(final: pd.DataFrame, figures: Path, out_dir: Path) -> str:
    """Rate (KL, nats) against distortion (reconstruction NLL, nats) per model and dataset,
    one point per objective setting (e.g. a sweep of beta), mean over seeds with the
    seeds' spread as error bars (Alemi et al. 2018, "Fixing a Broken ELBO")."""
    rd = final[final["metric"].isin([RATE, DISTORTION])]
    if rd.empty:
        return "(no run recorded a KL and a reconstruction term)"
    values = rd.pivot_table(index=[*SETTING, "objective", "run_id"], columns="metric",
                            values="value").dropna().reset_index()
    parts = []
    for setting, runs in values.groupby(SETTING, sort=True):
        model, dataset = setting[:2]
        title = f"{model} on {dataset} | " + " | ".join(setting[2:])
        stats = runs.groupby("objective")[[RATE, DISTORTION]].agg(["mean", "std", "count"])
        if len(stats) < 2:
            continue
        stats = stats.sort_values((RATE, "mean"))
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for objective, row in stats.iterrows():
            ax.errorbar(row[(RATE, "mean")], row[(DISTORTION, "mean")], xerr=row[(RATE, "std")],
                        yerr=row[(DISTORTION, "std")], fmt="o", capsize=2)
            ax.annotate(objective, (row[(RATE, "mean")], row[(DISTORTION, "mean")]), fontsize=6)
        ax.plot(stats[(RATE, "mean")], stats[(DISTORTION, "mean")], lw=0.8, color="grey")
        ax.set_xlabel("rate: KL(q(z|x) || p(z)), nats")
        ax.set_ylabel("distortion: -log p(x|z), nats")
        ax.set_title(title, fontsize=9)
        path = save_figure(fig, figures / f"rate-distortion-{json_hash(list(setting))}.png")
        rows = [{"objective": obj, "rate (KL nats)": mean_std(runs[runs["objective"] == obj][RATE]),
                 "distortion (recon NLL nats)": mean_std(runs[runs["objective"] == obj][DISTORTION])}
                for obj in stats.index]
        table = tabulate(pd.DataFrame(rows), headers="keys", tablefmt="github", showindex=False)
        parts.append(f"**{title}**\n\n{table}\n\n![rate-distortion]({rel(path, out_dir)})")
    note = ("Test-split terms of the single-sample ELBO (metric `elbo`): rate = KL, distortion = "
            "reconstruction NLL; their sum is -ELBO. Shown where one model and dataset were trained "
            "under two or more objective settings.\n\n")
    return note + ("\n\n".join(parts) or "(no model was trained under more than one objective setting)")


# --- diffusion samplers -----------------------------------------------------------------

# Sweep quantities (the <quantity> of sampler/<quantity>@<point>) with their column titles.
SWEEP_QUANTITIES = {"fid": "FID", "kid": "KID", "modes_captured": "modes captured",
                    "high_quality_pct": "% high quality", "reverse_kl": "reverse KL (nats)",
                    "samples_per_s": "samples/s"}
SWEEP_FIGURE_QUALITY = ("fid", "high_quality_pct")  # drawn against steps: the first one recorded
SWEEP_POINT = ["sampler", "variance", "eta", "steps"]  # provenance fields that name a sweep point
SWEEP_NOTE_KEYS = ("n_samples", "sample_seed", "timesteps", "weights", "extractor", "extractor_weights_hash",
                   "reference_split", "n_reference", "kid_subsets", "kid_subset_size", "preprocessing",
                   "n_modes", "mode_sigma", "n_sigmas", "batch", "timing", "device")
# The likelihood-bound view: one row per objective, these metrics side by side when recorded.
BOUND_COLUMNS = {"test/nll_bpd": "NLL bound (bits/dim)", "test/nll": "NLL bound (nats/example)",
                 "quality/fid": "FID", "quality/kid": "KID", "coverage/modes_captured": "modes captured",
                 "coverage/high_quality_pct": "% high quality",
                 "perf/train_throughput": "train ex/s",
                 "perf/sample_throughput": "samples/s (default sampler)"}


def sweep_records(final: pd.DataFrame) -> pd.DataFrame:
    """The sampler-sweep records with their quantity and point fields as columns (taken
    from the provenance, the name is only split for the quantity)."""
    sweep = final[final["provenance"].map(lambda p: p.get("metric_fn") == SWEEP_FN)].copy()
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


def sampler_section(final: pd.DataFrame, figures: Path, out_dir: Path) -> str:
    """Diffusion samplers: per model/objective/dataset a table of quality and samples/s
    against sampler steps (DDPM fixed-small and fixed-large vs DDIM), mean ± std over seeds;
    per model/dataset a figure of both against steps (log x), one line per objective and
    sampler; then the likelihood bound of each objective next to its FID."""
    sweep = sweep_records(final)
    if sweep.empty:
        return "(no run recorded a sampler sweep: only diffusion models record one)"
    note = ("Each point draws the run's `eval_samples` samples from the EMA weights with the run's seed "
            "(the same seed at every point); FID/KID use the `quality` metric's extractor and reference "
            "set, so they compare with its numbers. samples/s is timed per generation batch, "
            "device-synchronised, after a warm-up (scoring not included). Fixed-large variance is "
            "expected to degrade when the sampler skips steps (EVALUATION.md, diffusion specifics).\n\n")
    parts = []
    for setting, runs in sweep.groupby(SETTING, sort=True):
        title = f"{setting[0]} on {setting[1]}"
        tables = [f"*{objective}* ({setting[2]}, backend {setting[3]}, {setting[4]})\n\n{sweep_table(rows)}"
                  for objective, rows in runs.groupby("objective", sort=True)]
        figure = sweep_figure(runs, title, figures, out_dir)
        bound = bound_view(final, setting, figures, out_dir)
        parts.append(f"### {title}\n\n" + "\n\n".join(tables) + f"\n\n{figure}\n\n{bound}\n\n"
                     + sweep_provenance_note(runs))
    return note + "\n\n".join(parts)


def sweep_table(rows: pd.DataFrame) -> str:
    """One row per (sampler, steps), one column per quantity; cells mean ± std over seeds."""
    quantities = [q for q in SWEEP_QUANTITIES if q in set(rows["quantity"])]
    table = []
    for label in pd.unique(rows["sampler_label"]):  # the metric's own order: DDPM small, large, DDIM
        by_label = rows[rows["sampler_label"] == label]
        for steps in sorted(by_label["steps"].unique()):
            cells = by_label[by_label["steps"] == steps]
            table.append({"sampler": label, "steps": int(steps),
                          **{SWEEP_QUANTITIES[q]: mean_std(cells[cells["quantity"] == q]["value"])
                             for q in quantities}})
    return tabulate(pd.DataFrame(table).fillna(""), headers="keys", tablefmt="github", showindex=False)


def sweep_figure(runs: pd.DataFrame, title: str, figures: Path, out_dir: Path) -> str:
    """Quality and samples/s against steps (log x), a line per objective and sampler,
    mean over seeds with the seeds' std as error bars."""
    quality = next((q for q in SWEEP_FIGURE_QUALITY if q in set(runs["quantity"])), None)
    panels = [q for q in (quality, "samples_per_s") if q is not None and q in set(runs["quantity"])]
    if not panels:
        return ""
    objectives = sorted(runs["objective"].unique())
    labels = list(pd.unique(runs["sampler_label"]))
    colours = {label: f"C{i}" for i, label in enumerate(labels)}
    styles = ["-", "--", ":", "-."]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for ax, quantity in zip(axes[0], panels):
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
        log_axes(ax, sorted(runs["steps"].unique()), runs[runs["quantity"] == quantity]["value"].dropna(),
                 log_y=quantity in ("fid", "kid", "samples_per_s"))
        ax.set_xlabel("sampler steps (network evaluations per sample)")
        ax.set_ylabel(SWEEP_QUANTITIES[quantity] + (" (higher is better)" if quantity != "fid" else
                                                    " (lower is better)"), fontsize=8)
        ax.legend(fontsize=6)
    fig.suptitle(title, fontsize=9)
    path = save_figure(fig, figures / f"samplers-{json_hash(title + '|' + '|'.join(runs['group'].unique()))}.png")
    return f"![sampler sweep]({rel(path, out_dir)})"


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


def bound_view(final: pd.DataFrame, setting: tuple, figures: Path, out_dir: Path) -> str:
    """Likelihood bound (bits/dim) next to FID and throughput, one row per objective
    (e.g. L_simple vs the variational-bound weighting), mean ± std over seeds."""
    runs = final[(final[SETTING].astype(str).agg(" | ".join, axis=1) == " | ".join(map(str, setting)))
                 & final["metric"].isin(list(BOUND_COLUMNS))]
    if runs.empty or "test/nll_bpd" not in set(runs["metric"]) and "test/nll" not in set(runs["metric"]):
        return "(no likelihood bound recorded for this model and dataset)"
    columns = [m for m in BOUND_COLUMNS if m in set(runs["metric"])]
    rows = []
    for objective, by_objective in runs.groupby("objective", sort=True):
        rows.append({"objective": objective, **{BOUND_COLUMNS[m]: mean_std(
            by_objective[by_objective["metric"] == m]["value"]) for m in columns}})
    table = tabulate(pd.DataFrame(rows).fillna(""), headers="keys", tablefmt="github", showindex=False)
    nll = runs[runs["metric"].isin(["test/nll_bpd", "test/nll"])]["provenance"]
    estimators = sorted({f"{p.get('estimator')} ({p.get('convention')}, "
                         f"{p.get('n_examples')} {p.get('split')} examples)" for p in nll})
    samples = sorted({str(p.get("samples")) for p in runs[runs["metric"] == "quality/fid"]["provenance"]})
    lines = [f"- likelihood: {e}" for e in estimators] + [f"- FID/KID: the `quality` metric, samples: {s}"
                                                          for s in samples]
    figure = bound_figure(runs, setting, figures, out_dir)
    return (f"Likelihood bound by objective\n\n{table}\n\n" + "\n".join(lines)
            + (f"\n\n{figure}" if figure else ""))


def bound_figure(runs: pd.DataFrame, setting: tuple, figures: Path, out_dir: Path) -> str:
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
    path = save_figure(fig, figures / f"bound-{json_hash(list(map(str, setting)))}.png")
    return f"![likelihood bound vs FID]({rel(path, out_dir)})"


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


def stability_table(final: pd.DataFrame) -> str:
    """Adversarial runs: failure rate, collapses, time to collapse, final and best quality."""
    stab = final[final["metric"].str.startswith("stability/")]
    if stab.empty:
        return "(no stability records: only adversarial training records them)"
    rows = []
    for group, runs in stab.groupby(GROUP, sort=True):
        row = dict(zip(GROUP, group))
        failed = runs[runs["metric"] == "stability/failed"]["value"]
        row["failed"] = f"{int(failed.sum())}/{len(failed)}"
        collapse = runs[runs["metric"] == "stability/collapse_step"]["value"]
        row["collapsed"] = f"{int(collapse.notna().sum())}/{len(collapse)}"
        row["collapse step"] = mean_std(collapse)
        for metric in sorted(set(runs["metric"]) - {"stability/failed", "stability/collapse_step"}):
            row[short(metric)] = mean_std(runs[runs["metric"] == metric]["value"])
        rows.append(row)
    note = ("failed = diverged, or collapsed at the final evaluation; collapse rule and interval "
            "quality per step are in the records (`stability/*`).")
    return (tabulate(drop_uniform(pd.DataFrame(rows)).fillna(""), headers="keys", tablefmt="github", showindex=False)
            + "\n\n" + note)


def short(metric: str) -> str:
    return metric.split("/", 1)[1]


def provenance_note(records: pd.DataFrame) -> str:
    """Units, then every provenance field with its distinct values."""
    units = records.drop_duplicates("metric")[["metric", "unit"]]
    lines = [f"- `{short(m)}`: {u}" for m, u in zip(units["metric"], units["unit"])]
    values: dict[str, set[str]] = {}
    for prov in records["provenance"]:
        for key, value in prov.items():
            if key != "metric_fn":
                values.setdefault(key, set()).add(str(value))
    for key in sorted(values):
        shown = sorted(values[key])
        more = f" (+{len(shown) - 6} more)" if len(shown) > 6 else ""
        lines.append(f"- {key}: {'; '.join(shown[:6])}{more}")
    return "Units and provenance:\n\n" + "\n".join(lines)


def perf_table(final: pd.DataFrame) -> str:
    rows = []
    for group, runs in final.groupby(GROUP, sort=True):
        row = dict(zip(["model", "objective", "dataset", "precision", "backend"], group[:5]))
        for metric, (title, scale) in PERF_COLUMNS.items():
            row[title] = mean_std(runs[runs["metric"] == metric]["value"] * scale)
        rows.append(row)
    return tabulate(pd.DataFrame(rows).fillna(""), headers="keys", tablefmt="github", showindex=False)


def perf_note(final: pd.DataFrame) -> str:
    mem = final[final["metric"] == "perf/peak_memory"]["provenance"]
    kinds = sorted({p.get("measured", "") for p in mem})
    thr = final[final["metric"] == "perf/train_throughput"]["provenance"]
    methods = sorted({f"{p.get('method')}, first {p.get('warmup_steps')} steps excluded" for p in thr})
    return "\n".join(
        [f"- training throughput: {m}" for m in methods]
        + [f"- peak memory: {k}" for k in kinds]
        + ["- sampling throughput: median of timed batches after a warm-up; see records for quantiles"]
    )


def curve_figures(frame: pd.DataFrame, figures: Path, out_dir: Path) -> str:
    """One figure per group: training loss and gradient norm against step, a line per seed."""
    parts = []
    curves = frame[frame["step"].notna() & frame["metric"].isin(CURVE_METRICS)]
    for group, runs in curves.groupby("group", sort=True):
        present = [m for m in CURVE_METRICS if m in set(runs["metric"])]
        fig, axes = plt.subplots(1, len(present), figsize=(4.5 * len(present), 3), squeeze=False)
        axes = axes[0]
        for ax, metric in zip(axes, present):
            for seed, seed_runs in runs[runs["metric"] == metric].groupby("seed"):
                ax.plot(seed_runs["step"], seed_runs["value"], label=f"seed {seed}", lw=1)
            ax.set_xlabel("step")
            ax.set_title(metric, fontsize=9)
            clip_first_steps(ax, runs[runs["metric"] == metric])
        axes[0].legend(fontsize=7)
        fig.suptitle(group, fontsize=8)
        path = save_figure(fig, figures / f"curves-{json_hash(group)}.png")
        parts.append(f"**{group}**\n\n![training curves]({rel(path, out_dir)})")
    return "\n\n".join(parts) or "(no training curves recorded)"


def save_figure(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def clip_first_steps(ax, values: pd.DataFrame) -> None:
    """Fit the y-axis to the curve after its first 5% of steps, so the large values at
    initialisation do not flatten the rest (they are still drawn, off the top)."""
    late = values[values["step"] > 0.05 * values["step"].max()]["value"].dropna()
    if len(late) > 1 and late.max() > late.min():
        pad = 0.1 * (late.max() - late.min())
        ax.set_ylim(late.min() - pad, late.max() + pad)


def artefact_section(frame: pd.DataFrame, out_dir: Path) -> str:
    """The sample and reconstruction grids of the lowest seed of each group."""
    parts = []
    complete = frame[frame["metric"] == COMPLETE_METRIC].sort_values("seed")
    for group, runs in complete.groupby("group", sort=True):
        first = runs.iloc[0]
        paths = first["provenance"].get("artefacts") or {}
        if not paths:
            continue
        images = " ".join(
            f"![{name}]({rel(Path(first['source_dir']) / p, out_dir)})" for name, p in sorted(paths.items())
        )
        parts.append(f"**{group}** (seed {first['seed']}; {', '.join(sorted(paths))})\n\n{images}")
    note = ("Image sample grids show the decoder mean (latent-variable models), draws (autoregressive "
            "models, flows, diffusion: see each run's `samples` provenance) or the generator's output "
            "(GANs); waveform figures plot drawn 1-D signals above test signals; reconstruction grids "
            "alternate rows of test images and their reconstructions; "
            "traversal grids move one latent dimension per row over its 5-95% range on the test data "
            "(the most variable dimensions, at most 12); interpolation grids decode straight lines "
            "between the encodings of test pairs; 2-D scatters show draws from the model.\n\n")
    return note + ("\n\n".join(parts) or "(no artefacts)")


def provenance_section(frame: pd.DataFrame) -> str:
    complete = frame[frame["metric"] == COMPLETE_METRIC]
    rows = []
    for _, r in complete.sort_values(["group", "seed"]).iterrows():
        prov = r["provenance"]
        data = prov.get("dataset", {})
        rows.append({
            "run_id": r["run_id"], "model": r["model"], "objective": r["objective"], "seed": r["seed"],
            "dataset (hash)": f"{r['dataset']} ({data.get('content_hash')})",
            "n train/test": f"{data.get('n_train')}/{data.get('n_test')}",
            "steps": prov.get("config", {}).get("run", {}).get("steps"),
            "kernels": ", ".join(f"{k}={v}" for k, v in (prov.get("kernel_backends") or {}).items()) or "none",
            "precision": r["precision"],
        })
    env = complete.assign(v=complete["versions"].astype(str)).drop_duplicates(["device", "git_commit", "v"])
    env_lines = [
        f"- device: {r['device']}; torch {r['versions'].get('torch')}, triton "
        f"{r['versions'].get('triton')}, genbench {r['versions'].get('genbench')}, python "
        f"{r['versions'].get('python')}, numpy {r['versions'].get('numpy')}; git commit {r['git_commit']}"
        for _, r in env.iterrows()
    ]
    return "\n".join(env_lines) + "\n\n" + tabulate(pd.DataFrame(rows), headers="keys", tablefmt="github", showindex=False)


def rel(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()
