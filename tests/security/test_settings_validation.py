"""Numeric settings: finite and in range wherever they come from (issue parts 3 and 4).

One conversion (genbench.utils.options.convert_value) refuses NaN, Inf and integers outside
int64 for every option of every dataclass; each dataclass checks its own ranges; a dataset
too large for the memory available is refused from its header, before it is allocated; a
batch larger than the training split is refused before training, never clipped.
"""

from __future__ import annotations

import gzip
import math
import pickle
import struct
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import genbench.data.base as data_base
from genbench.cli import main
from genbench.data import load_dataset
from genbench.errors import ConfigError, DataError
from genbench.harness.runner import run_all
from genbench.harness.settings import MAX_STEPS
from genbench.harness.spec import resolve_all, run_config
from genbench.harness.store import read_records
from genbench.harness.suites import parse_suite
from genbench.train.batches import epoch_batches
from genbench.utils.options import build_options, convert_value

INT64 = (-(2**63), 2**63 - 1)


def exits_2(argv, capsys, *words) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for word in words:
        assert word in err, err
    return err


# ---------------------------------------------------------------- one conversion for every option

@settings(max_examples=200, deadline=None)
@given(value=st.floats() | st.floats().map(repr))
def test_floats_are_accepted_exactly_when_finite(value):
    number = float(value)
    if math.isfinite(number):
        assert convert_value(value, float, "x") == number
    else:
        with pytest.raises(ConfigError, match="finite"):
            convert_value(value, float, "x")


@settings(max_examples=200, deadline=None)
@given(value=st.integers(-(2**70), 2**70) | st.sampled_from([INT64[0] - 1, INT64[0], INT64[1], INT64[1] + 1]))
def test_integers_are_accepted_exactly_when_they_fit_int64(value):
    for given_as in (value, str(value)):
        if INT64[0] <= value <= INT64[1]:
            assert convert_value(given_as, int, "x") == value
        else:
            with pytest.raises(ConfigError, match="2\\*\\*63"):
                convert_value(given_as, int, "x")


def test_huge_numbers_of_any_type_are_config_errors_not_overflow_errors():
    for value, annotation in ((10**400, float), (1e300, int), ("1e400", float), (float("inf"), int)):
        with pytest.raises(ConfigError):
            convert_value(value, annotation, "x")


@dataclass(frozen=True)
class SomeModelOptions:  # any options dataclass: the check is in the shared conversion
    width: int = 8
    dropout: float | None = None


@pytest.mark.parametrize("values", [{"width": 2**64}, {"dropout": "nan"}, {"dropout": float("-inf")}])
def test_every_options_dataclass_gets_the_check(values):
    with pytest.raises(ConfigError, match="option '(width|dropout)'"):
        build_options(SomeModelOptions, values, "model 'x'")


# ---------------------------------------------------------------- the reported failures, from the CLI

@pytest.mark.parametrize("flag, value, words", [
    ("--lr", "nan", ["--lr: must be a finite number"]),  # was a traceback from Adam
    ("--lr", "inf", ["--lr: must be a finite number"]),  # was a config that could not be serialised
    ("--steps", str(2**64), ["--steps:", "2**63"]),  # was an OverflowError
    ("--steps", str(MAX_STEPS + 1), ["--steps: must be <= 10,000,000"]),
    ("--eval-samples", str(10**9), ["--eval-samples: must be <= 1,000,000"]),
])
def test_absurd_run_settings_exit_2_naming_the_setting(tmp_path, capsys, flag, value, words):
    exits_2(["run", "--model", "vae", flag, value, "--out", str(tmp_path / "o"), "--dry-run"], capsys, *words)


def test_a_suite_with_lr_inf_fails_on_load_naming_file_and_entry(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('[[runs]]\nmodel = "vae"\nlr = inf\n')  # TOML has inf and nan literals
    with pytest.raises(ConfigError, match=r"s.toml, \[\[runs\]\] entry 1, key 'lr': must be a finite number"):
        parse_suite("s", path)


@pytest.mark.parametrize("values, match", [
    ({"seed": 2**32}, "seed"),  # numpy's global seed stops at 2**32 - 1
    ({"seed": -1}, "seed"),
    ({"adam_beta1": 1.0}, "adam_beta"),
    ({"eval_batch": 2**20}, "eval_batch"),
    ({"iwae_k": 10**6}, "iwae_k"),
])
def test_run_config_ranges(values, match):
    with pytest.raises(ConfigError, match=match):
        run_config({"model": "vae", **values}, "test")


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_compare_fail_above_must_be_a_finite_percentage(tmp_path, capsys, value):
    (tmp_path / "results.jsonl").write_text("")
    exits_2(["compare", str(tmp_path), str(tmp_path), "--fail-above", value], capsys, "finite percentage >= 0")


def test_kernels_fail_above_nan_is_refused_before_anything_runs(tmp_path, capsys):
    exits_2(["kernels", "--compare", "base", "--fail-above", "nan", "--out", str(tmp_path)], capsys,
            "--fail-above nan")
    assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------- batch size (part 3)

def test_batch_larger_than_the_training_split_is_refused_before_training(tmp_path, capsys):
    """Was: digits trained with --batch-size 100000 clipped to 1,438 rows and recorded
    170x the measured throughput."""
    out = tmp_path / "o"
    for extra in (["--dry-run"], []):
        exits_2(["run", "--model", "vae", "--batch-size", "100000", "--steps", "2", "--out", str(out), *extra],
                capsys, "batch_size 100000", "1438 examples", "--batch-size 1438")
    assert not (out / "results.jsonl").exists()


def test_batches_hold_exactly_batch_size_rows_or_are_refused():
    x = torch.arange(10.0)
    draws = epoch_batches(x, 10, torch.Generator().manual_seed(0))
    for _ in range(3):  # every epoch: all rows, once each
        assert sorted(next(draws).tolist()) == x.tolist()
    draws = epoch_batches(x, 4, torch.Generator().manual_seed(0))
    assert all(len(next(draws)) == 4 for _ in range(7))  # the last partial batch of each epoch is dropped
    with pytest.raises(ConfigError, match="larger than the training split"):
        next(epoch_batches(x, 11, torch.Generator().manual_seed(0)))


def test_recorded_throughput_counts_the_examples_each_step_processed(tmp_path):
    """The batch is the whole training split: throughput x median step time = its 48 rows."""
    runs = resolve_all([run_config({"model": "vae", "dataset": "toy2d-ring8?n_train=48&n_test=16", "device": "cpu",
                                    "batch_size": 48, "steps": 6, "warmup_steps": 1, "eval_samples": 50,
                                    "model_options": {"latent_dim": 2, "hidden": 16}}, "test")])
    run_all(runs, tmp_path, progress=False)
    record = next(r for r in read_records(tmp_path / "results.jsonl") if r["metric"] == "perf/train_throughput")
    assert record["provenance"]["batch_size"] == 48
    assert record["value"] * record["provenance"]["step_seconds"]["median"] == pytest.approx(48)


# ---------------------------------------------------------------- memory and sizes of datasets (part 4)

@pytest.fixture
def memory_available(monkeypatch):
    def set_to(n_bytes):
        monkeypatch.setattr(data_base, "available_memory", lambda: n_bytes)
    return set_to


def test_a_dataset_larger_than_available_memory_is_refused_from_its_options(memory_available):
    memory_available(10 * 2**20)
    n = 1_000_000 + 2500  # n_train + the default n_test
    needed = n * 2 * data_base.LOAD_BYTES_PER_VALUE  # 2 values per point
    with pytest.raises(DataError, match=f"{needed / 2**20:.1f} MiB of memory, but 10.0 MiB") as info:
        load_dataset("toy2d-ring8?n_train=1000000")
    assert "limit=N" in str(info.value)
    assert len(load_dataset("toy2d-ring8?n_train=1000").train) == 1000  # small enough: loads


def test_toy2d_n_train_1e9_is_out_of_range():
    with pytest.raises(ConfigError, match="10,000,000"):
        load_dataset("toy2d-ring8?n_train=1000000000")


def test_an_idx_header_asking_for_more_than_memory_is_refused_before_reading(tmp_path):
    def idx(dims, magic=0x0803):  # a header and no data: a gzipped file cannot be checked against its size
        return struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims)

    files = {"train-images-idx3-ubyte.gz": gzip.compress(idx([10**9, 28, 28])),
             "train-labels-idx1-ubyte": idx([10**9], 0x0801),
             "t10k-images-idx3-ubyte": idx([2, 28, 28]) + bytes(2 * 28 * 28),
             "t10k-labels-idx1-ubyte": idx([2], 0x0801) + bytes(2)}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    needed = (10**9 + 2) * 28 * 28 * data_base.LOAD_BYTES_PER_VALUE
    with pytest.raises(DataError, match=f"needs about {needed / 2**30:,.1f} GiB"):
        load_dataset(f"mnist:{tmp_path}")


def test_a_huge_image_is_refused_from_its_header_with_the_fix(tmp_path):
    """A 12000x12000 image: refused from the PNG header, before 1.7 GB of floats are made."""
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header_only = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 12000, 12000, 8, 0, 0, 0, 0))
                   + chunk(b"IEND", b""))
    for i in range(3):
        (tmp_path / f"{i}.png").write_bytes(header_only)
    with pytest.warns(Warning), pytest.raises(DataError, match="12000x12000-pixel images.*size=N"):
        load_dataset(f"folder:{tmp_path}")
    with pytest.raises(ConfigError, match="size must be between 1 and 1024"):
        load_dataset(f"folder:{tmp_path}?size=5000")


def test_a_pickle_asking_numpy_for_2_to_the_45_bytes_is_a_data_error(tmp_path):
    """Was an uncaught MemoryError: numpy's _reconstruct allocates the shape it is given."""
    class Huge:
        def __reduce__(self):
            from numpy._core.multiarray import _reconstruct
            return _reconstruct, (np.ndarray, (2**45,), b"B")

    directory = tmp_path / "cifar-10-batches-py"
    directory.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = Huge() if name == "data_batch_1" else np.zeros((2, 3072), np.uint8)
        (directory / name).write_bytes(pickle.dumps({b"data": batch, b"labels": [0, 1]}, protocol=2))
    with pytest.raises(DataError) as info:
        load_dataset(f"cifar10:{directory}")
    # where the kernel refuses the 32 TiB (the usual overcommit setting) the message gives the size
    # asked for; where it lends it, the unused array is refused for its shape
    assert "32.0 TiB" in str(info.value) or "35184372088832" in str(info.value)


def test_torch_allocation_failures_become_data_errors_with_the_size(monkeypatch):
    from genbench.data import toy2d

    def fail(*args):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 80000000000 bytes. Error code 12 (Cannot allocate memory)")

    monkeypatch.setattr(toy2d, "sample_mixture", fail)
    with pytest.raises(DataError, match="ran out of memory .*80000000000 bytes"):
        load_dataset("toy2d-ring8")
    monkeypatch.setattr(toy2d, "sample_mixture", lambda *a: (_ for _ in ()).throw(RuntimeError("a bug")))
    with pytest.raises(RuntimeError, match="a bug"):  # other RuntimeErrors are bugs and keep their traceback
        load_dataset("toy2d-ring8")

