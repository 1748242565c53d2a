"""What used to fail only after training is decided before it, and `--dry-run` reports it
(issue part 6): FID's sample counts (eval_samples, the training split), and unlabelled
image data, whose genbench extractor now learns rotations instead of classes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import genbench.harness.spec as spec
import genbench.metrics.extractors as ex
from genbench.cli import main
from genbench.data import Dataset, Split, load_dataset
from genbench.errors import GenbenchError
from genbench.harness.runner import run_all
from genbench.harness.spec import resolve_all, run_config
from genbench.harness.store import read_records
from genbench.harness.suites import parse_suite
from genbench.metrics.quality import features_to_quality


def refused_before_training(tmp_path, capsys, argv, *words):
    """Exit 2 naming `words`, in --dry-run and in a real run, which creates nothing."""
    out = tmp_path / "out"
    for extra in (["--dry-run"], []):
        assert main(["run", *argv, "--out", str(out), "--no-progress", *extra]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and all(word in err for word in words), err
    assert not out.exists()


def test_eval_samples_not_above_the_feature_dimensions(tmp_path, capsys):
    """Was: trained for --steps, then exit 2 when FID was computed."""
    refused_before_training(tmp_path, capsys, ["--model", "vae", "--eval-samples", "64"],
                            "more samples than feature dimensions (64", "eval_samples (--eval-samples) is 64",
                            "raise it")


def test_a_training_split_of_64_or_fewer_images_is_named_as_the_cause(tmp_path, capsys):
    refused_before_training(tmp_path, capsys, ["--model", "vae", "--dataset", "shapes?n=80&size=16",
                                               "--batch-size", "16"],
                            "the training split, its reference set, has only 64 examples")


def test_an_invalid_inception_weights_file_is_refused_before_training(tmp_path, capsys):
    """Was: the file was only checked to exist, and read (and refused) at evaluation, after training."""
    weights = tmp_path / "pt_inception.pth"
    torch.save({"not": torch.zeros(3)}, weights)
    refused_before_training(tmp_path, capsys, ["--model", "vae", "--feature-weights", str(weights)],
                            str(weights), "does not hold torch-fidelity's InceptionV3 weights")


def test_the_inception_extractor_needs_more_than_2048(tmp_path, capsys, monkeypatch):
    """InceptionV3's features are 2048-d: digits' 1,438 training images are too few for its FID."""
    weights = tmp_path / "pt_inception.pth"
    weights.write_bytes(b"")  # the count is decided from the choice alone: the file's check is not the point here
    monkeypatch.setattr(spec, "check_inception_file", lambda path: None)  # where the run check calls it
    refused_before_training(tmp_path, capsys, ["--model", "vae", "--feature-weights", str(weights)],
                            "(2048 for this feature extractor)", "has only 1438 examples")


def test_the_gan_stability_monitor_sample_count(tmp_path, capsys):
    refused_before_training(tmp_path, capsys, ["--model", "gan", "--train-set", "monitor_samples=40"],
                            "the trainer option monitor_samples (--train-set monitor_samples=N) is 40")


def test_suite_files_report_it_with_file_and_entry(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('[[runs]]\nmodel = "vae"\n[[runs]]\nmodel = "vae"\nseed = 1\neval_samples = 10\n')
    with pytest.raises(GenbenchError, match=r"s.toml, \[\[runs\]\] entry 2 .*eval_samples .* is 10"):
        parse_suite("s", path)


def test_small_counts_are_fine_where_fid_does_not_apply():
    (run,) = resolve_all([run_config({"model": "vae", "dataset": "toy2d-ring8?n_train=50&n_test=10", "device": "cpu",
                                      "batch_size": 50, "eval_samples": 20}, "test")])
    assert run.config.eval_samples == 20


# ---------------------------------------------------------------- unlabelled images: a label-free extractor

def unlabelled(dataset: Dataset) -> Dataset:
    return Dataset(dataset.info, Split(dataset.train.x), Split(dataset.test.x))


def test_quarter_turns_are_numpys_rot90():
    x = torch.arange(2 * 1 * 3 * 3, dtype=torch.float32).reshape(2, 1, 3, 3).repeat(4, 1, 1, 1)  # 8 images
    turned, (turns,) = ex.task_batch(x, None, torch.arange(8), None)
    assert turns.tolist() == [0, 1, 2, 3] * 2
    for image, original, k in zip(turned, x, turns.tolist()):
        assert np.array_equal(image[0].numpy(), np.rot90(original[0].numpy(), k))
    wide = torch.rand(8, 1, 3, 5)
    turned, (turns,) = ex.task_batch(wide, None, torch.arange(8), torch.Generator().manual_seed(0))
    assert set(turns.tolist()) <= {0, 2} and turned.shape == wide.shape  # a quarter turn would change the shape
    for image, original, k in zip(turned, wide, turns.tolist()):
        assert np.array_equal(image[0].numpy(), np.rot90(original[0].numpy(), k))


def test_the_label_free_extractor_learns_rotations(digits):
    net, info = ex.train_classifier(unlabelled(load_dataset("digits?size=8")), steps=40, progress=False)
    assert net.config["head_sizes"] == (4,) and info["task"] == ex.ROTATION_TASK
    assert info["test_accuracy"] > 0.45  # chance is 0.25 (four rotations, balanced in the test set)


def test_features_to_quality_leaves_out_the_inception_score_when_asked():
    g = {"features": torch.randn(80, 4, dtype=torch.float64), "logits": torch.randn(80, 4, dtype=torch.float64)}
    values = features_to_quality(g, g, seed=0, inception_score=False)
    assert "is" not in values and "is_std" not in values and values["fid"] == pytest.approx(0, abs=1e-6)


def test_unlabelled_images_run_end_to_end_with_the_rotation_extractor(tmp_path, monkeypatch):
    """Was: trained, then exit 2 ('trains on labelled images') when the metrics ran."""
    monkeypatch.setenv("GENBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(ex, "TRAIN_STEPS", 10)
    images = np.random.default_rng(0).integers(0, 256, (100, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "u.npz", x=images)  # unlabelled: a documented npz layout
    runs = resolve_all([run_config({"model": "vae", "dataset": f"npz:{tmp_path / 'u.npz'}", "device": "cpu",
                                    "steps": 3, "batch_size": 16, "warmup_steps": 1, "eval_samples": 100,
                                    "eval_batch": 100}, "test")])
    run_all(runs, tmp_path / "out", progress=False)
    records = {r["metric"]: r for r in read_records(tmp_path / "out" / "results.jsonl")}
    assert records["run/complete"]["value"] == 1.0
    fid = records["quality/fid"]
    assert fid["value"] > 0 and fid["provenance"]["extractor_task"] == ex.ROTATION_TASK
    assert "not computed" in fid["provenance"]["inception_score"]
    assert "quality/is" not in records and "quality/kid" in records
