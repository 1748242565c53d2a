"""Likelihood on held-out data, one scale for every family.

A model reports its negative log-likelihood through the estimator it declares
(Capabilities.nll, genbench/models/base.py):
  exact_nll(x) -> (B,) nats              flows, autoregressive models: exact
  variational_bound_nll(x) -> (B,) nats  diffusion: the variational bound (an upper bound)
  importance_log_weights(x, k) -> (k, B) latent-variable models: the importance-weighted
                                         bound with K samples (Burda et al. 2016),
                                         log p(x) >= logsumexp_k w_k - log K; K = 1 is the ELBO
All three are turned into nats per example and bits/dim by the model's likelihood
convention (dequantisation or binarisation, stated in the record). For the IWAE
estimate the records say K; the bound tightens as K grows.
"""

from __future__ import annotations

import math

import torch

from genbench.metrics.base import EvalContext, MetricValue, register_metric
from genbench.models.base import NLL_METHODS

IWAE_CHUNK = 64  # importance samples per decoder pass (bounds memory)


def iwae_nll(model, x: torch.Tensor, k: int, generator: torch.Generator | None) -> torch.Tensor:
    """-log p(x) upper bound from K importance samples, per example (B,) in nats."""
    chunks = [model.importance_log_weights(x, min(IWAE_CHUNK, k - start), generator)
              for start in range(0, k, IWAE_CHUNK)]
    log_w = torch.cat(chunks)  # (k, B)
    return -(torch.logsumexp(log_w, dim=0) - math.log(k))


def estimator(model) -> str | None:
    """The name of the method that scores the model's -log p(x), None without an estimator."""
    kind = model.capabilities.nll
    return None if kind is None else NLL_METHODS[kind]


def applies(model, info) -> bool:
    return model.capabilities.nll is not None  # declared with the likelihood that gives its convention


def nll_per_example(model, x: torch.Tensor, labels: torch.Tensor | None, batch_size: int, iwae_k: int,
                    generator: torch.Generator | None) -> torch.Tensor:
    """-log p(x) (an upper bound for bound estimators) per example (N,) in nats, for x already
    prepared by the model's likelihood convention, in batches. A class-conditional model
    scores -log p(x | y) with the given labels."""
    kind = estimator(model)
    conditional = model.class_conditional
    if conditional and labels is None:
        raise ValueError("a class-conditional model's NLL needs the examples' labels")
    nll = []
    for start in range(0, x.shape[0], batch_size):
        target = x[start:start + batch_size]
        if kind == "importance_log_weights":
            nll.append(iwae_nll(model, target, iwae_k, generator))
        elif conditional:
            nll.append(getattr(model, kind)(target, labels=labels[start:start + batch_size]))
        else:
            nll.append(getattr(model, kind)(target))
    return torch.cat(nll)


def estimator_provenance(model, iwae_k: int) -> dict:
    kind = estimator(model)
    prov = {"estimator": {"exact_nll": "exact", "variational_bound_nll": "variational bound",
                          "importance_log_weights": f"IWAE bound, K={iwae_k}"}[kind],
            "convention": model.likelihood.convention()}
    if kind == "importance_log_weights":
        prov["iwae_k"] = iwae_k
    if model.class_conditional:
        prov["conditional"] = "-log p(x | y) with the test labels"
    return prov


# The provenance estimator_provenance gives: which estimator, under which convention.
ESTIMATOR_CONDITIONS = ("estimator", "convention", "iwae_k", "conditional")
LIKELIHOOD_VALUES = {
    "test/nll": ("lower", "nats/example", "held-out -log p(x) (or its bound: see `estimator`)"),
    "test/nll_bpd": ("lower", "bits/dim", "held-out -log p(x) in bits per dimension under `convention`"),
}


@register_metric("likelihood", applies, "held-out NLL in nats and bits/dim: exact, variational bound, or IWAE-K",
                 values=LIKELIHOOD_VALUES, conditions=(*ESTIMATOR_CONDITIONS, "n_examples", "split"))
@torch.no_grad()
def likelihood(ctx: EvalContext) -> list[MetricValue]:
    nll_all = ctx.test_nll
    prov = {**estimator_provenance(ctx.model, ctx.iwae_k), "n_examples": int(nll_all.numel()), "split": "test"}
    values = [MetricValue("test/nll", float(nll_all.mean()), "nats/example", prov)]
    bpd = ctx.model.likelihood.bits_per_dim(nll_all, ctx.dataset.info.dims)
    if bpd is not None:
        values.append(MetricValue("test/nll_bpd", float(bpd.mean()), "bits/dim", prov))
    return values
