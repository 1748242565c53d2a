"""The spec grammar NAME[:PATH][?k=v&k=v] through load_dataset, and the registry."""

from __future__ import annotations

import pytest

from genbench.data import Dataset, DatasetInfo, Split, load_dataset
from genbench.data.base import parse_spec
from genbench.errors import ConfigError, DataError, UnknownNameError
from genbench.registry import DATASETS

EXPECTED = {"toy2d-ring8", "toy2d-grid25", "digits", "shapes", "photos",
            "mnist", "fashion-mnist", "cifar10", "folder", "npz"}


def test_all_sources_registered_with_summaries():
    assert EXPECTED <= set(DATASETS.names())
    for name in EXPECTED:
        source = DATASETS.get(name)
        assert source.summary and source.needs_path == (name in {"mnist", "fashion-mnist",
                                                                 "cifar10", "folder", "npz"})


def test_parse_spec():
    assert parse_spec("digits") == ("digits", None, {})
    assert parse_spec("mnist:/data/m?limit=5") == ("mnist", "/data/m", {"limit": "5"})
    assert parse_spec("shapes?size=64&n=10") == ("shapes", None, {"size": "64", "n": "10"})


def test_options_from_spec_and_keywords():
    data = load_dataset("digits?size=32")
    assert isinstance(data, Dataset) and isinstance(data.info, DatasetInfo)
    assert isinstance(data.train, Split) and data.info.shape == (1, 32, 32)
    assert data.info.spec == "digits?size=32"
    assert load_dataset("digits?size=32", size=8).info.shape == (1, 8, 8)  # keywords win
    provenance = data.provenance()
    assert provenance["content_hash"] == data.info.content_hash and provenance["n_test"] == 359


def test_unknown_option_suggests_close_name():
    with pytest.raises(ConfigError, match="'size'") as info:
        load_dataset("digits?sise=32")
    assert "sise" in str(info.value)
    with pytest.raises(ConfigError, match="16"):
        load_dataset("digits?size=20")  # not one of the choices
    with pytest.raises(ConfigError):
        load_dataset("shapes?test_fraction=1.5")


def test_unknown_dataset_suggests_close_name():
    with pytest.raises(UnknownNameError, match="'digits'"):
        load_dataset("digit")
    with pytest.raises(UnknownNameError, match="'cifar10'"):
        load_dataset("cifar:/tmp")


def test_path_rules(tmp_path):
    with pytest.raises(DataError, match="takes no path"):
        load_dataset(f"digits:{tmp_path}")
    with pytest.raises(DataError, match="mnist:PATH"):
        load_dataset("mnist")
    with pytest.raises(DataError):
        load_dataset("  ")
    with pytest.raises(DataError, match="KEY=VALUE"):
        load_dataset("digits?size")
