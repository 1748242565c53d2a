"""Codebook usage of vector-quantised models on the held-out split.

Every test example is encoded and each of its M positions assigned a code; over all
N*M assignments, with p_k the fraction assigned to code k:
  test/codebook_usage       fraction of the K codes used at least once
  test/codebook_perplexity  exp(-sum_k p_k log p_k): the effective number of codes
                            (1 when one code takes everything, K when use is uniform)
  test/dead_codes           codes never used on the test split
A collapsed codebook (few codes doing all the work) is the VQ-VAE's known failure
(van den Oord et al. 2017; Razavi et al. 2019); these numbers show it.
"""

from __future__ import annotations

import torch

from genbench.metrics.base import EvalContext, MetricValue, register_metric
from genbench.models.vqvae import counts_to_perplexity, indices_to_counts


def applies(model, info) -> bool:
    return model.capabilities.codebook


CODEBOOK_VALUES = {
    "test/codebook_usage": ("higher", "fraction of codes", "codes used at least once on the test split"),
    "test/codebook_perplexity": ("higher", "codes", "exp(entropy) of code use: the effective number of codes"),
    "test/dead_codes": ("lower", "codes", "codes never used on the test split"),
}


@register_metric("codebook", applies, "test codebook usage, perplexity and dead codes of a vector quantiser",
                 values=CODEBOOK_VALUES, conditions=("codebook_size", "positions", "n_examples", "split"),
                 outcomes=("codes_revived_in_training",))
@torch.no_grad()
def codebook(ctx: EvalContext) -> list[MetricValue]:
    model, k = ctx.model, ctx.model.codebook_size
    indices = torch.cat([model.code_indices(target) for target in ctx.batches(ctx.prepared_test)])  # (N, M)
    counts = indices_to_counts(indices, k).cpu()  # (K,)
    used = int((counts > 0).sum())
    prov = {"codebook_size": k, "positions": int(indices.shape[1]), "n_examples": int(indices.shape[0]),
            "split": "test", "codes_revived_in_training": int(model.revived_total)}
    return [
        MetricValue("test/codebook_usage", used / k, "fraction of codes", prov),
        MetricValue("test/codebook_perplexity", float(counts_to_perplexity(counts)), "codes", prov),
        MetricValue("test/dead_codes", float(k - used), "codes", prov),
    ]
