"""The customer thread as the ticket page shows it: oldest first, grouped into runs of one ticket each."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, selectinload

from inbox.models import Message, Ticket
from inbox.thread import customer_thread


@dataclass
class Group:
    """Consecutive messages of one ticket; groups of other tickets are shown folded."""

    ticket_id: int
    current: bool
    subject: str = ""
    messages: list[Message] = field(default_factory=list)


def thread_groups(
    session: Session, ticket: Ticket, contact_id: int, inbox_ids: set[int] | None, before_id: int | None
) -> tuple[list[Group], int | None]:
    """One page of the contact's thread plus this ticket's messages from other contacts (after a ticket merge)."""
    page = customer_thread(session, contact_id, before_id=before_id, limit=50, inbox_ids=inbox_ids)
    messages = list(page.messages)
    if before_id is None:
        seen = {m.id for m in messages}
        # Also this ticket's messages from inboxes the user cannot see otherwise (moved or merged in from there):
        # who may see a ticket may see all of it.
        foreign = Message.contact_id != contact_id
        if inbox_ids is not None:
            foreign = or_(foreign, Message.inbox_id.not_in(inbox_ids))
        others = session.scalars(
            select(Message).where(Message.ticket_id == ticket.id, foreign).options(selectinload(Message.attachments))
        )
        messages += [m for m in others if m.id not in seen]
    messages.sort(key=lambda m: (m.created_at, m.id))
    rows = session.execute(select(Ticket.id, Ticket.subject).where(Ticket.id.in_({m.ticket_id for m in messages})))
    subjects = {ticket_id: subject for ticket_id, subject in rows}
    groups: list[Group] = []
    for message in messages:
        if not groups or groups[-1].ticket_id != message.ticket_id:
            current = message.ticket_id == ticket.id
            groups.append(Group(message.ticket_id, current, subjects.get(message.ticket_id, "")))
        groups[-1].messages.append(message)
    return groups, page.next_cursor
