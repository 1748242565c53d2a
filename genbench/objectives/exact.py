"""Maximum likelihood for models with an exact (or change-of-variables) likelihood:
autoregressive models (PixelCNN, WaveNet) and normalising flows (RealNVP, Glow), the
model family "likelihood".

nll: the batch mean of -log p(x) per dimension, in nats/dim, on the data as the model's
     likelihood convention prepares them (as they are for discrete models; uniformly
     dequantised for flows). Logged: bpd, the same quantity in bits/dim under the
     convention (the number the likelihood metric reports on the test split).

A class-conditional model (attribute `class_conditional` True) receives the batch's labels
and scores -log p(x | y).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from genbench.objectives.base import LossTerms, register_objective


@dataclass(frozen=True)
class NLLOptions:
    pass


@register_objective("nll", "likelihood", NLLOptions,
                    "maximum likelihood: exact -log p(x) in nats/dim (autoregressive models; flows through "
                    "the change of variables on dequantised data)")
def nll_loss(model, x: torch.Tensor, options: NLLOptions, generator, step: int | None = None,
             labels: torch.Tensor | None = None) -> LossTerms:
    target = model.likelihood.prepare(x, generator)
    dims = math.prod(x.shape[1:])
    nll = model.exact_nll(target, labels=labels) if model.class_conditional \
        else model.exact_nll(target)  # (B,) nats
    loss = nll.mean() / dims
    bpd = model.likelihood.bits_per_dim(nll.detach(), dims).mean()
    return {"loss": loss, "bpd": bpd}
