"""Plain factory functions with sequence counters; they flush, never commit (redash's ModelFactory)."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

from sqlalchemy.orm import Session
from werkzeug.security import generate_password_hash

from inbox.ingest import Inbound
from inbox.models import Inbox, Team, User

_seq = itertools.count(1)


def make_team(session: Session, **overrides: Any) -> Team:
    team = Team(**({"name": f"Team {next(_seq)}"} | overrides))
    session.add(team)
    session.flush()
    return team


def make_user(
    session: Session, *, password: str = "correct horse", teams: list[Team] | None = None, **overrides: Any
) -> User:
    n = next(_seq)
    values = {"email": f"agent{n}@helpline.test", "name": f"Agent {n}", "role": "agent"} | overrides
    user = User(password_hash=generate_password_hash(password), **values)
    user.teams = list(teams or [])
    session.add(user)
    session.flush()
    return user


def make_inbox(session: Session, **overrides: Any) -> Inbox:
    n = next(_seq)
    values = {"name": f"Inbox {n}", "channel": "email", "address": f"support{n}@shop.test"} | overrides
    inbox = Inbox(**values)
    session.add(inbox)
    session.flush()
    return inbox


def inbound(**overrides: Any) -> Inbound:
    """An Inbound with unique ids; override what the test is about."""
    n = next(_seq)
    values: dict[str, Any] = {
        "channel": "email",
        "external_id": f"ext-{n}",
        "handle": f"customer{n}@example.com",
        "display_name": f"Customer {n}",
        "text": f"Hello, this is message {n}",
        "subject": f"Question {n}",
        "sent_at": dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5),
    }
    values.update(overrides)
    if values["channel"] == "email" and "message_id" not in overrides:
        values["message_id"] = f"<msg-{n}@example.com>"
    return Inbound(**values)
