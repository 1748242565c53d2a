"""PacGAN packing (Lin et al. 2018; issue 21, point 3): the discriminator scores groups of m
samples concatenated along channels (features for points), with every loss."""

from __future__ import annotations

import pytest
import torch

from genbench.data import load_dataset
from genbench.errors import ConfigError
from genbench.harness.runner import run_all
from genbench.harness.spec import resolve_all, run_config
from genbench.harness.store import read_records
from genbench.models.gan import GAN, GanOptions
from genbench.registry import LOSSES
from genbench.utils.threads import one_thread


@pytest.mark.parametrize("dataset, arch", [("toy2d-ring8", "mlp"), ("digits", "dcgan")])
def test_a_packed_score_is_the_discriminator_on_the_samples_side_by_side(dataset, arch):
    info = load_dataset(dataset).info
    model = GAN(GanOptions(arch=arch, width=16, pack=2, d_norm="none"), info, objective=LOSSES.get("hinge"))
    x = torch.randn(6, *info.shape, generator=torch.Generator().manual_seed(0))
    side_by_side = torch.cat([x[0::2], x[1::2]], dim=1)  # pairs (0, 1), (2, 3), (4, 5) along channels
    assert torch.equal(model.discriminate(x, None).score, model.discriminator(side_by_side, None).score)
    assert model.discriminate(x, None).score.shape == (3,)


@pytest.mark.parametrize("loss", ["non-saturating", "wgan-gp", "ebgan"])
def test_packed_gans_train_with_their_penalties(tmp_path, loss):
    config = {"model": "gan", "dataset": "toy2d-ring8", "objective": loss, "device": "cpu", "steps": 4,
              "batch_size": 16, "eval_samples": 100, "log_every": 2, "model_options": {"arch": "mlp", "pack": 4},
              "trainer_options": {"monitor_samples": 100}}
    with one_thread():
        run_all(resolve_all([run_config(config, "test")]), tmp_path, progress=False)
    last = {r["metric"]: r for r in read_records(tmp_path / "results.jsonl")}
    assert last["run/diverged"]["value"] == 0.0 and "coverage/high_quality_pct" in last


def test_a_batch_that_does_not_split_into_packs_is_refused_before_training():
    config = {"model": "gan", "dataset": "toy2d-ring8", "device": "cpu", "batch_size": 30,
              "model_options": {"arch": "mlp", "pack": 4}}
    with pytest.raises(ConfigError, match="--batch-size 28"):
        resolve_all([run_config(config, "test")])


def test_packing_a_conditional_gan_is_refused():
    with pytest.raises(ValueError, match="conditional"):
        GanOptions(pack=2, conditional="cgan")
