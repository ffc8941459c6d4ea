"""Which website visitors have the chat open right now, shared by every web process through Redis.

An agent's reply goes by email instead of the chat when its visitor is gone (web.widget_offline), so the answer
must hold across processes: a visitor's socket may live in another web process than the agent's request. Each
socket is a field of the hash ``helpline:webchat:online:<visitor id>`` whose value is the time it expires; this
process renews its sockets every ``RENEW`` seconds, so a process that dies stops counting after ``TTL`` seconds.
Without Redis (a bare test app) the process's own sockets are the answer.
"""

from __future__ import annotations

import logging
import threading
import time

from flask import Flask, current_app
from redis import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

TTL = 90  # seconds a socket counts as online without renewal
RENEW = 30  # seconds between two renewals of this process's sockets
# Seconds a visitor still counts as there after their last socket closed: moving to another page of the shop
# closes the socket and the next page opens a new one, and a reply meanwhile belongs in the chat.
GRACE = 60
_KEY = "helpline:webchat:online:"

_local: dict[str, str] = {}  # sid -> visitor id, this process's sockets
_recent: dict[str, float] = {}  # visitor id -> until when a closed socket still counts (no Redis)
_lock = threading.Lock()
_renewer: threading.Thread | None = None
_app: list[Flask] = []  # the app whose Redis the renewer writes to (the latest to see a socket)


def _redis(app: Flask | None = None) -> Redis | None:
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    client: Redis | None = app.extensions.get("helpline_presence_redis")
    if client is None and app.config.get("HELPLINE_REDIS_URL"):
        client = app.extensions["helpline_presence_redis"] = Redis.from_url(
            app.config["HELPLINE_REDIS_URL"], socket_timeout=2, socket_connect_timeout=2
        )
    return client


def arrived(visitor_id: str, sid: str) -> None:
    """A socket of ``visitor_id`` connected (called from the /widget namespace's connect handler)."""
    with _lock:
        _local[sid] = visitor_id
    _write({sid: visitor_id})
    _start_renewer(current_app._get_current_object())  # type: ignore[attr-defined]


def left(sid: str) -> None:
    """A socket closed: it counts for ``GRACE`` more seconds, then no longer."""
    until = time.time() + GRACE
    with _lock:
        visitor_id = _local.pop(sid, None)
        if visitor_id is not None and GRACE > 0:
            _recent[visitor_id] = until
            for stale in [v for v, t in _recent.items() if t < until - GRACE]:
                del _recent[stale]
    client = _redis()
    if visitor_id is None or client is None:
        return
    try:
        if GRACE > 0:
            client.hset(_KEY + visitor_id, sid, f"{until:.0f}")
        else:
            client.hdel(_KEY + visitor_id, sid)
    except RedisError:
        log.warning("presence: could not clear socket %s of %s", sid, visitor_id)


def is_online(visitor_id: str) -> bool:
    """Whether any web process holds a live socket of this visitor."""
    with _lock:
        if visitor_id in _local.values() or _recent.get(visitor_id, 0.0) > time.time():
            return True
    client = _redis()
    if client is None:
        return False
    try:
        expiries = client.hvals(_KEY + visitor_id)
    except RedisError:
        log.warning("presence: Redis unreachable; treating %s as online (the reply stays in the chat)", visitor_id)
        return True  # unknown: the chat keeps the reply, and the visitor sees it on return
    now = time.time()
    return any(float(v) > now for v in expiries)


def _write(sockets: dict[str, str], app: Flask | None = None) -> None:
    client = _redis(app)
    if client is None or not sockets:
        return
    expires = time.time() + TTL
    try:
        pipe = client.pipeline(transaction=False)
        for sid, visitor_id in sockets.items():
            pipe.hset(_KEY + visitor_id, sid, f"{expires:.0f}")
            pipe.expire(_KEY + visitor_id, TTL)
        pipe.execute()
    except RedisError:
        log.warning("presence: could not record %d sockets", len(sockets))


def _start_renewer(app: Flask) -> None:
    global _renewer
    with _lock:
        _app[:] = [app]
        if _renewer is not None and _renewer.is_alive():
            return

        def renew() -> None:
            while True:
                time.sleep(RENEW)
                with _lock:
                    sockets, latest = dict(_local), _app[0]
                _write(sockets, latest)

        _renewer = threading.Thread(target=renew, name="webchat-presence", daemon=True)
        _renewer.start()
