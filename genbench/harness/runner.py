"""The runner: runs (validated up front) -> train, evaluate, measure, record.

For every run it records training throughput after warm-up, sampling throughput, peak
memory, wall time per phase, loss curves and gradient norms, and the metrics that apply
to the model. A diverged run (NaN/Inf loss or gradient) is recorded as such and the
suite goes on. A run whose records are complete in the results file is skipped, so a
killed suite resumes where it stopped.

Under torchrun (world size > 1) every rank takes part in every run: training is
data-parallel (genbench/train/distributed.py), rank 0 alone evaluates and writes records
and artefacts, and the ranks meet at a barrier after each run. `shard_runs` splits a suite
over independent processes instead (`genbench run --shard I/N`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import random
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from genbench.data import Dataset, load_dataset
from genbench.errors import ConfigError, GenbenchError
from genbench.utils import figures, measure
from genbench.harness.lock import folder_lock
from genbench.harness.recorder import RunRecorder
from genbench.harness.spec import Run
from genbench.harness.store import (COMPLETE_METRIC, DIVERGED_METRIC, RESULTS_FILE, START_METRIC, check_writable,
                                   completed_run_ids, kept_message, unwritable_message)
from genbench.metrics import EvalContext, applicable_metrics
from genbench.metrics.monitor import quality_probe
from genbench.models import build_model
from genbench.train import TRAINERS, TrainContext, distributed
from genbench.train.base import TrainOutcome
from genbench.train.stability import OVER_TRAINING
from genbench.values import declare_values

SAMPLE_REPEATS = 5  # timed sampling repeats (after one warm-up) for samples/s
GRID_SAMPLES = 64  # samples in the artefact grid
RECON_EXAMPLES = 32  # test examples in the reconstruction grid
WAVEFORM_SIGNALS = 4  # generated and test signals in the waveform figure (sequences)

# What the runner records besides the metrics' values (genbench/values.py): compare and the
# report read directions, units and conditions from here.
PHASES = ("load_data", "build", "train", "fit_sampler", "evaluate", "sample", "artefacts")  # time/<phase>
declare_values("runner", {
    "perf/train_throughput": ("higher", "examples/s", "training examples per second: batch size / median step "
                                                      "time after the warm-up steps"),
    "perf/sample_throughput": ("higher", "samples/s", "samples per second of the default sampler: eval batch / "
                                                      "median batch time after a warm-up"),
    "perf/peak_memory": ("lower", "bytes", "peak memory of the run (build, training, evaluation, sampling)"),
    **{f"time/{phase}": ("lower", "s", f"wall time of the run's {phase} phase") for phase in PHASES},
    COMPLETE_METRIC: ("neither", "bool", "marker: the attempt finished; config, data hash and artefacts inside"),
    DIVERGED_METRIC: ("lower", "bool", "1 when training stopped at a non-finite loss or gradient"),
    START_METRIC: ("neither", "event", "marker: an attempt started; it carries the fields shared by its records"),
    "train/skipped_steps": ("lower", "steps", "steps the fp16 grad scaler skipped for inf/NaN gradients"),
    "train/loss": ("lower", "*", "the training objective at a step (a training curve)"),
    "train/grad_norm*": ("neither", "norm", "gradient norm at a step, before clipping (a training curve)"),
    "train/*": ("neither", "*", "a scalar the trainer logs at a step: loss terms, schedules (a training curve)"),
}, conditions=("method", "measured", "scope", "batch", "batch_size", "warmup_steps", "distributed"),
   outcomes=("step_seconds", "batch_seconds", "at_step", "reason", "artefacts", "config", "kernel_backends", "parameters",
             "dataset", "process_peak_bytes", "baseline_bytes"))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class DatasetCache:
    """Loads each dataset spec once per process (suites reuse them across runs)."""

    def __init__(self):
        self._cache: dict[str, Dataset] = {}

    def get(self, spec: str) -> Dataset:
        if spec not in self._cache:
            self._cache[spec] = load_dataset(spec)
        return self._cache[spec]


def run_all(runs: list[Run], out_dir: Path, progress: bool = True,
            echo: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
            shard: tuple[int, int] | None = None) -> None:
    """Execute every run not already complete in out_dir/results.jsonl, holding the
    folder's lock (genbench/harness/lock.py; `shard` = this process's --shard I/N)."""
    check_writable(out_dir)  # an unwritable or full folder fails now, before any training
    # under torchrun: join the process group, refuse non-DDP runs
    with distributed.session(runs), contextlib.ExitStack() as held:
        main = distributed.is_main()  # rank 0 alone locks, reads and writes the results
        results = out_dir / RESULTS_FILE
        done = distributed.broadcast_object(claim_folder(held, out_dir, shard) if main else None)
        if isinstance(done, GenbenchError):  # raised on every rank: none waits for rank 0 forever
            raise done
        echo = echo if main else (lambda s: None)
        datasets = DatasetCache()
        for i, run in enumerate(runs, 1):
            name = f"[{i}/{len(runs)}] {run.model_label} / {run.objective_label} / {run.config.dataset} / seed {run.config.seed}"
            if run.run_id in done:
                echo(f"{name}: complete in {results}, skipped")
                continue
            echo(f"{name}: running")
            try:
                status = execute_run(run, out_dir, datasets, progress and main)
            except OSError as exc:  # a full disk under an artefact or checkpoint, not only the records
                if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                    raise
                raise GenbenchError(unwritable_message(out_dir, exc, kept_message(results))) from None
            distributed.barrier()  # the other ranks wait here while rank 0 evaluates and records
            echo(f"{name}: {status}")


def claim_folder(held: contextlib.ExitStack, out_dir: Path, shard: tuple[int, int] | None) -> set[str] | GenbenchError:
    """Rank 0: lock `out_dir` (until `held` closes) and read its completed runs. A refusal or
    a corrupt results file is returned, not raised, so that every rank can raise it."""
    try:
        held.enter_context(folder_lock(out_dir, shard))
        return completed_run_ids(out_dir)  # results.jsonl.gz (committed) and results.jsonl
    except GenbenchError as exc:
        return exc


def shard_runs(runs: list[Run], index: int, count: int) -> list[Run]:
    """Shard `index` of `count` (--shard I/N): the runs at positions index, index + count, ...
    of the sorted run_ids, in suite order. A deterministic split by run_id, independent of
    the suite's order: N processes with shards 0..N-1 do every run exactly once, and a
    rerun of a shard skips its completed runs as any rerun does."""
    if not 0 <= index < count:
        raise ConfigError(f"--shard {index}/{count}: the shard index must be in 0..{count - 1}.")
    mine = set(sorted(run.run_id for run in runs)[index::count])
    return [run for run in runs if run.run_id in mine]


def execute_run(run: Run, out_dir: Path, datasets: DatasetCache, progress: bool = True) -> str:
    cfg, device = run.config, run.device
    phases: dict[str, float] = {}
    with measure.timed(device, phases, "load_data"):
        data = datasets.get(cfg.dataset)
    seed_everything(cfg.seed)
    memory = measure.PeakMemory(device)
    memory.reset()
    with measure.timed(device, phases, "build"):
        model = build_model(run.model_spec, run.model_options, data.info, cfg.backend, run.objective).to(device)
    if not distributed.is_main():  # under torchrun: train this rank's shards; no records, no evaluation
        outcome = TRAINERS[run.model_spec.trainer].train(train_context(run, model, data, None, None, False, None))
        return "diverged" if outcome.diverged else "done"
    backends = model.kernel_backends()
    recorder = RunRecorder(run, out_dir / RESULTS_FILE, backend_label(backends))
    run_dir = out_dir / "runs" / run.run_id
    run_dir.mkdir(parents=True, exist_ok=True)

    def log(step: int, scalars: dict[str, float]) -> None:
        for key, value in scalars.items():
            recorder.emit(f"train/{key}", value, "norm" if "grad_norm" in key else "loss", step)
        recorder.flush()

    trainer = TRAINERS[run.model_spec.trainer]
    ctx = train_context(run, model, data, log, recorder.emit, progress, run_dir)
    with measure.timed(device, phases, "train"):
        outcome = trainer.train(ctx)
    record_training(recorder, outcome, cfg)
    artefact_paths: dict[str, str] = {}
    if not outcome.diverged:
        artefact_paths = evaluate(run, model, data, recorder, phases, run_dir, out_dir)
    record_memory_and_phases(recorder, memory, phases)
    recorder.emit(DIVERGED_METRIC, float(outcome.diverged), "bool", None,
                  at_step=outcome.diverged_step, reason=outcome.diverged_reason)
    recorder.emit(COMPLETE_METRIC, 1.0, "bool", None, artefacts=artefact_paths,
                  kernel_backends=backends, dataset=data.provenance(), config=run_snapshot(run),
                  distributed=distributed.describe(), parameters=parameter_counts(model))
    recorder.flush()
    return f"diverged at step {outcome.diverged_step}: {outcome.diverged_reason}" if outcome.diverged else "done"


def parameter_counts(model) -> dict[str, int]:
    """Trainable parameters: in all, and per top-level submodule (generator, discriminator, ...)."""
    counts = {name: sum(p.numel() for p in child.parameters() if p.requires_grad)
              for name, child in model.named_children()}
    return {"total": sum(p.numel() for p in model.parameters() if p.requires_grad),
            **{name: n for name, n in counts.items() if n}}


def train_context(run: Run, model, data: Dataset, log, emit, progress: bool, run_dir) -> TrainContext:
    """The trainer's context; `log`/`emit` None (the other ranks under torchrun) records nothing."""
    cfg, device = run.config, run.device
    emit = emit or (lambda *args, **provenance: None)
    return TrainContext(model, run.objective, run.objective_options, run.trainer_options, data, cfg, device,
                        torch.Generator(device=device).manual_seed(cfg.seed), log or (lambda step, scalars: None),
                        emit, progress, run_dir, quality_probe(data, device, cfg.seed, emit))


def record_training(recorder: RunRecorder, outcome: TrainOutcome, cfg) -> None:
    timed_steps = outcome.step_seconds[cfg.warmup_steps:]
    if timed_steps:
        # Every step's batch holds exactly batch_size examples: a larger batch than the training
        # split is refused before training, never clipped (genbench.train.batches.check_batch_size).
        rate, q = measure.median_rate(timed_steps, cfg.batch_size)
        recorder.emit("perf/train_throughput", rate, "examples/s", None, step_seconds=q,
                      warmup_steps=cfg.warmup_steps, batch_size=cfg.batch_size,
                      method="examples per step (batch_size, never clipped) / median step time (synchronised; "
                      "under DDP the global batch and the slowest rank's step)", distributed=distributed.describe())
    if outcome.skipped_steps:
        recorder.emit("train/skipped_steps", outcome.skipped_steps, "steps", None,
                      reason="fp16 grad scaler skipped steps with inf/NaN gradients")


def evaluate(run: Run, model, data: Dataset, recorder: RunRecorder, phases: dict[str, float],
             run_dir: Path, out_dir: Path) -> dict[str, str]:
    """Metrics, sampling throughput and artefacts of a trained model."""
    device, cfg = run.device, run.config
    model.eval()
    if model.capabilities.prepares_sampling:
        with measure.timed(device, phases, "fit_sampler"):
            model.prepare_sampling(data.train.x.to(device))
    ctx = EvalContext(model, data, device, cfg.eval_batch, seed=cfg.seed, eval_samples=cfg.eval_samples,
                      iwae_k=cfg.iwae_k, feature_extractor=cfg.feature_extractor,
                      feature_weights=cfg.feature_weights)
    with measure.timed(device, phases, "evaluate"), torch.autocast(
        device.type, enabled=False
    ):
        for metric in applicable_metrics(model, data.info):
            try:
                values = metric.evaluate(ctx)
            except ValueError as exc:  # e.g. NaN samples: the metric failed for this run, say so
                recorder.emit(f"{metric.name}/failed", None, "error", None, metric_fn=metric.name, error=str(exc))
                continue
            for mv in values:
                recorder.emit(mv.metric, mv.value, mv.unit, None, metric_fn=metric.name, **mv.provenance)
    with measure.timed(device, phases, "sample"):
        rate, q = sampling_throughput(model, cfg.eval_batch, device, cfg.seed)
    recorder.emit("perf/sample_throughput", rate, "samples/s", None, batch=cfg.eval_batch,
                  batch_seconds=q, method=f"median of {SAMPLE_REPEATS} batches after 1 warm-up")
    with measure.timed(device, phases, "artefacts"):
        paths = write_artefacts(model, data, run_dir, cfg.seed, device)
    return {k: str(p.relative_to(out_dir)) for k, p in paths.items()}


@torch.no_grad()
def sampling_throughput(model, batch: int, device: torch.device, seed: int):
    generator = torch.Generator(device=device).manual_seed(seed)
    model.sample(batch, generator)  # warm-up
    seconds = []
    for _ in range(SAMPLE_REPEATS):
        timing: dict[str, float] = {}
        with measure.timed(device, timing, "t"):
            model.sample(batch, generator)
        seconds.append(timing["t"])
    return measure.median_rate(seconds, batch)


@torch.no_grad()
def write_artefacts(model, data: Dataset, run_dir: Path, seed: int, device: torch.device) -> dict[str, Path]:
    generator = torch.Generator(device=device).manual_seed(seed)
    if data.info.kind == "points":  # a scatter shows the distribution: draw from p(x|z)
        samples = model.sample(2000, generator, draw="sample")
        paths = {"samples": figures.save_points(samples, data.test.x, run_dir / "samples.png",
                                                  "2,000 draws x ~ p(x|z) vs test data")}
    elif data.info.kind == "sequence":  # line plots of draws (as for points), above test signals
        samples = model.sample(WAVEFORM_SIGNALS, generator, draw="sample")
        rows = [("generated", samples), ("test data", data.test.x[:WAVEFORM_SIGNALS])]
        paths = {"samples": figures.save_waveforms(rows, run_dir / "samples.png",
                                                     f"{WAVEFORM_SIGNALS} samples vs {WAVEFORM_SIGNALS} test signals")}
    else:
        samples = model.sample(GRID_SAMPLES, generator)  # image grids show the decoder mean
        paths = {"samples": figures.save_image_grid(samples, run_dir / "samples.png", columns=8)}
    if model.capabilities.reconstructs and data.info.kind == "image":
        x = data.test.x[:RECON_EXAMPLES].to(device)
        recon = model.likelihood.mean(model.reconstruct_output(x))
        paths["reconstructions"] = figures.save_reconstruction_grid(x, recon, run_dir / "reconstructions.png")
    if (run_dir / OVER_TRAINING).is_file():  # written by the adversarial trainer's monitor
        paths["samples_over_training"] = run_dir / OVER_TRAINING
    if model.capabilities.latent_space and data.info.kind == "image":
        paths.update(figures.latent_figures(model, data.test.x.to(device), run_dir))
    if model.capabilities.figures:
        paths.update(model.figures(run_dir, generator))
    return paths


def record_memory_and_phases(recorder: RunRecorder, memory: measure.PeakMemory, phases: dict[str, float]) -> None:
    recorder.emit("perf/peak_memory", memory.peak_bytes(), "bytes", None, **memory.provenance(),
                  scope="model build, training, evaluation and sampling of this run")
    for phase, seconds in phases.items():
        recorder.emit(f"time/{phase}", seconds, "s", None)


def backend_label(backends: dict[str, str]) -> str:
    """'none' without kernel ops; the backend when all ops ran one; else 'op=backend,...'."""
    if not backends:
        return "none"
    values = set(backends.values())
    if len(values) == 1:
        return values.pop()
    return ",".join(f"{op}={b}" for op, b in sorted(backends.items()))


def run_snapshot(run: Run) -> dict:
    return {
        "run": dataclasses.asdict(run.config),
        "model_options": dataclasses.asdict(run.model_options),
        "objective_options": dataclasses.asdict(run.objective_options),
        "trainer_options": dataclasses.asdict(run.trainer_options),
        "device": str(run.device),
    }
