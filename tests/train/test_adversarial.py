"""The adversarial trainer: every loss and option runs, conditional variants work, and
GANs learn (mode coverage on the ring, FID on digits)."""

from __future__ import annotations

import pytest
import torch

from genbench.errors import ConfigError
from genbench.harness.runner import run_all
from genbench.harness.spec import resolve_all, run_config
from genbench.harness.store import read_records
from genbench.registry import LOSSES
from genbench.utils.threads import one_thread

GAN_LOSSES = sorted(n for n in LOSSES.names() if LOSSES.get(n).family == "gan")
POINTS = {"dataset": "toy2d-ring8", "model_options": {"arch": "mlp", "width": 64, "latent_dim": 2}}
IMAGES = {"dataset": "digits", "model_options": {"width": 16, "d_norm": "none"}}


@pytest.fixture(autouse=True)
def single_thread():
    with one_thread():  # tiny networks: threads cost more than they give on 2 cores
        yield


def run(tmp_path, **entry):
    config = {"model": "gan", "device": "cpu", "steps": 4, "batch_size": 16, "eval_samples": 100,
              "log_every": 2, **entry}
    config["trainer_options"] = {"monitor_samples": 100, **config.get("trainer_options", {})}
    runs = resolve_all([run_config(config, "test")])
    run_all(runs, tmp_path, progress=False)
    records = read_records(tmp_path / "results.jsonl")
    return {r["metric"]: r for r in records}, records


@pytest.mark.parametrize("loss", GAN_LOSSES)
@pytest.mark.parametrize("data", [POINTS, IMAGES], ids=["points", "images"])
def test_every_loss_trains_on_every_kind_of_data(tmp_path, loss, data):
    last, records = run(tmp_path, objective=loss, **data)
    assert last["run/diverged"]["value"] == 0.0, last["run/diverged"]["provenance"]
    losses = [r["value"] for r in records if r["metric"] in ("train/d_loss", "train/g_loss")]
    assert losses and all(v is not None for v in losses)
    assert "stability/failed" in last


@pytest.mark.parametrize("data, name", [(POINTS, "modes_captured"), (IMAGES, "fid")], ids=["points", "images"])
def test_final_and_best_quality_carry_the_signal_they_measured(tmp_path, data, name):
    """Regression: after the quality probe moved to metrics/monitor.py, the monitor recorded a
    ring run's mode counts, negated, as stability/final_fid. The final and best values are the
    probe's own numbers under its own name."""
    last, records = run(tmp_path, **data)
    measured = [r["value"] for r in records if r["metric"] == f"stability/{name}"]
    assert measured and f"stability/final_{name}" in last and f"stability/best_{name}" in last
    other = "fid" if name == "modes_captured" else "modes_captured"
    assert f"stability/final_{other}" not in last
    assert last[f"stability/final_{name}"]["value"] == measured[-1]
    best = max(measured) if name == "modes_captured" else min(measured)
    assert last[f"stability/best_{name}"]["value"] == best


@pytest.mark.parametrize("options", [
    {"n_critic": 3}, {"lr_d": 4e-4, "lr_g": 1e-4}, {"optimizer_d": "rmsprop", "optimizer_g": "sgd"},
    {"noisy_labels": 0.2}, {"instance_noise": 0.5}, {"ema_decay": 0.9}, {"separate_batches": False},
    {"replay_buffer": 32}, {"regularizers": ["r1"]}, {"regularizers": ["r2", "gp"], "penalty_weight": 1.0},
], ids=lambda o: ",".join(o))
def test_training_options_run(tmp_path, options):
    last, _ = run(tmp_path, trainer_options=options, **POINTS)
    assert last["run/diverged"]["value"] == 0.0


def test_spherical_latent_lies_on_the_sphere():
    from genbench.data import load_dataset
    from genbench.models.gan import GAN, GanOptions, slerp

    model = GAN(GanOptions(arch="mlp", latent="spherical", latent_dim=16), load_dataset("toy2d-ring8").info,
                objective=LOSSES.get("hinge"))
    z = model.latent(5, torch.Generator().manual_seed(0))
    assert torch.allclose(z.norm(dim=1), torch.full((5,), 4.0))
    path = slerp(z[:1], z[1:2], torch.linspace(0, 1, 7)[:, None])
    assert torch.allclose(path.norm(dim=1), torch.full((7,), 4.0), atol=1e-4)  # stays on the sphere
    assert torch.allclose(path[0], z[0], atol=1e-5) and torch.allclose(path[-1], z[1], atol=1e-5)


def test_latent_figures_for_infogan_and_spherical_latent(tmp_path):
    data = {**IMAGES, "model_options": {**IMAGES["model_options"], "conditional": "infogan",
                                        "latent": "spherical", "info_categories": 3, "info_continuous": 2}}
    last, _ = run(tmp_path, **data)
    figures = last["run/complete"]["provenance"]["artefacts"]
    for name in ("slerp", "infogan_categorical", "infogan_continuous_0", "infogan_continuous_1",
                 "samples_over_training"):
        assert (tmp_path / figures[name]).stat().st_size > 100, name
    from PIL import Image

    width, height = Image.open(tmp_path / figures["infogan_categorical"]).size
    assert width < height  # 3 categories across, 8 noise rows down


@pytest.mark.parametrize("conditional", ["cgan", "acgan", "infogan"])
def test_conditional_gans_train(tmp_path, conditional):
    data = {**IMAGES, "model_options": {**IMAGES["model_options"], "conditional": conditional}}
    last, records = run(tmp_path, **data)
    assert last["run/diverged"]["value"] == 0.0
    logged = {r["metric"] for r in records}
    expected = {"cgan": "train/g_loss", "acgan": "train/g_acgan_aux", "infogan": "train/g_info_bound"}
    assert expected[conditional] in logged


@pytest.mark.parametrize("old, new", [("eval_every", "monitor_every"), ("eval_samples", "monitor_samples")])
def test_the_monitor_options_old_names_are_refused_with_the_new_ones(old, new):
    """They read as the run's own eval_samples: renamed, and the old names point to the new ones."""
    with pytest.raises(ConfigError, match=rf"^Unknown option '{old}' for trainer 'adversarial': renamed to '{new}'"):
        resolve_all([run_config({"model": "gan", "device": "cpu", "trainer_options": {old: 100}}, "test")])
    (run_,) = resolve_all([run_config({"model": "gan", "device": "cpu", "trainer_options": {new: 100}}, "test")])
    assert getattr(run_.trainer_options, new) == 100


def test_penalty_with_batch_norm_is_refused_before_running():
    with pytest.raises(ConfigError, match="d_norm=instance"):
        resolve_all([run_config({"model": "gan", "objective": "wgan-gp", "device": "cpu"}, "test")])
    with pytest.raises(ConfigError, match="d_norm"):
        resolve_all([run_config({"model": "gan", "objective": "non-saturating", "device": "cpu",
                                 "trainer_options": {"regularizers": ["r1"]}}, "test")])


def test_gan_on_points_with_a_conv_arch_is_a_clear_error():
    with pytest.raises(ConfigError, match="arch='mlp'"):
        from genbench.data import load_dataset
        from genbench.models.gan import GAN, GanOptions

        GAN(GanOptions(arch="dcgan"), load_dataset("toy2d-ring8").info, objective=LOSSES.get("hinge"))


@pytest.mark.slow
def test_non_saturating_gan_captures_most_ring_modes(tmp_path):
    last, _ = run(tmp_path, objective="non-saturating", steps=1500, batch_size=64, eval_samples=2500,
                  model_options={"arch": "mlp", "width": 128, "latent_dim": 2}, dataset="toy2d-ring8")
    assert last["coverage/modes_captured"]["value"] >= 6
    assert last["coverage/high_quality_pct"]["value"] > 5.0


@pytest.mark.slow
def test_dcgan_on_digits_lowers_fid_markedly(tmp_path):
    _, records = run(tmp_path, objective="non-saturating", steps=200, batch_size=64, eval_samples=500,
                     model_options={"width": 32}, trainer_options={"monitor_every": 20, "monitor_samples": 500})
    fids = [r["value"] for r in records if r["metric"] == "stability/fid"]
    assert fids[-1] < 0.25 * fids[0], fids


def test_gan_on_points_without_known_modes_trains_and_reports_no_quality(tmp_path):
    """npz points carry no mode centres: stability records losses, not coverage or FID."""
    import numpy as np

    path = tmp_path / "points.npz"
    np.savez(path, x=np.random.default_rng(0).normal(size=(300, 2)).astype(np.float32))
    last, records = run(tmp_path, dataset=f"npz:{path}", model_options=POINTS["model_options"], steps=20,
                        trainer_options={"monitor_every": 10})
    assert last["run/diverged"]["value"] == 0.0
    stability = {r["metric"] for r in records if r["metric"].startswith("stability/")}
    assert "stability/d_loss_std" in stability and "stability/failed" in stability
    assert not stability & {"stability/fid", "stability/modes_captured"}


# ----------------------------------------------------------------------------- mixed precision


def train_directly(objective: str, precision: str, steps: int = 3):
    """train_adversarial on a small ring GAN outside the harness, at `precision` (fp16 runs
    are refused on the CPU by spec.resolve, so the config is swapped in afterwards: the loop
    itself is device-agnostic). Returns (outcome, [(D output dtype, autocast on)] per D call)."""
    import dataclasses

    from genbench.data import load_dataset
    from genbench.models.gan import GAN, GanOptions
    from genbench.train.adversarial import train_adversarial
    from genbench.train.base import TrainContext

    (run_,) = resolve_all([run_config({"model": "gan", "objective": objective, "device": "cpu", "steps": steps,
                                       "batch_size": 16, **POINTS, "trainer_options": {"monitor_every": 100}}, "test")])
    data = load_dataset("toy2d-ring8")
    model = GAN(GanOptions(arch="mlp", width=32, latent_dim=2), data.info, objective=run_.objective)
    calls = []
    model.discriminator.register_forward_hook(
        lambda module, inputs, output: calls.append((output.score.dtype, torch.is_autocast_enabled("cpu"))))
    ctx = TrainContext(model, run_.objective, run_.objective_options, run_.trainer_options, data,
                       dataclasses.replace(run_.config, precision=precision), torch.device("cpu"),
                       torch.Generator().manual_seed(0), lambda step, scalars: None, lambda *a, **k: None,
                       progress=False)
    return train_adversarial(ctx), calls


def test_bf16_runs_both_steps_under_autocast_and_penalties_at_fp32():
    outcome, calls = train_directly("wgan-gp", "bf16")
    assert not outcome.diverged and len(outcome.step_seconds) == 3
    under_amp = [dtype for dtype, amp in calls if amp]
    penalty = [dtype for dtype, amp in calls if not amp]
    assert under_amp and set(under_amp) == {torch.bfloat16}  # the D and G steps' forward passes
    assert penalty and set(penalty) == {torch.float32}  # the gradient penalty's critic calls


def test_fp32_runs_without_autocast():
    outcome, calls = train_directly("non-saturating", "fp32")
    assert not outcome.diverged and calls and {dtype for dtype, _ in calls} == {torch.float32}
    assert not any(amp for _, amp in calls)


def test_fp16_steps_through_grad_scalers():
    outcome, calls = train_directly("hinge", "fp16", steps=6)
    assert not outcome.diverged and len(outcome.step_seconds) == 6
    assert {dtype for dtype, amp in calls if amp} == {torch.float16}


def test_fp16_leaves_non_finite_gradients_to_the_scaler():
    from genbench.train.adversarial import divergence

    step = {"d_loss": 1.0, "g_loss": 1.0, "grad_norm_d": float("inf"), "grad_norm_g": 1.0}
    assert divergence(step, 1e6, "fp32") == "non-finite grad_norm_d (inf)"
    assert divergence(step, 1e6, "fp16") is None
    assert divergence({**step, "d_loss": float("nan")}, 1e6, "fp16") == "non-finite d_loss (nan)"


def test_a_bf16_gan_run_is_recorded_at_bf16(tmp_path):
    last, _ = run(tmp_path, objective="non-saturating", precision="bf16", **POINTS)
    assert last["run/diverged"]["value"] == 0.0 and last["run/complete"]["precision"] == "bf16"
