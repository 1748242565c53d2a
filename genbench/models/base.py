"""Model registration and the model base class: what the harness needs to know to build,
train and evaluate a model.

A model is a GenerativeModel (an nn.Module) built as `cls(options, data_info, backend,
objective)`, where `backend` is the kernel backend requested for the run ("auto",
"triton", "torch") and `objective` the run's objective (a GAN's discriminator head
depends on its loss; other families ignore it). Every model has `kernel_backends() ->
dict` (op name -> resolved backend that ran). What else it can do -- sample, score a
likelihood, reconstruct, encode -- it declares in its class's `capabilities`
(`Capabilities`, below: the one list of capabilities, the members each needs and who
reads it); the harness, metrics and trainers read the declaration, never probe for
methods, and build_model checks that a declared capability's members exist.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, fields
from typing import Any, Callable

from torch import nn

from genbench.errors import ConfigError
from genbench.registry import MODELS

DRAWS = ("mean", "sample")  # what `sample(..., draw=)` takes: the decoder mean or a draw


def check_draw(draw: str) -> None:
    if draw not in DRAWS:
        raise ConfigError(f"draw must be one of {', '.join(DRAWS)}; got {draw!r}.")


# -- capabilities

NLL_METHODS = {  # Capabilities.nll -> the method that scores -log p(x)
    "exact": "exact_nll",
    "variational-bound": "variational_bound_nll",
    "iwae": "importance_log_weights",
}
REPRESENTATION_KINDS = ("gaussian-mean", "code", "categorical-probs", "pre-quantisation")


def capability(*needs: str, default: Any = False) -> Any:
    """A Capabilities field; `needs` are the members a model declaring it must have."""
    return field(default=default, metadata={"needs": needs})


@dataclass(frozen=True)
class Capabilities:
    """What a model can do beyond training: the one list of capabilities.

    A model class declares them, `capabilities = Capabilities(samples=True, ...)`; each
    field says what the model must then provide and who reads it. build_model checks
    the members (check_capabilities), so a declaration cannot promise what a model lacks.
    """

    # sample(n, generator, draw) -> n samples in the data's range: the decoder mean
    # (draw="mean") or draws from p(x|z) (draw="sample"). Read by the sample metrics
    # (quality, swd, ms-ssim, memorisation, c2st, coverage) and the run's pre-checks.
    samples: bool = capability("sample")
    # `likelihood` (genbench.models.likelihood): p(x|z) and the data convention of its NLL
    # (binarised, dequantised). Evaluation data are prepared by it (the test split, the
    # representation metrics' inputs); without it samples are recorded as generator output.
    likelihood: bool = capability("likelihood")
    # `likelihood` serves only pixel-space reconstruction error (VAE-GAN): the reconstruction
    # metric records no reconstruction NLL. Needs likelihood.
    nominal_likelihood: bool = capability()
    # The held-out -log p(x) estimator (the likelihood and anomaly metrics); needs likelihood:
    #   "exact"              exact_nll(x) -> (B,) nats            flows, autoregressive models
    #   "variational-bound"  variational_bound_nll(x) -> (B,)     diffusion, VQ-VAE (an upper bound)
    #   "iwae"               importance_log_weights(x, k, generator) -> (k, B)
    #                        log p(x, z_i) - log q(z_i | x): the IWAE bound (latent-variable models)
    nll: str | None = capability(default=None)
    # elbo_terms(x, generator, ...) -> per-example (recon_nll, kl, kl_objective) in nats: the
    # elbo metric. Needs likelihood.
    elbo: bool = capability("elbo_terms")
    # reconstruct_output(x) -> decoder output for a deterministic encoding of x: the
    # reconstruction metric and the reconstruction grid. Needs likelihood.
    reconstructs: bool = capability("reconstruct_output")
    # prepare_sampling(train_x): called once by the harness after training, before
    # evaluation and sampling (e.g. fit a prior over codes).
    prepares_sampling: bool = capability("prepare_sampling")
    # encode_latent(x) -> z, decode_latent(z) -> images in the data range: latent
    # interpolation and traversal figures (image data).
    latent_space: bool = capability("encode_latent", "decode_latent")
    # representation(x) -> (B, d), the deterministic code the representation metrics score
    # (disentanglement, probe); its kind: "gaussian-mean" (the mean of a Gaussian q(z|x):
    # active_units applies too), "code" (a deterministic code), "categorical-probs" (no
    # latent traversal figure), "pre-quantisation" (a VQ encoder's output).
    representation: str | None = capability("representation", default=None)
    # code_indices(x) -> (B, M) code per position, codebook_size (K), revived_total (codes
    # revived in training): the codebook metric.
    codebook: bool = capability("code_indices", "codebook_size", "revived_total")
    # sample_with(n, generator, sampler, steps, eta, variance), an int `timesteps` (T) and
    # `sampling_weights` (a sentence: which weights sample_with uses): the sampler sweep.
    step_samplers: bool = capability("sample_with", "timesteps", "sampling_weights")
    # sample_with(n, generator, sampler) for each of `sampler_names` (a tuple of at least
    # two, the reference first), identical samples for one generator: the ar_samplers metric.
    ar_samplers: bool = capability("sample_with", "sampler_names")
    # update_ema(): the trainer calls it after every optimiser step (a weight EMA for sampling).
    ema: bool = capability("update_ema")
    # figures(run_dir, generator) -> {name: path}: model-specific artefacts the harness adds.
    figures: bool = capability("figures")

    def __post_init__(self):
        if self.nll not in (None, *NLL_METHODS):
            raise ValueError(f"nll must be None or one of {', '.join(NLL_METHODS)}; got {self.nll!r}")
        if self.representation not in (None, *REPRESENTATION_KINDS):
            raise ValueError(f"representation must be None or one of {', '.join(REPRESENTATION_KINDS)}; "
                             f"got {self.representation!r}")
        scored = [name for name in ("nominal_likelihood", "nll", "elbo", "reconstructs") if getattr(self, name)]
        if scored and not self.likelihood:
            raise ValueError(f"{', '.join(scored)} score data under the model's likelihood: declare likelihood=True")

    def members(self) -> tuple[str, ...]:
        """The attributes and methods a model declaring these capabilities must have."""
        needs = [m for f in fields(self) if getattr(self, f.name) for m in f.metadata["needs"]]
        return tuple(dict.fromkeys(needs + ([NLL_METHODS[self.nll]] if self.nll else [])))


class GenerativeModel(nn.Module):
    """The base class of every registered model: its declared capabilities, and the two
    descriptive attributes the harness reads, with their defaults."""

    capabilities = Capabilities()  # what this model can do (see Capabilities)
    # p(x | y): training batches, the NLL and sampling take class labels (set per instance
    # from the model's options; the anomaly metric leaves such models out)
    class_conditional: bool = False
    # what sample() returns, for the sample records; None: "decoder mean of p(x|z)" (images)
    # or "draws from p(x|z)" with a likelihood, "generator output" without
    sample_description: str | None = None

    def check_capabilities(self) -> None:
        """TypeError naming what the declared capabilities need and the model lacks."""
        caps = self.capabilities
        missing = [m for m in caps.members() if getattr(self, m, None) is None]
        if caps.step_samplers and not isinstance(getattr(self, "timesteps", None), int):
            missing.append("timesteps as an int")
        names = getattr(self, "sampler_names", None)
        if caps.ar_samplers and not (isinstance(names, tuple) and len(names) >= 2):
            missing.append("sampler_names as a tuple of at least two")
        if missing:
            raise TypeError(f"{type(self).__name__}'s declared capabilities need {', '.join(missing)}, which it "
                            "lacks: provide them, or declare less in its `capabilities`.")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str  # "autoencoder", "vae", ... : which objectives and trainer apply
    cls: type  # GenerativeModel subclass, built as cls(options, data_info, backend, objective)
    options: type  # options dataclass
    default_objective: str
    # kernel ops the model calls (their backends are recorded): a tuple, or a function of
    # the model's options where the architecture decides (an MLP has no convolutions)
    kernel_ops: tuple[str, ...] | Callable[[Any], tuple[str, ...]]
    summary: str
    trainer: str = "single"  # name in the TRAINERS registry (`genbench list trainers`)
    # Why a training step couples the examples of a batch beyond a per-example mean, so that
    # N shards do not add up to the global batch (such runs are refused under torchrun,
    # genbench/train/distributed.py); None when it does not.
    batch_coupled: str | None = None

    def ops(self, options: Any) -> tuple[str, ...]:
        """The kernel ops a model built with `options` calls."""
        return self.kernel_ops(options) if callable(self.kernel_ops) else self.kernel_ops


def register_model(name: str, family: str, options: type, default_objective: str,
                   summary: str, kernel_ops: tuple[str, ...] | Callable[[Any], tuple[str, ...]] = (),
                   trainer: str = "single", batch_coupled: str | None = None):
    def wrap(cls):
        if not (isinstance(cls, type) and issubclass(cls, GenerativeModel)):
            raise TypeError(f"model {name!r}: {cls!r} must subclass genbench.models.base.GenerativeModel "
                            "(it declares the model's capabilities)")
        MODELS.register(name, ModelSpec(name, family, cls, options, default_objective, kernel_ops, summary, trainer,
                                        batch_coupled))
        return cls

    return wrap


def build_model(spec: ModelSpec, options: Any, data_info: Any, backend: str, objective: Any = None):
    """The model, checked to have what its capabilities declare (TypeError otherwise)."""
    model = spec.cls(options, data_info, backend, objective)
    model.check_capabilities()
    return model


@contextlib.contextmanager
def evaluating(module: nn.Module):
    """module in eval mode for the block (dropout off), its mode restored after."""
    was = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was)
