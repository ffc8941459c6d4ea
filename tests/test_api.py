"""JSON API v1: bearer tokens, filters, paging, and nobody sees another team's inbox."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from inbox import ingest
from inbox.config import Settings
from inbox.runtime import Storage
from inbox.users import create_token
from tests.factories import inbound, make_inbox, make_team, make_user
from tickets import lifecycle
from web import create_app


@pytest.fixture
def app(settings: Settings, storage: Storage) -> Iterator[Flask]:
    app = create_app(settings, redis_url="")
    yield app
    app.extensions["helpline"].dispose()


@pytest.fixture
def world(storage: Storage) -> dict[str, object]:
    with storage.factory.begin() as s:
        red, blue = make_team(s), make_team(s)
        red_box = make_inbox(s, team_id=red.id, name="Red mail")
        blue_box = make_inbox(s, team_id=blue.id, channel="telegram", name="Blue bot")
        red_agent = make_user(s, teams=[red])
        blue_agent = make_user(s, teams=[blue])
        admin = make_user(s, role="admin")
        m1 = ingest(s, red_box.id, inbound(handle="ann@x.test", display_name="Ann Lee", subject="Broken zipper"))
        m2 = ingest(s, red_box.id, inbound(handle="bob@x.test", subject="Invoice please"))
        m3 = ingest(s, blue_box.id, inbound(channel="telegram", handle="4242", display_name="Tg Tom"))
        assert m1 and m2 and m3
        lifecycle.assign(s, m1.ticket, red_agent.id)
        lifecycle.set_status(s, m2.ticket, "pending")
        return {
            "red": create_token(s, red_agent),
            "blue": create_token(s, blue_agent),
            "admin": create_token(s, admin),
            "red_ticket": m1.ticket_id,
            "red_ticket2": m2.ticket_id,
            "blue_ticket": m3.ticket_id,
            "red_contact": m1.contact_id,
            "blue_contact": m3.contact_id,
            "red_box": red_box.id,
        }


def get(client: FlaskClient, url: str, token: str | None):  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.get(url, headers=headers)


def test_missing_or_wrong_token_is_401(app: Flask, world: dict) -> None:
    client = app.test_client()
    assert get(client, "/api/v1/tickets", None).status_code == 401
    assert get(client, "/api/v1/tickets", "hl_nope").status_code == 401
    assert client.get("/api/v1/tickets", headers={"Authorization": "Basic abc"}).status_code == 401


def test_agents_list_only_their_teams_tickets(app: Flask, world: dict) -> None:
    client = app.test_client()
    red = get(client, "/api/v1/tickets", world["red"]).get_json()
    assert {t["id"] for t in red["tickets"]} == {world["red_ticket"], world["red_ticket2"]}
    admin = get(client, "/api/v1/tickets", world["admin"]).get_json()
    assert admin["total"] == 3
    first = red["tickets"][0]
    assert set(first) >= {
        "id",
        "subject",
        "status",
        "priority",
        "channel",
        "inbox",
        "contact",
        "assignee",
        "message_count",
        "created_at",
        "updated_at",
    }


def test_filters_and_paging(app: Flask, world: dict) -> None:
    client = app.test_client()
    tok = world["admin"]
    assert [t["id"] for t in get(client, "/api/v1/tickets?status=pending", tok).get_json()["tickets"]] == [
        world["red_ticket2"]
    ]
    assert get(client, "/api/v1/tickets?inbox=Blue%20bot", tok).get_json()["total"] == 1
    assert get(client, f"/api/v1/tickets?inbox={world['red_box']}", tok).get_json()["total"] == 2
    assert get(client, "/api/v1/tickets?assignee=none", tok).get_json()["total"] == 2
    assert [t["id"] for t in get(client, "/api/v1/tickets?q=zipper", tok).get_json()["tickets"]] == [
        world["red_ticket"]
    ]
    assert [t["id"] for t in get(client, "/api/v1/tickets?q=ann%20lee", tok).get_json()["tickets"]] == [
        world["red_ticket"]
    ]
    page1 = get(client, "/api/v1/tickets?per_page=2", tok).get_json()
    page2 = get(client, "/api/v1/tickets?per_page=2&page=2", tok).get_json()
    assert len(page1["tickets"]) == 2 and page1["next_page"] == 2 and len(page2["tickets"]) == 1
    assert not {t["id"] for t in page1["tickets"]} & {t["id"] for t in page2["tickets"]}
    assert get(client, "/api/v1/tickets?status=bogus", tok).status_code == 422


def test_ticket_detail_and_other_teams_ticket_is_404(app: Flask, world: dict) -> None:
    client = app.test_client()
    ok = get(client, f"/api/v1/tickets/{world['red_ticket']}", world["red"])
    assert ok.status_code == 200
    body = ok.get_json()
    assert body["ticket"]["id"] == world["red_ticket"] and len(body["messages"]) == 1
    assert body["messages"][0]["direction"] == "inbound"
    assert get(client, f"/api/v1/tickets/{world['blue_ticket']}", world["red"]).status_code == 404
    assert get(client, "/api/v1/tickets/999999", world["red"]).status_code == 404


def test_contacts_and_thread_respect_visibility(app: Flask, world: dict) -> None:
    client = app.test_client()
    contact = get(client, f"/api/v1/contacts/{world['red_contact']}", world["red"]).get_json()["contact"]
    assert contact["name"] == "Ann Lee" and contact["identities"][0]["handle"] == "ann@x.test"
    thread = get(client, f"/api/v1/contacts/{world['red_contact']}/thread", world["red"]).get_json()
    assert len(thread["messages"]) == 1
    assert get(client, f"/api/v1/contacts/{world['blue_contact']}", world["red"]).status_code == 404
    assert get(client, f"/api/v1/contacts/{world['blue_contact']}/thread", world["red"]).status_code == 404
    assert get(client, f"/api/v1/contacts/{world['blue_contact']}", world["admin"]).status_code == 200


def test_healthz_reports_database_and_redis(settings: Settings, storage: Storage, redis_url: str) -> None:
    app = create_app(settings, redis_url=redis_url)
    body = app.test_client().get("/healthz")
    assert body.status_code == 200 and body.get_json() == {"status": "ok", "database": "ok", "redis": "ok"}
    down = create_app(settings, redis_url="redis://127.0.0.1:1/0")
    res = down.test_client().get("/healthz")
    assert res.status_code == 503 and res.get_json()["redis"].startswith("error")
    app.extensions["helpline"].dispose()
    down.extensions["helpline"].dispose()


def test_demo_is_idempotent_and_lists_over_api(app: Flask, storage: Storage) -> None:
    from web.demo import DEMO_EMAIL, load_demo

    with storage.factory.begin() as s:
        assert load_demo(s) is True
    with storage.factory.begin() as s:
        assert load_demo(s) is False
        from inbox.users import find_user_by_email

        user = find_user_by_email(s, DEMO_EMAIL)
        assert user is not None
        token = create_token(s, user)
    body = get(app.test_client(), "/api/v1/tickets?per_page=100", token).get_json()
    assert body["total"] >= 7
    assert {t["channel"] for t in body["tickets"]} == {"email", "telegram", "webchat", "instagram"}
