"""Periodic housekeeping jobs (``default`` queue): the outbox sweeper and the ticket clocks."""

from __future__ import annotations

import datetime as dt
import logging

from rq.job import Job
from sqlalchemy import or_, select

from inbox.db import utcnow
from inbox.models import Message
from tickets import lifecycle
from workers import enqueue, runtime

log = logging.getLogger(__name__)

# A reply committed this recently still has its own job on the way (the web enqueues right after commit).
QUEUED_GRACE = dt.timedelta(seconds=10)
# A job RQ calls "started" claims its message within milliseconds; one still unclaimed after this long lost its
# worker (kill -9, OOM) before the claim, and RQ would only notice when the job's heartbeat expires.
STARTED_GRACE = dt.timedelta(seconds=30)
# A retry RQ holds as "scheduled" is moved to its queue by a worker's scheduler on time; one overdue by this
# much was lost with that scheduler (it died, or Redis restarted in between).
SCHEDULED_GRACE = dt.timedelta(seconds=60)
SWEEP_BATCH = 1000


def sweep_outbox(now: dt.datetime | None = None) -> int:
    """Enqueue deliveries that have no job: lost with Redis, never enqueued (Redis down at commit), due retries
    whose scheduled job is gone, and sends a dead worker left behind. Returns how many were enqueued."""
    now = now or utcnow()
    storage = runtime.storage()
    with storage.factory() as session:
        rows = session.execute(
            select(Message.id, Message.delivery_state, Message.next_attempt_at)
            .where(
                Message.direction == "outbound",
                Message.delivery_state.in_(("queued", "delayed", "sending")),
                or_(Message.next_attempt_at.is_(None), Message.next_attempt_at <= now),
            )
            .order_by(Message.id)
            .limit(SWEEP_BATCH)
        ).all()
    if not rows:
        return 0
    redis = runtime.redis()
    jobs = Job.fetch_many([enqueue.delivery_job_id(r.id) for r in rows], connection=redis)
    queue = runtime.queue(runtime.OUTBOUND)
    in_queue: set[str] | None = None  # read once, only if needed: 5,000 LPOS calls would not be
    count = 0
    for row, job in zip(rows, jobs, strict=True):
        fresh = row.next_attempt_at is not None and row.next_attempt_at > now - QUEUED_GRACE
        if row.delivery_state == "queued" and fresh:
            continue
        status = job.get_status(refresh=False) if job is not None else None
        pending = status is not None and status.value in ("queued", "scheduled", "deferred", "started")
        if pending and status is not None and status.value == "queued":
            # RQ 3 moves a job to an intermediate list before marking it started; a worker killed in between
            # leaves it "queued" but on no queue, which RQ notices only after minutes.
            if in_queue is None:
                in_queue = set(queue.get_job_ids())
            if enqueue.delivery_job_id(row.id) not in in_queue:
                pending = False
                redis.lrem(f"{queue.key}:intermediate", 0, enqueue.delivery_job_id(row.id))
        if pending and status is not None and status.value == "scheduled" and row.next_attempt_at is not None:
            pending = row.next_attempt_at > now - SCHEDULED_GRACE
        if pending and job is not None and status is not None and status.value == "started":
            started = job.started_at
            if started is not None and started.tzinfo is None:
                started = started.replace(tzinfo=dt.UTC)
            pending = started is None or started > now - STARTED_GRACE
        # A "sending" row past its lease lost its worker, whatever RQ still believes about the job.
        if pending and row.delivery_state != "sending":
            continue
        enqueue.enqueue_delivery(row.id)
        count += 1
    if count:
        log.info("sweep_outbox: enqueued %d deliveries that had no job", count)
    return count


def wake_snoozed() -> list[int]:
    """Reopen snoozed tickets whose time has come."""
    with runtime.storage().factory() as session, session.begin():
        return lifecycle.wake_snoozed(session)


def close_solved() -> list[int]:
    """Close tickets solved longer ago than ``close_solved_after_days``."""
    storage = runtime.storage()
    days = storage.settings.close_solved_after_days
    with storage.factory() as session, session.begin():
        return lifecycle.close_solved(session, dt.timedelta(days=days))
