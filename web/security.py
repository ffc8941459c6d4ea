"""CSRF protection and response headers: every page gets a strict CSP; routes serving untrusted bytes set their own."""

from __future__ import annotations

from flask import Flask, Response, request
from flask_wtf.csrf import CSRFProtect

csrf = CSRFProtect()

# Pages of the app: our own scripts and styles only, no inline script, no plugins, framed by nobody.
APP_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"
)
# Untrusted email HTML: no script, no network except inline data; sandboxed even when opened top-level.
EMAIL_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data: cid:; frame-ancestors 'self'; sandbox"
EMAIL_CSP_REMOTE_IMAGES = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data: cid: https: http:; frame-ancestors 'self'; sandbox"
)
# Downloads: never rendered as a page of ours, even if a browser ignores Content-Disposition.
DOWNLOAD_CSP = "default-src 'none'; sandbox"


def _headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("Content-Security-Policy", APP_CSP)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    if "frame-ancestors 'self'" in headers["Content-Security-Policy"]:
        headers.setdefault("X-Frame-Options", "SAMEORIGIN")
    else:
        headers.setdefault("X-Frame-Options", "DENY")
    if not request.path.startswith("/static/"):
        # Pages show customers' data: keep them out of shared caches and the back-button cache after sign-out.
        headers.setdefault("Cache-Control", "no-store")
    return response


def init_app(app: Flask) -> None:
    csrf.init_app(app)
    app.after_request(_headers)
