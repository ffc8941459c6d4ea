"""Domain events: recorded inside a transaction, published after it commits, through one function.

``record`` only appends to ``session.info``; the ``after_commit`` hook installed on every session factory hands
them to the publishers (the Socket.IO relay in web, the write-only emitter in workers, test recorders). Clients
therefore never see a message that was rolled back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

MESSAGE_CREATED = "message.created"
MESSAGE_UPDATED = "message.updated"
MESSAGE_MOVED = "message.moved"  # split off or moved to another ticket: both tickets' pages refresh
TICKET_CREATED = "ticket.created"
TICKET_UPDATED = "ticket.updated"
TICKET_ASSIGNED = "ticket.assigned"
TICKET_STATUS_CHANGED = "ticket.status_changed"
TICKET_MERGED = "ticket.merged"
CONTACT_MERGED = "contact.merged"
INBOX_HEALTH = "inbox.health"


@dataclass(frozen=True)
class DomainEvent:
    name: str
    room: str
    payload: dict[str, Any] = field(default_factory=dict)
    namespace: str = "/"  # the Socket.IO namespace of the room: "/" for agents, "/widget" for website visitors


Publisher = Callable[[DomainEvent], None]
_publishers: list[Publisher] = []


def add_publisher(fn: Publisher) -> None:
    if fn not in _publishers:
        _publishers.append(fn)


def remove_publisher(fn: Publisher) -> None:
    if fn in _publishers:
        _publishers.remove(fn)


def record(session: Session, name: str, room: str, payload: dict[str, Any], *, namespace: str = "/") -> None:
    """Queue an event to publish when ``session`` commits; dropped if it rolls back."""
    session.info.setdefault("pending_events", []).append(DomainEvent(name, room, payload, namespace))


def publish(ev: DomainEvent) -> None:
    """The one place events leave the process."""
    for fn in list(_publishers):
        try:
            fn(ev)
        except Exception:  # a dead browser relay must not undo or block a committed change
            log.exception("publishing %s to %s failed", ev.name, ev.room)


def install(factory: sessionmaker[Session]) -> None:
    @event.listens_for(factory, "after_commit")
    def _publish(session: Session) -> None:
        if session.in_nested_transaction():
            return  # a savepoint was released; the real commit comes later
        session.info.pop("tx_cache", None)  # per-transaction lookups (ingest's inbox cache) end here
        for ev in session.info.pop("pending_events", []):
            publish(ev)

    @event.listens_for(factory, "after_rollback")
    def _drop(session: Session) -> None:
        if not session.in_nested_transaction():
            session.info.pop("pending_events", None)
            session.info.pop("tx_cache", None)
