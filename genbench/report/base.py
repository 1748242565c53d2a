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

from genbench.harness.settings import RESULT_SETTINGS, result_settings, settings_text  # noqa: E402
from genbench.harness.store import COMPLETE_METRIC  # noqa: E402
from genbench.report.producers import producer_of, sign_of  # noqa: E402
from genbench.utils.measure import DIRTY_SUFFIX  # noqa: E402

# A row is one model x objective x dataset, split further by precision, backend and device,
# and by every other run setting that can change a number (settings.RESULT_SETTINGS: steps,
# batch size, lr, eval samples ...; model, objective and trainer options are in the labels):
# numbers measured under different conditions are never averaged together. The "settings"
# column (attach_settings) names the settings in which the runs of one model x objective x
# dataset differ ("lr=0.0003"); it is "" where they share them all, and then nothing shows.
IDENTITY = ["model", "objective", "dataset", "precision", "backend", "device"]  # record fields
GROUP = [*IDENTITY, "settings"]
SETTING = ["model", "dataset", "precision", "backend", "device", "settings"]  # GROUP without the objective
CONFIGURATION = ["model", "objective", "settings", "precision", "backend", "device"]  # a row within one dataset
DIFFER_WITHIN = ["model", "objective", "dataset"]  # where attach_settings looks for differing settings


@dataclass(frozen=True)
class Inputs:
    """The records a report shows and where its figures go."""

    frame: pd.DataFrame  # every record of the completed runs, with "settings" and "group" columns
    result_dirs: tuple[Path, ...]
    figures: Path  # where sections save their figures
    out_dir: Path  # figures are linked relative to it

    @cached_property
    def final(self) -> pd.DataFrame:
        """The end-of-run records (step None)."""
        return self.frame[self.frame["step"].isna()]

    @cached_property
    def verdicts(self) -> dict:
        """run id -> its Verdict (report/verdicts.py: failure rules, "not learned"), judged once
        per report for every section."""
        from genbench.report.verdicts import run_verdicts  # it builds on this module: imported when first used
        return run_verdicts(self.frame)


def short(metric: str) -> str:
    """'quality/fid' -> 'fid'."""
    return metric.split("/", 1)[1]


def by_metric_fn(final: pd.DataFrame, name: str) -> pd.DataFrame:
    """The records of the registered metric `name`."""
    return final[final["provenance"].map(lambda p: p.get("metric_fn") == name)]


def binarised(provenance: dict) -> bool:
    """Scored on binarised data (Bernoulli decoders): bits/dim of a different problem than
    the 8-bit levels, never ranked beside them."""
    return "binaris" in str(provenance.get("convention", ""))


def better_label(record: pd.Series) -> str:
    """' (higher is better)' or ' (lower is better)' for a record's value, as its producer
    declares it ('' for neither)."""
    sign = sign_of(producer_of(record["metric"], record["provenance"]), record["metric"], record["unit"])
    return {1: " (higher is better)", -1: " (lower is better)"}.get(sign, "")


DIRTY = DIRTY_SUFFIX  # measure.git_commit's suffix for a checkout with uncommitted changes
DIRTY_MARK = "✱ modified"


def short_commit(commit: str) -> str:
    """'1a4d6ecad82a...-dirty' -> '1a4d6ec ✱ modified'; 'unknown' as it is."""
    if commit in (None, "unknown"):
        return "unknown"
    base = commit.removesuffix(DIRTY)[:7]
    return f"{base} {DIRTY_MARK}" if commit.endswith(DIRTY) else base


def configuration_label(key: tuple, final: pd.DataFrame) -> str:
    """A CONFIGURATION key as a short label: the model and objective names, with only those of
    their options (and the settings, precision, backend, device) that differ between the rows
    of its table -- "gan · wgan (n_critic=5)" rather than "wgan{eval_every=50,eval_samples=500,n_critic=5}"."""
    parts = []
    for column, value in zip(CONFIGURATION, key):
        values = final[column].dropna().unique()
        if column in ("model", "objective"):
            name, options = split_label(str(value))
            shared = set.intersection(*(set(split_label(str(v))[1]) for v in values))
            own = [o for o in options if o not in shared]
            parts.append(name + (f" ({', '.join(own)})" if own else ""))
        elif value and len(values) > 1:
            parts.append(str(value))
    return " · ".join(parts) or str(key[0])


def split_label(text: str) -> tuple[str, list[str]]:
    """'wgan{eval_every=50,n_critic=5}' -> ('wgan', ['eval_every=50', 'n_critic=5']); '[...]' alike."""
    for open_, close in ("{}", "[]"):
        if open_ in text and text.endswith(close):
            name, inner = text[:-1].split(open_, 1)
            return name, [o for o in inner.split(",") if o]
    return text, []


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


def run_settings(provenance: dict) -> dict:
    """The result-changing settings of a run, from its run/complete record's provenance."""
    return result_settings(((provenance or {}).get("config") or {}).get("run") or {})


def attach_settings(frame: pd.DataFrame) -> pd.DataFrame:
    """Add the "settings" column (GROUP's last key) and the "group" label to every record.

    "settings" names, for each run, the RESULT_SETTINGS in which the runs of its model x
    objective x dataset differ, with this run's values ("lr=0.0003, steps=200"); "" where those
    runs share every setting. Within a model x objective x dataset, equal labels mean equal
    settings, so grouping by GROUP never pools runs of different settings as if they were
    seeds. "group" is GROUP as text, the settings appended only when there are some (so that
    a report whose runs share their settings reads, and names its figures, as before)."""
    complete = frame[frame["metric"] == COMPLETE_METRIC]
    if complete.empty:  # no completion markers: nothing to tell runs apart by
        frame["settings"] = ""
        frame["group"] = frame[IDENTITY].astype(str).agg(" | ".join, axis=1)
        return frame
    settings = {run_id: run_settings(prov) for run_id, prov in zip(complete["run_id"], complete["provenance"])}
    where = dict(zip(complete["run_id"], complete[DIFFER_WITHIN].astype(str).agg(" | ".join, axis=1)))
    members: dict[str, list[dict]] = {}
    for run_id, row in where.items():
        members.setdefault(row, []).append(settings[run_id])
    differing = {row: [n for n in RESULT_SETTINGS if len({repr(s[n]) for s in runs}) > 1]
                 for row, runs in members.items()}
    labels = {run_id: settings_text({n: settings[run_id][n] for n in differing[row]}) for run_id, row in where.items()}
    frame["settings"] = frame["run_id"].map(labels).fillna("")
    frame["group"] = (frame[IDENTITY].astype(str).agg(" | ".join, axis=1)
                      + frame["settings"].map(lambda s: f" | {s}" if s else ""))
    return frame


def setting_values(setting: tuple) -> list:
    """A SETTING tuple without its settings entry when that is empty: titles and figure
    names read as they did before settings were part of the key."""
    values = list(setting)
    return values if values[-1] else values[:-1]
