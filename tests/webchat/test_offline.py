"""Offline replies: a visitor who left an email and then the page gets the agent's answer by email, through the
widget's linked email inbox and the normal outbox (a real aiosmtpd listener); their emailed answer comes back to
the same ticket through a real Dovecot and the IMAP sync."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from email import message_from_bytes, policy
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from connectors import webchat
from inbox.crypto import encrypt_json
from inbox.models import Identity, Inbox, Message, Ticket
from inbox.runtime import Storage
from tests.email.conftest import mail
from tests.factories import make_inbox
from tests.mail_services import PASSWORD as IMAP_PASSWORD
from tests.mail_services import SMTP_PASSWORD, SMTP_USER, Dovecot, SmtpSink, running_dovecot, smtp_server
from tests.web.conftest import login
from tests.webchat.conftest import Visitor, Widget
from web import widget_presence
from workers.mail_sync import sync_email_inbox
from workers.outbound import deliver_message

BOTH = pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture(autouse=True)
def no_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    """A closed socket stops counting at once (the grace for page changes has its own test)."""
    monkeypatch.setattr(widget_presence, "GRACE", 0)


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    with running_dovecot() as server:
        yield server


@pytest.fixture
def smtp() -> Iterator[tuple[Any, SmtpSink]]:
    with smtp_server(auth=True) as pair:  # signs in as the mailbox's SMTP user
        yield pair


@pytest.fixture
def linked(
    app: Flask, dovecot: Dovecot, smtp: tuple[Any, SmtpSink], make_widget: Callable[..., Widget]
) -> tuple[Widget, int, str]:
    """A widget whose offline replies go through a real mailbox: (widget, email inbox id, IMAP user)."""
    controller, _sink = smtp
    user = dovecot.new_user()
    with app.extensions["helpline"].factory() as session:
        email = make_inbox(
            session,
            channel="email",
            name=f"Support mail {user}",
            address="support@shop.test",
            config=dovecot.config_for(user, address="support@shop.test", smtp_host="127.0.0.1",
                                      smtp_port=controller.port, smtp_security="none",
                                      smtp_username=SMTP_USER),
        )
        secrets = {"password": IMAP_PASSWORD, "smtp_password": SMTP_PASSWORD}
        email.secrets = encrypt_json(app.config["SECRET_KEY"], secrets)
        session.commit()
        email_id = email.id
    return make_widget(email_inbox_id=email_id), email_id, user


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def online(app: Flask, visitor_id: str) -> bool:
    with app.app_context():
        return widget_presence.is_online(visitor_id)


def chat_ticket(app: Flask, widget: Widget) -> tuple[int, int]:
    """(ticket id, the visitor's webchat identity id) of the widget's only chat."""
    with app.extensions["helpline"].factory() as session:
        msg = session.scalars(select(Message).where(Message.inbox_id == widget.inbox_id)).one()
        return msg.ticket_id, int(msg.identity_id or 0)


def agent_replies(app: Flask, widget: Widget, ticket_id: int, identity_id: int, text: str) -> tuple[int, str]:
    """The agent answers in the ticket page's composer (defaulting to the chat); (message id, flash text)."""
    client = app.test_client()
    token = login(client, widget.agent_email)
    response = client.post(
        f"/tickets/{ticket_id}/reply", data={"text": text, "identity_id": str(identity_id), "csrf_token": token}
    )
    assert response.status_code == 302
    page = client.get(f"/tickets/{ticket_id}").get_data(as_text=True)
    with app.extensions["helpline"].factory() as session:
        message_id = session.scalars(
            select(Message.id).where(Message.ticket_id == ticket_id, Message.direction == "outbound")
            .order_by(Message.id.desc())
        ).first()
    assert message_id is not None
    return message_id, page


@BOTH
def test_reply_to_a_visitor_who_left_goes_by_email_and_the_answer_threads_back(
    app: Flask, storage: Storage, dovecot: Dovecot, smtp: tuple[Any, SmtpSink], linked: tuple[Widget, int, str],
    visitors: Callable[..., Visitor],
) -> None:
    widget, email_inbox_id, imap_user = linked
    _controller, sink = smtp
    visitor = visitors(widget)
    visitor.connect(profile={"name": "Ann Lee", "email": "Ann@Example.com"})
    assert visitor.send("offline-0001", "Is the blue teapot back in stock?")["ok"]
    ticket_id, visitor_identity = chat_ticket(app, widget)
    visitor_id = visitor.token.split(".")[0]
    assert online(app, visitor_id)

    client = app.test_client()
    login(client, widget.agent_email)
    assert 'id="reply-by-email"' not in client.get(f"/tickets/{ticket_id}").get_data(as_text=True)
    visitor.close()  # the visitor leaves the page
    wait_for(lambda: not online(app, visitor_id))
    note = "The visitor is not in the chat: a reply to them goes by email to ann@example.com."
    assert note in client.get(f"/tickets/{ticket_id}").get_data(as_text=True)  # said before the agent writes
    message_id, page = agent_replies(app, widget, ticket_id, visitor_identity, "Yes, it is back: 12 in stock.")
    assert "Your reply goes by email to ann@example.com" in page
    assert "Yes, it is back: 12 in stock." in page  # in the thread, though sent through another inbox
    with app.extensions["helpline"].factory() as session:
        queued = session.get(Message, message_id)
        assert queued is not None
        assert (queued.inbox_id, queued.channel, queued.ticket_id) == (email_inbox_id, "email", ticket_id)
        assert queued.delivery_state == "queued"
        to = session.get(Identity, queued.identity_id)
        assert to is not None and (to.channel, to.handle) == ("email", "ann@example.com")

    assert deliver_message(message_id) == "sent"  # the outbox worker's job
    [got] = sink.messages
    assert (got.mail_from, got.rcpt_tos) == ("support@shop.test", ["ann@example.com"])
    sent = message_from_bytes(got.data, policy=policy.default)
    assert "Yes, it is back: 12 in stock." in sent.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    with app.extensions["helpline"].factory() as session:
        delivered = session.get(Message, message_id)
        assert delivered is not None and delivered.delivery_state == "sent"
        assert sent["Message-ID"] == delivered.message_id_header

    # Back on the shop's site later, Ann finds the answer in the chat too.
    back = visitors(widget, token=visitor.token)
    back.connect()
    texts = [(m["from"], m["text"]) for m in back.events("history")[0]["messages"]]
    assert texts == [("visitor", "Is the blue teapot back in stock?"), ("agent", "Yes, it is back: 12 in stock.")]
    back.close()

    # Ann answers from her mail client: the mailbox's sync files it in the same chat ticket.
    dovecot.deliver(imap_user, mail(sender="Ann Lee <ann@example.com>", message_id="<ann-answer@example.com>",
                                    in_reply_to=sent["Message-ID"], subject=str(sent["Subject"]),
                                    body="Great, I'll order two."))
    sync_email_inbox(storage, email_inbox_id)
    with app.extensions["helpline"].factory() as session:
        answer = session.scalars(
            select(Message).where(Message.message_id_header == "<ann-answer@example.com>")
        ).one()
        assert answer.ticket_id == ticket_id and answer.inbox_id == email_inbox_id
        ticket = session.get(Ticket, ticket_id)
        assert ticket is not None and ticket.status == "open"
    # The next reply answers her email by email, without asking the agent which channel.
    again = app.test_client()
    token = login(again, widget.agent_email)
    again.post(f"/tickets/{ticket_id}/reply", data={"text": "Two are reserved for you.", "csrf_token": token})
    with app.extensions["helpline"].factory() as session:
        latest = session.scalars(
            select(Message).where(Message.ticket_id == ticket_id, Message.direction == "outbound")
            .order_by(Message.id.desc())
        ).first()
        assert latest is not None and (latest.inbox_id, latest.channel) == (email_inbox_id, "email")


@BOTH
def test_a_visitor_still_in_the_chat_gets_the_reply_in_the_chat(
    app: Flask, smtp: tuple[Any, SmtpSink], linked: tuple[Widget, int, str], visitors: Callable[..., Visitor]
) -> None:
    widget, _email_inbox_id, _user = linked
    _controller, sink = smtp
    visitor = visitors(widget)
    visitor.connect(profile={"email": "bo@example.com"})
    visitor.send("online-00001", "Hello?")
    ticket_id, identity_id = chat_ticket(app, widget)
    message_id, page = agent_replies(app, widget, ticket_id, identity_id, "Hi Bo, how can I help?")
    assert "goes by email" not in page
    with app.extensions["helpline"].factory() as session:
        reply = session.get(Message, message_id)
        assert reply is not None and (reply.inbox_id, reply.channel) == (widget.inbox_id, "webchat")
    assert deliver_message(message_id) == "sent"
    wait_for(lambda: visitor.events("agent:message"))
    assert sink.messages == []


def test_without_a_linked_inbox_or_an_email_the_reply_waits_in_the_chat(
    app: Flask, make_widget: Callable[..., Widget], visitors: Callable[..., Visitor]
) -> None:
    for widget, profile in ((make_widget(), {"email": "cy@example.com"}), (make_widget(email_inbox_id=10**6), {})):
        visitor = visitors(widget)
        visitor.connect(profile=profile)
        visitor.send("nomail-00001", "Anyone there?")
        ticket_id, identity_id = chat_ticket(app, widget)
        visitor.close()
        wait_for(lambda v=visitor: not online(app, v.token.split(".")[0]))
        message_id, page = agent_replies(app, widget, ticket_id, identity_id, "We are back.")
        with app.extensions["helpline"].factory() as session:
            reply = session.get(Message, message_id)
            assert reply is not None and reply.channel == "webchat" and reply.inbox_id == widget.inbox_id
        assert "goes by email" not in page


def test_moving_to_another_page_of_the_shop_is_not_leaving(
    app: Flask, make_widget: Callable[..., Widget], visitors: Callable[..., Visitor], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(widget_presence, "GRACE", 2)
    widget = make_widget()
    visitor = visitors(widget)
    visitor.connect()
    visitor_id = visitor.token.split(".")[0]
    visitor.close()  # the next page of the shop opens a new socket a moment later
    time.sleep(0.3)
    assert online(app, visitor_id)
    # Under load the client's close packet is sometimes lost (python-socketio's polling client); the server then
    # notices the socket gone at its ping timeout (1 s interval + 20 s timeout in these tests), as for a killed tab.
    wait_for(lambda: not online(app, visitor_id), timeout=30)


def test_presence_expires_when_a_web_process_dies(app: Flask, redis_url: str) -> None:
    """Another process's socket counts only while that process renews it."""
    from redis import Redis

    visitor_id = webchat.new_visitor_id()
    key = f"helpline:webchat:online:{visitor_id}"
    with app.app_context():
        Redis.from_url(redis_url).hset(key, "sid-of-another-process", f"{time.time() + 60:.0f}")
        assert widget_presence.is_online(visitor_id)
        Redis.from_url(redis_url).hset(key, "sid-of-another-process", f"{time.time() - 1:.0f}")
        assert not widget_presence.is_online(visitor_id)
    Redis.from_url(redis_url).delete(key)


def test_linked_inbox_must_be_an_email_inbox(app: Flask, make_widget: Callable[..., Widget]) -> None:
    from web.widget_offline import linked_email_inbox

    widget = make_widget()
    with app.extensions["helpline"].factory() as session:
        chat = session.get(Inbox, widget.inbox_id)
        assert chat is not None
        chat.config = dict(chat.config) | {"email_inbox_id": chat.id}  # itself: not an email inbox
        assert linked_email_inbox(session, chat) is None
