"""The ingestion pipeline: one inbound message in, stored once, on the right ticket, in one transaction.

Connectors hand the core nothing but ``Inbound`` values. ``ingest`` flushes and never commits: the caller (a job,
a view, a Socket.IO handler) owns the transaction, and events recorded here go out after its commit.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Integer, func, inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from inbox import audit, events
from inbox.blobs import BlobStore
from inbox.db import utcnow
from inbox.errors import NotFound
from inbox.identities import prefetch_identities, resolve_identity
from inbox.models import Attachment, Identity, Inbox, Message, MessageRef, Ticket
from inbox.routing import Lookups, route

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
    # Chats only: the conversation within the contact's chats (an Instagram post's shortcode). Messages with a key
    # join the contact's ticket of that key on the inbox, or start one; stored as meta["thread_key"].
    thread_key: str | None = None


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
    return ingest_many(session, inbox_id, [inbound])[0]


def ingest_many(session: Session, inbox_id: int, inbounds: Sequence[Inbound]) -> list[Message | None]:
    """Store a batch of inbound messages of one inbox, in order; None for each one already stored.

    Same rules as one-by-one ``ingest``, with one query per question for the whole batch instead of several per
    message, and one flush. A reply later in the batch finds a parent stored earlier in it.
    """
    # The identity map holds objects weakly: keep the inbox alive for the session instead of reloading it per call.
    inboxes: dict[int, Inbox] = session.info.setdefault("tx_cache", {}).setdefault("inboxes", {})
    inbox = inboxes.get(inbox_id) or session.get(Inbox, inbox_id)
    if inbox is None:
        raise NotFound(f"inbox {inbox_id} does not exist")
    inboxes[inbox_id] = inbox
    results: list[Message | None] = [None] * len(inbounds)
    todo = _new_only(session, inbox_id, inbounds)
    if not todo:
        return results
    if session.get_bind().dialect.name == "sqlite":
        # Our SQLite transactions start with BEGIN IMMEDIATE: no other writer can run between the check above and
        # the insert, so no savepoint is needed there.
        stored = _store_batch(session, inbox, [inbounds[i] for i in todo])
    else:
        stored = _store_guarded(session, inbox, [inbounds[i] for i in todo])
    for index, item in zip(todo, stored, strict=True):
        if item is None:
            continue
        message, ticket, created = item
        if created:
            audit.log(
                session, ticket, "created", data={"reason": message.thread_reason}, live_event=events.TICKET_CREATED
            )
        payload = message_payload(message)
        events.record(session, events.MESSAGE_CREATED, f"ticket:{ticket.id}", payload)
        events.record(session, events.MESSAGE_CREATED, f"inbox:{inbox_id}", payload)
        results[index] = message
    _number_new_rows(session)  # the audit rows above
    return results


def _number_new_rows(session: Session) -> None:
    """SQLite: give the session's new rows their ids before the flush, in insertion order.

    The ORM needs each new row's id back; SQLite cannot return the ids of a multi-row INSERT in a guaranteed order,
    so SQLAlchemy falls back to one ``INSERT ... RETURNING`` per row (most of the ingest time). With the ids set
    here it sends one executemany per table. Safe because our SQLite transactions begin IMMEDIATE: no other writer
    can take an id between the ``max(id)`` read here and the commit. It numbers rows as SQLite itself would
    (max + 1). PostgreSQL batches with RETURNING on its own and keeps its sequences.
    """
    if session.get_bind().dialect.name != "sqlite":
        return
    pending: dict[Any, list[Any]] = {}
    for obj in session.new:
        pending.setdefault(inspect(obj).mapper, []).append(obj)
    for mapper, objs in pending.items():
        if mapper.inherits is not None or len(mapper.primary_key) != 1:
            continue
        if getattr(mapper.local_table, "kwargs", {}).get("sqlite_autoincrement"):
            continue  # AUTOINCREMENT promises never to reuse the id of a deleted last row; max + 1 could
        column = mapper.primary_key[0]
        if not isinstance(column.type, Integer) or column.foreign_keys or column.autoincrement is False:
            continue  # only a table's own integer counter; a key copied from a parent row is the ORM's to set
        attr = mapper.get_property_by_column(column).key
        preset = [value for obj in objs if (value := getattr(obj, attr)) is not None]
        todo = sorted((obj for obj in objs if getattr(obj, attr) is None), key=lambda o: inspect(o).insert_order or 0)
        if not todo:
            continue
        with session.no_autoflush:  # a flush here would insert the very rows being numbered
            start = max([session.scalar(select(func.max(column))) or 0, *preset]) + 1
        for offset, obj in enumerate(todo):
            setattr(obj, attr, start + offset)


Stored = tuple[Message, Ticket, bool]


def _new_only(session: Session, inbox_id: int, inbounds: Sequence[Inbound]) -> list[int]:
    """Indexes of the inbounds not stored yet (and not repeated earlier in the batch)."""
    ids = sorted({i.external_id for i in inbounds})
    existing: set[str] = set()
    for start in range(0, len(ids), 500):
        existing.update(
            session.scalars(
                select(Message.external_id).where(
                    Message.inbox_id == inbox_id, Message.external_id.in_(ids[start : start + 500])
                )
            )
        )
    todo: list[int] = []
    for index, inbound in enumerate(inbounds):
        if inbound.external_id not in existing:
            existing.add(inbound.external_id)
            todo.append(index)
    return todo


def _store_guarded(session: Session, inbox: Inbox, inbounds: list[Inbound]) -> list[Stored | None]:
    """PostgreSQL: another process may store the same message meanwhile; the unique key decides, then we retry
    one by one so that only the lost messages are skipped."""
    try:
        with session.begin_nested():  # a lost race undoes this batch's contacts and tickets too
            return list(_store_batch(session, inbox, inbounds))
    except IntegrityError:
        if len(inbounds) > 1:
            out: list[Stored | None] = []
            for inbound in inbounds:
                if find_message(session, inbox.id, inbound.external_id) is not None:
                    out.append(None)
                else:
                    out.extend(_store_guarded(session, inbox, [inbound]))
            return out
        if find_message(session, inbox.id, inbounds[0].external_id) is not None:
            return [None]  # another process stored it first
        raise


def _store_batch(session: Session, inbox: Inbox, inbounds: list[Inbound]) -> list[Stored | None]:
    now = utcnow()
    out: list[Stored | None] = []
    # One flush at the end writes contacts, identities, tickets, messages and refs together: the lookups must not
    # each trigger an autoflush (that was half the time per message).
    with session.no_autoflush:
        known = prefetch_identities(session, {(i.channel, i.handle) for i in inbounds})
        identities = [
            resolve_identity(
                session, i.channel, i.handle, i.display_name, i.contact_attributes, flush=False, known=known
            )
            for i in inbounds
        ]
        lookups = Lookups(session, inbox.id)
        lookups.prefetch(
            refs={r for i in inbounds for r in i.references},
            message_ids={i.message_id for i in inbounds if i.message_id},
            contacts=[ident.contact for ident in identities],
            thread_keys={i.thread_key for i in inbounds if i.thread_key},
        )
        for inbound, identity in zip(inbounds, identities, strict=True):
            out.append(_store_one(session, inbox, inbound, identity, lookups, now))
        _number_new_rows(session)
    session.flush()  # ids exist from here on; the unique (inbox_id, external_id) check happens here
    return out


def _store_one(
    session: Session, inbox: Inbox, inbound: Inbound, identity: Identity, lookups: Lookups, now: dt.datetime
) -> Stored:
    contact = identity.contact
    decision = route(
        lookups,
        contact,
        channel=inbound.channel,
        message_id=inbound.message_id,
        references=inbound.references,
        ticket_token=inbound.ticket_token,
        thread_key=inbound.thread_key,
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
        meta=dict(inbound.meta) | ({"thread_key": inbound.thread_key} if inbound.thread_key else {}),
    )
    session.add(message)
    for ref in dict.fromkeys(inbound.references):
        session.add(MessageRef(message=message, ref=ref[:500]))
    store_attachments(session, message, inbound.attachments)
    _update_ticket(session, ticket, inbound, _received_at(inbound, now), now, created)
    lookups.remember(contact, ticket, inbound.message_id, inbound.references, inbound.thread_key)
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
