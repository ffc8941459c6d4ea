"""The widget settings page (admins) and what the widget then says: looks, pre-chat fields, origins, the linked
email inbox, the signing secret (write-only, regenerated), and availability from business hours and presence."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from connectors import webchat
from inbox.crypto import decrypt_json
from inbox.ingest import ingest
from inbox.models import Inbox, Ticket
from inbox.settings_models import AuditLog
from inbox.sla_models import BusinessCalendar
from tests.factories import inbound, make_inbox, make_user
from tests.web.conftest import login
from tests.web.live import LiveServer
from tests.webchat.conftest import Visitor, Widget, session_api
from tickets import lifecycle
from web import socket_events, widget_availability
from web.presence import Online

BOTH = pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)


def admin_client(app: Flask) -> tuple[FlaskClient, str]:
    with app.extensions["helpline"].factory() as session:
        admin = make_user(session, role="admin")
        session.commit()
        email = admin.email
    client = app.test_client()
    return client, login(client, email)


def form(**overrides: str) -> dict[str, str]:
    return {
        "title": "Teapot Shop",
        "color": "#AA3300",
        "greeting": "Hello <b>tea</b> lover!",
        "position": "left",
        "prechat_name": "required",
        "prechat_email": "optional",
        "reply_time": "",
        "offline_message": "Back at 9.",
        "email_inbox_id": "",
        "origins": "https://shop.example\nhttps://www.shop.example/",
        "merge_contacts": "1",
    } | overrides


def stored(app: Flask, inbox_id: int) -> Inbox:
    with app.extensions["helpline"].factory() as session:
        inbox = session.get(Inbox, inbox_id)
        assert inbox is not None
        session.expunge(inbox)
        return inbox


@BOTH
def test_admin_edits_the_widget_and_the_session_api_hands_it_out(
    app: Flask, live: LiveServer, make_widget: Callable[..., Widget]
) -> None:
    widget = make_widget()
    with app.extensions["helpline"].factory() as session:
        mail = make_inbox(session, channel="email", name="Support mail", address="support@shop.example")
        make_inbox(session, channel="email", name="Old mail", config={"archived": True})
        session.commit()
        mail_id = mail.id
    client, token = admin_client(app)
    page = client.get(f"/settings/channels/{widget.inbox_id}/widget").get_data(as_text=True)
    assert "Support mail (support@shop.example)" in page and "Old mail" not in page
    assert "/widget.js" in page and widget.public_key in page  # the snippet to paste
    assert widget.secret not in page  # write-only
    response = client.post(
        f"/settings/channels/{widget.inbox_id}/widget",
        data=form(email_inbox_id=str(mail_id), csrf_token=token),
    )
    assert response.status_code == 302
    config = stored(app, widget.inbox_id).config
    assert config["color"] == "#aa3300" and config["position"] == "left" and config["title"] == "Teapot Shop"
    assert config["prechat"] == {"name": "required", "email": "optional"}
    assert config["origins"] == ["https://shop.example", "https://www.shop.example"]
    assert config["email_inbox_id"] == mail_id and config["merge_contacts"] is True
    with app.extensions["helpline"].factory() as session:
        audit = session.scalars(select(AuditLog).where(AuditLog.action == "inbox.widget_updated")).one()
        assert audit.target == f"inbox:{widget.inbox_id}"

    settings = session_api(live, widget, origin="https://www.shop.example").json()["settings"]
    assert settings | {"available": None, "reply_time": None, "away_reason": None} == {
        "title": "Teapot Shop",
        "greeting": "Hello <b>tea</b> lover!",
        "color": "#aa3300",
        "position": "left",
        "prechat": {"name": "required", "email": "optional"},
        "offline_message": "Back at 9.",
        "offline_email": True,
        "available": None,
        "reply_time": None,
        "away_reason": None,
    }
    frame = client.get("/widget/frame", query_string={"inbox": widget.public_key}).get_data(as_text=True)
    assert 'data-color="#aa3300"' in frame and 'class="pos-left"' in frame and 'data-need="name' in frame
    assert "Hello &lt;b&gt;tea&lt;/b&gt; lover!" in frame  # escaped
    assert "frame-ancestors https://shop.example https://www.shop.example" in client.get(
        "/widget/frame", query_string={"inbox": widget.public_key}
    ).headers["Content-Security-Policy"]
    # Removing an origin refuses that site at once, on HTTP and on the socket.
    client.post(f"/settings/channels/{widget.inbox_id}/widget",
                data=form(origins="https://shop.example", csrf_token=token))
    assert session_api(live, widget, origin="https://www.shop.example").status_code == 403
    refused = Visitor(live.url, widget, headers={"Origin": "https://www.shop.example"})
    with pytest.raises(Exception):  # noqa: B017 - socketio.exceptions.ConnectionError
        refused.connect()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("color", "red; background:url(x)"),
        ("position", "top"),
        ("prechat_email", "always"),
        ("greeting", "x" * 501),
        ("origins", "javascript:alert(1)"),
        ("origins", ""),
        ("email_inbox_id", "999999"),
        ("secret", "short"),
    ],
)
def test_hostile_or_wrong_values_are_refused_and_nothing_changes(
    app: Flask, make_widget: Callable[..., Widget], field: str, value: str
) -> None:
    widget = make_widget()
    before = stored(app, widget.inbox_id)
    client, token = admin_client(app)
    response = client.post(
        f"/settings/channels/{widget.inbox_id}/widget", data=form(**{field: value, "csrf_token": token})
    )
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert 'role="alert"' in body and 'class="invalid"' in body
    after = stored(app, widget.inbox_id)
    assert (after.config, after.secrets) == (before.config, before.secrets)


def test_the_widget_page_is_for_webchat_inboxes_and_needs_csrf(app: Flask, make_widget: Callable[..., Widget]) -> None:
    widget = make_widget()
    with app.extensions["helpline"].factory() as session:
        mail_id = make_inbox(session, channel="email").id
        session.commit()
    client, token = admin_client(app)
    assert client.get(f"/settings/channels/{mail_id}/widget").status_code == 404
    assert client.post(f"/settings/channels/{widget.inbox_id}/widget", data=form()).status_code == 400
    assert client.post(f"/settings/channels/{widget.inbox_id}/widget/secret").status_code == 400
    agent = app.test_client()
    agent_token = login(agent, widget.agent_email)
    assert agent.get(f"/settings/channels/{widget.inbox_id}/widget").status_code == 403
    assert agent.post(f"/settings/channels/{widget.inbox_id}/widget/secret",
                      data={"csrf_token": agent_token}).status_code == 403
    edit = client.get(f"/settings/channels/{widget.inbox_id}").get_data(as_text=True)
    assert f"/settings/channels/{widget.inbox_id}/widget" in edit
    listing = client.get("/settings/channels").get_data(as_text=True)
    assert f"/settings/channels/{widget.inbox_id}/widget" in listing


@BOTH
def test_new_secret_signs_customers_and_visitors_keep_their_conversation(
    app: Flask, live: LiveServer, make_widget: Callable[..., Widget], visitors: Callable[..., Visitor]
) -> None:
    widget = make_widget()
    visitor = visitors(widget)
    visitor.connect()
    visitor.send("before-rotate", "hello before the rotation")
    visitor.close()
    client, token = admin_client(app)
    page = client.post(f"/settings/channels/{widget.inbox_id}/widget/secret", data={"csrf_token": token})
    match = re.search(r'id="new-secret".*?<pre class="snippet">([^<]+)</pre>', page.get_data(as_text=True), re.S)
    assert match is not None
    new_secret = match.group(1).strip()
    assert len(new_secret) >= 40 and new_secret != widget.secret
    with app.extensions["helpline"].factory() as session:
        inbox = session.get(Inbox, widget.inbox_id)
        assert inbox is not None and inbox.secrets is not None
        assert new_secret not in inbox.secrets  # encrypted at rest
        assert decrypt_json(app.config["SECRET_KEY"], inbox.secrets)["secret"] == new_secret
    assert new_secret not in client.get(f"/settings/channels/{widget.inbox_id}/widget").get_data(as_text=True)
    # The same visitor token still opens the same conversation.
    again = visitors(widget, token=visitor.token)
    again.connect()
    assert [m["text"] for m in again.events("history")[0]["messages"]] == ["hello before the rotation"]
    # Customers signed with the old secret are no longer believed; with the new one they are.
    old = {"id": "c-1", "email": "kim@example.com", "name": "Kim"}
    stale = visitors(widget)
    stale.connect(user=old | {"signature": webchat.user_signature(widget.secret, "c-1", "kim@example.com", "Kim")})
    stale.send("stale-00001", "hi")
    fresh = visitors(widget)
    fresh.connect(user=old | {"signature": webchat.user_signature(new_secret, "c-1", "kim@example.com", "Kim")})
    fresh.send("fresh-00001", "hi")
    with app.extensions["helpline"].factory() as session:
        names = {
            t.contact.attributes.get("shop_user_id")
            for t in session.scalars(select(Ticket).where(Ticket.inbox_id == widget.inbox_id))
        }
    assert names == {None, "c-1"}
    # Typing a secret of one's own also works, and is never shown back.
    client.post(f"/settings/channels/{widget.inbox_id}/widget",
                data=form(secret="my-own-shop-secret-123", csrf_token=token))
    with app.extensions["helpline"].factory() as session:
        inbox = session.get(Inbox, widget.inbox_id)
        assert inbox is not None
        assert decrypt_json(app.config["SECRET_KEY"], inbox.secrets)["secret"] == "my-own-shop-secret-123"


def test_reply_time_texts() -> None:
    assert webchat.reply_time_text(None) == "We typically reply in a few minutes."
    assert webchat.reply_time_text(40) == "We typically reply in under a minute."
    assert webchat.reply_time_text(7 * 60) == "We typically reply in about 7 minutes."
    assert webchat.reply_time_text(3 * 3600) == "We typically reply in about 3 hours."
    assert webchat.reply_time_text(30 * 3600) == "We typically reply within a day or two."


def test_widget_settings_defaults_are_safe() -> None:
    shown = webchat.widget_settings({"color": "red", "position": "top", "prechat": {"name": "x"}}, "Chat")
    assert shown["color"] == webchat.DEFAULT_COLOR and shown["position"] == "right"
    assert shown["prechat"] == {"name": "optional", "email": "optional"}


@BOTH
def test_availability_follows_business_hours_agents_online_and_real_first_responses(
    app: Flask, make_widget: Callable[..., Widget], monkeypatch: pytest.MonkeyPatch
) -> None:
    widget = make_widget()
    widget_availability.forget(widget.inbox_id)
    with app.app_context(), app.extensions["helpline"].factory() as session:
        inbox = session.get(Inbox, widget.inbox_id)
        assert inbox is not None
        # Nobody has Helpline open: away.
        assert widget_availability.availability(session, inbox)["away_reason"] == "away"
        # An agent of the inbox's team opens Helpline (in any web process: presence is shared through Redis).
        socket_events.presence().add("sid-1", Online(widget.agent_id, "Agent", (inbox.team_id,)))
        try:
            # Three chats answered in 4, 6 and 30 minutes: the median is 6.
            now = dt.datetime.now(dt.UTC)
            for n, minutes in enumerate((4, 6, 30)):
                asked = now - dt.timedelta(hours=2, minutes=n)
                chat = inbound(channel="webchat", handle=f"v{n}", text="hi", sent_at=asked)
                message = ingest(session, inbox.id, chat)
                assert message is not None
                message.created_at = asked
                message.ticket.created_at = asked
                session.flush()
                reply = lifecycle.reply(session, message.ticket, "hello", by=widget.agent_id)
                reply.created_at = asked + dt.timedelta(minutes=minutes)
            session.commit()
            got = widget_availability.availability(session, inbox)
            assert got == {"available": True, "reply_time": "We typically reply in about 6 minutes.", "away_reason": ""}
            # A configured text wins over the computed one.
            inbox.config = dict(inbox.config) | {"reply_time": "Usually within the hour."}
            assert widget_availability.availability(session, inbox)["reply_time"] == "Usually within the hour."
            # Closed all week (a calendar with no hours): the offline form, agents or not.
            session.add(BusinessCalendar(name="Closed", timezone="Europe/Berlin", hours={}, inbox_id=inbox.id))
            session.flush()
            assert widget_availability.availability(session, inbox) == {
                "available": False, "reply_time": "", "away_reason": "closed"
            }
            day = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[dt.datetime.now(dt.UTC).weekday()]
            calendar = session.scalars(select(BusinessCalendar).where(BusinessCalendar.inbox_id == inbox.id)).one()
            calendar.timezone, calendar.hours = "UTC", {day: [["00:00", "24:00"]]}
            session.flush()
            assert widget_availability.availability(session, inbox)["available"] is True
            session.rollback()
        finally:
            socket_events.presence().remove("sid-1")
