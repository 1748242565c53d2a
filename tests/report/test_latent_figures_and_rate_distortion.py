"""Latent traversal/interpolation artefacts and the report's rate-distortion section."""

from __future__ import annotations

import torch
from PIL import Image

from genbench.data.base import DatasetInfo
from genbench.utils import figures
from genbench.report import render_report
from genbench.harness.runner import run_all
from genbench.harness.spec import resolve_all, run_config
from genbench.models.vae import VAE, VAEOptions


def test_traversal_moves_one_dimension_per_row_over_its_test_range(tmp_path):
    info = DatasetInfo(name="t", spec="t", kind="image", shape=(1, 8, 8), classes=None, content_hash="0",
                       source="test", split="none")
    torch.manual_seed(0)
    model = VAE(VAEOptions(latent_dim=3, hidden=16), info).eval()
    x = torch.rand(50, 1, 8, 8) * 2 - 1
    decoded = []
    model.decode_latent = lambda z: (decoded.append(z.clone()), torch.zeros(z.shape[0], 1, 8, 8))[1]
    paths = figures.latent_figures(model, x, tmp_path)
    assert set(paths) == {"interpolation", "traversal"}
    interp, trav = decoded
    steps = figures.TRAVERSAL_STEPS
    assert trav.shape == (3 * steps, 3)
    rows = trav.view(3, steps, 3)
    base = model.encode_latent(x)[0]
    for r in range(3):
        moved = (rows[r] != base).any(0)  # which dims change along the row
        assert moved.sum() == 1  # exactly one dimension per row
        dim = int(moved.nonzero())
        values = model.encode_latent(x)[:, dim]
        assert torch.allclose(rows[r, 0, dim], torch.quantile(values, 0.05))
        assert torch.allclose(rows[r, -1, dim], torch.quantile(values, 0.95))
    z = model.encode_latent(x)
    path = interp.view(figures.INTERPOLATION_PAIRS, figures.INTERPOLATION_STEPS, 3)
    assert torch.allclose(path[:, 0], z[:6]) and torch.allclose(path[:, -1], z[6:12])
    assert Image.open(paths["traversal"]).size[0] > 0


def test_report_draws_rate_distortion_for_a_beta_sweep(tmp_path):
    runs = resolve_all([run_config({"model": "vae", "device": "cpu", "steps": 20, "eval_samples": 100, "seed": 0,
                                    "objective_options": {"beta": beta}}, "test") for beta in (0.5, 4.0)], "test")
    run_all(runs, tmp_path, progress=False)
    report = render_report([tmp_path]).read_text()
    section = report.split("## Rate and distortion")[1].split("## Stability")[0]
    assert "elbo[beta=0.5]" in section and "elbo[beta=4.0]" in section
    assert "rate-distortion-" in section and any((tmp_path / "figures").glob("rate-distortion-*.png"))
    assert "traversal" in report and "interpolation" in report
