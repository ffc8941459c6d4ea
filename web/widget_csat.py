"""The satisfaction survey in the website-chat widget (issue 9): "How did we do?" after an agent solves the chat.

The commit that solves a web-chat ticket asks through ``tickets.csat.ask_in_chat`` (a ``csat:ask`` event to the
visitor's room; live when the visitor is connected). A widget that connects later is asked by ``ask_on_connect``
until the solve is rated or its survey expires (``tickets.csat.LINK_DAYS``, as the email link). Both carry the
same signed token as the email link, which names the ticket and the solve.

``POST /widget/api/rating`` takes ``{"inbox", "token", "survey", "score", "comment"?}``. The signed visitor token
is the credential, as for every widget endpoint: the survey must be about a ticket of this inbox that this visitor
wrote on, and about the solve the ticket is in now (a reopened ticket is not rated). The rating is stored by
``tickets.csat.rate``, the code path of the email page, so a second answer replaces the first (one per solve).
"""

from __future__ import annotations

from typing import Any

from flask import current_app, request
from flask.typing import ResponseReturnValue
from flask_socketio import emit
from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors import webchat
from inbox.identities import find_identity
from inbox.models import Inbox, Message, Ticket
from tickets import csat
from web import widget_views as wv
from web.db import get_session


def _secret() -> str:
    return str(current_app.config["HELPLINE_SETTINGS"].secret_key)


def survey_payload(ticket: Ticket, solved_at: Any) -> dict[str, Any]:
    return {"ticket_id": ticket.id, "survey": csat.make_token(_secret(), ticket.id, solved_at)}


def ask_on_connect(session: Session, inbox: Inbox, visitor_id: str) -> None:
    """Ask a visitor who comes back (or reconnects) about their solved chat, if it is still unrated."""
    found = csat.chat_survey(session, inbox.id, visitor_id)
    if found is not None:
        emit(csat.WIDGET_EVENT, survey_payload(*found))


def wrote_on(session: Session, ticket: Ticket, visitor_id: str) -> bool:
    """Whether this visitor wrote on the ticket, in its own inbox: the only tickets their widget may rate."""
    identity = find_identity(session, "webchat", visitor_id)
    if identity is None:
        return False
    return (
        session.scalar(
            select(Message.id)
            .where(
                Message.ticket_id == ticket.id,
                Message.inbox_id == ticket.inbox_id,
                Message.identity_id == identity.id,
                Message.direction == "inbound",
            )
            .limit(1)
        )
        is not None
    )


def _error(status: int, error: str) -> ResponseReturnValue:
    return {"ok": False, "error": error}, status


@wv.bp.post("/widget/api/rating")
def rating_api() -> ResponseReturnValue:
    """Rate the visitor's own solved chat (see the module docstring); 404 alike for "no such" and "not yours"."""
    data = request.get_json(silent=True)
    data = data if isinstance(data, dict) else {}
    session = get_session()
    inbox = wv.find_widget_inbox(session, data.get("inbox"))
    if inbox is None:
        return _error(404, "unknown inbox")
    if not wv.origin_ok(inbox):
        return _error(403, "this website may not use this chat")
    visitor_id = webchat.verify_visitor(wv.visitor_signing_key(inbox), data.get("token"))
    if visitor_id is None:
        return _error(403, "invalid visitor token")
    lim = wv.limits()
    if not lim.hit(lim.visitor, visitor_id) or not lim.hit(lim.ip, wv.client_ip()):
        return _error(429, "too many requests, slow down")
    survey = data.get("survey")
    try:
        ticket_id, solved_at = csat.read_token(_secret(), survey if isinstance(survey, str) else "")
    except csat.BadLink as exc:
        return _error(410 if "expired" in str(exc) else 404, str(exc))
    ticket = session.get(Ticket, ticket_id)
    if ticket is None or ticket.inbox_id != inbox.id or not wrote_on(session, ticket, visitor_id):
        return _error(404, "This rating link is not valid.")
    if csat.current_solve(session, ticket) != solved_at:
        return _error(409, "This conversation is not solved (any more).")
    if csat.expired(solved_at):
        return _error(410, "This rating link has expired.")
    score, comment = data.get("score"), data.get("comment", "")
    try:
        csat.rate(session, ticket, solved_at, score if type(score) is int else 0, str(comment or ""))
    except ValueError as exc:
        session.rollback()
        return _error(422, str(exc))
    session.commit()
    return wv._cors(current_app.json.response({"ok": True, "score": score}), inbox)
