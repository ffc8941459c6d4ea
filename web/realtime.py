"""Socket.IO: the server object, and the relay that turns committed domain events into emits.

Across processes, every emitter (web, workers, ``helpline inbox sync``) goes through the Redis message queue, so
an agent connected to any web process hears of mail fetched anywhere. Who may join which room is decided in
``web.socket_events``; the relay sends each event only to its room.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from flask import Flask
from flask_socketio import SocketIO

from inbox import events

log = logging.getLogger(__name__)

socketio = SocketIO()


def _relay(ev: events.DomainEvent) -> None:
    socketio.emit(ev.name, ev.payload, to=ev.room, namespace=ev.namespace)


def same_origin(base_url: str) -> Callable[[str | None, Mapping[str, Any]], bool]:
    """Accept the page's own origin (and the configured public URL) for agents' sockets: a cookie-authenticated
    socket opened by another site would otherwise read agents' live events (cross-site WebSocket hijacking)."""
    configured = "{0.scheme}://{0.netloc}".format(urlsplit(base_url))

    def check(origin: str | None, environ: Mapping[str, Any]) -> bool:
        if origin is None:
            return True  # not a browser, or a same-origin GET: cookies decide
        own = f"{environ.get('wsgi.url_scheme', 'http')}://{environ.get('HTTP_HOST', '')}"
        return origin in (own, configured)

    return check


def init_app(app: Flask, redis_url: str | None) -> None:
    from web import socket_events  # registers the handlers before init_app copies them onto the server

    socket_events.registered()
    # Flask-SocketIO keeps options across init_app calls; a queue client from an earlier app must not linger.
    socketio.server_options.pop("client_manager", None)
    socketio.init_app(
        app,
        async_mode="threading",
        message_queue=redis_url or None,
        # No engine.io-level origin check: the chat widget connects from customers' sites. The agent namespace
        # checks the origin itself on connect (web.socket_events), as the widget namespace checks its own.
        cors_allowed_origins=[],
        manage_session=False,  # Flask's signed cookie session (and so Flask-Login) is what sockets see
    )
    events.add_publisher(_relay)
    from web.presence import Presence

    app.extensions["helpline_presence"] = Presence(redis_url)  # who is online, shared by every web process
