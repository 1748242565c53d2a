"""Gated PixelCNN (van den Oord et al. 2016, "Conditional Image Generation with PixelCNN
Decoders"), with the discretised logistic mixture output of PixelCNN++ (Salimans et al.
2017) as an option, and a categorical core (`CodePixelCNN`) for priors over discrete codes.

An autoregressive model: p(x) = prod_i p(x_i | x_<i) over the pixels in raster order, and
within a pixel over the colour channels R -> G -> B. Its NLL is exact and discrete (the data
are scored as they are: no dequantisation), bits/dim = nats / (D ln 2).

Architecture (van den Oord et al. 2016, §2.1-2.3, Figure 2):
- Two stacks remove the blind spot of the original masked PixelCNN. The vertical stack
  convolves a (k//2 + 1) x k window of the rows above *and including* the current row; it
  reaches the horizontal stack only through a 1x1 convolution of its pre-activations
  shifted down by one row, so the horizontal stack at row r sees rows < r (all columns in
  reach: nothing up-and-right is missed). The horizontal stack convolves a 1 x (k//2 + 1)
  window of the current row ending at the pixel: mask A in the first block (the pixel
  itself excluded), mask B after (included: those features only carry what is left of it).
- Gated activation tanh(W_f * x + V_f^T h) * sigmoid(W_g * x + V_g^T h); with class
  conditioning (§2.3) h is a learned per-class embedding added as a bias inside every gate
  of both stacks.
- A residual 1x1 connection in the horizontal stack (not in the first block, whose input
  is the image). No skip connections; the output head is ReLU -> 1x1 -> ReLU -> 1x1.
- Colour (C > 1, softmax output): the feature channels of every layer are split into C
  groups (van den Oord et al. 2016a, "Pixel Recurrent Neural Networks", §3.4 masks). At the
  current pixel mask A lets group g see only groups < g, mask B groups <= g, so the logits
  of channel c depend on channels < c of the same pixel and on everything before the pixel.
  With C = 1 this is plain mask A / mask B. The logistic mixture output needs no groups:
  like PixelCNN++ its network sees only earlier pixels, and the within-pixel dependence is
  the mixture's linear dependence of the means on the channels already drawn.

Outputs (both an exact probability over the 256 levels of x in [-1, 1], x = u/127.5 - 1):
- "softmax": a 256-way softmax per subpixel (van den Oord et al. 2016a).
- "logistic-mixture": K logistics shared by the channels of a pixel, discretised to the
  8-bit bins with the edge bins open to -inf / +inf; for C = 3 the means of G and B depend
  linearly on R (and G) (Salimans et al. 2017, §2.1-2.2, eq. 3).

Sampling is ancestral in raster order, from uniforms drawn up front (one per draw) and
inverted through the exact discrete CDFs, so every sampler gives the same samples for the
same generator:
- "naive": the whole network on the whole image for every pixel (every subpixel when the
  channels are grouped): H W C full passes.
- "cached": the vertical stack depends only on rows above, so it runs once per row over the
  rows in its receptive field; the horizontal stack then runs on a 1-row tensor, cropped to
  its receptive field left of the pixel, once per pixel (per subpixel with groups).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from genbench.utils.pixels import PIXEL_LEVELS, images_to_uint8, uint8_to_images
from genbench.errors import ConfigError
from genbench.models.base import Capabilities, GenerativeModel, check_draw, register_model
from genbench.models.nets import gate
from genbench.models.likelihood import BIN_WIDTH, ExactDiscrete

OUTPUTS = ("softmax", "logistic-mixture")
SAMPLERS = ("naive", "cached")
LOG_SCALE_MIN = -7.0  # floor on the logistics' log scale (Salimans et al.'s code)
MIN_STD_WIDTH = 1e-6  # standardised bin width below which a bin's mass is its midpoint density x width


# ----------------------------------------------------------------------------- masks


def channel_groups(channels: int, groups: int) -> torch.Tensor:
    """The colour group of each of `channels` feature channels: contiguous blocks of about
    channels / groups, (channels,) int64 in [0, groups)."""
    return torch.arange(channels) * groups // channels


def gate_groups(hidden: int, groups: int) -> torch.Tensor:
    """Groups of a gate's 2 * hidden pre-activations, laid out [tanh half, sigmoid half]:
    channel k of each half has the group of gated output k. (2 * hidden,)"""
    return channel_groups(hidden, groups).repeat(2)


def row_mask(out_groups: torch.Tensor, in_groups: torch.Tensor, width: int, mask: str) -> torch.Tensor:
    """Mask of a 1 x width convolution whose last column is the current pixel: columns to its
    left are all allowed; at the pixel, output group g sees input groups < g (mask "A") or
    <= g (mask "B"). (out, in, 1, width) float."""
    allowed = in_groups[None, :] < out_groups[:, None] if mask == "A" else in_groups[None, :] <= out_groups[:, None]
    m = torch.ones(len(out_groups), len(in_groups), 1, width)
    m[:, :, 0, -1] = allowed.float()
    return m


class MaskedConv2d(nn.Conv2d):
    """A 1 x width convolution (no padding: callers pad on the left) with its weight multiplied
    by a fixed mask, so masked weights are exactly zero in the forward pass and get no
    gradient (van den Oord et al. 2016a, §3.4)."""

    def __init__(self, in_groups: torch.Tensor, out_groups: torch.Tensor, width: int, mask: str):
        super().__init__(len(in_groups), len(out_groups), (1, width))
        self.register_buffer("mask", row_mask(out_groups, in_groups, width, mask))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias)


def shift_down(x: torch.Tensor) -> torch.Tensor:
    """Rows moved down by one, zeros in the top row: row r then holds what row r - 1 saw."""
    return F.pad(x, (0, 0, 1, 0))[..., :-1, :]


# ----------------------------------------------------------------------------- the gated stack


class GatedBlock(nn.Module):
    """One gated layer of both stacks (van den Oord et al. 2016, Figure 2). The first block
    (first=True) reads the input with mask A and has no residual connection."""

    def __init__(self, in_channels: int, hidden: int, kernel: int, first: bool, groups: int,
                 num_classes: int | None):
        super().__init__()
        self.kernel, self.first = kernel, first
        in_groups = channel_groups(in_channels, groups)
        pre_groups = gate_groups(hidden, groups)
        self.vertical = nn.Conv2d(in_channels, 2 * hidden, (kernel // 2 + 1, kernel))
        self.link = nn.Conv2d(2 * hidden, 2 * hidden, 1)  # vertical -> horizontal, fed shifted down
        self.horizontal = MaskedConv2d(in_groups, pre_groups, kernel // 2 + 1, "A" if first else "B")
        self.residual = MaskedConv2d(channel_groups(hidden, groups), channel_groups(hidden, groups), 1, "B")
        self.cond_v = nn.Embedding(num_classes, 2 * hidden) if num_classes else None
        self.cond_h = nn.Embedding(num_classes, 2 * hidden) if num_classes else None

    @staticmethod
    def class_bias(embedding: nn.Embedding | None, labels: torch.Tensor | None) -> torch.Tensor | float:
        """The class's bias inside the gate (B, 2h, 1, 1); 0 without class conditioning."""
        if embedding is None:
            return 0.0
        if labels is None:
            raise ValueError("a class-conditional PixelCNN needs the examples' labels")
        return embedding(labels)[:, :, None, None]

    def forward_vertical(self, v: torch.Tensor, labels: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(v_out (B, h, H, W), link (B, 2h, H, W)): row r of both depends on input rows <= r.
        The link still has to be shifted down before the horizontal stack may see it."""
        k = self.kernel // 2
        pre = self.vertical(F.pad(v, (k, k, k, 0))) + self.class_bias(self.cond_v, labels)  # (B, 2h, H, W)
        return gate(pre), self.link(pre)

    def forward_horizontal(self, h: torch.Tensor, link: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """h_out (B, hidden, R, W) from h (B, in, R, W) and the shifted link of the same rows."""
        pre = self.horizontal(F.pad(h, (self.kernel // 2, 0, 0, 0))) + link + self.class_bias(self.cond_h, labels)
        out = self.residual(gate(pre))  # (B, hidden, R, W)
        return out if self.first else h + out


class GatedStack(nn.Module):
    """The vertical and horizontal stacks of `layers` gated blocks: input (B, in, H, W) ->
    horizontal features (B, hidden, H, W) whose channel-group g at pixel i depends only on
    pixels before i and on input groups < g at i. Shared by PixelCNN and CodePixelCNN."""

    def __init__(self, in_channels: int, hidden: int, layers: int, first_kernel: int, kernel: int,
                 groups: int = 1, num_classes: int | None = None):
        super().__init__()
        kernels = [first_kernel] + [kernel] * (layers - 1)
        self.blocks = nn.ModuleList(
            GatedBlock(in_channels if i == 0 else hidden, hidden, k, i == 0, groups, num_classes)
            for i, k in enumerate(kernels))
        # rows above (vertical) and columns left (horizontal) that the last block reaches
        self.reach = sum(k // 2 for k in kernels)

    def vertical_links(self, x: torch.Tensor, labels: torch.Tensor | None) -> list[torch.Tensor]:
        """Per block the unshifted link (B, 2h, H, W): row r depends on input rows r - reach .. r."""
        links, v = [], x
        for block in self.blocks:
            v, link = block.forward_vertical(v, labels)
            links.append(link)
        return links

    def horizontal(self, x: torch.Tensor, links: list[torch.Tensor], labels: torch.Tensor | None) -> torch.Tensor:
        """The horizontal stack on any rows of x (B, in, R, W) given the links those rows see
        (already shifted down): rows are independent, so one row at a time is the same op."""
        h = x
        for block, link in zip(self.blocks, links):
            h = block.forward_horizontal(h, link, labels)
        return h  # (B, hidden, R, W)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        links = [shift_down(link) for link in self.vertical_links(x, labels)]
        return self.horizontal(x, links, labels)


class OutputHead(nn.Sequential):
    """ReLU -> 1x1 -> ReLU -> 1x1 (van den Oord et al. 2016a, Table 1), both convolutions with
    mask B over the channel groups so output group g reads feature groups <= g."""

    def __init__(self, hidden: int, out_channels: int, groups: int):
        hidden_groups = channel_groups(hidden, groups)
        super().__init__(nn.ReLU(), MaskedConv2d(hidden_groups, hidden_groups, 1, "B"), nn.ReLU(),
                         MaskedConv2d(hidden_groups, channel_groups(out_channels, groups), 1, "B"))

    @property
    def out(self) -> MaskedConv2d:
        return self[-1]


# ----------------------------------------------------------------------------- draws


def categorical_inverse_cdf(logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The category whose CDF interval holds u: logits (B, K), u (B,) in [0, 1) -> (B,) int64.
    A draw from softmax(logits) given a uniform, computed in float64."""
    cdf = torch.softmax(logits.double(), dim=-1).cumsum(-1)  # (B, K)
    target = (u.double() * cdf[:, -1]).unsqueeze(-1)  # (B, 1)
    return torch.searchsorted(cdf, target).squeeze(-1).clamp_max(logits.shape[-1] - 1)


# ----------------------------------------------------------------------------- logistic mixture


def mixture_channels(channels: int, mixtures: int) -> int:
    """Outputs per pixel: K mixture logits, K means and K log scales per channel, and K
    coefficients per channel pair j < c (3 for RGB: Salimans et al.'s 10 K)."""
    return mixtures * (1 + 2 * channels + channels * (channels - 1) // 2)


def split_mixture(params: torch.Tensor, channels: int, mixtures: int):
    """params (B, O, H, W) -> logits (B, K, H, W), means, log scales (B, C, K, H, W) and
    coefficients (B, P, K, H, W) in (-1, 1), P = C(C-1)/2 pairs in order (1,0), (2,0), (2,1)."""
    b, _, h, w = params.shape
    k, c = mixtures, channels
    logits, means, log_scales, coeffs = params.split([k, c * k, c * k, c * (c - 1) // 2 * k], dim=1)
    log_scales = log_scales.reshape(b, c, k, h, w).clamp_min(LOG_SCALE_MIN)
    return logits, means.reshape(b, c, k, h, w), log_scales, torch.tanh(coeffs.reshape(b, -1, k, h, w))


def conditional_means(means: torch.Tensor, coeffs: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean of channel c: mu_c + sum_{j<c} coeff_(c,j) x_j (Salimans et al. 2017, eq. 3), for
    x (B, C, H, W) the pixel's channel values. (B, C, K, H, W)"""
    out, pair = [means[:, 0]], 0
    for c in range(1, means.shape[1]):
        mean = means[:, c]
        for j in range(c):
            mean = mean + coeffs[:, pair] * x[:, j:j + 1]
            pair += 1
        out.append(mean)
    return torch.stack(out, dim=1)


def discretised_logistic_log_prob(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """log P(x) elementwise for 8-bit levels x in [-1, 1] under a logistic(mean, e^log_scale)
    discretised to the bins [x - w/2, x + w/2], the edge bins at -1 and +1 open to -inf / +inf
    (Salimans et al. 2017, eq. 2), so the 256 levels' probabilities sum to one.

    Stable everywhere: the edges are log-sigmoids, and an inner bin's CDF difference is
    taken in log space through sigma(a) - sigma(b) = sigma(a) sigma(-b) (1 - e^-(a-b)), which
    cannot underflow (Salimans et al.'s code subtracts the CDFs and falls back to the midpoint
    density x bin width when the difference underflows); the midpoint fallback is kept for a
    standardised bin width below MIN_STD_WIDTH, where it is exact to ~1e-13."""
    inv_s = torch.exp(-log_scale)
    centred = x - mean
    plus = (centred + BIN_WIDTH / 2) * inv_s  # standardised upper edge
    minus = (centred - BIN_WIDTH / 2) * inv_s  # standardised lower edge
    width = BIN_WIDTH * inv_s  # plus - minus, without the cancellation
    log_inner = F.logsigmoid(plus) + F.logsigmoid(-minus) + torch.log(-torch.expm1(-width.clamp_min(MIN_STD_WIDTH)))
    mid = centred * inv_s
    log_mid_density = mid - log_scale - 2 * F.softplus(mid) + math.log(BIN_WIDTH)
    inner = torch.where(width > MIN_STD_WIDTH, log_inner, log_mid_density)
    low_edge = F.logsigmoid(plus)  # x = -1: P = sigma(plus)
    high_edge = F.logsigmoid(-minus)  # x = +1: P = 1 - sigma(minus)
    return torch.where(x < -1 + BIN_WIDTH / 2, low_edge, torch.where(x > 1 - BIN_WIDTH / 2, high_edge, inner))


def mixture_log_prob(params: torch.Tensor, x: torch.Tensor, mixtures: int) -> torch.Tensor:
    """log p(pixel) per position (B, H, W): logsumexp_k [log pi_k + sum_c log P(x_c | k, x_<c)]
    for x (B, C, H, W) and the network's params (B, O, H, W)."""
    logits, means, log_scales, coeffs = split_mixture(params, x.shape[1], mixtures)
    means = conditional_means(means, coeffs, x)  # (B, C, K, H, W)
    per_channel = discretised_logistic_log_prob(x.unsqueeze(2), means, log_scales)  # (B, C, K, H, W)
    return torch.logsumexp(torch.log_softmax(logits, dim=1) + per_channel.sum(1), dim=1)


def logistic_inverse_cdf(mean: torch.Tensor, log_scale: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The 8-bit level whose (edge-open) bin holds mean + s logit(u): exactly a draw from the
    discretised logistic given the uniform u, in [-1, 1]."""
    y = mean + torch.exp(log_scale) * (torch.log(u) - torch.log1p(-u))
    return uint8_to_images(images_to_uint8(y)).to(mean.dtype)


def draw_mixture_pixel(params: torch.Tensor, channels: int, mixtures: int, u: torch.Tensor) -> torch.Tensor:
    """One pixel's channels (B, C) from its params (B, O) and uniforms u (B, 1 + C): the
    component k from u[:, 0], then channel c from u[:, 1 + c] given k and the channels before it."""
    logits, means, log_scales, coeffs = split_mixture(params[:, :, None, None], channels, mixtures)
    k = categorical_inverse_cdf(logits[:, :, 0, 0], u[:, 0])  # (B,)
    pick = k[:, None, None, None, None].expand(-1, channels, 1, 1, 1)  # component k of every channel
    log_scale = log_scales.gather(2, pick)[:, :, 0, 0, 0]  # (B, C)
    x = torch.zeros(len(k), channels, 1, 1, device=params.device, dtype=params.dtype)
    for c in range(channels):
        mean = conditional_means(means, coeffs, x).gather(2, pick)[:, c, 0, 0, 0]  # uses channels < c only
        x[:, c, 0, 0] = logistic_inverse_cdf(mean, log_scale[:, c], u[:, 1 + c])
    return x[:, :, 0, 0]


# ----------------------------------------------------------------------------- raster sampling


class RasterModel(Protocol):
    """What the two samplers need of an autoregressive model over a (.., H, W) grid `state`."""

    stack: GatedStack
    head: OutputHead
    steps_per_position: int  # draws per position that each need fresh network outputs

    def inputs(self, state: torch.Tensor) -> torch.Tensor: ...  # state crop -> stack input (B, in, R, W')

    def draw(self, out: torch.Tensor, state: torch.Tensor, r: int, c: int, step: int,
             uniforms: torch.Tensor) -> None: ...  # out (B, O) at (r, c): write the draw into state


def naive_raster(model: RasterModel, state: torch.Tensor, uniforms: torch.Tensor,
                 labels: torch.Tensor | None) -> torch.Tensor:
    """Every draw from a full pass of the network over the whole grid: H W steps full passes."""
    height, width = state.shape[-2:]
    for r in range(height):
        for c in range(width):
            for step in range(model.steps_per_position):
                out = model.head(model.stack(model.inputs(state), labels))  # (B, O, H, W)
                model.draw(out[:, :, r, c], state, r, c, step, uniforms)
    return state


def row_links(model: RasterModel, state: torch.Tensor, r: int, labels: torch.Tensor | None) -> list[torch.Tensor]:
    """The links row r sees, per block (B, 2h, 1, W): the vertical stack's last row over rows
    r - 1 - reach .. r - 1 (all it depends on), zeros for the first row (as shift_down)."""
    if r == 0:
        n, width = state.shape[0], state.shape[-1]
        return [torch.zeros(n, b.link.out_channels, 1, width, device=b.link.weight.device, dtype=b.link.weight.dtype)
                for b in model.stack.blocks]
    top = max(0, r - 1 - model.stack.reach)
    links = model.stack.vertical_links(model.inputs(state[..., top:r, :]), labels)
    return [link[..., -1:, :] for link in links]


def cached_raster(model: RasterModel, state: torch.Tensor, uniforms: torch.Tensor,
                  labels: torch.Tensor | None) -> torch.Tensor:
    """The vertical stack once per row (over its receptive field), the horizontal stack on a
    1-row crop ending at the pixel (its receptive field) once per draw."""
    height, width = state.shape[-2:]
    reach = model.stack.reach
    for r in range(height):
        links = row_links(model, state, r, labels)
        for c in range(width):
            left = max(0, c - reach)
            crop = [link[..., left:c + 1] for link in links]
            for step in range(model.steps_per_position):
                h = model.stack.horizontal(model.inputs(state[..., r:r + 1, left:c + 1]), crop, labels)
                out = model.head(h[..., -1:])  # (B, O, 1, 1)
                model.draw(out[:, :, 0, 0], state, r, c, step, uniforms)
    return state


RASTER_SAMPLERS = {"naive": naive_raster, "cached": cached_raster}


def check_sampler(sampler: str) -> None:
    if sampler not in RASTER_SAMPLERS:
        raise ConfigError(f"Unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}.")


def check_kernel(name: str, kernel: int) -> None:
    if kernel < 3 or kernel % 2 == 0:
        raise ValueError(f"{name} must be an odd kernel size >= 3 (the horizontal stack needs a pixel "
                         f"to the left, the vertical one a column either side); got {kernel}")


def param_device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


# ----------------------------------------------------------------------------- code prior core


class CodePixelCNN(nn.Module):
    """A gated PixelCNN over a grid of integer codes in [0, categories): codes (B, h, w) are
    embedded (nn.Embedding, `hidden` channels) as the first block's input, the gated stack
    (mask A first) and head give logits (B, categories, h, w). The categorical core of a
    PixelCNN prior over VQ-VAE codes (van den Oord et al. 2017, §3.2)."""

    steps_per_position = 1

    def __init__(self, categories: int, hidden: int, layers: int, kernel_size: int = 3):
        super().__init__()
        if categories < 2 or hidden < 1 or layers < 1:
            raise ValueError(f"CodePixelCNN needs categories >= 2, hidden >= 1 and layers >= 1; got "
                             f"{categories}, {hidden}, {layers}")
        check_kernel("kernel_size", kernel_size)
        self.categories = categories
        self.embed = nn.Embedding(categories, hidden)
        self.stack = GatedStack(hidden, hidden, layers, kernel_size, kernel_size)
        self.head = OutputHead(hidden, categories, 1)

    def inputs(self, codes: torch.Tensor) -> torch.Tensor:
        return self.embed(codes).permute(0, 3, 1, 2)  # (B, h, w) -> (B, hidden, h, w)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """Logits (B, categories, h, w): position i's depend on codes before i only."""
        return self.head(self.stack(self.inputs(codes)))

    def log_prob(self, codes: torch.Tensor) -> torch.Tensor:
        """log p(codes) per example (B,), nats."""
        return -F.cross_entropy(self(codes), codes, reduction="none").flatten(1).sum(1)

    def draw(self, out: torch.Tensor, state: torch.Tensor, r: int, c: int, step: int,
             uniforms: torch.Tensor) -> None:
        state[:, r, c] = categorical_inverse_cdf(out, uniforms[:, r, c])

    @torch.no_grad()
    def sample(self, n: int, h: int, w: int, generator: torch.Generator | None = None,
               sampler: str = "cached") -> torch.Tensor:
        """n code grids (n, h, w) int64 by ancestral raster-order draws."""
        check_sampler(sampler)
        device = param_device(self)
        uniforms = torch.rand(n, h, w, generator=generator, device=device)
        state = torch.zeros(n, h, w, dtype=torch.long, device=device)
        return RASTER_SAMPLERS[sampler](self, state, uniforms, None)


# ----------------------------------------------------------------------------- the image model


@dataclass(frozen=True)
class PixelCNNOptions:
    hidden: int = 64  # feature channels of each stack (the paper's ImageNet models are far wider; 64 trains on a CPU)
    layers: int = 8  # gated blocks; the receptive field reaches first_kernel//2 + (layers-1) kernel//2 rows/columns
    first_kernel: int = 7  # k of the first block (mask A), a 7x7 field as in van den Oord et al. 2016a
    kernel: int = 3  # k of the later blocks (mask B); odd, >= 3
    output: Literal["softmax", "logistic-mixture"] = "softmax"  # 256-way softmax (van den Oord et al.) or PixelCNN++'s mixture
    mixtures: int = 5  # logistic-mixture components K (Salimans et al. use 10)
    class_conditional: bool = False  # p(x | y): a per-class embedding inside every gate (van den Oord et al. 2016, §2.3)
    sampler: Literal["naive", "cached"] = "cached"  # what sample() uses; both give identical samples

    def __post_init__(self):
        if self.hidden < 1 or self.layers < 1:
            raise ValueError(f"hidden and layers must be >= 1; got hidden={self.hidden}, layers={self.layers}")
        check_kernel("first_kernel", self.first_kernel)
        check_kernel("kernel", self.kernel)
        if self.output not in OUTPUTS:
            raise ValueError(f"output must be one of {', '.join(OUTPUTS)}; got {self.output!r}")
        if self.mixtures < 1:
            raise ValueError(f"mixtures must be >= 1; got {self.mixtures}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}; got {self.sampler!r}")


def check_image_data(options: PixelCNNOptions, data_info) -> None:
    """ConfigError unless the data are 8-bit images the options can model."""
    if data_info.kind != "image" or len(data_info.shape) != 3:
        raise ConfigError(f"PixelCNN models 8-bit images (C, H, W); dataset {data_info.name!r} holds "
                          f"{data_info.kind} data of shape {tuple(data_info.shape)}. Use an image dataset "
                          "(digits, shapes, photos), or an autoregressive model for that kind of data.")
    channels = data_info.shape[0]
    if options.output == "softmax" and options.hidden < channels:
        raise ConfigError(f"pixelcnn hidden={options.hidden} cannot be split into {channels} colour groups; "
                          f"use hidden >= {channels} (a multiple of {channels} splits evenly).")
    if options.class_conditional and not data_info.classes:
        raise ConfigError(f"pixelcnn class_conditional=true needs labels; dataset {data_info.name!r} has none. "
                          "Use a labelled dataset (digits, shapes, photos) or class_conditional=false.")


@register_model("pixelcnn", "likelihood", PixelCNNOptions, "nll",
                "gated PixelCNN (van den Oord et al. 2016): vertical/horizontal stacks, R->G->B masks, 256-way "
                "softmax or discretised logistic mixture (PixelCNN++), optional class conditioning, exact NLL, "
                "naive vs cached raster sampler", kernel_ops=())
class PixelCNN(GenerativeModel):
    capabilities = Capabilities(samples=True, likelihood=True, nll="exact", ar_samplers=True)
    sampler_names = SAMPLERS

    def __init__(self, options: PixelCNNOptions, data_info, backend: str = "auto", objective=None):
        super().__init__()
        check_image_data(options, data_info)
        self.options, self.shape = options, tuple(data_info.shape)  # (C, H, W)
        self.channels = self.shape[0]
        self.class_conditional = options.class_conditional
        self.num_classes = len(data_info.classes) if options.class_conditional else None
        softmax = options.output == "softmax"
        self.groups = self.channels if softmax else 1  # the mixture's network sees earlier pixels only
        self.steps_per_position = self.channels if softmax else 1
        out = self.channels * PIXEL_LEVELS if softmax else mixture_channels(self.channels, options.mixtures)
        self.stack = GatedStack(self.channels, options.hidden, options.layers, options.first_kernel,
                                options.kernel, self.groups, self.num_classes)
        self.head = OutputHead(options.hidden, out, self.groups)
        self.likelihood = ExactDiscrete(self.output_description())

    def kernel_backends(self) -> dict[str, str]:
        return {}  # plain PyTorch convolutions: no kernel ops

    def output_description(self) -> str:
        if self.options.output == "softmax":
            within = ", channels R->G->B within a pixel (channel-group masks)" if self.channels > 1 else ""
            return f"gated PixelCNN, 256-way softmax per subpixel (van den Oord et al. 2016){within}"
        linear = ", means linear in the earlier channels (eq. 3)" if self.channels > 1 else ""
        return (f"gated PixelCNN, discretised logistic mixture of K={self.options.mixtures} "
                f"(Salimans et al. 2017){linear}, edge bins open")

    def check_labels(self, labels: torch.Tensor | None, n: int) -> None:
        if self.class_conditional and labels is None:
            raise ValueError("this PixelCNN is class-conditional: pass the examples' labels (labels=...)")
        if not self.class_conditional and labels is not None:
            raise ValueError("labels were given to a PixelCNN without class conditioning; drop them, or build it "
                             "with class_conditional=True")
        if labels is not None and (labels.shape != (n,) or labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(f"labels must be (n,) = ({n},) class indices in [0, {self.num_classes})")

    # -- likelihood

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        return x  # the pixel values in [-1, 1] are the first block's input

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Output parameters (B, O, H, W): softmax logits (O = 256 C, channel-major) or the
        mixture's parameters; those of pixel i (channel c) see only x before i (channels < c)."""
        return self.head(self.stack(x, labels))

    def exact_nll(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """-log p(x) (or -log p(x | y)) per example (B,) in nats, for x (B, C, H, W) 8-bit images in [-1, 1]."""
        self.check_labels(labels, x.shape[0])
        out = self(x, labels)
        if self.options.output == "logistic-mixture":
            return -mixture_log_prob(out, x, self.options.mixtures).flatten(1).sum(1)
        b, c, h, w = x.shape
        logits = out.view(b, c, PIXEL_LEVELS, h, w).transpose(1, 2)  # (B, 256, C, H, W)
        target = images_to_uint8(x).long()  # (B, C, H, W)
        return F.cross_entropy(logits, target, reduction="none").flatten(1).sum(1)

    # -- sampling

    @property
    def sample_description(self) -> str:
        labels = "; labels drawn uniformly over the classes unless given" if self.class_conditional else ""
        return (f"ancestral draws in raster order (R->G->B within a pixel) from the exact discrete p(x) of the "
                f"{self.likelihood.what}, {self.options.sampler} sampler{labels}; draw='mean' and draw='sample' "
                "both return draws: an autoregressive model has no tractable mean image")

    def draw(self, out: torch.Tensor, state: torch.Tensor, r: int, c: int, step: int,
             uniforms: torch.Tensor) -> None:
        """Write the draw at (r, c) into state (B, C, H, W): channel `step` (softmax) or all channels."""
        if self.options.output == "softmax":
            logits = out.view(out.shape[0], self.channels, PIXEL_LEVELS)[:, step]  # (B, 256)
            level = categorical_inverse_cdf(logits, uniforms[:, step, r, c])
            state[:, step, r, c] = uint8_to_images(level).to(state.dtype)
        else:
            state[:, :, r, c] = draw_mixture_pixel(out, self.channels, self.options.mixtures, uniforms[:, :, r, c])

    def draw_labels(self, n: int, generator, device, labels: torch.Tensor | None) -> torch.Tensor | None:
        if not self.class_conditional or labels is not None:
            return labels
        return torch.randint(self.num_classes, (n,), generator=generator, device=device)

    @torch.no_grad()
    def sample_with(self, n: int, generator: torch.Generator | None, sampler: str,
                    labels: torch.Tensor | None = None) -> torch.Tensor:
        """n images (n, C, H, W) of exact 8-bit levels in [-1, 1] with sampler "naive" or
        "cached": labels (conditional, when not given) and then every uniform are drawn first,
        in a fixed order, so both samplers give the same images for the same generator."""
        check_sampler(sampler)
        device = param_device(self)
        labels = self.draw_labels(n, generator, device, labels)
        self.check_labels(labels, n)
        c, h, w = self.shape
        per_pixel = c if self.options.output == "softmax" else 1 + c  # the mixture also draws its component
        uniforms = torch.rand(n, per_pixel, h, w, generator=generator, device=device)
        state = torch.zeros(n, c, h, w, device=device)
        return RASTER_SAMPLERS[sampler](self, state, uniforms, labels)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, draw: str = "mean",
               labels: torch.Tensor | None = None) -> torch.Tensor:
        """n draws with the options' sampler; `draw` is accepted for the harness and ignored
        (see sample_description)."""
        check_draw(draw)
        return self.sample_with(n, generator, self.options.sampler, labels)
