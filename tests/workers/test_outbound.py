"""Outbox delivery, in-process: RQ's SimpleWorker on the private Redis, the stub channel on loopback."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from redis import Redis
from rq import Queue, SimpleWorker
from rq.registry import ScheduledJobRegistry
from rq.scheduler import RQScheduler

from inbox import events
from inbox.db import utcnow
from inbox.models import Inbox, Message
from inbox.runtime import Storage
from tests.workers.conftest import customer_ticket, make_stub_inbox, queue_replies, states
from tests.workers.stub_channel import StubServer
from tickets import lifecycle
from workers import maintenance, outbound
from workers.enqueue import delivery_job_id
from workers.runtime import OUTBOUND, QUEUES


def work(redis: Redis) -> None:
    SimpleWorker([Queue(q, connection=redis) for q in QUEUES], connection=redis).work(burst=True)


def test_reply_is_sent_once_and_each_state_is_published(
    wk: Storage, stub: StubServer, redis: Redis, published: list[events.DomainEvent]
) -> None:
    [mid] = queue_replies(wk, stub, 1)
    assert Queue(OUTBOUND, connection=redis).job_ids == [delivery_job_id(mid)]  # enqueued after commit
    work(redis)
    assert list(stub.counts().values()) == [1]
    with wk.factory() as session:
        msg = session.get(Message, mid)
        assert msg is not None
        assert (msg.delivery_state, msg.delivery_attempts, msg.delivery_error) == ("sent", 1, None)
        assert msg.external_id == "stub-1" and msg.sent_at is not None
        assert stub.received[0]["key"] == msg.message_id_header
    seen = [e.payload["delivery_state"] for e in published if e.name == events.MESSAGE_UPDATED]
    assert seen == ["sending", "sent"]
    # A second job for a sent message (a redelivered job, a double click) sends nothing.
    assert outbound.deliver_message(mid) == "skipped"
    assert len(stub.received) == 1


def test_email_reply_threads_under_the_customer_message(wk: Storage, stub: StubServer) -> None:
    with wk.factory() as session:
        inbox = make_stub_inbox(session, stub)
        ticket = customer_ticket(session, inbox, message_id="<q1@shop.test>", references=("<q0@shop.test>",),
                                 subject="Where is my order")
        reply = lifecycle.reply(session, ticket, "On its way", by=None)
        session.commit()
        out = outbound.build_outbound(session, wk, reply, inbox)
    assert out.in_reply_to == "<q1@shop.test>"
    assert out.references == ("<q0@shop.test>", "<q1@shop.test>")
    assert out.subject == "Re: Where is my order"
    assert out.from_address == inbox.address and out.to_handle.endswith("@example.com")
    assert out.message_id_header == reply.message_id_header


def test_attachments_are_read_from_the_blob_store(wk: Storage, stub: StubServer, redis: Redis) -> None:
    from inbox.models import Attachment

    with wk.factory() as session:
        inbox = make_stub_inbox(session, stub)
        reply = lifecycle.reply(session, customer_ticket(session, inbox), "see attached", by=None)
        session.add(Attachment(message_id=reply.id, filename="invoice.pdf", content_type="application/pdf",
                               size=4, sha256=wk.blobs.put(b"%PDF")))
        session.commit()
        out = outbound.build_outbound(session, wk, reply, inbox)
    assert [(a.filename, a.data) for a in out.attachments] == [("invoice.pdf", b"%PDF")]
    work(redis)
    assert stub.received[0]["attachments"] == ["invoice.pdf"]


def test_channel_down_delays_with_backoff_then_sends(
    wk: Storage, stub: StubServer, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbound, "BACKOFF", [1, 1, 1])
    stub.mode = "down"
    [mid] = queue_replies(wk, stub, 1)
    before = utcnow()
    work(redis)
    with wk.factory() as session:
        msg = session.get(Message, mid)
        assert msg is not None
        assert (msg.delivery_state, msg.delivery_error, msg.delivery_attempts) == ("delayed", "502 Bad Gateway", 1)
        assert msg.next_attempt_at is not None and msg.next_attempt_at >= before + dt.timedelta(seconds=0.8)
        due = msg.next_attempt_at
    assert ScheduledJobRegistry(OUTBOUND, connection=redis).get_job_ids() == [delivery_job_id(mid)]
    stub.mode = "ok"
    time.sleep(max(0.0, (due - utcnow()).total_seconds()) + 0.1)  # the retry falls due
    scheduler = RQScheduler([OUTBOUND], connection=redis)
    scheduler.acquire_locks()
    scheduler.enqueue_scheduled_jobs()
    scheduler.release_locks()
    work(redis)
    assert states(wk, [mid]) == {mid: "sent"}
    assert len(stub.received) == 1


def test_backoff_grows_with_jitter_and_honours_retry_after() -> None:
    import random

    rng = random.Random(1)
    delays = [outbound.backoff_delay(n, rng=rng) for n in range(1, 7)]
    for delay, base in zip(delays, [10, 30, 120, 600, 1800, 1800], strict=True):
        assert base * 0.8 <= delay <= base * 1.2
    assert outbound.backoff_delay(3, retry_after=7) == 7


def test_temporary_errors_give_up_after_max_attempts(
    wk: Storage, stub: StubServer, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbound, "BACKOFF", [0, 0])
    monkeypatch.setattr(outbound, "MAX_ATTEMPTS", 3)
    stub.mode = "down"
    [mid] = queue_replies(wk, stub, 1)
    results = [outbound.deliver_message(mid) for _ in range(4)]
    assert results == ["delayed", "delayed", "failed", "skipped"]
    with wk.factory() as session:
        msg = session.get(Message, mid)
        assert msg is not None and msg.delivery_state == "failed"
        assert msg.delivery_error == "gave up after 3 attempts: 502 Bad Gateway"


def test_permanent_error_fails_with_reason_and_retry_button_sends(
    wk: Storage, stub: StubServer, redis: Redis, published: list[events.DomainEvent]
) -> None:
    stub.mode = "perm"
    [mid] = queue_replies(wk, stub, 1)
    work(redis)
    with wk.factory() as session:
        msg = session.get(Message, mid)
        assert msg is not None and (msg.delivery_state, msg.delivery_error) == ("failed", "550 no such user")
    stub.mode = "ok"
    assert outbound.retry_delivery(mid) is True
    assert Queue(OUTBOUND, connection=redis).job_ids == [delivery_job_id(mid)]
    work(redis)
    assert states(wk, [mid]) == {mid: "sent"}
    assert outbound.retry_delivery(mid) is False  # sent: nothing to retry
    seen = [e.payload["delivery_state"] for e in published if e.name == events.MESSAGE_UPDATED]
    assert seen == ["sending", "failed", "queued", "sending", "sent"]


def test_rejected_credentials_mark_the_inbox_needs_reauth(wk: Storage, stub: StubServer, redis: Redis) -> None:
    stub.mode = "auth"
    [mid] = queue_replies(wk, stub, 1)
    work(redis)
    with wk.factory() as session:
        msg = session.get(Message, mid)
        assert msg is not None and msg.delivery_state == "failed"
        inbox = session.get(Inbox, msg.inbox_id)
        assert inbox is not None and inbox.credential_state == "needs_reauth"
        assert inbox.last_error is not None and "535" in inbox.last_error


def test_sweeper_recovers_replies_whose_jobs_redis_lost(wk: Storage, stub: StubServer, redis: Redis) -> None:
    ids = queue_replies(wk, stub, 3)
    redis.flushdb()  # Redis restarted without persistence: the jobs are gone, the rows are not
    assert maintenance.sweep_outbox() == 0  # still within the grace for the web's own enqueue
    assert maintenance.sweep_outbox(now=utcnow() + dt.timedelta(seconds=11)) == 3
    assert maintenance.sweep_outbox(now=utcnow() + dt.timedelta(seconds=11)) == 0  # their jobs wait now
    work(redis)
    assert set(states(wk, ids).values()) == {"sent"}
    assert sorted(stub.counts().values()) == [1, 1, 1]


def test_sweeper_takes_over_a_send_a_dead_worker_left(
    wk: Storage, stub: StubServer, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    [mid] = queue_replies(wk, stub, 1)
    monkeypatch.setattr(outbound, "SEND_LEASE", 0)
    assert outbound.claim(wk, mid) is not None  # claimed, then the worker "died" before sending
    redis.flushdb()
    assert maintenance.sweep_outbox() == 1
    work(redis)
    with wk.factory() as session:
        msg = session.get(Message, mid)
        assert msg is not None and msg.delivery_state == "sent"
        assert msg.meta["interrupted"] >= 1
    assert len(stub.received) == 1


def test_a_live_send_is_not_taken_over(wk: Storage, stub: StubServer) -> None:
    [mid] = queue_replies(wk, stub, 1)
    assert outbound.claim(wk, mid) is not None
    assert outbound.claim(wk, mid) is None  # still within its lease
    assert maintenance.sweep_outbox(now=utcnow() + dt.timedelta(seconds=30)) == 0
