"""The SLA sweep as the worker runs it: an RQ job on the default queue, events published after commit."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis import Redis
from rq import Queue, SimpleWorker
from sqlalchemy import select

from inbox import events
from inbox.config import Settings
from inbox.models import TicketEvent
from inbox.runtime import Storage
from tests.reports.world import World, build
from workers import runtime


@pytest.fixture
def wk(settings: Settings, storage: Storage, redis_url: str) -> Iterator[Storage]:
    conn = Redis.from_url(redis_url)
    conn.flushdb()
    runtime.configure(settings, redis_url)
    yield runtime.storage()
    runtime.reset()
    conn.flushdb()
    conn.close()


@pytest.fixture
def world(wk: Storage) -> World:
    with wk.factory() as session:
        w = build(session)
        session.commit()
        return w


def test_sweep_job_records_once_and_publishes(wk: Storage, world: World, redis_url: str) -> None:
    seen: list[events.DomainEvent] = []
    events.add_publisher(seen.append)
    try:
        conn = Redis.from_url(redis_url)
        queue = Queue("default", connection=conn)
        for _ in range(2):  # the second run finds both records made: nothing new
            queue.enqueue("workers.sla_jobs.sweep_sla", "2026-10-27T12:00:00+00:00")
        SimpleWorker([queue], connection=conn).work(burst=True)
        conn.close()
    finally:
        events.remove_publisher(seen.append)
    with wk.factory() as session:
        rows = session.execute(
            select(TicketEvent.ticket_id, TicketEvent.kind, TicketEvent.data["metric"].as_string()).where(
                TicketEvent.kind.in_(("sla_warning", "sla_breach"))
            )
        ).all()
    # At 12:00 t4's first response is due (breach); no clock is within 30 minutes of its due time.
    assert [tuple(r) for r in rows] == [(world.t4, "sla_breach", "first_response")]
    assert [(e.name, e.room, e.payload["change"]) for e in seen] == [
        ("ticket.updated", f"inbox:{world.inbox1}", "sla_breach"),
        ("ticket.updated", f"ticket:{world.t4}", "sla_breach"),
    ]
