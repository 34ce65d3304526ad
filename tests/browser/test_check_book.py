"""The browser check must fail on broken pages and pass on good ones.

Feeds tests/browser/check_book.py a tiny synthetic site (one headless
Chromium for all pages, a few seconds). Skipped where Chromium or its driver
is missing (Debian: apt-get install -y chromium chromium-driver; .ci/run
installs them).
"""
from __future__ import annotations

import base64
import io
import os
import shutil
from pathlib import Path

import pytest

import check_book

ROOT = Path(__file__).resolve().parents[2]
MATHJAX = ROOT / "book" / "_static" / "mathjax"

pytestmark = [
    pytest.mark.skipif(not os.access(check_book.CHROMIUM, os.X_OK),
                       reason=f"{check_book.CHROMIUM} missing (apt-get install -y chromium chromium-driver)"),
    pytest.mark.skipif(not os.access(check_book.CHROMEDRIVER, os.X_OK),
                       reason=f"{check_book.CHROMEDRIVER} missing (apt-get install -y chromium-driver)"),
]
pytest.importorskip("selenium", reason="selenium not installed (pip install selenium)")

# A 2x2 red PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGP8z8DAwMDAxMDAwMDAAAANHQEDasKb6QAAAABJRU5ErkJggg==")

COLAB_OK = "https://colab.research.google.com/github/owner/repo/blob/main/book/nb.ipynb"


def page(body: str, head: str = "") -> str:
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>t</title>"
            f"<link rel='icon' href='data:,'>{head}</head><body>{body}</body></html>")


MATHJAX_HEAD = ("<script>window.MathJax = {tex: {macros: {R: '\\\\mathbb{R}'}}};</script>"
                "<script defer src='../_static/mathjax/tex-chtml.js'></script>")

PAGES = {
    "book/good.html": page(
        "<h1>Good</h1><p>A figure: <img src='../_images/ok.png' alt='ok'></p>"
        "<p><a href='other.html'>other</a> <a href='other.html#x'>anchor</a> "
        "<a href='../index.html'>home</a> <a href='https://example.org/'>external link, not loaded</a></p>"
        "<pre>code may hold $$x$$, \\begin{align} and ```{figure} freely</pre>"),
    "book/other.html": page("<h1 id='x'>Other</h1><p>Plain text costs 5 dollars.</p>"),
    "index.html": page("<p><a href='book/good.html'>start</a></p>"),
    "book/missing_img.html": page("<h1>Missing</h1><img src='../_images/nope.png' alt='gone'>"),
    "book/raw_math.html": page("<h1>Raw math</h1><p>The loss is</p><p>$$x$$</p>"),
    "book/raw_directive.html": page(
        "<h1>Raw directive</h1><p>```{figure} ../_images/ok.png</p><p>{literalinclude} ../x.py</p>"),
    "book/broken_link.html": page("<h1>Link</h1><a href='nowhere.html'>gone</a>"),
    "book/no_widget.html": page("<h1>No widget</h1><p>The explorer should be here.</p>"),
    "book/js_error.html": page("<h1>JS</h1><script>notDefinedAnywhere();</script>"),
    "book/external.html": page("<h1>External</h1><img src='https://cdn.example.com/x.png' alt='cdn'>"),
    "book/nb.html": page(f"<h1>Notebook</h1><a href='{COLAB_OK}'>Colab</a>"),
    "book/nb_wrong.html": page(
        "<h1>Notebook</h1><a href='https://colab.research.google.com/github/owner/repo/blob/main/book/nb.ipynb'>Colab</a>"),
    "book/math_ok.html": page(
        "<h1>Math</h1><p>Inline <span class='math notranslate nohighlight'>\\(z \\in \\R^D\\)</span>.</p>"
        "<div class='math notranslate nohighlight'>\\[\\begin{aligned} a &amp;= b \\end{aligned}\\]</div>",
        MATHJAX_HEAD),
    "book/math_error.html": page(
        "<h1>Math</h1><p><span class='math notranslate nohighlight'>\\(\\nosuchmacro{x}\\)</span></p>",
        MATHJAX_HEAD),
}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("book")
    site = root / "_build" / "html"
    for name, html in PAGES.items():
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_text(html)
    (site / "_images").mkdir()
    (site / "_images" / "ok.png").write_bytes(PNG)
    # Notebook pages: a _sources/<page>.ipynb, the notebook in the "repository".
    for nb in ("nb", "nb_wrong"):
        (site / "_sources" / "book").mkdir(parents=True, exist_ok=True)
        (site / "_sources" / "book" / f"{nb}.ipynb").write_text("{}")
    (root / "book").mkdir()
    (root / "book" / "nb.ipynb").write_text("{}")
    (root / "book" / "nb_wrong.ipynb").write_text("{}")
    (root / "_config.yml").write_text(
        "repository:\n  url: https://github.com/owner/repo\n  branch: main\n  path_to_book: ''\n"
        "launch_buttons:\n  colab_url: https://colab.research.google.com\n")
    pages = [p for p in PAGES if not p.startswith("book/math") or MATHJAX.is_dir()]
    if MATHJAX.is_dir():
        shutil.copytree(MATHJAX, site / "_static" / "mathjax")
    out = io.StringIO()
    results = check_book.check_site(site, pages=pages, config_file=root / "_config.yml",
                                    screenshots=root / "shots", out=out,
                                    require_widgets=("book/no_widget.html",))
    print(out.getvalue())
    return {r.page: r for r in results}, root, out.getvalue()


def errors(report, name):
    return "\n".join(report[0][name].errors)


def test_every_page_is_listed(tmp_path):
    for name in ("book/a.html", "index.html", "genindex.html", "search.html",
                 "_static/x.html", "_sources/book/a.html"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    assert check_book.list_pages(tmp_path) == ["book/a.html", "index.html"]


def test_good_pages_pass(report):
    for name in ("index.html", "book/good.html", "book/other.html", "book/nb.html"):
        assert report[0][name].ok, (name, report[0][name].errors)


def test_missing_image_is_reported(report):
    assert not report[0]["book/missing_img.html"].ok
    err = errors(report, "book/missing_img.html")
    assert "image not loaded: /_images/nope.png (alt: 'gone')" in err
    assert "HTTP 404: /_images/nope.png" in err


def test_raw_math_is_reported(report):
    assert "raw math $$ in the text" in errors(report, "book/raw_math.html")


def test_raw_directive_is_reported(report):
    err = errors(report, "book/raw_directive.html")
    assert "unrendered MyST ```{" in err
    assert "unrendered MyST {directive}" in err


def test_broken_link_is_reported(report):
    assert "broken internal link: /book/nowhere.html" in errors(report, "book/broken_link.html")


def test_javascript_error_is_reported(report):
    assert "console error" in errors(report, "book/js_error.html")
    assert "notDefinedAnywhere" in errors(report, "book/js_error.html")


def test_external_resource_is_reported(report):
    err = errors(report, "book/external.html")
    assert "external request (the book must be self-contained): https://cdn.example.com/x.png" in err
    assert "image not loaded" in err


def test_required_widget_is_reported(report):
    assert "expected a rendered ipywidget" in errors(report, "book/no_widget.html")


def test_colab_link_must_point_at_the_notebook(report):
    assert "Colab ok" in report[0]["book/nb.html"].notes
    assert "expected ['https://colab.research.google.com/github/owner/repo/blob/main/book/nb_wrong.ipynb']" \
        in errors(report, "book/nb_wrong.html")


@pytest.mark.skipif(not MATHJAX.is_dir(), reason="no vendored MathJax in book/_static/mathjax")
def test_vendored_mathjax_renders_and_errors_are_reported(report):
    assert report[0]["book/math_ok.html"].ok, report[0]["book/math_ok.html"].errors
    assert "2 formulas" in report[0]["book/math_ok.html"].notes[0]
    assert "MathJax error" in errors(report, "book/math_error.html")


def test_summary_and_screenshots(report):
    _, root, text = report
    assert "FAIL book/missing_img.html" in text and "PASS book/good.html" in text
    shots = sorted(p.name for p in (root / "shots").iterdir())
    assert "book__good.png" in shots and "index.png" in shots
    assert (root / "shots" / "book__good.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
