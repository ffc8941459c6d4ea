"""The webhook sweeper: deliveries whose job Redis lost (or never got) are enqueued again and sent once, through
RQ and a receiver on loopback, on both databases; a delivery that keeps crashing is given up, not retried forever."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator

import pytest
from redis import Redis
from rq import Queue, SimpleWorker
from sqlalchemy import select

from inbox import events
from inbox.automation_models import WebhookDelivery
from inbox.config import Settings
from inbox.db import utcnow
from inbox.runtime import Storage
from tests.automation.receiver import Receiver, receiver
from tickets import webhooks
from workers import automation_jobs, runtime
from workers.automation_jobs import sweep_webhooks, webhook_job_id
from workers.schedule import PERIODIC

SECRET = "a-long-enough-signing-secret"
LATER = dt.timedelta(minutes=2)


@pytest.fixture
def hooks(settings: Settings, storage: Storage, redis_url: str) -> Iterator[Storage]:
    """The worker runtime of this process on the test's database and a clean Redis, loopback targets allowed."""
    conn = Redis.from_url(redis_url)
    conn.flushdb()
    runtime.configure(dataclasses.replace(settings, webhook_allow_private=True), redis_url)
    yield runtime.storage()
    runtime.reset()
    conn.flushdb()
    conn.close()


@pytest.fixture
def rx() -> Iterator[Receiver]:
    with receiver() as r:
        yield r


def committed_deliveries(storage: Storage, url: str, n: int) -> list[int]:
    """``n`` deliveries committed as ``process_event`` commits them, with no job (Redis failed right after)."""
    with storage.factory() as session:
        sub = webhooks.save_subscription(session, None, secret_key=storage.settings.secret_key, name="hook",
                                         url=url, event_names=[events.TICKET_CREATED], secret=SECRET, enabled=True,
                                         allow_private=True)
        ids = [webhooks.new_delivery(session, sub, events.TICKET_CREATED, {"id": i}).id for i in range(n)]
        session.commit()
        return ids


def work() -> None:
    redis = runtime.redis()
    SimpleWorker([Queue(runtime.DEFAULT, connection=redis)], connection=redis).work(burst=True,
                                                                                    logging_level="WARNING")


def states(storage: Storage, ids: list[int]) -> list[tuple[str, int]]:
    with storage.factory() as session:
        rows = session.scalars(select(WebhookDelivery).where(WebhookDelivery.id.in_(ids)).order_by(WebhookDelivery.id))
        return [(d.state, d.attempts) for d in rows]


def test_deliveries_without_a_job_are_sent_once_after_the_grace(hooks: Storage, rx: Receiver) -> None:
    ids = committed_deliveries(hooks, rx.url("/hook"), 3)
    assert sweep_webhooks() == 0  # process_event enqueues right after its commit: leave it that time
    assert sweep_webhooks(utcnow() + LATER) == 3
    assert sweep_webhooks(utcnow() + LATER) == 0  # their jobs wait in the queue now: not twice
    work()
    assert states(hooks, ids) == [("delivered", 1)] * 3
    got = rx.at("/hook")
    assert sorted(r.headers["x-helpline-delivery"] for r in got) == sorted(_event_id(hooks, i) for i in ids)
    assert sweep_webhooks(utcnow() + LATER) == 0  # delivered ones are left alone


def test_a_retry_whose_scheduled_job_was_lost_is_sent(hooks: Storage, rx: Receiver) -> None:
    rx.script = {"/flaky": [503, 200]}
    [delivery_id] = committed_deliveries(hooks, rx.url("/flaky"), 1)
    automation_jobs.enqueue_webhook(delivery_id)
    work()  # the 503: the retry is scheduled in RQ
    assert states(hooks, [delivery_id]) == [("retrying", 1)]
    assert sweep_webhooks() == 0  # not due yet: RQ's scheduler holds it
    runtime.redis().flushdb()  # Redis restarted without persistence: the scheduled retry is gone
    with hooks.factory() as session:
        due = session.get_one(WebhookDelivery, delivery_id).next_attempt_at
    assert due is not None
    assert sweep_webhooks(due) == 0  # on time: a live scheduler may still move it
    assert sweep_webhooks(due + LATER) == 1
    work()
    assert states(hooks, [delivery_id]) == [("delivered", 2)]
    assert len(rx.at("/flaky")) == 2


def test_a_delivery_past_its_attempts_is_failed_not_retried_forever(hooks: Storage, rx: Receiver) -> None:
    [delivery_id] = committed_deliveries(hooks, rx.url("/never"), 1)
    with hooks.factory() as session, session.begin():  # every attempt crashed before recording its outcome
        delivery = session.get_one(WebhookDelivery, delivery_id)
        delivery.attempts = len(automation_jobs.BACKOFF) + 1
        delivery.state = "retrying"
    assert sweep_webhooks(utcnow() + LATER) == 0
    with hooks.factory() as session:
        delivery = session.get_one(WebhookDelivery, delivery_id)
        assert delivery.state == "failed" and delivery.error is not None
        assert delivery.error.startswith(f"gave up after {len(automation_jobs.BACKOFF) + 1} attempts")
    assert runtime.redis().exists(f"rq:job:{webhook_job_id(delivery_id)}") == 0 and rx.received == []


def test_the_scheduler_runs_the_sweeper() -> None:
    assert PERIODIC["sweep_webhooks"] == ("workers.automation_jobs.sweep_webhooks", 60)


def _event_id(storage: Storage, delivery_id: int) -> str:
    with storage.factory() as session:
        return session.get_one(WebhookDelivery, delivery_id).event_id
