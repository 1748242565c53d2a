"""Reconstruction and ELBO metrics on the held-out split.

reconstruction: per-dimension squared error between the prepared test data (in [-1, 1];
  binarised data as {-1, 1}) and the decoder mean for a deterministic encoding (the VAE
  uses z = mu), and the reconstruction NLL -log p(x | z) in nats per example.
elbo: the single-sample ELBO per example (one z per test example, fixed seed), its KL
  and reconstruction terms in nats, and -ELBO in bits/dim under the likelihood's
  convention (an upper bound on the NLL).
"""

from __future__ import annotations

import torch

from genbench.metrics.base import EvalContext, MetricValue, register_metric


def reconstructs(model, info) -> bool:
    return model.capabilities.reconstructs  # declared with the likelihood it scores under


def has_elbo(model, info) -> bool:
    return model.capabilities.elbo


TEST_SPLIT = ("n_examples", "split", "convention")  # which examples, scored under which likelihood convention
RECONSTRUCTION_VALUES = {
    "test/recon_mse": ("lower", "mse/dim*", "squared error per dimension of the decoder mean, z = the encoding"),
    "test/recon_nll": ("lower", "nats/example", "-log p(x|z) of the test example, z = the encoding"),
}
ELBO_VALUES = {
    "test/elbo": ("higher", "nats/example", "the single-sample ELBO (a lower bound on log p(x))"),
    "test/kl": ("neither", "nats/example", "the ELBO's KL(q(z|x) || p(z)): the rate, a trade-off, not a score"),
    "test/elbo_recon_nll": ("lower", "nats/example", "the ELBO's reconstruction term -log p(x|z): the distortion"),
    "test/neg_elbo_bpd": ("lower", "bits/dim", "-ELBO in bits/dim: an upper bound on the NLL"),
}


@register_metric("reconstruction", reconstructs,
                 "test reconstruction MSE and NLL for a deterministic encoding",
                 values=RECONSTRUCTION_VALUES, conditions=TEST_SPLIT)
@torch.no_grad()
def reconstruction(ctx: EvalContext) -> list[MetricValue]:
    model, lik = ctx.model, ctx.model.likelihood
    sq_err, nll = [], []
    for target in ctx.batches(ctx.prepared_test):
        out = model.reconstruct_output(target)
        diff = lik.mean(out) - lik.target_in_data_range(target)
        sq_err.append(diff.flatten(1).pow(2).mean(1))  # (B,)
        nll.append(lik.nll(out, target))  # (B,)
    prov = {"n_examples": int(ctx.prepared_test.shape[0]), "split": "test", "convention": lik.convention()}
    values = [MetricValue("test/recon_mse", float(torch.cat(sq_err).mean()),
                          "mse/dim ([-1,1] scale)" if ctx.dataset.info.kind == "image" else "mse/dim", prov)]
    if not model.capabilities.nominal_likelihood:  # a nominal likelihood's NLL is no likelihood
        values.append(MetricValue("test/recon_nll", float(torch.cat(nll).mean()), "nats/example", prov))
    return values


@register_metric("elbo", has_elbo,
                 "test ELBO (nats/example, bits/dim), KL and reconstruction terms",
                 values=ELBO_VALUES, conditions=(*TEST_SPLIT, "z_samples", "dims"))
@torch.no_grad()
def elbo(ctx: EvalContext) -> list[MetricValue]:
    model, lik = ctx.model, ctx.model.likelihood
    generator = ctx.generator()
    recon, kl = [], []
    for target in ctx.batches(ctx.prepared_test):
        r, k, _ = model.elbo_terms(target, generator)
        recon.append(r)
        kl.append(k)
    recon_nll, kl_all = torch.cat(recon), torch.cat(kl)  # (N,)
    neg_elbo = recon_nll + kl_all
    dims = ctx.dataset.info.dims
    prov = {"n_examples": int(neg_elbo.numel()), "split": "test", "z_samples": 1,
            "convention": lik.convention(), "dims": dims}
    values = [
        MetricValue("test/elbo", float(-neg_elbo.mean()), "nats/example", prov),
        MetricValue("test/kl", float(kl_all.mean()), "nats/example", prov),
        MetricValue("test/elbo_recon_nll", float(recon_nll.mean()), "nats/example", prov),
    ]
    bpd = lik.bits_per_dim(neg_elbo, dims)
    if bpd is not None:
        values.append(MetricValue("test/neg_elbo_bpd", float(bpd.mean()), "bits/dim", prov))
    return values
