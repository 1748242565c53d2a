"""report.md and report.html show only images inside the results folders being reported:
records from someone else's results folder must not pull other local files into a report
that then gets shared. Refused figures are shown as missing, with a warning."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from genbench.report import render_report
from genbench.report.html import MAX_IMAGE_BYTES, markdown_to_html
from genbench.harness.store import append_records
from tests.report.test_report_html import parse, png, record

SECRET_TEXT = b"SECRET-hostname-1234\n"
# A link or image in markdown that is not backslash-escaped (written independently of the module's pattern).
MARKDOWN_LINK = re.compile(r"(?<!\\)(!?)\[([^\]]*)\]\(([^)]*)\)")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """A results folder whose run/complete record names artefacts that are outside it,
    not images, too large -- and one legitimate grid."""
    base = tmp_path_factory.mktemp("embedding")
    secret_png = png(base / "outside" / "secret.png", shade=10)  # a real image, but not theirs to share
    (base / "outside" / "hostname").write_bytes(SECRET_TEXT)
    root = base / "results"
    run = root / "runs" / "r0"
    good = png(run / "samples.png", shade=200)
    (run / "link.png").symlink_to(base / "outside" / "secret.png")
    (run / "fake.png").write_bytes(SECRET_TEXT)  # named .png, holds text
    (run / "big.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(MAX_IMAGE_BYTES))  # a PNG signature, over the bound
    artefacts = {
        "absolute": str(base / "outside" / "secret.png"),
        "etc": "/etc/hostname",
        "traversal": "../outside/hostname",
        "deep_traversal": "../../../../../../../../etc/os-release",
        "symlink": "runs/r0/link.png",
        "not_an_image": "runs/r0/fake.png",
        "oversized": "runs/r0/big.png",
        "good": "runs/r0/samples.png",
    }
    injected = f"see [this](/etc/hostname) ![x]({base}/outside/secret.png) <img src=\"/etc/hostname\">\n[ref]: /etc/x"
    append_records(root / "results.jsonl", [
        record("r0", "ns", 0, "quality/fid", 9.0, "fid", metric_fn="quality", samples=injected),
        record("r0", "ns", 0, "run/diverged", 0.0, "bool"),
        record("r0", "ns", 0, "run/complete", 1.0, "bool", artefacts=artefacts, kernel_backends={},
               dataset={"content_hash": "h", "n_train": 1, "n_test": 1}, config={"run": {"steps": 1}}),
    ])
    with pytest.warns(UserWarning) as caught:
        md = render_report([root])
    return {"root": root, "md": md.read_text(), "html": md.with_name("report.html").read_text(),
            "warnings": [str(w.message) for w in caught], "artefacts": artefacts, "good": good,
            "secret_png": secret_png}


REFUSED = ["absolute", "etc", "traversal", "deep_traversal", "symlink", "not_an_image", "oversized"]


@pytest.mark.parametrize("name", REFUSED)
def test_refused_artefact_is_a_missing_figure_with_a_warning(hostile, name):
    src = hostile["artefacts"][name]
    assert f"*[missing figure: {name} " in hostile["md"]  # shown as missing in report.md ...
    assert f"missing figure: {name} " in hostile["html"]  # ... and in report.html
    # ... and said on stderr, naming the file (as report.md points at it: relative to the report)
    assert any(Path(src).name in w and "is not shown" in w for w in hostile["warnings"])


def test_report_md_links_only_files_inside_the_results_folder(hostile):
    root = hostile["root"].resolve()
    links = MARKDOWN_LINK.findall(hostile["md"])
    assert links, "the report links its own figures and the good artefact"
    for bang, _, src in links:
        assert bang == "!", f"a plain link survived: {src}"
        assert (root / src).resolve().is_relative_to(root), src
    assert "![good](runs/r0/samples.png)" in hostile["md"]
    assert not re.search(r"(?<!\\)<img", hostile["md"]) and not re.search(r"^\[ref\]:", hostile["md"], re.M)


def test_report_html_embeds_the_legitimate_grid_and_nothing_refused(hostile):
    images = parse(hostile["html"]).images
    embedded = [base64.b64decode(img["src"].split(",", 1)[1]) for img in images]
    assert all(img["src"].startswith("data:image/png;base64,") for img in images)
    assert hostile["good"] in embedded
    assert hostile["secret_png"] not in embedded
    assert all(SECRET_TEXT not in data for data in embedded)
    assert all(len(data) <= MAX_IMAGE_BYTES for data in embedded)
    assert SECRET_TEXT.decode().strip() not in hostile["html"]


def test_html_converter_refuses_on_its_own(tmp_path):
    """report.html's embedding is checked too, not only report.md's links."""
    root = tmp_path / "results"
    good = png(root / "ok.png")
    secret = png(tmp_path / "secret.png", shade=10)
    (root / "fake.jpg").write_bytes(b"GIF89a not a png or jpeg")
    text = "# t\n\n![ok](ok.png) ![out](../secret.png) ![abs](" + str(tmp_path / "secret.png") + ") ![fake](fake.jpg)"
    with pytest.warns(UserWarning, match="is not shown") as caught:
        out = markdown_to_html(text, root, [root])
    embedded = [base64.b64decode(img["src"].split(",", 1)[1]) for img in parse(out).images]
    assert embedded == [good] and secret not in embedded
    assert len(caught) == 3 and out.count('class="missing"') == 3
    assert "outside the results folders" in out and "not a PNG or JPEG image" in out
