"""The recipes of docs/extending.md, followed: a new model, objective, GAN loss, dataset and
kernel op, each defined here exactly as its recipe says, registered for one test (and
unregistered after it, so no other test sees it), then used through the public paths:
`genbench list`, a short run through the harness (the same path as `genbench run`), and for
the kernel op the backend dispatch. The metric recipe is followed by
tests/report/test_new_metric.py."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from torch import nn

from genbench.cli import main
from genbench.errors import ConfigError
from genbench.harness.runner import run_all
from genbench.harness.spec import resolve_all, run_config
from genbench.harness.store import completed_records, read_records
from genbench.catalog import load_builtins
from genbench.registry import DATASETS, KERNELS, LOSSES, MODELS

load_builtins()  # the built-in entries first, as the CLI and the harness see them


def short_run(tmp_path, **entry) -> dict[str, dict]:
    """One run of a few steps on the CPU through the harness; its completed records by metric
    (the last record of each name)."""
    config = {"device": "cpu", "steps": 3, "batch_size": 32, "log_every": 1, "warmup_steps": 1,
              "eval_samples": 200, "eval_batch": 200, **entry}
    run_all(resolve_all([run_config(config, "test")], "test"), tmp_path, progress=False)
    return {r["metric"]: r for r in completed_records(read_records(tmp_path))}


def listed(kind: str, capsys) -> str:
    assert main(["list", kind, "-v"]) == 0
    return capsys.readouterr().out


@pytest.fixture
def registered():
    """Names registered by a test, (registry, name) pairs, removed after it."""
    added: list = []
    yield added
    for registry, name in added:
        registry.unregister(name)


# ----------------------------------------------------------------------------- a model


def test_a_new_model(tmp_path, capsys, registered):
    from genbench.models.base import Capabilities, GenerativeModel, register_model
    from genbench.models.likelihood import Likelihood

    @dataclass(frozen=True)
    class LinearAEOptions:
        latent_dim: int = 2  # size of the code z

        def __post_init__(self):
            if self.latent_dim < 1:
                raise ValueError("latent_dim must be >= 1")

    @register_model("linear-ae", "autoencoder", LinearAEOptions, "recon",
                    "linear autoencoder; samples decode z ~ N(0, I)")
    class LinearAE(GenerativeModel):
        capabilities = Capabilities(samples=True, likelihood=True, reconstructs=True)

        def __init__(self, options: LinearAEOptions, data_info, backend: str = "auto", objective=None):
            super().__init__()
            self.shape = data_info.shape  # one example's shape
            self.likelihood = Likelihood("gaussian", 1.0, quantised=data_info.kind == "image")
            self.encoder = nn.Linear(data_info.dims, options.latent_dim)
            self.decoder = nn.Linear(options.latent_dim, data_info.dims)

        def kernel_backends(self) -> dict[str, str]:
            return {}  # calls no kernel op

        def reconstruct_output(self, x: torch.Tensor) -> torch.Tensor:
            return self.decoder(self.encoder(x.flatten(1))).view(-1, *self.shape)

        @torch.no_grad()
        def sample(self, n: int, generator=None, draw: str = "mean") -> torch.Tensor:
            z = torch.randn(n, self.decoder.in_features, generator=generator, device=self.decoder.weight.device)
            return self.likelihood.decode(self.decoder(z).view(n, *self.shape), draw, generator)

    registered.append((MODELS, "linear-ae"))

    assert "linear-ae\tlinear autoencoder" in listed("models", capsys)
    last = short_run(tmp_path, model="linear-ae", dataset="toy2d-ring8?n_train=512&n_test=256",
                     model_options={"latent_dim": 2})
    assert last["run/diverged"]["value"] == 0.0
    assert last["train/loss"]["step"] == 3 and last["train/loss"]["value"] is not None
    assert last["run/complete"]["model"] == "linear-ae" and last["run/complete"]["objective"] == "recon"
    assert last["run/complete"]["backend"] == "none"
    # what its capabilities declare decides its metrics: samples on a mixture, reconstructions
    assert last["coverage/modes_captured"]["value"] is not None
    assert last["test/recon_mse"]["value"] > 0


def test_a_model_cannot_declare_what_it_lacks(registered):
    from genbench.harness.spec import resolve
    from genbench.models import build_model
    from genbench.models.base import Capabilities, GenerativeModel, register_model

    @dataclass(frozen=True)
    class NoOptions:
        pass

    @register_model("test-bragging", "autoencoder", NoOptions, "recon", "declares samples, has no sample()")
    class Bragging(GenerativeModel):
        capabilities = Capabilities(samples=True)

        def __init__(self, options, data_info, backend="auto", objective=None):
            super().__init__()

    registered.append((MODELS, "test-bragging"))
    run = resolve(run_config({"model": "test-bragging", "device": "cpu"}, "test"))
    with pytest.raises(TypeError, match="need sample"):
        build_model(run.model_spec, run.model_options, None, "auto")


# ----------------------------------------------------------------------------- a loss


def test_a_new_objective(tmp_path, capsys, registered):
    from genbench.objectives.base import register_objective

    @dataclass(frozen=True)
    class L1ReconOptions:
        weight: float = 1.0  # scale of the loss

        def __post_init__(self):
            if self.weight <= 0:
                raise ValueError("weight must be > 0")

    @register_objective("l1-recon", "autoencoder", L1ReconOptions, "mean absolute reconstruction error")
    def l1_recon(model, x, options, generator, step=None):
        target = model.likelihood.prepare(x, generator)
        error = (model.likelihood.mean(model.reconstruct_output(target)) - target).abs().flatten(1).sum(1)  # (B,)
        return {"loss": options.weight * error.mean(), "l1": error.mean().detach()}

    registered.append((LOSSES, "l1-recon"))

    assert "l1-recon\tmean absolute reconstruction error" in listed("losses", capsys)
    last = short_run(tmp_path, model="ae", objective="l1-recon", objective_options={"weight": 0.5},
                     dataset="toy2d-ring8?n_train=512&n_test=256")
    assert last["run/diverged"]["value"] == 0.0
    assert last["run/complete"]["objective"] == "l1-recon[weight=0.5]"
    assert last["train/l1"]["value"] > 0  # every term it returns is logged as train/<name>
    with pytest.raises(ConfigError, match="trains autoencoder models, not vae models"):
        resolve_all([run_config({"model": "vae", "objective": "l1-recon", "device": "cpu"}, "test")])


def test_a_new_gan_loss(tmp_path, capsys, registered):
    from genbench.objectives.gan_base import GanLoss, register_gan_loss

    @dataclass(frozen=True)
    class SquaredHingeOptions:
        margin: float = 1.0  # D pushes real scores above +margin and fake ones below -margin

        def __post_init__(self):
            if self.margin <= 0:
                raise ValueError("margin must be > 0")

    def squared_hinge_discriminator(real, fake, options, state):
        d_real, d_fake = real.score.float(), fake.score.float()  # (B,) each
        loss = F.relu(options.margin - d_real).pow(2).mean() + F.relu(options.margin + d_fake).pow(2).mean()
        return {"loss": loss, "d_real": d_real.mean().detach(), "d_fake": d_fake.mean().detach()}

    def squared_hinge_generator(real, fake, options, state):
        d_fake = fake.score.float()  # real is None: this loss does not need it
        return {"loss": -d_fake.mean(), "d_fake": d_fake.mean().detach()}

    register_gan_loss(GanLoss(
        "squared-hinge", SquaredHingeOptions, squared_hinge_discriminator, squared_hinge_generator, "logit",
        "hinge GAN with squared D terms (a test of the recipe)",
    ))
    registered.append((LOSSES, "squared-hinge"))

    assert "squared-hinge\thinge GAN with squared D terms" in listed("losses", capsys)
    last = short_run(tmp_path, model="gan", objective="squared-hinge", objective_options={"margin": 0.5},
                     dataset="toy2d-ring8?n_train=512&n_test=256",
                     model_options={"arch": "mlp", "width": 32, "latent_dim": 2},
                     trainer_options={"monitor_samples": 100})
    assert last["run/diverged"]["value"] == 0.0
    assert last["train/d_loss"]["value"] is not None and last["train/g_loss"]["value"] is not None
    assert last["run/complete"]["objective"].startswith("squared-hinge[margin=0.5]")
    assert "stability/failed" in last and "coverage/modes_captured" in last


# ----------------------------------------------------------------------------- a dataset


def test_a_new_dataset(tmp_path, capsys, registered):
    from genbench.data import load_dataset
    from genbench.data.base import MAX_EXAMPLES, Header, Split, register_source

    @dataclass(frozen=True)
    class SpiralOptions:
        n_train: int = 1024  # training points
        n_test: int = 256  # test points (an independent draw)
        noise: float = 0.02  # std of the Gaussian noise added to each point
        seed: int = 0  # seed of the draws

        def __post_init__(self):
            if not (1 <= self.n_train <= MAX_EXAMPLES and 1 <= self.n_test <= MAX_EXAMPLES):
                raise ValueError(f"n_train and n_test must be between 1 and {MAX_EXAMPLES:,}")
            if self.noise < 0 or self.seed < 0:
                raise ValueError("noise and seed must be >= 0")

    def probe_spiral(options: SpiralOptions, path: str | None) -> Header:
        return Header("points", options.n_train, options.n_test, (2,))

    @register_source("spiral", SpiralOptions, needs_path=False, probe=probe_spiral,
                     summary="a noisy 2-D spiral of radius 1, points")
    def load_spiral(options: SpiralOptions, path: str | None):
        generator = torch.Generator().manual_seed(options.seed)

        def draw(n: int) -> Split:
            t = torch.rand(n, generator=generator) * 3 * math.pi  # (n,) angle
            x = torch.stack([t * t.cos(), t * t.sin()], dim=1) / (3 * math.pi)  # (n, 2)
            return Split(x=(x + options.noise * torch.randn(n, 2, generator=generator)).to(torch.float32))

        train, test = draw(options.n_train), draw(options.n_test)
        facts = {"kind": "points", "classes": None, "extras": {},
                 "source": f"embedded: generated (seed {options.seed})",
                 "split": f"independent draws from seed {options.seed}"}
        return train, test, facts

    registered.append((DATASETS, "spiral"))

    assert "spiral\ta noisy 2-D spiral" in listed("datasets", capsys)
    data = load_dataset("spiral?n_train=300")
    assert (len(data.train), len(data.test), data.info.shape, data.info.kind) == (300, 256, (2,), "points")
    assert data.info.spec == "spiral?n_train=300"
    assert data.info.content_hash == load_dataset("spiral?n_train=300").info.content_hash  # deterministic
    with pytest.raises(ConfigError, match="Unknown option"):
        load_dataset("spiral?n_points=3")
    last = short_run(tmp_path, model="ae", dataset="spiral?n_train=512")
    assert last["run/diverged"]["value"] == 0.0
    recorded = last["run/complete"]["provenance"]["dataset"]
    assert recorded["dataset"] == "spiral"
    assert recorded["content_hash"] == load_dataset("spiral?n_train=512").info.content_hash
    assert last["test/recon_mse"]["value"] > 0


# ----------------------------------------------------------------------------- a kernel op


def test_a_new_kernel_op(capsys, registered):
    from genbench.kernels import KernelOp, OpExample, dispatch, example_randn, resolve_backend

    # baselines/scale_shift.py: the reference, readable PyTorch
    def reference_scale_shift(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        """y = x * scale + shift, scale and shift (C,) broadcast over (N, C)."""
        return x * scale + shift

    # kernels/scale_shift.py: the public op, with backend=
    def scale_shift(x, scale, shift, *, backend: str = "auto"):
        return dispatch("scale_shift", backend, x.device)(x, scale, shift)

    def examples(dtype, device, generator):
        x = example_randn(generator, 5, 7, dtype=dtype, device=device)
        scale, shift = (example_randn(generator, 7, dtype=dtype, device=device) for _ in range(2))
        return [OpExample("plain", {"x": x, "scale": scale, "shift": shift}, ("x", "scale", "shift"))]

    KERNELS.register("scale_shift", KernelOp(
        name="scale_shift", function=scale_shift, reference=reference_scale_shift, triton=None,
        summary="y = x * scale + shift per channel", examples=examples))
    registered.append((KERNELS, "scale_shift"))

    assert "scale_shift\ty = x * scale + shift per channel" in listed("kernels", capsys)
    assert resolve_backend("scale_shift", "auto", "cpu") == "torch"
    assert resolve_backend("scale_shift", "auto", "cuda") == "torch"  # no Triton kernel yet
    assert dispatch("scale_shift", "auto", "cpu") is reference_scale_shift
    with pytest.raises(ConfigError, match="has no Triton kernel yet"):
        resolve_backend("scale_shift", "triton", "cpu")
    (example,) = examples(torch.float32, torch.device("cpu"), torch.Generator().manual_seed(0))
    kwargs = example.kwargs
    y = scale_shift(**kwargs, backend="auto")
    assert torch.equal(y, kwargs["x"] * kwargs["scale"] + kwargs["shift"])


@triton.jit
def _scale_shift_kernel(x_ptr, scale_ptr, shift_ptr, y_ptr, n, C, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    c = offs % C
    x = tl.load(x_ptr + offs, mask=mask)
    y = x * tl.load(scale_ptr + c, mask=mask) + tl.load(shift_ptr + c, mask=mask)
    tl.store(y_ptr + offs, y, mask=mask)


def triton_scale_shift(x, scale, shift):
    """Forward only (the recipe's autograd.Function layer is left out of this test)."""
    x, scale, shift = x.contiguous(), scale.contiguous(), shift.contiguous()
    y = torch.empty_like(x)
    _scale_shift_kernel[(triton.cdiv(x.numel(), 256),)](x, scale, shift, y, x.numel(), x.shape[-1], BLOCK=256)
    return y


@pytest.mark.skipif(not (torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"),
                    reason="needs CUDA or the Triton interpreter")
def test_a_new_kernel_op_with_a_triton_kernel(registered):
    from genbench.kernels import KernelOp, dispatch, resolve_backend

    def reference_scale_shift(x, scale, shift):
        return x * scale + shift

    def scale_shift(x, scale, shift, *, backend: str = "auto"):
        return dispatch("scale_shift", backend, x.device)(x, scale, shift)

    KERNELS.register("scale_shift", KernelOp(
        name="scale_shift", function=scale_shift, reference=reference_scale_shift, triton=triton_scale_shift,
        summary="y = x * scale + shift per channel", examples=lambda dtype, device, generator: []))
    registered.append((KERNELS, "scale_shift"))

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_backend("scale_shift", "auto", device) == ("triton" if device.type == "cuda" else "torch")
    assert resolve_backend("scale_shift", "triton", device) == "triton"  # CPU: under TRITON_INTERPRET=1
    x, scale, shift = torch.randn(37, 5, device=device), torch.randn(5, device=device), torch.randn(5, device=device)
    torch.testing.assert_close(scale_shift(x, scale, shift, backend="triton"),
                               scale_shift(x, scale, shift, backend="torch"))


def test_registering_a_name_twice_is_refused(registered):
    from genbench.kernels import KernelOp

    op = KernelOp("test-op", lambda x, backend="auto": x, lambda x: x, None, "identity", lambda *a: [])
    KERNELS.register("test-op", op)
    registered.append((KERNELS, "test-op"))
    KERNELS.register("test-op", op)  # the same object again (a module imported twice) is fine
    with pytest.raises(ConfigError, match="already has an entry named 'test-op'"):
        KERNELS.register("test-op", KernelOp("test-op", op.function, op.reference, None, "other", op.examples))
