"""The scheduler process: it only enqueues. Each polling inbox at its interval, the sweeps every minute.

Both "due" and "running" live in Redis, so several schedulers (or a restarted one) never pile up duplicates:
- ``helpline:due:<name>`` is set with ``SET NX EX interval``; whoever sets it enqueues, nobody else until it expires.
- ``helpline:poll-lock:<inbox>`` (``SET NX EX``) is held from enqueue until the poll job ends, so at most one poll of
  an inbox is queued or running; a lock whose job is gone (Redis flushed, job failed) is broken at once, one whose
  worker was killed expires after ``POLL_LOCK_TTL``.

RQ's ``rq cron`` runs fixed functions at fixed intervals; per-inbox intervals that admins change at runtime
and the lock are why this is a small loop of our own.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from typing import Any

from rq.job import Job
from sqlalchemy import select

from inbox.models import Inbox
from workers import enqueue, runtime
from workers.inbound import lock_key, release_lock
from workers.sync import polls

log = logging.getLogger(__name__)

SWEEP_INTERVAL = int(os.environ.get("HELPLINE_SWEEP_INTERVAL", "60"))  # seconds between two outbox sweeps
POLL_LOCK_TTL = int(os.environ.get("HELPLINE_POLL_LOCK_TTL", str(enqueue.POLL_TIMEOUT + 60)))
TICK = 1.0  # seconds between two looks at the clock

# name → (job function, interval seconds)
PERIODIC: dict[str, tuple[str, int]] = {
    "sweep_outbox": ("workers.maintenance.sweep_outbox", SWEEP_INTERVAL),
    "wake_snoozed": ("workers.maintenance.wake_snoozed", 60),
    "close_solved": ("workers.maintenance.close_solved", 3600),
    "sweep_sla": ("workers.sla_jobs.sweep_sla", 60),
    "sweep_telegram_updates": ("workers.telegram_updates.sweep_telegram_updates", 60),
    "sweep_webhooks": ("workers.automation_jobs.sweep_webhooks", 60),
    "sweep_automation_events": ("workers.automation_jobs.sweep_automation_events", 60),
    "sweep_report_rebuild": ("workers.report_jobs.sweep_report_rebuild", 60),
}
_DONE = ("finished", "failed", "stopped", "canceled")


def claim_due(name: str, interval: int) -> bool:
    """True once per ``interval`` across all schedulers."""
    return bool(runtime.redis().set(f"helpline:due:{name}", "1", nx=True, ex=max(1, interval)))


def try_enqueue_poll(inbox_id: int) -> Job | None:
    """Enqueue a poll of the inbox unless one is queued or running; the mail watcher calls this on new mail."""
    redis = runtime.redis()
    token = f"poll-{inbox_id}-{uuid.uuid4().hex[:12]}"
    if not redis.set(lock_key(inbox_id), token, nx=True, ex=POLL_LOCK_TTL):
        holder = redis.get(lock_key(inbox_id))
        if holder is None or not _job_gone(holder.decode()):
            return None
        release_lock(inbox_id, holder.decode())
        if not redis.set(lock_key(inbox_id), token, nx=True, ex=POLL_LOCK_TTL):
            return None
    try:
        return runtime.queue(runtime.INBOUND).enqueue(
            "workers.inbound.poll_inbox", inbox_id, lock_token=token, job_id=token,
            job_timeout=enqueue.POLL_TIMEOUT, result_ttl=enqueue.RESULT_TTL, failure_ttl=24 * 3600,
            description=f"poll inbox {inbox_id}",
        )
    except Exception:
        release_lock(inbox_id, token)
        raise


def _job_gone(job_id: str) -> bool:
    job = Job.fetch_many([job_id], connection=runtime.redis())[0]
    if job is None:
        return True
    status = job.get_status(refresh=False)
    return status is None or status.value in _DONE


def enqueue_periodic(name: str) -> Job | None:
    func, _interval = PERIODIC[name]
    job_id = f"periodic-{name}"
    if not _job_gone(job_id):
        return None  # the last one still waits or runs: a slow sweep must not pile up
    return runtime.queue(runtime.DEFAULT).enqueue(func, job_id=job_id, result_ttl=enqueue.RESULT_TTL,
                                                  job_timeout=600, description=name)


def polling_inboxes() -> list[tuple[int, int]]:
    """(inbox id, poll interval seconds) of each inbox that polls and is not paused."""
    storage = runtime.storage()
    default = storage.settings.poll_interval
    with storage.factory() as session:
        rows = session.execute(select(Inbox.id, Inbox.channel, Inbox.poll_interval).where(Inbox.paused.is_(False)))
        return [(r.id, r.poll_interval or default) for r in rows if polls(r.channel)]


def tick() -> dict[str, Any]:
    """One look at the clock: enqueue what is due. Returns what was enqueued (for logs and tests)."""
    done: dict[str, Any] = {"polls": [], "periodic": []}
    for name, (_func, interval) in PERIODIC.items():
        if claim_due(name, interval) and enqueue_periodic(name) is not None:
            done["periodic"].append(name)
    for inbox_id, interval in polling_inboxes():
        if claim_due(f"poll:{inbox_id}", interval) and try_enqueue_poll(inbox_id) is not None:
            done["polls"].append(inbox_id)
    return done


def run(stop: threading.Event | None = None) -> None:
    """The scheduler loop, until ``stop`` is set (or forever). Errors are logged and the loop goes on, so a Redis
    or database restart only delays the schedule."""
    stop = stop or threading.Event()
    log.info("scheduler started (sweeps every %ss)", SWEEP_INTERVAL)
    while not stop.is_set():
        try:
            done = tick()
            if done["polls"] or done["periodic"]:
                log.info("scheduler enqueued polls=%s periodic=%s", done["polls"], done["periodic"])
        except Exception:
            log.exception("scheduler tick failed; trying again")
            stop.wait(5)
        stop.wait(TICK)
    log.info("scheduler stopped")
