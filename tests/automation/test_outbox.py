"""The automation outbox on both databases: an event committed while Redis is down runs its rules once Redis is
back (through the scheduler's sweep and a real RQ worker), a job run twice acts once, and events no rule or
webhook wants write nothing."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from redis import Redis
from rq import Queue, SimpleWorker
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from inbox.automation_models import AutomationEvent, AutomationRule
from inbox.config import Settings
from inbox.db import utcnow
from inbox.ingest import ingest
from inbox.models import Ticket
from inbox.runtime import Storage
from tests import factories
from tickets import automation
from workers import automation_jobs, runtime, status
from workers.automation_jobs import AutomationEnqueuer, event_job_id, sweep_automation_events

DOWN = "redis://127.0.0.1:9/0"  # nothing listens there: every Redis call is refused, as when Redis is down
LATER = dt.timedelta(minutes=2)


def use_redis(settings: Settings, url: str) -> Storage:
    """This process as a web or worker process on ``url``: its storage, with automation installed."""
    runtime.configure(settings, url)
    AutomationEnqueuer.cache = (0.0, None)
    storage = runtime.storage()
    assert AutomationEnqueuer.enabled
    return storage


@pytest.fixture
def down(settings: Settings, storage: Storage, redis: Redis) -> Iterator[Storage]:
    yield use_redis(settings, DOWN)
    runtime.reset()
    AutomationEnqueuer.cache = (0.0, None)


def tag_rule(session: Session) -> int:
    rule = automation.save_rule(session, None, name="tag it", trigger="ticket_created", match="all",
                                conditions=[], actions=[{"type": "add_tag", "value": "seen-by-rule"}])
    return rule.id


def new_ticket(session: Session, inbox_id: int, subject: str) -> int:
    msg = ingest(session, inbox_id, factories.inbound(subject=subject))
    assert msg is not None
    session.commit()
    return msg.ticket_id


def outbox(storage: Storage) -> list[str]:
    with storage.factory() as session:
        return list(session.scalars(select(AutomationEvent.name).order_by(AutomationEvent.id)))


def tags(storage: Storage, ticket_id: int) -> list[str]:
    with storage.factory() as session:
        return [t.name for t in session.get_one(Ticket, ticket_id).tags]


def work(redis: Redis) -> None:
    SimpleWorker([Queue(runtime.DEFAULT, connection=redis)], connection=redis).work(burst=True,
                                                                                    logging_level="WARNING")


def test_an_event_committed_while_redis_is_down_runs_its_rules_once_redis_is_back(
    down: Storage, settings: Settings, redis: Redis, redis_url: str
) -> None:
    with down.factory() as session:
        tag_rule(session)
        inbox_id = factories.make_inbox(session).id
        session.commit()
        ticket_id = new_ticket(session, inbox_id, "Written while Redis was down")  # the commit succeeds
    assert outbox(down) == ["ticket.created"]  # the rule wants it: kept in the database, not lost
    with down.factory() as session:  # what `helpline status` and the health page show meanwhile
        report = status.collect(session, Redis.from_url(DOWN, socket_connect_timeout=0.5))
    waiting = {w["key"]: w["count"] for w in report["stored_work"]}
    assert waiting == {"automation_events": 1, "webhook_deliveries": 0, "telegram_updates": 0}
    assert "waiting in the database: 1 automation events (rules, webhooks) to run" in status.render(report)

    storage = use_redis(settings, redis_url)  # Redis is back
    assert sweep_automation_events() == 0  # within the grace a job of its own may still be on its way
    assert sweep_automation_events(utcnow() + LATER) == 1
    assert sweep_automation_events(utcnow() + LATER) == 0  # its job waits in the queue: not twice
    work(redis)
    assert tags(storage, ticket_id) == ["seen-by-rule"]
    assert outbox(storage) == []
    with storage.factory() as session:
        assert all(w["count"] == 0 for w in status.stored_work(session))


def test_a_job_run_twice_acts_once_and_unwanted_events_write_nothing(
    down: Storage, settings: Settings, redis: Redis, redis_url: str
) -> None:
    storage = use_redis(settings, redis_url)
    with storage.factory() as session:
        inbox_id = factories.make_inbox(session).id
        session.commit()
        automation_jobs.refresh_gate()  # what a worker publishes at start: no rule, no webhook
        new_ticket(session, inbox_id, "Nobody listens")
    assert outbox(storage) == [] and Queue(runtime.DEFAULT, connection=redis).count == 0

    with storage.factory() as session:
        rule_id = tag_rule(session)
        session.commit()
    automation_jobs.refresh_gate()  # what the settings page does after saving a rule
    AutomationEnqueuer.cache = (0.0, None)
    with storage.factory() as session:
        ticket_id = new_ticket(session, inbox_id, "Somebody listens")
    with storage.factory() as session:
        (event_id,) = session.scalars(select(AutomationEvent.id))
    assert Queue(runtime.DEFAULT, connection=redis).job_ids == [event_job_id(event_id)]  # enqueued after commit
    job = Queue(runtime.DEFAULT, connection=redis).fetch_job(event_job_id(event_id))
    assert job is not None
    name, room, payload, _id = job.args
    work(redis)
    assert tags(storage, ticket_id) == ["seen-by-rule"] and outbox(storage) == []
    automation_jobs.enqueue_event(name, room, payload, event_id)  # a second job for the same event
    work(redis)
    with storage.factory() as session:
        assert session.get_one(AutomationRule, rule_id).fire_count == 1
        assert session.scalar(select(func.count()).select_from(AutomationEvent)) == 0


def test_an_event_whose_job_keeps_failing_is_left_after_the_last_sweep(
    down: Storage, settings: Settings, redis: Redis, redis_url: str
) -> None:
    storage = use_redis(settings, redis_url)
    with storage.factory() as session, session.begin():
        session.add(AutomationEvent(name="ticket.created", room="ticket:1", payload={},
                                    sweeps=automation_jobs.MAX_SWEEPS - 1))
    assert sweep_automation_events(utcnow() + LATER) == 1
    redis.flushdb()  # its job failed and is gone
    assert sweep_automation_events(utcnow() + LATER) == 0  # the fifth sweep was the last
    assert outbox(storage) == ["ticket.created"]  # still there for an admin to see
