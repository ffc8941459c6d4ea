"""Putting jobs on queues: deliveries (by message id, one job id per message) and the after-commit enqueuer.

The database is the truth about what must be sent (``delivery_state``/``next_attempt_at``); a job is only a nudge.
If Redis loses it, ``maintenance.sweep_outbox`` enqueues it again, and the claim in ``outbound.deliver_message``
makes a second job for the same message harmless.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from rq.job import Job

from inbox import events
from workers import runtime

log = logging.getLogger(__name__)

DELIVER_TIMEOUT = 120  # seconds a single send may take before RQ kills the job
POLL_TIMEOUT = 300  # seconds a poll of one inbox may take
RESULT_TTL = 60  # seconds a finished job's hash is kept (5,000 replies must not fill Redis)


def delivery_job_id(message_id: int) -> str:
    return f"deliver-{message_id}"


def enqueue_delivery(message_id: int, delay: float = 0.0) -> Job:
    """Enqueue ``deliver_message(message_id)`` now or after ``delay`` seconds (needs a worker ``--with-scheduler``,
    and the sweeper catches it otherwise)."""
    q = runtime.queue(runtime.OUTBOUND)
    opts: dict[str, Any] = {
        "job_id": delivery_job_id(message_id),
        "job_timeout": DELIVER_TIMEOUT,
        "result_ttl": RESULT_TTL,
        "failure_ttl": 7 * 24 * 3600,
        "description": f"deliver message {message_id}",
    }
    if delay > 0:
        return q.enqueue_in(dt.timedelta(seconds=delay), "workers.outbound.deliver_message", message_id, **opts)
    return q.enqueue("workers.outbound.deliver_message", message_id, **opts)


def delivery_job_pending(message_id: int) -> bool:
    """True if a delivery job for the message waits in a queue, is scheduled or is running."""
    job = Job.fetch_many([delivery_job_id(message_id)], connection=runtime.redis())[0]
    if job is None:
        return False
    status = job.get_status(refresh=False)
    return status is not None and status.value in ("queued", "started", "scheduled", "deferred")


class DeliveryEnqueuer:
    """An event publisher that enqueues the delivery of each reply once its ``queued`` row has committed.

    Installed in every process that creates replies (web, API, automation). Should Redis be down, the reply stays
    ``queued`` in the database and the outbox sweeper enqueues it later; the agent's request does not fail.
    """

    def __call__(self, ev: events.DomainEvent) -> None:
        payload = ev.payload
        if ev.name not in (events.MESSAGE_CREATED, events.MESSAGE_UPDATED):
            return
        if payload.get("direction") != "outbound" or payload.get("delivery_state") != "queued":
            return
        if not ev.room.startswith("ticket:"):
            return  # the same message may be announced in several rooms; enqueue once
        enqueue_delivery(int(payload["id"]))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DeliveryEnqueuer)

    def __hash__(self) -> int:
        return hash(DeliveryEnqueuer)


def install_delivery_enqueuer() -> None:
    """Enqueue deliveries after commit in this process (call once at start-up, e.g. in ``create_app``)."""
    events.add_publisher(DeliveryEnqueuer())
