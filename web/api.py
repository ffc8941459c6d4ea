"""JSON API v1 with bearer tokens. A ticket or contact outside the caller's inboxes is a 404, not a 403."""

from __future__ import annotations

from flask import Blueprint, abort, g, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import func, or_, select
from sqlalchemy.orm import selectinload

from inbox.errors import NotFound
from inbox.identities import live_contact
from inbox.models import STATUSES, Contact, Inbox, Message, Ticket
from inbox.thread import customer_thread
from inbox.users import user_for_token
from tickets.lifecycle import ticket_tags
from web import access
from web.db import get_session
from web.serializers import contact_json, message_json, ticket_json

bp = Blueprint("api", __name__, url_prefix="/api/v1")
MAX_PER_PAGE = 100


@bp.before_request
def authenticate() -> ResponseReturnValue | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return _unauthorized("missing bearer token")
    session = get_session()
    try:
        g.api_user = user_for_token(session, token.strip())
    except NotFound:
        return _unauthorized("invalid token")
    session.commit()  # last_used_at
    return None


def _unauthorized(reason: str) -> ResponseReturnValue:
    response = jsonify(error="unauthorized", detail=reason)
    response.status_code = 401
    response.headers["WWW-Authenticate"] = 'Bearer realm="helpline"'
    return response


def _error(status: int, detail: str) -> ResponseReturnValue:
    response = jsonify(error=detail)
    response.status_code = status
    return response


@bp.get("/tickets")
def list_tickets() -> ResponseReturnValue:
    session = get_session()
    ids = access.visible_inbox_ids(session, g.api_user)
    stmt = access.restrict_tickets(select(Ticket).where(Ticket.merged_into_id.is_(None)), ids)
    if status := request.args.get("status"):
        wanted = [s for s in status.split(",") if s]
        if any(s not in STATUSES for s in wanted):
            return _error(422, f"status must be among {', '.join(STATUSES)}")
        stmt = stmt.where(Ticket.status.in_(wanted))
    if inbox := request.args.get("inbox"):
        inbox_id = int(inbox) if inbox.isdigit() else session.scalar(select(Inbox.id).where(Inbox.name == inbox))
        stmt = stmt.where(Ticket.inbox_id == (inbox_id or -1))
    if assignee := request.args.get("assignee"):
        if assignee == "me":
            stmt = stmt.where(Ticket.assignee_id == g.api_user.id)
        elif assignee == "none":
            stmt = stmt.where(Ticket.assignee_id.is_(None))
        elif assignee.isdigit():
            stmt = stmt.where(Ticket.assignee_id == int(assignee))
        else:
            return _error(422, "assignee must be a user id, 'me' or 'none'")
    if q := request.args.get("q", "").strip():
        like = f"%{q.replace('%', '').replace('_', '')}%"
        stmt = stmt.join(Contact, Contact.id == Ticket.contact_id).where(
            or_(Ticket.subject.ilike(like), Ticket.preview.ilike(like), Contact.name.ilike(like))
        )
    page = max(1, request.args.get("page", 1, type=int) or 1)
    per_page = min(MAX_PER_PAGE, max(1, request.args.get("per_page", 25, type=int) or 25))
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    rows = list(
        session.scalars(
            stmt.options(selectinload(Ticket.contact), selectinload(Ticket.inbox), selectinload(Ticket.assignee))
            .order_by(Ticket.last_activity_at.desc(), Ticket.id.desc())
            .limit(per_page)
            .offset((page - 1) * per_page)
        )
    )
    tags = ticket_tags(session, [t.id for t in rows])
    return jsonify(
        tickets=[ticket_json(t, tags.get(t.id, [])) for t in rows],
        page=page,
        per_page=per_page,
        total=total,
        next_page=page + 1 if page * per_page < total else None,
    )


def _visible_ticket(ticket_id: int) -> Ticket:
    session = get_session()
    ticket = session.get(Ticket, ticket_id)
    if ticket is None or not access.can_see_ticket(session, g.api_user, ticket):
        abort(404)
    return ticket


@bp.get("/tickets/<int:ticket_id>")
def show_ticket(ticket_id: int) -> ResponseReturnValue:
    ticket = _visible_ticket(ticket_id)
    session = get_session()
    messages = session.scalars(
        ticket.messages.select().options(selectinload(Message.attachments), selectinload(Message.author))
    )
    return jsonify(ticket=ticket_json(ticket), messages=[message_json(m) for m in messages])


def _visible_contact(contact_id: int) -> Contact:
    session = get_session()
    contact = session.get(Contact, contact_id)
    if contact is None or not access.can_see_contact(session, g.api_user, contact.id):
        abort(404)
    return live_contact(session, contact)


@bp.get("/contacts/<int:contact_id>")
def show_contact(contact_id: int) -> ResponseReturnValue:
    return jsonify(contact=contact_json(_visible_contact(contact_id)))


@bp.get("/contacts/<int:contact_id>/thread")
def contact_thread(contact_id: int) -> ResponseReturnValue:
    contact = _visible_contact(contact_id)
    session = get_session()
    ids = access.visible_inbox_ids(session, g.api_user)
    page = customer_thread(
        session,
        contact.id,
        before_id=request.args.get("before", type=int),
        limit=request.args.get("limit", 50, type=int) or 50,
        inbox_ids=ids,
    )
    return jsonify(
        contact_id=contact.id, messages=[message_json(m) for m in page.messages], next_before=page.next_cursor
    )


@bp.errorhandler(404)
def not_found(_exc: Exception) -> ResponseReturnValue:
    return _error(404, "not found")
