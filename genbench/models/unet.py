"""Noise-prediction networks for diffusion: the U-Net of Ho et al. 2020 (appendix B), with
the options Nichol & Dhariwal 2021 added, and a small time-conditioned MLP for 2-D points.

The network only maps (x_t, t) to a prediction of the noise epsilon; the diffusion
process around it lives in genbench/models/diffusion.py.

U-Net (Ho et al. 2020, their `diffusion_tf/models/unet.py`):
- t -> sinusoidal embedding of width `channels` (the Transformer's, as in their code:
  [sin(t·w_i), cos(t·w_i)], w_i = 10000^(-i/(half-1))) -> Linear -> SiLU -> Linear, width
  `time_embed_dim` (4·channels);
- a 3x3 conv to `channels`, then per resolution level `num_res_blocks` ResNet blocks
  (GroupNorm(32)+SiLU, 3x3 conv, + Linear(SiLU(temb)), GroupNorm+SiLU, dropout, 3x3 conv,
  1x1 skip when the width changes), self-attention after each block at the feature-map
  sides in `attention_resolutions` (16x16 by default), a stride-2 3x3 conv between levels;
  the middle: ResNet block, attention, ResNet block; the up path mirrors the down path with
  num_res_blocks + 1 blocks per level on the concatenated skip activations and
  nearest-neighbour upsampling + 3x3 conv; finally GroupNorm+SiLU and a 3x3 conv. The
  last conv of each block, the attention output projection and the output conv start at
  zero (their init_scale 1e-10), so the untrained network predicts epsilon = 0.
- options from Nichol & Dhariwal 2021 ("Improved DDPM"): `scale_shift` (adaptive group
  norm: the time embedding gives a per-channel scale and shift applied after the second
  GroupNorm, GN(h)·(1 + s) + b, instead of being added before it) and `head_dim`
  (attention heads of a fixed width; Ho et al. use one head).

Every GroupNorm (with its SiLU, and the scale-shift) runs through the kernel layer
genbench.kernels.groupnorm_silu.GroupNormSiLU, and the attention through
genbench.kernels.attention, with the model's backend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genbench.errors import ConfigError
from genbench.kernels import attention, resolve_backend
from genbench.kernels.attention import OP_NAME as ATTENTION_OP
from genbench.kernels.groupnorm_silu import OP_NAME as GROUP_NORM_OP
from genbench.kernels.groupnorm_silu import GroupNormSiLU

UNET_OPS = (GROUP_NORM_OP, ATTENTION_OP)
DEFAULT_ATTENTION_SIDE = 16  # Ho et al. 2020: self-attention at the 16x16 feature maps
MAX_DEFAULT_LEVELS = 4


@dataclass(frozen=True)
class UNetOptions:
    channels: int = 64  # base width ch (Ho et al. 2020: 128 on CIFAR-10; 64 keeps CPU runs short)
    channel_mult: tuple[int, ...] | None = None  # width of each level / ch; None = from the image size (default_channel_mult)
    num_res_blocks: int = 2  # ResNet blocks per level on the way down (Ho et al.: 2)
    attention_resolutions: tuple[int, ...] | None = None  # feature-map sides with self-attention; None = (16,) where the U-Net has 16x16 maps; the middle block always attends
    num_heads: int = 1  # attention heads (Ho et al.: 1)
    head_dim: int | None = None  # channels per head, overrides num_heads (Nichol & Dhariwal 2021 use 64)
    dropout: float = 0.1  # dropout in every ResNet block (Ho et al.: 0.1 on CIFAR-10)
    time_embed_dim: int | None = None  # width of the time-embedding MLP; None = 4 * channels (Ho et al.)
    scale_shift: bool = False  # adaptive group norm from the time embedding (Nichol & Dhariwal 2021)
    groups: int = 32  # GroupNorm groups (Ho et al.: 32); must divide every level's width

    def __post_init__(self):
        if self.channels < 1 or self.num_res_blocks < 1 or self.num_heads < 1 or self.groups < 1:
            raise ValueError("channels, num_res_blocks, num_heads and groups must be >= 1")
        if self.channel_mult is not None and (not self.channel_mult or min(self.channel_mult) < 1):
            raise ValueError(f"channel_mult needs at least one multiplier, each >= 1; got {self.channel_mult}")
        if self.attention_resolutions is not None and any(r < 1 for r in self.attention_resolutions):
            raise ValueError(f"attention_resolutions are feature-map sides >= 1; got {self.attention_resolutions}")
        if self.head_dim is not None and self.head_dim < 1:
            raise ValueError("head_dim must be >= 1, or None to use num_heads")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {self.dropout}")
        if self.time_embed_dim is not None and self.time_embed_dim < 1:
            raise ValueError("time_embed_dim must be >= 1, or None for 4 * channels")


def default_channel_mult(image_size: int) -> tuple[int, ...]:
    """(1, 2, 2, 2) at 32 px (Ho et al. 2020, CIFAR-10), (1, 2, 3, 4) at 64 px (Nichol &
    Dhariwal 2021); otherwise (1, 2, 2, 2) cut to the levels the size allows: one per
    halving that keeps the side even and at least 4 (16 px -> (1, 2, 2); 28 px -> (1, 2, 2);
    8 px -> (1, 2)), at most four levels."""
    if image_size == 64:
        return (1, 2, 3, 4)
    levels, side = 1, image_size
    while levels < MAX_DEFAULT_LEVELS and side % 2 == 0 and side // 2 >= 4:
        side, levels = side // 2, levels + 1
    return (1, 2, 2, 2)[:levels]


@dataclass(frozen=True)
class UNetLayout:
    """The resolved architecture for one image size (what the options mean there)."""

    channel_mult: tuple[int, ...]
    sides: tuple[int, ...]  # feature-map side of each level, e.g. (32, 16, 8, 4)
    attention_sides: tuple[int, ...]  # levels' sides with attention (the middle block always has it)
    time_embed_dim: int


def resolve_layout(options: UNetOptions, image_size: int, context: str = "unet") -> UNetLayout:
    """Check `options` against the image size; ConfigError naming the fix when they do not fit."""
    mult = options.channel_mult or default_channel_mult(image_size)
    if image_size % 2 ** (len(mult) - 1):
        raise ConfigError(
            f"{context}: channel_mult {tuple(mult)} has {len(mult)} levels, so the image side is halved "
            f"{len(mult) - 1} times, but {image_size} is not divisible by {2 ** (len(mult) - 1)}. Use fewer "
            f"levels (e.g. channel_mult={','.join(map(str, default_channel_mult(image_size)))}) or resize the data.")
    sides = tuple(image_size // 2**i for i in range(len(mult)))
    if options.attention_resolutions is None:
        attention_sides = (DEFAULT_ATTENTION_SIDE,) if DEFAULT_ATTENTION_SIDE in sides else ()
    else:
        missing = [r for r in options.attention_resolutions if r not in sides]
        if missing:
            raise ConfigError(
                f"{context}: attention_resolutions {tuple(options.attention_resolutions)} name sides "
                f"{tuple(missing)} that this U-Net does not have; its feature maps are "
                f"{', '.join(f'{s}x{s}' for s in sides)}. Pick from those sides.")
        attention_sides = tuple(options.attention_resolutions)
    widths = sorted({options.channels * m for m in mult})
    bad = [w for w in widths if w % options.groups]
    if bad:
        raise ConfigError(
            f"{context}: groups={options.groups} does not divide the level widths {tuple(bad)} "
            f"(channels={options.channels} x channel_mult {tuple(mult)}). Choose channels divisible by "
            f"groups, or set groups to a divisor of every width.")
    attending = {options.channels * m for m, s in zip(mult, sides) if s in attention_sides}
    attending.add(options.channels * mult[-1])  # the middle block
    for width in sorted(attending):
        if width % (options.head_dim or options.num_heads):
            what = f"head_dim={options.head_dim}" if options.head_dim else f"num_heads={options.num_heads}"
            raise ConfigError(f"{context}: {what} does not split the attention width {width} into whole heads. "
                              "Choose a head_dim or num_heads that divides every attending level's width.")
    return UNetLayout(tuple(mult), sides, attention_sides, options.time_embed_dim or 4 * options.channels)


# ----------------------------------------------------------------------------- time embedding


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of timesteps t (B,) -> (B, dim), as Ho et al.'s
    get_timestep_embedding: [sin(t·w_0..w_{h-1}), cos(t·w_0..w_{h-1})],
    w_i = exp(-ln(10000)·i/(h-1)), h = dim // 2 (a zero column pads an odd dim)."""
    half = dim // 2
    scale = math.log(10000) / max(half - 1, 1)
    freqs = torch.exp(-scale * torch.arange(half, device=t.device, dtype=torch.float32))  # (h,)
    args = t.float()[:, None] * freqs[None, :]  # (B, h)
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)  # (B, 2h)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


class TimeEmbedding(nn.Module):
    """t (B,) -> sinusoid of width `sinusoid_dim` -> Linear -> SiLU -> Linear: (B, dim)."""

    def __init__(self, sinusoid_dim: int, dim: int):
        super().__init__()
        self.sinusoid_dim = sinusoid_dim
        self.mlp = nn.Sequential(nn.Linear(sinusoid_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(timestep_embedding(t, self.sinusoid_dim))  # (B, dim)


def zero_init(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


# ----------------------------------------------------------------------------- blocks


class ResBlock(nn.Module):
    """Ho et al.'s ResNet block with the time embedding added before the second norm, or
    (scale_shift) applied as GN(h)·(1 + s) + b (Nichol & Dhariwal 2021)."""

    def __init__(self, in_ch: int, out_ch: int, temb_dim: int, dropout: float, groups: int,
                 scale_shift: bool, backend: str):
        super().__init__()
        self.scale_shift = scale_shift
        self.norm1 = GroupNormSiLU(groups, in_ch, backend=backend)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.temb_proj = nn.Linear(temb_dim, 2 * out_ch if scale_shift else out_ch)
        self.norm2 = GroupNormSiLU(groups, out_ch, backend=backend)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = zero_init(nn.Conv2d(out_ch, out_ch, 3, padding=1))
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        """x (B, in_ch, H, W), temb (B, temb_dim) already through SiLU -> (B, out_ch, H, W)."""
        h = self.conv1(self.norm1(x))  # (B, out, H, W)
        e = self.temb_proj(temb)  # (B, out) or (B, 2*out)
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = self.norm2(h, scale, shift)
        else:
            h = self.norm2(h + e[:, :, None, None])
        return self.skip(x) + self.conv2(self.dropout(h))


class AttentionBlock(nn.Module):
    """x + proj(attention(GN(x))): self-attention over the H·W positions (Ho et al.'s
    AttnBlock, with heads)."""

    def __init__(self, channels: int, heads: int, groups: int, side: int, backend: str):
        super().__init__()
        self.heads, self.side, self.backend = heads, side, backend
        self.norm = GroupNormSiLU(groups, channels, activation="none", backend=backend)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = zero_init(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w)  # (B, 3, heads, d, S)
        q, k, v = (qkv[:, i].transpose(-1, -2).contiguous() for i in range(3))  # (B, heads, S, d)
        o = attention(q, k, v, backend=self.backend)  # (B, heads, S, d)
        return x + self.proj(o.transpose(-1, -2).reshape(b, c, h, w))


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)  # (B, C, H/2, W/2)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))  # (B, C, 2H, 2W)


class Level(nn.Module):
    """The blocks of one resolution level: ResNet blocks each followed by attention (or not)."""

    def __init__(self, blocks: list[ResBlock], attentions: list[nn.Module]):
        super().__init__()
        self.blocks, self.attentions = nn.ModuleList(blocks), nn.ModuleList(attentions)


# ----------------------------------------------------------------------------- the U-Net


class UNet(nn.Module):
    """epsilon_theta(x_t, t): x (B, C, H, W) and integer timesteps t (B,) -> (B, C, H, W)."""

    def __init__(self, options: UNetOptions, in_channels: int, image_size: int, backend: str = "auto"):
        super().__init__()
        o = options
        self.layout = layout = resolve_layout(o, image_size)
        self.backend = backend
        ch, temb_dim = o.channels, layout.time_embed_dim

        def heads(width: int) -> int:
            return width // o.head_dim if o.head_dim else o.num_heads

        def res(a: int, b: int) -> ResBlock:
            return ResBlock(a, b, temb_dim, o.dropout, o.groups, o.scale_shift, backend)

        def attn(width: int, side: int) -> nn.Module:
            return AttentionBlock(width, heads(width), o.groups, side, backend)

        self.time_embed = TimeEmbedding(ch, temb_dim)
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        skips, width = [ch], ch
        for i, (m, side) in enumerate(zip(layout.channel_mult, layout.sides)):
            blocks, attns = [], []
            for _ in range(o.num_res_blocks):
                blocks.append(res(width, ch * m))
                width = ch * m
                attns.append(attn(width, side) if side in layout.attention_sides else nn.Identity())
                skips.append(width)
            self.down.append(Level(blocks, attns))
            last = i == len(layout.channel_mult) - 1
            self.downsample.append(nn.Identity() if last else Downsample(width))
            if not last:
                skips.append(width)
        self.mid_block1 = res(width, width)
        self.mid_attn = attn(width, layout.sides[-1])
        self.mid_block2 = res(width, width)
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for i in reversed(range(len(layout.channel_mult))):
            m, side = layout.channel_mult[i], layout.sides[i]
            blocks, attns = [], []
            for _ in range(o.num_res_blocks + 1):
                blocks.append(res(width + skips.pop(), ch * m))
                width = ch * m
                attns.append(attn(width, side) if side in layout.attention_sides else nn.Identity())
            self.up.append(Level(blocks, attns))
            self.upsample.append(Upsample(width) if i else nn.Identity())
        self.norm_out = GroupNormSiLU(o.groups, width, backend=backend)
        self.conv_out = zero_init(nn.Conv2d(width, in_channels, 3, padding=1))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        temb = F.silu(self.time_embed(t))  # (B, temb_dim), SiLU'd once for every block's projection
        h = self.conv_in(x)  # (B, ch, H, W)
        hs = [h]
        for level, down in zip(self.down, self.downsample):
            for block, att in zip(level.blocks, level.attentions):
                h = att(block(h, temb))
                hs.append(h)
            if not isinstance(down, nn.Identity):
                h = down(h)
                hs.append(h)
        h = self.mid_block2(self.mid_attn(self.mid_block1(h, temb)), temb)
        for level, up in zip(self.up, self.upsample):
            for block, att in zip(level.blocks, level.attentions):
                h = att(block(torch.cat([h, hs.pop()], dim=1), temb))
            h = up(h)
        return self.conv_out(self.norm_out(h))  # (B, C, H, W)

    def attention_sides(self) -> list[int]:
        """Feature-map side of every attention block, in forward order (the middle one included)."""
        return [m.side for m in self.modules() if isinstance(m, AttentionBlock)]

    def kernel_backends(self) -> dict[str, str]:
        device = self.conv_in.weight.device
        return {op: resolve_backend(op, self.backend, device) for op in UNET_OPS}


# ----------------------------------------------------------------------------- 2-D points


class MLPBlock(nn.Module):
    """h + Linear(SiLU(Linear(SiLU(h)) + Linear(temb))): a residual MLP block with the
    time embedding added inside, the MLP analogue of the U-Net's ResNet block."""

    def __init__(self, hidden: int, temb_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(hidden, hidden)
        self.temb_proj = nn.Linear(temb_dim, hidden)
        self.fc2 = zero_init(nn.Linear(hidden, hidden))

    def forward(self, h: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        return h + self.fc2(F.silu(self.fc1(F.silu(h)) + self.temb_proj(temb)))


class MLPDenoiser(nn.Module):
    """epsilon_theta(x_t, t) for points: x (B, D) and timesteps t (B,) -> (B, D). Input
    Linear, `blocks` residual MLP blocks conditioned on the U-Net's time embedding
    (sinusoid of width `hidden`, two-layer MLP), SiLU, output Linear."""

    def __init__(self, dim: int, hidden: int = 256, blocks: int = 3):
        super().__init__()
        self.time_embed = TimeEmbedding(hidden, hidden)
        self.inp = nn.Linear(dim, hidden)
        self.blocks = nn.ModuleList(MLPBlock(hidden, hidden) for _ in range(blocks))
        self.out = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        temb = F.silu(self.time_embed(t))  # (B, hidden)
        h = self.inp(x)  # (B, hidden)
        for block in self.blocks:
            h = block(h, temb)
        return self.out(F.silu(h))  # (B, D)

    def kernel_backends(self) -> dict[str, str]:
        return {}
