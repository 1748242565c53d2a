"""Samples and reconstructions: the sample and reconstruction grids of the lowest seed of
each group (the artefacts its run/complete record names)."""

from __future__ import annotations

from pathlib import Path

from genbench.harness.store import COMPLETE_METRIC
from genbench.report.base import Inputs, rel

TITLE = "Samples and reconstructions"
NOTE = ("Image sample grids show the decoder mean (latent-variable models), draws (autoregressive "
        "models, flows, diffusion: see each run's `samples` provenance) or the generator's output "
        "(GANs); waveform figures plot drawn 1-D signals above test signals; reconstruction grids "
        "alternate rows of test images and their reconstructions; "
        "traversal grids move one latent dimension per row over its 5-95% range on the test data "
        "(the most variable dimensions, at most 12); interpolation grids decode straight lines "
        "between the encodings of test pairs; 2-D scatters show draws from the model.\n\n")


def section(inputs: Inputs) -> str:
    parts = []
    complete = inputs.frame[inputs.frame["metric"] == COMPLETE_METRIC].sort_values("seed")
    for group, runs in complete.groupby("group", sort=True):
        first = runs.iloc[0]
        paths = first["provenance"].get("artefacts") or {}
        if not paths:
            continue
        images = " ".join(f"![{name}]({rel(Path(first['source_dir']) / p, inputs.out_dir)})"
                          for name, p in sorted(paths.items()))
        parts.append(f"**{group}** (seed {first['seed']}; {', '.join(sorted(paths))})\n\n{images}")
    return NOTE + ("\n\n".join(parts) or "(no artefacts)")
