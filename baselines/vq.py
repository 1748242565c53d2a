"""Reference for the VQ nearest-codebook search.

    indices[n] = argmin_j ||x_n - e_j||^2        x (N, D), codebook e (K, D)
    distance[n] = ||x_n - e_{indices[n]}||^2     squared Euclidean distance, fp32

Eager: torch.cdist materialises the whole N x K distance matrix, then argmin reads it
back (torch.argmin returns the lowest index among exact ties). Memory is N·K·4 bytes,
which runs out long before the kernel's does. The distance is recomputed exactly for
the chosen code (not read from cdist, whose matmul-based formula loses precision).
No gradients: the indices are discrete, and VQ models pass gradients around the op
(straight-through), not through it.
"""

from __future__ import annotations

import functools

import torch

from genbench.errors import ConfigError


def check_inputs(x: torch.Tensor, codebook: torch.Tensor) -> None:
    if x.ndim != 2 or codebook.ndim != 2:
        raise ConfigError(f"vq_nearest expects x (N, D) and codebook (K, D); got {tuple(x.shape)} "
                          f"and {tuple(codebook.shape)}. Flatten the spatial positions into N first.")
    if x.shape[1] != codebook.shape[1]:
        raise ConfigError(f"vq_nearest: x has D={x.shape[1]} but the codebook's vectors have "
                          f"D={codebook.shape[1]}; they must match.")
    if codebook.shape[0] == 0:
        raise ConfigError("vq_nearest: the codebook is empty (K = 0).")
    if x.device != codebook.device:
        raise ConfigError(f"vq_nearest: x is on {x.device} but the codebook on {codebook.device}.")


@torch.no_grad()
def vq_nearest(x: torch.Tensor, codebook: torch.Tensor, return_distance: bool = False):
    """Indices (N,) int64 of the nearest code; with return_distance, also (N,) fp32 distances."""
    check_inputs(x, codebook)
    xf, ef = x.float(), codebook.float()
    indices = torch.cdist(xf, ef).argmin(dim=1)  # (N,)
    if not return_distance:
        return indices
    return indices, (xf - ef[indices]).pow(2).sum(1)


@functools.lru_cache(maxsize=None)
def compiled_vq_nearest():
    """torch.compile of the reference (built once per process, on first use)."""
    return torch.compile(vq_nearest)
