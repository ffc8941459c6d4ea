"""A live Helpline server on loopback for browser tests: the real app, WebSockets included, in a thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from flask import Flask
from playwright.sync_api import Page
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from tests.services import free_port, wait_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


class QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # one line per static file drowns the test output


@dataclass
class LiveServer:
    app: Flask
    url: str
    server: BaseWSGIServer


@contextmanager
def serve(app: Flask) -> Iterator[LiveServer]:
    """Serve ``app`` with werkzeug's threaded server (simple-websocket upgrades through it, as in development)."""
    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name=f"live-{port}", daemon=True)
    thread.start()
    wait_port("127.0.0.1", port)
    try:
        yield LiveServer(app, f"http://127.0.0.1:{port}", server)
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()


def wait_js(page: Page, predicate: str, timeout: float = 10.0) -> None:
    """Poll a JS predicate. (``wait_for_function`` evals a string, which the app's CSP rightly forbids.)"""
    deadline = time.monotonic() + timeout
    while not page.evaluate(f"() => Boolean({predicate})"):
        assert time.monotonic() < deadline, f"timed out waiting for {predicate}"
        page.wait_for_timeout(50)
