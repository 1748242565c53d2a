"""report.html beside report.md: one self-contained page, readable offline.

The markdown stays the source of truth; this module converts it, so the two never
disagree. Every image report.md references is embedded as a data: URI (and only those:
a run folder holds more artefacts than the report shows), the stylesheet and the
table-sorting script are inline, and a header block repeats the provenance that makes
the numbers comparable (versions, commits, devices), taken from the records.

Image paths come from records, which may come from someone else's results folder, and
the page gets shared: an image is shown only if it resolves (symlinks followed) inside
the results folders being reported or the report's own figures, is a PNG or JPEG by its
signature bytes, and is at most MAX_IMAGE_BYTES (5 MiB); anything else is a missing
figure with a warning (read_image, checked_links -- which also vets report.md).

The converter covers the markdown subset the report writer emits (headings, paragraphs,
lists, GitHub pipe tables, images, code spans, bold and italics) and escapes all other
text. A general markdown library was not used because it passes raw HTML through: record
strings such as "p(x_i | x_<i)" or a dataset folder name would become markup.

The page's script honours `#sort=TABLE,COLUMN[,desc]` on load (tables counted from 0 in
document order) and records on <body> how many images decoded, so a headless browser's
DOM dump can show both (tests/harness/test_report_html.py).
"""

from __future__ import annotations

import base64
import html
import re
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

import pandas as pd

from genbench.harness.store import write_text_atomic
from genbench.report.tables import versions_text

HTML_FILE = "report.html"

HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
LIST_ITEM = re.compile(r"^\s{0,3}(?:([-*+])|(\d+)[.)])\s+(.*)$")
TABLE_SEPARATOR = re.compile(r"^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$")
# Inline pieces that must not be touched by escaping or emphasis: code spans, images and
# backslash escapes. They are swapped for placeholders first, then put back.
INLINE_TOKEN = re.compile(r"`([^`]+)`|!\[([^\]]*)\]\(([^)]+)\)|\\([\\`*_{}\[\]()#+\-.!|<>])")
BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
ITALIC = re.compile(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?![\w*])")
PLACEHOLDER = re.compile("\x00(\\d+)\x00")
CELL_SPLIT = re.compile(r"(?<!\\)\|")


def write_html_report(markdown_path: Path, frame: pd.DataFrame, roots: Iterable[Path]) -> Path:
    """Write report.html next to `markdown_path` (whole or not at all), images resolved
    relative to it and embedded only from inside `roots` (see read_image)."""
    markdown_path = Path(markdown_path)
    text = markdown_path.read_text()
    body = markdown_to_html(text, markdown_path.parent, roots)
    body = body.replace("</h1>", "</h1>\n" + provenance_header(frame) + table_of_contents(body), 1)
    path = markdown_path.with_name(HTML_FILE)
    write_text_atomic(path, page(report_title(text), body))
    return path


def report_title(text: str) -> str:
    return next((m.group(2) for line in text.splitlines() if (m := HEADING.match(line)) and m.group(1) == "#"),
                "genbench report")


# --- markdown -> HTML -------------------------------------------------------------------

def markdown_to_html(text: str, base_dir: Path, roots: Iterable[Path] | None = None) -> str:
    """Convert the report's markdown subset; images are read relative to `base_dir` and
    embedded when read_image allows them (inside `roots`, default `base_dir`)."""
    images = Images(Path(base_dir), tuple(Path(r) for r in (roots if roots is not None else [base_dir])))
    lines = text.splitlines()
    blocks, slugs, i = [], set(), 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif m := HEADING.match(line):
            blocks.append(heading(len(m.group(1)), m.group(2), images, slugs))
            i += 1
        elif i + 1 < len(lines) and line.lstrip().startswith("|") and TABLE_SEPARATOR.match(lines[i + 1]):
            end = block_end(lines, i + 2, lambda s: s.lstrip().startswith("|"))
            blocks.append(table(lines[i], lines[i + 1], lines[i + 2:end], images))
            i = end
        elif LIST_ITEM.match(line):
            end = block_end(lines, i + 1, lambda s: bool(LIST_ITEM.match(s)) or s.startswith((" ", "\t")))
            blocks.append(list_block(lines[i:end], images))
            i = end
        else:
            end = block_end(lines, i + 1, lambda s: not starts_block(s))
            blocks.append(f"<p>{inline(' '.join(s.strip() for s in lines[i:end]), images)}</p>")
            i = end
    return "\n".join(blocks)


def block_end(lines: list[str], start: int, continues) -> int:
    """Index of the first line from `start` that is blank or does not continue the block."""
    i = start
    while i < len(lines) and lines[i].strip() and continues(lines[i]):
        i += 1
    return i


def starts_block(line: str) -> bool:
    return bool(HEADING.match(line) or LIST_ITEM.match(line) or line.lstrip().startswith("|"))


def heading(level: int, text: str, images: Images, slugs: set[str]) -> str:
    """A heading with a unique id, so the table of contents and URLs can point at it."""
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"
    slug, n = base, 1
    while slug in slugs:
        n += 1
        slug = f"{base}-{n}"
    slugs.add(slug)
    return f'<h{level} id="{slug}">{inline(text, images)}</h{level}>'


def split_row(line: str) -> list[str]:
    """Cells of a pipe-table row; `\\|` is a literal pipe inside a cell (GitHub's rule)."""
    row = line.strip()
    row = row[1:] if row.startswith("|") else row
    row = row[:-1] if row.endswith("|") and not row.endswith("\\|") else row
    return [cell.strip() for cell in CELL_SPLIT.split(row)]


def table(header: str, separator: str, rows: list[str], images: Images) -> str:
    """A sortable table; column alignment from the separator's colons. Rows with fewer
    cells are padded; surplus cells (an unescaped pipe in a cell) are kept in the last
    column rather than dropped, so no value disappears from the page."""
    titles = split_row(header)
    aligns = [alignment(s) for s in split_row(separator)] + [""] * len(titles)
    head = "".join(f"<th{aligns[j]}>{inline(t, images)}</th>" for j, t in enumerate(titles))
    body = []
    for line in rows:
        cells = fit_cells(split_row(line), len(titles))
        body.append("<tr>" + "".join(f"<td{aligns[j]}>{inline(c, images)}</td>" for j, c in enumerate(cells))
                    + "</tr>")
    return ('<div class="table-wrap"><table class="sortable">\n<thead><tr>' + head + "</tr></thead>\n<tbody>\n"
            + "\n".join(body) + "\n</tbody></table></div>")


def fit_cells(cells: list[str], n: int) -> list[str]:
    if len(cells) > n:
        return cells[:n - 1] + [" | ".join(cells[n - 1:])]
    return cells + [""] * (n - len(cells))


def alignment(separator_cell: str) -> str:
    left, right = separator_cell.startswith(":"), separator_cell.endswith(":")
    if left and right:
        return ' class="center"'
    return ' class="right"' if right else ""


def list_block(lines: list[str], images: Images) -> str:
    """A flat list; indented lines continue the item above them."""
    items: list[str] = []
    ordered = bool(LIST_ITEM.match(lines[0]).group(2))
    for line in lines:
        m = LIST_ITEM.match(line)
        if m:
            items.append(m.group(3))
        else:
            items[-1] += " " + line.strip()
    tag = "ol" if ordered else "ul"
    return f"<{tag}>\n" + "\n".join(f"<li>{inline(item, images)}</li>" for item in items) + f"\n</{tag}>"


def inline(text: str, images: Images) -> str:
    """Escape text, then apply emphasis; code spans, images and escapes go in verbatim."""
    pieces: list[str] = []

    def stash(match: re.Match) -> str:
        code, alt, src, escaped = match.groups()
        if code is not None:
            pieces.append(f"<code>{html.escape(code)}</code>")
        elif src is not None:
            pieces.append(image(alt, src.strip(), images))
        else:
            pieces.append(html.escape(escaped))
        return f"\x00{len(pieces) - 1}\x00"

    out = html.escape(INLINE_TOKEN.sub(stash, text))
    out = ITALIC.sub(r"<em>\1</em>", BOLD.sub(r"<strong>\1</strong>", out))
    return PLACEHOLDER.sub(lambda m: pieces[int(m.group(1))], out)


def image(alt: str, src: str, images: Images) -> str:
    """An <img> carrying the file's bytes; a visible note (and a warning) where the file
    is missing or may not be embedded."""
    try:
        mime, data = images.read(src)
    except ValueError as why:
        warn_not_shown(src, why)
        return f'<span class="missing">[image not found: {html.escape(src)}] ({html.escape(str(why))})</span>'
    encoded = base64.b64encode(data).decode("ascii")
    return f'<img src="data:{mime};base64,{encoded}" alt="{html.escape(alt)}" title="{html.escape(src)}">'


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

def provenance_header(frame: pd.DataFrame) -> str:
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
    items = "\n".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in rows)
    return f'<dl class="provenance">\n{items}\n</dl>\n'


def table_of_contents(body: str) -> str:
    """Links to the second-level sections: the report is long."""
    links = [f'<a href="#{slug}">{title}</a>' for slug, title in re.findall(r'<h2 id="([^"]+)">(.*?)</h2>', body)]
    return '<nav class="toc">' + " · ".join(links) + "</nav>\n" if links else ""


# --- page -------------------------------------------------------------------------------

STYLE = """
:root { --fg: #1d232a; --muted: #5b6570; --line: #d7dce1; --head: #eef1f4; --zebra: #f8f9fa; --accent: #2456a6; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1280px; padding: 1.5rem 2rem 3rem; color: var(--fg); background: #fff;
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
h1 { font-size: 1.7rem; margin: 0 0 .8rem; }
h2 { font-size: 1.35rem; margin: 2.2rem 0 .6rem; padding-bottom: .2rem; border-bottom: 2px solid var(--line); }
h3 { font-size: 1.1rem; margin: 1.6rem 0 .5rem; }
a { color: var(--accent); }
code { font: .88em/1.3 ui-monospace, "DejaVu Sans Mono", monospace; background: var(--head); padding: 0 .25em;
       border-radius: 3px; }
dl.provenance { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1rem; margin: 0 0 1rem;
                padding: .7rem 1rem; background: var(--zebra); border: 1px solid var(--line); border-radius: 6px;
                font-size: .9rem; }
dl.provenance dt { font-weight: 600; color: var(--muted); }
dl.provenance dd { margin: 0; overflow-wrap: anywhere; }
nav.toc { font-size: .9rem; margin-bottom: 1rem; line-height: 1.8; }
.table-wrap { overflow-x: auto; margin: .6rem 0 1rem; border: 1px solid var(--line); border-radius: 6px; }
table { border-collapse: collapse; font-size: .82rem; width: max-content; min-width: 100%; }
th, td { padding: .3rem .6rem; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top;
         max-width: 32rem; }
th { background: var(--head); position: sticky; top: 0; cursor: pointer; user-select: none; white-space: nowrap; }
th:hover, th:focus { background: #dde3ea; outline: none; }
th[aria-sort="ascending"]::after { content: " \\25B2"; font-size: .75em; }
th[aria-sort="descending"]::after { content: " \\25BC"; font-size: .75em; }
tbody tr:nth-child(even) { background: var(--zebra); }
td.num, th.num, .right { text-align: right; font-variant-numeric: tabular-nums; }
.center { text-align: center; }
img { max-width: 100%; height: auto; vertical-align: top; margin: .3rem .4rem .3rem 0;
      border: 1px solid var(--line); border-radius: 4px; }
img.broken { outline: 3px solid #c0392b; }
.missing { color: #c0392b; font-weight: 600; }
ul, ol { padding-left: 1.4rem; }
li { margin: .1rem 0; overflow-wrap: anywhere; }
footer { margin-top: 3rem; color: var(--muted); font-size: .85rem; border-top: 1px solid var(--line); }
#image-check.warn { color: #c0392b; font-weight: 600; }
@media print { th { position: static; } .table-wrap { overflow: visible; } }
"""

SCRIPT = r"""
(function () {
  "use strict";
  // A leading number ("12.3 ± 0.4 (n=2)", "10,146", "0/2", "-inf"); a run id like
  // "1e07005c" is text, so the number must end at a space, "%", "/", ")" or the end.
  var NUMBER = /^\s*([-+]?(?:(?:\d[\d,]*(?:\.\d*)?|\.\d+)(?:e[-+]?\d+)?|inf))(?=$|[\s%\/)])/i;

  function cellText(row, column) {
    var cell = row.cells[column];
    return cell ? cell.textContent.trim() : "";
  }
  function leadingNumber(text) {
    var m = NUMBER.exec(text);
    return m ? parseFloat(m[1].replace(/,/g, "").replace(/inf/i, "Infinity")) : NaN;
  }
  function numericColumn(rows, column) {
    var seen = false;
    for (var i = 0; i < rows.length; i++) {
      var text = cellText(rows[i], column);
      if (!text) continue;
      if (isNaN(leadingNumber(text))) return false;
      seen = true;
    }
    return seen;
  }

  // Sort a table's body rows by one column; empty cells stay last either way, ties keep
  // their original order (the report's grouping).
  function sortTable(table, column, descending) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var numeric = numericColumn(rows, column);
    var keyed = rows.map(function (row, index) {
      var text = cellText(row, column);
      return { row: row, index: index, empty: !text, key: numeric ? leadingNumber(text) : text };
    });
    keyed.sort(function (a, b) {
      if (a.empty !== b.empty) return a.empty ? 1 : -1;
      var order = numeric ? (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)
        : a.key.localeCompare(b.key, undefined, { numeric: true, sensitivity: "base" });
      return (descending ? -order : order) || a.index - b.index;
    });
    keyed.forEach(function (k) { body.appendChild(k.row); });
    var headers = table.tHead.rows[0].cells;
    for (var j = 0; j < headers.length; j++) headers[j].removeAttribute("aria-sort");
    headers[column].setAttribute("aria-sort", descending ? "descending" : "ascending");
    table.setAttribute("data-sorted", column + "," + (descending ? "desc" : "asc"));
  }

  function setUp(table) {
    var rows = Array.prototype.slice.call(table.tBodies[0].rows);
    var headers = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(headers, function (th, column) {
      th.tabIndex = 0;
      th.title = "Sort by this column";
      if (numericColumn(rows, column)) {
        th.classList.add("num");
        rows.forEach(function (row) { if (row.cells[column]) row.cells[column].classList.add("num"); });
      }
      function toggle() { sortTable(table, column, th.getAttribute("aria-sort") === "ascending"); }
      th.addEventListener("click", toggle);
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); toggle(); }
      });
    });
  }

  // "#sort=TABLE,COLUMN[,desc]": a sorted view that can be linked to (and tested).
  function sortFromHash(tables) {
    var m = /^#sort=(\d+),(\d+)(?:,(asc|desc))?$/.exec(window.location.hash);
    if (!m) return;
    var table = tables[+m[1]];
    if (table && +m[2] < table.tHead.rows[0].cells.length) sortTable(table, +m[2], m[3] === "desc");
  }

  // Record how many embedded images decoded: a broken data: URI is otherwise easy to miss.
  function checkImages() {
    var images = Array.prototype.slice.call(document.images);
    var broken = images.filter(function (img) { return !(img.complete && img.naturalWidth > 0); });
    broken.forEach(function (img) { img.classList.add("broken"); });
    document.body.setAttribute("data-images-total", images.length);
    document.body.setAttribute("data-images-loaded", images.length - broken.length);
    var note = document.getElementById("image-check");
    if (!note) return;
    note.textContent = broken.length
      ? broken.length + " of " + images.length + " embedded images failed to decode: "
        + broken.map(function (img) { return img.title; }).join(", ")
      : "All " + images.length + " embedded images decoded.";
    note.className = broken.length ? "warn" : "ok";
  }

  var tables = document.querySelectorAll("table.sortable");
  Array.prototype.forEach.call(tables, setUp);
  sortFromHash(tables);
  window.addEventListener("hashchange", function () { sortFromHash(tables); });
  if (document.readyState === "complete") checkImages();
  else window.addEventListener("load", checkImages);
})();
"""


def page(title: str, body: str) -> str:
    """The whole document: no external stylesheet, script, font or image."""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n{body}\n</main>\n"
        '<footer>\n<p id="image-check">Image check needs JavaScript.</p>\n'
        "<p>Self-contained HTML rendering of report.md (figures embedded). Click a column header to sort a "
        "table; append #sort=TABLE,COLUMN[,desc] to the address to open a sorted view.</p>\n</footer>\n"
        f"<script>{SCRIPT}</script>\n</body>\n</html>\n"
    )
