"""The ingestion pipeline: one inbound message in, stored once, on the right ticket, in one transaction.

Connectors hand the core nothing but ``Inbound`` values. ``ingest`` flushes and never commits: the caller (a job,
a view, a Socket.IO handler) owns the transaction, and events recorded here go out after its commit.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from inbox import audit, events
from inbox.blobs import BlobStore
from inbox.db import utcnow
from inbox.errors import NotFound
from inbox.identities import resolve_identity
from inbox.models import Attachment, Inbox, Message, MessageRef, Ticket
from inbox.routing import route

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InboundAttachment:
    filename: str
    content_type: str
    data: bytes
    content_id: str | None = None  # for inline cid: images
    inline: bool = False


@dataclass(frozen=True)
class Inbound:
    """One customer message as a connector understood it; the only type connectors hand to the core."""

    channel: str  # "email", "telegram", "instagram", "webchat"
    external_id: str  # channel-native id, unique per inbox: redelivery is harmless
    handle: str  # the sender on that channel: address, user id, username, visitor id
    display_name: str = ""
    text: str = ""
    html: str | None = None  # already sanitised by the connector
    subject: str = ""
    sent_at: dt.datetime | None = None
    message_id: str | None = None  # email Message-ID (threading)
    references: tuple[str, ...] = ()  # In-Reply-To first, then References newest first
    ticket_token: int | None = None  # ticket number found in the subject or plus-address
    attachments: tuple[InboundAttachment, ...] = ()
    raw_sha256: str | None = None  # raw source, stored in the blob store before parsing
    is_auto: bool = False  # auto-reply, bounce, bulk: stored, never answered automatically, never reopens
    contact_attributes: Mapping[str, Any] = field(default_factory=dict)
    meta: Mapping[str, Any] = field(default_factory=dict)  # channel extras shown to agents (post link, ...)


InboundMessage = Inbound


def find_message(session: Session, inbox_id: int, external_id: str) -> Message | None:
    return session.scalar(select(Message).where(Message.inbox_id == inbox_id, Message.external_id == external_id))


def message_payload(message: Message) -> dict[str, Any]:
    return {
        "id": message.id,
        "ticket_id": message.ticket_id,
        "inbox_id": message.inbox_id,
        "contact_id": message.contact_id,
        "direction": message.direction,
        "channel": message.channel,
        "text": message.body_text[:500],
        "author_id": message.author_id,
        "delivery_state": message.delivery_state,
        "created_at": message.created_at.isoformat() if message.created_at else None,
    }


def store_attachments(session: Session, message: Message, attachments: tuple[InboundAttachment, ...]) -> None:
    """Store files content-addressed; one over the size limit is recorded as skipped, never silently dropped."""
    if not attachments:
        return
    store: BlobStore | None = session.info.get("blobs")
    limit: int = session.info.get("max_attachment_bytes", 25 * 1024 * 1024)
    for att in attachments:
        row = Attachment(
            message=message,
            filename=att.filename or "attachment",
            content_type=att.content_type or "application/octet-stream",
            size=len(att.data),
            content_id=att.content_id,
            inline=att.inline,
        )
        if len(att.data) > limit:
            row.skipped_reason = f"larger than the {limit // (1024 * 1024)} MB limit"
        elif store is None:
            row.skipped_reason = "no attachment store configured"
        else:
            row.sha256 = store.put(att.data)
        session.add(row)


def _received_at(inbound: Inbound, now: dt.datetime) -> dt.datetime:
    # Clocks lie (future Date: headers); never let a message claim to be newer than its arrival.
    if inbound.sent_at is None or inbound.sent_at.tzinfo is None:
        return now
    return min(inbound.sent_at.astimezone(dt.UTC), now)


def ingest(session: Session, inbox_id: int, inbound: Inbound) -> Message | None:
    """Store one inbound message. Returns None if it was already stored (webhooks and IMAP both redeliver)."""
    if find_message(session, inbox_id, inbound.external_id) is not None:
        return None
    inbox = session.get(Inbox, inbox_id)
    if inbox is None:
        raise NotFound(f"inbox {inbox_id} does not exist")
    if session.get_bind().dialect.name == "sqlite":
        # Our SQLite transactions start with BEGIN IMMEDIATE: no other writer can run between the check above and
        # the insert, so the savepoint (two extra statements per message) buys nothing there.
        message, ticket, created = _store(session, inbox, inbound)
    else:
        stored = _store_guarded(session, inbox, inbound)
        if stored is None:
            return None  # another process stored it first
        message, ticket, created = stored
    if created:
        audit.log(session, ticket, "created", data={"reason": message.thread_reason}, live_event=events.TICKET_CREATED)
    payload = message_payload(message)
    events.record(session, events.MESSAGE_CREATED, f"ticket:{ticket.id}", payload)
    events.record(session, events.MESSAGE_CREATED, f"inbox:{inbox_id}", payload)
    return message


def _store_guarded(session: Session, inbox: Inbox, inbound: Inbound) -> tuple[Message, Ticket, bool] | None:
    try:
        with session.begin_nested():  # a lost race on the unique key undoes the contact and ticket too
            return _store(session, inbox, inbound)
    except IntegrityError:
        if find_message(session, inbox.id, inbound.external_id) is not None:
            return None
        raise


def _store(session: Session, inbox: Inbox, inbound: Inbound) -> tuple[Message, Ticket, bool]:
    now = utcnow()
    at = _received_at(inbound, now)
    # One flush at the end writes contact, identity, ticket, message and refs together: the lookups below must
    # not each trigger an autoflush (that was half the time per message).
    with session.no_autoflush:
        identity = resolve_identity(
            session, inbound.channel, inbound.handle, inbound.display_name, inbound.contact_attributes, flush=False
        )
        contact = identity.contact
        decision = route(
            session,
            inbox,
            contact,
            channel=inbound.channel,
            message_id=inbound.message_id,
            references=inbound.references,
            ticket_token=inbound.ticket_token,
        )
        created = decision.ticket is None
        if decision.ticket is None:
            ticket = Ticket(
                inbox_id=inbox.id,
                contact=contact,
                channel=inbound.channel,
                subject=(inbound.subject or inbound.text.strip().split("\n", 1)[0])[:500],
                status="new",
                team_id=inbox.team_id,
                parent_id=decision.parent_id,
                created_at=now,
                updated_at=now,
                last_activity_at=now,
                message_count=0,
            )
            session.add(ticket)
        else:
            ticket = decision.ticket
        message = Message(
            ticket=ticket,
            inbox_id=inbox.id,
            contact=contact,
            identity=identity,
            direction="inbound",
            channel=inbound.channel,
            external_id=inbound.external_id,
            message_id_header=inbound.message_id,
            subject=inbound.subject[:500],
            body_text=inbound.text,
            body_html=inbound.html,
            sent_at=inbound.sent_at,
            created_at=now,
            is_auto=inbound.is_auto,
            thread_reason=decision.reason,
            raw_sha256=inbound.raw_sha256,
            meta=dict(inbound.meta),
        )
        session.add(message)
        for ref in dict.fromkeys(inbound.references):
            session.add(MessageRef(message=message, ref=ref[:500]))
        store_attachments(session, message, inbound.attachments)
        _update_ticket(session, ticket, inbound, at, now, created)
    session.flush()  # ids exist from here on; the unique (inbox_id, external_id) check happens here
    return message, ticket, created


def _update_ticket(
    session: Session, ticket: Ticket, inbound: Inbound, at: dt.datetime, now: dt.datetime, created: bool
) -> None:
    ticket.message_count = (ticket.message_count or 0) + 1
    ticket.last_activity_at = now
    ticket.updated_at = now
    preview = " ".join(inbound.text.split())[:300]
    if preview:
        ticket.preview = preview
    if inbound.is_auto:
        return  # an out-of-office neither reopens a ticket nor starts an SLA clock
    if ticket.first_inbound_at is None:
        ticket.first_inbound_at = at
    if ticket.waiting_since is None:
        ticket.waiting_since = at
    if created:
        return
    if ticket.status == "solved":
        ticket.status = "open"
        ticket.solved_at = None
        ticket.reopened_at = now
        audit.log(session, ticket, "status", data={"from": "solved", "to": "open", "why": "customer replied"})
    elif ticket.status in ("pending", "snoozed"):
        old = ticket.status
        ticket.status = "open"
        ticket.snoozed_until = None
        audit.log(session, ticket, "status", data={"from": old, "to": "open", "why": "customer replied"})
