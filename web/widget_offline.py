"""Offline replies: an agent answers a website visitor who has left, by email through the widget's linked email inbox.

When the reply's recipient is a webchat visitor with no open chat socket (web.widget_presence), the widget's
inbox links an email inbox (``config["email_inbox_id"]``, set on the widget settings page) and the visitor's
contact has an email identity (the address they typed, web.widget_views.link_typed_email, or their signed-in
customer's), the reply is queued as an ordinary outbound email: identity = that email identity, inbox = the email
inbox, ticket = the chat's ticket. The normal outbox delivers it with a stable Message-ID, so the customer's email
answer threads back into the same ticket (inbox.routing follows In-Reply-To within the email inbox). The reply is
marked with the visitor id (``meta["webchat_visitor"]``), so a visitor who returns to the chat sees it there too.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from inbox.identities import live_contact
from inbox.models import Identity, Inbox, Message, Ticket
from web import widget_presence


@dataclass(frozen=True)
class EmailRoute:
    identity_id: int
    inbox_id: int
    address: str
    visitor: str | None = None  # the visitor id it stands in for: the reply shows in their chat history too


def linked_email_inbox(session: Session, widget: Inbox) -> Inbox | None:
    """The email inbox a widget sends offline replies through, if it is set and still usable."""
    raw = (widget.config or {}).get("email_inbox_id")
    if not isinstance(raw, int):
        return None
    inbox = session.get(Inbox, raw)
    if inbox is None or inbox.channel != "email" or (inbox.config or {}).get("archived"):
        return None
    return inbox


def email_route(session: Session, ticket: Ticket, identity_id: int | None) -> EmailRoute | None:
    """Where a reply on a chat ticket goes by email: to a visitor who is gone (their email identity), or to an
    email identity the agent chose (the customer answered by email). None: as asked, through the chat."""
    widget = session.get(Inbox, ticket.inbox_id)
    if widget is None or widget.channel != "webchat":
        return None
    email_inbox = linked_email_inbox(session, widget)
    if email_inbox is None:
        return None
    if identity_id is None:  # the composer's default, as tickets.lifecycle.reply picks it
        identity_id = session.scalar(
            select(Message.identity_id)
            .where(Message.ticket_id == ticket.id, Message.direction == "inbound", Message.identity_id.is_not(None))
            .order_by(Message.id.desc())
            .limit(1)
        )
    visitor = session.get(Identity, identity_id) if identity_id is not None else None
    if visitor is not None and visitor.channel == "email":
        return EmailRoute(visitor.id, email_inbox.id, visitor.handle)  # answering their email: by email
    if visitor is None or visitor.channel != "webchat" or widget_presence.is_online(visitor.handle):
        return None
    contact = live_contact(session, visitor.contact)
    typed = str((contact.attributes or {}).get("webchat_email") or "")
    emails = [i for i in contact.identities if i.channel == "email" and not i.unreachable]
    if not emails:
        return None
    chosen = next((i for i in emails if i.handle == typed), emails[-1])  # the address they gave us last
    return EmailRoute(chosen.id, email_inbox.id, chosen.handle, visitor.handle)
