"""The audit trail: every change to a ticket as a ``ticket_event`` row, plus the live event for browsers."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from inbox import events
from inbox.models import Ticket, TicketEvent


def ticket_payload(ticket: Ticket) -> dict[str, Any]:
    """The JSON-safe summary of a ticket sent to browsers (built after flush, so ids exist)."""
    return {
        "id": ticket.id,
        "inbox_id": ticket.inbox_id,
        "contact_id": ticket.contact_id,
        "channel": ticket.channel,
        "subject": ticket.subject,
        "preview": ticket.preview,
        "status": ticket.status,
        "priority": ticket.priority,
        "assignee_id": ticket.assignee_id,
        "team_id": ticket.team_id,
        "message_count": ticket.message_count,
        "last_activity_at": ticket.last_activity_at.isoformat() if ticket.last_activity_at else None,
    }


def log(
    session: Session,
    ticket: Ticket,
    kind: str,
    *,
    actor_id: int | None = None,
    data: dict[str, Any] | None = None,
    live_event: str = events.TICKET_UPDATED,
) -> TicketEvent:
    """Record one change to ``ticket`` and queue its live event for after the commit.

    While an automation rule acts, ``session.info["audit_context"]`` holds ``{"automation": {...}}``: every change
    it makes is then recorded as done by that rule, and the event carries the rule chain (the loop guard).
    """
    data = (data or {}) | session.info.get("audit_context", {})
    row = TicketEvent(ticket=ticket, actor_id=actor_id, kind=kind, data=data)
    session.add(row)
    payload = ticket_payload(ticket) | {"change": kind, "actor_id": actor_id, "data": data or {}}
    events.record(session, live_event, f"inbox:{ticket.inbox_id}", payload)
    events.record(session, live_event, f"ticket:{ticket.id}", payload)
    return row
