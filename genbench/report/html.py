"""report.html beside report.md: one self-contained page, readable offline.

The markdown stays the source of truth; this module converts it, so the two never
disagree: markdown-it-py (CommonMark with GitHub tables) with raw HTML disabled, and links,
autolinks and link definitions off -- record strings such as "p(x_i | x_<i)" or a dataset
folder name stay text, never markup or a link. A Jinja2 template (templates/report.html.j2)
lays out the page: the title, a header block repeating the provenance that makes the numbers
comparable (versions, commits, devices; taken from the records), a table of contents, the
report, and the stylesheet and the table-sorting script inline. Every image report.md
references is embedded as a data: URI (and only those: a run folder holds more artefacts
than the report shows).

Image paths come from records, which may come from someone else's results folder, and
the page gets shared: an image is shown only if it resolves (symlinks followed) inside
the results folders being reported or the report's own figures, is a PNG or JPEG by its
signature bytes, and is at most MAX_IMAGE_BYTES (5 MiB); anything else is a missing
figure with a warning (read_image, checked_links -- which also vets report.md).

The page's script honours `#sort=TABLE,COLUMN[,desc]` on load (tables counted from 0 in
document order) and records on <body> how many images decoded, so a headless browser's
DOM dump can show both (tests/report/test_report_html.py).
"""

from __future__ import annotations

import base64
import html
import re
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from typing import Iterable

import jinja2
import pandas as pd
from markdown_it import MarkdownIt
from markdown_it.token import Token
from markupsafe import Markup

from genbench.harness.store import write_text_atomic
from genbench.report.tables import versions_text

HTML_FILE = "report.html"
TEMPLATES = Path(__file__).with_name("templates")


def write_html_report(markdown_path: Path, frame: pd.DataFrame, roots: Iterable[Path]) -> Path:
    """Write report.html next to `markdown_path` (whole or not at all), images resolved
    relative to it and embedded only from inside `roots` (see read_image)."""
    markdown_path = Path(markdown_path)
    tokens, env = parse(markdown_path.read_text(), markdown_path.parent, roots)
    split = title_end(tokens)
    path = markdown_path.with_name(HTML_FILE)
    write_text_atomic(path, page(report_title(tokens), render(tokens[split:], env), heading=render(tokens[:split], env),
                                 provenance=provenance_rows(frame), toc=table_of_contents(tokens)))
    return path


def page(title: str, body: str, heading: str = "", provenance: list[tuple[str, str]] | None = None,
         toc: list[tuple[str, str]] | None = None) -> str:
    """The whole document (templates/report.html.j2): no external stylesheet, script, font or
    image. `heading` and `body` are HTML; every other argument is text."""
    return template().render(title=title, heading=Markup(heading), body=Markup(body),
                             provenance=provenance or [], toc=toc or [])


@cache
def template() -> jinja2.Template:
    loader = jinja2.FileSystemLoader(TEMPLATES)
    env = jinja2.Environment(loader=loader, autoescape=True, undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True)
    return env.get_template("report.html.j2")


# --- markdown -> HTML -------------------------------------------------------------------

def markdown_to_html(text: str, base_dir: Path, roots: Iterable[Path] | None = None) -> str:
    """Convert markdown; images are read relative to `base_dir` and embedded when
    read_image allows them (inside `roots`, default `base_dir`)."""
    tokens, env = parse(text, base_dir, roots)
    return render(tokens, env)


def parse(text: str, base_dir: Path, roots: Iterable[Path] | None = None) -> tuple[list[Token], dict]:
    """The markdown's tokens (headings with unique ids), and the render environment that
    says where its images may come from."""
    images = Images(Path(base_dir), tuple(Path(r) for r in (roots if roots is not None else [base_dir])))
    env = {"images": images}
    return converter().parse(text, env), env


def render(tokens: list[Token], env: dict) -> str:
    md = converter()
    return md.renderer.render(tokens, md.options, env)


@cache
def converter() -> MarkdownIt:
    """CommonMark plus GitHub tables; raw HTML is escaped, links are text; images go
    through render_image, tables get the sortable wrapper, headings unique ids."""
    md = MarkdownIt("commonmark", {"html": False}).enable("table").disable(["link", "autolink", "reference"])
    md.normalizeLink = lambda url: url  # image paths are read as written, never emitted
    md.core.ruler.push("heading_ids", heading_ids)
    md.add_render_rule("image", render_image)
    md.add_render_rule("table_open", lambda self, tokens, idx, options, env:
                       '<div class="table-wrap"><table class="sortable">\n')
    md.add_render_rule("table_close", lambda self, tokens, idx, options, env: "</table></div>\n")
    md.add_render_rule("softbreak", lambda self, tokens, idx, options, env: " ")  # a wrapped line is one line
    return md


def heading_ids(state) -> None:
    """Give every heading a unique id (its slug), so the table of contents and URLs can point at it."""
    slugs: set[str] = set()
    for i, token in enumerate(state.tokens):
        if token.type == "heading_open":
            token.attrSet("id", unique_slug(state.tokens[i + 1].content, slugs))


def unique_slug(text: str, slugs: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"
    slug, n = base, 1
    while slug in slugs:
        n += 1
        slug = f"{base}-{n}"
    slugs.add(slug)
    return slug


def render_image(self, tokens: list[Token], idx: int, options, env: dict) -> str:
    """An <img> carrying the file's bytes; a visible note (and a warning) where the file
    is missing or may not be embedded."""
    token = tokens[idx]
    alt = self.renderInlineAsText(token.children or [], options, env)
    src = str(token.attrGet("src") or "").strip()
    try:
        mime, data = env["images"].read(src)
    except ValueError as why:
        warn_not_shown(src, why)
        return f'<span class="missing">[image not found: {html.escape(src)}] ({html.escape(str(why))})</span>'
    encoded = base64.b64encode(data).decode("ascii")
    return f'<img src="data:{mime};base64,{encoded}" alt="{html.escape(alt)}" title="{html.escape(src)}">'


def title_end(tokens: list[Token]) -> int:
    """Index after the first top-level heading (the report's title), 0 without one."""
    for i, token in enumerate(tokens):
        if token.type == "heading_close" and token.tag == "h1":
            return i + 1
    return 0


def report_title(tokens: list[Token]) -> str:
    end = title_end(tokens)
    return tokens[end - 2].content if end else "genbench report"


def table_of_contents(tokens: list[Token]) -> list[tuple[str, str]]:
    """(id, text) of the second-level sections: the report is long."""
    return [(t.attrGet("id"), tokens[i + 1].content) for i, t in enumerate(tokens)
            if t.type == "heading_open" and t.tag == "h2"]


# --- which images may be shown ------------------------------------------------------------

MAX_IMAGE_BYTES = 5 * 2**20  # genbench's figures are well under 1 MiB; base64 adds a third in report.html
IMAGE_TYPES = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg"}  # by signature bytes
LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)]*)\)")
LINK_DEFINITION = re.compile(r"^( {0,3})(\[[^\]]+\]:)", re.MULTILINE)
RAW_TAG = re.compile(r"<(?=[A-Za-z/!?])[^<>\n]*>")


@dataclass(frozen=True)
class Images:
    """Where a report's images come from: paths relative to `base`, read only from inside
    `roots` (the results folders being reported, and the report's own figures)."""

    base: Path
    roots: tuple[Path, ...]

    def read(self, src: str) -> tuple[str, bytes]:
        return read_image(self.base / src, self.roots)


def read_image(path: Path, roots: Iterable[Path]) -> tuple[str, bytes]:
    """(MIME type, bytes) of an image a report may show: after resolving symlinks it lies
    inside one of `roots`, is a regular file of at most MAX_IMAGE_BYTES, and is a PNG or
    JPEG by its first bytes. Anything else raises ValueError saying why: a results folder
    from someone else must not pull other local files into a report that gets shared."""
    resolved = Path(path).resolve()  # ValueError for a NUL byte: refused as well
    if not any(resolved.is_relative_to(Path(root).resolve()) for root in roots):
        raise ValueError("it is outside the results folders")
    if not resolved.is_file():  # also no FIFO or device, which could block or never end
        raise ValueError("no such file")
    try:
        with open(resolved, "rb") as f:
            data = f.read(MAX_IMAGE_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"it cannot be read: {exc.strerror or exc}") from None
    if len(data) > MAX_IMAGE_BYTES:
        raise ValueError(f"it is larger than {MAX_IMAGE_BYTES // 2**20} MiB")
    mime = next((m for signature, m in IMAGE_TYPES.items() if data.startswith(signature)), None)
    if mime is None:
        raise ValueError("it is not a PNG or JPEG image")
    return mime, data


def checked_links(text: str, images: Images) -> str:
    """Markdown whose images are all ones read_image allows (any other becomes a note that
    the figure is missing, with a warning) and which links nowhere else: report.md is
    shared, and record strings in it must not point at files outside the results folders
    (links, link definitions and raw HTML tags from them are escaped to plain text)."""

    def check(m: re.Match) -> str:
        bang, alt, src = m.group(1), m.group(2), m.group(3).strip()
        if not bang:
            return "\\" + m.group(0)  # genbench writes no links: one from a record is shown as text
        try:
            images.read(src)
        except ValueError as why:
            warn_not_shown(src, why)
            return f"*[missing figure: {plain(alt)} (`{plain(src)}`): {why}]*"
        return m.group(0)

    text = LINK_DEFINITION.sub(r"\1\\\2", text)
    text = RAW_TAG.sub(lambda m: "\\" + m.group(0), text)
    return LINK.sub(check, text)


def warn_not_shown(src: str, why: ValueError) -> None:
    warnings.warn(f"report: figure {src!r} is not shown: {why}.", stacklevel=3)


def plain(text: str) -> str:
    """Record text that cannot become a link, tag, code span or table cell in markdown."""
    return re.sub(r"[\x00-\x1f\[\]()`|\\<>!]", "?", text)[:200]


# --- header block -----------------------------------------------------------------------

def provenance_rows(frame: pd.DataFrame) -> list[tuple[str, str]]:
    """Generation time, then what every number depends on, from the records themselves:
    the measurement window, commits, versions, devices, backends and precisions."""
    rows = [("generated", datetime.now(timezone.utc).isoformat(timespec="seconds")),
            ("runs", str(frame["run_id"].nunique()))]
    stamps = frame["timestamp"].dropna().astype(str)
    if not stamps.empty:
        rows.append(("measured", f"{stamps.min()} to {stamps.max()}"))
    commits = sorted({str(c) for c in frame["git_commit"].dropna()})
    rows.append(("git commit" + ("s" if len(commits) > 1 else ""),
                 "; ".join(commits) or "unknown (not run from a git checkout)"))
    rows.append(("versions", "; ".join(sorted({versions_text(v) for v in frame["versions"]
                                                if isinstance(v, dict)})) or "unknown"))
    for column in ("device", "backend", "precision"):
        rows.append((column + "s", "; ".join(sorted({str(v) for v in frame[column].dropna()})) or "unknown"))
    return rows
