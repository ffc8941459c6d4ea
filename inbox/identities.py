"""Identities and contacts: resolve a channel handle to a contact, and merge two contacts losing nothing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload

from inbox import events
from inbox.errors import InvalidChange
from inbox.models import Contact, Identity, Message, Ticket, TicketEvent


def normalise_handle(channel: str, handle: str) -> str:
    handle = handle.strip()
    if channel == "email":
        return handle.lower()
    if channel == "instagram":
        return handle.lstrip("@").lower()
    return handle


def find_identity(session: Session, channel: str, handle: str) -> Identity | None:
    return session.scalar(
        select(Identity)
        .options(joinedload(Identity.contact))  # every caller needs the contact: one query, not two
        .where(Identity.channel == channel, Identity.handle == normalise_handle(channel, handle))
    )


def prefetch_identities(session: Session, pairs: set[tuple[str, str]]) -> dict[tuple[str, str], Identity]:
    """Load the identities of many (channel, handle) pairs at once, keyed by normalised pair."""
    found: dict[tuple[str, str], Identity] = {}
    by_channel: dict[str, list[str]] = {}
    for channel, handle in pairs:
        by_channel.setdefault(channel, []).append(normalise_handle(channel, handle))
    for channel, handles in by_channel.items():
        unique = sorted(set(handles))
        for i in range(0, len(unique), 500):
            rows = session.scalars(
                select(Identity)
                .options(joinedload(Identity.contact))
                .where(Identity.channel == channel, Identity.handle.in_(unique[i : i + 500]))
            )
            for identity in rows:
                found[(channel, identity.handle)] = identity
    return found


def resolve_identity(
    session: Session,
    channel: str,
    handle: str,
    display_name: str = "",
    attributes: Mapping[str, Any] | None = None,
    *,
    flush: bool = True,
    known: dict[tuple[str, str], Identity] | None = None,
) -> Identity:
    """Return the identity for (channel, handle), creating it and its contact on first sight.

    The unique constraint is the real guard: when two processes race, the loser's insert fails inside a
    savepoint and it selects the winner's row (as chatwoot's contact builder does).
    """
    handle = normalise_handle(channel, handle)
    if known is not None:
        identity = known.get((channel, handle))
    else:
        identity = find_identity(session, channel, handle)
    if identity is None and session.get_bind().dialect.name == "sqlite":
        # SQLite transactions hold the write lock from BEGIN IMMEDIATE: no race to guard against, and no flush
        # needed yet (the caller flushes contact, identity, ticket and message together).
        contact = Contact(name=display_name or handle, attributes=dict(attributes or {}))
        identity = Identity(contact=contact, channel=channel, handle=handle, display_name=display_name)
        session.add_all([contact, identity])
        if flush:
            session.flush()
        if known is not None:
            known[(channel, handle)] = identity
        return identity
    if identity is None:
        session.flush()  # pending rows fail here, outside the savepoint that guards only this identity
        try:
            with session.begin_nested():
                contact = Contact(name=display_name or handle, attributes=dict(attributes or {}))
                identity = Identity(contact=contact, channel=channel, handle=handle, display_name=display_name)
                session.add_all([contact, identity])
                session.flush()
        except IntegrityError:
            identity = find_identity(session, channel, handle)
            if identity is None:
                raise
        if known is not None:
            known[(channel, handle)] = identity
    if display_name and not identity.display_name:
        identity.display_name = display_name
    contact = identity.contact
    if display_name and contact.name in ("", handle):
        contact.name = display_name
    if attributes:
        merged = dict(contact.attributes or {})
        merged.update({k: v for k, v in attributes.items() if v not in (None, "")})
        if merged != contact.attributes:
            contact.attributes = merged
    return identity


def merge_contacts(session: Session, source: Contact, target: Contact, *, actor_id: int | None = None) -> Contact:
    """Move every identity, ticket and message of ``source`` to ``target``; ``source`` stays as a pointer."""
    session.flush()  # both need ids
    if source.id == target.id:
        raise InvalidChange("cannot merge a contact into itself")
    if target.merged_into_id is not None:
        raise InvalidChange(f"contact {target.id} was itself merged into {target.merged_into_id}")
    session.execute(update(Identity).where(Identity.contact_id == source.id).values(contact_id=target.id))
    session.execute(update(Message).where(Message.contact_id == source.id).values(contact_id=target.id))
    ticket_ids = list(session.scalars(select(Ticket.id).where(Ticket.contact_id == source.id)))
    session.execute(update(Ticket).where(Ticket.contact_id == source.id).values(contact_id=target.id))
    attributes = dict(source.attributes or {})
    attributes.update(target.attributes or {})  # the surviving contact's values win
    target.attributes = attributes
    if not target.name and source.name:
        target.name = source.name
    source.merged_into_id = target.id
    for ticket_id in ticket_ids:
        session.add(
            TicketEvent(
                ticket_id=ticket_id,
                actor_id=actor_id,
                kind="contact_merged",
                data={"from_contact": source.id, "to_contact": target.id},
            )
        )
    session.flush()
    # Bulk UPDATEs change the columns of loaded objects but not their cached relationships: refresh those.
    session.expire(target, ["identities"])
    session.expire(source, ["identities"])
    for obj in list(session.identity_map.values()):
        if isinstance(obj, Identity | Message | Ticket) and obj.contact_id == target.id:
            session.expire(obj, ["contact"])
    events.record(session, events.CONTACT_MERGED, f"contact:{target.id}", {"from": source.id, "to": target.id})
    return target


def live_contact(session: Session, contact: Contact) -> Contact:
    """Follow merge pointers to the contact that holds the history now."""
    seen = set()
    while contact.merged_into_id is not None and contact.id not in seen:
        seen.add(contact.id)
        nxt = session.get(Contact, contact.merged_into_id)
        if nxt is None:
            break
        contact = nxt
    return contact
