"""Routing: which ticket an inbound message joins, and why (the reason is stored on the message).

Rules, in order (DESIGN.md):
1. Email reply chains: In-Reply-To, then References (newest first), against stored Message-IDs of the inbox,
   including our own outgoing ones; and a parent that arrives after its replies joins their ticket.
2. A ticket token (``[#123]`` in the subject, ``support+t123@`` address), only from a contact already on it.
3. Chats (every non-email channel): the contact's latest ticket on that inbox.
A solved ticket reopens; a closed one is never reused: a new ticket starts with a link back (parent_id).
Email is never threaded by subject alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from inbox.models import OPEN_STATUSES, Contact, Inbox, Message, MessageRef, Ticket

# Our own outgoing Message-IDs look like <ticket-123.abcdef@domain>: the ticket survives even if the
# customer's client drops the rest of the chain.
OWN_MESSAGE_ID = re.compile(r"^<?ticket-(\d+)\.[^@>]+@[^>]+>?$")


@dataclass(frozen=True)
class Route:
    """Where a message goes: an existing ticket (maybe to reopen) or a new one (maybe following a closed one)."""

    ticket: Ticket | None
    reason: str
    parent_id: int | None = None


def follow_merges(session: Session, ticket: Ticket) -> Ticket:
    seen: set[int] = set()
    while ticket.merged_into_id is not None and ticket.id not in seen:
        seen.add(ticket.id)
        nxt = session.get(Ticket, ticket.merged_into_id)
        if nxt is None:
            break
        ticket = nxt
    return ticket


def _usable(session: Session, ticket: Ticket, reason: str) -> Route:
    ticket = follow_merges(session, ticket)
    if ticket.status == "closed":
        return Route(None, f"new ticket after closed #{ticket.id} ({reason})", parent_id=ticket.id)
    return Route(ticket, reason)


def _by_message_id(session: Session, inbox_id: int, message_id: str) -> Ticket | None:
    match = OWN_MESSAGE_ID.match(message_id)
    if match:
        ticket = session.get(Ticket, int(match.group(1)))
        if ticket is not None and ticket.inbox_id == inbox_id:
            return ticket
    return session.scalar(
        select(Ticket)
        .join(Message, Message.ticket_id == Ticket.id)
        .where(Message.inbox_id == inbox_id, Message.message_id_header == message_id)
        .order_by(Message.id)
        .limit(1)
    )


def _contact_on_ticket(session: Session, ticket: Ticket, contact: Contact) -> bool:
    if ticket.contact_id == contact.id:
        return True
    return bool(
        session.scalar(select(exists().where(Message.ticket_id == ticket.id, Message.contact_id == contact.id)))
    )


def route(
    session: Session,
    inbox: Inbox,
    contact: Contact,
    *,
    channel: str,
    message_id: str | None,
    references: tuple[str, ...],
    ticket_token: int | None,
) -> Route:
    """Decide which ticket a message from ``contact`` joins."""
    for i, ref in enumerate(references):
        ticket = _by_message_id(session, inbox.id, ref)
        if ticket is not None:
            return _usable(session, ticket, f"{'in-reply-to' if i == 0 else 'references'} {ref}")
    if message_id:
        # A reply that arrived before its parent: the parent joins the reply's ticket.
        child_ticket = session.scalar(
            select(Ticket)
            .join(Message, Message.ticket_id == Ticket.id)
            .join(MessageRef, MessageRef.message_id == Message.id)
            .where(MessageRef.ref == message_id, Message.inbox_id == inbox.id)
            .order_by(Message.id)
            .limit(1)
        )
        if child_ticket is not None:
            return _usable(session, child_ticket, f"parent of a stored reply ({message_id})")
    if contact.id is None:
        return Route(None, "new ticket")  # a first-time sender has no tickets of their own yet
    if ticket_token is not None:
        ticket = session.get(Ticket, ticket_token)
        if ticket is not None and ticket.inbox_id == inbox.id and _contact_on_ticket(session, ticket, contact):
            return _usable(session, ticket, f"ticket token #{ticket_token}")
    if channel != "email":
        ticket = session.scalar(
            select(Ticket)
            .where(Ticket.contact_id == contact.id, Ticket.inbox_id == inbox.id, Ticket.merged_into_id.is_(None))
            .order_by(Ticket.id.desc())
            .limit(1)
        )
        if ticket is not None:
            if ticket.status in OPEN_STATUSES:
                return Route(ticket, f"open chat ticket #{ticket.id}")
            if ticket.status == "solved":
                return Route(ticket, f"reopened solved ticket #{ticket.id}")
            return Route(None, f"new ticket after closed #{ticket.id}", parent_id=ticket.id)
    return Route(None, "new ticket")
