"""Run specifications: what the user asks for, validated and resolved before anything runs.

A run is (model, objective, dataset, seed, budget in steps, options). `RunConfig` is the
user-facing form (from the CLI or a suite file); `resolve` checks every name and option
against the registries and returns a `Run` with typed options, display labels and a
`run_id` that is a hash of everything that changes the result (resume keys on it).
`resolve_all` then checks what needs the dataset's size (`check_data`: batch
size, FID sample counts) from its Header -- probed, not loaded -- so a run that would fail
after training fails before any run starts, and `--dry-run` reports it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from genbench.data.base import Header, parse_spec, probe_dataset
from genbench.errors import ConfigError
from genbench.kernels import resolve_backend
from genbench.models.base import ModelSpec
from genbench.objectives.base import Objective, objective_for
from genbench.registry import DATASETS, MODELS, load_builtins
from genbench.train import TRAINERS
from genbench.train.batches import check_batch_size
from genbench.utils.hashing import json_hash
from genbench.utils.options import build_options, non_default_options

MAX_STEPS = 10_000_000
MAX_EVAL_SAMPLES = 1_000_000
MAX_BATCH = 65_536  # eval_batch and iwae_k
SEED_LIMIT = 2**32  # numpy's global seed (seed_everything) takes 0 .. 2**32 - 1


@dataclass(frozen=True)
class RunConfig:
    model: str  # registered model name (`genbench list models`)
    dataset: str = "digits"  # dataset spec (`genbench list datasets`), e.g. "digits?size=32"
    objective: str | None = None  # registered objective; None = the model's default
    seed: int = 0  # seeds weights, batches, noise: fully determines a CPU run; 0 .. 2**32 - 1
    steps: int = 500  # training budget in optimiser steps; 1 .. MAX_STEPS
    # Training examples per step, 1 .. the training split's size: a larger one is refused
    # before training (check_data), never clipped, so throughput counts what was processed.
    batch_size: int = 64
    lr: float = 1e-3  # Adam learning rate; finite, > 0
    adam_beta1: float = 0.9  # Adam beta1; in [0, 1)
    adam_beta2: float = 0.999  # Adam beta2; in [0, 1)
    log_every: int = 10  # steps between train/* records (loss curves, gradient norms); >= 1
    warmup_steps: int = 20  # first steps left out of the training throughput; >= 0
    eval_batch: int = 256  # batch size for evaluation and sampling throughput; 1 .. MAX_BATCH
    # Generated samples for sample-quality and coverage metrics (fix per suite); 1 .. MAX_EVAL_SAMPLES,
    # and more than the extractor's feature dimensions where FID applies (check_data)
    eval_samples: int = 2500
    iwae_k: int = 64  # importance samples for the IWAE likelihood bound (latent-variable models); 1 .. MAX_BATCH
    feature_extractor: Literal["auto", "genbench", "inception-v3"] = "auto"  # auto: inception-v3 iff feature_weights
    feature_weights: str | None = None  # local InceptionV3 weights file (torch-fidelity's weights-inception-2015-12-05-6726825d.pth)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # bf16/fp16 = autocast (fp16 adds a grad scaler)
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto = cuda when available
    backend: Literal["auto", "triton", "torch"] = "auto"  # kernel backend (see genbench.kernels)
    model_options: dict[str, Any] = field(default_factory=dict)  # the model's options dataclass
    objective_options: dict[str, Any] = field(default_factory=dict)  # the objective's options
    trainer_options: dict[str, Any] = field(default_factory=dict)  # the family trainer's options (e.g. GAN n_critic)

    def __post_init__(self):
        for name in ("steps", "batch_size", "log_every", "eval_batch", "eval_samples", "iwae_k"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        for name, most in (("steps", MAX_STEPS), ("eval_batch", MAX_BATCH), ("eval_samples", MAX_EVAL_SAMPLES),
                           ("iwae_k", MAX_BATCH)):
            if getattr(self, name) > most:
                raise ValueError(f"{name} must be <= {most:,}")
        if not 0 <= self.seed < SEED_LIMIT:
            raise ValueError(f"seed must be between 0 and 2**32 - 1; got {self.seed}")
        if self.warmup_steps < 0 or not 0 < self.lr < math.inf:
            raise ValueError("warmup_steps must be >= 0 and lr a finite number > 0")
        if not (0 <= self.adam_beta1 < 1 and 0 <= self.adam_beta2 < 1):
            raise ValueError("adam_beta1 and adam_beta2 must be in [0, 1)")


@dataclass(frozen=True)
class Run:
    config: RunConfig
    suite: str | None
    model_spec: ModelSpec
    model_options: Any
    objective: Objective
    objective_options: Any
    trainer_options: Any
    device: torch.device
    run_id: str
    model_label: str  # name + non-default options, e.g. "vae[arch=conv]"
    objective_label: str  # name + non-default objective options, then {non-default trainer options}


def label(name: str, options: Any, brackets: str = "[]") -> str:
    """name plus its non-default options, e.g. vae[arch=conv]."""
    changed = non_default_options(options)
    if not changed:
        return name
    return name + brackets[0] + ",".join(f"{k}={v}" for k, v in sorted(changed.items())) + brackets[1]


def resolve_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda' was asked for but no CUDA device is visible; use --device cpu.")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def resolve(config: RunConfig, suite: str | None = None) -> Run:
    """Validate every name and option of a run; raise ConfigError/UnknownNameError."""
    load_builtins()
    spec: ModelSpec = MODELS.get(config.model)
    model_options = build_options(spec.options, config.model_options, f"model {config.model!r}")
    objective = objective_for(spec.family, config.objective or spec.default_objective)
    objective_options = build_options(objective.options, config.objective_options,
                                      f"objective {objective.name!r}")
    trainer = TRAINERS[spec.trainer]
    trainer_options = build_options(trainer.options, config.trainer_options, f"trainer {trainer.name!r}")
    if trainer.validate:
        trainer.validate(model_options, objective, trainer_options)
    DATASETS.get(parse_spec(config.dataset)[0])  # name check now; loading happens at run time
    device = resolve_device(config.device)
    if config.precision == "fp16" and device.type != "cuda":
        raise ConfigError("precision='fp16' needs CUDA (its gradient scaler); use bf16 or fp32 on the CPU.")
    check_feature_extractor(config)
    for op in spec.ops(model_options):  # a backend that cannot run here fails now, not mid-suite
        resolve_backend(op, config.backend, device)
    identity = {
        "model": spec.name, "model_options": dataclasses.asdict(model_options),
        "objective": objective.name, "objective_options": dataclasses.asdict(objective_options),
        "config": {k: v for k, v in dataclasses.asdict(config).items()
                   if k not in ("model", "objective", "model_options", "objective_options", "trainer_options",
                                "device")},
        "device": device.type,
    }
    if non_default_options(trainer_options):  # out of the hash at defaults: earlier run ids stay valid
        identity["trainer_options"] = dataclasses.asdict(trainer_options)
    objective_label = label(objective.name, objective_options) + label("", trainer_options, "{}")
    return Run(
        config=config, suite=suite, model_spec=spec, model_options=model_options,
        objective=objective, objective_options=objective_options, trainer_options=trainer_options,
        device=device, run_id=json_hash(identity), model_label=label(spec.name, model_options),
        objective_label=objective_label,
    )


def check_feature_extractor(config: RunConfig) -> None:
    """InceptionV3 needs a local weights file: say how to get one, never switch silently."""
    from genbench.metrics.extractors import INCEPTION_HELP, check_inception_file, wants_inception

    if config.feature_extractor == "genbench" and config.feature_weights:
        raise ConfigError("--feature-weights is for the inception-v3 extractor; drop it, or choose "
                          "--feature-extractor inception-v3.")
    if wants_inception(config.feature_extractor, config.feature_weights) and not (config.feature_weights and Path(config.feature_weights).is_file()):
        where = f"not found at {config.feature_weights}" if config.feature_weights else "not given"
        raise ConfigError(f"InceptionV3 weights {where}. {INCEPTION_HELP}")
    if wants_inception(config.feature_extractor, config.feature_weights):
        check_inception_file(config.feature_weights)  # a file that is not valid weights fails now, not after training


def check_data(run: Run, headers: dict[str, Header]) -> None:
    """What a run needs of its dataset's size, checked before any training (and by --dry-run)
    from its Header, probed once per spec into `headers`: the batch fits the training split,
    and FID (where it applies) gets more samples than the extractor has feature dimensions."""
    from genbench.metrics.quality import check_fid_sizes, fid_dims
    from genbench.registry import METRICS

    cfg = run.config
    if cfg.dataset not in headers:
        headers[cfg.dataset] = probe_dataset(cfg.dataset)
    header = headers[cfg.dataset]
    check_batch_size(cfg.batch_size, header.n_train, repr(cfg.dataset))
    if METRICS.get("quality").applies(run.model_spec.cls, header):  # reads the model's sample() and header.kind
        check_fid_sizes(cfg.eval_samples, header.n_train, fid_dims(cfg.feature_extractor, cfg.feature_weights),
                        "eval_samples (--eval-samples)")
    if run.model_spec.trainer == "adversarial" and header.kind == "image":  # its stability monitor's FID
        check_fid_sizes(run.trainer_options.eval_samples, header.n_train, fid_dims("genbench", None),
                        "the trainer option eval_samples (--train-set eval_samples=N)")


def resolve_all(configs: list[RunConfig], suite: str | None = None) -> list[Run]:
    runs = [resolve(c, suite) for c in configs]
    headers: dict[str, Header] = {}
    for run in runs:
        check_data(run, headers)
    seen: dict[str, int] = {}
    for i, run in enumerate(runs):
        if run.run_id in seen:
            raise ConfigError(
                f"Runs {seen[run.run_id] + 1} and {i + 1} are identical ({run.model_label}, "
                f"{run.objective_label}, {run.config.dataset}, seed {run.config.seed}); "
                "remove one or change its seed."
            )
        seen[run.run_id] = i
    return runs


def run_config(values: dict[str, Any], context: str) -> RunConfig:
    return build_options(RunConfig, values, context)
