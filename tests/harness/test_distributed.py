"""Distributed training on torch.distributed (gloo on the CPU) and suite sharding.

Two gloo processes on the CPU stand in for a multi-GPU node: DDP training must equal
single-process training on the same global batch, only rank 0 may write, unsupported
runs are refused on every rank, and `--shard I/N` must do every run of a suite once.
The tiny model is an MLP autoencoder on 2-D points (toy2d-ring8): its loss draws no
noise, so the DDP run can match the single-process run to float rounding (image data
would be dequantised with per-rank noise streams, equal in distribution only).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.multiprocessing as mp

from genbench.cli import shard_arg
from genbench.errors import ConfigError
from genbench.harness.runner import DatasetCache, run_all, seed_everything, shard_runs, train_context
from genbench.harness.spec import resolve_all, run_config
from genbench.harness.store import COMPLETE_METRIC, read_records
from genbench.harness.suites import load_suite
from genbench.models import build_model
from genbench.train import TRAINERS, distributed
from genbench.train.batches import epoch_batches

REPO = Path(__file__).resolve().parents[2]
WORLD = 2
TINY = {"model": "ae", "dataset": "toy2d-ring8", "device": "cpu", "steps": 5, "batch_size": 64, "log_every": 1,
        "warmup_steps": 1, "eval_samples": 200, "model_options": {"hidden": 32, "latent_dim": 2}}
SUITE = """
description = "test: tiny autoencoders on toy2d for the distributed tests"
[defaults]
dataset = "toy2d-ring8"
device = "cpu"
steps = 5
batch_size = 64
log_every = 1
warmup_steps = 1
eval_samples = 200
model_options = { hidden = 32, latent_dim = 2 }
[[runs]]
model = "ae"
seeds = SEEDS
"""


def tiny_run(**overrides):
    return resolve_all([run_config({**TINY, **overrides}, "test")], "test")[0]


def write_suite(path: Path, seeds: list[int]) -> Path:
    path.write_text(SUITE.replace("SEEDS", str(seeds)))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def subprocess_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    return {**env, "OMP_NUM_THREADS": "1"}


def train_tiny(run) -> tuple[torch.nn.Module, list]:
    """Train `run` with its trainer as the runner does (in DDP when a group is joined);
    returns the model and the logged (step, scalars)."""
    data = DatasetCache().get(run.config.dataset)
    seed_everything(run.config.seed)
    model = build_model(run.model_spec, run.model_options, data.info, run.config.backend, run.objective)
    logged = []
    ctx = train_context(run, model, data, lambda step, scalars: logged.append((step, scalars)), None, False, None)
    TRAINERS[run.model_spec.trainer].train(ctx)
    return model, logged


def refusal(run) -> str | None:
    """The ConfigError message `session` raises for `run` (None if it runs), and no group left."""
    try:
        with distributed.session([run]):
            pass
    except ConfigError as exc:
        return str(exc)
    finally:
        assert not torch.distributed.is_initialized()
    return None


def ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    """One torchrun-like rank: the environment torchrun would set, then the real session."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    refused = {"batch_63": refusal(tiny_run(batch_size=63)), "gan": refusal(tiny_run(model="gan", model_options={}))}
    with distributed.session([tiny_run()]):
        model, logged = train_tiny(tiny_run())
        layout = distributed.describe()
    torch.save({"state": model.state_dict(), "logged": logged, "refused": refused, "layout": layout},
               Path(out) / f"rank{rank}.pt")


@pytest.fixture(scope="module")
def ddp_and_single(tmp_path_factory):
    """(per-rank results of 2-process gloo DDP training, single-process model and logs)."""
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(ddp_worker, args=(WORLD, free_port(), str(out)), nprocs=WORLD, join=True)
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    model, logged = train_tiny(tiny_run())
    return ranks, model.state_dict(), logged


def assert_close_relative(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-5) -> None:
    scale = b.abs().max().clamp_min(1e-12)
    assert float((a - b).abs().max() / scale) <= rtol


def test_ddp_training_matches_single_process_on_the_same_global_batch(ddp_and_single):
    ranks, single_state, single_logged = ddp_and_single
    assert ranks[0]["layout"] == {"world_size": 2, "backend": "gloo", "strategy": "DistributedDataParallel"}
    for name, value in single_state.items():
        assert_close_relative(ranks[0]["state"][name].float(), value.float())
        assert torch.equal(ranks[0]["state"][name], ranks[1]["state"][name]), name  # replicas stay identical
    assert [s for s, _ in ranks[0]["logged"]] == [1, 2, 3, 4, 5] == [s for s, _ in single_logged]
    for (_, ddp), (_, single) in zip(ranks[0]["logged"], single_logged):
        assert ddp.keys() == single.keys()
        for key in single:  # logged terms are the global batch's: averaged over the two shards
            assert ddp[key] == pytest.approx(single[key], rel=1e-5), key


def test_unsupported_runs_are_refused_on_every_rank(ddp_and_single):
    ranks, _, _ = ddp_and_single
    for r in ranks:
        assert "batch_size 63 is not divisible by the world size 2" in r["refused"]["batch_63"]
        assert "'adversarial' trainer runs in one process only" in r["refused"]["gan"]


def test_check_runs_names_what_is_unsupported():
    with pytest.raises(ConfigError, match="not divisible by the world size 2"):
        distributed.check_runs([tiny_run(batch_size=63)], 2)
    with pytest.raises(ConfigError, match="'adversarial' trainer"):
        distributed.check_runs([tiny_run(model="gan", model_options={})], 2)
    with pytest.raises(ConfigError, match="'vaegan' trainer"):
        distributed.check_runs([tiny_run(model="vae-gan", dataset="digits", model_options={})], 2)
    with pytest.raises(ConfigError, match="model 'vq-vae'"):
        distributed.check_runs([tiny_run(model="vq-vae", dataset="digits", model_options={})], 2)
    with pytest.raises(ConfigError, match="model 'glow': actnorm's data-dependent initialisation"):
        distributed.check_runs([tiny_run(model="glow", dataset="digits", model_options={})], 2)
    with pytest.raises(ConfigError, match="objective 'sparse'"):
        distributed.check_runs([tiny_run(model="sparse-ae", dataset="digits", model_options={})], 2)
    assert distributed.check_runs([tiny_run(batch_size=64)], 4) == "cpu"


def test_refusals_follow_the_declarations_at_registration():
    """What is refused under torchrun is what the model spec, objective and trainer declare."""
    run = tiny_run()
    assert distributed.unsupported(run, 2) is None
    coupled = dataclasses.replace(run, model_spec=dataclasses.replace(run.model_spec, batch_coupled="a reason"))
    assert distributed.unsupported(coupled, 2) == "model 'ae': a reason"
    coupled = dataclasses.replace(run, objective=dataclasses.replace(run.objective, batch_coupled="another"))
    assert distributed.unsupported(coupled, 2) == "objective 'recon': another"
    alone = dataclasses.replace(run, model_spec=dataclasses.replace(run.model_spec, trainer="vaegan"))
    assert distributed.unsupported(alone, 2) == ("the 'vaegan' trainer runs in one process only (its loop is not "
                                                 "DDP-aware; DDP-aware: single)")
    assert TRAINERS.get("single").data_parallel and not TRAINERS.get("adversarial").data_parallel


def test_sharded_batches_are_the_global_batch():
    x = torch.arange(200)  # row i is i: a share shows which rows it took
    whole = epoch_batches(x, 64, torch.Generator().manual_seed(3))
    parts = [epoch_batches(x, 64, torch.Generator().manual_seed(3), (r, 2)) for r in range(2)]
    for _ in range(7):  # across an epoch boundary (3 batches of 64 per epoch of 200)
        batch, shares = next(whole), [next(p) for p in parts]
        assert [len(s) for s in shares] == [32, 32]
        assert torch.equal(torch.cat(shares).sort().values, batch.sort().values)  # each row exactly once
        assert torch.equal(shares[1], batch[1::2])  # DistributedSampler's rule: rows r, r+N, ...
    with pytest.raises(ConfigError, match="cannot be split evenly across 3 processes"):
        next(epoch_batches(x, 64, torch.Generator().manual_seed(3), (0, 3)))


def test_single_process_helpers_are_the_identity():
    g = torch.Generator().manual_seed(0)
    terms = {"loss": torch.tensor(1.5)}
    assert distributed.rank_generator(g, 0) is g and distributed.mean_terms(terms, torch.device("cpu")) is terms
    assert distributed.shard() == (0, 1) and distributed.describe()["world_size"] == 1


def test_torchrun_run_writes_records_from_rank_0_only(tmp_path):
    suite = write_suite(tmp_path / "one.toml", [0])
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={WORLD}",
           "-m", "genbench", "run", "--suite", str(suite), "--out", str(out), "--no-progress"]
    proc = subprocess.run(cmd, cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("report.md") == 1  # rank 0 alone rendered and printed the report
    records = read_records(out / "results.jsonl")
    assert len({r["attempt"] for r in records}) == 1  # one writer: a second rank would add an attempt
    losses = [r for r in records if r["metric"] == "train/loss"]
    assert [r["step"] for r in losses] == [1, 2, 3, 4, 5]
    layout = {"world_size": 2, "backend": "gloo", "strategy": "DistributedDataParallel"}
    complete = [r for r in records if r["metric"] == COMPLETE_METRIC]
    assert len(complete) == 1 and complete[0]["provenance"]["distributed"] == layout
    throughput = next(r for r in records if r["metric"] == "perf/train_throughput")
    assert throughput["provenance"]["distributed"] == layout and throughput["provenance"]["batch_size"] == 64

    single = tmp_path / "single"
    run_all(resolve_all(load_suite(str(suite)).runs, "one"), single, progress=False, echo=lambda s: None)
    single_losses = [r for r in read_records(single / "results.jsonl") if r["metric"] == "train/loss"]
    assert [r["value"] for r in losses] == pytest.approx([r["value"] for r in single_losses], rel=1e-5)


def test_shards_cover_every_run_exactly_once():
    runs = [SimpleNamespace(run_id=f"{i:04x}") for i in (7, 3, 11, 5, 2, 13, 1)]
    for count in range(1, 9):
        shards = [shard_runs(runs, i, count) for i in range(count)]
        ids = [r.run_id for shard in shards for r in shard]
        assert sorted(ids) == sorted(r.run_id for r in runs)  # every run once, none twice
        assert [r.run_id for r in shard_runs(runs[::-1], 0, count)] == [r.run_id for r in shards[0]][::-1]
    assert shard_arg("1/3") == (1, 3)
    for bad in ("3/3", "1", "a/b", "0/0", "-1/2"):
        with pytest.raises(argparse.ArgumentTypeError, match="I/N|0 <= I < N"):
            shard_arg(bad)


def test_two_shards_share_one_folder_and_resume(tmp_path):
    suite = write_suite(tmp_path / "four.toml", [0, 1, 2, 3])
    out = tmp_path / "shared"

    def shard(i: int) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "genbench", "run", "--suite", str(suite), "--shard", f"{i}/2",
               "--out", str(out), "--no-progress"]
        return subprocess.Popen(cmd, cwd=REPO, env=subprocess_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    procs = [shard(0), shard(1)]  # concurrently, appending to the same results.jsonl
    results = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in results]
    expected = {run.run_id for run in resolve_all(load_suite(str(suite)).runs, "four")}
    complete = [r["run_id"] for r in read_records(out / "results.jsonl") if r["metric"] == COMPLETE_METRIC]
    assert sorted(complete) == sorted(expected)  # each run completed exactly once across the shards
    assert not (out / "report.md").exists()  # rendered once, by `genbench report`, after all shards

    said = []  # a rerun of a shard (here in this process) skips its completed runs
    run_all(shard_runs(resolve_all(load_suite(str(suite)).runs, "four"), 1, 2), out, progress=False, echo=said.append)
    assert len(said) == 2 and all(s.endswith("skipped") for s in said)
    assert [r["run_id"] for r in read_records(out / "results.jsonl") if r["metric"] == COMPLETE_METRIC] == complete
