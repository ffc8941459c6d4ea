"""Mail the system sends to its users (invitations, notifications) through the SMTP server of an email inbox.

There is no separate outgoing-mail setting: the first active email inbox with an SMTP server sends these, from
its own address. Without one, callers show the link on the page to be passed on by hand. The subject carries no
ticket token, so an answer to such a mail can never be threaded into a customer's ticket.
"""

from __future__ import annotations

import datetime as dt
import logging
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import make_msgid

from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.errors import ChannelError
from connectors.smtp import EmailChannel
from inbox import crypto
from inbox.errors import SecretError
from inbox.models import Inbox

log = logging.getLogger(__name__)


class NoMailer(Exception):
    """No email inbox can send mail."""


def sender_inbox(session: Session) -> Inbox | None:
    stmt = select(Inbox).where(Inbox.channel == "email", Inbox.paused.is_(False)).order_by(Inbox.id)
    return next((i for i in session.scalars(stmt) if (i.config or {}).get("smtp_host")), None)


def render_system_mail(sender: str, sender_name: str, to: str, subject: str, text: str) -> EmailMessage:
    """A plain-text, auto-generated message; header values are flattened to one line (no header injection)."""
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = Address(" ".join(sender_name.split()), addr_spec=sender)
    msg["To"] = Address(addr_spec=to.strip())
    msg["Subject"] = " ".join(subject.split())[:200]
    msg["Date"] = dt.datetime.now(dt.UTC)
    msg["Message-ID"] = make_msgid("helpline", domain=sender.rpartition("@")[2] or "helpline.invalid")
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to this
    msg.set_content(text)
    return msg


def send_system_mail(session: Session, secret_key: str, to: str, subject: str, text: str) -> str:
    """Send one plain-text mail; returns the inbox address it went from. Raises ``NoMailer`` if no inbox can
    send, ``ChannelError`` (with the server's words) if the SMTP server refused."""
    inbox = sender_inbox(session)
    if inbox is None:
        raise NoMailer("no email inbox with an SMTP server is set up")
    try:
        secrets = crypto.decrypt_json(secret_key, inbox.secrets)
    except SecretError as exc:
        raise NoMailer(f"the secrets of inbox {inbox.name!r} cannot be read: {exc}") from exc
    address = (inbox.config or {}).get("address") or inbox.address
    channel = EmailChannel(dict(inbox.config or {}) | {"address": address, "timeout": 20}, secrets)
    try:
        message = render_system_mail(address, inbox.name, to, subject, text)
    except (ValueError, IndexError) as exc:
        raise NoMailer(f"cannot address a mail to {to!r}: {exc}") from exc
    channel.send_message(message)
    log.info("system mail %r sent to %s through inbox %s", subject, to, inbox.id)
    return str(address)


__all__ = ["ChannelError", "NoMailer", "send_system_mail", "sender_inbox"]
