"""Model registration: what the harness needs to know to build and train a model.

A model is an nn.Module built as `cls(options, data_info, backend, objective)`, where
`backend` is the kernel backend requested for the run ("auto", "triton", "torch") and
`objective` the run's objective (a GAN's discriminator head depends on its loss; other
families ignore it). Capabilities the
harness and metrics use, when a model has them:
  likelihood                    Likelihood: p(x|z) and its conventions
  reconstruct_output(x) -> out  decoder output for a deterministic encoding of x
  elbo_terms(x, gen, ...)       per-example (recon_nll, kl, kl_objective) for VAEs
  prepare_sampling(train_x)     called once after training, before sampling
  sample(n, generator, draw)    n samples in the data's range: the decoder mean
                                (draw="mean") or draws from p(x|z) (draw="sample")
  kernel_backends() -> dict     op name -> resolved backend that ran
  importance_log_weights(x, k, generator) -> (k, B)
                                log p(x, z_i) - log q(z_i | x): the IWAE estimator
  variational_bound_nll(x) -> (B,)  an upper bound on -log p(x) in nats (no sampling)
  representation(x) -> (B, d)   the deterministic code the representation metrics score
                                (disentanglement, probes); `representation_kind` says
                                what it is: "gaussian-mean" (mean of a Gaussian q(z|x):
                                active units apply), "code" (a deterministic code),
                                "categorical-probs", "pre-quantisation"
  encode_latent(x) -> z, decode_latent(z) -> images in the data range
                                for latent traversal and interpolation figures
  figures(run_dir, generator) -> dict  extra model-specific artefacts
  sample_description: str       what sample() returns, where "decoder mean of p(x|z)" is wrong
  nominal_likelihood: bool      True when `likelihood` only serves pixel-space reconstruction
                                error (VAE-GAN): no reconstruction NLL is reported
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from genbench.errors import ConfigError
from genbench.registry import MODELS

DRAWS = ("mean", "sample")  # what `sample(..., draw=)` takes: the decoder mean or a draw


def check_draw(draw: str) -> None:
    if draw not in DRAWS:
        raise ConfigError(f"draw must be one of {', '.join(DRAWS)}; got {draw!r}.")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str  # "autoencoder", "vae", ... : which objectives and trainer apply
    cls: type  # nn.Module subclass, built as cls(options, data_info, backend, objective)
    options: type  # options dataclass
    default_objective: str
    # kernel ops the model calls (their backends are recorded): a tuple, or a function of
    # the model's options where the architecture decides (an MLP has no convolutions)
    kernel_ops: tuple[str, ...] | Callable[[Any], tuple[str, ...]]
    summary: str
    trainer: str = "single"  # key in genbench.train.TRAINERS

    def ops(self, options: Any) -> tuple[str, ...]:
        """The kernel ops a model built with `options` calls."""
        return self.kernel_ops(options) if callable(self.kernel_ops) else self.kernel_ops


def register_model(name: str, family: str, options: type, default_objective: str,
                   summary: str, kernel_ops: tuple[str, ...] | Callable[[Any], tuple[str, ...]] = (),
                   trainer: str = "single"):
    def wrap(cls):
        MODELS.register(name, ModelSpec(name, family, cls, options, default_objective, kernel_ops, summary, trainer))
        return cls

    return wrap


def build_model(spec: ModelSpec, options: Any, data_info: Any, backend: str, objective: Any = None):
    return spec.cls(options, data_info, backend, objective)


@contextlib.contextmanager
def evaluating(module: nn.Module):
    """module in eval mode for the block (dropout off), its mode restored after."""
    was = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was)
