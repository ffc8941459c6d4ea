"""The reports pages: who may see them, and that page, CSV and drill-down carry the hand-computed figures."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from inbox.config import Settings
from inbox.models import User
from inbox.runtime import Storage
from tests.reports.world import World, build
from tests.web.conftest import login
from web import create_app
from web.realtime import socketio

PERIOD = "start=2026-10-19&end=2026-11-01&tz=Europe/Berlin"


@pytest.fixture
def app(settings: Settings, storage: Storage) -> Iterator[Flask]:
    flask_app = create_app(settings)
    yield flask_app
    flask_app.extensions["helpline"].dispose()


@pytest.fixture
def world(app: Flask) -> World:
    with app.extensions["helpline"].factory() as session:
        w = build(session)
        session.commit()
        return w


def client_for(app: Flask, user_id: int) -> FlaskClient:
    with app.extensions["helpline"].factory() as session:
        user = session.get(User, user_id)
        assert user is not None
        email = user.email
    client = app.test_client()
    login(client, email)
    return client


def rows(client: FlaskClient, path: str) -> list[list[str]]:
    response = client.get(path)
    assert response.status_code == 200, response.status_code
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    return list(csv.reader(io.StringIO(response.get_data(as_text=True))))


def test_agents_get_403(app: Flask, world: World) -> None:
    agent = client_for(app, world.a)
    for path in (
        "/reports/",
        "/reports/export/volume.csv",
        "/reports/drill?figure=created",
        "/reports/queue",
        "/reports/queue.json",
    ):
        assert agent.get(path).status_code == 403, path


def test_lead_sees_their_teams_inboxes_only(app: Flask, world: World) -> None:
    lead = client_for(app, world.lead)
    page = lead.get(f"/reports/?{PERIOD}&by=week")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'id="chart-volume"' in html and "vendor/chart.umd.js" in html and "First response time" in html
    # Inbox 1 only (t2, t3 in the week of the 19th; t1 in the week of the 26th); t6 of inbox 2 is not theirs.
    assert rows(lead, f"/reports/export/first_response.csv?{PERIOD}&by=week") == [
        [
            "week",
            "count",
            "median (seconds)",
            "p90 (seconds)",
            "median (business) (seconds)",
            "p90 (business) (seconds)",
        ],
        ["2026-10-19", "2", "3600", "18000", "0", "3600"],
        ["2026-10-26", "1", "327600", "327600", "7200", "7200"],
        ["all", "3", "18000", "327600", "3600", "7200"],
    ]
    assert rows(lead, f"/reports/export/volume.csv?{PERIOD}&by=week") == [
        ["week", "created", "solved"],
        ["2026-10-19", "3", "2"],
        ["2026-10-26", "1", "1"],
    ]
    assert rows(lead, f"/reports/export/sla.csv?{PERIOD}") == [
        ["target", "met", "breached", "compliance (ratio)"],
        ["First response", "3", "1", "0.75"],
        ["Next response", "2", "0", "1.0"],
        ["Resolution", "3", "1", "0.75"],
    ]
    # The period ends at Berlin midnight, 2026-11-01 23:00 UTC: t3 is 8 days old, t4 6 days 13 hours.
    assert rows(lead, f"/reports/export/backlog.csv?{PERIOD}") == [
        ["age", "tickets"],
        ["under 1 day", "0"],
        ["1-3 days", "0"],
        ["3-7 days", "1"],
        ["7 days or more", "1"],
        ["all", "2"],
    ]
    # Asking for the other team's inbox shows nothing rather than its figures.
    other = rows(lead, f"/reports/export/first_response.csv?{PERIOD}&inbox={world.inbox2}")
    assert other[-1][:2] == ["all", "0"]
    drill = rows(lead, f"/reports/drill?format=csv&figure=first_response&key=*&{PERIOD}")
    assert [(r[0], r[4], r[5]) for r in drill[1:]] == [
        (str(world.t2), "3600", "3600"),
        (str(world.t3), "18000", "0"),
        (str(world.t1), "327600", "7200"),
    ]


def test_admin_sees_every_inbox_and_per_agent_figures(app: Flask, world: World) -> None:
    admin = client_for(app, world.admin)
    assert rows(admin, f"/reports/export/first_response.csv?{PERIOD}&by=agent")[1:] == [
        ["Alice", "2", "18000", "327600", "0", "7200"],
        ["Bob", "1", "3600", "3600", "3600", "3600"],
        ["Carol", "1", "600", "600", "600", "600"],
        ["all", "4", "3600", "327600", "600", "7200"],
    ]
    agents = rows(admin, f"/reports/export/agents.csv?{PERIOD}")
    assert agents[1:] == [  # handled, replies, median first response (calendar, business), open now
        ["Alice", "3", "3", "18000", "0", "1"],
        ["Bob", "1", "2", "3600", "3600", "0"],
        ["Carol", "1", "1", "600", "600", "1"],
    ]


def test_live_queue(app: Flask, world: World) -> None:
    lead = client_for(app, world.lead)
    snap = lead.get("/reports/queue.json").get_json()
    assert snap["waiting"] == 1 and snap["oldest_waiting"]["ticket_id"] == world.t4
    assert [(r["ticket_id"], r["metric"], r["state"]) for r in snap["at_risk"]] == [
        (world.t4, "first_response", "overdue")
    ]
    # Carol's ticket is in team 2's inbox; nobody is online yet.
    assert snap["agents"] == [{"id": world.a, "agent": "Alice", "online": False, "open": 1}] and snap["online"] == 0
    page = lead.get("/reports/queue").get_data(as_text=True)
    assert f'data-rooms="inbox:{world.inbox1} "' in page and 'id="q-online">0<' in page


def test_live_queue_shows_who_is_online(app: Flask, world: World) -> None:
    """Agents' sockets make them online (web.presence); the lead sees their teams' people, the admin everyone."""
    lead, admin = client_for(app, world.lead), client_for(app, world.admin)
    admin_sock = socketio.test_client(app, flask_test_client=admin)
    socks = {
        who: socketio.test_client(app, flask_test_client=client_for(app, who)) for who in (world.a, world.b, world.c)
    }
    assert all(s.is_connected() for s in socks.values())
    snap = lead.get("/reports/queue.json").get_json()
    assert snap["online"] == 2
    assert snap["agents"] == [
        {"id": world.a, "agent": "Alice", "online": True, "open": 1},
        {"id": world.b, "agent": "Bob", "online": True, "open": 0},
    ]  # Carol (team 2 only) is not the lead's to see
    everyone = admin.get("/reports/queue.json").get_json()
    assert [(a["agent"], a["online"], a["open"]) for a in everyone["agents"]] == [
        ("Alice", True, 1),
        ("Carol", True, 1),
        ("Ada Admin", True, 0),
        ("Bob", True, 0),
    ]
    admin_sock.get_received()
    socks[world.a].disconnect()
    # The admin's page hears at once that someone went (and refreshes its snapshot).
    assert "presence.changed" in [m["name"] for m in admin_sock.get_received()]
    snap = lead.get("/reports/queue.json").get_json()
    assert [(a["agent"], a["online"], a["open"]) for a in snap["agents"]] == [("Bob", True, 0), ("Alice", False, 1)]
    for s in (admin_sock, socks[world.b], socks[world.c]):
        s.disconnect()
    assert lead.get("/reports/queue.json").get_json()["online"] == 0


def test_bad_parameters_are_400(app: Flask, world: World) -> None:
    lead = client_for(app, world.lead)
    assert lead.get("/reports/?start=2026-13-01").status_code == 400
    assert lead.get("/reports/?by=year").status_code == 400
    assert lead.get("/reports/?tz=Mars/Olympus").status_code == 400
    assert lead.get("/reports/export/nope.csv").status_code == 404
