"""The authorisation matrix, generated from the app's own route and Socket.IO event lists.

Every UI route is called as an anonymous visitor, as an agent of another team (with team A's real ids), as team
A's agent and lead, and as an admin. Every GET is checked to leave the database unchanged. Every Socket.IO event
and room join is tried by the other team's agent, who must hear nothing of team A.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.routing import Rule

from inbox.models import Base, Ticket
from tests.web.conftest import World, csrf_token, login
from tickets import lifecycle
from web import socket_events
from web.realtime import socketio

PUBLIC = {"auth.login", "auth.totp"}  # reachable signed out (the second step only with a pending sign-in)
# Blueprints signed-in agents use: the matrix covers every route of these.
ADMIN_ONLY = {"audit", "channel_settings", "contact_import", "automation", "people", "tags", "calendars"}
ADMIN_ONLY |= {"sla_settings"}
ADMIN_ONLY |= {"channel_health", "quarantine"}
AGENT_BLUEPRINTS = {"auth", "inbox", "tickets", "messages", "search", "contacts", "reports"} | ADMIN_ONLY
# Settings pages for everyone: their own profile, canned responses (shared ones and their own personal ones).
AGENT_BLUEPRINTS |= {"profile", "canned"}
# Blueprints only some roles may use at all; everyone else gets 403 on every route of them.
ROLE_GATES = {"reports": {"lead", "admin"}} | {name: {"admin"} for name in ADMIN_ONLY}
# The agent workspace's own blueprints; reports and settings pages are tested in depth by their own suites.
OURS = {"auth", "inbox", "tickets", "messages", "search", "contacts", "profile", "canned"}
# Routes that authenticate otherwise (bearer tokens, widget visitor tokens, webhook secrets) and have their own
# tests. A blueprint in neither set fails test_every_route_is_classified, so a new one cannot slip past.
# onboarding: the first-run wizard, open before any account exists (its own tests cover when it closes).
OTHER_BLUEPRINTS = {"api", "health", "widget", "webhooks", "instagram_webhook", "onboarding", None}  # None: /static
# Issue 10's wizard and admin-only settings pages: their own 403/CSRF matrix is tests/settings/test_access.py.
OTHER_BLUEPRINTS |= {"onboarding", "channel_settings", "contact_import", "audit"}
OTHER_BLUEPRINTS |= {"automation"}  # rules and webhooks (admin-only): tests/automation/test_views.py
# signup: the public page of an invitation link (tests/settings/test_people.py).
OTHER_BLUEPRINTS |= {"signup"}
# The customers' rating page: a signed, expiring token is its credential (tests/reports/test_csat.py).
OTHER_BLUEPRINTS |= {"csat"}
# Form data that would change something if a check were missing.
FORMS = {
    "tickets.reply": {"text": "leak"},
    "tickets.note": {"text": "leak"},
    "tickets.status": {"status": "solved"},
    "tickets.priority": {"priority": "urgent"},
    "tickets.assign": {"agent_id": "me"},
    "tickets.team": {"team_id": "1"},
    "tickets.add_tag": {"name": "leak"},
    "tickets.remove_tag": {"name": "leak"},
    "tickets.snooze": {"hours": "4"},
    "tickets.merge": {"into": "{ticket_b}"},
    "tickets.split_message": {"with_later": "1"},
    "tickets.move_message": {"into": "{ticket_b}"},
    "tickets.mark_answered": {"text": "leak"},
    "contacts.merge": {"other": "bob@example.com"},
    "people.invite": {"email": "new@helpline.test", "role": "admin"},
    "people.update_user": {"role": "admin"},
    "people.deactivate": {"reassign_to": "none"},
    "people.reassign": {"reassign_to": "none"},
    "people.update_team": {"name": "leak", "inbox_id": "{inbox_a}"},
    "people.create_team": {"name": "leak"},
    "tags.create": {"name": "leak"},
    "tags.update": {"name": "leak"},
    "calendars.create": {"name": "leak", "timezone": "UTC", "mon": "00:00-24:00", "applies_to": "default"},
    "canned.update": {"title": "leak", "body": "leak"},
    "profile.password": {"current": "wrong", "password": "long enough pw", "confirm": "long enough pw"},
    "auth.totp_setup": {"code": "123456"},
}


def blueprint(rule: Rule) -> str | None:
    return rule.endpoint.rpartition(".")[0] or None


def ui_rules(app: Flask) -> list[Rule]:
    """Every agent UI rule, sign-out last (it ends the session the others run in)."""
    rules = [r for r in app.url_map.iter_rules() if blueprint(r) in AGENT_BLUEPRINTS]
    return sorted(rules, key=lambda r: r.endpoint == "auth.logout")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_every_route_is_classified(app: Flask) -> None:
    unknown = {r.rule for r in app.url_map.iter_rules() if blueprint(r) not in AGENT_BLUEPRINTS | OTHER_BLUEPRINTS}
    assert not unknown, f"classify these routes in the authorisation matrix: {unknown}"
    assert len(ui_rules(app)) >= 20


def url_for_rule(rule: Rule, world: World) -> str:
    """The rule's URL with team A's real ids: the objects the other team must not reach."""
    values = {
        "ticket_id": world.ticket_a,
        "message_id": world.message_a,
        "attachment_id": world.attachment_a,
        "user_id": world.agent_a,
        "contact_id": world.contact_a,
        "name": "volume",
        "inbox_id": world.inbox_a,
        "sha": "0" * 64,
        "index": 0,
        "rule_id": 1,
        "webhook_id": 1,
        # Settings rows that may not exist in this world: the answer must still be 403 for a wrong role, and
        # 404 (never someone else's row) for a personal canned response.
        "team_id": 1,
        "invite_id": 1,
        "tag_id": 1,
        "calendar_id": 1,
        "holiday_id": 1,
        "canned_id": 1,
        "policy_id": 1,  # SLA policy pages are admin-only: the others get 403 before any lookup
        "job_id": "poll-1-0",
        "quarantine_id": world.message_a,  # admin-only routes: any id; agents get 403 first
    }
    missing = set(rule.arguments) - set(values)
    assert not missing, f"{rule.endpoint}: add an id for {missing} to the matrix"
    path = rule.rule
    for name in rule.arguments:
        path = path.replace(f"<int:{name}>", str(values[name])).replace(f"<{name}>", str(values[name]))
    return path


def form_for(rule: Rule, world: World, token: str) -> dict[str, str]:
    form = {
        k: v.format(ticket_b=world.ticket_b, inbox_a=world.inbox_a) for k, v in FORMS.get(rule.endpoint, {}).items()
    }
    return form | {"csrf_token": token}


def snapshot(app: Flask) -> dict[str, list[tuple[Any, ...]]]:
    with app.extensions["helpline"].factory() as session:
        return {
            t.name: sorted((tuple(map(repr, row)) for row in session.execute(select(t))), key=repr)
            for t in Base.metadata.sorted_tables
        }


def methods(rule: Rule) -> list[str]:
    return sorted(m for m in rule.methods or () if m in ("GET", "POST"))


def test_other_team_gets_404_and_changes_nothing(app: Flask, world: World) -> None:
    client = app.test_client()
    token = login(client, world.emails[world.agent_b])
    before = snapshot(app)
    for rule in ui_rules(app):
        if rule.endpoint in PUBLIC:
            continue
        url = url_for_rule(rule, world)
        for method in methods(rule):
            response = client.open(url, method=method, data=form_for(rule, world, token) if method == "POST" else None)
            body = response.get_data(as_text=True)
            if blueprint(rule) in ROLE_GATES:
                assert response.status_code == 403, (method, url)
            elif rule.arguments:
                assert response.status_code == 404, (method, url, response.status_code)
            else:
                assert response.status_code in (200, 302), (method, url, response.status_code)
            assert world.marker_a not in body, (method, url)
        # Only agent B's own account may change (turning on TOTP needs a right code, so even that fails here).
    assert snapshot(app) == before


def test_anonymous_is_sent_to_sign_in(app: Flask, world: World) -> None:
    client = app.test_client()
    token = csrf_token(client)
    before = snapshot(app)
    for rule in ui_rules(app):
        if rule.endpoint in PUBLIC:
            continue
        url = url_for_rule(rule, world)
        for method in methods(rule):
            response = client.open(url, method=method, data=form_for(rule, world, token) if method == "POST" else None)
            if url.startswith("/fragments/"):
                assert response.status_code == 401, (method, url)
            else:
                assert response.status_code == 302, (method, url, response.status_code)
                assert response.headers["Location"].startswith("/login"), (method, url)
    assert snapshot(app) == before


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("who", ["agent_a", "lead_a", "admin"])
def test_team_and_admin_reach_their_tickets(app: Flask, world: World, who: str) -> None:
    client = app.test_client()
    login(client, world.emails[getattr(world, who)])
    for rule in ui_rules(app):
        if "GET" not in methods(rule) or rule.endpoint in PUBLIC:
            continue
        response = client.get(url_for_rule(rule, world))
        role = "agent" if who == "agent_a" else who.removesuffix("_a")
        if role not in ROLE_GATES.get(blueprint(rule) or "", {role}):
            assert response.status_code == 403, (who, rule.rule, response.status_code)
        elif blueprint(rule) in OURS:
            assert response.status_code == 200, (who, rule.rule, response.status_code)
        else:
            assert response.status_code not in (403, 500), (who, rule.rule, response.status_code)


def test_get_routes_change_nothing(app: Flask, world: World) -> None:
    """No state change on GET: every GET route as admin and as agent, database compared before and after."""
    clients = []
    for user_id in (world.admin, world.agent_a):
        client = app.test_client()
        login(client, world.emails[user_id])  # signing in is a POST, and may be audited: before the snapshot
        clients.append(client)
    before = snapshot(app)
    for client in clients:
        for rule in ui_rules(app):
            if "GET" in methods(rule) and rule.endpoint != "auth.logout":
                client.get(url_for_rule(rule, world))
                client.get(url_for_rule(rule, world) + "?images=1&folder=mine&before=1&cursor=1_1")
    assert snapshot(app) == before


def _socket(app: Flask, client: FlaskClient) -> Any:
    return socketio.test_client(app, flask_test_client=client)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_socket_events_list_is_complete(app: Flask) -> None:
    assert set(socketio.server.handlers["/"]) == set(socket_events.EVENTS)


def test_sockets_of_other_team_hear_nothing(app: Flask, world: World) -> None:
    anonymous = _socket(app, app.test_client())
    assert not anonymous.is_connected()
    hijacker = app.test_client()
    login(hijacker, world.emails[world.agent_a])
    other_site = socketio.test_client(app, flask_test_client=hijacker, headers={"Origin": "https://evil.example"})
    assert not other_site.is_connected()  # an agent's cookie used from another site's page

    client_b = app.test_client()
    login(client_b, world.emails[world.agent_b])
    sock_b = _socket(app, client_b)
    assert sock_b.is_connected()
    denied = [f"inbox:{world.inbox_a}", f"ticket:{world.ticket_a}", f"agent:{world.agent_a}", "inbox:999", "x:1", ""]
    for event in socket_events.EVENTS:
        if event in ("connect", "disconnect"):
            continue
        for room in denied:
            ack = sock_b.emit(event, {"room": room, "ticket_id": world.ticket_a}, callback=True)
            if event != "leave":
                assert ack["ok"] is False, (event, room)
    assert sock_b.emit("join", {"room": f"inbox:{world.inbox_b}"}, callback=True)["ok"] is True

    client_a = app.test_client()
    login(client_a, world.emails[world.agent_a])
    sock_a = _socket(app, client_a)
    for room in (f"inbox:{world.inbox_a}", f"ticket:{world.ticket_a}"):
        assert sock_a.emit("join", {"room": room}, callback=True)["ok"] is True
    presence = [m["args"][0] for m in sock_a.get_received() if m["name"] == "presence.online"]
    assert presence and [u["id"] for u in presence[-1]["users"]] == [world.agent_a]
    for m in sock_b.get_received():  # team A's presence stays in team A
        assert m["name"] != "presence.online" or world.agent_a not in [u["id"] for u in m["args"][0]["users"]]

    with app.extensions["helpline"].factory() as session:
        ticket = session.get(Ticket, world.ticket_a)
        assert ticket is not None
        lifecycle.add_note(session, ticket, "private to team A", by=world.agent_a)
        lifecycle.assign(session, ticket, world.agent_a, by=world.agent_a)
        lifecycle.set_status(session, ticket, "pending", by=world.agent_a)
        session.commit()

    heard_a = [m["name"] for m in sock_a.get_received()]
    assert {"message.created", "ticket.assigned", "ticket.status_changed"} <= set(heard_a)
    heard_b = sock_b.get_received()
    assert heard_b == [], heard_b
    for sock in (sock_a, sock_b):
        sock.disconnect()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_deactivated_user_is_refused_on_next_join(app: Flask, world: World) -> None:
    from inbox.models import User

    client = app.test_client()
    login(client, world.emails[world.agent_a])
    sock = _socket(app, client)
    assert sock.emit("join", {"room": f"inbox:{world.inbox_a}"}, callback=True)["ok"] is True
    with app.extensions["helpline"].factory() as session:
        user = session.get(User, world.agent_a)
        assert user is not None
        user.is_active = False
        session.commit()
    refused = (
        not sock.is_connected() or not sock.emit("join", {"room": f"ticket:{world.ticket_a}"}, callback=True)["ok"]
    )
    assert refused
