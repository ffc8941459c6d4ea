"""Fixtures for the web tests: an app on both databases and a small world of two teams that must not mix."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from inbox.config import Settings
from inbox.ingest import InboundAttachment, ingest
from inbox.runtime import Storage
from tests.factories import inbound, make_inbox, make_team, make_user
from web import create_app

PASSWORD = "correct horse"
CSRF_META = re.compile(r'name="csrf-token" content="([^"]+)"')
# A hostile email body: script, event handlers, a javascript: link, SVG with onload, a meta refresh, a form.
HOSTILE_HTML = (
    "<p>Hello</p><script>window.top.__pwned = 'script'; window.__pwned = 'script'</script>"
    "<img src=x onerror=\"window.top.__pwned='onerror'; window.__pwned='onerror'\">"
    "<a href=\"javascript:window.top.__pwned='link'\" id=evil>click me</a>"
    "<svg onload=\"window.top.__pwned='svg'\"><script>window.top.__pwned='svg-script'</script></svg>"
    "<iframe src=\"javascript:parent.__pwned='iframe'\"></iframe>"
    '<img src="https://tracker.example/pixel.gif">'
)


@dataclass
class World:
    """Team A (lead, agent) owns inbox A; team B (agent) owns inbox B; an admin sees both."""

    admin: int
    lead_a: int
    agent_a: int
    agent_b: int
    emails: dict[int, str]
    inbox_a: int
    inbox_b: int
    ticket_a: int
    ticket_a2: int
    ticket_b: int
    contact_a: int
    message_a: int
    attachment_a: int
    marker_a: str  # a subject only ticket A has: must never show on team B's pages


def build_world(session: Session) -> World:
    team_a, team_b = make_team(session), make_team(session)
    admin = make_user(session, role="admin", password=PASSWORD)
    lead_a = make_user(session, role="lead", teams=[team_a], password=PASSWORD)
    agent_a = make_user(session, teams=[team_a], password=PASSWORD)
    agent_b = make_user(session, teams=[team_b], password=PASSWORD)
    inbox_a = make_inbox(session, team_id=team_a.id)
    inbox_b = make_inbox(session, team_id=team_b.id)
    blobs = session.info["blobs"]
    raw = blobs.put(b"From: ann@example.com\r\nSubject: Secret plans A\r\n\r\nHello")
    msg = ingest(
        session,
        inbox_a.id,
        inbound(
            handle="ann@example.com",
            display_name="Ann A",
            subject="Secret plans A",
            text="Hello from A",
            html=HOSTILE_HTML,
            raw_sha256=raw,
            attachments=(InboundAttachment("evil.html", "text/html", b"<script>alert(1)</script>"),),
            meta={"remote_content_blocked": 1},
        ),
    )
    second = ingest(session, inbox_a.id, inbound(handle="ann@example.com", subject="Another matter A"))
    other = ingest(session, inbox_b.id, inbound(handle="bob@example.com", subject="Team B business"))
    assert msg is not None and second is not None and other is not None
    session.commit()
    users = (admin, lead_a, agent_a, agent_b)
    return World(
        admin=admin.id,
        lead_a=lead_a.id,
        agent_a=agent_a.id,
        agent_b=agent_b.id,
        emails={u.id: u.email for u in users},
        inbox_a=inbox_a.id,
        inbox_b=inbox_b.id,
        ticket_a=msg.ticket_id,
        ticket_a2=second.ticket_id,
        ticket_b=other.ticket_id,
        contact_a=msg.contact_id,
        message_a=msg.id,
        attachment_a=msg.attachments[0].id,
        marker_a="Secret plans A",
    )


@pytest.fixture
def app(settings: Settings, storage: Storage) -> Iterator[Flask]:
    """The app on the parametrised database; ``storage`` empties PostgreSQL after the test."""
    flask_app = create_app(settings)
    yield flask_app
    flask_app.extensions["helpline"].dispose()


@pytest.fixture
def world(app: Flask) -> World:
    with app.extensions["helpline"].factory() as session:
        return build_world(session)


def csrf_token(client: FlaskClient, path: str = "/login") -> str:
    html = client.get(path).get_data(as_text=True)
    match = CSRF_META.search(html)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def login(client: FlaskClient, email: str, password: str = PASSWORD) -> str:
    """Sign in and return a CSRF token valid for the session."""
    token = csrf_token(client)
    response = client.post("/login", data={"email": email, "password": password, "csrf_token": token})
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    return csrf_token(client, "/")


@pytest.fixture
def as_user(app: Flask, world: World) -> Iterator[object]:
    """``as_user(user_id)`` -> (client, csrf token) signed in as that user."""

    def make(user_id: int) -> tuple[FlaskClient, str]:
        client = app.test_client()
        return client, login(client, world.emails[user_id])

    yield make
