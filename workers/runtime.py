"""What a worker process needs, built lazily once per process: settings, storage, Redis, queues, the emitter.

RQ's default worker forks a work horse per job; a pool of database connections must not cross a fork, so the
storage is rebuilt when the process id changes (SQLAlchemy's advice for multiprocessing).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Any

from redis import Redis
from rq import Queue

from inbox import events
from inbox.config import Settings
from inbox.runtime import Storage

log = logging.getLogger(__name__)

INBOUND = "inbound"  # polls that fetch customers' messages
OUTBOUND = "outbound"  # replies customers are waiting for
DEFAULT = "default"  # sweeps and housekeeping
QUEUES = (OUTBOUND, INBOUND, DEFAULT)  # a worker listens in this order: a waiting customer first

_lock = threading.RLock()
_state: dict[str, Any] = {}


def configure(settings: Settings | None = None, redis_url: str | None = None) -> None:
    """Use these settings (tests, the CLI) instead of reading the environment; drops what was built."""
    with _lock:
        _reset_locked()
        if settings is not None:
            _state["settings"] = settings
        if redis_url is not None:
            _state["redis_url"] = redis_url


def reset() -> None:
    """Forget everything built so far (closing the database pool)."""
    with _lock:
        _reset_locked()


def _reset_locked() -> None:
    storage = _state.get("storage")
    if storage is not None and _state.get("pid") == os.getpid():
        storage.dispose()
    publisher = _state.get("publisher")
    if publisher is not None:
        from workers.enqueue import DeliveryEnqueuer

        events.remove_publisher(publisher)
        events.remove_publisher(DeliveryEnqueuer())
    automation_jobs = sys.modules.get("workers.automation_jobs")  # imported by whoever installed it, if anyone
    if automation_jobs is not None:
        # Whoever installed automation (a worker's storage, a web app, ``helpline inbox sync``) installs it again
        # after configuring; one left from an earlier configuration would act on another Redis (in the tests, a
        # plain session after an app's test would start an embedded Redis in the working directory).
        automation_jobs.remove_automation_enqueuer()
    _state.clear()


def settings() -> Settings:
    if "settings" not in _state:
        _state["settings"] = Settings.from_env()
    return _state["settings"]  # type: ignore[no-any-return]


def redis_url() -> str:
    if "redis_url" not in _state:
        from workers.embedded_redis import ensure_redis

        _state["redis_url"] = ensure_redis(settings())
    return _state["redis_url"]  # type: ignore[no-any-return]


def storage() -> Storage:
    """This process's storage (engine, session factory, blobs); rebuilt after a fork."""
    with _lock:
        pid = os.getpid()
        if "storage" not in _state:
            _state["storage"] = Storage.from_settings(settings())
            _state["pid"] = pid
            _install_emitter_locked()
        elif _state.get("pid") != pid:
            # A forked work horse: keep the engine, but drop the pool inherited from the parent without closing
            # the parent's connections (SQLAlchemy's advice for multiprocessing).
            _state["storage"].engine.dispose(close=False)
            _state["pid"] = pid
        return _state["storage"]  # type: ignore[no-any-return]


def known_redis() -> Redis | None:
    """This process's Redis if it has been configured or resolved already, else None (never starts one)."""
    with _lock:
        if "redis_url" not in _state:
            return None
    return redis()


def redis() -> Redis:
    with _lock:
        pid = os.getpid()
        if _state.get("redis_pid") != pid or "redis" not in _state:
            _state["redis"] = Redis.from_url(redis_url(), socket_timeout=30, socket_connect_timeout=5)
            _state["redis_pid"] = pid
        return _state["redis"]  # type: ignore[no-any-return]


def queue(name: str) -> Queue:
    return Queue(name, connection=redis())


def _install_emitter_locked() -> None:
    """Publish this process's committed domain events to browsers through the Socket.IO message queue."""
    if "publisher" in _state:
        return
    from workers.enqueue import DeliveryEnqueuer

    publisher = SocketIOEmitter()
    events.add_publisher(publisher)
    _state["publisher"] = publisher
    # Replies queued by jobs (retries, automation) are enqueued after commit, as in the web process.
    events.add_publisher(DeliveryEnqueuer())
    # Committed domain events run automation rules and outgoing webhooks as jobs.
    from workers.automation_jobs import install_automation_enqueuer

    install_automation_enqueuer()


class SocketIOEmitter:
    """A write-only Flask-SocketIO client of the Redis message queue (Flask-SocketIO's "Emitting from an External
    Process"): the web processes relay what it emits to the browsers in the event's room."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url  # None: this process's Redis, resolved at the first event
        self._socketio: Any = None

    def warm(self) -> None:
        """Build the Socket.IO client now (in a worker before it forks, so each job does not build it again)."""
        if self._socketio is None:
            from flask_socketio import SocketIO  # imported late: only processes that commit need it

            self._socketio = SocketIO(message_queue=self.url or redis_url())

    def __call__(self, ev: events.DomainEvent) -> None:
        self.warm()
        self._socketio.emit(ev.name, ev.payload, to=ev.room, namespace=ev.namespace)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SocketIOEmitter) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)


def preload() -> None:
    """Build storage and emitter in a worker's main process, so forked work horses inherit them (the database pool
    is renewed after the fork; the Redis client reconnects by itself when it sees a new pid)."""
    import connectors.registry  # noqa: F401 — the channel libraries (telegram, instaloader) take 0.5 s to import

    storage()
    publisher = _state.get("publisher")
    if isinstance(publisher, SocketIOEmitter):
        publisher.warm()
    from workers.automation_jobs import refresh_gate

    refresh_gate()  # so that ingest enqueues automation jobs only for events some rule or webhook wants


def install_publishers() -> None:
    """A process that is not a worker (``helpline inbox sync``) publishes its committed events as a worker does:
    to browsers, and as delivery and automation jobs (on the Redis given to :func:`configure`)."""
    with _lock:
        _install_emitter_locked()
