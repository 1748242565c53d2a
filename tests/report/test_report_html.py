"""report.html: the markdown conversion (no browser), the page render_report writes, and
that page as headless Chromium shows it (scripts run, images decode, sorting works)."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from genbench.report import render_report
from genbench.report.html import markdown_to_html, page
from genbench.report.tables import markdown_table
from genbench.harness.store import SCHEMA_VERSION, append_records

# fid per objective (seed 0, seed 1). Their cells sort differently by leading number
# ("1,234,567" > "9.6" > "9.25"), as text ("9.6" > "9.25" > "1,234,567"), by digit runs
# ("9.25" > "9.6": 25 > 6) and by a number read without its thousands separators (1).
FID = {"hinge": (9.5, 9.7), "ns": (9.2, 9.3), "wgan": (1234566.0, 1234568.0)}
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def png(path: Path, size: int = 24, shade: int = 90) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), (shade, 30, 200 - shade)).save(path)
    return path.read_bytes()


def record(run_id, objective, seed, metric, value, unit, step=None, **provenance):
    return {
        "schema_version": SCHEMA_VERSION, "run_id": run_id, "attempt": "a" + run_id, "suite": "html-test",
        "model": "dcgan", "objective": objective, "dataset": "digits", "seed": seed, "step": step,
        "metric": metric, "value": value, "unit": unit, "backend": "torch", "device": "cpu: test (2 threads)",
        "precision": "fp32", "versions": {"torch": "2.9.9", "triton": None, "genbench": "0.1.0",
                                          "python": "3.11", "numpy": "2.0"},
        "git_commit": COMMIT, "timestamp": f"2025-01-0{seed + 1}T00:00:00+00:00", "provenance": provenance,
    }


def synthetic_run(root: Path, objective: str, seed: int) -> list[dict]:
    """A finished run: a loss curve, FID, status records and a sample grid on disk."""
    run_id = f"{objective}-{seed}"
    png(root / "runs" / run_id / "samples.png", shade=40 * seed + 60)
    curve = [record(run_id, objective, seed, "train/loss", 1.0 / (s + 1), "loss", step=s) for s in range(5)]
    return curve + [
        record(run_id, objective, seed, "quality/fid", FID[objective][seed], "fid", metric_fn="quality",
               samples="generator output; p(x_i | x_<i) & co"),
        record(run_id, objective, seed, "run/diverged", 0.0, "bool"),
        record(run_id, objective, seed, "run/complete", 1.0, "bool",
               artefacts={"samples": f"runs/{run_id}/samples.png"}, kernel_backends={},
               dataset={"content_hash": "h", "n_train": 100, "n_test": 20}, config={"run": {"steps": 5}}),
    ]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    """report.md and report.html from render_report over three objectives x two seeds."""
    root = tmp_path_factory.mktemp("html-report")
    append_records(root / "results.jsonl", [r for objective in FID for seed in (0, 1)
                                            for r in synthetic_run(root, objective, seed)])
    return render_report([root]).with_name("report.html")


class PageParser(HTMLParser):
    """Tables (rows of cell texts), <img> attributes, headings and <body> attributes."""

    def __init__(self):
        super().__init__()
        self.tables, self.images, self.headings, self.body = [], [], [], {}
        self.title, self._text, self._in = "", None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th", "h1", "h2", "h3", "title"):
            self._text, self._in = [], tag
        elif tag == "img":
            self.images.append(attrs)
        elif tag == "body":
            self.body = attrs

    def handle_data(self, data):
        if self._text is not None:
            self._text.append(data)

    def handle_endtag(self, tag):
        if tag != self._in:
            return
        text = "".join(self._text).strip()
        if tag in ("td", "th"):
            self.tables[-1][-1].append(text)
        elif tag == "title":
            self.title = text
        else:
            self.headings.append((tag, text))
        self._text = self._in = None


def parse(html_text: str) -> PageParser:
    parser = PageParser()
    parser.feed(html_text)
    return parser


# --- conversion, no browser -------------------------------------------------------------

def test_markdown_subset_converts_to_escaped_html_with_embedded_images(tmp_path):
    grid = png(tmp_path / "figures" / "grid.png")
    text = "\n".join([
        "# Report <title>", "", "## Results", "", "Some **bold**, *italic* and `a*b*<c>` text;",
        "a <script>alert(1)</script> stays text.", "",
        "| model | fid | note |", "|-------|----:|------|",
        "| a     | 12.3 ± 0.4 (n=2) | p(x \\| y) |", "| b | 9 (n=1) |", "| c | 1 | x | surplus |", "",
        "- `fid`: fid", "- seed: 0; 1", "  continued", "", "### Figures", "",
        "![sample grid](figures/grid.png) ![gone](figures/missing.png)", "", "## Results",
    ])
    with pytest.warns(UserWarning, match="'figures/missing.png' is not shown: no such file"):
        out = markdown_to_html(text, tmp_path)
    parsed = parse(out)

    assert parsed.headings == [("h1", "Report <title>"), ("h2", "Results"), ("h3", "Figures"), ("h2", "Results")]
    assert '<h2 id="results">' in out and '<h2 id="results-2">' in out  # unique anchors
    assert "<strong>bold</strong>" in out and "<em>italic</em>" in out
    assert "<code>a*b*&lt;c&gt;</code>" in out  # no emphasis inside code, escaped
    assert "<script>" not in out and "&lt;script&gt;alert(1)&lt;/script&gt;" in out

    assert len(parsed.tables) == 1 and 'class="sortable"' in out
    # Short rows are padded; surplus cells are dropped, as GitHub renders report.md (the report's
    # own tables escape a pipe inside a cell: test_a_pipe_in_a_cell_stays_in_its_cell).
    assert parsed.tables[0] == [["model", "fid", "note"], ["a", "12.3 ± 0.4 (n=2)", "p(x | y)"],
                                ["b", "9 (n=1)", ""], ["c", "1", "x"]]
    assert '<th style="text-align:right">fid</th>' in out  # alignment from the separator's colon

    assert "<li><code>fid</code>: fid</li>" in out and "<li>seed: 0; 1 continued</li>" in out
    (img,) = parsed.images
    assert img["alt"] == "sample grid" and img["title"] == "figures/grid.png"
    assert base64.b64decode(img["src"].removeprefix("data:image/png;base64,")) == grid
    assert "[image not found: figures/missing.png]" in out


def test_a_pipe_in_a_cell_stays_in_its_cell(tmp_path):
    """Record text with a `|` in a report table stays one cell, in report.md and report.html."""
    frame = pd.DataFrame([{"model": "a | b", "fid": "9 (n=1)"}, {"model": "c", "fid": "8 (n=1)"}])
    table = markdown_table(frame)
    assert "a \\| b" in table
    assert parse(markdown_to_html(table, tmp_path)).tables[0] == [["model", "fid"], ["a | b", "9 (n=1)"],
                                                                 ["c", "8 (n=1)"]]


def test_render_report_writes_self_contained_html(rendered):
    markdown = rendered.with_name("report.md").read_text()
    text = rendered.read_text()
    parsed = parse(text)

    assert parsed.title == "genbench report: html-test"
    sections = [line[3:] for line in markdown.splitlines() if line.startswith("## ")]
    assert [t for tag, t in parsed.headings if tag == "h2"] == sections
    assert {"Runs", "Results", "Training curves", "Samples and reconstructions", "Provenance"} <= set(sections)

    # Offline: nothing fetched, every image a data: URI, one per markdown image reference.
    assert not re.search(r"<link|<script\s+src|@import|url\(|(src|href)=\"(https?:|//)", text)
    references = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert [img["title"] for img in parsed.images] == references
    for img in parsed.images:
        mime, data = img["src"].split(",", 1)
        assert mime == "data:image/png;base64"
        assert base64.b64decode(data) == (rendered.parent / img["title"]).read_bytes()

    # Provenance header from the records, and the report's own provenance section.
    header = text.split('<dl class="provenance">')[1].split("</dl>")[0]
    for fact in ("generated", COMMIT, "torch 2.9.9", "genbench 0.1.0", "cpu: test (2 threads)", "fp32", "torch"):
        assert fact in header
    assert '<a href="#provenance">Provenance</a>' in text
    assert "p(x_i | x_&lt;i) &amp; co" in text  # record strings are text, not markup
    runs = next(t for t in parsed.tables if t[0][:2] == ["model", "objective"] and "failed" in t[0])
    assert sorted(row[1] for row in runs[1:]) == sorted(FID)


# --- in a browser -----------------------------------------------------------------------

def chromium() -> str:
    """The browser, or a skip outside CI; in CI a missing browser fails, so the check
    cannot silently disappear."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe:
        return exe
    if os.environ.get("CI", "").lower() not in ("", "0", "false"):
        pytest.fail("chromium is not installed but CI is set: .ci/run installs Debian's chromium package "
                    "(apt-get install -y chromium); the report.html browser check must run in CI.")
    pytest.skip("chromium not installed (apt-get install -y chromium); the report.html browser check "
                "runs only where it is (and always in CI)")


def headless(exe: str, profile: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    """One headless run; the virtual-time budget lets load handlers finish before output."""
    command = [exe, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
               "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--virtual-time-budget=5000", *args, url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def test_report_html_in_headless_chromium(rendered, tmp_path):
    exe = chromium()
    static = parse(rendered.read_text())
    index = next(i for i, t in enumerate(static.tables) if "fid" in t[0])
    column = static.tables[index][0].index("fid")

    dom = headless(exe, tmp_path / "profile", f"{rendered.as_uri()}#sort={index},{column},desc", "--dump-dom").stdout
    parsed = parse(dom)
    assert parsed.title == "genbench report: html-test"
    assert ("h2", "Results") in parsed.headings and ("h2", "Provenance") in parsed.headings

    # The script sorted the FID table numerically, high to low, by each cell's leading number.
    fid_table = parsed.tables[index]
    assert [row[1] for row in fid_table[1:]] == ["wgan", "hinge", "ns"]
    assert [row[column].split(" ")[0] for row in fid_table[1:]] == ["1,234,567", "9.6", "9.25"]
    assert f'data-sorted="{column},desc"' in dom and 'aria-sort="descending"' in dom

    # Every embedded image decoded (naturalWidth > 0), as the page's own check reports.
    total = len(static.images)
    assert total >= 7  # distribution + 3 curve figures + 3 sample grids
    assert parsed.body.get("data-images-total") == str(total) == parsed.body.get("data-images-loaded")
    assert f"All {total} embedded images decoded." in dom

    shot = tmp_path / "report.png"
    headless(exe, tmp_path / "profile", rendered.as_uri(), f"--screenshot={shot}", "--window-size=1280,1600")
    with Image.open(shot) as image:
        assert image.size == (1280, 1600)
        grey = image.convert("L")
        assert grey.getextrema()[0] < 60  # dark text on the light page: something was drawn
        assert grey.crop((0, 0, 1280, 120)).getextrema()[0] < 60  # the title at the top


def test_image_check_flags_an_undecodable_image(tmp_path):
    """The image check is not vacuous: a corrupt PNG is counted and named."""
    exe = chromium()
    png(tmp_path / "good.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    body = markdown_to_html("# t\n\n![good](good.png) ![bad](bad.png)", tmp_path)
    path = tmp_path / "page.html"
    path.write_text(page("t", body))
    parsed = parse(headless(exe, tmp_path / "profile", path.as_uri(), "--dump-dom").stdout)
    assert parsed.body.get("data-images-total") == "2" and parsed.body.get("data-images-loaded") == "1"
