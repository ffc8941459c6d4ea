"""Fixtures for the email tests: one private Dovecot per session, an aiosmtpd sink per test, raw-mail builders."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

import pytest
from sqlalchemy.orm import Session

from inbox.crypto import encrypt_json
from inbox.models import Inbox
from tests.factories import make_inbox
from tests.mail_services import PASSWORD, Dovecot, SmtpSink, running_dovecot, smtp_server


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    with running_dovecot() as server:
        yield server


@pytest.fixture
def imap_user(dovecot: Dovecot) -> str:
    return dovecot.new_user()


@pytest.fixture
def smtp() -> Iterator[tuple[Any, SmtpSink]]:
    with smtp_server() as pair:
        yield pair


def mail(
    *,
    sender: str = "Ann Customer <ann@example.com>",
    to: str = "support@shop.test",
    subject: str = "Order 1001 is late",
    body: str = "Where is my parcel?",
    html: str | None = None,
    message_id: str | None = None,
    in_reply_to: str | None = None,
    references: str | None = None,
    headers: dict[str, str] | None = None,
    attachments: list[tuple[str, str, bytes]] = (),  # type: ignore[assignment]
) -> bytes:
    """A realistic customer mail as raw bytes (CRLF), built with the stdlib like a mail client would."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(dt.datetime(2026, 11, 20, 9, 30, tzinfo=dt.UTC))
    if message_id != "":
        msg["Message-ID"] = message_id or make_msgid(domain="example.com")
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if references:
        msg["References"] = references
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    for filename, ctype, data in attachments:
        maintype, subtype = ctype.split("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def email_inbox(session: Session, server: Dovecot, user: str, secret_key: str, **config: Any) -> Inbox:
    inbox = make_inbox(session, address="support@shop.test", config=server.config_for(user, **config))
    inbox.secrets = encrypt_json(secret_key, {"password": PASSWORD})
    session.commit()
    return inbox
