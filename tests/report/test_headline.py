"""The answer-first headline (issue 20, point 5): configurations ranked by the median of the
headline metric with a bootstrap interval, failures and references beside them, Holm-corrected
tests against the suite's reference configuration, caveats from the records."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from genbench.errors import ConfigError
from genbench.harness.suites import read_suite
from genbench.report import headline
from genbench.report.base import Inputs, attach_settings


def test_holm_matches_the_step_down_procedure_worked_by_hand():
    # sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> max so far 0.06
    assert headline.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert headline.holm([0.9, 0.8]) == [1.0, 1.0]  # capped at 1


def gan_run(objective: str, seed: int, hq: float, steps: int = 800) -> list[dict]:
    common = {"run_id": f"{objective}-{seed}", "git_commit": "c" * 40, "suite": "gan-losses", "seed": seed,
              "model": "gan[arch=mlp]", "objective": f"{objective}{{eval_every=100}}", "dataset": "toy2d-ring8",
              "precision": "fp32", "backend": "none", "device": "cpu", "step": None, "unit": ""}
    counts = [round(hq * 25 / 8)] * 8  # 2,500 samples, spread over all eight modes
    return [{**common, "metric": "run/complete", "value": 1.0,
             "provenance": {"config": {"run": {"steps": steps, "batch_size": 64, "lr": 1e-3}}}},
            {**common, "metric": "run/diverged", "value": 0.0, "provenance": {}},
            {**common, "metric": "coverage/high_quality_pct", "value": hq,
             "provenance": {"metric_fn": "coverage", "n_samples": 2500, "counts": counts}}]


def section(rows: list[dict]) -> str:
    frame = attach_settings(pd.DataFrame(rows))
    return headline.section(Inputs(frame, (Path("."),), Path("figures"), Path(".")))


def table_rows(text: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()
            if line.startswith("|") and not line.startswith("|--")][1:]


def test_ranked_by_median_with_references_and_a_holm_corrected_test_against_the_reference():
    rows = []
    for seed in range(5):
        rows += gan_run("non-saturating", seed, 40.0 + seed)  # the suite's reference configuration
        rows += gan_run("lsgan", seed, 80.0 + seed)  # better in every seed
        rows += gan_run("hinge", seed, 36.0 + 2 * seed)  # overlaps the reference
    text = section(rows)
    ranked = table_rows(text)
    assert [r[1] for r in ranked[:3]] == ["gan · lsgan", "gan · non-saturating", "gan · hinge"]
    assert ranked[0][3].startswith("82 [")  # median of 80..84, then its 95% interval
    # 5 vs 5 fully separated: exact two-sided p = 2 / C(10, 5) = 0.0079, times 2 rows (Holm) = 0.016
    assert ranked[0][-1] == "0.016 differs" and ranked[1][-1] == "reference" and ranked[2][-1].endswith("n.s.")
    references = [r[1] for r in ranked[3:]]
    assert references == ["reference: held-out data", "reference: fitted Gaussian", "reference: uniform box"]
    assert "800 steps of batch 64 (51,200 examples seen)" in text and "Holm over 2 rows" in text


def test_one_seed_rows_and_settings_apart_are_named_in_the_caveats_and_never_pooled():
    rows = gan_run("lsgan", 0, 50.0) + gan_run("lsgan", 1, 60.0, steps=200)
    ranked = table_rows(section(rows))
    assert [r[2] for r in ranked[:2]] == ["1", "1"]  # two rows of one seed each, not one row of two
    assert "steps=800" in ranked[0][1] or "steps=800" in ranked[1][1]
    assert "Some rows have one seed" in section(rows)


def test_a_suite_reference_names_known_keys_only(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('reference = { loss = "hinge" }\n[[runs]]\nmodel = "gan"\ndataset = "toy2d-ring8"\n')
    with pytest.raises(ConfigError, match="unknown key 'loss'"):
        read_suite("s", path)
    path.write_text('reference = { objective = "hinge" }\n[[runs]]\nmodel = "gan"\ndataset = "toy2d-ring8"\n')
    assert read_suite("s", path).reference == {"objective": "hinge"}
