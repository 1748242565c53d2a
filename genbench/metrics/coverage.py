"""Mode coverage of 2-D toy mixtures (the ring / grid protocol of docs/evaluation.md, `coverage`).

Definition (VEEGAN, Srivastava et al. 2017; PacGAN, Lin et al. 2018; as pinned in
docs/evaluation.md): for samples (N, 2), mode centres (K, 2) and the mixture's per-mode std
sigma,
- a sample is HIGH-QUALITY if its Euclidean distance to its nearest mode is <= 3 sigma
  (`n_sigmas`); for a true isotropic 2-D Gaussian mode that holds for
  1 - exp(-9/2) = 98.9% of the samples;
- a mode is CAPTURED if it is the nearest mode of at least one high-quality sample;
- the mode histogram p_model counts high-quality samples per nearest mode, normalised over
  the high-quality samples; its reverse KL to the uniform target is
  KL(p_model || p_uniform) = sum_k p_k log(K p_k)  (nats),
  with empty modes contributing 0 (0 log 0 = 0). It is 0 for a perfectly balanced
  histogram, log(K / (K - m)) when m modes are empty and the rest balanced, and log K when
  all high-quality samples sit on one mode. With no high-quality sample there is no
  histogram; the rule (NO_HQ_REVERSE_KL_RULE) scores that log K, the KL's maximum, so a run
  that drew nothing near any mode never counts better than one that collapsed onto one,
  and report averages run over every seed rather than only the lucky ones.
Samples with NaN/Inf coordinates (a diverged generator) count as not high-quality; they
are not an error. docs/evaluation.md fixes 2,500 samples: the caller chooses N and the result
records it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

HIGH_QUALITY_SIGMAS = 3.0
NO_HQ_REVERSE_KL_RULE = "no high-quality sample: log K (the maximum, as if all on one mode)"


@dataclass(frozen=True)
class CoverageResult:
    modes_captured: int
    n_modes: int
    high_quality_pct: float  # % of all samples that are high-quality
    reverse_kl: float  # KL(p_model || uniform) in nats; log K without high-quality samples (module doc)
    n_samples: int
    n_high_quality: int
    counts: tuple[int, ...]  # high-quality samples per mode, in the order of `modes`
    sigma: float
    threshold: float  # n_sigmas * sigma: the high-quality radius
    n_sigmas: float


def _points(x, name: str, min_rows: int) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.ndim != 2 or x.shape[1] != 2 or x.shape[0] < min_rows:
        raise ValueError(f"{name} must be 2-D points (N, 2) with N >= {min_rows}; got {tuple(x.shape)}")
    return x.detach().to("cpu", torch.float64)


def mode_coverage(samples, modes, sigma: float, n_sigmas: float = HIGH_QUALITY_SIGMAS) -> CoverageResult:
    """Modes captured, % high-quality and reverse KL of the mode histogram (see module doc)."""
    samples, modes = _points(samples, "samples", 1), _points(modes, "modes", 1)
    if not (math.isfinite(sigma) and sigma > 0 and n_sigmas > 0) or not torch.isfinite(modes).all():
        raise ValueError(f"need finite modes, sigma > 0 and n_sigmas > 0; got sigma={sigma}, n_sigmas={n_sigmas}")
    k, threshold = modes.shape[0], n_sigmas * sigma
    dist = torch.cdist(samples, modes)  # (N, K), NaN rows for non-finite samples
    nearest_d, nearest = dist.min(dim=1)  # (N,), (N,)
    high_quality = nearest_d <= threshold  # (N,) False for NaN
    counts = torch.bincount(nearest[high_quality], minlength=k)  # (K,)
    n_hq = int(high_quality.sum())
    kl = math.log(k)  # NO_HQ_REVERSE_KL_RULE
    if n_hq:
        p = counts[counts > 0].double() / n_hq  # (K',) non-empty modes only: 0 log 0 = 0
        kl = float((p * torch.log(p * k)).sum().clamp(min=0.0))
    return CoverageResult(
        modes_captured=int((counts > 0).sum()), n_modes=k, high_quality_pct=100.0 * n_hq / len(samples),
        reverse_kl=kl, n_samples=len(samples), n_high_quality=n_hq, counts=tuple(counts.tolist()),
        sigma=float(sigma), threshold=threshold, n_sigmas=float(n_sigmas),
    )
