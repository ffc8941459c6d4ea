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
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from inbox.db import utcnow
from inbox.models import Inbox, Message
from workers.inbound import is_failing
from workers.runtime import QUEUES

MIN_ALERT_AFTER = 15 * 60  # seconds; a blip shorter than this is not worth an agent's attention


def alert_after(inbox: Inbox, default_interval: int) -> int:
    """Seconds of failure after which the inbox is flagged: ``config["alert_after"]``, or three polls."""
    configured = (inbox.config or {}).get("alert_after")
    if configured:
        return int(configured)
    return max(MIN_ALERT_AFTER, 3 * (inbox.poll_interval or default_interval))


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
        failing = is_failing(inbox)
        since = inbox.last_sync_at or inbox.created_at
        failing_for = (now - since).total_seconds() if failing and since else 0.0
        oldest_at = oldest.get(inbox.id)
        out.append({
            "id": inbox.id,
            "name": inbox.name,
            "channel": inbox.channel,
            "address": inbox.address,
            "paused": inbox.paused,
            "credential_state": inbox.credential_state,
            "last_sync_at": inbox.last_sync_at,
            "last_error": inbox.last_error,
            "last_error_at": inbox.last_error_at,
            "failing": failing,
            "failing_for": failing_for,
            "alert": failing and (inbox.credential_state == "needs_reauth"
                                  or failing_for >= alert_after(inbox, default_interval)),
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
    return {"queues": queues, "workers": len(Worker.all(connection=redis))}


def collect(session: Session, redis: Redis | None, default_interval: int = 60) -> dict[str, Any]:
    """Everything ``helpline status`` shows; Redis being down is itself reported, not raised."""
    report: dict[str, Any] = {"inboxes": inbox_health(session, default_interval), "redis_error": None}
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
    return "\n".join(lines)
