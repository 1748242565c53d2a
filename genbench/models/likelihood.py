"""Decoder likelihoods p(x|z) and the units conventions for reporting them.

Conventions (stated in every record that uses them):
- "bernoulli": the data are binarised; training uses *dynamic* binarisation (a fresh
  x ~ Bernoulli((x+1)/2) every batch), evaluation a *static* binarisation of the test
  split drawn once with a fixed seed. NLL is a discrete log-probability: bits/dim =
  nats / (D ln 2).
- "gaussian": images are 8-bit levels (x = u/127.5 - 1, bin width 2/255); the model sees
  uniformly dequantised data y = x + U(-1/255, 1/255) and its continuous density gives
  a bound on the discrete probability: -log P(u) <= -log p(y) - D log(2/255), so
  bits/dim = (NLL_nats + D ln 127.5) / (D ln 2)  (Theis et al. 2016). 2-D points are not
  quantised: their NLL stays a density in nats and has no bits/dim.
  The decoder either predicts a per-dimension log sigma (Kingma & Welling 2014,
  appendix C.2) or uses a fixed sigma (sigma = 1 is squared error up to a constant).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from genbench.errors import ConfigError
from genbench.utils.pixels import PIXEL_LEVELS

LOG_SIGMA_MIN = -7.0  # floor on predicted log sigma for unquantised data (points)
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
BIN_WIDTH = 2.0 / (PIXEL_LEVELS - 1)  # width of one 8-bit level in [-1, 1] units
# Floor on predicted log sigma for dequantised 8-bit data: the std of the uniform
# dequantisation noise, w / sqrt(12). No Gaussian fits a level's uniform noise better with a
# smaller sigma (the maximum-likelihood sigma of U(-w/2, w/2) is exactly this), so the floor
# costs no likelihood at the optimum; below it, constant background pixels drove sigma down
# to e^-7 and their squared errors, divided by sigma^2, swamped the gradient -- a beta = 1 VAE
# on digits then ended with a worse beta = 1 ELBO than a beta = 4 one (3 seeds of 3).
LOG_SIGMA_MIN_DEQUANTISED = math.log(BIN_WIDTH / math.sqrt(12))


def dequantise(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """8-bit images plus uniform noise over one level: y = x + U(-w/2, w/2), w = BIN_WIDTH."""
    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return x + (u - 0.5) * BIN_WIDTH


def dequantised_bits_per_dim(nll_nats: torch.Tensor, dims: int) -> torch.Tensor:
    """A continuous density's NLL (nats) of dequantised data in bits/dim on the discrete
    8-bit scale: (nats + D log(1/w)) / (D ln 2) (Theis et al. 2016)."""
    return (nll_nats + dims * math.log(1.0 / BIN_WIDTH)) / (dims * math.log(2))


LIKELIHOODS = ("bernoulli", "gaussian")


@dataclass(frozen=True)
class Likelihood:
    """p(x|z) for one decoder: how many outputs it needs and how to score/sample them."""

    kind: str  # "bernoulli" | "gaussian"
    sigma: float | None  # gaussian only: fixed sigma, or None for a predicted per-dim sigma
    quantised: bool  # images with 8-bit levels (bits/dim defined); False for 2-D points

    def __post_init__(self):
        # Every branch below tests for "bernoulli" and takes Gaussian otherwise: an unknown
        # kind must never get that far.
        if self.kind not in LIKELIHOODS:
            raise ConfigError(f"likelihood {self.kind!r} is not one of {', '.join(LIKELIHOODS)}; "
                              "set the model option likelihood=bernoulli or likelihood=gaussian.")
        if self.sigma is not None and (self.kind != "gaussian" or not self.sigma > 0):
            raise ConfigError(f"decoder sigma {self.sigma!r} needs likelihood=gaussian and a value > 0.")

    def out_channels(self, channels: int) -> int:
        return 2 * channels if self.kind == "gaussian" and self.sigma is None else channels

    def prepare(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """The data as this likelihood models it: binarised or dequantised."""
        if self.kind == "bernoulli":
            probs = ((x + 1) / 2).clamp(0, 1)
            return torch.bernoulli(probs, generator=generator)  # values in {0, 1}
        if not self.quantised:
            return x
        return dequantise(x, generator)

    def nll(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """-log p(target | decoder output), summed over dims: nats per example (B,)."""
        dims = tuple(range(1, target.ndim))
        if self.kind == "bernoulli":
            return F.binary_cross_entropy_with_logits(out, target, reduction="none").sum(dims)
        mean, log_sigma = self.split(out)
        nll = HALF_LOG_2PI + log_sigma + 0.5 * ((target - mean) * torch.exp(-log_sigma)) ** 2
        return nll.sum(dims)

    def split(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gaussian decoder output -> (mean, log sigma)."""
        if self.sigma is not None:
            return out, torch.full_like(out, math.log(self.sigma))
        mean, raw = out.chunk(2, dim=1)
        floor = LOG_SIGMA_MIN_DEQUANTISED if self.quantised else LOG_SIGMA_MIN
        # Soft floor: keeps the gradient alive, unlike a hard clamp.
        return mean, floor + F.softplus(raw - floor)

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        """E[x|z] in the data's own range ([-1, 1] for images)."""
        if self.kind == "bernoulli":
            return torch.sigmoid(out) * 2 - 1
        return self.split(out)[0]

    def sample(self, out: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """x ~ p(x|z) in the data's own range."""
        if self.kind == "bernoulli":
            return torch.bernoulli(torch.sigmoid(out), generator=generator) * 2 - 1
        mean, log_sigma = self.split(out)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + torch.exp(log_sigma) * noise

    def decode(self, out: torch.Tensor, draw: str, generator: torch.Generator | None) -> torch.Tensor:
        """The decoder mean (draw="mean") or a draw from p(x|z) (draw="sample")."""
        return self.mean(out) if draw == "mean" else self.sample(out, generator)

    def target_in_data_range(self, target: torch.Tensor) -> torch.Tensor:
        """Prepared data mapped back to the data range (binary {0,1} -> {-1,1})."""
        return target * 2 - 1 if self.kind == "bernoulli" else target

    def bits_per_dim(self, nll_nats: torch.Tensor, dims: int) -> torch.Tensor | None:
        """Per-example NLL in nats -> bits/dim under this likelihood's convention."""
        if self.kind == "bernoulli":
            return nll_nats / (dims * math.log(2))
        if not self.quantised:
            return None
        return dequantised_bits_per_dim(nll_nats, dims)

    def convention(self) -> str:
        if self.kind == "bernoulli":
            return "bernoulli: dynamic binarisation (train), static binarisation seed 0 (eval); bpd = nats/(D ln2)"
        if not self.quantised:
            return "gaussian density on unquantised points; nats only"
        sig = "predicted per-dim sigma" if self.sigma is None else f"fixed sigma={self.sigma}"
        return f"gaussian ({sig}) on uniformly dequantised 8-bit data; bpd = (nats + D ln127.5)/(D ln2)"


def discretised_gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """log P(x) elementwise for 8-bit images x in [-1, 1] under N(mean, exp(log_scale)^2)
    discretised over the 256 levels (Ho et al. 2020, eq. 13): each level's bin is
    [x - w/2, x + w/2] (w = BIN_WIDTH), the two edge bins extend to -inf and +inf, so the
    probabilities of the 256 levels sum to 1. Exact normal CDFs in log space; a bin right
    of the mean is integrated in the upper tail, where the difference stays accurate."""
    half = BIN_WIDTH / 2
    inv_sigma = torch.exp(-log_scale)
    upper = (x - mean + half) * inv_sigma  # standardised bin edges
    lower = (x - mean - half) * inv_sigma
    right = lower > 0  # bin entirely above the mean: P = Phi(-lower) - Phi(-upper)
    big = torch.where(right, -lower, upper)
    small = torch.where(right, -upper, lower)
    log_big = torch.special.log_ndtr(big)
    # log(Phi(big) - Phi(small)) = log Phi(big) + log(1 - exp(log Phi(small) - log Phi(big)))
    inner = -torch.expm1(torch.special.log_ndtr(small) - log_big)
    log_mid = log_big + torch.log(inner.clamp_min(1e-12))
    log_low_edge = torch.special.log_ndtr(upper)  # x = -1: P = Phi(upper)
    log_high_edge = torch.special.log_ndtr(-lower)  # x = +1: P = 1 - Phi(lower)
    return torch.where(x < -1 + half, log_low_edge, torch.where(x > 1 - half, log_high_edge, log_mid))


@dataclass(frozen=True)
class DiscretisedDecoder:
    """The conventions of a model whose decoder scores the data as they are (diffusion's
    L_0: a Gaussian discretised over the 256 8-bit levels, Ho et al. 2020 §3.3): no
    binarisation and no dequantisation, so `prepare` returns x unchanged and the NLL of
    images is already a discrete -log P(u): bits/dim = nats / (D ln 2). For unquantised
    2-D points the decoder is the continuous Gaussian: nats (a density), no bits/dim.
    `detail` says how the model computes its NLL (estimator settings), stated with it."""

    quantised: bool  # images with 8-bit levels (discretised decoder); False for 2-D points
    detail: str = ""
    kind: str = "discretised-gaussian"

    def prepare(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return x

    def bits_per_dim(self, nll_nats: torch.Tensor, dims: int) -> torch.Tensor | None:
        return nll_nats / (dims * math.log(2)) if self.quantised else None

    def convention(self) -> str:
        if self.quantised:
            what = ("discretised Gaussian decoder over the 256 8-bit levels (Ho et al. 2020 §3.3) on the data "
                    "as they are (no dequantisation): a discrete NLL; bpd = nats/(D ln2)")
        else:
            what = "continuous Gaussian decoder on unquantised points: a density in nats, no bits/dim"
        return f"{what}; {self.detail}" if self.detail else what


@dataclass(frozen=True)
class ExactDiscrete:
    """The conventions of a model that puts an exact probability mass on each discrete value
    (autoregressive models with a 256-way softmax or a discretised logistic mixture, WaveNet
    over mu-law codes): the data are scored as they are, so `prepare` returns x unchanged
    and bits/dim = nats / (D ln 2) is exact. `what` names the output distribution."""

    what: str
    kind: str = "exact-discrete"

    def prepare(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return x

    def bits_per_dim(self, nll_nats: torch.Tensor, dims: int) -> torch.Tensor:
        return nll_nats / (dims * math.log(2))

    def convention(self) -> str:
        return f"{self.what}: exact discrete NLL of the 8-bit data as they are; bpd = nats/(D ln2)"


@dataclass(frozen=True)
class UniformDequantised:
    """The conventions of a continuous density on 8-bit images (flows): the model sees
    y = x + U(-w/2, w/2) (w = BIN_WIDTH, one level), and -log p(y) + D log(1/w) bounds the
    discrete -log P(u) from above in expectation (Theis et al. 2016): bits/dim = (nats + D ln 127.5)/(D ln 2),
    the same scale as ExactDiscrete. `what` names the density and any preprocessing whose
    Jacobian the model includes."""

    what: str
    kind: str = "dequantised-density"

    def prepare(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return dequantise(x, generator)

    def bits_per_dim(self, nll_nats: torch.Tensor, dims: int) -> torch.Tensor:
        return dequantised_bits_per_dim(nll_nats, dims)

    def convention(self) -> str:
        return (f"{self.what} on uniformly dequantised 8-bit data (one level's noise, fixed seed at evaluation): "
                "an upper bound on the discrete NLL; bpd = (nats + D ln127.5)/(D ln2)")
