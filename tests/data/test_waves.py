"""The `waves` dataset: layout, mu-law levels, determinism, options, and the recipe's
documented properties (class balance, gain range, frequency band)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from genbench.data import load_dataset
from genbench.data.waves import (
    CLASSES,
    F_HI,
    F_LO,
    GAIN_RANGE,
    QUANTISATION,
    WavesOptions,
    clean_signals,
    mu_law_decode,
    mu_law_encode,
)
from genbench.errors import ConfigError, DataError

SMALL = dict(n_train=200, n_test=50, length=128)
ALL_LEVELS = mu_law_decode(torch.arange(256))  # (256,) float32


@pytest.fixture(scope="module")
def waves():
    return load_dataset("waves", **SMALL)


# ----------------------------------------------------------------------------- mu-law


def test_mu_law_round_trip_is_lossless_on_codes():
    codes = torch.arange(256)
    assert torch.equal(mu_law_encode(mu_law_decode(codes)), codes)
    levels = mu_law_decode(codes)
    assert levels.dtype == torch.float32
    assert levels[0] == -1.0 and levels[-1] == 1.0
    assert torch.all(levels[1:] > levels[:-1])  # strictly increasing
    assert torch.equal(levels.flip(0), -levels)  # symmetric: code 255 - c is -level(c)


def test_mu_law_encode_follows_the_companding_formula():
    x = torch.linspace(-1, 1, 1001, dtype=torch.float64)
    companded = torch.sign(x) * torch.log1p(255 * x.abs()) / math.log(256)
    expected = torch.round((companded + 1) * 127.5).long()
    codes = mu_law_encode(x)
    assert codes.dtype == torch.int64 and torch.equal(codes, expected)
    # decoding lands within half a code of x in the companded domain
    back = mu_law_decode(codes).double()
    back_companded = torch.sign(back) * torch.log1p(255 * back.abs()) / math.log(256)
    assert (back_companded - companded).abs().max() <= 1 / 255 + 1e-9
    assert torch.equal(mu_law_encode(torch.tensor([-3.0, 2.0])), torch.tensor([0, 255]))  # clamped


# ----------------------------------------------------------------------------- layout


def test_layout_classes_and_extras(waves):
    info = waves.info
    assert info.kind == "sequence" and info.shape == (1, 128) and info.dims == 128
    assert info.classes == CLASSES
    assert info.extras["quantisation"] == QUANTISATION == "mu-law mu=255, 256 levels"
    assert info.extras["length"] == 128 and info.extras["levels"] == 256 and info.extras["mu"] == 255
    for split, n in ((waves.train, 200), (waves.test, 50)):
        assert split.x.shape == (n, 1, 128) and split.x.dtype == torch.float32
        assert split.x.min() >= -1 and split.x.max() <= 1
        assert split.y.dtype == torch.int64 and split.y.shape == (n,)
        assert set(split.y.tolist()) == set(range(len(CLASSES)))


def test_values_are_exactly_the_mu_law_levels(waves):
    for split in (waves.train, waves.test):
        codes = mu_law_encode(split.x)
        assert torch.equal(mu_law_decode(codes), split.x)  # re-quantising is lossless
        assert torch.isin(split.x, ALL_LEVELS).all()


def test_classes_are_drawn_uniformly():
    y = load_dataset("waves", n_train=5000, n_test=1, length=64).train.y
    freq = torch.bincount(y, minlength=len(CLASSES)).double() / len(y)
    assert torch.allclose(freq, torch.full_like(freq, 1 / len(CLASSES)), atol=0.025)


# ----------------------------------------------------------------------------- determinism


def test_same_seed_same_data_other_seed_other_data(waves):
    again = load_dataset("waves", **SMALL)
    assert torch.equal(again.train.x, waves.train.x) and torch.equal(again.test.y, waves.test.y)
    assert again.info.content_hash == waves.info.content_hash
    other = load_dataset("waves", **SMALL, seed=1)
    assert not torch.equal(other.train.x, waves.train.x)
    assert other.info.content_hash != waves.info.content_hash


def test_train_and_test_are_independent_streams(waves):
    assert not torch.equal(waves.train.x[:50], waves.test.x)
    more_train = load_dataset("waves", **{**SMALL, "n_train": 300})
    assert torch.equal(more_train.test.x, waves.test.x)  # the test set does not depend on n_train


def test_spec_string_round_trips(waves):
    assert load_dataset(waves.info.spec).info.content_hash == waves.info.content_hash


# ----------------------------------------------------------------------------- options


@pytest.mark.parametrize("options, message", [
    ({"n_train": 0}, "n_train"),
    ({"n_test": 0}, "n_test"),
    ({"length": 10}, "length"),
    ({"noise": -0.1}, "noise"),
    ({"noise": "nan"}, "noise"),
    ({"seed": -1}, "seed"),
    ({"lenght": 64}, "Did you mean 'length'"),
])
def test_bad_options_are_config_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        load_dataset("waves", **options)


def test_waves_is_embedded_and_takes_no_path():
    with pytest.raises(DataError, match="embedded"):
        load_dataset("waves:/tmp/x")


def test_options_from_the_spec_string():
    data = load_dataset("waves?n_train=20&n_test=5&length=64&noise=0")
    assert data.train.x.shape == (20, 1, 64) and data.info.extras["noise"] == 0.0


# ----------------------------------------------------------------------------- the recipe


def test_noise_free_peaks_are_the_gain():
    """With noise 0 the peak of every signal is its gain g ~ U[0.5, 1), up to quantisation."""
    x = load_dataset("waves", n_train=500, n_test=1, length=128, noise=0.0).train.x
    peaks = x.abs().amax(dim=(1, 2))  # (N,)
    step_at_half = float(ALL_LEVELS[ALL_LEVELS > 0.5][0] - ALL_LEVELS[ALL_LEVELS <= 0.5][-1])
    assert peaks.min() >= GAIN_RANGE[0] - step_at_half and peaks.max() <= GAIN_RANGE[1]
    assert peaks.max() > 0.95 and peaks.min() < 0.55  # the whole range is used


def test_clean_signals_have_unit_peak_and_tones_lie_in_the_band():
    """The dominant frequency of every sines, chirp and am signal is in [F_LO, F_HI]
    (to within one FFT bin); every class is normalised to peak 1."""
    length, rng = 256, np.random.default_rng(0)
    y = np.repeat(np.arange(len(CLASSES)), 40)
    s = clean_signals(y, length, rng)  # (200, L)
    assert np.allclose(np.abs(s).max(1), 1.0)
    tonal = np.isin(y, [CLASSES.index(c) for c in ("sines", "chirp", "am")])
    spectrum = np.abs(np.fft.rfft(s[tonal], axis=1))  # (n, L/2 + 1)
    dominant = spectrum.argmax(1) / length  # cycles/sample
    assert dominant.min() >= F_LO - 1 / length and dominant.max() <= F_HI + 1 / length


def test_options_dataclass_validates_directly():
    assert WavesOptions().length == 256
    with pytest.raises(ValueError):
        WavesOptions(length=70000)
