"""Drop duplicate inline <script> tags from every page (Sphinx 7.4 bug).

An extension that adds an inline script (``app.add_js_file(None, body=...)``)
after the HTML builder started gets it twice: once with filename ``None``
(added to the builder directly) and once with ``''`` (re-added from the
registry when writing starts), and the two do not compare equal. With
sphinx-thebe this declares ``const THEBE_JS_URL`` twice, a JavaScript
SyntaxError on every page that the browser check
(tests/browser/check_book.py) reports. Loaded via ``sphinx.local_extensions``
in _config.yml.
"""
from __future__ import annotations


def _dedupe(app, pagename, templatename, context, doctree):
    files = context.get("script_files")
    if not files:
        return
    seen, kept = set(), []
    for js in files:
        key = (getattr(js, "filename", js) or "",
               tuple(sorted((getattr(js, "attributes", None) or {}).items())))
        if key not in seen:
            seen.add(key)
            kept.append(js)
    files[:] = kept


def setup(app):
    app.connect("html-page-context", _dedupe, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
