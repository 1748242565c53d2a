"""Data-parallel training on PyTorch's own distributed stack: torchrun, torch.distributed
and DistributedDataParallel (DDP). Nothing here is home-made beyond the glue.

Launched as `torchrun --nproc_per_node N -m genbench run ...`, every process joins the
process group that torchrun describes in its environment (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR, MASTER_PORT): NCCL with one GPU per LOCAL_RANK for CUDA runs, gloo for CPU
runs. All ranks then train every run together:

- the global batch is the run's batch_size, drawn from one permutation that every rank
  draws alike (same seed); PyTorch's DistributedSampler, run over the global batch's rows,
  gives rank r its share (rows r, r+N, r+2N, ...), so the N shares are the single-process
  batch (the sampler does not shuffle again: the batch already is a random draw);
- the loss runs inside DDP's forward, and DDP averages the gradients, so a step on the
  global batch equals the single-process step (exactly, for a loss that is a mean over
  examples; random draws inside the loss come from a per-rank stream, see rank_generator);
- loss terms are averaged across ranks (all_reduce) before they are logged, and a step's
  time is the slowest rank's, so throughput counts the global batch per step;
- rank 0 alone writes records and artefacts and evaluates; the other ranks wait.

What cannot split this way is declared where it is registered and refused here before
anything trains: a trainer whose loop is not DDP-aware (Trainer.data_parallel False), and a
model or objective whose step couples the examples of a batch (ModelSpec.batch_coupled,
Objective.batch_coupled: the reason, or None).

Without torchrun (or with one process) every function here is the identity or a no-op,
so single-process runs are unchanged.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from genbench.errors import ConfigError
from genbench.train.base import TRAINERS

# Collectives wait this long: while rank 0 evaluates a run (FID features, sampling), the
# other ranks wait at a barrier, which the default 10-minute NCCL timeout could cut short.
TIMEOUT = timedelta(hours=2)
TORCHRUN_VARIABLES = ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")

# -- who am I

def env_world_size() -> int:
    """WORLD_SIZE as torchrun sets it (1 when not launched by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def active() -> bool:
    """True inside a process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    """This process's rank: the group's when one is joined, else torchrun's RANK (so the CLI
    knows after the group is gone), else 0."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    """Rank 0: the one process that writes records, artefacts and reports."""
    return rank() == 0


def backend_for(device_type: str) -> str:
    return "nccl" if device_type == "cuda" else "gloo"


def describe() -> dict[str, Any]:
    """Provenance of the process layout a run trained under."""
    if not active():
        return {"world_size": 1, "backend": None, "strategy": None}
    return {"world_size": world_size(), "backend": dist.get_backend(), "strategy": "DistributedDataParallel"}


# -- joining and leaving the process group

@contextmanager
def session(runs: list) -> Iterator[None]:
    """The block runs inside torchrun's process group when launched by torchrun with more
    than one process (joined here, left at the end); the runs are checked first, so an
    unsupported run is refused on every rank before anything trains. A group that already
    exists (a caller set it up) is used as it is and left to its owner."""
    owner = env_world_size() > 1 and not (dist.is_available() and dist.is_initialized())
    if owner:
        init(check_runs(runs, env_world_size()))
    elif active():
        check_runs(runs, world_size())
    try:
        yield
    finally:
        if owner:
            dist.destroy_process_group()


def init(device_type: str) -> None:
    """init_process_group from torchrun's environment: NCCL on the GPU of LOCAL_RANK for
    CUDA runs, gloo for CPU runs."""
    missing = [name for name in TORCHRUN_VARIABLES if name not in os.environ]
    if missing:
        raise ConfigError(
            f"WORLD_SIZE={env_world_size()} is set but {', '.join(missing)} are not: distributed runs "
            "must be started by torchrun (e.g. `torchrun --nproc_per_node 2 -m genbench run ...`), "
            "which sets them; unset WORLD_SIZE to run in one process."
        )
    backend = backend_for(device_type)
    if backend == "nccl":
        local_rank, count = int(os.environ["LOCAL_RANK"]), torch.cuda.device_count()
        if local_rank >= count:
            raise ConfigError(
                f"torchrun started a process with LOCAL_RANK {local_rank} but only {count} GPU(s) are "
                "visible: give --nproc_per_node at most the number of GPUs (one GPU per process)."
            )
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend, timeout=TIMEOUT)


def check_runs(runs: list, world: int) -> str:
    """Refuse (ConfigError) runs that cannot train with DDP across `world` processes; return
    the device type they share (which picks the backend)."""
    problems = []
    for run in runs:
        why = unsupported(run, world)
        if why:
            problems.append(f"{run.model_label} / {run.objective_label} / {run.config.dataset} / "
                            f"seed {run.config.seed}: {why}")
    if problems:
        raise ConfigError(
            f"Under torchrun with {world} processes every run trains with DistributedDataParallel, "
            "and these runs cannot: " + "; ".join(problems) + ". Run them in one process (without "
            "torchrun), or spread a suite over independent processes with --shard I/N."
        )
    types = sorted({run.device.type for run in runs})
    if len(types) > 1:
        raise ConfigError(f"Under torchrun all runs must use one device type (one process-group "
                          f"backend), but these use {' and '.join(types)}: pass --device.")
    return types[0] if types else "cpu"


def unsupported(run, world: int) -> str | None:
    """Why `run` cannot train with DDP across `world` processes, or None."""
    trainer = TRAINERS.get(run.model_spec.trainer)
    if not trainer.data_parallel:
        aware = [name for name in TRAINERS.names() if TRAINERS.get(name).data_parallel]
        return (f"the {trainer.name!r} trainer runs in one process only (its loop is not DDP-aware; "
                f"DDP-aware: {', '.join(aware)})")
    if run.model_spec.batch_coupled:
        return f"model {run.model_spec.name!r}: {run.model_spec.batch_coupled}"
    if run.objective.batch_coupled:
        return f"objective {run.objective.name!r}: {run.objective.batch_coupled}"
    if run.config.batch_size % world:
        return (f"batch_size {run.config.batch_size} is not divisible by the world size {world} (each "
                f"rank takes batch_size / world_size rows of every global batch)")
    return None


# -- training

def shard() -> tuple[int, int]:
    """(rank, world size) of this process's share of every global batch; (0, 1) alone."""
    return (rank(), world_size()) if active() else (0, 1)


def batch_share(size: int, part: tuple[int, int], device: torch.device) -> torch.Tensor | None:
    """Rank r's positions in a global batch of `size` rows (part = (r, N)), as
    DistributedSampler picks them: the N shares together are the global batch, each row in
    exactly one of them. None in one process (the whole batch). Computed once per run, not
    per step: the indices are the same for every batch."""
    from torch.utils.data.distributed import DistributedSampler

    r, n = part
    if n == 1:
        return None
    if size % n:
        raise ConfigError(
            f"A global batch of {size} rows cannot be split evenly across {n} processes. "
            f"Use a batch size divisible by {n} (and a training split of at least one batch)."
        )
    return torch.tensor(list(DistributedSampler(range(size), num_replicas=n, rank=r, shuffle=False)),
                        device=device)


def rank_generator(generator: torch.Generator, seed: int) -> torch.Generator:
    """The stream for random draws inside the loss (noise, timesteps, binarisation). Under
    DDP each rank gets its own stream, seeded from (seed, rank): the run's generator on every
    rank would give every shard the same noise, correlating the global batch. The batches
    stay on the run's generator, which every rank draws alike. In one process: the run's
    generator itself, so single-process runs are unchanged."""
    if not active():
        return generator
    state = int(np.random.SeedSequence([seed, rank()]).generate_state(1)[0])
    return torch.Generator(device=generator.device).manual_seed(state)


class LossModule(nn.Module):
    """The objective as a module's forward. DDP averages gradients only for work done inside
    its forward, and objectives call model methods (encode, decode, ...), not forward."""

    def __init__(self, model: nn.Module, loss_fn: Callable):
        super().__init__()
        self.model, self.loss_fn = model, loss_fn  # loss_fn uses self.model's parameters

    def forward(self, x, step: int):
        return self.loss_fn(x, step)


def wrap_loss(model: nn.Module, loss_fn: Callable, device: torch.device) -> Callable:
    """loss_fn(x, step) computed under DDP when distributed, else loss_fn itself.

    static_graph: some models hold parameters their loss never uses (wavenet's last
    residual projection); DDP learns the set in the first step and completes every
    reduction without them, without find_unused_parameters' graph walk on every step. The
    single-objective models use the same parameters at every step."""
    if not active():
        return loss_fn
    ids = [torch.cuda.current_device()] if device.type == "cuda" else None
    return DistributedDataParallel(LossModule(model, loss_fn), device_ids=ids, static_graph=True)


def mean_terms(terms: dict, device: torch.device) -> dict:
    """Loss terms (scalars) averaged over ranks, detached: each rank's terms are means over
    its equal shard, so their mean is the global batch's. Identity in one process."""
    if not active():
        return terms
    keys = list(terms)
    values = torch.stack([torch.as_tensor(terms[k].detach() if torch.is_tensor(terms[k]) else terms[k],
                                          device=device).float().reshape(()) for k in keys])
    dist.all_reduce(values)  # sum
    return dict(zip(keys, (values / world_size()).unbind()))


def max_over_ranks(values: list[float], device: torch.device) -> list[float]:
    """Elementwise maximum over ranks, e.g. per-step seconds: a DDP step lasts as long as its
    slowest rank. Identity in one process."""
    if not active() or not values:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.tolist()


def check_replicas(model: nn.Module, device: torch.device) -> None:
    """DDP keeps replicas equal only if nothing changes parameters outside the averaged
    gradient step; compare per-parameter checksums across ranks and stop if they differ
    (a model updating itself from its shard would otherwise train silently differently)."""
    if not active():
        return
    sums = torch.stack([torch.stack([p.detach().double().sum(), p.detach().double().square().sum()])
                        for p in model.parameters()]).flatten().to(device)
    both = torch.cat([sums, -sums])
    dist.all_reduce(both, op=dist.ReduceOp.MAX)
    high, low = both[:sums.numel()], -both[sums.numel():]
    if not torch.equal(high.nan_to_num(), low.nan_to_num()):  # NaN: a diverged run, not a split
        raise RuntimeError(
            f"After DDP training the {type(model).__name__} replicas differ across ranks: some part "
            "changes parameters outside the gradient step from its own shard. Declare it at its "
            "registration, register_model(..., batch_coupled=REASON) or register_objective(..., "
            "batch_coupled=REASON) (refused under torchrun), or make it rank-consistent."
        )


# -- the harness's collectives

def barrier() -> None:
    """All ranks meet here (e.g. between runs, while rank 0 evaluated). No-op alone."""
    if active():
        dist.barrier()


def broadcast_object(obj: Any) -> Any:
    """Rank 0's `obj` on every rank (picklable), e.g. the set of completed runs, so all ranks
    agree on what to run. Identity in one process."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
