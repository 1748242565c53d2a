"""Representation metrics: disentanglement, few-label probes and active units.

They apply by capability: a model declaring a representation, `representation(x) -> (B, d)`
(the deterministic code: a VAE's posterior mean, an autoencoder's code, ...; the kind and
the contract are in genbench/models/base.py, Capabilities.representation).

Encoding: each split is encoded once per evaluation (batches of ctx.batch_size, no grad,
on ctx.device) and shared by the metrics here. The encoder sees the data as it saw it in
training: a model declaring a `likelihood` gets its prepared data (binarised or dequantised
with the fixed seed EVAL_SEED: the test split is ctx.prepared_test, the one the other
metrics score), any other model the images in [-1, 1]. The codes are kept in the
context's __dict__ (like its cached properties), float32 on the CPU.

Cost on 2 CPU cores for `shapes` (N = 16,384), beyond encoding: disentanglement < 1 s for
d <= 64, ~5 s for d = 1024 (beta-VAE, FactorVAE and MIG ~2 s each), ~10 s for d = 2048;
probe ~1-2 s; active units negligible.

- disentanglement (data with known factors, e.g. `shapes`): the beta-VAE metric, the
  FactorVAE metric and MIG (genbench.metrics.disentanglement, settings there and in each
  record), on the codes of train + test together (16,384 examples for `shapes`); the
  samples are drawn with numpy default_rng(EVAL_SEED), one generator per score.
- probe (labelled images): linear-probe and 1-NN test accuracy from 10 and 100 labels per
  class (genbench.metrics.probes), on the codes and, as the baseline, on the raw pixels
  (the dataset's images in [-1, 1], flattened), with the same labelled examples.
- active_units (Burda et al. 2016, "Importance Weighted Autoencoders", sec. 5.2): for a
  Gaussian encoder, unit u is active if A_u = Cov_x(E_{q(z|x)}[z_u]) > 0.01, the variance
  (ddof=1) over the test split of the unit's posterior mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from genbench.metrics.base import EVAL_SEED, EvalContext, MetricValue, register_metric
from genbench.metrics.disentanglement import beta_vae_score, factor_vae_score, mig_score
from genbench.metrics.probes import K_NEIGHBOURS, N_PER_CLASS, few_label_probes

ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. 2016


def _has_representation(model) -> bool:
    return model.capabilities.representation is not None


def has_factors(model, info) -> bool:
    return _has_representation(model) and bool(info.extras.get("factor_names"))


def labelled_images(model, info) -> bool:
    return _has_representation(model) and info.classes is not None and info.kind == "image"


def gaussian_mean(model, info) -> bool:
    return model.capabilities.representation == "gaussian-mean"


# --- encoding ---------------------------------------------------------------------------


@torch.no_grad()
def encode(model, batches) -> np.ndarray:
    """Codes of the model's input batches (each (B, ...) on the model's device): (N, d) float32."""
    codes = []
    for x in batches:
        z = model.representation(x)
        if z.ndim != 2 or z.shape[0] != x.shape[0]:
            raise ValueError(f"representation(x) must return (B, d) = ({x.shape[0]}, d); got {tuple(z.shape)}")
        codes.append(z.detach().to("cpu", torch.float32))
    out = torch.cat(codes).numpy()  # (N, d)
    if not np.isfinite(out).all():
        raise ValueError("the representation contains NaN or Inf values")
    return out


def _train_batches(ctx: EvalContext):
    """The train split in batches on ctx.device, prepared like ctx.prepared_test."""
    generator = ctx.generator()
    for x in ctx.dataset.train.x.split(ctx.batch_size):
        x = x.to(ctx.device)
        yield ctx.model.likelihood.prepare(x, generator) if ctx.model.capabilities.likelihood else x


def encode_splits(ctx: EvalContext) -> dict[str, np.ndarray]:
    """{"train": (N_train, d), "test": (N_test, d)} codes (EvalContext.representations
    caches them, so the metrics encode once between them)."""
    test = ctx.prepared_test if ctx.model.capabilities.likelihood else ctx.test_x
    return {"train": encode(ctx.model, _train_batches(ctx)), "test": encode(ctx.model, ctx.batches(test))}


def _provenance(ctx: EvalContext, codes: np.ndarray, splits: str) -> dict:
    return {"n_examples": int(codes.shape[0]), "splits": splits, "dims": int(codes.shape[1]),
            "representation_kind": ctx.model.capabilities.representation}


# --- disentanglement --------------------------------------------------------------------


# The provenance _provenance gives every representation value: which codes were scored.
CODES = ("n_examples", "splits", "dims", "representation_kind")
DISENTANGLEMENT_VALUES = {
    "test/beta_vae_score": ("higher", "accuracy", "beta-VAE metric: accuracy of predicting the fixed factor"),
    "test/factor_vae_score": ("higher", "accuracy", "FactorVAE metric: majority-vote accuracy of the fixed factor"),
    "test/mig": ("higher", "score", "mutual information gap, averaged over factors"),
}
PROBE_VALUES = {
    "test/probe_*_acc_n*": ("higher", "accuracy", "test accuracy of a probe (linear or 1-NN) trained on n "
                                                  "labelled examples per class, on the codes or raw pixels"),
}
ACTIVE_UNITS_VALUES = {
    "test/active_units": ("neither", "units", "latent units whose posterior mean varies over the test split"),
    "test/active_units_fraction": ("neither", "fraction", "active units over all latent units"),
}


@register_metric("disentanglement", has_factors,
                 "beta-VAE metric, FactorVAE metric and MIG of the representation against known factors",
                 values=DISENTANGLEMENT_VALUES,
                 conditions=(*CODES, "method", "classifier", "pairs_per_point", "examples_per_vote", "n_train",
                             "n_eval", "prune_std", "bins", "binning", "mi", "factors", "conditional_sampling"),
                 outcomes=("seed", "train_accuracy", "per_factor", "n_active_dims"))
def disentanglement(ctx: EvalContext) -> list[MetricValue]:
    train, test, names = ctx.dataset.train, ctx.dataset.test, ctx.dataset.info.extras["factor_names"]
    if train.factors is None or test.factors is None:
        raise ValueError(f"dataset {ctx.dataset.info.name!r} names factors but its splits hold none")
    codes = ctx.representations
    reps = np.concatenate([codes["train"], codes["test"]])  # (N, d)
    factors = torch.cat([train.factors, test.factors]).numpy()  # (N, F)
    base = {**_provenance(ctx, reps, "train+test"), "seed": EVAL_SEED,
            "conditional_sampling": "dataset examples sharing the factor's value (factors drawn independently)"}
    beta = beta_vae_score(reps, factors, np.random.default_rng(EVAL_SEED))
    fvae = factor_vae_score(reps, factors, np.random.default_rng(EVAL_SEED))
    mig = mig_score(reps, factors)

    def used(result) -> dict:
        return {"factors": [names[k] for k in result.factors_used],
                "factors_skipped": [names[k] for k in result.factors_skipped]}

    chance = 1.0 / len(beta.factors_used)
    return [
        MetricValue("test/beta_vae_score", beta.score, "accuracy", {
            **base, **used(beta), "method": "Higgins et al. 2017", "pairs_per_point": beta.batch,
            "n_train": beta.n_train, "n_eval": beta.n_eval, "train_accuracy": beta.train_accuracy,
            "classifier": f"multinomial logistic regression, standardised inputs, L2 C={beta.C:g}, "
                          f"L-BFGS <= {beta.max_iter} iterations",
            "chance": chance}),
        MetricValue("test/factor_vae_score", fvae.score, "accuracy", {
            **base, **used(fvae), "method": "Kim & Mnih 2018", "examples_per_vote": fvae.batch,
            "n_train": fvae.n_train, "n_eval": fvae.n_eval, "train_accuracy": fvae.train_accuracy,
            "prune_std": fvae.prune_std, "n_active_dims": fvae.n_active_dims,
            "classifier": "majority vote: argmin-variance dim -> factor", "chance": chance}),
        MetricValue("test/mig", mig.score, "score", {
            **base, **used(mig), "method": "Chen et al. 2018", "bins": mig.bins, "binning": "equal-width, min..max",
            "mi": "plug-in, nats", "per_factor": [round(g, 6) for g in mig.per_factor]}),
    ]


# --- probes -----------------------------------------------------------------------------


@register_metric("probe", labelled_images,
                 "few-label linear-probe and 1-NN accuracy on the representation and on raw pixels",
                 values=PROBE_VALUES,
                 conditions=(*CODES, "split", "label_seed", "labelled_from", "linear", "knn", "input", "n_per_class",
                             "n_labelled", "n_test", "n_features"))
def probe(ctx: EvalContext) -> list[MetricValue]:
    train, test, classes = ctx.dataset.train, ctx.dataset.test, ctx.dataset.info.classes
    if train.y is None or test.y is None:
        raise ValueError(f"dataset {ctx.dataset.info.name!r} names classes but its splits hold no labels")
    codes = ctx.representations
    on_codes = few_label_probes(codes["train"], train.y, codes["test"], test.y, len(classes), N_PER_CLASS, EVAL_SEED)
    on_pixels = few_label_probes(train.x, train.y, test.x, test.y, len(classes), N_PER_CLASS, EVAL_SEED)
    settings = {"split": "test", "label_seed": EVAL_SEED, "labelled_from": "train",
                "linear": "multinomial logistic regression, inputs standardised on the whole train split, "
                          "L2 C=1 (sklearn convention), L-BFGS",
                "knn": f"k={K_NEIGHBOURS}, Euclidean on raw features"}
    values = []
    for (name, results, prov) in (("", on_codes, _provenance(ctx, codes["test"], "test")),
                                  ("_pixels", on_pixels, {"input": "raw pixels in [-1, 1], flattened"})):
        for r in results:
            p = {**settings, **prov, "n_per_class": r.n_per_class, "n_labelled": r.n_labelled, "n_test": r.n_test,
                 "n_features": r.n_features, "chance": 1.0 / len(classes), "skipped": r.skipped}
            values += [MetricValue(f"test/probe_linear{name}_acc_n{r.n_per_class}", r.linear_accuracy, "accuracy", p),
                       MetricValue(f"test/probe_knn{name}_acc_n{r.n_per_class}", r.knn_accuracy, "accuracy", p)]
    return values


# --- active units -----------------------------------------------------------------------


@dataclass(frozen=True)
class ActiveUnits:
    count: int
    fraction: float
    variances: np.ndarray  # (d,) A_u for each unit
    threshold: float


def active_units(means, threshold: float = ACTIVE_UNIT_THRESHOLD) -> ActiveUnits:
    """Units u with A_u = Cov_x(E_q[z_u | x]) > threshold (Burda et al. 2016), means (N, d)."""
    means = np.asarray(torch.as_tensor(means).detach().cpu(), dtype=np.float64)
    if means.ndim != 2 or means.shape[0] < 2 or means.shape[1] == 0:
        raise ValueError(f"active units need posterior means (N, d) with N >= 2, d >= 1; got {means.shape}")
    if not np.isfinite(means).all():
        raise ValueError("the posterior means contain NaN or Inf values")
    variances = means.var(0, ddof=1)  # (d,)
    count = int((variances > threshold).sum())
    return ActiveUnits(count, count / means.shape[1], variances, threshold)


@register_metric("active_units", gaussian_mean,
                 "active latent units (Burda et al. 2016): Cov_x(E_q[z_u|x]) > 0.01 over the test split",
                 values=ACTIVE_UNITS_VALUES, conditions=(*CODES, "threshold", "statistic", "method"))
def active_units_metric(ctx: EvalContext) -> list[MetricValue]:
    codes = ctx.representations["test"]  # (N_test, d)
    result = active_units(codes)
    prov = {**_provenance(ctx, codes, "test"), "threshold": result.threshold,
            "statistic": "variance (ddof=1) over the test split of E_q[z_u|x]", "method": "Burda et al. 2016"}
    return [MetricValue("test/active_units", float(result.count), "units", prov),
            MetricValue("test/active_units_fraction", result.fraction, "fraction", prov)]
