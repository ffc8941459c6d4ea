"""EmailChannel against a real aiosmtpd listener: what arrives, how errors are classified, and the round trip."""

from __future__ import annotations

from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.base import Outbound
from connectors.errors import ChannelAuthError, PermanentError, TemporaryError
from connectors.registry import channel_for
from connectors.smtp import EmailChannel
from inbox.models import Message
from inbox.runtime import Storage
from tests.email.conftest import email_inbox, mail
from tests.mail_services import SMTP_PASSWORD, SMTP_USER, Dovecot, SmtpSink, smtp_server
from tickets.lifecycle import reply
from workers.mail_sync import sync_email_inbox


def channel(controller: Any, **config: Any) -> EmailChannel:
    base = {
        "smtp_host": "127.0.0.1",
        "smtp_port": controller.port,
        "smtp_security": "none",
        "address": "support@shop.test",
    }
    return EmailChannel(base | config, {})


def outbound(**overrides: Any) -> Outbound:
    values: dict[str, Any] = {
        "message_id": 5,
        "ticket_id": 12,
        "channel": "email",
        "to_handle": "ann@example.com",
        "from_address": "support@shop.test",
        "subject": "Order late",
        "text": "It ships today.",
        "message_id_header": "<ticket-12.5.aa@shop.test>",
        "in_reply_to": "<c1@example.com>",
        "references": ("<c1@example.com>",),
    }
    return Outbound(**(values | overrides))


def test_registry_builds_the_email_channel() -> None:
    assert channel_for("email") is EmailChannel


def test_reply_arrives_with_threading_headers(smtp: tuple[Any, SmtpSink]) -> None:
    controller, sink = smtp
    assert channel(controller).send(outbound()) == "<ticket-12.5.aa@shop.test>"
    [got] = sink.messages
    assert (got.mail_from, got.rcpt_tos) == ("support@shop.test", ["ann@example.com"])
    msg = message_from_bytes(got.data, policy=policy.default)
    assert msg["In-Reply-To"] == "<c1@example.com>" and msg["Subject"] == "Re: Order late [#12]"


def test_smtp_errors_are_classified(smtp: tuple[Any, SmtpSink]) -> None:
    controller, sink = smtp
    with pytest.raises(TemporaryError, match="451"):
        channel(controller).send(outbound(to_handle="busy@temp.test"))
    with pytest.raises(PermanentError, match="550 5.1.1 no such user here") as info:
        channel(controller).send(outbound(to_handle="gone@perm.test"))
    assert not isinstance(info.value, TemporaryError)
    with pytest.raises(PermanentError, match="not a safe mail address"):
        channel(controller).send(outbound(to_handle="ann@example.com\r\nRCPT TO:<eve@evil.test>"))
    with pytest.raises(PermanentError, match="loopback"):
        channel(controller, smtp_host="smtp.example.com").send(outbound())
    assert sink.messages == []


def test_unreachable_server_is_temporary() -> None:
    from tests.services import free_port

    with pytest.raises(TemporaryError):
        EmailChannel({"smtp_host": "127.0.0.1", "smtp_port": free_port(), "smtp_security": "none"}, {}).send(outbound())


def test_starttls_and_auth(tmp_path: Path) -> None:
    with smtp_server(tls_folder=tmp_path, auth=True) as (controller, sink):
        config = {"smtp_security": "starttls", "smtp_username": SMTP_USER, "ca_file": str(tmp_path / "cert.pem")}
        EmailChannel({**_base(controller), **config}, {"smtp_password": SMTP_PASSWORD}).send(outbound())
        assert len(sink.messages) == 1
        with pytest.raises(ChannelAuthError):
            EmailChannel({**_base(controller), **config}, {"smtp_password": "wrong"}).send(outbound())
        with pytest.raises(PermanentError, match="certificate"):
            EmailChannel({**_base(controller), **config, "ca_file": None}, {"smtp_password": SMTP_PASSWORD}).send(
                outbound()
            )


def _base(controller: Any) -> dict[str, Any]:
    return {"smtp_host": "127.0.0.1", "smtp_port": controller.port, "address": "support@shop.test"}


def test_agent_reply_and_customer_answer_thread_in_one_ticket(
    storage: Storage, session: Session, dovecot: Dovecot, imap_user: str, smtp: tuple[Any, SmtpSink]
) -> None:
    controller, sink = smtp
    inbox = email_inbox(session, dovecot, imap_user, storage.settings.secret_key)
    dovecot.deliver(imap_user, mail(message_id="<first@example.com>"))
    sync_email_inbox(storage, inbox.id)
    first = session.scalars(select(Message).where(Message.message_id_header == "<first@example.com>")).one()
    queued = reply(session, first.ticket, "We are on it.", by=None, mail_domain="shop.test")
    session.commit()
    channel(controller).send(
        outbound(
            message_id=queued.id,
            ticket_id=queued.ticket_id,
            message_id_header=queued.message_id_header,
            in_reply_to=first.message_id_header,
            references=(first.message_id_header or "",),
            subject=first.ticket.subject,
        )
    )
    sent = message_from_bytes(sink.messages[0].data, policy=policy.default)
    assert sent["References"] == "<first@example.com>"
    # The customer's client answers our mail but drops the older References: our own Message-ID still threads.
    answer = mail(message_id="<answer@example.com>", in_reply_to=sent["Message-ID"], subject=sent["Subject"])
    dovecot.deliver(imap_user, answer)
    ticket_id = first.ticket_id
    session.rollback()
    sync_email_inbox(storage, inbox.id)
    got = session.scalars(select(Message).where(Message.message_id_header == "<answer@example.com>")).one()
    assert got.ticket_id == ticket_id and got.thread_reason == f"in-reply-to {sent['Message-ID']}"


def test_implicit_tls_and_verp_return_path(tmp_path: Path) -> None:
    import ssl

    from aiosmtpd.controller import Controller

    from tests.mail_services import make_certificate
    from tests.services import free_port

    cert, key = make_certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    sink = SmtpSink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port(), ssl_context=context)
    controller.start()
    try:
        config = {**_base(controller), "smtp_security": "ssl", "ca_file": str(cert), "verp": True}
        EmailChannel(config, {}).send(outbound(message_id=77))
    finally:
        controller.stop()
    [got] = sink.messages
    assert got.mail_from == "support+b77@shop.test"  # a bounce to this address names message 77
    assert b"From: support@shop.test" in got.data


def test_tls_context_is_cached_and_still_verifies(tmp_path: Path) -> None:
    """The SSL context is built once per CA file, not per message, and the cached one still checks the server."""
    import ssl

    from connectors.imap import tls_context

    with smtp_server(tls_folder=tmp_path, auth=True) as (controller, sink):
        ca_file = str(tmp_path / "cert.pem")
        config = {**_base(controller), "smtp_security": "starttls", "smtp_username": SMTP_USER, "ca_file": ca_file}
        context = tls_context(ca_file)
        assert tls_context(ca_file) is context  # one context per CA file
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
        for number in (1, 2, 3):  # every send reuses it
            EmailChannel(config, {"smtp_password": SMTP_PASSWORD}).send(outbound(message_id=number))
        assert len(sink.messages) == 3
        assert tls_context(ca_file) is context
        # The cached default context (system CAs only) still refuses the self-signed server, every time.
        assert tls_context(None) is tls_context(None)
        for _ in range(2):
            with pytest.raises(PermanentError, match="certificate"):
                EmailChannel({**config, "ca_file": None}, {"smtp_password": SMTP_PASSWORD}).send(outbound())
        assert len(sink.messages) == 3

    # A replaced CA file (a renewed certificate) gets a new context, which trusts the new certificate only.
    other = tmp_path / "other"
    other.mkdir()
    with smtp_server(tls_folder=other, auth=True) as (controller, sink):
        config = {**_base(controller), "smtp_security": "starttls", "smtp_username": SMTP_USER, "ca_file": ca_file}
        with pytest.raises(PermanentError, match="certificate"):  # the old CA does not vouch for the new server
            EmailChannel(config, {"smtp_password": SMTP_PASSWORD}).send(outbound())
        (tmp_path / "cert.pem").write_bytes((other / "cert.pem").read_bytes())
        assert tls_context(ca_file) is not context
        EmailChannel(config, {"smtp_password": SMTP_PASSWORD}).send(outbound())
        assert len(sink.messages) == 1
