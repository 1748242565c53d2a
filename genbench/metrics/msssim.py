"""MS-SSIM (Wang, Simoncelli & Bovik 2003) and the mean pairwise MS-SSIM diversity score.

Definition: at scale j = 1..M (scale 1 = full resolution, each next scale 2x2 average
pooled, stride 2, odd edges dropped), Gaussian-weighted local statistics with a
`window_size` window of std `sigma`, computed on the VALID region only (no padding, as
the reference MATLAB code and pytorch_msssim), give
    l  = (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1)
    cs = (2 sigma_xy + C2) / (sigma_x^2 + sigma_y^2 + C2)
with population (1/N) moments, C1 = (K1 L)^2, C2 = (K2 L)^2, K1 = 0.01, K2 = 0.03, on
intensities in [0, 1] with data range L = 1: genbench's [-1, 1] images are mapped to
(x + 1) / 2 first. That matters: cs is unchanged by the shift, but the luminance term l is
not, and on [-1, 1] values means of opposite sign make it negative (the diversity score was
28-59% off the reference implementations). Per channel,
    MS-SSIM = prod_{j<M} mean(cs_j)^{w_j} * mean(l_M cs_M)^{w_M},
with the spatial means clipped at 0 before the power (as pytorch_msssim / tf.image, so a
negative correlation gives 0, not NaN); channels are then averaged. M = 1 is plain SSIM.

Settings: the standard window is 11 px, sigma 1.5, and five scales weighted (0.0448,
0.2856, 0.3001, 0.2363, 0.1333). Small images cannot hold five scales: by default M is the
largest number of scales (<= 5) whose smallest scale is still >= the window; if the 11-px
window allows fewer than 2 scales the window shrinks to 7 px, sigma 1.0 (16x16 images:
scales 16 and 8, window 7). The first M weights are used, renormalised to sum to 1.
`resolve_settings` returns them and every result records them.

Diversity (Odena et al. 2017, used by ProGAN, Karras et al. 2018): the mean MS-SSIM over
random pairs (i, j), i != j, of one sample set; lower means more diverse. Pairs are drawn
independently (i uniform, j uniform among the others), so a pair may repeat.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

K1, K2 = 0.01, 0.03
DATA_RANGE = 1.0  # intensities in [0, 1] (images are mapped from [-1, 1])
SCALE_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang et al. 2003
WINDOWS = ((11, 1.5), (7, 1.0))  # (size, sigma): standard, then the small-image fallback
PIXELS_PER_BATCH = 1 << 20  # image values per operand scored at once (16x16: 4096 pairs)


@dataclass(frozen=True)
class MSSSIMSettings:
    window_size: int
    sigma: float
    n_scales: int
    scales: tuple[int, ...]  # image side (min of H, W) at each scale, finest first
    weights: tuple[float, ...]  # renormalised to sum to 1
    k1: float = K1
    k2: float = K2
    data_range: float = DATA_RANGE
    border: str = "valid (no padding)"
    downsample: str = "2x2 average pooling, stride 2"


@dataclass(frozen=True)
class PairwiseMSSSIMResult:
    mean: float  # mean MS-SSIM over the pairs (lower = more diverse)
    std: float  # std of the per-pair scores
    std_error: float  # std / sqrt(n_pairs)
    n_pairs: int
    n_samples: int
    seed: int
    settings: MSSSIMSettings


def _n_scales_fitting(size: int, window: int) -> int:
    n = 0
    while n < len(SCALE_WEIGHTS) and size // 2**n >= window:
        n += 1
    return n


def resolve_settings(height: int, width: int, window_size: int | None = None,
                     sigma: float | None = None, n_scales: int | None = None) -> MSSSIMSettings:
    """Window, scales and weights for H x W images (see module docstring for the rule)."""
    size = min(height, width)
    if window_size is None:
        window_size, default_sigma = next(
            ((w, s) for w, s in WINDOWS if _n_scales_fitting(size, w) >= 2), WINDOWS[-1])
        sigma = default_sigma if sigma is None else sigma
    sigma = 1.5 if sigma is None else sigma
    if window_size < 1 or window_size % 2 == 0 or sigma <= 0:
        raise ValueError(f"window_size must be odd and >= 1 and sigma > 0; got {window_size}, {sigma}")
    fit = _n_scales_fitting(size, window_size)
    n_scales = fit if n_scales is None else n_scales
    if fit < 1 or not 1 <= n_scales <= fit:
        raise ValueError(f"{height}x{width} images hold at most {fit} scale(s) with a {window_size}-px "
                         f"window (smallest scale must be >= the window); asked for {n_scales}")
    used = SCALE_WEIGHTS[:n_scales]
    return MSSSIMSettings(window_size=window_size, sigma=float(sigma), n_scales=n_scales,
                          scales=tuple(size // 2**j for j in range(n_scales)),
                          weights=tuple(w / sum(used) for w in used))


def _window(size: int, sigma: float) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2  # (size,)
    g = torch.exp(-x**2 / (2 * sigma**2))
    return g / g.sum()


def _band(n: int, g: torch.Tensor) -> torch.Tensor:
    """Valid 1-D filtering as a matrix: (n, n - s + 1), column k holds g at rows k..k+s-1."""
    s = len(g)
    idx = torch.arange(n, device=g.device)  # (n,)
    rows = idx[:, None] - idx[None, : n - s + 1]  # (n, n-s+1): tap index of row i in column k
    inside = (rows >= 0) & (rows < s)
    return torch.where(inside, g[rows.clamp(0, s - 1)], g.new_zeros(()))


def _blur(t: torch.Tensor, bh: torch.Tensor, bw: torch.Tensor) -> torch.Tensor:
    """Separable valid filtering as two plain GEMMs: (B, H, W) -> (B, w*h), positions
    in column-major order (only spatial means are taken, so the order is irrelevant)."""
    b, height, width = t.shape
    r = (t.reshape(-1, width) @ bw).view(b, height, -1)  # (B, H, w)
    return (r.transpose(1, 2).reshape(-1, height) @ bh).view(b, -1)  # (B, w*h)


def _ssim_terms(x: torch.Tensor, y: torch.Tensor, g: torch.Tensor, c1: float, c2: float):
    """Spatial means of l*cs and of cs over the valid region, each (N, C)."""
    n, c, height, width = x.shape
    maps = torch.stack([x, y, x * x, y * y, x * y]).view(-1, height, width)  # (5NC, H, W)
    stats = _blur(maps, _band(height, g), _band(width, g)).view(5, n, c, -1)  # (5, N, C, w*h)
    mu_x, mu_y, xx, yy, xy = stats.unbind(0)  # (N, C, w*h) each
    var_x, var_y, cov = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    cs = (2 * cov + c2) / (var_x + var_y + c2)  # (N, C, w*h)
    lum = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)  # (N, C, w*h)
    return (lum * cs).mean(dim=2), cs.mean(dim=2)


def _check_pair(x, y) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    if x.ndim != 4 or x.shape != y.shape or x.shape[0] == 0:
        raise ValueError(f"MS-SSIM needs non-empty image batches (N, C, H, W) of equal shape; "
                         f"got {tuple(x.shape)} and {tuple(y.shape)}")
    if not (torch.isfinite(x).all() and torch.isfinite(y).all()):
        raise ValueError("ms_ssim inputs contain NaN or Inf values")
    return x.detach().float(), y.detach().float()


def _check_fits(settings: MSSSIMSettings, height: int, width: int) -> None:
    size = min(height, width)
    if settings.scales[0] != size or size // 2 ** (settings.n_scales - 1) < settings.window_size:
        raise ValueError(f"settings for {settings.scales[0]}-px images do not fit {height}x{width} images")


def ms_ssim(x, y, settings: MSSSIMSettings | None = None) -> torch.Tensor:
    """MS-SSIM of each pair (x[i], y[i]) of [-1, 1] images (N, C, H, W), scored as [0, 1]
    intensities: (N,)."""
    x, y = _check_pair(x, y)
    settings = settings or resolve_settings(x.shape[2], x.shape[3])
    _check_fits(settings, x.shape[2], x.shape[3])
    step = max(1, PIXELS_PER_BATCH // x[0].numel())
    return torch.cat([_ms_ssim(x[s:s + step], y[s:s + step], settings) for s in range(0, len(x), step)])  # (N,)


def _ms_ssim(x: torch.Tensor, y: torch.Tensor, settings: MSSSIMSettings) -> torch.Tensor:
    x, y = (x + 1) / 2, (y + 1) / 2  # [-1, 1] images -> [0, 1] intensities (data range 1)
    g = _window(settings.window_size, settings.sigma).to(x.device)  # (s,)
    c1, c2 = (settings.k1 * settings.data_range) ** 2, (settings.k2 * settings.data_range) ** 2
    score = torch.ones(x.shape[:2], device=x.device)  # (N, C)
    for j, w in enumerate(settings.weights):
        ssim, cs = _ssim_terms(x, y, g, c1, c2)  # (N, C) each
        last = j == settings.n_scales - 1
        score = score * (ssim if last else cs).clamp(min=0) ** w
        if not last:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)  # (N, C, H/2, W/2)
    return score.mean(dim=1)  # (N,)


def mean_pairwise_ms_ssim(samples, n_pairs: int = 10_000, seed: int = 0,
                          settings: MSSSIMSettings | None = None) -> PairwiseMSSSIMResult:
    """Mean MS-SSIM over n_pairs random pairs of distinct samples (N, C, H, W)."""
    samples, _ = _check_pair(samples, samples)
    if samples.shape[0] < 2:
        raise ValueError(f"mean pairwise MS-SSIM needs N >= 2 samples; got {samples.shape[0]}")
    if n_pairs < 1:
        raise ValueError(f"n_pairs must be >= 1; got {n_pairs}")
    settings = settings or resolve_settings(samples.shape[2], samples.shape[3])
    _check_fits(settings, samples.shape[2], samples.shape[3])
    g = torch.Generator().manual_seed(seed)
    n = samples.shape[0]
    i = torch.randint(n, (n_pairs,), generator=g)  # (P,)
    j = (i + torch.randint(1, n, (n_pairs,), generator=g)) % n  # (P,) never equal to i
    step = max(1, PIXELS_PER_BATCH // samples[0].numel())
    scores = torch.cat([_ms_ssim(samples[i[s:s + step]], samples[j[s:s + step]], settings)
                        for s in range(0, n_pairs, step)])  # (P,)
    std = scores.std(unbiased=True).item() if n_pairs > 1 else 0.0
    return PairwiseMSSSIMResult(mean=scores.mean().item(), std=std, std_error=std / math.sqrt(n_pairs),
                                n_pairs=n_pairs, n_samples=n, seed=seed, settings=settings)
