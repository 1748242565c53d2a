"""The Gaussian decoder's sigma floor on dequantised 8-bit data (issue 21, point 8): it sits at
the dequantisation noise's own standard deviation, which costs no likelihood at the optimum."""

from __future__ import annotations

import math

import pytest
import torch

from genbench.models.likelihood import BIN_WIDTH, LOG_SIGMA_MIN, Likelihood


def test_the_floor_is_the_maximum_likelihood_sigma_of_one_levels_uniform_noise():
    # the ML Gaussian fitted to U(-w/2, w/2) noise has sigma = its std; measured on draws here
    noise = (torch.rand(1_000_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64) - 0.5) * BIN_WIDTH
    ml_sigma = float(noise.std())
    image = Likelihood("gaussian", None, quantised=True)
    _, log_sigma = image.split(torch.full((1, 2, 1, 1), -100.0))  # the network asks for sigma -> 0
    assert math.exp(float(log_sigma)) == pytest.approx(ml_sigma, rel=2e-3)


def test_unquantised_points_keep_their_own_floor():
    points = Likelihood("gaussian", None, quantised=False)
    _, log_sigma = points.split(torch.full((1, 2), -100.0))
    assert float(log_sigma) == pytest.approx(LOG_SIGMA_MIN)



