"""Real ``rq`` worker processes against the private Redis: delivery once under concurrency, live events from a
worker process, and a channel that is down and comes back."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from redis import Redis

from inbox.config import Settings
from inbox.runtime import Storage
from tests.workers.conftest import Workers, process_env, queue_replies, states
from tests.workers.stub_channel import StubServer
from workers.enqueue import enqueue_delivery


def wait_until(check: Callable[[], bool], timeout: float, what: str, workers: Workers | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}\n{workers.logs() if workers else ''}")


def test_two_worker_processes_send_each_reply_once(
    file_storage: Storage, file_settings: Settings, stub: StubServer, redis_url: str,
    workers_factory: Callable[[dict[str, str]], Workers],
) -> None:
    ids = queue_replies(file_storage, stub, 30)
    for mid in ids:
        enqueue_delivery(mid)  # a duplicate job for every reply: a double click, a sweeper race
    workers = workers_factory(process_env(file_settings, redis_url))
    workers.start()
    workers.start()
    wait_until(lambda: set(states(file_storage, ids).values()) == {"sent"}, 60, "all replies sent", workers)
    assert len(stub.received) == 30
    assert set(stub.counts().values()) == {1}


def test_events_from_a_worker_process_reach_the_socketio_queue(
    file_storage: Storage, file_settings: Settings, stub: StubServer, redis_url: str, redis: Redis,
    workers_factory: Callable[[dict[str, str]], Workers],
) -> None:
    pubsub = redis.pubsub()
    pubsub.subscribe("flask-socketio")  # Flask-SocketIO's default message-queue channel
    [mid] = queue_replies(file_storage, stub, 1)
    workers = workers_factory(process_env(file_settings, redis_url))
    workers.start("--burst")
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(_state_of(e) == "sent" for e in seen):
        msg = pubsub.get_message(timeout=0.5)
        if msg and msg["type"] == "message":
            seen.append(json.loads(msg["data"]))
    pubsub.close()
    updates = [(e["event"], _state_of(e), e["room"]) for e in seen if e.get("method") == "emit"
               and e.get("event") == "message.updated"]
    # Only the worker process delivers, so these came from it (the test process emitted message.created).
    assert ("message.updated", "sending", f"ticket:{_ticket_of(file_storage, mid)}") in updates
    assert ("message.updated", "sent", f"ticket:{_ticket_of(file_storage, mid)}") in updates


def _state_of(emit: dict[str, Any]) -> Any:
    data = emit.get("data")
    # python-socketio sends an event's arguments as a list once Flask-SocketIO has packed them.
    payload = data[0] if isinstance(data, list) and data else data
    return payload.get("delivery_state") if isinstance(payload, dict) else None


def _ticket_of(storage: Storage, mid: int) -> int:
    from inbox.models import Message

    with storage.factory() as session:
        msg = session.get(Message, mid)
        assert msg is not None
        return msg.ticket_id


def test_channel_down_makes_replies_wait_and_retry_until_it_is_back(
    file_storage: Storage, file_settings: Settings, stub: StubServer, redis_url: str,
    workers_factory: Callable[[dict[str, str]], Workers],
) -> None:
    stub.mode = "down"  # answering 502
    ids = queue_replies(file_storage, stub, 5)
    workers = workers_factory(process_env(file_settings, redis_url, HELPLINE_DELIVERY_BACKOFF="1,1,1,1,1,1,1,1"))
    workers.start()  # with its RQ scheduler, which moves due retries back onto the queue
    wait_until(lambda: set(states(file_storage, ids).values()) == {"delayed"}, 30, "replies delayed", workers)
    from inbox.models import Message

    def retried() -> bool:
        with file_storage.factory() as session:
            rows = [session.get(Message, i) for i in ids]
            return all(r is not None and r.delivery_attempts >= 2 for r in rows)

    wait_until(retried, 30, "a second attempt of each reply", workers)
    with file_storage.factory() as session:
        rows = [session.get(Message, i) for i in ids]
        assert all(r is not None and r.delivery_error == "502 Bad Gateway" for r in rows)
    assert stub.received == []
    stub.mode = "ok"
    wait_until(lambda: set(states(file_storage, ids).values()) == {"sent"}, 30, "replies sent", workers)
    assert set(stub.counts().values()) == {1} and len(stub.received) == 5


def test_an_idle_worker_stops_on_sigterm(
    file_storage: Storage, file_settings: Settings, redis_url: str,
    workers_factory: Callable[[dict[str, str]], Workers],
) -> None:
    import signal

    workers = workers_factory(process_env(file_settings, redis_url))
    proc = workers.start()
    workers.wait_listening(proc)
    time.sleep(1.0)  # RQ loses a SIGTERM that lands while it starts its scheduler (the supervisor then SIGKILLs)
    proc.send_signal(signal.SIGTERM)  # what the supervisor and Procfile platforms send
    assert proc.wait(20) == 0
