"""Denoising diffusion probabilistic models (Ho et al. 2020, "DDPM"), with the samplers
and schedules of the two papers that followed: Nichol & Dhariwal 2021 ("Improved DDPM":
cosine schedule, respacing) and Song et al. 2021 ("DDIM").

The process is apart from the network (genbench/models/unet.py): `GaussianDiffusion`
holds a beta schedule's tables and the closed forms, the samplers and the bound are
functions of a process and a noise predictor eps_fn(x_t, t).

Timesteps are 0-based indices: index i is the paper's t = i + 1, so x_0 is the data, the
network sees i in {0..T-1}, and q(x_{i+1} | x_0) is "q_sample at index i".
- forward:    q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I), abar_t = prod_{s<=t} (1 - beta_s)
- posterior:  q(x_{t-1} | x_t, x_0) = N(c1_t x_0 + c2_t x_t, betatilde_t I),
              c1_t = beta_t sqrt(abar_{t-1}) / (1 - abar_t), c2_t = (1 - abar_{t-1}) sqrt(alpha_t) / (1 - abar_t),
              betatilde_t = beta_t (1 - abar_{t-1}) / (1 - abar_t); its log is clipped at the first
              step (betatilde = 0 there) to betatilde of the second, as in Ho et al.'s code
- reverse:    p(x_{t-1} | x_t) = N(posterior mean at x0_hat(x_t, eps_theta), sigma_t^2 I), sigma_t^2 =
              betatilde_t ("fixed-small") or beta_t ("fixed-large"; betatilde at the first step, as
              their code); x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t), clipped to [-1, 1]
              for images when sampling and in the bound (their clip_denoised)
- bound:      -log p(x_0) <= L_T + sum_{t>1} L_{t-1} + L_0, nats: L_T = KL(q(x_T|x_0) || N(0, I)),
              L_{t-1} = KL(q(x_{t-1}|x_t,x_0) || p(x_{t-1}|x_t)) with x_t ~ q(x_t|x_0), L_0 = -log p(x_0|x_1)
              under the Gaussian discretised over the 256 8-bit levels (continuous for 2-D points)
- L_simple:   E_{t, eps} ||eps - eps_theta(x_t, t)||^2 (lambda_t = 1, Ho et al. eq. 14); the bound's
              weighting is lambda_t = beta_t^2 / (2 sigma_t^2 alpha_t (1 - abar_t)) (their eq. 12)
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable, Literal, Sequence

import torch
from torch import nn

from genbench.errors import ConfigError
from genbench.models.base import Capabilities, GenerativeModel, check_draw, evaluating, register_model
from genbench.models.unet import UNET_OPS, MLPDenoiser, UNet, UNetOptions
from genbench.models.likelihood import (
    HALF_LOG_2PI,
    DiscretisedDecoder,
    discretised_gaussian_log_likelihood,
)

EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t (B, ...), t (B,) long) -> eps (B, ...)

SCHEDULES = ("linear", "cosine")
VARIANCES = ("fixed-small", "fixed-large")
SAMPLERS = ("ddpm", "ddim")
LINEAR_BETA_START, LINEAR_BETA_END = 1e-4, 0.02  # Ho et al. 2020, over T = 1000
COSINE_S, COSINE_MAX_BETA = 0.008, 0.999  # Nichol & Dhariwal 2021, eq. 17 and below
BOUND_SEED = 0  # the bound's x_t noise and Monte-Carlo timesteps: fixed, the same for every run
EMA_WARMUP = 10  # decay_n = min(ema_decay, (1 + n) / (EMA_WARMUP + n)), n = updates so far


# ----------------------------------------------------------------------------- schedules


def linear_betas(timesteps: int) -> torch.Tensor:
    """beta_t rising linearly from 1e-4 to 0.02 over T = 1000 (Ho et al. 2020); for other T
    both ends scale by 1000 / T (Nichol & Dhariwal's get_named_beta_schedule), so the chain
    ends at about the same noise level. float64 (T,)."""
    scale = 1000.0 / timesteps
    start, end = scale * LINEAR_BETA_START, scale * LINEAR_BETA_END
    if end >= 1.0:
        raise ConfigError(f"the linear schedule scales beta_T = 0.02 * 1000 / T, which reaches 1 for T = "
                          f"{timesteps}; use timesteps >= 21, or schedule='cosine'.")
    return torch.linspace(start, end, timesteps, dtype=torch.float64)


def cosine_betas(timesteps: int, s: float = COSINE_S, max_beta: float = COSINE_MAX_BETA) -> torch.Tensor:
    """abar(t) = f(t) / f(0), f(t) = cos^2((t/T + s) / (1 + s) * pi/2) (Nichol & Dhariwal 2021,
    eq. 17), beta_t = min(1 - abar(t) / abar(t - 1), 0.999). float64 (T,)."""
    steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps  # (T+1,)
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    alphas_cumprod = f / f[0]
    return (1 - alphas_cumprod[1:] / alphas_cumprod[:-1]).clamp(max=max_beta)


def make_betas(schedule: str, timesteps: int) -> torch.Tensor:
    if schedule == "linear":
        return linear_betas(timesteps)
    if schedule == "cosine":
        return cosine_betas(timesteps)
    raise ConfigError(f"Unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}.")


def spaced_timesteps(timesteps: int, steps: int) -> list[int]:
    """`steps` indices evenly spaced over 0..T-1, both ends included (Nichol & Dhariwal's
    respacing with one section); steps = T gives every index."""
    if not 2 <= steps <= timesteps:
        raise ConfigError(f"sampling steps must be between 2 and T = {timesteps}; got {steps}.")
    stride = (timesteps - 1) / (steps - 1)
    return [int(math.floor(i * stride + 0.5)) for i in range(steps)]


# ----------------------------------------------------------------------------- the process


def gather(table: torch.Tensor, t: torch.Tensor, ndim: int, dtype: torch.dtype) -> torch.Tensor:
    """table[t] (float64 (N,), t (B,)) as (B, 1, ..., 1) with `ndim` dims in `dtype`."""
    return table.to(t.device)[t].to(dtype).reshape(-1, *([1] * (ndim - 1)))


def normal_kl(mean1, logvar1, mean2, logvar2) -> torch.Tensor:
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) elementwise, nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2)
                  + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


class GaussianDiffusion:
    """A beta schedule's tables (float64, on the CPU; gathered onto x's device) and the
    process's closed forms. `timesteps[i]` is the network's timestep for index i: i itself,
    or after `respace` the original index (the network is trained on the full chain)."""

    def __init__(self, betas: torch.Tensor, timesteps: torch.Tensor | None = None):
        betas = betas.to(torch.float64)
        if betas.ndim != 1 or len(betas) < 2 or not ((betas > 0) & (betas <= 1)).all():
            raise ValueError("betas must be a 1-D schedule of at least 2 values in (0, 1]")
        self.betas = betas  # (N,)
        self.timesteps = torch.arange(len(betas)) if timesteps is None else timesteps.long()  # (N,)
        self.alphas = 1.0 - betas
        self.alphas_cumprod = torch.cumprod(self.alphas, 0)  # abar_t
        self.alphas_cumprod_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod[:-1]])
        # float64 tables of the closed forms (1 - abar from the betas, not by cancellation in fp32)
        one_minus = 1.0 - self.alphas_cumprod
        self.sqrt_alphas_cumprod = self.alphas_cumprod.sqrt()
        self.sqrt_one_minus_alphas_cumprod = one_minus.sqrt()
        self.one_minus_alphas_cumprod = one_minus
        self.sqrt_recip_alphas_cumprod = self.alphas_cumprod.rsqrt()
        self.sqrt_recipm1_alphas_cumprod = (one_minus / self.alphas_cumprod).sqrt()
        self.posterior_variance = betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        pv = self.posterior_variance
        self.posterior_log_variance_clipped = torch.log(torch.cat([pv[1:2], pv[1:]]))  # pv[0] = 0
        self.posterior_mean_coef1 = betas * self.alphas_cumprod_prev.sqrt() / (1.0 - self.alphas_cumprod)
        self.posterior_mean_coef2 = (1.0 - self.alphas_cumprod_prev) * self.alphas.sqrt() / (1.0 - self.alphas_cumprod)

    @property
    def num_steps(self) -> int:
        return len(self.betas)

    def _g(self, table: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return gather(table, t, x.ndim, x.dtype)

    # -- forward process and posterior

    def q_mean_variance(self, x0: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of q(x_t | x_0): sqrt(abar_t) x_0 and (1 - abar_t), broadcastable."""
        return self._g(self.sqrt_alphas_cumprod, t, x0) * x0, self._g(self.one_minus_alphas_cumprod, t, x0)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) noise."""
        return self._g(self.sqrt_alphas_cumprod, t, x0) * x0 + self._g(self.sqrt_one_minus_alphas_cumprod, t, x0) * noise

    def q_posterior(self, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor):
        """(mean, variance, clipped log variance) of q(x_{t-1} | x_t, x_0)."""
        mean = self._g(self.posterior_mean_coef1, t, xt) * x0 + self._g(self.posterior_mean_coef2, t, xt) * xt
        return (mean, self._g(self.posterior_variance, t, xt),
                self._g(self.posterior_log_variance_clipped, t, xt))

    def predict_x0(self, xt: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)."""
        return self._g(self.sqrt_recip_alphas_cumprod, t, xt) * xt - self._g(self.sqrt_recipm1_alphas_cumprod, t, xt) * eps

    def predict_eps(self, xt: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """eps = (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t)."""
        return (xt - self._g(self.sqrt_alphas_cumprod, t, xt) * x0) / self._g(self.sqrt_one_minus_alphas_cumprod, t, xt)

    # -- reverse process

    def model_log_variance(self, variance: str) -> torch.Tensor:
        """log sigma_t^2 per index (N,): betatilde_t (clipped at the first step) or beta_t
        with betatilde at the first step (Ho et al.'s fixedsmall / fixedlarge)."""
        if variance == "fixed-small":
            return self.posterior_log_variance_clipped
        if variance == "fixed-large":
            return torch.log(torch.cat([self.posterior_variance[1:2], self.betas[1:]]))
        raise ConfigError(f"Unknown variance {variance!r}; choose one of {', '.join(VARIANCES)}.")

    def p_mean_variance(self, eps: torch.Tensor, xt: torch.Tensor, t: torch.Tensor, variance: str,
                        clip: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mean, log variance, x0_hat) of p(x_{t-1} | x_t) from the predicted noise."""
        x0 = self.predict_x0(xt, t, eps)
        if clip:
            x0 = x0.clamp(-1.0, 1.0)
        mean, _, _ = self.q_posterior(x0, xt, t)
        return mean, self._g(self.model_log_variance(variance), t, xt), x0

    def vlb_weights(self, variance: str) -> torch.Tensor:
        """lambda_t = beta_t^2 / (2 sigma_t^2 alpha_t (1 - abar_t)) (Ho et al. eq. 12), (N,):
        L_{t-1} = lambda_t ||eps - eps_theta||^2 + kl_offsets, for unclipped x0_hat."""
        var = torch.exp(self.model_log_variance(variance))
        return self.betas**2 / (2 * var * self.alphas * (1.0 - self.alphas_cumprod))

    def kl_offsets(self, variance: str) -> torch.Tensor:
        """Per dimension, the part of L_{t-1} that the network does not move (N,):
        0.5 (log(sigma_t^2 / betatilde_t) + betatilde_t / sigma_t^2 - 1); 0 for fixed-small
        (index 0, where L_0 replaces the KL, is set to 0)."""
        logvar_p, logvar_q = self.model_log_variance(variance), self.posterior_log_variance_clipped
        offsets = 0.5 * (logvar_p - logvar_q + torch.exp(logvar_q - logvar_p) - 1.0)
        offsets[0] = 0.0
        return offsets

    def respace(self, use: Sequence[int]) -> "GaussianDiffusion":
        """The process on a subsequence of indices (Nichol & Dhariwal 2021, §4): the same
        abar at the kept steps, beta_i = 1 - abar_{s_i} / abar_{s_(i-1)}; the network keeps
        seeing the original timesteps."""
        use = torch.tensor(sorted(set(int(i) for i in use)))
        ab = self.alphas_cumprod[use]
        prev = torch.cat([torch.ones(1, dtype=torch.float64), ab[:-1]])
        return GaussianDiffusion(1.0 - ab / prev, self.timesteps[use])


# ----------------------------------------------------------------------------- the bound


def decoder_nll(x0: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor, quantised: bool) -> torch.Tensor:
    """L_0 = -log p(x_0 | x_1) per example (B,), nats: discretised over the 8-bit levels for
    images, the continuous Gaussian density for points."""
    log_scale = 0.5 * log_var
    if quantised:
        logp = discretised_gaussian_log_likelihood(x0, mean, log_scale)
    else:
        logp = -HALF_LOG_2PI - log_scale - 0.5 * (x0 - mean) ** 2 * torch.exp(-2 * log_scale)
    return -logp.flatten(1).sum(1)


def prior_kl(process: GaussianDiffusion, x0: torch.Tensor) -> torch.Tensor:
    """L_T = KL(q(x_T | x_0) || N(0, I)) per example (B,), nats."""
    t = torch.full((x0.shape[0],), process.num_steps - 1, device=x0.device, dtype=torch.long)
    mean, var = process.q_mean_variance(x0, t)
    kl = normal_kl(mean, torch.log(var).expand_as(mean), torch.zeros_like(mean), torch.zeros_like(mean))
    return kl.flatten(1).sum(1)


def vb_terms(process: GaussianDiffusion, eps: torch.Tensor, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor,
             variance: str, clip: bool, quantised: bool) -> torch.Tensor:
    """Per example (B,), nats: L_{t-1} = KL(q(x_{t-1}|x_t,x_0) || p(x_{t-1}|x_t)) where t > 0 (index)
    and L_0 = -log p(x_0|x_1) where t = 0, for the predicted noise eps at x_t."""
    mean, log_var, _ = process.p_mean_variance(eps, xt, t, variance, clip)
    q_mean, _, q_log_var = process.q_posterior(x0, xt, t)
    kl = normal_kl(q_mean, q_log_var, mean, log_var).flatten(1).sum(1)  # (B,)
    return torch.where(t == 0, decoder_nll(x0, mean, log_var, quantised), kl)


@dataclass
class BoundTerms:
    prior: torch.Tensor  # L_T (B,)
    transitions: torch.Tensor  # sum_{t>1} L_{t-1} (B,), exact or the stratified estimate
    decoder: torch.Tensor  # L_0 (B,)

    @property
    def total(self) -> torch.Tensor:
        return self.prior + self.transitions + self.decoder


def bound_draws(num_steps: int, k: int | None, batch: int, generator: torch.Generator | None,
                device: torch.device | str = "cpu") -> list[tuple[torch.Tensor, float]]:
    """(indices (B,), weight) pairs whose weighted terms sum to sum_{t>=1} L_t (indices 1..N-1):
    every index with weight 1 (k None or >= N-1); else k contiguous strata of 1..N-1, and per
    stratum an index drawn uniformly for each example, weighted by the stratum's size -- an
    unbiased estimate (stratified sampling) with k network passes per batch."""
    if k is None or k >= num_steps - 1:
        return [(torch.full((batch,), i, device=device, dtype=torch.long), 1.0) for i in range(1, num_steps)]
    out = []
    for stratum in torch.arange(1, num_steps).tensor_split(k):
        first, size = int(stratum[0]), len(stratum)
        t = first + torch.randint(size, (batch,), generator=generator, device=device)
        out.append((t, float(size)))
    return out


@torch.no_grad()
def variational_bound(process: GaussianDiffusion, eps_fn: EpsFn, x0: torch.Tensor, variance: str, clip: bool,
                      quantised: bool, k: int | None = None, generator: torch.Generator | None = None) -> BoundTerms:
    """The bound's terms per example for data x0 (B, ...): one x_t ~ q(x_t | x_0) per term."""
    b, device = x0.shape[0], x0.device
    transitions = torch.zeros(b, device=device, dtype=x0.dtype)
    zero = torch.zeros(b, device=device, dtype=torch.long)
    for t, weight in bound_draws(process.num_steps, k, b, generator, device) + [(zero, 0.0)]:
        noise = torch.randn(x0.shape, generator=generator, device=device, dtype=x0.dtype)
        xt = process.q_sample(x0, t, noise)
        term = vb_terms(process, eps_fn(xt, process.timesteps.to(device)[t]), x0, xt, t, variance, clip, quantised)
        if weight == 0.0:
            decoder = term
        else:
            transitions += weight * term
    return BoundTerms(prior_kl(process, x0), transitions, decoder)


# ----------------------------------------------------------------------------- samplers


def initial_noise(shape, generator, device, x_T: torch.Tensor | None) -> torch.Tensor:
    return x_T.clone() if x_T is not None else torch.randn(shape, generator=generator, device=device)


@torch.no_grad()
def ddpm_sample(process: GaussianDiffusion, eps_fn: EpsFn, shape: tuple[int, ...], generator=None,
                device=None, variance: str = "fixed-small", clip: bool = True,
                x_T: torch.Tensor | None = None) -> torch.Tensor:
    """Ancestral sampling (Ho et al. 2020, Algorithm 2) over the process's steps; returns the
    mean of the last step's p(x_0 | x_1) (no noise at the last step, as their code)."""
    x = initial_noise(shape, generator, device, x_T)
    for i in reversed(range(process.num_steps)):
        t = torch.full((x.shape[0],), i, device=x.device, dtype=torch.long)
        eps = eps_fn(x, process.timesteps.to(x.device)[t])
        mean, log_var, _ = process.p_mean_variance(eps, x, t, variance, clip)
        if i > 0:
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = mean + torch.exp(0.5 * log_var) * noise
        else:
            x = mean
    return x


@torch.no_grad()
def ddim_sample(process: GaussianDiffusion, eps_fn: EpsFn, shape: tuple[int, ...], generator=None,
                device=None, eta: float = 0.0, clip: bool = True, x_T: torch.Tensor | None = None) -> torch.Tensor:
    """DDIM (Song et al. 2021, eq. 12) over the process's steps:
    x_{t-1} = sqrt(abar_{t-1}) x0_hat + sqrt(1 - abar_{t-1} - s_t^2) eps + s_t z,
    s_t = eta sqrt((1 - abar_{t-1}) / (1 - abar_t)) sqrt(1 - abar_t / abar_{t-1}); eta = 0 is
    deterministic given x_T, eta = 1 is ancestral sampling with fixed-small variance. With a
    clipped x0_hat, eps is recomputed from it (as Nichol & Dhariwal's ddim_sample)."""
    x = initial_noise(shape, generator, device, x_T)
    for i in reversed(range(process.num_steps)):
        t = torch.full((x.shape[0],), i, device=x.device, dtype=torch.long)
        eps = eps_fn(x, process.timesteps.to(x.device)[t])
        x0 = process.predict_x0(x, t, eps)
        if clip:
            x0 = x0.clamp(-1.0, 1.0)
            eps = process.predict_eps(x, t, x0)
        ab, ab_prev = float(process.alphas_cumprod[i]), float(process.alphas_cumprod_prev[i])
        sigma = eta * math.sqrt((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev))
        x = math.sqrt(ab_prev) * x0 + math.sqrt(max(1 - ab_prev - sigma**2, 0.0)) * eps
        if i > 0 and sigma > 0:
            x = x + sigma * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return x


# ----------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class DDPMOptions(UNetOptions):
    """The U-Net's options (genbench/models/unet.py, inherited) and the process's."""

    net: Literal["auto", "unet", "mlp"] = "auto"  # noise predictor; auto = U-Net for images, MLP for 2-D points
    timesteps: int = 1000  # T (Ho et al. 2020)
    schedule: Literal["linear", "cosine"] = "linear"  # linear: Ho et al. 2020; cosine: Nichol & Dhariwal 2021
    mlp_hidden: int = 256  # net=mlp: width of the residual MLP
    mlp_blocks: int = 3  # net=mlp: residual blocks
    ema_decay: float | None = 0.999  # EMA of the weights for sampling and the bound (Ho et al.: 0.9999 over 800k steps); None = off
    sampler: Literal["ddpm", "ddim"] = "ddim"  # default sampler: ancestral (Ho et al. Alg. 2) or DDIM (Song et al. 2021)
    sample_steps: int | None = 50  # steps of the default sampler, evenly spaced over T (respacing); None = all T
    variance: Literal["fixed-small", "fixed-large"] = "fixed-small"  # reverse variance: betatilde_t or beta_t (ddpm sampler and the bound)
    eta: float = 0.0  # DDIM noise scale: 0 deterministic, 1 = ancestral with fixed-small
    clip_denoised: bool = True  # images: clip x0_hat to [-1, 1] when sampling and in the bound (Ho et al.'s code)
    bound_timesteps: int | None = None  # terms L_{t-1} evaluated for the bound: None = all T; k = stratified Monte-Carlo estimate

    def __post_init__(self):
        super().__post_init__()
        if self.timesteps < 2:
            raise ValueError(f"timesteps must be >= 2; got {self.timesteps}")
        if self.schedule == "linear" and self.timesteps < 21:
            raise ValueError("the linear schedule needs timesteps >= 21 (beta_T = 0.02 * 1000 / T must stay "
                             "below 1); use more timesteps or schedule='cosine'")
        if self.mlp_hidden < 1 or self.mlp_blocks < 0:
            raise ValueError("mlp_hidden must be >= 1 and mlp_blocks >= 0")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), or None for no EMA; got {self.ema_decay}")
        if self.sample_steps is not None and not 2 <= self.sample_steps <= self.timesteps:
            raise ValueError(f"sample_steps must be between 2 and timesteps ({self.timesteps}), or None for all")
        if self.eta < 0:
            raise ValueError(f"eta must be >= 0; got {self.eta}")
        if self.bound_timesteps is not None and self.bound_timesteps < 1:
            raise ValueError("bound_timesteps must be >= 1, or None for all T terms")


def ddpm_ops(options: DDPMOptions) -> tuple[str, ...]:
    """The U-Net's kernel ops (listed for net='auto' too, which picks the U-Net for images)."""
    return () if options.net == "mlp" else UNET_OPS


def build_denoiser(options: DDPMOptions, data_info, backend: str) -> nn.Module:
    shape, kind = tuple(data_info.shape), data_info.kind
    net = options.net if options.net != "auto" else ("unet" if kind == "image" else "mlp")
    if net == "mlp":
        return MLPDenoiser(math.prod(shape), options.mlp_hidden, options.mlp_blocks)
    if len(shape) != 3 or shape[1] != shape[2]:
        raise ConfigError(f"ddpm net='unet' needs square images (C, H, H); this dataset's examples have shape "
                          f"{shape}. Use net='mlp' (or net='auto') for 2-D points.")
    return UNet(options, shape[0], shape[1], backend)


@register_model("ddpm", "diffusion", DDPMOptions, "ddpm-simple",
                "DDPM (Ho et al. 2020): U-Net / MLP noise predictor, linear or cosine schedule, ancestral "
                "(respaced) and DDIM samplers, EMA weights, variational bound in bits/dim",
                kernel_ops=ddpm_ops)
class DDPM(GenerativeModel):
    capabilities = Capabilities(samples=True, likelihood=True, nll="variational-bound", step_samplers=True,
                                ema=True)

    def __init__(self, options: DDPMOptions, data_info, backend: str = "auto", objective=None):
        super().__init__()
        self.options, self.backend = options, backend
        self.shape = tuple(data_info.shape)
        self.quantised = data_info.kind == "image"  # every image dataset has 8-bit levels
        self.clip = options.clip_denoised and self.quantised
        self.net = build_denoiser(options, data_info, backend)
        self.ema_net = None if options.ema_decay is None else copy.deepcopy(self.net).requires_grad_(False).eval()
        self.ema_updates = 0
        self.process = GaussianDiffusion(make_betas(options.schedule, options.timesteps))
        self.likelihood = DiscretisedDecoder(self.quantised, self.bound_description())

    @property
    def timesteps(self) -> int:
        return self.process.num_steps

    def kernel_backends(self) -> dict[str, str]:
        return self.net.kernel_backends()

    def train(self, mode: bool = True):
        super().train(mode)
        if self.ema_net is not None:
            self.ema_net.eval()  # the EMA copy only ever predicts: dropout off
        return self

    # -- noise prediction

    def predict_noise(self, xt: torch.Tensor, t: torch.Tensor, ema: bool = False) -> torch.Tensor:
        """eps_theta(x_t, t) (B, *shape) with the trained weights, or the EMA copy."""
        net = self.ema_net if ema and self.ema_net is not None else self.net
        if isinstance(net, MLPDenoiser):
            return net(xt.flatten(1), t).view_as(xt)
        return net(xt, t)

    def sampling_eps_fn(self) -> EpsFn:
        return lambda x, t: self.predict_noise(x, t, ema=True)

    @torch.no_grad()
    def update_ema(self) -> None:
        """One EMA step after an optimiser step, decay_n = min(ema_decay, (1 + n) / (10 + n))
        (tf.train.ExponentialMovingAverage's num_updates warm-up), so that short runs average
        over roughly their last tenth of steps and long ones reach ema_decay."""
        if self.ema_net is None:
            return
        self.ema_updates += 1
        decay = min(self.options.ema_decay, (1 + self.ema_updates) / (EMA_WARMUP + self.ema_updates))
        for ema, p in zip(self.ema_net.parameters(), self.net.parameters()):
            ema.lerp_(p.detach(), 1.0 - decay)
        for ema, b in zip(self.ema_net.buffers(), self.net.buffers()):
            ema.copy_(b)

    # -- likelihood

    def bound_description(self) -> str:
        o = self.options
        k = o.bound_timesteps
        terms = (f"all T={o.timesteps} terms" if k is None or k >= o.timesteps - 1 else
                 f"L_T and L_0 exact, sum of the {o.timesteps - 1} KL terms estimated from k={k} "
                 f"(one t per stratum and example, stratified Monte Carlo, unbiased; seed {BOUND_SEED})")
        weights = "EMA weights" if o.ema_decay is not None else "trained weights"
        clip = ", x0 clipped to [-1, 1]" if self.clip else ""
        return (f"variational bound L_T + sum L_(t-1) + L_0 (Ho et al. 2020), {terms}, one x_t per term, "
                f"reverse variance {o.variance}{clip}, {o.schedule} schedule, {weights}")

    def variational_bound_terms(self, x: torch.Tensor) -> BoundTerms:
        generator = torch.Generator(device=x.device).manual_seed(BOUND_SEED)
        net = self.ema_net if self.ema_net is not None else self.net
        with evaluating(net):
            return variational_bound(self.process, self.sampling_eps_fn(), x, self.options.variance, self.clip,
                                     self.quantised, self.options.bound_timesteps, generator)

    def variational_bound_nll(self, x: torch.Tensor) -> torch.Tensor:
        """-log p(x) <= L_T + sum L_(t-1) + L_0, nats per example (B,); see bound_description."""
        return self.variational_bound_terms(x).total

    # -- sampling

    @property
    def sample_description(self) -> str:
        o = self.options
        return (f"{'EMA' if o.ema_decay is not None else 'trained'} weights; "
                f"{describe_sampler(o.sampler, o.sample_steps, o.timesteps, o.eta, o.variance)}"
                f"{'; x0 predictions clipped to [-1, 1]' if self.clip else ''}; the last step returns the mean of "
                "p(x_0|x_1) (draw='mean') or a draw from it (draw='sample', quantised to 8 bits for images)")

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, draw: str = "mean") -> torch.Tensor:
        """n samples in the data range with the default sampler (options sampler, sample_steps,
        variance, eta) from the EMA weights; see sample_description."""
        o = self.options
        return self.generate(n, generator, o.sampler, o.sample_steps, o.eta, o.variance, draw)

    @property
    def sampling_weights(self) -> str:
        """Which weights sample_with uses, for the sampler sweep's records."""
        if self.ema_net is None:
            return "trained weights (EMA off)"
        decay = self.options.ema_decay
        return f"EMA (decay {decay:g})" if decay is not None else "EMA"

    @torch.no_grad()
    def sample_with(self, n: int, generator: torch.Generator | None, sampler: str, steps: int | None,
                    eta: float = 0.0, variance: str = "fixed-small") -> torch.Tensor:
        """n samples (the decoder mean at the last step) in the data range with any sampler:
        sampler "ddpm" (ancestral, `variance` "fixed-small"|"fixed-large") or "ddim" (`eta`),
        over `steps` evenly spaced timesteps (None = all T), from the EMA weights."""
        return self.generate(n, generator, sampler, steps, eta, variance, "mean")

    def generate(self, n: int, generator, sampler: str, steps: int | None, eta: float, variance: str,
                 draw: str) -> torch.Tensor:
        check_sampler(sampler, eta, variance, draw)
        steps = self.timesteps if steps is None else steps
        process = self.process if steps == self.timesteps else self.process.respace(
            spaced_timesteps(self.timesteps, steps))
        device = next(self.net.parameters()).device
        shape = (n, *self.shape)
        net = self.ema_net if self.ema_net is not None else self.net
        with evaluating(net):
            if sampler == "ddpm":
                x = ddpm_sample(process, self.sampling_eps_fn(), shape, generator, device, variance, self.clip)
            else:
                x = ddim_sample(process, self.sampling_eps_fn(), shape, generator, device, eta, self.clip)
        if draw == "sample":
            x = self.decoder_draw(x, generator)
        return x.clamp(-1.0, 1.0) if self.quantised else x

    def decoder_draw(self, mean: torch.Tensor, generator) -> torch.Tensor:
        """A draw from p(x_0 | x_1) around its mean: Gaussian with the full chain's first-step
        sigma, for images discretised to the 8-bit level whose bin holds it (the edge bins
        open-ended: exactly the discretised decoder of the bound)."""
        sigma = math.exp(0.5 * float(self.process.model_log_variance(self.options.variance)[0]))
        x = mean + sigma * torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        if not self.quantised:
            return x
        return torch.floor((x.clamp(-1.0, 1.0) + 1) * 127.5 + 0.5) / 127.5 - 1


def check_sampler(sampler: str, eta: float, variance: str, draw: str) -> None:
    if sampler not in SAMPLERS:
        raise ConfigError(f"Unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}.")
    if variance not in VARIANCES:
        raise ConfigError(f"Unknown variance {variance!r}; choose one of {', '.join(VARIANCES)}.")
    if eta < 0:
        raise ConfigError(f"eta must be >= 0; got {eta}.")
    check_draw(draw)


def describe_sampler(sampler: str, steps: int | None, timesteps: int, eta: float, variance: str) -> str:
    """One line naming the sampler, its steps and its variance (docs/evaluation.md, Diffusion
    specifics: state them)."""
    steps = timesteps if steps is None else steps
    span = f"all T={timesteps} steps" if steps == timesteps else f"{steps} of T={timesteps} steps (evenly spaced)"
    if sampler == "ddim":
        return f"DDIM (Song et al. 2021), {span}, eta={eta:g}"
    return f"ancestral DDPM sampling (Ho et al. 2020, Alg. 2), {span}, {variance} variance"
