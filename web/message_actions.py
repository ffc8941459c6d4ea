"""Per-message and per-ticket actions of the ticket page: split a message off, move it, and, for Instagram inboxes
answered by hand, record a reply as sent on Instagram. Routes live on the ``tickets`` blueprint; each checks that
the user may see every ticket involved (404 otherwise), then calls ``tickets.lifecycle``.
"""

from __future__ import annotations

from typing import Any

from flask import abort, redirect, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import login_required
from sqlalchemy import select

from connectors.instagram import instagram_link
from inbox.db import utcnow
from inbox.errors import InvalidChange
from inbox.models import STATUSES, Message, Ticket
from tickets import lifecycle
from tickets.sla import SlaStatus, sla_status
from web import access
from web.auth import me
from web.db import get_session
from web.ticket_views import bp, visible_ticket


def _message_of(ticket: Ticket, message_id: int) -> Message:
    # Locked (PostgreSQL) and read fresh: two agents splitting or moving the same message take turns, and the
    # second one finds it gone from this ticket (404) instead of moving it again.
    message = get_session().get(Message, message_id, with_for_update=True, populate_existing=True)
    if message is None or message.ticket_id != ticket.id:
        abort(404)
    return message


@bp.post("/<int:ticket_id>/messages/<int:message_id>/split")
@login_required
def split_message(ticket_id: int, message_id: int) -> ResponseReturnValue:
    """Split the message (and optionally its sender's later ones) into a new ticket; open the new ticket."""
    ticket = visible_ticket(ticket_id)
    message = _message_of(ticket, message_id)
    session = get_session()
    new = lifecycle.split_message(
        session,
        message,
        by=me().id,
        with_later=request.form.get("with_later") == "1",
        allowed_inbox_ids=access.visible_inbox_ids(session, me()),
    )
    session.commit()  # both tickets' live events go out now
    return redirect(url_for(".show", ticket_id=new.id))


@bp.post("/<int:ticket_id>/messages/<int:message_id>/move")
@login_required
def move_message(ticket_id: int, message_id: int) -> ResponseReturnValue:
    """Move the message into another ticket the user can see; stay on this ticket."""
    ticket = visible_ticket(ticket_id)
    message = _message_of(ticket, message_id)
    raw = request.form.get("into", "").strip().lstrip("#")
    if not raw.isdigit():
        raise InvalidChange("give the number of the ticket to move the message to")
    target = visible_ticket(int(raw))
    session = get_session()
    lifecycle.move_message(
        session, message, target, by=me().id, allowed_inbox_ids=access.visible_inbox_ids(session, me())
    )
    session.commit()
    return redirect(url_for(".show", ticket_id=ticket.id))


def answered_by_hand(ticket: Ticket) -> bool:
    """Instagram inboxes without the Graph API: Helpline reads, the agent answers in the Instagram app."""
    return ticket.inbox.channel == "instagram" and (ticket.inbox.config or {}).get("mode") != "graph"


@bp.post("/<int:ticket_id>/answered")
@login_required
def mark_answered(ticket_id: int) -> ResponseReturnValue:
    """Record the drafted reply as sent by hand on Instagram: stored and audited, never delivered by us."""
    ticket = visible_ticket(ticket_id)
    if not answered_by_hand(ticket):
        raise InvalidChange("this ticket's replies are sent by Helpline: use Send reply")
    session = get_session()
    status = request.form.get("status") or None
    lifecycle.reply(
        session,
        ticket,
        request.form.get("text", ""),
        by=me().id,
        identity_id=_instagram_identity(ticket),
        new_status=status if status in STATUSES else None,
        sent_elsewhere=True,
    )
    session.commit()
    return redirect(url_for(".show", ticket_id=ticket.id))


def _last_instagram_message(ticket: Ticket) -> Message | None:
    return get_session().scalar(
        select(Message)
        .where(Message.ticket_id == ticket.id, Message.direction == "inbound", Message.channel == "instagram")
        .order_by(Message.id.desc())
        .limit(1)
    )


def _instagram_identity(ticket: Ticket) -> int | None:
    message = _last_instagram_message(ticket)
    if message is None or message.identity_id is None:
        raise InvalidChange("this ticket has no Instagram message to answer")
    return message.identity_id


@bp.app_template_global()
def instagram_answer(ticket: Ticket) -> dict[str, Any] | None:
    """What the ticket page offers for answering by hand: the link to the comment/post/DM, or None."""
    if ticket.channel != "instagram" or not answered_by_hand(ticket):
        return None
    message = _last_instagram_message(ticket)
    return {"link": instagram_link(message.meta or {}) if message is not None else None}


@bp.app_template_global()
def ticket_sla(ticket: Ticket) -> SlaStatus | None:
    """The ticket's most urgent running SLA clock (the header badge), as the list and the sweep compute it."""
    return sla_status(ticket, utcnow(), session=get_session())
