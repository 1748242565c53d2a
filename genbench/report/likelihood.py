"""Likelihood across families: one bits/dim table across families, and the model
families' trade-offs made quantitative.

Every bits/dim figure here is the `likelihood` metric's on the test split, so one table
compares exact NLLs (autoregressive, flows on dequantised data), variational bounds
(diffusion) and IWAE bounds (VAEs); the estimator column says which, and the convention
line under each table says how the 8-bit data were scored.
"""

from __future__ import annotations

import pandas as pd

from genbench.report.base import Inputs, binarised
from genbench.report.producers import value_spec
from genbench.report.tables import SETTING_SPLIT, drop_uniform, markdown_table, mean_std
from genbench.report.verdicts import verdict_cell

TITLE = "Likelihood across families"

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

KID_SCALE = value_spec("quality/kid", {"metric_fn": "quality"}).shown_scale  # as the metric declares it
LIKELIHOOD_COLUMNS = {  # metric -> (column, scale)
    "test/nll_bpd": ("bits/dim", 1.0),
    "perf/train_throughput": ("train ex/s", 1.0),
    "perf/sample_throughput": ("samples/s", 1.0),
    "perf/peak_memory": ("peak mem MiB", 1 / 2**20),
    "quality/fid": ("FID", 1.0),
    "quality/kid": (f"KID ×{KID_SCALE:g}", KID_SCALE),
}
SETTING = ["model", "objective", *SETTING_SPLIT]


def base_model(label: str) -> str:
    """'ddpm[channels=32,...]' -> 'ddpm' (suites label models with their option overrides)."""
    return label.split("[", 1)[0]


def section(inputs: Inputs) -> str:
    """Per dataset, every model with a held-out NLL, best bits/dim first, beside its
    throughputs, memory and sample quality; then the families' trade-offs. Models scored on
    binarised data get their own table."""
    final = inputs.final
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
                parts.append(f"### {title}\n\n" + likelihood_table(subset, scopes, data, inputs.verdicts))
    return "\n\n".join(parts) + "\n\n" + families_table(final)


def likelihood_table(records: pd.DataFrame, scopes: dict, data: str, verdicts: dict) -> str:
    """One row per setting of `records` (test/nll_bpd), best bits/dim first; `scopes` holds
    every record of each setting, for the columns beside the NLL; "verdict" names failed and
    not-learned runs (report/verdicts.py: below the per-pixel histogram's bits/dim)."""
    rows = []
    for setting, runs in records.groupby(SETTING, sort=True):
        scope = scopes[setting]
        row = dict(zip(SETTING, setting))
        row.update({"family": FAMILIES.get(base_model(setting[0]), ("",))[0],
                    "estimator": runs["provenance"].iloc[0].get("estimator", ""), "_order": runs["value"].median(),
                    "verdict": verdict_cell(runs["run_id"], verdicts)})
        for metric, (column, scale) in LIKELIHOOD_COLUMNS.items():
            row[column] = mean_std(scope[scope["metric"] == metric]["value"] * scale)
        rows.append(row)
    frame = drop_uniform(pd.DataFrame(rows).sort_values("_order").drop(columns="_order")).replace("", pd.NA)
    frame = frame.dropna(axis=1, how="all").fillna("")
    conventions = sorted({f"{base_model(m)}: {p.get('convention', '')}"
                          for m, p in zip(records["model"], records["provenance"])})
    return (markdown_table(frame)
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
    return "### Model families\n\n" + markdown_table(pd.DataFrame(rows).fillna("")) + "\n\n" + note
