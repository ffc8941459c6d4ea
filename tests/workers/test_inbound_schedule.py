"""Polling, the per-inbox poll lock, the scheduler's tick, and channel health."""

from __future__ import annotations

import datetime as dt

from redis import Redis
from rq import Queue, SimpleWorker
from sqlalchemy import func, select

from inbox import events
from inbox.db import utcnow
from inbox.models import Inbox, Message
from inbox.runtime import Storage
from tests import factories
from tests.workers.conftest import make_stub_inbox, queue_replies
from tests.workers.stub_channel import StubServer
from workers import inbound, schedule, status
from workers.runtime import DEFAULT, INBOUND, QUEUES


def work(redis: Redis) -> None:
    SimpleWorker([Queue(q, connection=redis) for q in QUEUES], connection=redis).work(burst=True)


def inbound_count(storage: Storage, inbox_id: int) -> int:
    with storage.factory() as session:
        return session.scalar(
            select(func.count()).select_from(Message).where(Message.inbox_id == inbox_id,
                                                            Message.direction == "inbound")) or 0


def test_poll_stores_new_messages_once_and_records_the_sync(
    wk: Storage, stub: StubServer, redis: Redis, published: list[events.DomainEvent]
) -> None:
    stub.inbound = [{"id": f"m{i}", "from": f"c{i}@example.com", "text": f"hi {i}"} for i in range(5)]
    with wk.factory() as session:
        inbox_id = make_stub_inbox(session, stub).id
        session.commit()
    assert schedule.try_enqueue_poll(inbox_id) is not None
    assert schedule.try_enqueue_poll(inbox_id) is None  # one poll per inbox queued or running
    work(redis)
    assert inbound_count(wk, inbox_id) == 5
    assert redis.get(inbound.lock_key(inbox_id)) is None  # the job released its lock
    assert inbound.poll_inbox(inbox_id) == "ok 0"  # nothing new: the cursor moved on
    with wk.factory() as session:
        inbox = session.get(Inbox, inbox_id)
        assert inbox is not None and inbox.last_sync_at is not None and inbox.cursor == {"after": 5}
    assert any(e.name == events.MESSAGE_CREATED and e.room == f"inbox:{inbox_id}" for e in published)


def test_poll_errors_are_recorded_on_the_inbox_and_clear_on_success(
    wk: Storage, stub: StubServer, published: list[events.DomainEvent]
) -> None:
    with wk.factory() as session:
        inbox = factories.make_inbox(session, channel="stub", config={"port": 1})  # nothing listens on port 1
        session.commit()
    assert inbound.poll_inbox(inbox.id) == "error"
    with wk.factory() as session:
        row = session.get(Inbox, inbox.id)
        assert row is not None and row.last_error is not None and inbound.is_failing(row)
        row.config = {"port": stub.port}
        session.commit()
    assert inbound.poll_inbox(inbox.id) == "ok 0"
    with wk.factory() as session:
        row = session.get(Inbox, inbox.id)
        assert row is not None and not inbound.is_failing(row)
    health = [e.payload for e in published if e.name == events.INBOX_HEALTH]
    assert len(health) == 2


def test_a_lock_whose_job_is_gone_is_broken(wk: Storage, stub: StubServer, redis: Redis) -> None:
    with wk.factory() as session:
        inbox_id = make_stub_inbox(session, stub).id
        session.commit()
    assert schedule.try_enqueue_poll(inbox_id) is not None
    for key in redis.keys("rq:*"):
        redis.delete(key)  # Redis lost the job but kept the lock (e.g. restored from an older snapshot)
    assert schedule.try_enqueue_poll(inbox_id) is not None


def test_tick_enqueues_due_polls_and_sweeps_once(wk: Storage, stub: StubServer, redis: Redis) -> None:
    with wk.factory() as session:
        polled = make_stub_inbox(session, stub, port=stub.port).id
        make_stub_inbox(session, stub).paused = True
        factories.make_inbox(session, channel="webchat")  # push-only: never polled
        session.commit()
    first = schedule.tick()
    assert first == {"polls": [polled], "periodic": ["sweep_outbox", "wake_snoozed", "close_solved", "sweep_sla",
                                                 "sweep_telegram_updates", "sweep_webhooks",
                                                 "sweep_automation_events", "sweep_report_rebuild"]}
    assert schedule.tick() == {"polls": [], "periodic": []}  # nothing is due twice within its interval
    assert Queue(INBOUND, connection=redis).count == 1
    assert Queue(DEFAULT, connection=redis).count == 8
    work(redis)  # the sweeps run for real
    redis.delete(f"helpline:due:poll:{polled}")  # the interval passed
    assert schedule.tick()["polls"] == [polled]


def test_status_reports_queues_backlog_and_failing_inboxes(wk: Storage, stub: StubServer, redis: Redis) -> None:
    queue_replies(wk, stub, 2)
    with wk.factory() as session:
        broken = factories.make_inbox(session, channel="stub", name="Broken mailbox", credential_state="needs_reauth",
                                      last_error="535 authentication failed", last_error_at=utcnow())
        stale = factories.make_inbox(session, channel="stub", name="Stale", last_error="timeout",
                                     last_sync_at=utcnow() - dt.timedelta(hours=2),
                                     last_error_at=utcnow() - dt.timedelta(minutes=1))
        session.commit()
        report = status.collect(session, redis)
    by_name = {ib["name"]: ib for ib in report["inboxes"]}
    assert report["redis_error"] is None
    assert report["queues"]["outbound"]["queued"] == 2
    assert by_name["Broken mailbox"]["alert"] and by_name["Stale"]["alert"]
    assert [ib["backlog"] for ib in report["inboxes"] if ib["backlog"]] == [2]
    text = status.render(report)
    assert "needs_reauth" in text and "FAILING" in text and "535 authentication failed" in text
    assert broken.id != stale.id


def test_status_reports_redis_down(wk: Storage) -> None:
    with wk.factory() as session:
        report = status.collect(session, Redis(port=1, socket_connect_timeout=0.5))
    assert report["redis_error"] is not None
    assert "UNAVAILABLE" in status.render(report)
