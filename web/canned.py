"""Canned responses: reply texts with placeholders, shared with everyone or personal to one user, filled in
per ticket.

Placeholders are replaced by plain string substitution, never evaluated as a template: a canned text is data
someone typed, and running it through Jinja would let it read the app's internals (template injection).
Shared responses are written by admins and leads; personal ones are seen and changed by their owner only.
"""

from __future__ import annotations

import re

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from inbox.db import utcnow
from inbox.errors import InvalidChange, NotFound
from inbox.models import Contact, Ticket, User
from inbox.people_models import CannedResponse

MAX_RESPONSES = 500
PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\.([a-z_]+)\s*\}\}")
PLACEHOLDERS = (
    "contact.first_name",
    "contact.name",
    "agent.name",
    "agent.first_name",
    "ticket.id",
    "ticket.subject",
)
SHARED_EDITORS = ("admin", "lead")


def visible(session: Session, user: User) -> list[CannedResponse]:
    """Shared responses and the user's own, by title; nobody else's personal ones."""
    stmt = select(CannedResponse).where(or_(CannedResponse.owner_id.is_(None), CannedResponse.owner_id == user.id))
    return list(session.scalars(stmt.order_by(CannedResponse.title, CannedResponse.id)))


def get_visible(session: Session, user: User, canned_id: int) -> CannedResponse:
    row = session.get(CannedResponse, canned_id)
    if row is None or (row.owner_id is not None and row.owner_id != user.id):
        raise NotFound(f"no canned response {canned_id}")  # someone else's personal text: as if missing
    return row


def may_edit(user: User, row: CannedResponse) -> bool:
    return row.owner_id == user.id if row.owner_id is not None else user.role in SHARED_EDITORS


def _clean(title: str, body: str) -> tuple[str, str]:
    title, body = title.strip()[:100], body.strip()[:5000]
    if not title or not body:
        raise InvalidChange("a canned response needs a title and a text")
    return title, body


def create(session: Session, user: User, title: str, body: str, *, shared: bool) -> CannedResponse:
    title, body = _clean(title, body)
    if shared and user.role not in SHARED_EDITORS:
        raise InvalidChange("only admins and leads write shared responses; save it as yours instead")
    if len(visible(session, user)) >= MAX_RESPONSES:
        raise InvalidChange(f"at most {MAX_RESPONSES} canned responses")
    row = CannedResponse(owner_id=None if shared else user.id, title=title, body=body)
    session.add(row)
    session.flush()
    return row


def update(session: Session, user: User, row: CannedResponse, title: str, body: str) -> None:
    if not may_edit(user, row):
        raise InvalidChange("only admins and leads change shared responses")
    row.title, row.body = _clean(title, body)
    row.updated_at = utcnow()
    session.flush()


def delete(session: Session, user: User, row: CannedResponse) -> None:
    if not may_edit(user, row):
        raise InvalidChange("only admins and leads delete shared responses")
    session.delete(row)
    session.flush()


def render(body: str, *, contact: Contact, agent: User, ticket: Ticket) -> str:
    """Fill ``{{contact.first_name}}``, ``{{contact.name}}``, ``{{agent.name}}``, ``{{agent.first_name}}``,
    ``{{ticket.id}}`` and ``{{ticket.subject}}``; anything else stays as typed."""
    values = {
        ("contact", "first_name"): contact.first_name or "there",
        ("contact", "name"): contact.name,
        ("agent", "name"): agent.name,
        ("agent", "first_name"): agent.name.split()[0] if agent.name.strip() else "",
        ("ticket", "id"): str(ticket.id),
        ("ticket", "subject"): ticket.subject,
    }
    return PLACEHOLDER.sub(lambda m: values.get((m.group(1), m.group(2)), m.group(0)), body)


def preview(body: str, agent: User) -> str:
    """``body`` filled with a sample customer and ticket, for the settings page."""
    sample = Ticket(id=1042, subject="Where is my order?")
    return render(body, contact=Contact(name="Ann Example"), agent=agent, ticket=sample)


def unknown_placeholders(body: str) -> list[str]:
    """Placeholders that will stay as typed (likely typos), for a warning under the text."""
    found = {f"{a}.{b}" for a, b in PLACEHOLDER.findall(body)}
    return sorted(found - set(PLACEHOLDERS))
