"""Minibatches drawn from an in-memory tensor: a fresh permutation every epoch.

Under DDP (genbench/train/distributed.py) every rank draws the same permutation from the
run's generator and keeps its DistributedSampler share of each global batch (`part` =
(rank, world size)), so the shares of all ranks are exactly the single-process batch.

Every batch holds exactly batch_size rows: a batch size larger than the training split is
refused (check_batch_size, made before training by genbench.harness.spec), never clipped,
so throughput = batch_size / step time counts the examples actually processed.
"""

from __future__ import annotations

from typing import Iterator

import torch

from genbench.errors import ConfigError
from genbench.train.distributed import batch_share


def check_batch_size(batch_size: int, n_train: int, dataset: str = "the dataset") -> None:
    if batch_size > n_train:
        raise ConfigError(
            f"batch_size {batch_size} is larger than the training split of {dataset} ({n_train} examples). "
            "A batch is drawn without repeats from one pass over the split, and genbench does not shrink it "
            f"(throughput counts batch_size examples per step): use --batch-size {n_train} or less (batch_size "
            "in a suite), or a dataset with more training examples."
        )


def epoch_batches(x: torch.Tensor, batch_size: int, generator: torch.Generator,
                  part: tuple[int, int] = (0, 1)) -> Iterator[torch.Tensor]:
    """Endless batches of `batch_size` rows of x, shuffled per epoch (last partial batch
    dropped); with part = (r, N), rank r's batch_size / N rows of each."""
    n = x.shape[0]
    check_batch_size(batch_size, n)
    share = batch_share(batch_size, part, generator.device)
    while True:
        perm = torch.randperm(n, generator=generator, device=generator.device)
        for start in range(0, n - batch_size + 1, batch_size):
            rows = perm[start:start + batch_size]
            yield x[rows if share is None else rows[share]]


def labelled_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, generator: torch.Generator,
                     part: tuple[int, int] = (0, 1)) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless (x, y) batches, shuffled (and sharded) per epoch as epoch_batches does x alone."""
    y = y.to(x.device)
    for idx in epoch_batches(torch.arange(x.shape[0], device=x.device), batch_size, generator, part):
        yield x[idx], y[idx]
