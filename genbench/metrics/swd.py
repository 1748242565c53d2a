"""Sliced Wasserstein distance (SWD) over a Laplacian pyramid (Karras et al. 2018, ProGAN).

Definition (ProGAN, Sec. 5 and Table 1; their code `metrics/sliced_wasserstein.py`):
1. Laplacian pyramid of every image: `pyr_down` = 5x5 binomial filter
   ([1, 4, 6, 4, 1] / 16 in each direction, mirror padding = scipy "mirror" = torch
   "reflect") then keep every second pixel; `pyr_up` = zero-insertion, the same filter x 4.
   Band l = G_l - pyr_up(G_{l+1}); the last level is the low-pass G_L itself.
2. Levels: full resolution, halving, down to 16 px (ProGAN). Images smaller than 32 px go
   down to 8 px instead, so 16x16 images give levels (16, 8) and 8x8 images (8,). Sizes
   are measured on min(H, W); `pyramid_levels` states them and every result records them.
3. At each level, random 7x7 neighbourhoods, all channels (C x 7 x 7 descriptors; grayscale
   is NOT tiled to 3 channels as ProGAN's code does, so numbers on grayscale data are not
   directly comparable with ProGAN's), `patches_per_image` per image (ProGAN: 128),
   positions uniform over the patches that lie fully inside the level.
4. Equal counts: both sets use D = min(n_real, n_generated) * patches_per_image
   descriptors; the larger set uses a uniform random subset (without replacement) of its
   (image, patch slot) pairs.
5. Normalisation (as ProGAN's `finalize_descriptors`): each descriptor set, at each level,
   separately, minus its per-channel mean and divided by its per-channel (population) std,
   both over all of that set's descriptors and 7x7 positions at that level. A channel with
   std 0 is only centred.
6. SWD between the two descriptor sets: `n_repeats` rounds (ProGAN: 4) of `n_projections`
   random unit directions (ProGAN's code: 128 per round, 512 in all); per direction the
   1-D Wasserstein-1 distance of the projections = mean |sort(A d) - sort(B d)|; the value
   is the mean over directions and rounds.

Values are RAW: ProGAN's tables report them x 1e3. `mean` is the average over levels, as
ProGAN's "avg" column. Randomness: patch positions use a generator seeded from `seed` that
is the same for both sets (common random numbers: identical sets give exactly 0), the
directions a second stream of the same seed. Computed on the CPU in float32 (inputs on
another device are copied); results agree across thread counts to ~1e-9, not bitwise.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import torch
import torch.nn.functional as F

PATCH_SIZE = 7  # ProGAN's neighbourhood size
IMAGE_CHUNK = 1024  # images per pyramid batch
MAX_PROJECTED = 1 << 24  # projected values held at once (per set): 64 MB of float32
_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0  # (5,)


@dataclass(frozen=True)
class SWDResult:
    per_level: tuple[float, ...]  # raw SWD per level, finest first (ProGAN tables: x 1e3)
    mean: float  # average over levels
    levels: tuple[int, ...]  # level resolutions (px, min side), finest first
    patch_size: int
    patches_per_image: int
    n_descriptors: int  # per set and level, after subsampling to equal counts
    n_real: int
    n_generated: int
    n_projections: int  # random directions per round
    n_repeats: int  # rounds averaged
    normalisation: str
    seed: int


def _generator(seed: int, stream: int) -> torch.Generator:
    state = np.random.SeedSequence([seed, stream]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def _check_images(x, name: str) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.ndim != 4:
        raise ValueError(f"{name} must be images (N, C, H, W); got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or Inf values")
    return x.detach().to("cpu", torch.float32)


def pyramid_levels(height: int, width: int, min_resolution: int | None = None) -> tuple[int, ...]:
    """Level resolutions (min side, finest first) of the pyramid SWD uses."""
    size = min(height, width)
    floor = min_resolution if min_resolution is not None else (16 if size >= 32 else 8)
    if floor < PATCH_SIZE:
        raise ValueError(f"min_resolution must be >= the {PATCH_SIZE}-px patch; got {floor}")
    if size < floor:
        raise ValueError(f"images of {height}x{width} px are smaller than the {floor}-px level SWD needs")
    levels = [size]
    while levels[-1] // 2 >= floor:
        levels.append(levels[-1] // 2)
    factor = 2 ** (len(levels) - 1)
    if height % factor or width % factor:
        raise ValueError(f"{height}x{width} px is not divisible by {factor} for levels {levels}")
    return tuple(levels)


def _binomial(x: torch.Tensor, gain: float) -> torch.Tensor:
    c = x.shape[1]
    kernel = (_BINOMIAL[:, None] * _BINOMIAL[None, :] * gain).expand(c, 1, 5, 5)  # (C, 1, 5, 5)
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), kernel, groups=c)  # (B, C, H, W)


def pyr_down(x: torch.Tensor) -> torch.Tensor:
    """Blur and halve, as cv2.pyrDown: (B, C, H, W) -> (B, C, H/2, W/2)."""
    return _binomial(x, 1.0)[:, :, ::2, ::2]  # (B, C, H/2, W/2)


def pyr_up(x: torch.Tensor) -> torch.Tensor:
    """Zero-insert and blur x 4, as cv2.pyrUp: (B, C, H, W) -> (B, C, 2H, 2W)."""
    b, c, h, w = x.shape
    up = x.new_zeros(b, c, 2 * h, 2 * w)  # (B, C, 2H, 2W)
    up[:, :, ::2, ::2] = x
    return _binomial(up, 4.0)  # (B, C, 2H, 2W)


def laplacian_pyramid(x: torch.Tensor, n_levels: int) -> list[torch.Tensor]:
    """Band-pass levels, finest first; the last is the low-pass residual."""
    gauss = [x]  # (B, C, H / 2^l, W / 2^l) each
    for _ in range(n_levels - 1):
        gauss.append(pyr_down(gauss[-1]))
    return [g - pyr_up(g_next) for g, g_next in pairwise(gauss)] + [gauss[-1]]


def _descriptors(images: torch.Tensor, n_desc: int, ppi: int, levels, seed: int) -> list[torch.Tensor]:
    """n_desc normalised 7x7 descriptors per level, (n_desc, C*49) each."""
    g = _generator(seed, 0)
    n, _, h, w = images.shape
    owner = torch.randperm(n * ppi, generator=g)[:n_desc] // ppi  # (D,) image of each descriptor
    corners = [(torch.randint(0, (h >> i) - PATCH_SIZE + 1, (n_desc,), generator=g),
                torch.randint(0, (w >> i) - PATCH_SIZE + 1, (n_desc,), generator=g))
               for i in range(len(levels))]  # level i is (H / 2^i, W / 2^i); (D,) top-left corners
    out: list[list[torch.Tensor]] = [[] for _ in levels]
    for start in range(0, n, IMAGE_CHUNK):
        pick = ((owner >= start) & (owner < start + IMAGE_CHUNK)).nonzero().squeeze(1)  # (d,)
        if pick.numel() == 0:
            continue
        pyramid = laplacian_pyramid(images[start:start + IMAGE_CHUNK], len(levels))
        for lvl, (band, (y0, x0)) in enumerate(zip(pyramid, corners)):
            patches = band.unfold(2, PATCH_SIZE, 1).unfold(3, PATCH_SIZE, 1)  # (B, C, h-6, w-6, 7, 7) view
            out[lvl].append(patches[owner[pick] - start, :, y0[pick], x0[pick]])  # (d, C, 7, 7)
    return [_normalise(torch.cat(parts)) for parts in out]  # order is irrelevant to SWD


def _normalise(desc: torch.Tensor) -> torch.Tensor:
    """Per-channel standardisation over the whole set: (D, C, 7, 7) -> (D, C*49)."""
    mean = desc.mean(dim=(0, 2, 3), keepdim=True)  # (1, C, 1, 1)
    std = desc.std(dim=(0, 2, 3), keepdim=True, unbiased=False)  # (1, C, 1, 1)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return ((desc - mean) / std).reshape(desc.shape[0], -1)  # (D, C*49)


def random_directions(dim: int, n: int, g: torch.Generator) -> torch.Tensor:
    """n directions uniform on the unit sphere in R^dim: (dim, n)."""
    d = torch.randn(dim, n, generator=g)  # (dim, n)
    return d / d.norm(dim=0, keepdim=True)


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, directions: torch.Tensor) -> float:
    """Mean over directions (F, P) of the 1-D W1 distance of a @ d and b @ d; a, b (D, F)."""
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"descriptor sets must be (D, F) of equal shape; got {tuple(a.shape)}, {tuple(b.shape)}")
    n, p = a.shape[0], directions.shape[1]
    step = min(p, max(1, MAX_PROJECTED // n))
    buffers = torch.empty(2, step, n)  # (2, p', D) reused: fresh pages cost as much as the matmul
    total = 0.0
    with ThreadPoolExecutor(2) as pool:
        for s in range(0, p, step):
            d = directions[:, s:s + step].T.contiguous()  # (p', F)
            pa = torch.matmul(d, a.T, out=buffers[0, : len(d)]).numpy()  # (p', D)
            pb = torch.matmul(d, b.T, out=buffers[1, : len(d)]).numpy()  # (p', D)
            list(pool.map(lambda m: m.sort(axis=1), (pa, pb)))  # numpy's SIMD sort, in place
            np.subtract(pa, pb, out=pa)
            total += float(np.abs(pa, out=pa).sum(axis=1).astype(np.float64).sum())
    return total / (n * p)


def swd(real, generated, *, patches_per_image: int = 128, n_projections: int = 128,
        n_repeats: int = 4, min_resolution: int | None = None, seed: int = 0) -> SWDResult:
    """Per-level and average SWD between two image sets (N, C, H, W) in [-1, 1]."""
    real, generated = _check_images(real, "real"), _check_images(generated, "generated")
    if real.shape[1:] != generated.shape[1:]:
        raise ValueError(f"image shapes differ: {tuple(real.shape[1:])} vs {tuple(generated.shape[1:])}")
    if min(len(real), len(generated)) < 2:
        raise ValueError("SWD needs at least 2 images in each set")
    if patches_per_image < 1 or n_projections < 1 or n_repeats < 1:
        raise ValueError("patches_per_image, n_projections and n_repeats must be >= 1")
    levels = pyramid_levels(real.shape[2], real.shape[3], min_resolution)
    n_desc = min(len(real), len(generated)) * patches_per_image
    desc_r = _descriptors(real, n_desc, patches_per_image, levels, seed)
    desc_g = _descriptors(generated, n_desc, patches_per_image, levels, seed)
    g_dir = _generator(seed, 1)
    per_level = []
    for a, b in zip(desc_r, desc_g):
        rounds = [sliced_wasserstein(a, b, random_directions(a.shape[1], n_projections, g_dir))
                  for _ in range(n_repeats)]
        per_level.append(float(np.mean(rounds)))
    return SWDResult(
        per_level=tuple(per_level), mean=float(np.mean(per_level)), levels=levels,
        patch_size=PATCH_SIZE, patches_per_image=patches_per_image, n_descriptors=n_desc,
        n_real=len(real), n_generated=len(generated), n_projections=n_projections,
        n_repeats=n_repeats, normalisation="per set and level: per-channel mean/std over descriptors",
        seed=seed,
    )
