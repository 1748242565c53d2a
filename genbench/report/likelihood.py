"""Report sections for likelihood models: one bits/dim table across families, the model
families' trade-offs made quantitative, likelihood-based anomaly detection, and the
autoregressive samplers (naive vs cached) side by side.

Every bits/dim figure here is the `likelihood` metric's on the test split, so one table
compares exact NLLs (autoregressive, flows on dequantised data), variational bounds
(diffusion) and IWAE bounds (VAEs); the estimator column says which, and the convention
line under each table says how the 8-bit data were scored.
"""

from __future__ import annotations

import pandas as pd
from tabulate import tabulate

from genbench.report.tables import SETTING_SPLIT, drop_uniform, mean_std

# What each model family trades, in the words of the classic comparison table (key idea,
# pros, cons); the measured columns beside them make it quantitative.
FAMILIES = {
    "pixelcnn": ("autoregressive", "p(x) = prod_i p(x_i given x_<i), masked convolutions",
                 "exact likelihood, good likelihood numbers", "inefficient sampling (one pass per subpixel)"),
    "wavenet": ("autoregressive", "causal dilated convolutions over time",
                "exact likelihood", "inefficient sampling (one pass per sample)"),
    "realnvp": ("flow", "invertible affine couplings, change of variables",
                "exact likelihood, easy sampling, exact inference", "constrained architectures, weaker bits/dim"),
    "glow": ("flow", "actnorm + invertible 1x1 conv + affine coupling",
             "exact likelihood, easy sampling, exact inference", "many parameters per bit, weaker bits/dim"),
    "vae": ("latent variable (VAE)", "amortised inference, ELBO",
            "easy sampling, a representation", "bound only, blurry samples"),
    "iwae": ("latent variable (VAE)", "importance-weighted bound",
             "tighter bound, easy sampling", "K decoder passes per example"),
    "ddpm": ("diffusion", "learned reversal of a fixed noising process",
             "sample quality, stable training", "bound only, inefficient sampling (many steps)"),
    "vq-vae": ("latent variable (discrete)", "vector-quantised codes + a prior over them",
              "sharp reconstructions", "needs a learned prior to sample"),
    "hvae": ("latent variable (hierarchical)", "ladder of latent layers, precision-weighted inference",
             "deeper posteriors, easy sampling", "bound only, upper layers prone to collapse"),
    "gumbel-vae": ("latent variable (categorical)", "Gumbel-softmax relaxation of discrete latents",
                   "discrete codes trained by backprop", "bound only, temperature to tune"),
}

LIKELIHOOD_COLUMNS = {  # metric -> (column, scale)
    "test/nll_bpd": ("bits/dim", 1.0),
    "perf/train_throughput": ("train ex/s", 1.0),
    "perf/sample_throughput": ("samples/s", 1.0),
    "perf/peak_memory": ("peak mem MiB", 1 / 2**20),
    "quality/fid": ("FID", 1.0),
    "quality/kid": ("KID", 1.0),
}
SETTING = ["model", "objective", *SETTING_SPLIT]


def base_model(label: str) -> str:
    """'ddpm[channels=32,...]' -> 'ddpm' (suites label models with their option overrides)."""
    return label.split("[", 1)[0]


def by_metric_fn(final: pd.DataFrame, name: str) -> pd.DataFrame:
    return final[final["provenance"].map(lambda p: p.get("metric_fn") == name)]


def binarised(provenance: dict) -> bool:
    """Scored on binarised data (Bernoulli decoders): bits/dim of a different problem than
    the 8-bit levels, never ranked beside them."""
    return "binaris" in str(provenance.get("convention", ""))


def likelihood_section(final: pd.DataFrame) -> str:
    """Per dataset, every model with a held-out NLL, best bits/dim first, beside its
    throughputs, memory and sample quality; then the families' trade-offs. Models scored on
    binarised data get their own table."""
    nll = final[final["metric"] == "test/nll_bpd"]
    if nll.empty:
        return "(no run recorded a held-out NLL in bits/dim)"
    parts = []
    for dataset, records in nll.groupby("dataset", sort=True):
        scopes = dict(tuple(final[final["dataset"] == dataset].groupby(SETTING, sort=True)))  # every record per setting
        on_binarised = records["provenance"].map(binarised)
        for title, subset, data in ((dataset, records[~on_binarised], "8-bit data"),
                                    (f"{dataset}, binarised", records[on_binarised], "binarised data")):
            if not subset.empty:
                parts.append(f"### {title}\n\n" + likelihood_table(subset, scopes, data))
    return "\n\n".join(parts) + "\n\n" + families_table(final)


def likelihood_table(records: pd.DataFrame, scopes: dict, data: str) -> str:
    """One row per setting of `records` (test/nll_bpd), best bits/dim first; `scopes` holds
    every record of each setting, for the columns beside the NLL."""
    rows = []
    for setting, runs in records.groupby(SETTING, sort=True):
        scope = scopes[setting]
        row = dict(zip(SETTING, setting))
        row.update({"family": FAMILIES.get(base_model(setting[0]), ("",))[0],
                    "estimator": runs["provenance"].iloc[0].get("estimator", ""), "_order": runs["value"].mean()})
        for metric, (column, scale) in LIKELIHOOD_COLUMNS.items():
            row[column] = mean_std(scope[scope["metric"] == metric]["value"] * scale)
        rows.append(row)
    frame = drop_uniform(pd.DataFrame(rows).sort_values("_order").drop(columns="_order")).replace("", pd.NA)
    frame = frame.dropna(axis=1, how="all").fillna("")
    conventions = sorted({f"{base_model(m)}: {p.get('convention', '')}"
                          for m, p in zip(records["model"], records["provenance"])})
    return (tabulate(frame, headers="keys", tablefmt="github", showindex=False)
            + f"\n\nConventions (all on the same test split, {data}):\n\n" + "\n".join(f"- {c}" for c in conventions))


def families_table(final: pd.DataFrame) -> str:
    """Key idea, pros and cons per family, with the measured figures that back them: the
    best bits/dim on each dataset, and training and sampling throughput (medians over the
    family's runs)."""
    nll = final[final["metric"] == "test/nll_bpd"]
    rows = []
    for model in sorted({base_model(m) for m in nll["model"]}):
        family, idea, pros, cons = FAMILIES.get(model, ("", "", "", ""))
        mine = final[final["model"].map(base_model) == model]
        row = {"model": model, "family": family, "key idea": idea, "pros": pros, "cons": cons}
        for dataset in sorted(set(nll["dataset"])):
            values = mine[(mine["metric"] == "test/nll_bpd") & (mine["dataset"] == dataset)]["value"]
            row[f"bits/dim {dataset} (best)"] = f"{values.min():.3f}" if not values.empty else ""
        for metric, column in (("perf/train_throughput", "train ex/s"), ("perf/sample_throughput", "samples/s")):
            values = mine[mine["metric"] == metric]["value"]
            row[column] = f"{values.median():.4g}" if not values.empty else ""
        rows.append(row)
    note = ("Throughputs are medians over the model's runs on this machine (same batch sizes as the runs; "
            "see Performance), so they compare within this report only.")
    return ("### Model families\n\n" + tabulate(pd.DataFrame(rows).fillna(""), headers="keys", tablefmt="github",
                                                showindex=False) + "\n\n" + note)


def anomaly_section(final: pd.DataFrame) -> str:
    """AUROC of each model's NLL at telling its held-out test split (negatives) from other
    embedded datasets (positives); below 0.5 the model gives the other data higher likelihood."""
    records = by_metric_fn(final, "anomaly")
    if records.empty:
        return "(no anomaly-detection records: only models with a likelihood on embedded image data record them)"
    rows, flagged = [], []
    for (model, objective, dataset, *split), runs in records.groupby(["model", "objective", "dataset",
                                                                      *SETTING_SPLIT], sort=True):
        row = {"model": model, "objective": objective, "trained on": dataset, **dict(zip(SETTING_SPLIT, split))}
        own = runs[runs["metric"].str.startswith("anomaly/id_")]["value"]
        row["test bpd (own)"] = mean_std(own)
        for metric, values in runs.groupby("metric", sort=True):
            name = metric.split("/", 1)[1]
            if name.startswith("auroc@"):
                ood = name.split("@", 1)[1]
                row[f"AUROC vs {ood}"] = mean_std(values["value"])
                row[f"bpd on {ood}"] = mean_std(runs[runs["metric"].str.startswith("anomaly/ood_")
                                                     & runs["metric"].str.endswith(f"@{ood}")]["value"])
                if values["value"].mean() < 0.5:
                    flagged.append(f"{model} ({dataset}) vs {ood}")
        rows.append(row)
    table = tabulate(drop_uniform(pd.DataFrame(rows)).fillna(""), headers="keys", tablefmt="github", showindex=False)
    failure = ("Known failure (Nalisnick et al. 2019) seen here: AUROC < 0.5, the model assigns higher likelihood "
               "to the other data: " + "; ".join(flagged) + "." if flagged
               else "No model assigned higher mean likelihood to another dataset than to its own test split.")
    conversions = sorted({str(p.get("conversion", "")) for p in records["provenance"] if p.get("conversion")})
    return (table + "\n\n" + failure + "\n\nScore: NLL in bits/dim (higher = more anomalous); AUROC by the "
            "Mann-Whitney statistic, ties counted half.\n\n" + "\n".join(f"- {c}" for c in conversions))


def ar_sampler_section(final: pd.DataFrame) -> str:
    """Samples/s of the naive sampler (the whole network re-run per generated value) and the
    cached one, timed side by side in one process, and whether they drew identical samples."""
    records = by_metric_fn(final, "ar_samplers")
    if records.empty:
        return "(no autoregressive sampler records)"
    rows = []
    for (model, dataset, *split), runs in records.groupby(["model", "dataset", *SETTING_SPLIT], sort=True):
        row = {"model": model, "dataset": dataset, **dict(zip(SETTING_SPLIT, split))}
        for metric, values in runs.groupby("metric", sort=True):
            row[metric.split("/", 1)[1]] = mean_std(values["value"])
        rows.append(row)
    prov = records[records["metric"].str.contains("samples_per_s")]["provenance"].iloc[0]
    detail = ", ".join(f"{k}={prov[k]}" for k in ("method", "n", "device") if k in prov)
    return (tabulate(drop_uniform(pd.DataFrame(rows)).fillna(""), headers="keys", tablefmt="github", showindex=False)
            + f"\n\nMeasured side by side in one process ({detail}); identical = 1 when both samplers drew the "
            "same samples from the same seed.")
