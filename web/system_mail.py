"""Mail the system itself sends to its users (invitations), through the SMTP server of a configured email inbox.

There is no separate outgoing-mail setting: the first active email inbox with an SMTP server sends these, from
its own address. Without one, callers show the link on the page to be passed on by hand.
"""

from __future__ import annotations

import logging
from email.utils import make_msgid

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.base import Outbound
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


def send_system_mail(session: Session, to: str, subject: str, text: str) -> str:
    """Send one plain-text mail; returns the inbox address it went from. Raises ``NoMailer`` if no inbox can
    send, ``ChannelError`` (with the server's words) if the SMTP server refused."""
    inbox = sender_inbox(session)
    if inbox is None:
        raise NoMailer("no email inbox with an SMTP server is set up")
    try:
        secrets = crypto.decrypt_json(current_app.config["SECRET_KEY"], inbox.secrets)
    except SecretError as exc:
        raise NoMailer(f"the secrets of inbox {inbox.name!r} cannot be read: {exc}") from exc
    config = dict(inbox.config or {}) | {"timeout": 20}
    address = config.get("address") or inbox.address
    channel = EmailChannel(config | {"address": address}, secrets)
    domain = address.rpartition("@")[2] or "helpline.invalid"
    outbound = Outbound(
        message_id=0,
        ticket_id=0,
        channel="email",
        to_handle=to,
        from_address=address,
        from_name=inbox.name,
        subject=subject,
        text=text,
        message_id_header=make_msgid("invite", domain=domain),
        auto_generated=True,
    )
    channel.send(outbound)
    log.info("system mail %r sent to %s through inbox %s", subject, to, inbox.id)
    return str(address)


__all__ = ["ChannelError", "NoMailer", "send_system_mail", "sender_inbox"]
