"""Declared capabilities (genbench/models/base.py): every registered model declares exactly
what it has, a declaration that promises more is refused at build time, and the metrics
that apply to each model are the ones they were when they were found by probing methods."""

from __future__ import annotations

import functools
from dataclasses import fields

import pytest
import torch

from genbench.data import load_dataset
from genbench.metrics import applicable_metrics
from genbench.models import ModelSpec, build_model, register_model
from genbench.models.base import NLL_METHODS, Capabilities, GenerativeModel
from genbench.objectives.base import objective_for
from genbench.catalog import load_builtins
from genbench.registry import MODELS
from genbench.utils.options import build_options

load_builtins()

# The metrics that applied to each registered model (default options) on each embedded
# dataset kind before capabilities were declared, when the metrics probed for methods;
# models that refuse a dataset kind are left out.
APPLICABLE = {
    ("ae", "digits"): "c2st memorisation ms-ssim probe quality reconstruction swd",
    ("ae", "toy2d-ring8"): "coverage reconstruction",
    ("ae", "waves"): "reconstruction",
    ("ddpm", "digits"): "anomaly c2st likelihood memorisation ms-ssim quality sampler_sweep swd",
    ("ddpm", "toy2d-ring8"): "coverage likelihood sampler_sweep",
    ("ddpm", "waves"): "likelihood",
    ("gan", "digits"): "c2st memorisation ms-ssim quality swd",
    ("glow", "digits"): "anomaly c2st likelihood memorisation ms-ssim quality swd",
    ("gumbel-vae", "digits"): "anomaly c2st elbo likelihood memorisation ms-ssim probe quality reconstruction swd",
    ("gumbel-vae", "toy2d-ring8"): "coverage elbo likelihood reconstruction",
    ("gumbel-vae", "waves"): "elbo likelihood reconstruction",
    ("hvae", "digits"): "active_units anomaly c2st elbo likelihood memorisation ms-ssim probe quality "
                        "reconstruction swd",
    ("hvae", "toy2d-ring8"): "active_units coverage elbo likelihood reconstruction",
    ("hvae", "waves"): "active_units elbo likelihood reconstruction",
    ("pixelcnn", "digits"): "anomaly ar_samplers c2st likelihood memorisation ms-ssim quality swd",
    ("realnvp", "digits"): "anomaly c2st likelihood memorisation ms-ssim quality swd",
    ("sparse-ae", "digits"): "c2st memorisation ms-ssim probe quality reconstruction swd",
    ("sparse-ae", "toy2d-ring8"): "coverage reconstruction",
    ("sparse-ae", "waves"): "reconstruction",
    ("vae", "digits"): "active_units anomaly c2st elbo likelihood memorisation ms-ssim probe quality "
                       "reconstruction swd",
    ("vae", "toy2d-ring8"): "active_units coverage elbo likelihood reconstruction",
    ("vae", "waves"): "active_units elbo likelihood reconstruction",
    ("vae-gan", "digits"): "active_units c2st memorisation ms-ssim probe quality reconstruction swd",
    ("vq-vae", "digits"): "anomaly c2st codebook likelihood memorisation ms-ssim probe quality reconstruction swd",
    ("wavenet", "waves"): "ar_samplers likelihood",
}


@functools.cache
def info(dataset: str):
    return load_dataset(dataset).info


@functools.cache
def built(name: str, dataset: str):
    spec = MODELS.get(name)
    torch.manual_seed(0)
    objective = objective_for(spec.family, spec.default_objective)
    return build_model(spec, build_options(spec.options, {}, name), info(dataset), "torch", objective)


def test_every_registered_model_is_in_the_table():
    assert {name for name, _ in APPLICABLE} == set(MODELS.names())


@pytest.mark.parametrize("name, dataset", sorted(APPLICABLE))
def test_applicable_metrics_are_unchanged(name, dataset):
    metrics = [m.name for m in applicable_metrics(built(name, dataset), info(dataset))]
    assert metrics == APPLICABLE[name, dataset].split()


def has(model, member: str) -> bool:
    return getattr(model, member, None) is not None


@pytest.mark.parametrize("name", sorted(set(MODELS.names())))
def test_declarations_match_what_each_model_has(name):
    """Declared => present is build_model's check; present => declared is this test: a model
    with a capability's members that forgot to declare it would silently lose its metrics."""
    dataset = next(d for n, d in sorted(APPLICABLE) if n == name)
    model = built(name, dataset)
    caps = model.capabilities
    for f in fields(caps):
        needs = f.metadata["needs"]
        if needs:
            assert bool(getattr(caps, f.name)) == all(has(model, m) for m in needs), f.name
    assert [kind for kind, method in NLL_METHODS.items() if has(model, method)] == ([caps.nll] if caps.nll else [])


def test_the_harness_check_reads_the_class_declaration():
    """The run pre-check asks the `quality` metric about the model class, before any build."""
    from genbench.registry import METRICS

    assert METRICS.get("quality").applies(MODELS.get("gan").cls, info("digits"))


class Liar(GenerativeModel):
    capabilities = Capabilities(samples=True, likelihood=True, reconstructs=True)

    def __init__(self, options, data_info, backend, objective):
        super().__init__()
        self.likelihood = object()

    def sample(self, n, generator=None, draw="mean"):
        return torch.zeros(n, 2)


def spec_for(cls) -> ModelSpec:
    return ModelSpec("liar", "autoencoder", cls, dict, "recon", (), "a model that declares too much")


def test_a_declaration_cannot_promise_a_missing_method():
    with pytest.raises(TypeError, match="reconstruct_output"):
        build_model(spec_for(Liar), {}, None, "torch")

    class Honest(Liar):
        def reconstruct_output(self, x):
            return x

    assert build_model(spec_for(Honest), {}, None, "torch").capabilities.reconstructs


def test_ar_samplers_need_two_sampler_names():
    class OneSampler(GenerativeModel):
        capabilities = Capabilities(ar_samplers=True)
        sampler_names = ("naive",)

        def __init__(self, *args):
            super().__init__()

        def sample_with(self, n, generator, sampler):
            return torch.zeros(n, 2)

    with pytest.raises(TypeError, match="sampler_names as a tuple of at least two"):
        build_model(spec_for(OneSampler), {}, None, "torch")


def test_inconsistent_declarations_are_refused():
    with pytest.raises(ValueError, match="elbo, reconstructs .*likelihood=True"):
        Capabilities(elbo=True, reconstructs=True)
    with pytest.raises(ValueError, match="nll must be"):
        Capabilities(likelihood=True, nll="exactly")
    with pytest.raises(ValueError, match="representation must be"):
        Capabilities(representation="gaussian")
    assert Capabilities(likelihood=True, nll="iwae").members() == ("likelihood", "importance_log_weights")


def test_only_generative_models_register():
    with pytest.raises(TypeError, match="must subclass .*GenerativeModel"):
        register_model("plain-module", "autoencoder", dict, "recon", "no declaration")(torch.nn.Linear)
    assert "plain-module" not in MODELS
