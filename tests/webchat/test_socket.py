"""The /widget namespace with a real Socket.IO client: history, dedupe on resend, isolation, origins, flooding."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
import socketio
from flask import Flask
from sqlalchemy import func, select

from connectors import webchat
from connectors.base import Outbound
from inbox.ingest import ingest
from inbox.models import Message, Ticket
from tests.factories import inbound
from tests.web.live import LiveServer
from tests.webchat.conftest import SHOP, Visitor, Widget, session_api
from tickets import lifecycle
from web.throttle import LoginThrottle
from web.widget_socket import notify_agent_typing


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def stored(app: Flask, widget: Widget) -> list[Message]:
    with app.extensions["helpline"].factory() as session:
        return list(session.scalars(select(Message).where(Message.inbox_id == widget.inbox_id).order_by(Message.id)))


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_history_on_connect_has_own_messages_and_replies_but_no_notes(
    app: Flask, widget: Widget, visitors: Callable[..., Visitor]
) -> None:
    first = visitors(widget)
    first.connect()
    assert first.events("history") == [{"messages": []}]
    ack = first.send("client-0001", "Hello <b>there</b>")
    assert ack["ok"] is True and ack["duplicate"] is False
    with app.extensions["helpline"].factory() as session:
        ticket = session.scalars(select(Ticket).where(Ticket.inbox_id == widget.inbox_id)).one()
        lifecycle.add_note(session, ticket, "internal: VIP, be nice", by=widget.agent_id)
        lifecycle.reply(session, ticket, "Hi! How can we help?", by=widget.agent_id)
        session.commit()
    first.close()

    again = visitors(widget, token=first.token)
    again.connect()
    (history,) = again.events("history")
    texts = [(m["from"], m["text"]) for m in history["messages"]]
    assert texts == [("visitor", "Hello <b>there</b>"), ("agent", "Hi! How can we help?")]
    assert history["messages"][0]["client_id"] == "client-0001"
    assert history["messages"][1]["author"]  # the agent's name, shown on replies
    assert set(history["messages"][0]) == {"id", "client_id", "from", "text", "at", "author", "read", "attachments"}


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_resend_after_reconnect_is_stored_once(app: Flask, widget: Widget, visitors: Callable[..., Visitor]) -> None:
    v = visitors(widget)
    v.connect()
    first = v.send("resend-0001", "Is this in stock?")
    v.close()
    # The ack was lost with the connection: the widget sends the same client id again after reconnecting.
    again = visitors(widget, token=v.token)
    again.connect()
    second = again.send("resend-0001", "Is this in stock?")
    assert second == {"ok": True, "id": first["id"], "duplicate": True}
    assert [m.body_text for m in stored(app, widget)] == ["Is this in stock?"]
    (history,) = again.events("history")
    assert [m["client_id"] for m in history["messages"]] == ["resend-0001"]


def test_client_ids_of_another_visitor_do_not_collide(
    app: Flask, widget: Widget, visitors: Callable[..., Visitor]
) -> None:
    ann, bob = visitors(widget), visitors(widget)
    ann.connect()
    bob.connect()
    a = ann.send("same-id-0001", "Ann's secret order")
    b = bob.send("same-id-0001", "Bob's question")
    assert a["id"] != b["id"] and not b["duplicate"]
    with app.extensions["helpline"].factory() as session:
        tickets = session.scalar(select(func.count()).select_from(Ticket).where(Ticket.inbox_id == widget.inbox_id))
    assert tickets == 2
    bob.close()
    bob2 = visitors(widget, token=bob.token)
    bob2.connect()
    assert [m["text"] for m in bob2.events("history")[0]["messages"]] == ["Bob's question"]


def test_forged_token_and_other_inbox_token_get_nothing(
    app: Flask, live: LiveServer, make_widget: Callable[..., Widget], visitors: Callable[..., Visitor]
) -> None:
    widget, other = make_widget(), make_widget()
    ann = visitors(widget)
    ann.connect()
    ann.send("forged-0001", "my address is 1 Secret Lane")
    visitor_id = ann.token.split(".")[0]
    forged = [
        visitor_id,  # no signature
        f"{visitor_id}.{'A' * 43}",  # a made-up signature
        other.token(visitor_id),  # signed by another inbox
        ann.token[:-1] + ("A" if ann.token[-1] != "A" else "B"),
    ]
    for token in forged:
        intruder = visitors(widget, token=token)
        with pytest.raises(socketio.exceptions.ConnectionError):
            intruder.connect()
        assert intruder.errors == [{"message": "invalid visitor token"}] and intruder.received == []
        response = session_api(live, widget, token=token)
        assert response.status_code == 403 and "token" not in response.json()


def test_only_the_visitor_receives_agent_replies(app: Flask, widget: Widget, visitors: Callable[..., Visitor]) -> None:
    ann, bob = visitors(widget), visitors(widget)
    ann.connect()
    bob.connect()
    ann.send("reply-0001", "Hello")
    ann_id = ann.token.split(".")[0]
    channel = webchat.WebchatChannel({}, {})
    provider_id = channel.send(Outbound(message_id=99, ticket_id=1, channel="webchat", to_handle=ann_id, text="Hi Ann"))
    assert provider_id == "webchat:99"
    wait_for(lambda: ann.events("agent:message"))
    assert ann.events("agent:message")[0]["text"] == "Hi Ann"
    time.sleep(0.3)
    assert bob.events("agent:message") == []


def test_origins_are_enforced_on_socket_and_http(
    live: LiveServer, make_widget: Callable[..., Widget], visitors: Callable[..., Visitor]
) -> None:
    widget = make_widget(origins=[SHOP])
    evil = visitors(widget, headers={"Origin": "https://evil.example"})
    with pytest.raises(socketio.exceptions.ConnectionError):
        evil.connect()
    assert evil.received == []
    assert session_api(live, widget, origin="https://evil.example").status_code == 403
    assert session_api(live, widget, origin="null").status_code == 403
    ok = session_api(live, widget, origin=SHOP)
    assert ok.status_code == 200 and ok.headers["Access-Control-Allow-Origin"] == SHOP
    assert session_api(live, widget, origin=live.url).status_code == 200  # the frame, on our own origin
    own = visitors(widget, headers={"Origin": live.url})
    own.connect()
    assert own.events("history") == [{"messages": []}]
    # Only allowed origins may frame the chat; the browser enforces it.
    frame = requests.get(f"{live.url}/widget/frame", params={"inbox": widget.public_key}, timeout=5)
    assert f"frame-ancestors {SHOP} " in frame.headers["Content-Security-Policy"]


@pytest.mark.parametrize("limits", [{"visitor": LoginThrottle(3, 60.0)}])
def test_flood_control_per_visitor(app: Flask, widget: Widget, visitors: Callable[..., Visitor]) -> None:
    v = visitors(widget)
    v.connect()
    acks = [v.send(f"flood-{i:04d}", f"spam {i}") for i in range(5)]
    assert [a["ok"] for a in acks] == [True, True, True, False, False]
    assert acks[3]["retry"] is True
    assert v.send("flood-0000", "spam 0")["duplicate"] is True  # resends of stored messages still get their ack
    other = visitors(widget)
    other.connect()
    assert other.send("calm-00001", "a normal question")["ok"] is True
    assert len(stored(app, widget)) == 4


@pytest.mark.parametrize("limits", [{"ip": LoginThrottle(4, 60.0)}])
def test_flood_control_per_address(app: Flask, widget: Widget, visitors: Callable[..., Visitor]) -> None:
    acks = []
    for i in range(3):
        v = visitors(widget)
        v.connect()
        acks += [v.send(f"addr-{i}-0001", "one"), v.send(f"addr-{i}-0002", "two")]
    assert [a["ok"] for a in acks] == [True, True, True, True, False, False]


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_history_leaves_out_what_an_agent_merged_in_from_another_customer(
    app: Flask, widget: Widget, visitors: Callable[..., Visitor]
) -> None:
    v = visitors(widget)
    v.connect()
    v.send("merge-0001", "my chat")
    with app.extensions["helpline"].factory() as session:
        chat = session.scalars(select(Ticket).where(Ticket.inbox_id == widget.inbox_id)).one()
        other = ingest(session, widget.inbox_id, inbound(channel="telegram", handle="555", text="someone else's"))
        assert other is not None
        other_ticket = session.get(Ticket, other.ticket_id)
        assert other_ticket is not None
        lifecycle.reply(session, other_ticket, "answer to someone else", by=widget.agent_id)
        lifecycle.merge_tickets(session, other_ticket, chat, by=widget.agent_id)
        session.commit()
    v.close()
    again = visitors(widget, token=v.token)
    again.connect()
    assert [m["text"] for m in again.events("history")[0]["messages"]] == ["my chat"]


def test_agent_typing_reaches_only_that_visitor(app: Flask, widget: Widget, visitors: Callable[..., Visitor]) -> None:
    ann, bob = visitors(widget), visitors(widget)
    ann.connect()
    bob.connect()
    ann.send("typing-0001", "hello")
    bob.send("typing-0002", "hi")
    with app.extensions["helpline"].factory() as session:
        ann_ticket = session.scalars(
            select(Ticket).where(Ticket.inbox_id == widget.inbox_id).order_by(Ticket.id)
        ).first()
        assert ann_ticket is not None
    with app.app_context():
        notify_agent_typing(ann_ticket.id)
    wait_for(lambda: ann.events("agent:typing"))
    time.sleep(0.2)
    assert bob.events("agent:typing") == []


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
@pytest.mark.parametrize("merge", [True, False])
def test_known_email_joins_its_customer_only_when_the_shop_allows_and_shows_nothing_of_theirs(
    app: Flask, make_widget: Callable[..., Widget], visitors: Callable[..., Visitor], merge: bool
) -> None:
    """Signed or typed, a known customer's email joins that contact only with ``merge_contacts`` on; either way the
    widget shows each visitor their own chat only: typing someone's address reveals nothing of theirs."""
    from inbox.identities import find_identity

    widget = make_widget(merge_contacts=merge)
    with app.extensions["helpline"].factory() as session:
        mail = ingest(session, widget.inbox_id, inbound(handle="ann@example.com", text="my private email"))
        assert mail is not None
        ann_contact = mail.contact_id
        session.commit()
    sig = webchat.user_signature(widget.secret, "cust-1", "ann@example.com", "Ann Lee")
    signed = visitors(widget)
    signed.connect(user={"id": "cust-1", "email": "ann@example.com", "name": "Ann Lee", "signature": sig})
    signed.send("signed-0001", "hello, it's Ann")
    impostor = visitors(widget)
    impostor.connect(profile={"name": "Ann Lee", "email": "ann@example.com"})
    impostor.send("typed-00001", "hello, I claim to be Ann")
    assert impostor.client.call("visitor:profile", {"name": "Not Ann", "email": "ann@example.com"},
                                namespace=webchat.NAMESPACE, timeout=5) == {"ok": True, "email": True}
    with app.extensions["helpline"].factory() as session:
        signed_identity = find_identity(session, "webchat", signed.token.split(".")[0])
        typed_identity = find_identity(session, "webchat", impostor.token.split(".")[0])
        assert signed_identity is not None and typed_identity is not None
        assert (signed_identity.contact_id == ann_contact) is merge
        assert (typed_identity.contact_id == ann_contact) is merge
        assert typed_identity.contact.attributes["webchat_email"] == "ann@example.com"
        if not merge:
            assert typed_identity.contact.name == "Ann Lee"  # a name, once given, is not replaced by a later one
            assert find_identity(session, "email", "ann@example.com").contact_id == ann_contact  # type: ignore[union-attr]
    for v in (signed, impostor):
        v.close()
        again = visitors(widget, token=v.token)
        again.connect()
        texts = [m["text"] for m in again.events("history")[0]["messages"]]
        assert "my private email" not in texts and len(texts) == 1


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_read_receipts_mark_only_the_visitors_own_replies_read(
    app: Flask, widget: Widget, visitors: Callable[..., Visitor]
) -> None:
    """``visitor:read`` turns the replies the visitor saw into ``read`` for agents; another chat's are untouched."""
    ann, bob = visitors(widget), visitors(widget)
    ann.connect()
    bob.connect()
    ann.send("read-00001", "Hello from Ann")
    bob.send("read-00002", "Hello from Bob")
    with app.extensions["helpline"].factory() as session:
        replies = {}
        for msg in session.scalars(select(Message).where(Message.inbox_id == widget.inbox_id)):
            reply = lifecycle.reply(session, msg.ticket, f"Hi {msg.body_text[11:]}", by=widget.agent_id)
            reply.delivery_state = "sent"
            replies[msg.body_text[11:]] = reply
        session.commit()
        ann_reply, bob_reply = replies["Ann"].id, replies["Bob"].id
    # Ann claims to have read up to Bob's reply (a higher id): only her own becomes read.
    got = ann.client.call("visitor:read", {"id": max(ann_reply, bob_reply)}, namespace=webchat.NAMESPACE, timeout=5)
    assert got == {"ok": True, "read": 1}
    with app.extensions["helpline"].factory() as session:
        outbound = session.scalars(select(Message).where(Message.direction == "outbound"))
        states = {m.id: m.delivery_state for m in outbound}
    assert states == {ann_reply: "read", bob_reply: "sent"}
    assert ann.client.call("visitor:read", {"id": "all"}, namespace=webchat.NAMESPACE, timeout=5) == {"ok": False}
