"""Minibatches drawn from an in-memory tensor: a fresh permutation every epoch.

Under DDP (genbench/train/distributed.py) every rank draws the same permutation from the
run's generator and keeps its DistributedSampler share of each global batch (`part` =
(rank, world size)), so the shares of all ranks are exactly the single-process batch.
"""

from __future__ import annotations

from typing import Iterator

import torch

from genbench.train.distributed import batch_share


def epoch_batches(x: torch.Tensor, batch_size: int, generator: torch.Generator,
                  part: tuple[int, int] = (0, 1)) -> Iterator[torch.Tensor]:
    """Endless batches of `batch_size` rows of x, shuffled per epoch (last partial batch
    dropped, unless the data is smaller than one batch); with part = (r, N), rank r's
    batch_size / N rows of each."""
    n = x.shape[0]
    if n == 0:
        raise ValueError("cannot draw batches from an empty split")
    size = min(batch_size, n)
    share = batch_share(size, part, generator.device)
    while True:
        perm = torch.randperm(n, generator=generator, device=generator.device)
        for start in range(0, n - size + 1, size):
            rows = perm[start:start + size]
            yield x[rows if share is None else rows[share]]


def labelled_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, generator: torch.Generator,
                     part: tuple[int, int] = (0, 1)) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless (x, y) batches, shuffled (and sharded) per epoch as epoch_batches does x alone."""
    y = y.to(x.device)
    for idx in epoch_batches(torch.arange(x.shape[0], device=x.device), batch_size, generator, part):
        yield x[idx], y[idx]
