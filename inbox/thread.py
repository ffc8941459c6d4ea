"""The customer thread: every message of a contact, on every channel, newest first, paged by keyset."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session, selectinload

from inbox.models import Message, Ticket


@dataclass(frozen=True)
class ThreadPage:
    messages: list[Message]
    next_cursor: int | None  # pass as ``before_id`` for the next (older) page


def customer_thread(
    session: Session,
    contact_id: int,
    *,
    before_id: int | None = None,
    limit: int = 50,
    include_notes: bool = True,
    inbox_ids: set[int] | None = None,
) -> ThreadPage:
    """One page of the contact's timeline, ordered by arrival (created_at), then id.

    ``inbox_ids`` limits it to the inboxes a caller may see (None: all): messages of those inboxes, and messages
    of tickets of those inboxes sent or received through another one (a chat answered by email).
    """
    limit = max(1, min(limit, 200))
    stmt = select(Message).where(Message.contact_id == contact_id).options(selectinload(Message.attachments))
    if inbox_ids is not None:
        visible_tickets = select(Ticket.id).where(Ticket.inbox_id.in_(inbox_ids))
        stmt = stmt.where(or_(Message.inbox_id.in_(inbox_ids), Message.ticket_id.in_(visible_tickets)))
    if not include_notes:
        stmt = stmt.where(Message.direction != "note")
    if before_id is not None:
        anchor = session.get(Message, before_id)
        if anchor is not None:
            stmt = stmt.where(
                or_(
                    Message.created_at < anchor.created_at,
                    and_(Message.created_at == anchor.created_at, Message.id < anchor.id),
                )
            )
    rows = list(session.scalars(stmt.order_by(Message.created_at.desc(), Message.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return ThreadPage(rows, rows[-1].id if more and rows else None)
