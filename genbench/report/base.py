"""What every report section takes, and the helpers they share.

A section module (runs.py, results.py, ...) has a TITLE and `section(inputs) -> str`: the
markdown under its `## TITLE`; genbench/report/__init__.py assembles them in order.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402

from genbench.report.producers import producer_of, sign_of  # noqa: E402

# A row is one model x objective x dataset, split further by precision, backend and device:
# numbers measured under different conditions are never averaged together.
GROUP = ["model", "objective", "dataset", "precision", "backend", "device"]
SETTING = ["model", "dataset", "precision", "backend", "device"]  # GROUP without the objective


@dataclass(frozen=True)
class Inputs:
    """The records a report shows and where its figures go."""

    frame: pd.DataFrame  # every record of the completed runs, with a "group" column
    result_dirs: tuple[Path, ...]
    figures: Path  # where sections save their figures
    out_dir: Path  # figures are linked relative to it

    @cached_property
    def final(self) -> pd.DataFrame:
        """The end-of-run records (step None)."""
        return self.frame[self.frame["step"].isna()]


def short(metric: str) -> str:
    """'quality/fid' -> 'fid'."""
    return metric.split("/", 1)[1]


def by_metric_fn(final: pd.DataFrame, name: str) -> pd.DataFrame:
    """The records of the registered metric `name`."""
    return final[final["provenance"].map(lambda p: p.get("metric_fn") == name)]


def better_label(record: pd.Series) -> str:
    """' (higher is better)' or ' (lower is better)' for a record's value, as its producer
    declares it ('' for neither)."""
    sign = sign_of(producer_of(record["metric"], record["provenance"]), record["metric"], record["unit"])
    return {1: " (higher is better)", -1: " (lower is better)"}.get(sign, "")


def save_figure(fig, path: Path) -> Path:
    """The figure as a 256-colour PNG: line plots need no more, and the file is about a third
    of full colour (committed reports keep their figures)."""
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    image = Image.open(buffer).convert("RGB")
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)
    return path


def rel(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()
