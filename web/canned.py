"""Canned responses: reply texts with placeholders, kept as one workspace setting, filled in per ticket.

Placeholders are replaced by plain string substitution, never evaluated as a template: a canned text is data
an admin typed, and running it through Jinja would let it read the app's internals (template injection).
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.orm import Session

from inbox import workspace
from inbox.errors import InvalidChange
from inbox.models import Contact, Ticket, User

KEY = "canned.responses"
MAX_RESPONSES = 200
PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\.([a-z_]+)\s*\}\}")


def responses(session: Session) -> list[dict[str, str]]:
    stored: Any = workspace.get_setting(session, KEY, [])
    return [r for r in stored if isinstance(r, dict) and r.get("title") and r.get("body")] if stored else []


def add(session: Session, title: str, body: str) -> None:
    title, body = title.strip()[:100], body.strip()[:5000]
    if not title or not body:
        raise InvalidChange("a canned response needs a title and a text")
    current = responses(session)
    if len(current) >= MAX_RESPONSES:
        raise InvalidChange(f"at most {MAX_RESPONSES} canned responses")
    workspace.set_setting(session, KEY, [*current, {"title": title, "body": body}])


def remove(session: Session, index: int) -> None:
    current = responses(session)
    if 0 <= index < len(current):
        workspace.set_setting(session, KEY, current[:index] + current[index + 1 :])


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
