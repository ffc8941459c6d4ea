"""The widget's own scripts as served: minified by rjsmin when first asked for, with no build step.

The loader, the chat and the Socket.IO client must stay under 60 KiB together (issue 8,
tests/webchat/test_http.py); the files in web/static/widget keep their comments and layout for readers.
"""

from __future__ import annotations

from pathlib import Path

import rjsmin
from flask import Response, current_app

STATIC = Path(__file__).resolve().parent / "static" / "widget"


def compact_js(source: str) -> str:
    """A widget script without comments and needless whitespace (rjsmin: a tokenizing minifier that keeps strings,
    regular expressions and template literals as they are, and renames nothing)."""
    return str(rjsmin.jsmin(source)) + "\n"


_compacted: dict[str, bytes] = {}


def script(name: str) -> Response:
    """One of web/static/widget's scripts, minified once per process (on every request in debug mode)."""
    body = _compacted.get(name)
    if body is None or current_app.debug:
        body = _compacted[name] = compact_js((STATIC / name).read_text(encoding="utf-8")).encode()
    response = Response(body, mimetype="application/javascript")
    response.headers["Cache-Control"] = "public, max-age=300"
    return response
