"""The widget's own scripts as served: without comments and indentation.

The loader, the chat and the Socket.IO client must stay under 60 KB together (issue 8); the files in
web/static/widget keep their comments for readers, and this strips them when serving, with no build step.
"""

from __future__ import annotations

from pathlib import Path

from flask import Response, current_app

STATIC = Path(__file__).resolve().parent / "static" / "widget"


def compact_js(source: str) -> str:
    """The widget's own scripts without comments and indentation (they count against the 60 KB budget; the
    files in web/static/widget stay commented). Conservative: whole-line comments, and a trailing `` // `` comment
    only where the code before it has no regular expression, escape or template, and no string left open."""
    lines: list[str] = []
    in_block = False
    for raw in source.splitlines():
        line = raw.strip()
        if in_block:
            in_block = "*/" not in line
            continue
        if line.startswith("/*"):
            in_block = "*/" not in line
            continue
        if not line or line.startswith("//"):
            continue
        cut = line.find(" // ")
        code = line[:cut]
        if cut > 0 and not any(c in code for c in "/\\`") and code.count('"') % 2 == 0 and code.count("'") % 2 == 0:
            line = code.rstrip()  # no regex, escape or template before it, and every string closed
        lines.append(line)
    return "\n".join(lines) + "\n"


_compacted: dict[str, bytes] = {}


def script(name: str) -> Response:
    """One of web/static/widget's scripts, compacted once per process (on every request in debug mode)."""
    body = _compacted.get(name)
    if body is None or current_app.debug:
        body = _compacted[name] = compact_js((STATIC / name).read_text(encoding="utf-8")).encode()
    response = Response(body, mimetype="application/javascript")
    response.headers["Cache-Control"] = "public, max-age=300"
    return response
