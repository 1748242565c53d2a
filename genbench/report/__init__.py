"""report.md (and figures, and report.html) from result records.

One row per model x objective x dataset -- split further by precision, backend and
device, and by every other run setting that can change a number (base.attach_settings:
a "settings" column names those that differ), because numbers measured under different
conditions are not comparable and must not be averaged together. Each metric is mean ±
std over seeds with n; a diverged run counts in the failure column and is not dropped
silently.

One module per section (SECTIONS, in report order), each with a TITLE and
`section(inputs) -> str`; which metrics get a section of their own, and which way their
values are better, the metrics declare at registration (genbench/values.py). `genbench
compare` is compare.py beside them; report.html is html.py.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from genbench.errors import GenbenchError
from genbench.harness.store import load_frame, unwritable_message, write_text_atomic
from genbench.report import (anomaly, appendix, ar_samplers, artefacts, curves, distributions, headline, likelihood,
                             performance, precision, provenance, rate_distortion, references, reproductions, results, runs,
                             samplers, stability)
from genbench.report.base import DIRTY, DIRTY_MARK, Inputs, attach_settings, short_commit
from genbench.report.html import Images, checked_links, write_html_report
from genbench.report.summary import SUMMARY_FILE, summary_csv

REPORT_FILE = "report.md"
FIGURES_DIR = "figures"
# The answer first (headline, then the distributions behind it), then the detail tables, then
# the appendix: settings and compute, curves, every sample grid, provenance.
SECTIONS = (headline, reproductions, distributions, runs, references, results, rate_distortion, samplers, likelihood, anomaly,
            ar_samplers, stability, performance, precision, appendix, curves, artefacts, provenance)


def render_report(result_dirs: list[Path], out_dir: Path | None = None) -> Path:
    """Write report.md, report.html, summary.csv and figures for the completed runs under `result_dirs`.

    Both files link or embed only images inside the results folders and the report's own
    figures (html.read_image); each is written whole or not at all. A folder that
    cannot take the report is a GenbenchError naming it, the cause and the fix.
    """
    frame = load_frame(result_dirs)
    out_dir = Path(out_dir or result_dirs[0])
    figures = out_dir / FIGURES_DIR
    attach_settings(frame)  # "settings" and "group": runs of different settings are never pooled
    inputs = Inputs(frame, tuple(result_dirs), figures, out_dir)
    try:
        figures.mkdir(parents=True, exist_ok=True)
        text = report_markdown(inputs)
    except OSError as exc:  # a figure could not be saved: read-only folder, a file in the way, full disk
        raise GenbenchError(unwritable_message(out_dir, exc, "No report was written.")) from None
    roots = (*sorted({Path(d) for d in frame["source_dir"]}), figures)  # what the report may show
    path = out_dir / REPORT_FILE
    write_text_atomic(path, checked_links(text, Images(out_dir, roots)))
    write_text_atomic(out_dir / SUMMARY_FILE, summary_csv(inputs))  # one row per group, for scripts
    write_html_report(path, frame, roots)  # report.html beside it: the same content, figures embedded
    return path


def report_markdown(inputs: Inputs) -> str:
    """The report's text; its figures are saved under inputs.figures, linked relative to inputs.out_dir."""
    sections = [f"## {module.TITLE}\n\n" + module.section(inputs) for module in SECTIONS]
    return "\n\n".join([header(inputs.frame, list(inputs.result_dirs)), *sections]) + "\n"


def header(frame: pd.DataFrame, result_dirs: list[Path]) -> str:
    suites = sorted({s for s in frame["suite"].dropna()}) or ["(ad-hoc runs)"]
    runs = frame["run_id"].nunique()
    return (
        f"# genbench report: {', '.join(suites)}\n\n"
        f"Generated {datetime.now(timezone.utc).isoformat(timespec='seconds')} from "
        f"{runs} completed runs in {', '.join(str(d) for d in result_dirs)}. "
        "The Headline section ranks each suite's configurations by the median of the headline metric over "
        "seeds; the tables after it give each cell as mean ± std over seeds (n = number of seeds). A failed "
        "run counts in every failure column (the rule that fired is named) and is not dropped.\n\n"
        + code_line(frame)
    )


def code_line(frame: pd.DataFrame) -> str:
    """Which code made the runs: the commit(s), with run counts, and whether any run came from
    a working tree with uncommitted changes (its code is not the commit's)."""
    per_run = frame.drop_duplicates("run_id")["git_commit"].fillna("unknown")
    counts = per_run.map(short_commit).value_counts().sort_index()
    listed = ", ".join(f"`{commit}` ({n} run{'s' * (n != 1)})" for commit, n in counts.items())
    text = (f"Code: {listed}." if len(counts) == 1 else
            f"Code: these runs come from {len(counts)} commits: {listed}. The Runs table names each row's.")
    dirty = int(per_run.str.endswith(DIRTY).sum())
    if dirty:
        text += (f" {dirty} of {len(per_run)} runs were made from a working tree with uncommitted changes "
                 f"({DIRTY_MARK} in the Runs table): no commit holds the code that made them.")
    return text
