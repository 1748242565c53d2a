"""Memorisation score: how close generated samples are to their nearest training example.

Definition: no single paper fixes this exact score. It is the nearest-neighbour copy check
of the GAN literature (ProGAN, Karras et al. 2018, shows generated images next to their
nearest training images), normalised by the training set's own nearest-neighbour distance
as in the data-copying test of Meehan et al. 2020 and the authenticity score of Alaa et
al. 2022. For each generated sample,
    d_gen = || g - nearest training example ||_2
in pixel space (the [-1, 1] images flattened) or on given feature vectors (N, F). The
reference scale is the median, over training examples, of the distance to their nearest
OTHER training example (self excluded by index; exact duplicates in the training set give
0). ratio = d_gen / that median.

A sample with ratio < `copy_threshold` (default 0.1) is flagged as a near-exact copy: it is
ten times closer to a training example than a typical training example is to its own
nearest neighbour, so no natural variation of the data explains it. (For the 16x16 digits
the median NN distance is about 2.9; a copy plus pixel noise of std 0.01 sits at about
0.01 * sqrt(256) = 0.16, ratio ~0.06, while held-out digits have ratio ~1.) Reported: the flagged fraction,
the mean and median ratio, and the first `max_flagged` flagged indices.

Computation: float32 torch.cdist (matmul form) over row chunks of the generated set, so
memory is chunk x n_train, never N x n_train; the distance to the nearest neighbour it
finds is then recomputed directly (difference, then norm), so exact copies give exactly 0
rather than the matmul form's rounding noise. Deterministic, no randomness.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from genbench.metrics.base import flat_finite

COPY_THRESHOLD = 0.1
MAX_FLAGGED = 20
CHUNK_ELEMENTS = 1 << 24  # distances held at once: 64 MB of float32


@dataclass(frozen=True)
class MemorisationResult:
    fraction_copies: float  # fraction of generated samples with ratio < copy_threshold
    n_copies: int
    mean_ratio: float
    median_ratio: float
    flagged_indices: tuple[int, ...]  # first `max_flagged` flagged generated indices
    reference_nn_median: float  # median train-to-other-train NN distance
    copy_threshold: float
    n_generated: int
    n_train: int
    dim: int  # length of the compared vectors
    space: str  # "pixels" (images flattened) or "features"


def _flatten(x, name: str) -> torch.Tensor:
    return flat_finite(x, name)  # (N, D)


def nearest_distances(queries: torch.Tensor, keys: torch.Tensor, exclude_self: bool = False):
    """Distance and index of each query's nearest key, (Q,) each; keys (K, D), queries (Q, D).

    exclude_self: queries are the keys themselves and row i may not match key i.
    """
    step = max(1, CHUNK_ELEMENTS // len(keys))
    best = torch.empty(len(queries), dtype=torch.long)  # (Q,)
    for s in range(0, len(queries), step):
        d = torch.cdist(queries[s:s + step], keys)  # (q, K) matmul form: fast, rounded
        if exclude_self:
            rows = torch.arange(len(d))
            d[rows, rows + s] = float("inf")
        best[s:s + step] = d.argmin(dim=1)
    exact = (queries - keys[best]).norm(dim=1)  # (Q,) recomputed directly
    return exact, best


def memorisation(generated, train, copy_threshold: float = COPY_THRESHOLD,
                 max_flagged: int = MAX_FLAGGED) -> MemorisationResult:
    """Nearest-training-example distance ratios of generated samples (see module doc)."""
    space = "pixels" if torch.as_tensor(generated).ndim == 4 else "features"
    gen, ref = _flatten(generated, "generated"), _flatten(train, "train")
    if gen.shape[1] != ref.shape[1]:
        raise ValueError(f"generated and train differ in size per example: {gen.shape[1]} vs {ref.shape[1]}")
    if len(gen) < 1 or len(ref) < 2:
        raise ValueError(f"need >= 1 generated and >= 2 training examples; got {len(gen)} and {len(ref)}")
    if not copy_threshold > 0:
        raise ValueError(f"copy_threshold must be > 0; got {copy_threshold}")
    scale = nearest_distances(ref, ref, exclude_self=True)[0].median().item()
    if scale <= 0:
        raise ValueError("the median train nearest-neighbour distance is 0 (mostly duplicates): no scale")
    ratio = nearest_distances(gen, ref)[0] / scale  # (N,)
    flagged = (ratio < copy_threshold).nonzero().squeeze(1)  # (M,)
    return MemorisationResult(
        fraction_copies=len(flagged) / len(gen), n_copies=len(flagged), mean_ratio=ratio.mean().item(),
        median_ratio=ratio.median().item(), flagged_indices=tuple(flagged[:max_flagged].tolist()),
        reference_nn_median=scale, copy_threshold=copy_threshold, n_generated=len(gen),
        n_train=len(ref), dim=gen.shape[1], space=space,
    )
