"""Who may see what: admins see every inbox; leads and agents see the inboxes their teams own."""

from __future__ import annotations

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from inbox.models import Inbox, Message, TeamMember, Ticket, User


def visible_inbox_ids(session: Session, user: User) -> set[int] | None:
    """The ids of inboxes ``user`` may see, or None for every inbox (admins)."""
    if user.role == "admin":
        return None
    team_ids = select(TeamMember.team_id).where(TeamMember.user_id == user.id)
    return set(session.scalars(select(Inbox.id).where(Inbox.team_id.in_(team_ids))))


def can_see_inbox(session: Session, user: User, inbox_id: int) -> bool:
    ids = visible_inbox_ids(session, user)
    return ids is None or inbox_id in ids


def can_see_ticket(session: Session, user: User, ticket: Ticket) -> bool:
    return can_see_inbox(session, user, ticket.inbox_id)


def restrict_tickets(stmt: Select[tuple[Ticket]], ids: set[int] | None) -> Select[tuple[Ticket]]:
    return stmt if ids is None else stmt.where(Ticket.inbox_id.in_(ids))


def restrict_inboxes(stmt: Select[tuple[Inbox]], ids: set[int] | None) -> Select[tuple[Inbox]]:
    return stmt if ids is None else stmt.where(Inbox.id.in_(ids))


def restrict_messages(stmt: Select[tuple[Message]], ids: set[int] | None) -> Select[tuple[Message]]:
    return stmt if ids is None else stmt.where(Message.inbox_id.in_(ids))


def can_see_contact(session: Session, user: User, contact_id: int) -> bool:
    """A contact is visible when it wrote to (or was answered in) an inbox the user can see."""
    ids = visible_inbox_ids(session, user)
    if ids is None:
        return True
    if not ids:
        return False
    found = session.scalar(
        select(Ticket.id).where(Ticket.contact_id == contact_id, Ticket.inbox_id.in_(ids)).limit(1)
    ) or session.scalar(select(Message.id).where(Message.contact_id == contact_id, Message.inbox_id.in_(ids)).limit(1))
    return found is not None


def archived_inbox_ids(session: Session) -> set[int]:
    """Inboxes archived in the channel settings (``config["archived"]``): gone from folders and filters, while
    their tickets stay reachable by URL and search for those who may see them."""
    return {i for i, config in session.execute(select(Inbox.id, Inbox.config)) if (config or {}).get("archived")}
