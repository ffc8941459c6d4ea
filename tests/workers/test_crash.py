"""Crash safety: kill -9 real worker processes (with their work horses) at random moments, 20 times, in the middle
of deliveries and of polls; restart Redis with jobs in flight. Afterwards every inbound message is stored exactly
once and every reply has reached the channel.

Exactly-once delivery has one irreducible window: a worker killed after the channel accepted a reply and before
``sent`` committed. Such a reply is sent again, with the same Message-ID, and its ``meta["interrupted"]`` says
so; the test allows a second copy only for those replies and reports how many there were.
"""

from __future__ import annotations

import random
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import func, select

from inbox.config import Settings
from inbox.models import Inbox, Message
from inbox.runtime import Storage
from tests import services
from tests.workers.conftest import Workers, explain, make_stub_inbox, process_env, queue_replies, states
from tests.workers.stub_channel import StubServer
from tests.workers.test_processes import wait_until
from workers import maintenance, runtime, schedule

KILLS = 20


@pytest.fixture
def fast_sweeps(monkeypatch: pytest.MonkeyPatch) -> None:
    # The sweeper runs in this process; the clocks it waits on are shortened to the test's pace.
    monkeypatch.setattr(maintenance, "QUEUED_GRACE", maintenance.dt.timedelta(seconds=0.5))
    monkeypatch.setattr(maintenance, "STARTED_GRACE", maintenance.dt.timedelta(seconds=1))
    monkeypatch.setattr(maintenance, "SCHEDULED_GRACE", maintenance.dt.timedelta(seconds=2))
    monkeypatch.setattr(schedule, "POLL_LOCK_TTL", 1)


def _meta(storage: Storage, ids: list[int]) -> dict[int, dict[str, object]]:
    with storage.factory() as session:
        return {m.id: dict(m.meta or {}) for m in session.scalars(select(Message).where(Message.id.in_(ids)))}


@pytest.mark.slow
def test_kill_9_during_deliveries_loses_no_reply(
    file_storage: Storage, file_settings: Settings, stub: StubServer, redis_url: str, fast_sweeps: None,
    workers_factory: Callable[[dict[str, str]], Workers],
) -> None:
    rng = random.Random(4)
    ids = queue_replies(file_storage, stub, 40, handshake_delay=0.2)
    workers = workers_factory(process_env(file_settings, redis_url, HELPLINE_SEND_LEASE="2"))
    def sending() -> bool:
        return "sending" in states(file_storage, ids).values()

    for i in range(KILLS):
        proc = workers.start()
        workers.wait_listening(proc)
        if i % 2:
            # Half the kills aim at a send in progress (claimed, talking to the channel, or just answered).
            wait_until(sending, 10, "a send in progress")
            time.sleep(rng.uniform(0.0, 0.08))
        else:
            time.sleep(rng.uniform(0.0, 0.6))  # anywhere: dequeue, fork, claim, send, commit
        workers.kill(proc)
        maintenance.sweep_outbox()  # what the scheduler does every minute
    workers.start()

    def all_sent() -> bool:
        maintenance.sweep_outbox()
        return set(states(file_storage, ids).values()) == {"sent"}

    try:
        wait_until(all_sent, 90, "every reply sent after the kills")
    except AssertionError:
        raise AssertionError(f"not sent: {explain(file_storage, ids)}\n{workers.logs()[-3000:]}") from None
    counts = stub.counts()
    with file_storage.factory() as session:
        keys = {m.id: m.message_id_header for m in session.scalars(select(Message).where(Message.id.in_(ids)))}
    meta = _meta(file_storage, ids)
    assert all(counts[keys[i]] >= 1 for i in ids), "a reply never reached the channel"
    duplicates = {i: counts[keys[i]] - 1 for i in ids if counts[keys[i]] > 1}
    for mid, extra in duplicates.items():
        assert int(meta[mid].get("interrupted", 0)) >= extra, f"reply {mid} was sent twice without an interruption"
    interrupted = sum(1 for m in meta.values() if m.get("interrupted"))
    assert interrupted >= 2, "the kills should land mid-send"
    print(f"\n{KILLS} kills: {interrupted} sends interrupted and taken over, {len(duplicates)} duplicate(s)")


@pytest.mark.slow
def test_kill_9_during_polls_stores_each_message_once(
    file_storage: Storage, file_settings: Settings, stub: StubServer, redis_url: str, fast_sweeps: None,
    workers_factory: Callable[[dict[str, str]], Workers],
) -> None:
    rng = random.Random(7)
    total = 300
    stub.inbound = [{"id": f"m{i}", "from": f"c{i % 17}@example.com", "text": f"hello {i}"} for i in range(total)]
    with file_storage.factory() as session:
        inbox_id = make_stub_inbox(session, stub, fetch_delay=0.02).id
        session.commit()

    def cursor() -> int:
        with file_storage.factory() as session:
            inbox = session.get(Inbox, inbox_id)
            assert inbox is not None
            return int((inbox.cursor or {}).get("after", 0))

    workers = workers_factory(process_env(file_settings, redis_url))
    progress = []
    for _ in range(KILLS):
        proc = workers.start()
        wait_until(lambda: schedule.try_enqueue_poll(inbox_id) is not None, 10, "the poll lock")
        workers.wait_listening(proc)
        time.sleep(rng.uniform(0.0, 0.6))
        workers.kill(proc)
        progress.append(cursor())
    interrupted = sum(1 for a, b in zip([0, *progress], progress, strict=False) if a < b < total)
    assert interrupted >= 3, f"the kills should land mid-poll: cursor after each kill {progress}"
    workers.start()

    def fetched() -> bool:
        schedule.try_enqueue_poll(inbox_id)  # as the scheduler would, at most one at a time
        return cursor() == total

    wait_until(fetched, 60, "the mailbox fully fetched", workers)
    with file_storage.factory() as session:
        rows = session.execute(
            select(Message.external_id, func.count()).where(Message.inbox_id == inbox_id)
            .group_by(Message.external_id)).all()
    assert len(rows) == total and {n for _, n in rows} == {1}
    print(f"\n{KILLS} kills, {interrupted} of them mid-poll; {total} messages stored once each")


@contextmanager
def redis_on(port: int, workdir: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([services.redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(workdir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        services.wait_port("127.0.0.1", port)
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.slow
def test_redis_restart_with_jobs_in_flight_loses_no_reply(
    file_settings: Settings, stub: StubServer, tmp_path: Path, fast_sweeps: None,
    workers_factory: Callable[[dict[str, str]], Workers],
) -> None:
    from tests.workers.stub_channel import register

    port = services.free_port()
    url = f"redis://127.0.0.1:{port}/0"
    register()
    runtime.configure(file_settings, url)
    try:
        storage = runtime.storage()
        workers = workers_factory(process_env(file_settings, url, HELPLINE_DELIVERY_BACKOFF="1,1,1,1,1,1,1,1,1"))
        with redis_on(port, tmp_path):
            stub.mode = "down"
            ids = queue_replies(storage, stub, 20)
            workers.start()
            wait_until(lambda: "delayed" in states(storage, ids).values(), 20, "retries scheduled", workers)
        # Redis is gone (and with it every queued and scheduled job); the worker keeps trying to reconnect.
        stub.mode = "ok"
        ids += queue_replies(storage, stub, 5)  # replies committed while Redis is down are kept too
        with redis_on(port, tmp_path):

            def all_sent() -> bool:
                maintenance.sweep_outbox()
                return set(states(storage, ids).values()) == {"sent"}

            try:
                wait_until(all_sent, 60, "the sweeper to recover every reply")
            except AssertionError:
                raise AssertionError(f"not sent: {explain(storage, ids)}\n{workers.logs()[-3000:]}") from None
        assert len(stub.received) == 25 and set(stub.counts().values()) == {1}
    finally:
        runtime.reset()
