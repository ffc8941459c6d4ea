"""When an inbox counts as failing, when that is worth flagging to every agent, and the event that says so.

One definition for ``helpline status``, the admin health page and the banner in every agent's screen. A sync that
fails once is not worth an agent's attention; one that has failed for longer than the inbox's threshold is.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.orm import Session

from inbox import events
from inbox.db import utcnow
from inbox.models import Inbox

MIN_ALERT_AFTER = 15 * 60  # seconds; a blip shorter than this is not worth an agent's attention


def health_room(inbox_id: int) -> str:
    """The Socket.IO room of an inbox's health events; web.health_views joins each agent's socket to those of
    the inboxes they may see (clients cannot ask for it)."""
    return f"health:{inbox_id}"


def is_failing(inbox: Inbox) -> bool:
    """True if the inbox's latest sync attempt failed (or its credentials were rejected)."""
    if inbox.credential_state == "needs_reauth":
        return True
    if inbox.last_error_at is None:
        return False
    return inbox.last_sync_at is None or inbox.last_error_at > inbox.last_sync_at


def alert_after(inbox: Inbox, default_interval: int) -> int:
    """Seconds of failure after which the inbox is flagged: ``config["alert_after"]``, or three polls (at least
    ``MIN_ALERT_AFTER``)."""
    configured = (inbox.config or {}).get("alert_after")
    if configured:
        return int(configured)
    return max(MIN_ALERT_AFTER, 3 * (inbox.poll_interval or default_interval))


def alert_state(inbox: Inbox, default_interval: int, now: dt.datetime | None = None) -> dict[str, Any]:
    """``failing``, ``failing_for`` (seconds since the last good sync), ``alert`` (flag it now) and ``alert_in``
    (seconds until it will be flagged if nothing changes; None when it is not failing or already flagged)."""
    now = now or utcnow()
    failing = is_failing(inbox) and not inbox.paused
    since = inbox.last_sync_at or inbox.created_at
    failing_for = max(0.0, (now - since).total_seconds()) if failing and since else 0.0
    threshold = alert_after(inbox, default_interval)
    alert = failing and (inbox.credential_state == "needs_reauth" or failing_for >= threshold)
    return {
        "failing": failing,
        "failing_for": failing_for,
        "alert_after": threshold,
        "alert": alert,
        "alert_in": threshold - failing_for if failing and not alert else None,
    }


def health_payload(inbox: Inbox, default_interval: int = 60) -> dict[str, Any]:
    """The ``inbox.health`` event: what the banner and the health page need to redraw one inbox."""
    return {
        "id": inbox.id,
        "name": inbox.name,
        "channel": inbox.channel,
        "credential_state": inbox.credential_state,
        "last_sync_at": inbox.last_sync_at.isoformat() if inbox.last_sync_at else None,
        "last_error": inbox.last_error,
        "last_error_at": inbox.last_error_at.isoformat() if inbox.last_error_at else None,
        **alert_state(inbox, default_interval),
    }


def record_health(session: Session, inbox: Inbox, default_interval: int = 60) -> None:
    """Announce the inbox's health after the caller commits (an error appeared, cleared, or credentials failed)."""
    events.record(session, events.INBOX_HEALTH, health_room(inbox.id), health_payload(inbox, default_interval))
