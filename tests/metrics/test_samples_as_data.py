"""Pixel-space metrics compare generated and real images on the same 8-bit levels (issue 20):
a generator that reproduces the test images up to sub-level noise must score exactly as the
test images themselves, which unrounded samples do not (SWD's finest level counts the noise)."""

from __future__ import annotations

import torch

from genbench.data import load_dataset
from genbench.metrics.base import EvalContext
from genbench.metrics.samples import diversity, memorised, sliced_wasserstein
from genbench.metrics.swd import swd
from tests.metrics.replay import Replay

CPU = torch.device("cpu")
N = 256


def contexts():
    data = load_dataset("shapes?size=32&n=1024")
    real = data.test.x[:N]  # on the 8-bit levels, in [-1, 1]
    noise = (torch.rand(real.shape, generator=torch.Generator().manual_seed(0)) - 0.5) * (0.9 / 127.5)
    noisy = (real + noise).clamp(-1, 1)  # within half a level of the real images
    exact = EvalContext(Replay(real), data, CPU, batch_size=64, seed=1, eval_samples=N)
    jittered = EvalContext(Replay(noisy), data, CPU, batch_size=64, seed=1, eval_samples=N)
    return data, real, noisy, exact, jittered


def by_name(values):
    return {v.metric: v.value for v in values}


def test_sub_level_noise_changes_nothing_the_pixel_metrics_report():
    data, real, noisy, exact, jittered = contexts()
    assert torch.equal(jittered.samples_as_data, real)
    for metric in (sliced_wasserstein, diversity, memorised):
        assert by_name(metric(jittered)) == by_name(metric(exact)), metric.__name__


def test_unrounded_samples_would_have_scored_differently():
    """Why the rounding is there: SWD on the unrounded samples differs from SWD on the images."""
    data, real, noisy, exact, jittered = contexts()
    as_is = swd(data.train.x, noisy, seed=1)
    rounded = swd(data.train.x, real, seed=1)
    assert by_name(sliced_wasserstein(jittered))["swd/mean"] == rounded.mean
    assert abs(as_is.per_level[0] - rounded.per_level[0]) > 0.01 * rounded.per_level[0]
