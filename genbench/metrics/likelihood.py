"""Likelihood on held-out data, one scale for every family.

A model reports its negative log-likelihood through whichever estimator it supports,
checked in this order:
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

IWAE_CHUNK = 64  # importance samples per decoder pass (bounds memory)


def iwae_nll(model, x: torch.Tensor, k: int, generator: torch.Generator | None) -> torch.Tensor:
    """-log p(x) upper bound from K importance samples, per example (B,) in nats."""
    chunks = [model.importance_log_weights(x, min(IWAE_CHUNK, k - start), generator)
              for start in range(0, k, IWAE_CHUNK)]
    log_w = torch.cat(chunks)  # (k, B)
    return -(torch.logsumexp(log_w, dim=0) - math.log(k))


def estimator(model) -> str | None:
    for name in ("exact_nll", "variational_bound_nll", "importance_log_weights"):
        if hasattr(model, name):
            return name
    return None


def applies(model, info) -> bool:
    return estimator(model) is not None and hasattr(model, "likelihood")


@register_metric("likelihood", applies, "held-out NLL in nats and bits/dim: exact, variational bound, or IWAE-K")
@torch.no_grad()
def likelihood(ctx: EvalContext) -> list[MetricValue]:
    model, lik, kind = ctx.model, ctx.model.likelihood, estimator(ctx.model)
    generator = ctx.generator()
    nll = []
    for target in ctx.batches(ctx.prepared_test):
        if kind == "importance_log_weights":
            nll.append(iwae_nll(model, target, ctx.iwae_k, generator))
        else:
            nll.append(getattr(model, kind)(target))
    nll_all = torch.cat(nll)  # (N,)
    prov = {"estimator": {"exact_nll": "exact", "variational_bound_nll": "variational bound",
                          "importance_log_weights": f"IWAE bound, K={ctx.iwae_k}"}[kind],
            "n_examples": int(nll_all.numel()), "split": "test", "convention": lik.convention()}
    if kind == "importance_log_weights":
        prov["iwae_k"] = ctx.iwae_k
    values = [MetricValue("test/nll", float(nll_all.mean()), "nats/example", prov)]
    bpd = lik.bits_per_dim(nll_all, ctx.dataset.info.dims)
    if bpd is not None:
        values.append(MetricValue("test/nll_bpd", float(bpd.mean()), "bits/dim", prov))
    return values
