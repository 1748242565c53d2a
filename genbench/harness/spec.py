"""Run specifications: what the user asks for, validated and resolved before anything runs.

A run is (model, objective, dataset, seed, budget in steps, options). `RunConfig`
(settings.py, where every run setting is declared) is the user-facing form, from the
command line or a suite file; `resolve` checks every name and option against the
registries and returns a `Run` with typed options, display labels and a `run_id` that is a
hash of everything that changes the result (resume keys on it). `resolve_all` -- the one
path for suite files and ad-hoc runs -- resolves every run, checks what needs the
dataset's size (`check_data`: batch size, FID sample counts) from its Header -- probed,
not loaded -- and refuses duplicates, so a run that would fail after training fails
before any run starts, and `--dry-run` reports it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from genbench.data.base import Header, parse_spec, probe_dataset
from genbench.errors import ConfigError, GenbenchError
from genbench.harness.settings import RunConfig, run_config  # noqa: F401  (run_config: resolve_all's usual input)
from genbench.kernels import resolve_backend
from genbench.metrics.extractors import INCEPTION_HELP, check_inception_file, wants_inception
from genbench.metrics.quality import check_fid_sizes, fid_dims
from genbench.models.base import ModelSpec
from genbench.objectives.base import Objective, objective_for
from genbench.registry import DATASETS, METRICS, MODELS
from genbench.train import TRAINERS
from genbench.train.batches import check_batch_size
from genbench.utils.hashing import json_hash
from genbench.utils.options import build_options, non_default_options


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
    cfg = run.config
    if cfg.dataset not in headers:
        headers[cfg.dataset] = probe_dataset(cfg.dataset)
    header = headers[cfg.dataset]
    check_batch_size(cfg.batch_size, header.n_train, repr(cfg.dataset))
    pack = getattr(run.model_options, "pack", 1)  # PacGAN: D scores groups of `pack` samples
    if cfg.batch_size % pack:
        raise ConfigError(f"pack={pack} groups the batch's samples for the discriminator, but batch_size "
                          f"{cfg.batch_size} is not a multiple of it: use --batch-size {cfg.batch_size // pack * pack or pack}.")
    if METRICS.get("quality").applies(run.model_spec.cls, header):  # reads the model's sample() and header.kind
        check_fid_sizes(cfg.eval_samples, header.n_train, fid_dims(cfg.feature_extractor, cfg.feature_weights),
                        "eval_samples (--eval-samples)")
    if run.model_spec.trainer == "adversarial" and header.kind == "image":  # its stability monitor's FID
        check_fid_sizes(run.trainer_options.monitor_samples, header.n_train, fid_dims("genbench", None),
                        "the trainer option monitor_samples (--train-set monitor_samples=N)")


def resolve_all(configs: list[RunConfig], suite: str | None = None, origins: list[str] | None = None,
                source: str = "") -> list[Run]:
    """Resolve every run, check what it needs of its dataset and refuse duplicates: the one
    path for suite files and ad-hoc runs. With `origins` (per config, e.g. "[[grid]] entry 2")
    and `source` ("Suite file PATH"), every message says where the failing run came from."""
    places = origins or [f"Run {i + 1}" for i in range(len(configs))]
    runs: list[Run] = []
    seen: dict[str, str] = {}  # run_id -> the place that first gave it
    headers: dict[str, Header] = {}  # each dataset probed once
    for place, config in zip(places, configs):
        run = resolve_checked(config, suite, headers, f"{source}, {place}" if origins else None)
        if run.run_id in seen:
            raise ConfigError(f"{source + ': ' if source else ''}{seen[run.run_id]} and {place} both give the run "
                              f"{run.model_label} / {run.objective_label} / {config.dataset} / seed {config.seed} "
                              "(options at their defaults count as unset); remove one, or change its seed or options.")
        seen[run.run_id] = place
        runs.append(run)
    return runs


def resolve_checked(config: RunConfig, suite: str | None, headers: dict[str, Header], where: str | None) -> Run:
    """resolve + check_data; an error names `where` the config came from (when given) and the run."""
    try:
        run = resolve(config, suite)
        check_data(run, headers)
    except GenbenchError as exc:
        if where is None:
            raise
        raise type(exc)(f"{where} ({describe_config(config)}): {exc}") from None
    return run


def describe_config(config: RunConfig) -> str:
    objective = f"objective {config.objective!r}" if config.objective else "the model's default objective"
    return f"model {config.model!r}, {objective}, dataset {config.dataset!r}, seed {config.seed}"
