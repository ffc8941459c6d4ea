"""While an agent writes a reply on a Telegram ticket, the customer sees "typing…" in their chat.

Called from the agents' ``typing`` Socket.IO event (``web.socket_events``), which has already checked that the agent
joined the ticket's room. The Bot API call runs in a worker (``workers.telegram_updates.send_typing_action``),
throttled to one per chat every few seconds, so the socket handler never waits on Telegram.
"""

from __future__ import annotations

import logging

from flask import current_app
from sqlalchemy import select

from inbox.models import Identity, Message, Ticket
from web.db import get_session

log = logging.getLogger(__name__)


def telegram_chat(ticket: Ticket) -> str | None:
    """The chat a reply to this ticket goes to, if that is a Telegram chat the customer has not blocked."""
    session = get_session()
    identity_id = session.scalar(
        select(Message.identity_id)
        .where(Message.ticket_id == ticket.id, Message.direction == "inbound", Message.identity_id.is_not(None))
        .order_by(Message.id.desc())
        .limit(1)
    )  # the same choice as tickets.lifecycle's reply: the channel of the customer's latest message
    identity = session.get(Identity, identity_id) if identity_id is not None else None
    if identity is None or identity.channel != "telegram" or identity.unreachable:
        return None
    return identity.handle


def notify_telegram_typing(ticket_id: int) -> None:
    """Enqueue a throttled ``sendChatAction typing`` for the ticket's Telegram chat; no-op for other channels."""
    if not current_app.config.get("HELPLINE_REDIS_URL"):
        return
    ticket = get_session().get(Ticket, ticket_id)
    if ticket is None or ticket.inbox is None or ticket.inbox.channel != "telegram":
        return
    handle = telegram_chat(ticket)
    if handle is None:
        return
    from workers.telegram_updates import request_typing

    try:
        request_typing(ticket.inbox_id, handle)
    except Exception:  # Redis down: the customer misses a "typing…", nothing else
        log.warning("typing for telegram ticket %s not enqueued", ticket_id, exc_info=True)
