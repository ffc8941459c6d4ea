"""Channel health: what ``helpline status`` prints and the admin page shows.

Users of other helpdesks learn of a broken channel only from missing mail; here each inbox shows its last
successful sync, its last error, its backlog of unsent replies and its credential state, and is flagged once it
has been failing for longer than its threshold.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from redis import Redis
from rq import Queue, Worker
from rq.exceptions import InvalidJobOperation
from rq.job import Job
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from inbox.automation_models import AutomationEvent, WebhookDelivery
from inbox.db import utcnow
from inbox.models import Inbox, Message
from inbox.telegram_models import TelegramUpdate
from workers.health import MIN_ALERT_AFTER, alert_after, alert_state  # noqa: F401 — re-exported
from workers.runtime import QUEUES

FAILED_SHOWN = 50  # failed jobs / failed replies listed (counts are complete)


def inbox_health(session: Session, default_interval: int = 60, now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """One dict per inbox: sync times, error, backlog and whether to flag it."""
    now = now or utcnow()
    backlog: dict[int, int] = dict(
        session.execute(
            select(Message.inbox_id, func.count())
            .where(Message.direction == "outbound", Message.delivery_state.in_(("queued", "delayed", "sending")))
            .group_by(Message.inbox_id)
        ).all()
    )
    failed: dict[int, int] = dict(
        session.execute(
            select(Message.inbox_id, func.count())
            .where(Message.direction == "outbound", Message.delivery_state == "failed")
            .group_by(Message.inbox_id)
        ).all()
    )
    oldest: dict[int, dt.datetime] = dict(
        session.execute(
            select(Message.inbox_id, func.min(Message.created_at))
            .where(Message.direction == "outbound", Message.delivery_state.in_(("queued", "delayed", "sending")))
            .group_by(Message.inbox_id)
        ).all()
    )
    out = []
    for inbox in session.scalars(select(Inbox).order_by(Inbox.id)):
        oldest_at = oldest.get(inbox.id)
        out.append({
            "id": inbox.id,
            "name": inbox.name,
            "channel": inbox.channel,
            "address": inbox.address,
            "team_id": inbox.team_id,
            "paused": inbox.paused,
            "credential_state": inbox.credential_state,
            "last_sync_at": inbox.last_sync_at,
            "last_error": inbox.last_error,
            "last_error_at": inbox.last_error_at,
            **alert_state(inbox, default_interval, now),
            "backlog": backlog.get(inbox.id, 0),
            "oldest_unsent_age": (now - oldest_at).total_seconds() if oldest_at else None,
            "failed_replies": failed.get(inbox.id, 0),
        })
    return out


def queue_health(redis: Redis) -> dict[str, Any]:
    """Queue lengths, running/scheduled/failed jobs per queue, and live workers."""
    queues: dict[str, dict[str, int]] = {}
    for name in QUEUES:
        q = Queue(name, connection=redis)
        queues[name] = {
            "queued": q.count,
            "started": StartedJobRegistry(queue=q).count,
            "scheduled": ScheduledJobRegistry(queue=q).count,
            "failed": FailedJobRegistry(queue=q).count,
        }
    return {"queues": queues, "workers": len(Worker.all(connection=redis)), "failed_jobs": failed_jobs(redis)}


def failed_jobs(redis: Redis, limit: int = FAILED_SHOWN) -> list[dict[str, Any]]:
    """The most recent failed jobs of every queue: id, queue, what it was, when and why it failed."""
    found: list[dict[str, Any]] = []
    for name in QUEUES:
        registry = FailedJobRegistry(queue=Queue(name, connection=redis))
        ids = registry.get_job_ids(0, limit - 1, desc=True)
        for job_id, job in zip(ids, Job.fetch_many(ids, connection=redis), strict=True):
            if job is None:
                continue  # expired between the two calls
            result = job.latest_result()
            trace = ((result.exc_string if result is not None else None) or "").strip().splitlines()
            found.append({"id": job_id, "queue": name, "description": job.description or job.func_name,
                          "ended_at": job.ended_at, "error": trace[-1][:300] if trace else ""})
    found.sort(key=lambda j: j["ended_at"] or dt.datetime.min, reverse=True)
    return found[:limit]


def retry_failed_job(redis: Redis, job_id: str) -> bool:
    """Put a failed job back on its queue (RQ's requeue); False if it is not in a failed-job registry."""
    for name in QUEUES:
        registry = FailedJobRegistry(queue=Queue(name, connection=redis))
        if job_id not in registry:
            continue
        job = Job.fetch(job_id, connection=redis)
        if job.func_name == "workers.inbound.poll_inbox" and job.args:
            # A poll goes through the inbox's lock like any other, so a retry never runs beside a poll.
            from workers.schedule import try_enqueue_poll

            registry.remove(job, delete_job=True)
            try_enqueue_poll(int(job.args[0]))
            return True
        try:
            registry.requeue(job_id)
        except InvalidJobOperation:
            return False  # it left the registry meanwhile (another admin retried it)
        return True
    return False


def failed_replies(session: Session, limit: int = FAILED_SHOWN) -> list[dict[str, Any]]:
    """The most recent replies that could not be delivered, with the channel's reason."""
    rows = session.execute(
        select(Message.id, Message.ticket_id, Message.inbox_id, Inbox.name, Message.delivery_error,
               Message.created_at)
        .join(Inbox, Inbox.id == Message.inbox_id)
        .where(Message.direction == "outbound", Message.delivery_state == "failed")
        .order_by(Message.id.desc())
        .limit(limit)
    ).all()
    return [{"id": r[0], "ticket_id": r[1], "inbox_id": r[2], "inbox": r[3], "error": r[4] or "", "created_at": r[5]}
            for r in rows]


def stored_work(session: Session, now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Work kept in the database until a job has done it: how much, and how long the oldest has waited. When
    Redis is down these grow; once it is back the scheduler's sweeps enqueue them, and they drain."""
    now = now or utcnow()
    kinds = [
        ("automation_events", "Automation events (rules, webhooks) to run", AutomationEvent.created_at, ()),
        ("webhook_deliveries", "Webhook deliveries to send", WebhookDelivery.created_at,
         (WebhookDelivery.state.in_(("pending", "retrying")),)),
        ("telegram_updates", "Telegram webhook updates to store", TelegramUpdate.received_at,
         (TelegramUpdate.state == "pending",)),
    ]
    out = []
    for key, label, column, where in kinds:
        count, oldest = session.execute(select(func.count(), func.min(column)).where(*where)).one()
        if oldest is not None and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=dt.UTC)
        out.append({"key": key, "label": label, "count": int(count),
                    "oldest_age": int((now - oldest).total_seconds()) if oldest is not None else None})
    return out


def collect(session: Session, redis: Redis | None, default_interval: int = 60) -> dict[str, Any]:
    """Everything ``helpline status`` shows; Redis being down is itself reported, not raised."""
    report: dict[str, Any] = {"inboxes": inbox_health(session, default_interval), "redis_error": None,
                              "stored_work": stored_work(session)}
    if redis is None:
        report["redis_error"] = "no Redis configured"
        return report
    try:
        report |= queue_health(redis)
    except Exception as exc:  # connection refused, timeout: that is the finding
        report["redis_error"] = f"{type(exc).__name__}: {exc}"
    return report


def _age(value: dt.datetime | None, now: dt.datetime) -> str:
    if value is None:
        return "never"
    seconds = int((now - value).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def render(report: dict[str, Any], now: dt.datetime | None = None) -> str:
    """The report as plain text for a terminal."""
    now = now or utcnow()
    lines = []
    if report.get("redis_error"):
        lines.append(f"Redis: UNAVAILABLE ({report['redis_error']})")
    else:
        lines.append(f"Workers: {report['workers']}")
        lines.append(f"{'queue':<10} {'queued':>7} {'running':>8} {'scheduled':>10} {'failed':>7}")
        for name, q in report["queues"].items():
            lines.append(f"{name:<10} {q['queued']:>7} {q['started']:>8} {q['scheduled']:>10} {q['failed']:>7}")
        for job in report.get("failed_jobs", [])[:10]:
            lines.append(f"  failed {job['queue']}: {job['description']}: {job['error'] or '?'}")
    lines.append("")
    header = f"{'inbox':<24} {'channel':<9} {'state':<13} {'last sync':<12} {'backlog':>7} {'failed':>6}"
    lines.append(f"{header}  last error")
    for ib in report["inboxes"]:
        state = "paused" if ib["paused"] else ib["credential_state"] if ib["credential_state"] != "ok" else (
            "FAILING" if ib["alert"] else "failing" if ib["failing"] else "ok")
        error = f"{ib['last_error']} ({_age(ib['last_error_at'], now)})" if ib["last_error"] else "-"
        lines.append(f"{ib['name'][:24]:<24} {ib['channel']:<9} {state:<13} {_age(ib['last_sync_at'], now):<12} "
                     f"{ib['backlog']:>7} {ib['failed_replies']:>6}  {error}")
    if not report["inboxes"]:
        lines.append("(no inboxes)")
    waiting = [w for w in report.get("stored_work", []) if w["count"]]
    if waiting:
        lines.append("")
        for w in waiting:
            lines.append(f"waiting in the database: {w['count']} {w['label'].lower()} "
                         f"(oldest {_age(now - dt.timedelta(seconds=w['oldest_age'] or 0), now)})")
    return "\n".join(lines)
