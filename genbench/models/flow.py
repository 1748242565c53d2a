"""Normalising flows on images: RealNVP (Dinh et al. 2017, "Density estimation using Real
NVP") and Glow (Kingma & Dhariwal 2018, "Glow: Generative Flow with Invertible 1x1
Convolutions"), the model family "likelihood" trained by the objective "nll".

A flow is a bijection f from data to latents with a tractable Jacobian, so the density
is exact by the change of variables:
    log p(y) = log N(f(y); 0, I) + log |det df/dy|.
Every layer here maps x -> (y, logdet) with logdet = log |det dy/dx| per example (B,),
accumulated in float32 (float64 for float64 inputs) whatever the compute dtype, and has an
`inverse`. No layer depends on train/eval mode once initialised (no batch norm), so the
density is the same in both modes.

Data (the `UniformDequantised` convention, genbench/models/likelihood.py): images x in
[-1, 1] are 8-bit levels; the model sees y = x + U(-w/2, w/2), w = 2/255, and bits/dim =
(nats + D ln 127.5) / (D ln 2) bounds the discrete NLL (Theis et al. 2016).

Choices stated (both models):
- Latents: z (B, D) is every factored-out half in the order the scales drop them, then the
  last scale's output, flattened; the prior is N(0, I) over all of z. A Glow split with a
  learned conditional Gaussian prior is written as the bijection eps = (z2 - mu(z1)) /
  sigma(z1) (log-det -sum log sigma), so its eps is N(0, I) too and the two views agree.
- Actnorm (Glow §3.1) initialises from data: on the first forward pass in training mode
  (the first training batch) its bias and log-scale are set so that its output has zero
  mean and unit variance per channel over that whole batch (all B*H*W positions,
  population variance, std + 1e-6 as Glow's code). Deterministic given the batch; never in
  eval mode or in the inverse direction, where an uninitialised actnorm is the identity.
- Coupling networks end in a zero-initialised convolution, so each coupling starts as the
  identity (Glow §3.3; used for RealNVP too).
- Samples: x = f^-1(T * eps), eps ~ N(0, I), clamped to [-1, 1] and (option round_samples)
  rounded to the nearest 8-bit level: the level whose dequantisation bin holds the draw, so
  at T = 1 the sample is a draw of the discrete model P(u) = integral of p over u's bin whose
  NLL the bits/dim bound (the little mass p puts outside [-1 - w/2, 1 + w/2] goes to the
  edge levels by the clamp).

Per model:
- RealNVP: logit preprocessing (option logit_alpha, a flow layer: its log-Jacobian is in
  every log-det), masked affine couplings with log_s = rescale_c * tanh(raw) (tanh-bounded,
  learned per-channel rescale), small ResNet coupling networks without batch norm,
  factored-out halves with a standard normal prior.
- Glow: no logit (y directly); actnorm, LU 1x1 convolution, affine coupling with
  s = sigmoid(raw + 2) / sigmoid(2); splits with a learned conditional Gaussian prior
  (option split_prior="standard": N(0, I)); N(0, I) at the top.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from genbench.utils.pixels import images_to_uint8, uint8_to_images
from genbench.errors import ConfigError
from genbench.models.base import Capabilities, GenerativeModel, check_draw, evaluating, register_model
from genbench.models.likelihood import BIN_WIDTH, HALF_LOG_2PI, UniformDequantised

ACTNORM_EPS = 1e-6  # added to the std at actnorm's data-dependent init (Glow's code)
ZERO_CONV_GAIN = 3.0  # Glow's Conv2dZeros: output * exp(3 * logs), logs zero-initialised
GLOW_SCALE_SHIFT = 2.0  # Glow's code: s = sigmoid(h + 2)


# ----------------------------------------------------------------------------- helpers


def accumulator(dtype: torch.dtype) -> torch.dtype:
    """The dtype log-determinants accumulate in: float64 for float64 inputs, else float32
    (bf16/fp16 activations under autocast must not sum D log-scales)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def per_example_sum(t: torch.Tensor) -> torch.Tensor:
    """(B, ...) -> (B,) summed over all but the batch dim, in the accumulator dtype."""
    return t.flatten(1).to(accumulator(t.dtype)).sum(1)


def constant_logdet(value: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A log-determinant that is the same for every example (actnorm, 1x1 conv) as (B,)."""
    return value.to(accumulator(x.dtype)).expand(x.shape[0])


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) per example (B,) for z (B, D), in the accumulator dtype."""
    z = z.to(accumulator(z.dtype))
    return -0.5 * (z * z).sum(1) - z.shape[1] * HALF_LOG_2PI


# ----------------------------------------------------------------------------- layers


class Squeeze(nn.Module):
    """Space-to-depth 2x2 (Dinh et al. 2017 §3.6, Fig. 3): (B, C, H, W) -> (B, 4C, H/2, W/2),
    channel index c * 4 + 2 i + j for the pixel (i, j) of each 2x2 block (Glow's order).
    A permutation: log-det 0."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, h, w = x.shape
        y = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)  # (B, C, 2, 2, H/2, W/2)
        return y.reshape(b, 4 * c, h // 2, w // 2), x.new_zeros(b, dtype=accumulator(x.dtype))

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        b, c4, h, w = y.shape
        x = y.reshape(b, c4 // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)  # (B, C, H/2, 2, W/2, 2)
        return x.reshape(b, c4 // 4, 2 * h, 2 * w)


class LogitTransform(nn.Module):
    """RealNVP's preprocessing (Dinh et al. 2017 §4.1): y -> logit(alpha + (1 - 2 alpha) u),
    where u = (y + 1 + w/2) / (2 + w) maps the dequantised support [-1 - w/2, 1 + w/2]
    exactly onto [0, 1] (their x/256 of integer levels plus U[0, 1) noise). As a flow layer
    its log-Jacobian, sum of log(1 - 2 alpha) - log(2 + w) - log p - log(1 - p) with p the
    logit's argument, is part of every log-det, so the NLL stays a density of y."""

    def __init__(self, alpha: float):
        super().__init__()
        self.alpha = alpha
        self.span = 2.0 + BIN_WIDTH  # width of the dequantised support

    def forward(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.alpha
        p = a + (1 - 2 * a) * (y + 1 + BIN_WIDTH / 2) / self.span  # (B, C, H, W) in [a, 1 - a]
        log_p, log_q = torch.log(p), torch.log1p(-p)
        log_jac = math.log(1 - 2 * a) - math.log(self.span) - log_p - log_q
        return log_p - log_q, per_example_sum(log_jac)

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        a = self.alpha
        u = (torch.sigmoid(z) - a) / (1 - 2 * a)
        return u * self.span - 1 - BIN_WIDTH / 2


class ActNorm(nn.Module):
    """Glow's activation normalisation (Kingma & Dhariwal 2018 §3.1): a per-channel affine
    y = (x + bias) * exp(log_scale), log-det H * W * sum(log_scale). Data-dependent init on
    the first forward pass in training mode: zero mean and unit variance per channel over
    that batch (see the module docstring). `initialised` is a buffer, so it is saved and
    restored with the weights; `checked` mirrors it on the host, so a training step does
    not read the buffer back from the device (a sync per actnorm) once it is known."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.log_scale = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.register_buffer("initialised", torch.tensor(False))
        self.checked = False  # True once `initialised` is known to be set

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self.checked = False  # read the loaded `initialised` again on the next training pass

    @torch.no_grad()
    def initialise(self, x: torch.Tensor) -> None:
        x = x.detach().to(accumulator(x.dtype))
        mean = x.mean(dim=(0, 2, 3), keepdim=True)  # (1, C, 1, 1)
        std = x.var(dim=(0, 2, 3), keepdim=True, correction=0).sqrt()
        self.bias.copy_(-mean)
        self.log_scale.copy_(-torch.log(std + ACTNORM_EPS))
        self.initialised.fill_(True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training and not self.checked:
            if not bool(self.initialised):
                self.initialise(x)
            self.checked = True
        y = (x + self.bias) * torch.exp(self.log_scale)
        return y, constant_logdet(x.shape[2] * x.shape[3] * self.log_scale.sum(), x)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * torch.exp(-self.log_scale) - self.bias


class InvConv1x1LU(nn.Module):
    """Glow's invertible 1x1 convolution in the LU parameterisation (Kingma & Dhariwal 2018
    §3.2, eq. 10): W = P L (U + diag(sign(s) * exp(log|s|))), P a fixed permutation, L unit
    lower triangular, U strictly upper triangular, sign(s) fixed; initialised from a random
    rotation (QR of a Gaussian matrix, the global RNG). log-det = H * W * sum(log|s|), O(C)
    instead of the O(C^3) of det(W)."""

    def __init__(self, channels: int):
        super().__init__()
        rotation = torch.linalg.qr(torch.randn(channels, channels, dtype=torch.float64))[0]
        perm, lower, upper = torch.linalg.lu(rotation)
        s = upper.diagonal()
        self.register_buffer("perm", perm.float())
        self.register_buffer("sign_s", torch.sign(s).float())
        self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels), -1))
        self.register_buffer("eye", torch.eye(channels))
        self.lower = nn.Parameter(lower.float())
        self.upper = nn.Parameter(torch.triu(upper, 1).float())
        self.log_s = nn.Parameter(torch.log(s.abs()).float())

    def factors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(P, L, U) with L unit lower and U upper with diagonal sign(s) * exp(log|s|)."""
        lower = self.lower * self.lower_mask + self.eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign_s * torch.exp(self.log_s))
        return self.perm, lower, upper

    def weight(self) -> torch.Tensor:
        p, lower, upper = self.factors()
        return p @ lower @ upper  # (C, C)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.weight()
        y = F.conv2d(x, w.view(*w.shape, 1, 1).to(x.dtype))
        return y, constant_logdet(x.shape[2] * x.shape[3] * self.log_s.sum(), x)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        w_inv = torch.linalg.inv(self.weight())
        return F.conv2d(y, w_inv.view(*w_inv.shape, 1, 1).to(y.dtype))


class ZeroConv2d(nn.Module):
    """A 3x3 convolution initialised to zero with a per-channel gain exp(3 * logs), logs
    zero-initialised (Glow's Conv2dZeros): the last layer of every coupling network and of
    the learned split prior, so each starts as the identity / a standard normal."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)
        self.logs = nn.Parameter(torch.zeros(1, out_channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * torch.exp(ZERO_CONV_GAIN * self.logs)


# ----------------------------------------------------------------------------- couplings


class ResidualBlock(nn.Module):
    """Pre-activation residual block h + conv(relu(conv(relu(h)))) with 3x3 convolutions."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.conv2(F.relu(self.conv1(F.relu(h))))


class ResNetCouplingNet(nn.Module):
    """RealNVP's s and t network (Dinh et al. 2017 §4.1: deep ResNets), small: a 3x3 input
    convolution, `blocks` residual blocks, ReLU, a zero-initialised 3x3 output convolution.
    No batch norm (the paper uses it), so the density is independent of the module's mode."""

    def __init__(self, in_channels: int, out_channels: int, hidden: int, blocks: int):
        super().__init__()
        self.inp = nn.Conv2d(in_channels, hidden, 3, padding=1)
        self.blocks = nn.Sequential(*[ResidualBlock(hidden) for _ in range(blocks)])
        self.out = ZeroConv2d(hidden, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(F.relu(self.blocks(self.inp(x))))


def checkerboard_mask(shape: tuple[int, int, int], parity: int) -> torch.Tensor:
    """(1, C, H, W) mask, 1 where (h + w + parity) is even: the conditioning pixels."""
    c, h, w = shape
    grid = (torch.arange(h)[:, None] + torch.arange(w)[None, :] + parity) % 2 == 0  # (H, W)
    return grid.float().expand(1, c, h, w).clone()


def channel_mask(shape: tuple[int, int, int], parity: int) -> torch.Tensor:
    """(1, C, H, W) mask, 1 on the first half of the channels (parity 0) or the second half."""
    c, h, w = shape
    first = torch.arange(c) < c // 2
    keep = first if parity == 0 else ~first
    return keep.float().view(1, c, 1, 1).expand(1, c, h, w).clone()


class MaskedAffineCoupling(nn.Module):
    """RealNVP's affine coupling with a binary mask b (Dinh et al. 2017 eq. 9):
    y = b * x + (1 - b) * (x * exp(log_s) + t), (log_s, t) = NN(b * x), log-det =
    sum((1 - b) * log_s). The network sees [b * x, b]: the mask tells it which pixels are
    conditioning. Scale: log_s = rescale_c * tanh(raw), a per-channel learned rescale
    (initialised to 1) of a tanh-bounded output, as in the authors' code, so a coupling
    starts bounded (|log_s| < 1 per layer) and the zero-initialised last convolution
    makes it the identity."""

    def __init__(self, shape: tuple[int, int, int], mask: Literal["checkerboard", "channel"], parity: int,
                 hidden: int, blocks: int):
        super().__init__()
        c = shape[0]
        make = checkerboard_mask if mask == "checkerboard" else channel_mask
        self.register_buffer("mask", make(shape, parity), persistent=False)  # (1, C, H, W), 1 = conditioning
        self.net = ResNetCouplingNet(2 * c, 2 * c, hidden, blocks)
        self.rescale = nn.Parameter(torch.ones(1, c, 1, 1))

    def scale_shift(self, x_cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log_s, t), both zero on the conditioning positions, from b * x."""
        mask = self.mask.to(x_cond.dtype).expand_as(x_cond)
        raw, shift = self.net(torch.cat([x_cond, mask], 1)).chunk(2, 1)  # (B, C, H, W) each
        free = 1 - mask
        return free * self.rescale * torch.tanh(raw), free * shift

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = self.mask
        log_s, t = self.scale_shift(b * x)
        y = b * x + (1 - b) * (x * torch.exp(log_s) + t)
        return y, per_example_sum(log_s)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        b = self.mask
        log_s, t = self.scale_shift(b * y)
        return b * y + (1 - b) * ((y - t) * torch.exp(-log_s))


class GlowCouplingNet(nn.Module):
    """Glow's NN() (Kingma & Dhariwal 2018 §3.3): 3x3 conv, actnorm, ReLU, 1x1 conv, actnorm,
    ReLU, zero-initialised 3x3 conv. Its actnorms initialise from data like the flow's."""

    def __init__(self, in_channels: int, out_channels: int, hidden: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, hidden, 3, padding=1, bias=False)
        self.norm1 = ActNorm(hidden)
        self.conv2 = nn.Conv2d(hidden, hidden, 1, bias=False)
        self.norm2 = ActNorm(hidden)
        self.out = ZeroConv2d(hidden, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.norm1(self.conv1(x))[0])
        h = F.relu(self.norm2(self.conv2(h))[0])
        return self.out(h)


class AffineCoupling(nn.Module):
    """Glow's affine coupling (Kingma & Dhariwal 2018, Table 1): x_a, x_b = split(x) along
    channels, (raw, t) = NN(x_a), y_b = s * x_b + t, y = concat(x_a, y_b), log-det =
    sum(log s). Scale: s = sigmoid(raw + 2) / sigmoid(2) -- Glow's code uses sigmoid(raw + 2);
    dividing by sigmoid(2) makes the zero-initialised step exactly the identity the paper
    describes, and bounds s in (0, 1.135): contractions mostly, actnorm does the rest."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.net = GlowCouplingNet(channels // 2, channels, hidden)

    def scale_shift(self, x_a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw, shift = self.net(x_a).chunk(2, 1)  # (B, C/2, H, W) each
        offset = raw.new_tensor(GLOW_SCALE_SHIFT)  # in raw's dtype: log_s is exactly 0 at raw = 0
        log_s = F.logsigmoid(raw + offset) - F.logsigmoid(offset)
        return log_s, shift

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x_a, x_b = x.chunk(2, 1)
        log_s, t = self.scale_shift(x_a)
        return torch.cat([x_a, x_b * torch.exp(log_s) + t], 1), per_example_sum(log_s)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        y_a, y_b = y.chunk(2, 1)
        log_s, t = self.scale_shift(y_a)
        return torch.cat([y_a, (y_b - t) * torch.exp(-log_s)], 1)


# ----------------------------------------------------------------------------- multi-scale


class Split(nn.Module):
    """Factor out half the channels (Dinh et al. 2017 §3.6; Glow's split): x -> (z1, z2), z1
    goes on through the flow, z2 becomes latent. Prior of z2: a standard normal (`learned`
    False: RealNVP), or Glow's learned conditional Gaussian N(mu(z1), sigma(z1)^2) from a
    zero-initialised convolution of z1, written as the bijection eps = (z2 - mu) / sigma
    with log-det -sum(log sigma), so that eps ~ N(0, I) like every other latent."""

    def __init__(self, channels: int, learned: bool):
        super().__init__()
        self.prior = ZeroConv2d(channels // 2, channels) if learned else None

    def gaussian(self, z1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.prior(z1).chunk(2, 1)  # (B, C/2, H, W) each
        return mean, log_std

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, C, H, W) -> (z1 (B, C/2, H, W), eps (B, C/2, H, W), logdet (B,))."""
        z1, z2 = x.chunk(2, 1)
        if self.prior is None:
            return z1, z2, x.new_zeros(x.shape[0], dtype=accumulator(x.dtype))
        mean, log_std = self.gaussian(z1)
        return z1, (z2 - mean) * torch.exp(-log_std), -per_example_sum(log_std)

    def inverse(self, z1: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        if self.prior is None:
            return torch.cat([z1, eps], 1)
        mean, log_std = self.gaussian(z1)
        return torch.cat([z1, mean + torch.exp(log_std) * eps], 1)


class Scale(nn.Module):
    """One scale of a multi-scale flow: its layers, then a Split (None at the last scale)."""

    def __init__(self, layers: list[nn.Module], split: Split | None):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.split = split


def run_layers(layers, h: torch.Tensor, logdet: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    for layer in layers:
        h, ld = layer(h)
        logdet = logdet + ld
    return h, logdet


class MultiScaleFlow(nn.Module):
    """Preprocessing layers, then scales (Dinh et al. 2017 §3.6): the bijection y -> z (B, D)
    with z the factored-out halves in order, then the last scale's output, flattened.
    `latent_shapes` are their shapes, in that order."""

    def __init__(self, pre: list[nn.Module], scales: list[Scale], latent_shapes: list[tuple[int, ...]]):
        super().__init__()
        self.pre = nn.ModuleList(pre)
        self.scales = nn.ModuleList(scales)
        self.latent_shapes = [tuple(s) for s in latent_shapes]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, C, H, W) -> (z (B, D), log|det dz/dx| (B,))."""
        h, logdet = run_layers(self.pre, x, x.new_zeros(x.shape[0], dtype=accumulator(x.dtype)))
        zs = []
        for scale in self.scales:
            h, logdet = run_layers(scale.layers, h, logdet)
            if scale.split is not None:
                h, z, ld = scale.split(h)
                logdet = logdet + ld
                zs.append(z.flatten(1))
        zs.append(h.flatten(1))
        return torch.cat(zs, 1), logdet

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, D) -> x (B, C, H, W)."""
        parts = z.split([math.prod(s) for s in self.latent_shapes], 1)
        latents = [p.reshape(-1, *s) for p, s in zip(parts, self.latent_shapes)]
        h = latents.pop()
        for scale in reversed(self.scales):
            if scale.split is not None:
                h = scale.split.inverse(h, latents.pop())
            for layer in reversed(scale.layers):
                h = layer.inverse(h)
        for layer in reversed(self.pre):
            h = layer.inverse(h)
        return h


# ----------------------------------------------------------------------------- the models


@dataclass(frozen=True)
class FlowSampling:
    """Sampling options both flows share."""

    temperature: float = 1.0  # T: z ~ N(0, T^2 I) (Kingma & Dhariwal 2018 §5 show T = 0.7); 1 = the model; 0 = f^-1(0)
    round_samples: bool = True  # round samples to the nearest 8-bit level: draws of the discrete model P(u)

    def __post_init__(self):
        if not self.temperature >= 0:
            raise ValueError(f"temperature must be >= 0 (0 gives f^-1(0)); got {self.temperature}")


@dataclass(frozen=True)
class RealNVPOptions(FlowSampling):
    """RealNVP (Dinh et al. 2017). Defaults are CPU-sized for 16x16 digits; the paper's
    CIFAR-10 model has 3 scales (4 there), 8 residual blocks of 64 features."""

    scales: int = 2  # multi-scale levels; all but the last squeeze 2x2 and factor out half (§3.6)
    checkerboard: int = 3  # couplings with alternating checkerboard masks per scale (paper: 3; the last has one more)
    channelwise: int = 3  # couplings with alternating channel-wise masks after each squeeze (paper: 3)
    hidden: int = 32  # features of the coupling ResNets (paper: 64)
    res_blocks: int = 1  # residual blocks per coupling ResNet (paper: 8 on CIFAR-10)
    logit_alpha: float | None = 0.05  # y -> logit(alpha + (1 - 2 alpha) u) (§4.1, alpha = .05); None = model y itself

    def __post_init__(self):
        super().__post_init__()
        if self.scales < 1 or self.checkerboard < 1 or self.channelwise < 0:
            raise ValueError(f"realnvp needs scales >= 1, checkerboard >= 1 and channelwise >= 0; got scales="
                             f"{self.scales}, checkerboard={self.checkerboard}, channelwise={self.channelwise}")
        if self.hidden < 1 or self.res_blocks < 0:
            raise ValueError(f"realnvp needs hidden >= 1 and res_blocks >= 0; got {self.hidden}, {self.res_blocks}")
        if self.logit_alpha is not None and not 0 < self.logit_alpha < 0.5:
            raise ValueError(f"logit_alpha must be in (0, 0.5), or None for no logit transform; got {self.logit_alpha}")


@dataclass(frozen=True)
class GlowOptions(FlowSampling):
    """Glow (Kingma & Dhariwal 2018). Defaults are CPU-sized for 16x16 digits; the paper's
    CIFAR-10 model has L = 3 levels of K = 32 steps with 512 hidden channels."""

    levels: int = 2  # L: each squeezes 2x2, runs K steps, and all but the last split off half (§3)
    steps_per_level: int = 4  # K: steps of flow (actnorm, invertible 1x1 conv, affine coupling) per level
    hidden: int = 64  # channels of the coupling networks' hidden layers (paper: 512)
    split_prior: Literal["learned", "standard"] = "learned"  # split-off half: learned conditional Gaussian or N(0, I)

    RENAMED: ClassVar[dict[str, str]] = {"steps": "steps_per_level"}  # `steps` read as the run's training budget

    def __post_init__(self):
        super().__post_init__()
        if self.levels < 1 or self.steps_per_level < 1 or self.hidden < 1:
            raise ValueError(f"glow needs levels >= 1, steps_per_level >= 1 and hidden >= 1; got levels={self.levels}, "
                             f"steps_per_level={self.steps_per_level}, hidden={self.hidden}")


def image_shape(model: str, data_info) -> tuple[int, int, int]:
    """The dataset's (C, H, W), or a ConfigError: flows here are convolutional, over images."""
    shape = tuple(data_info.shape)
    if data_info.kind != "image" or len(shape) != 3:
        raise ConfigError(f"{model} is a flow over images (C, H, W) with convolutional couplings; dataset "
                          f"{data_info.name!r} has {data_info.kind} examples of shape {shape}. Use an image "
                          "dataset (digits, shapes, photos, or image files).")
    return shape


def squeezes_fit(side_h: int, side_w: int, squeezes: int, min_side: int) -> bool:
    k = 2 ** squeezes
    return side_h % k == 0 and side_w % k == 0 and min(side_h, side_w) // k >= min_side


def check_squeezes(model: str, data_info, count: int, option: str, non_squeezing: int, min_side: int) -> None:
    """H and W must survive the 2x2 squeezes of `count` scales (the option's value), of which
    `non_squeezing` do not squeeze (RealNVP's last scale), and leave at least `min_side`
    pixels; the error names the largest value of the option that fits and a size that fits."""
    _, h, w = data_info.shape
    squeezes = count - non_squeezing
    if squeezes_fit(h, w, squeezes, min_side):
        return
    k = 2 ** squeezes
    need = f"H and W divisible by {k}" + (f" and at least {k * min_side}" if min_side > 1 else "")
    most = max((n for n in range(1, count) if squeezes_fit(h, w, n - non_squeezing, min_side)), default=None)
    fewer = f"{option} <= {most}" if most is not None else f"no value of {option} fits {h}x{w} images"
    sizes = [s for s in (16, 32) if squeezes_fit(s, s, squeezes, min_side)]
    example = f" (e.g. digits?size={sizes[0]})" if sizes else ""
    raise ConfigError(f"{model} with {option}={count} squeezes the image {squeezes} time(s) (2x2 space-to-depth "
                      f"each), which needs {need}; dataset {data_info.spec!r} has {h}x{w} images. Use {fewer}, "
                      f"or an image size that fits{example}.")


class FlowModel(GenerativeModel):
    """What RealNVP and Glow share: the dequantisation convention, the exact NLL by the change
    of variables, forward/inverse, sampling with a temperature, and latent figures."""

    capabilities = Capabilities(samples=True, likelihood=True, nll="exact", latent_space=True)

    def __init__(self, options, shape: tuple[int, int, int], flow: MultiScaleFlow, what: str):
        super().__init__()
        self.options, self.shape, self.flow = options, shape, flow
        self.likelihood = UniformDequantised(what)

    @property
    def latent_dims(self) -> int:
        return math.prod(self.shape)

    def kernel_backends(self) -> dict[str, str]:
        return {}  # plain PyTorch convolutions: no kernel ops

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, C, H, W) dequantised data -> (z (B, D), log|det dz/dx| (B,)), the
        preprocessing's Jacobian included. In training mode the first call initialises the
        actnorms from x."""
        return self.flow(x)

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, D) -> y (B, C, H, W), unclamped. Runs in eval mode, so that the inverse
        direction never initialises an actnorm."""
        with evaluating(self.flow):
            return self.flow.inverse(z)

    def exact_nll(self, x: torch.Tensor) -> torch.Tensor:
        """-log p(x) in nats per example (B,) for dequantised x: -log N(z; 0, I) - log|det|."""
        z, logdet = self.flow(x)
        return -(standard_normal_log_prob(z) + logdet)

    @property
    def sample_description(self) -> str:
        o = self.options
        rounded = ", rounded to the nearest 8-bit level" if o.round_samples else ""
        return (f"x = f^-1(z), z ~ N(0, T^2 I) with temperature T = {o.temperature:g} (options.temperature; "
                f"T = 0 gives f^-1(0), the image of the prior's mode), clamped to [-1, 1]{rounded}; draw='mean' "
                "and draw='sample' are the same: a flow has no decoder distribution p(x|z)")

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, draw: str = "mean",
               temperature: float | None = None) -> torch.Tensor:
        """n images (n, C, H, W) in [-1, 1]; see sample_description. `draw` is checked and
        ignored; `temperature` overrides options.temperature."""
        check_draw(draw)
        t = self.options.temperature if temperature is None else temperature
        if not t >= 0:
            raise ConfigError(f"temperature must be >= 0; got {t}.")
        ref = next(self.parameters())
        z = torch.randn((n, self.latent_dims), generator=generator, device=ref.device, dtype=ref.dtype)  # (n, D)
        x = self.inverse(t * z).clamp(-1.0, 1.0)  # (n, C, H, W)
        return uint8_to_images(images_to_uint8(x)).to(x.dtype) if self.options.round_samples else x

    @torch.no_grad()
    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        """z = f(x) (B, D) for interpolation and traversal figures (eval mode)."""
        with evaluating(self.flow):
            return self.flow(x)[0]

    @torch.no_grad()
    def decode_latent(self, z: torch.Tensor) -> torch.Tensor:
        """f^-1(z) clamped to [-1, 1] (not rounded: figures show the continuous map)."""
        return self.inverse(z).clamp(-1.0, 1.0)


def realnvp_scale(o: RealNVPOptions, shape: tuple[int, int, int], last: bool):
    """One RealNVP scale (Dinh et al. 2017 §3.6): alternating checkerboard couplings, then,
    except at the last scale (which has one more checkerboard coupling and stops there), a
    squeeze, alternating channel-wise couplings and a split factoring out half the channels.
    Returns (Scale, shape it passes on, factored-out shape or None)."""
    c, h, w = shape
    layers = [MaskedAffineCoupling(shape, "checkerboard", k % 2, o.hidden, o.res_blocks)
              for k in range(o.checkerboard + last)]
    if last:
        return Scale(layers, None), shape, None
    squeezed = (4 * c, h // 2, w // 2)
    layers.append(Squeeze())
    layers += [MaskedAffineCoupling(squeezed, "channel", k % 2, o.hidden, o.res_blocks) for k in range(o.channelwise)]
    half = (2 * c, h // 2, w // 2)
    return Scale(layers, Split(4 * c, learned=False)), half, half


def build_multiscale(make_scale, count: int, shape: tuple[int, int, int], pre: list[nn.Module]) -> MultiScaleFlow:
    """Chain `count` scales from make_scale(shape, last) -> (Scale, next shape, factored shape)."""
    scales, factored = [], []
    for i in range(count):
        scale, shape, out = make_scale(shape, i == count - 1)
        scales.append(scale)
        if out is not None:
            factored.append(out)
    return MultiScaleFlow(pre, scales, [*factored, shape])


@register_model("realnvp", "likelihood", RealNVPOptions, "nll",
                "RealNVP (Dinh et al. 2017): affine couplings with checkerboard and channel-wise masks, "
                "squeeze, multi-scale factor-out, logit preprocessing; exact NLL by the change of variables",
                kernel_ops=())
class RealNVP(FlowModel):
    def __init__(self, options: RealNVPOptions, data_info, backend: str = "auto", objective=None):
        shape = image_shape("realnvp", data_info)
        check_squeezes("realnvp", data_info, options.scales, "scales", non_squeezing=1, min_side=2)
        a = options.logit_alpha
        pre = [] if a is None else [LogitTransform(a)]
        flow = build_multiscale(lambda s, last: realnvp_scale(options, s, last), options.scales, shape, pre)
        logit = ("y directly (no logit transform)" if a is None else
                 f"logit({a:g} + {1 - 2 * a:g} (y + 1 + 1/255) / (2 + 2/255)), its log-Jacobian included")
        super().__init__(options, shape, flow, f"RealNVP density (Dinh et al. 2017) of {logit}, N(0, I) prior on "
                                               "all latents")


def glow_scale(o: GlowOptions, shape: tuple[int, int, int], last: bool):
    """One Glow level (Kingma & Dhariwal 2018, Fig. 2b): squeeze, K steps of flow (actnorm,
    invertible 1x1 conv, affine coupling), then, except at the last level, a split."""
    c, h, w = shape
    c4 = 4 * c
    layers: list[nn.Module] = [Squeeze()]
    for _ in range(o.steps_per_level):
        layers += [ActNorm(c4), InvConv1x1LU(c4), AffineCoupling(c4, o.hidden)]
    squeezed = (c4, h // 2, w // 2)
    if last:
        return Scale(layers, None), squeezed, None
    half = (2 * c, h // 2, w // 2)
    return Scale(layers, Split(c4, learned=o.split_prior == "learned")), half, half


@register_model("glow", "likelihood", GlowOptions, "nll",
                "Glow (Kingma & Dhariwal 2018): actnorm with data-dependent init, LU invertible 1x1 convolutions, "
                "affine couplings, multi-scale squeeze/split with learned conditional priors; exact NLL",
                kernel_ops=(),
                batch_coupled="actnorm's data-dependent initialisation reads the first batch, so each rank would "
                              "initialise its replica from its own shard and the replicas would differ")
class Glow(FlowModel):
    def __init__(self, options: GlowOptions, data_info, backend: str = "auto", objective=None):
        shape = image_shape("glow", data_info)
        check_squeezes("glow", data_info, options.levels, "levels", non_squeezing=0, min_side=1)
        flow = build_multiscale(lambda s, last: glow_scale(options, s, last), options.levels, shape, [])
        prior = ("learned conditional Gaussian priors at the splits" if options.split_prior == "learned"
                 else "N(0, I) priors at the splits")
        super().__init__(options, shape, flow, f"Glow density (Kingma & Dhariwal 2018) of y directly (no logit "
                                               f"transform), {prior}, N(0, I) at the top")
