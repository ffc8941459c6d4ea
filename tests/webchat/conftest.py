"""Fixtures for the website chat: a live app (SQLite, a private Redis as Socket.IO queue), widget inboxes, visitors."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
import socketio
from flask import Flask
from redis import Redis

from connectors import webchat
from inbox import crypto
from inbox.config import Settings
from inbox.runtime import Storage
from tests.factories import make_inbox, make_team, make_user
from tests.services import free_port
from tests.web.live import LiveServer, serve
from web import create_app
from workers import runtime

PASSWORD = "correct horse"
SHOP = "https://shop.example"
_seq = itertools.count(1)


@dataclass
class Widget:
    """One widget inbox: its public key, secret and id, and the team agent who answers it."""

    inbox_id: int
    public_key: str
    secret: str
    agent_id: int
    agent_email: str

    def token(self, visitor_id: str | None = None) -> str:
        return webchat.sign_visitor(webchat.visitor_key(self.secret), visitor_id or webchat.new_visitor_id())


@pytest.fixture(params=["sqlite"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> str:
    """SQLite unless a test asks for both (``parametrize("db_url", [...], indirect=True)``): the widget's writes are
    the ingest pipeline's, which the core tests run on both; the tests that store and read back run on both."""
    import shutil

    if request.param == "postgresql":
        return str(request.getfixturevalue("pg_url"))
    target = tmp_path / "data" / "helpline.db"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(sqlite_template, target)
    return f"sqlite:///{target}"


@pytest.fixture
def limits() -> dict[str, Any]:
    """Flood limits for the app (tests that are about flooding lower them)."""
    return {}


@pytest.fixture
def app(settings: Settings, storage: Storage, redis_url: str, limits: dict[str, Any]) -> Iterator[Flask]:
    Redis.from_url(redis_url).flushdb()
    flask_app = create_app(settings, redis_url=redis_url)
    if limits:
        from web.widget_views import Limits

        flask_app.extensions["helpline_widget_limits"] = Limits(**limits)
    from web.realtime import socketio as server

    # A refused namespace makes the client disconnect, which waits for the open long-poll: keep polls short.
    server.server.eio.ping_interval = 1
    yield flask_app
    flask_app.extensions["helpline"].dispose()
    runtime.reset()
    Redis.from_url(redis_url).flushdb()


@pytest.fixture
def live(app: Flask) -> Iterator[LiveServer]:
    with serve(app) as server:
        yield server


@pytest.fixture
def make_widget(app: Flask) -> Callable[..., Widget]:
    def make(origins: list[str] | None = None, **config: Any) -> Widget:
        n = next(_seq)
        secret = f"shop-secret-{n}"
        with app.extensions["helpline"].factory() as session:
            team = make_team(session)
            agent = make_user(session, teams=[team], password=PASSWORD)
            inbox = make_inbox(
                session,
                channel="webchat",
                address="shop.example",
                team_id=team.id,
                public_key=f"pk-test-{n}-{webchat.new_visitor_id()[2:10]}",
                config={"origins": origins if origins is not None else [SHOP]} | config,
                secrets=crypto.encrypt_json(app.config["SECRET_KEY"], {"secret": secret}),
            )
            session.commit()
            assert inbox.public_key is not None
            return Widget(inbox.id, inbox.public_key, secret, agent.id, agent.email)

    return make


@pytest.fixture
def widget(make_widget: Callable[..., Widget]) -> Widget:
    return make_widget()


class Visitor:
    """A python-socketio client on /widget that records what the server sends."""

    def __init__(self, url: str, widget: Widget, token: str | None = None, headers: dict[str, str] | None = None):
        self.url, self.widget, self.headers = url, widget, headers or {}
        self.token = token or widget.token()
        self.received: list[tuple[str, Any]] = []
        self.client = socketio.Client(reconnection=False)
        self.client.on("*", self._record, namespace=webchat.NAMESPACE)
        self.client.on("connect_error", lambda data=None: self.errors.append(data), namespace=webchat.NAMESPACE)
        self.errors: list[Any] = []

    def _record(self, event: str, data: Any = None) -> None:
        self.received.append((event, data))

    def connect(self, **auth: Any) -> None:
        self.client.connect(
            self.url,
            namespaces=[webchat.NAMESPACE],
            # Polling: websocket-client adds an Origin header of its own (we test ours), and its close waits 3 s
            # for a close frame the dev server never sends. The browser tests cover WebSocket.
            transports=["polling"],
            auth={"inbox": self.widget.public_key, "token": self.token} | auth,
            headers=self.headers,
            wait_timeout=5,
        )

    def send(self, client_id: str, text: str) -> Any:
        return self.client.call(
            "visitor:message", {"id": client_id, "text": text}, namespace=webchat.NAMESPACE, timeout=5
        )

    def events(self, name: str) -> list[Any]:
        return [data for event, data in self.received if event == name]

    def close(self) -> None:
        if self.client.connected:
            self.client.disconnect()


@pytest.fixture
def visitors(live: LiveServer) -> Iterator[Callable[..., Visitor]]:
    made: list[Visitor] = []

    def make(widget: Widget, **kwargs: Any) -> Visitor:
        v = Visitor(live.url, widget, **kwargs)
        made.append(v)
        return v

    yield make
    for v in made:
        v.close()


def session_api(live: LiveServer, widget: Widget, origin: str | None = None, **body: Any) -> requests.Response:
    headers = {"Origin": origin} if origin else {}
    return requests.post(
        f"{live.url}/widget/api/session", json={"inbox": widget.public_key} | body, headers=headers, timeout=5
    )


@contextmanager
def serve_page(port: int, page: bytes) -> Iterator[None]:
    """Serve one HTML page (a shop's page with the widget snippet) on 127.0.0.1:``port`` while the block runs."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextmanager
def shop_page(live: LiveServer, make_widget: Callable[..., Widget], **config: Any) -> Iterator[tuple[str, Widget]]:
    """A shop page on another origin (http://localhost:<port>) with the plain snippet: an anonymous visitor."""
    port = free_port()
    origin = f"http://localhost:{port}"
    widget = make_widget(origins=[origin], **config)
    page = (
        "<!doctype html><html><head><title>Shop</title></head><body><h1>Teapots</h1>"
        f"<script src='{live.url}/widget.js' data-inbox='{widget.public_key}' async></script></body></html>"
    ).encode()
    with serve_page(port, page):
        yield f"{origin}/", widget
