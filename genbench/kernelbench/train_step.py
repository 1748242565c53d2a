"""End-to-end training-step benchmark: models whose layers dispatch to the kernels,
built with backend "triton" against the same models built with backend "torch".

One call of a workload is one full training step as the harness runs it (`genbench
run`), so the figure is the harness's training throughput without its data loading:
  gan-dcgan  the DCGAN (models/gan.py, arch dcgan, width 64, BatchNorm in G and D) with
             the non-saturating loss: AdversarialStep (train/adversarial.py) -- n_critic = 1
             discriminator step, then one generator step, each drawing its own real batch,
             Adam(0.5, 0.999) per network -- on 64x64x3 synthetic images, fp32.
  vae-conv   the conv VAE (models/vae.py, arch conv, channels 32, Bernoulli p(x|z)) with
             the ELBO: train/single.py's SingleStep (autocast for bf16, loss, backward,
             global gradient norm, Adam step) on 32x32x3 synthetic images, fp32 and bf16
             (autocast, as --precision bf16).
  ddpm-unet  DDPM's U-Net (models/unet.py at its defaults: 64 channels, attention at 16x16
             and in the middle block; GroupNorm+SiLU and attention through the kernels) with
             L_simple, the same SingleStep, batch 64 on 32x32x3, fp32 and bf16.
Models are built as the runner builds them (genbench.models.build_model(spec, options,
data_info, backend, objective) after seeding torch with the run seed); the data are
uniform random 8-bit images in the harness layout ([-1, 1], N = 4 batches), on the device.

Providers: "triton" (backend="triton": every kernel op the model calls runs its Triton
kernel; CUDA, or the interpreter) and "eager" (backend="torch": the references, cuDNN for
convolutions). Mode: fwd_bwd only (one step: forward, backward, optimiser step). The
throughput is examples/s = batch size / median step time, as the harness's
perf/train_throughput counts it (a GAN step = one generator step and its discriminator
step); no bytes or FLOPs are declared. The records carry the kernel backends the model
resolved (`kernel_backends`). fp32 cases record TF32 as torch.backends.cudnn.allow_tf32
has it (cuDNN and the conv kernel follow it).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from genbench.data.base import Dataset, DatasetInfo, Split

from genbench.utils.pixels import uint8_to_images
from genbench.kernelbench.base import BENCHES, Case, OpBench, Workload

BATCH = 128
UNET_BATCH = 64  # the U-Net's step is ~10x a VAE's: a smaller batch keeps a case's timing under a few seconds
TRAIN_BATCHES = 4  # synthetic training set: this many batches of examples
SEED = 0
# variant -> (registered model, model options, run lr, trainer options)
MODELS: dict[str, tuple[str, dict[str, Any], float, dict[str, Any]]] = {
    "gan-dcgan": ("gan", {"arch": "dcgan"}, 2e-4, {}),  # Radford et al. 2016: lr 2e-4, beta1 0.5 (trainer default)
    "vae-conv": ("vae", {"arch": "conv"}, 1e-3, {}),
    "ddpm-unet": ("ddpm", {}, 2e-4, {}),  # Ho et al. 2020: lr 2e-4; the U-Net at its defaults (64 ch at 32 px)
}
PRECISIONS = {torch.float32: "fp32", torch.bfloat16: "bf16"}
BACKENDS = {"triton": "triton", "eager": "torch"}  # provider -> model backend
DO_BENCH = {"warmup": 200, "rep": 1000}  # steps of tens of ms: enough repetitions for a median
CHECK_TOLERANCE = 1e-3  # first-step losses, triton vs torch backend (fp32; IEEE in the interpreter)


def image_case(variant: str, batch: int, channels: int, size: int, dtype: torch.dtype) -> Case:
    tf32 = bool(torch.backends.cudnn.allow_tf32) if dtype == torch.float32 else None
    return Case({"B": batch, "C": channels, "H": size, "W": size}, dtype, variant, tf32)


def cases() -> list[Case]:
    return [image_case("gan-dcgan", BATCH, 3, 64, torch.float32),
            image_case("vae-conv", BATCH, 3, 32, torch.float32),
            image_case("vae-conv", BATCH, 3, 32, torch.bfloat16),
            image_case("ddpm-unet", UNET_BATCH, 3, 32, torch.float32),
            image_case("ddpm-unet", UNET_BATCH, 3, 32, torch.bfloat16)]


def examples(case: Case) -> int:
    """Examples per step: the batch size (as the harness's perf/train_throughput)."""
    return case.shape["B"]


def synthetic_images(case: Case, n: int, seed: int = SEED) -> Dataset:
    """n uniform random 8-bit images of the case's size in the harness layout (CPU tensors)."""
    c, h, w = case.shape["C"], case.shape["H"], case.shape["W"]
    u8 = torch.randint(0, 256, (n, c, h, w), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)
    x = uint8_to_images(u8)
    info = DatasetInfo(name="synthetic", spec=f"synthetic?c={c}&h={h}&w={w}&n={n}&seed={seed}", kind="image",
                       shape=(c, h, w), classes=None, content_hash=f"uniform-uint8-seed{seed}",
                       source="uniform random 8-bit levels (train_step benchmark)", split="test = first train batch")
    return Dataset(info=info, train=Split(x), test=Split(x[: case.shape["B"]]))


@dataclass
class TrainStep:
    step: Callable[[], dict[str, float]]  # one training step; returns its logged scalars
    model: torch.nn.Module
    kernel_backends: dict[str, str]  # op -> backend the model resolved


def training_step(case: Case, backend: str, device: str | torch.device = "cuda", seed: int = SEED,
                  model_options: dict[str, Any] | None = None) -> TrainStep:
    """The case's model built for `backend` ("triton", "torch", "auto") on `device`, with
    its trainer's step. model_options override the variant's (tests: a smaller width)."""
    from genbench.harness.settings import RunConfig
    from genbench.kernels import resolve_backend
    from genbench.models import build_model
    from genbench.objectives.base import objective_for
    from genbench.registry import MODELS as MODEL_SPECS
    from genbench.train import TRAINERS, TrainContext
    from genbench.utils.options import build_options

    device = torch.device(device)
    name, options, lr, trainer_values = MODELS[case.variant]
    spec = MODEL_SPECS.get(name)
    model_opts = build_options(spec.options, {**options, **(model_options or {})}, f"model {name!r}")
    objective = objective_for(spec.family, spec.default_objective)
    objective_options = build_options(objective.options, {}, f"objective {objective.name!r}")
    trainer = TRAINERS[spec.trainer]
    trainer_options = build_options(trainer.options, trainer_values, f"trainer {trainer.name!r}")
    for op in spec.ops(model_opts):  # as harness.spec.resolve: a backend that cannot run here fails now
        resolve_backend(op, backend, device)
    config = RunConfig(model=name, seed=seed, steps=10**6, batch_size=case.shape["B"], lr=lr,
                       precision=PRECISIONS[case.dtype], device=device.type, backend=backend)
    data = synthetic_images(case, TRAIN_BATCHES * case.shape["B"], seed)
    torch.manual_seed(seed)  # the runner's seed_everything: initial weights
    model = build_model(spec, model_opts, data.info, backend, objective).to(device)
    model.train()
    ctx = TrainContext(model, objective, objective_options, trainer_options, data, config, device,
                       torch.Generator(device=device).manual_seed(seed), log=lambda step, scalars: None,
                       emit=lambda *args, **kwargs: None, progress=False)
    step = {"adversarial": adversarial_step, "single": single_objective_step}[spec.trainer](ctx)
    return TrainStep(step, model, model.kernel_backends())


def adversarial_step(ctx) -> Callable[[], dict[str, float]]:
    """train_adversarial's step: n_critic discriminator steps, then one generator step
    (the periodic stability evaluation is not part of a step)."""
    from genbench.train.adversarial import AdversarialStep

    if ctx.trainer_options.ema_decay is not None:
        ctx.model.enable_ema(ctx.trainer_options.ema_decay)
    steps, counter = AdversarialStep(ctx), itertools.count(1)

    def step() -> dict[str, float]:
        i, scalars = next(counter), {}
        for _ in range(ctx.trainer_options.n_critic):
            scalars.update(steps.discriminator_step(i))
        scalars.update(steps.generator_step())
        return scalars

    return step


def single_objective_step(ctx) -> Callable[[], dict[str, float]]:
    """train.single.train_single_objective's step (its SingleStep) on the next batch."""
    from genbench.train.batches import epoch_batches
    from genbench.train.single import SingleStep

    loss_fn = lambda x, i: ctx.objective.loss(ctx.model, x, ctx.objective_options, ctx.generator, i)  # noqa: E731
    single = SingleStep(ctx.model, loss_fn, ctx.config, ctx.device)
    batches = epoch_batches(ctx.data.train.x.to(ctx.device), ctx.config.batch_size, ctx.generator)
    counter = itertools.count(1)

    def step() -> dict[str, float]:
        _, loss, grad_norm = single.backward(next(batches), next(counter))
        single.apply()
        return {"loss": loss, "grad_norm": grad_norm}

    return step


def workload(provider: str):
    def build(case: Case, device: str = "cuda") -> Workload:
        ts = training_step(case, BACKENDS[provider], device)
        ts.step()  # warm-up: autotune, cuDNN plans, Adam state
        return Workload(forward_backward=ts.step,
                        provenance={"kernel_backends": ts.kernel_backends, "model_backend": BACKENDS[provider],
                                    "model": MODELS[case.variant][0], "examples_per_step": examples(case),
                                    "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
                                    "step": "one training step as the harness runs it (forward, backward, "
                                            "optimiser step; GAN: one D and one G step)"})

    return build


# 8 px: one transposed convolution in G / the decoder (the interpreter runs each program in turn)
CHECK_CASES = (Case({"B": 2, "C": 3, "H": 8, "W": 8}, torch.float32, "gan-dcgan"),  # IEEE fp32: see check()
               Case({"B": 2, "C": 1, "H": 8, "W": 8}, torch.float32, "vae-conv"),
               Case({"B": 2, "C": 1, "H": 8, "W": 8}, torch.float32, "ddpm-unet"))
CHECK_OPTIONS = {"gan-dcgan": {"width": 8, "latent_dim": 8}, "vae-conv": {"channels": 8, "latent_dim": 4},
                 "ddpm-unet": {"channels": 8, "groups": 4, "channel_mult": (1, 2), "num_res_blocks": 1,
                               "attention_resolutions": (4,), "dropout": 0.0}}


def check() -> list[dict]:
    """Tiny models, one step each with backend triton (the interpreter on CPU) and torch
    from the same seed: the first step's losses and gradient norms must agree (relative to
    their size). It checks the dispatch end to end; the kernels' own checks are the ops'."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = []
    flags = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    try:  # IEEE fp32 on both sides (the conv kernel follows cuDNN's flag)
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        first_steps = [{b: training_step(case, b, device, model_options=CHECK_OPTIONS[case.variant]).step()
                        for b in ("triton", "torch")} for case in CHECK_CASES]
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = flags
    for case, first in zip(CHECK_CASES, first_steps):
        keys = [k for k in first["torch"] if "loss" in k or "grad_norm" in k]
        errors = [abs(first["triton"][k] - first["torch"][k]) / max(1.0, abs(first["torch"][k])) for k in keys]
        rows.append({"op": "train_step", "case": f"{case.label},{case.dtype_name}",
                     "first step |triton - torch|/max(1, |torch|)": ", ".join(
                         f"{k} {e:.1e}" for k, e in zip(keys, errors)),
                     "ok": max(errors) < CHECK_TOLERANCE})
    return rows


BENCHES.register("train_step", OpBench(
    op="train_step",
    cases=cases,
    providers={name: workload(name) for name in BACKENDS},
    bytes_moved=None,
    check=check,
    baseline_providers=("eager",),
    modes=("fwd_bwd",),
    examples=examples,
    do_bench_options=DO_BENCH,
    compiles=False,
    quick=lambda c: False,  # minutes of model autotuning: not in --quick
))
