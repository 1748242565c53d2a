"""Trivial references against independent figures: the closed form of a histogram's NLL, and
numbers measured on these datasets outside genbench's code (issue 20's review: a Gaussian
fitted to toy2d-grid25 captures 17.7 ± 2.1 modes with 1.5% high-quality samples, a uniform
box 23.1 modes and 2.6%, at 2,500 samples; a per-pixel histogram scores 5.39 bits/dim on
digits and 0.22 on 16x16 shapes)."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from genbench.data import load_dataset
from genbench.metrics.references import bits_per_dim_reference, categorical_bits, coverage_references


def test_categorical_bits_match_the_closed_form():
    fit = torch.tensor([[0], [0], [0], [1]])  # one dimension: 3 zeros, 1 one
    score = torch.tensor([[0], [1]])
    alpha = 0.5
    p0, p1 = (3 + alpha) / (4 + 2 * alpha), (1 + alpha) / (4 + 2 * alpha)
    assert categorical_bits(fit, score, 2, alpha) == pytest.approx(-(math.log2(p0) + math.log2(p1)) / 2)


@pytest.mark.parametrize("spec, expected", [("digits", 5.39), ("shapes?size=16&n=4096", 0.22)])
def test_per_pixel_histogram_bits_per_dim(spec, expected):
    fit = bits_per_dim_reference(load_dataset(spec))
    assert fit.bits_per_dim == pytest.approx(expected, abs=0.03), fit


def test_trivial_models_on_the_grid_match_the_review_figures():
    results = coverage_references(load_dataset("toy2d-grid25"), n_samples=2500, seeds=10)
    gaussian, box, real = results["fitted Gaussian"], results["uniform box"], results["held-out data"]
    modes = [r.modes_captured for r in gaussian]
    assert abs(statistics.mean(modes) - 17.7) < 2.1  # within one reported std
    assert statistics.mean(r.high_quality_pct for r in gaussian) == pytest.approx(1.5, abs=0.5)
    assert statistics.mean(r.modes_captured for r in box) == pytest.approx(23.1, abs=1.5)
    assert statistics.mean(r.high_quality_pct for r in box) == pytest.approx(2.6, abs=0.6)
    assert all(r.modes_captured == 25 and r.high_quality_pct > 95 for r in real)  # real data: the ceiling
