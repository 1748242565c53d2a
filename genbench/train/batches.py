"""Minibatches drawn from an in-memory tensor: a fresh permutation every epoch."""

from __future__ import annotations

from typing import Iterator

import torch


def epoch_batches(x: torch.Tensor, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Endless batches of `batch_size` rows of x, shuffled per epoch (last partial batch
    dropped, unless the data is smaller than one batch)."""
    n = x.shape[0]
    if n == 0:
        raise ValueError("cannot draw batches from an empty split")
    size = min(batch_size, n)
    while True:
        perm = torch.randperm(n, generator=generator, device=generator.device)
        for start in range(0, n - size + 1, size):
            yield x[perm[start:start + size]]


def labelled_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int,
                     generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless (x, y) batches, shuffled per epoch as epoch_batches shuffles x alone."""
    y = y.to(x.device)
    for idx in epoch_batches(torch.arange(x.shape[0], device=x.device), batch_size, generator):
        yield x[idx], y[idx]
