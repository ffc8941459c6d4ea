"""Routing: which ticket an inbound message joins, and why (the reason is stored on the message).

Rules, in order (DESIGN.md):
1. Email reply chains: In-Reply-To, then References (newest first), against stored Message-IDs of the inbox,
   including our own outgoing ones; and a parent that arrives after its replies joins their ticket.
2. A ticket token (``[#123]`` in the subject, ``support+t123@`` address), only from a contact already on it.
3. Chats (every non-email channel) with a ``thread_key`` (an Instagram post's shortcode): the contact's newest
   ticket on that inbox holding one of the contact's messages with that key; none, a new ticket. A new key never
   joins the contact's latest ticket: a comment under another post is another matter.
4. Chats without a thread key: the contact's latest ticket on that inbox.
A solved ticket reopens; a closed one is never reused: a new ticket starts with a link back (parent_id).
Email is never threaded by subject alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from inbox.models import OPEN_STATUSES, Contact, Message, MessageRef, Ticket

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


CHUNK = 500  # keeps IN (...) lists well under every database's parameter limit


def _chunks(values: list[str]) -> list[list[str]]:
    return [values[i : i + CHUNK] for i in range(0, len(values), CHUNK)]


class Lookups:
    """What routing asks the database, prefetched for a batch of messages and kept current as the batch is stored.

    One IN query per question for the whole batch replaces several queries per message; ``remember`` makes a
    message stored earlier in the batch visible to the ones after it (a reply in the same IMAP fetch).
    """

    def __init__(self, session: Session, inbox_id: int) -> None:
        self.session = session
        self.inbox_id = inbox_id
        self.by_message_id: dict[str, Ticket] = {}
        self.by_child_ref: dict[str, Ticket] = {}
        self.latest: dict[int, Ticket] = {}  # id(contact) -> the contact's newest ticket on this inbox
        # (id(contact), thread key) -> the contact's newest ticket on this inbox with a message of that key
        self.by_thread: dict[tuple[int, str], Ticket] = {}
        self._contacts: list[Contact] = []  # keeps the keys of ``latest`` alive

    def prefetch(
        self, refs: set[str], message_ids: set[str], contacts: list[Contact], thread_keys: set[str] | None = None
    ) -> None:
        session = self.session
        for chunk in _chunks(sorted(refs)):
            rows = session.execute(
                select(Message.message_id_header, Ticket)
                .join(Ticket, Ticket.id == Message.ticket_id)
                .where(Message.inbox_id == self.inbox_id, Message.message_id_header.in_(chunk))
                .order_by(Message.id)
            )
            for header, ticket in rows:
                if header:
                    self.by_message_id.setdefault(header, ticket)
        for chunk in _chunks(sorted(message_ids)):
            rows = session.execute(
                select(MessageRef.ref, Ticket)
                .join(Message, Message.id == MessageRef.message_id)
                .join(Ticket, Ticket.id == Message.ticket_id)
                .where(MessageRef.ref.in_(chunk), Message.inbox_id == self.inbox_id)
                .order_by(Message.id)
            )
            for ref, ticket in rows:
                if ref:
                    self.by_child_ref.setdefault(ref, ticket)
        known = {c.id: c for c in contacts if c.id is not None}
        ids = sorted(known)
        for i in range(0, len(ids), CHUNK):
            tickets = session.scalars(
                select(Ticket)
                .where(
                    Ticket.contact_id.in_(ids[i : i + CHUNK]),
                    Ticket.inbox_id == self.inbox_id,
                    Ticket.merged_into_id.is_(None),
                )
                .order_by(Ticket.id.desc())
            )
            for ticket in tickets:
                if id(known[ticket.contact_id]) not in self.latest:
                    self.latest[id(known[ticket.contact_id])] = ticket
        if thread_keys and ids:
            self._prefetch_threads(known, ids, sorted(thread_keys))
        self._contacts.extend(contacts)

    def _prefetch_threads(self, known: dict[int, Contact], ids: list[int], keys: list[str]) -> None:
        # meta is a JSON column: the key is read with JSON_EXTRACT / ->> (no index, but the contact filter is).
        key_col = Message.meta["thread_key"].as_string()
        for i in range(0, len(ids), CHUNK):
            for chunk in _chunks(keys):
                rows = self.session.execute(
                    select(Message.contact_id, key_col, Ticket)
                    .join(Ticket, Ticket.id == Message.ticket_id)
                    .where(
                        Message.inbox_id == self.inbox_id,
                        Message.contact_id.in_(ids[i : i + CHUNK]),
                        key_col.in_(chunk),
                    )
                    .order_by(Ticket.id.desc())
                )
                for contact_id, key, ticket in rows:
                    self.by_thread.setdefault((id(known[contact_id]), key), ticket)

    def ticket_for_message_id(self, message_id: str) -> Ticket | None:
        # The stored message first: an agent may have split or moved it to another ticket since it was sent.
        if (stored := self.by_message_id.get(message_id)) is not None:
            return stored
        match = OWN_MESSAGE_ID.match(message_id)
        if match:
            ticket = self.session.get(Ticket, int(match.group(1)))
            if ticket is not None and ticket.inbox_id == self.inbox_id:
                return ticket
        return self.by_message_id.get(message_id)

    def remember(
        self,
        contact: Contact,
        ticket: Ticket,
        message_id: str | None,
        references: tuple[str, ...],
        thread_key: str | None = None,
    ) -> None:
        if thread_key:
            self.by_thread[(id(contact), thread_key)] = ticket  # the next comment under that post joins it
        if message_id:
            self.by_message_id.setdefault(message_id, ticket)
        for ref in references:
            self.by_child_ref.setdefault(ref, ticket)
        self._contacts.append(contact)
        current = self.latest.get(id(contact))
        if current is None or current.id is None or (ticket.id is not None and ticket.id >= current.id):
            self.latest[id(contact)] = ticket


def _contact_on_ticket(session: Session, ticket: Ticket, contact: Contact) -> bool:
    if contact.id is None:
        return False  # first seen in this batch: on no stored ticket
    if ticket.contact_id == contact.id:
        return True
    return bool(
        session.scalar(select(exists().where(Message.ticket_id == ticket.id, Message.contact_id == contact.id)))
    )


def route(
    lookups: Lookups,
    contact: Contact,
    *,
    channel: str,
    message_id: str | None,
    references: tuple[str, ...],
    ticket_token: int | None,
    thread_key: str | None = None,
) -> Route:
    """Decide which ticket a message from ``contact`` joins."""
    session = lookups.session
    for i, ref in enumerate(references):
        ticket = lookups.ticket_for_message_id(ref)
        if ticket is not None:
            return _usable(session, ticket, f"{'in-reply-to' if i == 0 else 'references'} {ref}")
    if message_id and (child_ticket := lookups.by_child_ref.get(message_id)) is not None:
        # A reply that arrived before its parent: the parent joins the reply's ticket.
        return _usable(session, child_ticket, f"parent of a stored reply ({message_id})")
    if ticket_token is not None:
        ticket = session.get(Ticket, ticket_token)
        if ticket is not None and ticket.inbox_id == lookups.inbox_id and _contact_on_ticket(session, ticket, contact):
            return _usable(session, ticket, f"ticket token #{ticket_token}")
    if channel != "email" and thread_key:
        ticket = lookups.by_thread.get((id(contact), thread_key))
        if ticket is None:
            return Route(None, f"new ticket for thread {thread_key[:100]}")
        return _chat_route(session, ticket, f" (thread {thread_key[:100]})")  # the reason column holds 200
    if channel != "email" and (ticket := lookups.latest.get(id(contact))) is not None:
        return _chat_route(session, ticket, "")
    return Route(None, "new ticket")


def _chat_route(session: Session, ticket: Ticket, why: str) -> Route:
    ticket = follow_merges(session, ticket)
    if ticket.status in OPEN_STATUSES:
        return Route(ticket, f"open chat ticket{why}")  # the message sits in that ticket: no number needed
    if ticket.status == "solved":
        return Route(ticket, f"reopened solved ticket{why}")
    return Route(None, f"new ticket after closed #{ticket.id}{why}", parent_id=ticket.id)
