#!/usr/bin/env python3
"""Browser check of the built book: open every page in headless Chromium.

    python tests/browser/check_book.py _build/html --screenshots ci-artifacts/screenshots

Serves the built HTML on 127.0.0.1 (http.server in a thread, free port) and
opens every page (every .html under the site except genindex, search,
py-modindex and anything under _static/, _sources/, _images/) in headless
Chromium driven by Selenium (/usr/bin/chromium, /usr/bin/chromedriver: the
Debian packages `chromium` and `chromium-driver`). For each page it asserts:

- no JavaScript errors: no SEVERE entry in the browser console log (failed
  loads are reported from the network log instead, with their URL; the
  browser's own request for /favicon.ico is ignored when a page declares no
  icon);
- no failed request: every request the page makes to the local server
  succeeds (no 4xx/5xx, no network error), and the page makes NO request to
  another host. The book must be self-contained (MathJax and the ipywidgets
  manager are vendored under book/_static/): the browser resolves every other
  host name to "not found" (--host-resolver-rules), so the check behaves the
  same offline and online, and any external script, font or image is
  reported as "external request" -- an error, not a warning;
- every <img> loaded (complete and naturalWidth > 0; lazy images are made
  eager first);
- MathJax rendered every formula: every Sphinx math element (.math) holds an
  <mjx-container>, no TeX error (an <merror>, or an undefined macro that
  MathJax shows as red \\name: read from each formula's MathML),
  and no raw TeX left in the text ($$, \\begin{, \\( \\) \\[ \\], or an
  inline $...$ with TeX in it). Text inside <pre>, <code>, <script>,
  <style>, <textarea> and the math itself is not looked at;
- no unrendered MyST in the text (```{ or :::{ fences, {figure},
  {literalinclude}, {eq}, {cite:p}, ... );
- every saved ipywidget view (<script type="application/vnd.jupyter.widget-view+json">)
  rendered to a visible widget (the manager is vendored too); with
  --require-widget PAGE, PAGE must show one with sliders and its saved figure;
- notebook pages (those with _sources/<page>.ipynb) have a Colab launch link
  https://colab.research.google.com/github/<owner>/<repo>/blob/<branch>/<path>.ipynb
  pointing at that notebook in the repository of _config.yml, and the
  notebook exists at that path in this checkout; other pages have none;
- every same-origin link (<a href>) resolves to an existing file.

With --screenshots DIR it saves a full-page PNG of every page there. Prints a
line per page and a final "N passed, M failed" line; exits 1 on any failure
(2 when it cannot run at all, e.g. Chromium missing).
"""
from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import posixpath
import re
import shutil
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
COLAB = "https://colab.research.google.com"

MAX_LINES = 25  # problems printed per page

SKIP_PAGES = {"genindex.html", "search.html", "py-modindex.html"}
SKIP_DIRS = {"_static", "_sources", "_images"}

CHROME_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
    "--disable-extensions",
    "--mute-audio",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    "--window-size=1280,1000",
    # Every host but the local server is unresolvable, online or not, so an
    # external resource fails the same way on every machine.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]

# Raw TeX in the text means MathJax did not typeset it.
RAW_MATH = [
    ("$$", re.compile(r"\$\$")),
    ("\\begin{", re.compile(r"\\begin\{")),
    ("\\(", re.compile(r"\\\(")),
    ("\\)", re.compile(r"\\\)")),
    ("\\[", re.compile(r"\\\[")),
    ("\\]", re.compile(r"\\\]")),
    ("$...$", re.compile(r"(?<![\\$])\$(?=[^$\n]{1,200}?\$)[^$\n]*?[\\^_{][^$\n]*?\$")),
]
# Unrendered MyST: directive fences and {name} of directives and roles.
MYST_NAMES = (
    r"figure|literalinclude|image|math|eq|ref|numref|doc|download|term|"
    r"cite(?::\w+)?|glue(?::\w+)?|bibliography|toctree|include|code-cell|code-block|"
    r"note|warning|tip|hint|important|caution|attention|danger|error|seealso|"
    r"admonition|dropdown|margin|sidebar|epigraph|list-table|table|tab-set|"
    r"tab-item|card|grid|prf:\w+|auto\w+|py:\w+"
)
RAW_MYST = [
    ("```{", re.compile(r"```\s*\{")),
    (":::{", re.compile(r":::\s*\{")),
    ("{directive}", re.compile(r"\{(?:%s)\}" % MYST_NAMES)),
]

# Text nodes of the page outside code, scripts and typeset math.
JS_TEXT = r"""
const skip = new Set(['SCRIPT','STYLE','NOSCRIPT','TEMPLATE','TEXTAREA','PRE','CODE',
                      'KBD','SAMP','MJX-CONTAINER','MJX-ASSISTIVE-MML','MATH','SVG']);
const out = [];
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
let n;
while ((n = walker.nextNode())) {
  let el = n.parentElement, bad = false;
  while (el) {
    if (skip.has(el.tagName.toUpperCase()) || el.classList.contains('highlight')) { bad = true; break; }
    el = el.parentElement;
  }
  if (!bad && n.nodeValue.trim()) out.push(n.nodeValue);
}
return out.join('\n');
"""

JS_WAIT = r"""
const done = arguments[arguments.length - 1];
(async () => {
  const sleep = ms => new Promise(r => setTimeout(r, ms));
  const t0 = Date.now();
  document.querySelectorAll('img[loading="lazy"]').forEach(i => { i.loading = 'eager'; });
  if (document.fonts && document.fonts.ready) { try { await document.fonts.ready; } catch (e) {} }
  // MathJax 3 (defer-loaded): wait for its startup typeset to finish.
  const hasMath = document.querySelector('.math, script[src*="mathjax"], script[src*="MathJax"]') !== null;
  while (hasMath && !(window.MathJax && window.MathJax.startup && window.MathJax.startup.promise)
         && Date.now() - t0 < 8000) { await sleep(100); }
  if (window.MathJax && window.MathJax.startup && window.MathJax.startup.promise) {
    try { await window.MathJax.startup.promise; } catch (e) {}
  }
  // Saved ipywidgets render asynchronously after the manager loads.
  const views = document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]');
  while (views.length && document.querySelectorAll('.jupyter-widgets.widget-subarea, .widget-subarea').length < views.length
         && Date.now() - t0 < 15000) { await sleep(200); }
  if (views.length) { await sleep(500); }
  // Images: wait until each has finished (loaded or failed).
  while ([...document.images].some(i => !i.complete) && Date.now() - t0 < 15000) { await sleep(100); }
  done(Date.now() - t0);
})();
"""

JS_FACTS = r"""
const origin = location.origin;
const imgs = [...document.images].map(i => ({
  src: i.currentSrc || i.src || '', ok: i.complete && i.naturalWidth > 0,
  alt: i.alt || ''}));
const mathEls = [...document.querySelectorAll('.math')];
const untypeset = mathEls.filter(e => !e.querySelector('mjx-container'))
  .map(e => e.textContent.trim().slice(0, 80));
const merrors = [...document.querySelectorAll('mjx-merror, [data-mjx-error]')]
  .map(e => (e.getAttribute('data-mjx-error') || e.textContent || '').slice(0, 120));
// TeX errors that MathJax typesets instead of failing: an undefined macro
// (noundefined: a red \\name) or an <merror>, found in each formula's MathML.
const mj = window.MathJax;
if (mj && mj.startup && mj.startup.document && mj.startup.toMML) {
  try {
    for (const item of mj.startup.document.math) {
      const mml = mj.startup.toMML(item.root);
      const undef = mml.match(/<mtext[^>]*mathcolor="red"[^>]*>(\\[^<]*)<\/mtext>/);
      if (undef) merrors.push(`undefined macro ${undef[1]} in ${String(item.math).trim().slice(0, 80)}`);
      else if (/<merror/.test(mml)) merrors.push(`error in ${String(item.math).trim().slice(0, 80)}`);
    }
  } catch (e) { merrors.push(`could not inspect the typeset math: ${e}`); }
}
const links = [...document.querySelectorAll('a[href]')]
  .map(a => a.href).filter(h => h.startsWith(origin + '/'));
const colab = [...document.querySelectorAll('a[href]')]
  .map(a => a.getAttribute('href')).filter(h => h.startsWith('https://colab.research.google.com'));
const views = [...document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]')];
const widgets = views.map(s => {
  let id = '';
  try { id = JSON.parse(s.textContent).model_id; } catch (e) {}
  // html-manager puts the rendered view right before its <script>.
  const w = s.previousElementSibling;
  const ok = !!w && (w.classList.contains('widget-subarea') || w.classList.contains('jupyter-widgets'))
             && w.getBoundingClientRect().height > 0;
  const sliders = w ? w.querySelectorAll('.widget-slider').length : 0;
  const imgs = w ? [...w.querySelectorAll('img')].filter(i => i.complete && i.naturalWidth > 0).length : 0;
  return {id: id, ok: ok, sliders: sliders, imgs: imgs};
});
return {
  imgs: imgs, nMath: mathEls.length, nMjx: document.querySelectorAll('mjx-container').length,
  untypeset: untypeset, merrors: merrors, links: [...new Set(links)], colab: colab,
  widgets: widgets, icon: document.querySelector('link[rel~="icon"]') !== null, mathjax: !!(window.MathJax && window.MathJax.version) ? window.MathJax.version : null,
  height: Math.max(document.documentElement.scrollHeight, document.body ? document.body.scrollHeight : 0),
};
"""


@dataclass
class PageResult:
    page: str
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.errors


def list_pages(site: Path) -> list[str]:
    """Every page to check, as a POSIX path relative to the site."""
    pages = []
    for p in sorted(site.rglob("*.html")):
        rel = p.relative_to(site)
        if rel.parts[0] in SKIP_DIRS or rel.as_posix() in SKIP_PAGES:
            continue
        pages.append(rel.as_posix())
    return pages


def expected_colab(config_file: Path | None, page: str) -> tuple[str | None, Path | None]:
    """The Colab URL a notebook page must link to, and the notebook's path here."""
    if config_file is None:
        return None, None
    import yaml

    cfg = yaml.safe_load(config_file.read_text()) or {}
    repo = cfg.get("repository") or {}
    url = (repo.get("url") or "").rstrip("/")
    m = re.match(r"https://github\.com/([^/]+)/([^/]+?)(?:\.git)?$", url)
    if not m:
        return None, None
    branch = repo.get("branch") or "main"
    book = (repo.get("path_to_book") or "").strip("/")
    nb = page[: -len(".html")] + ".ipynb"
    path = f"{book}/{nb}" if book else nb
    colab = ((cfg.get("launch_buttons") or {}).get("colab_url") or COLAB).rstrip("/")
    return (f"{colab}/github/{m.group(1)}/{m.group(2)}/blob/{branch}/{path}",
            config_file.parent / path)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # no access log on stderr
        pass


def serve(site: Path):
    handler = functools.partial(_Quiet, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"


def start_browser(user_data_dir: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in CHROME_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={user_data_dir}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(60)
    return driver


def _network(entries, base: str) -> list[str]:
    """Failed or external requests, from chromedriver's performance log."""
    reqs, problems, http_failed = {}, [], set()
    for e in entries:
        try:
            msg = json.loads(e["message"])["message"]
        except (KeyError, ValueError):
            continue
        method, p = msg.get("method"), msg.get("params", {})
        if method == "Network.requestWillBeSent":
            reqs[p["requestId"]] = p["request"]["url"]
        elif method == "Network.responseReceived":
            status = p["response"].get("status", 0)
            if status >= 400:
                http_failed.add(p["response"]["url"])
                problems.append(f"HTTP {status}: {_short(p['response']['url'], base)}")
        elif method == "Network.loadingFailed":
            url = reqs.get(p["requestId"])
            if url is None or url.startswith(("chrome://", "chrome-untrusted://")):
                continue  # the browser's own requests (its new-tab page, seen on a fresh profile), not the book's
            if url in http_failed:  # already reported with its HTTP status
                continue
            problems.append(f"request failed ({p.get('errorText', '?')}): {_short(url, base)}")
    for url in dict.fromkeys(reqs.values()):
        if url.startswith(("http://", "https://")) and not url.startswith(base + "/"):
            problems.append(f"external request (the book must be self-contained): {url}")
    return problems


def _favicon(message: str, base: str, facts: dict) -> bool:
    """The browser's own request for /favicon.ico, on a page that declares no icon."""
    if facts["icon"]:
        return False
    return f"{base}/favicon.ico" in message or message.endswith(": /favicon.ico")


def _short(url: str, base: str) -> str:
    url = url[len(base):] if url.startswith(base) else url
    return url if len(url) <= 160 else url[:100] + "..." + url[-40:]


def _screenshot(driver, path: Path, height: int) -> None:
    """Full-page PNG: make the viewport as tall as the page, then capture.

    (Page.captureScreenshot with captureBeyondViewport draws the sticky
    sidebars of sphinx-book-theme shifted; a tall viewport does not.)
    """
    import base64

    height = max(600, min(int(height or 0), 30000))
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": 1280, "height": height, "deviceScaleFactor": 1, "mobile": False})
    try:
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))


def check_page(driver, site: Path, base: str, page: str, config_file: Path | None,
               screenshots: Path | None, require_widgets=()) -> PageResult:
    res = PageResult(page)
    t0 = time.monotonic()
    driver.get_log("browser")  # drop anything left from the previous page
    driver.get_log("performance")
    driver.get(f"{base}/{urllib.parse.quote(page)}")
    driver.execute_async_script(JS_WAIT)
    facts = driver.execute_script(JS_FACTS)
    text = driver.execute_script(JS_TEXT)

    # JavaScript errors and failed requests.
    console: dict[str, int] = {}
    for entry in driver.get_log("browser"):
        msg = entry.get("message", "")
        # "Failed to load resource" is reported from the network log, with the URL.
        if entry.get("level") == "SEVERE" and "Failed to load resource" not in msg \
                and not _favicon(msg, base, facts):
            console[msg] = console.get(msg, 0) + 1
    for msg, n in console.items():
        res.errors.append(f"console error: {_short(msg, base)}" + (f" (x{n})" if n > 1 else ""))
    for problem in dict.fromkeys(_network(driver.get_log("performance"), base)):
        if not _favicon(problem, base, facts):
            res.errors.append(problem)

    # Images.
    for img in facts["imgs"]:
        if not img["ok"]:
            src = img["src"]
            src = src[:60] + "..." if src.startswith("data:") else _short(src, base)
            res.errors.append(f"image not loaded: {src}" + (f" (alt: {img['alt']!r})" if img["alt"] else ""))

    # Math.
    for snippet in facts["untypeset"][:5]:
        res.errors.append(f"formula not typeset by MathJax: {snippet!r}")
    if len(facts["untypeset"]) > 5:
        res.errors.append(f"... and {len(facts['untypeset']) - 5} more formulas not typeset")
    for msg in facts["merrors"]:
        res.errors.append(f"MathJax error: {msg}")
    if facts["nMath"] and not facts["nMjx"]:
        res.errors.append(f"{facts['nMath']} formulas but no <mjx-container>: MathJax did not run")
    for label, rx in RAW_MATH:
        m = rx.search(text)
        if m:
            res.errors.append(f"raw math {label} in the text: {_context(text, m)!r}")
    for label, rx in RAW_MYST:
        m = rx.search(text)
        if m:
            res.errors.append(f"unrendered MyST {label} in the text: {_context(text, m)!r}")

    # Widgets.
    for w in facts["widgets"]:
        if not w["ok"]:
            res.errors.append(f"ipywidget {w['id']} not rendered")
    if facts["widgets"]:
        n_ok = sum(w["ok"] for w in facts["widgets"])
        n_sl = sum(w["sliders"] for w in facts["widgets"])
        n_im = sum(w["imgs"] for w in facts["widgets"])
        res.notes.append(f"{n_ok}/{len(facts['widgets'])} widgets rendered ({n_sl} sliders, {n_im} images)")
    if page in require_widgets and not any(
            w["ok"] and w["sliders"] and w["imgs"] for w in facts["widgets"]):
        res.errors.append("expected a rendered ipywidget with sliders and its saved figure "
                          f"(--require-widget), found {len(facts['widgets'])} widget views")

    # Colab launch button.
    is_notebook = (site / "_sources" / (page[: -len(".html")] + ".ipynb")).is_file()
    colab = list(dict.fromkeys(facts["colab"]))
    if is_notebook:
        want, nb_path = expected_colab(config_file, page)
        if config_file is None:
            res.notes.append("Colab link not checked (no _config.yml)")
        elif want is None:
            res.errors.append(f"no GitHub repository url in {config_file}")
        elif colab != [want]:
            res.errors.append(f"Colab link {colab or 'missing'}, expected [{want!r}]")
        elif not nb_path.is_file():
            res.errors.append(f"Colab link points at {nb_path}, which does not exist here")
        else:
            res.notes.append("Colab ok")
    elif colab:
        res.errors.append(f"Colab link on a page that is not a notebook: {colab}")

    # Internal links.
    for href in facts["links"]:
        path = urllib.parse.unquote(urllib.parse.urlsplit(href).path)
        target = site / posixpath.normpath(path).lstrip("/")
        if path.endswith("/"):
            target = target / "index.html"
        if not (target.is_file() or (target.is_dir() and (target / "index.html").is_file())):
            res.errors.append(f"broken internal link: {_short(href, base)}")

    n_img = len(facts["imgs"])
    res.notes.insert(0, f"{facts['nMjx']} formulas, {n_img} images, {len(facts['links'])} internal links"
                     + (f", MathJax {facts['mathjax']}" if facts["mathjax"] else ""))
    if screenshots is not None:
        try:
            _screenshot(driver, screenshots / (page[: -len(".html")].replace("/", "__") + ".png"),
                        facts["height"])
        except Exception as exc:  # a screenshot is evidence, not a check
            res.notes.append(f"screenshot failed: {exc}")
    res.seconds = time.monotonic() - t0
    return res


def _context(text: str, m: re.Match) -> str:
    a, b = max(0, m.start() - 30), min(len(text), m.end() + 30)
    return " ".join(text[a:b].split())


def check_site(site: Path, pages: list[str] | None = None, config_file: Path | None = None,
               screenshots: Path | None = None, require_widgets=(), out=sys.stdout) -> list[PageResult]:
    site = Path(site).resolve()
    pages = list_pages(site) if pages is None else pages
    if screenshots is not None:
        screenshots = Path(screenshots)
        screenshots.mkdir(parents=True, exist_ok=True)
    httpd, base = serve(site)
    profile = tempfile.mkdtemp(prefix="check-book-chromium-")
    driver = None
    results = []
    try:
        driver = start_browser(profile)
        for page in pages:
            try:
                res = check_page(driver, site, base, page, config_file, screenshots, require_widgets)
            except Exception as exc:
                res = PageResult(page, errors=[f"check crashed: {type(exc).__name__}: {exc}".strip()])
            results.append(res)
            status = "PASS" if res.ok else "FAIL"
            print(f"{status} {page} ({res.seconds:.1f} s; {'; '.join(res.notes)})", file=out, flush=True)
            for err in res.errors[:MAX_LINES]:
                print(f"    - {err}", file=out, flush=True)
            if len(res.errors) > MAX_LINES:
                print(f"    - ... and {len(res.errors) - MAX_LINES} more", file=out, flush=True)
    finally:
        if driver is not None:
            driver.quit()
        httpd.shutdown()
        httpd.server_close()
        shutil.rmtree(profile, ignore_errors=True)
    return results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("site", type=Path, help="the built HTML, e.g. _build/html")
    ap.add_argument("--screenshots", type=Path, help="save a full-page PNG of every page here")
    ap.add_argument("--config", type=Path,
                    help="the book's _config.yml (for the Colab links; default: ../../_config.yml "
                         "from the site, i.e. the book root for _build/html)")
    ap.add_argument("--page", action="append", help="check only this page (relative path; repeatable)")
    ap.add_argument("--require-widget", action="append", default=[], metavar="PAGE",
                    help="PAGE must show a rendered ipywidget with sliders and its saved figure "
                         "(repeatable; the Makefile requires it of book/experiments.html)")
    args = ap.parse_args(argv)

    site = args.site.resolve()
    if not (site / "index.html").is_file() and not args.page:
        print(f"check_book: no {site}/index.html: build the book first (make book)", file=sys.stderr)
        return 2
    for exe, pkg in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(exe, os.X_OK):
            print(f"check_book: {exe} missing: apt-get install -y {pkg}", file=sys.stderr)
            return 2
    config = args.config
    if config is None and (site.parent.parent / "_config.yml").is_file():
        config = site.parent.parent / "_config.yml"
    t0 = time.monotonic()
    missing = [p for p in args.require_widget if not (site / p).is_file()]
    if missing:
        print(f"check_book: --require-widget page(s) not built: {missing}", file=sys.stderr)
        return 1
    results = check_site(site, pages=args.page, config_file=config, screenshots=args.screenshots,
                         require_widgets=tuple(args.require_widget))
    failed = [r for r in results if not r.ok]
    print(f"check_book: {len(results) - len(failed)} passed, {len(failed)} failed "
          f"in {time.monotonic() - t0:.0f} s"
          + (f"; screenshots in {args.screenshots}" if args.screenshots else ""))
    if not results:
        print("check_book: no pages found", file=sys.stderr)
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
