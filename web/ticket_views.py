"""The ticket page and its controls. Every action checks that the ticket is visible, then calls the domain."""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import login_required
from sqlalchemy import select
from sqlalchemy.orm import Session

from inbox.db import utcnow
from inbox.errors import InvalidChange
from inbox.identities import live_contact
from inbox.ingest import InboundAttachment, store_attachments
from inbox.models import PRIORITIES, STATUSES, Message, Team, Ticket, User
from tickets import csat, lifecycle
from web import access, canned, jobs, widget_offline
from web.auth import me
from web.db import get_session
from web.people import assignable_users, can_be_assigned
from web.thread_view import thread_groups

bp = Blueprint("tickets", __name__, url_prefix="/tickets")
SNOOZE_HOURS = (1, 4, 24, 72, 168)


def visible_ticket(ticket_id: int) -> Ticket:
    """The ticket, or 404 when it does not exist or lies outside the user's inboxes (no existence leak)."""
    session = get_session()
    ticket = session.get(Ticket, ticket_id)
    if ticket is None or not access.can_see_ticket(session, me(), ticket):
        abort(404)
    return ticket


def _done(ticket: Ticket) -> ResponseReturnValue:
    get_session().commit()  # events recorded by the domain go out now
    return redirect(url_for(".show", ticket_id=ticket.id))


@bp.get("/<int:ticket_id>")
@login_required
def show(ticket_id: int) -> ResponseReturnValue:
    ticket = visible_ticket(ticket_id)
    if ticket.merged_into_id is not None:
        target = get_session().get(Ticket, ticket.merged_into_id)
        if target is not None and access.can_see_ticket(get_session(), me(), target):
            return redirect(url_for(".show", ticket_id=target.id))
    return render_template("ticket.html", **_context(ticket))


@bp.get("/<int:ticket_id>/thread")
@login_required
def thread(ticket_id: int) -> ResponseReturnValue:
    """The thread alone, for live refresh and for "older messages"."""
    ticket = visible_ticket(ticket_id)
    return render_template("_thread.html", **_context(ticket))


@bp.get("/<int:ticket_id>/meta")
@login_required
def meta(ticket_id: int) -> ResponseReturnValue:
    ticket = visible_ticket(ticket_id)
    return render_template("_ticket_meta.html", **_context(ticket))


@bp.get("/<int:ticket_id>/sla")
@login_required
def sla(ticket_id: int) -> ResponseReturnValue:
    """The header's SLA badge alone, for live refresh: the list's badge computed for this one ticket."""
    return render_template("_ticket_sla.html", ticket=visible_ticket(ticket_id))


def _context(ticket: Ticket) -> dict[str, object]:
    session = get_session()
    ids = access.visible_inbox_ids(session, me())
    contact = live_contact(session, ticket.contact)
    groups, next_before = thread_groups(session, ticket, contact.id, ids, request.args.get("before", type=int))
    previous = session.scalars(
        access.restrict_tickets(select(Ticket).where(Ticket.contact_id == contact.id, Ticket.id != ticket.id), ids)
        .order_by(Ticket.last_activity_at.desc())
        .limit(20)
    )
    return {
        "ticket": ticket,
        "contact": contact,
        "groups": groups,
        "next_before": next_before,
        "previous": list(previous),
        "agents": assignable_users(session, me(), {ticket.inbox_id}),
        "teams": list(session.scalars(select(Team).order_by(Team.name))) if me().role != "agent" else [],
        "statuses": STATUSES,
        "csat": csat.latest(session, ticket.id),  # the customer's rating of the latest rated solve (issue 9)
        "priorities": PRIORITIES,
        "snooze_hours": SNOOZE_HOURS,
        "reply_identity_id": _last_inbound_identity(session, ticket),
        "reply_by_email": widget_offline.email_route(session, ticket, None),
        "canned": [
            (r.title, canned.render(r.body, contact=contact, agent=me(), ticket=ticket), r.owner_id is not None)
            for r in canned.visible(session, me())
        ],
    }


def _last_inbound_identity(session: Session, ticket: Ticket) -> int | None:
    """The composer's default channel: where the customer last wrote on this ticket (as lifecycle.reply does)."""
    return session.scalar(
        select(Message.identity_id)
        .where(Message.ticket_id == ticket.id, Message.direction == "inbound", Message.identity_id.is_not(None))
        .order_by(Message.id.desc())
        .limit(1)
    )


@bp.post("/<int:ticket_id>/reply")
@login_required
def reply(ticket_id: int) -> ResponseReturnValue:
    ticket = visible_ticket(ticket_id)
    session = get_session()
    status = request.form.get("status") or None
    settings = session.info.get("settings")
    identity_id = request.form.get("identity_id", type=int)
    # A website visitor who left gets the answer by email, through the widget's linked email inbox.
    by_email = widget_offline.email_route(session, ticket, identity_id)
    message = lifecycle.reply(
        session,
        ticket,
        request.form.get("text", ""),
        by=me().id,
        identity_id=by_email.identity_id if by_email else identity_id,
        new_status=status if status in STATUSES else None,
        mail_domain=settings.mail_domain if settings else "helpline.local",
        inbox_id=by_email.inbox_id if by_email else None,
    )
    files = tuple(
        InboundAttachment(f.filename or "attachment", f.mimetype or "application/octet-stream", f.read())
        for f in request.files.getlist("files")
        if f.filename
    )
    if by_email is not None and by_email.visitor:
        message.meta = dict(message.meta or {}) | {"webchat_visitor": by_email.visitor}
    store_attachments(session, message, files)  # the worker sends what is stored with the message
    session.commit()
    jobs.enqueue_delivery(message.id)  # after the commit: a worker must find the row
    if by_email is not None:
        flash(f"Your reply goes by email to {by_email.address} (through the chat's linked email inbox).", "info")
    return redirect(url_for(".show", ticket_id=ticket.id))


@bp.post("/<int:ticket_id>/note")
@login_required
def note(ticket_id: int) -> ResponseReturnValue:
    ticket = visible_ticket(ticket_id)
    lifecycle.add_note(get_session(), ticket, request.form.get("text", ""), by=me().id)
    return _done(ticket)


@bp.post("/<int:ticket_id>/status")
@login_required
def status(ticket_id: int) -> ResponseReturnValue:
    ticket = visible_ticket(ticket_id)
    lifecycle.set_status(get_session(), ticket, request.form.get("status", ""), by=me().id)
    return _done(ticket)


@bp.post("/<int:ticket_id>/priority")
@login_required
def priority(ticket_id: int) -> ResponseReturnValue:
    ticket = visible_ticket(ticket_id)
    lifecycle.set_priority(get_session(), ticket, request.form.get("priority", ""), by=me().id)
    return _done(ticket)


@bp.post("/<int:ticket_id>/assign")
@login_required
def assign(ticket_id: int) -> ResponseReturnValue:
    ticket = visible_ticket(ticket_id)
    session = get_session()
    raw = request.form.get("agent_id", "")
    agent_id = me().id if raw == "me" else int(raw) if raw.isdigit() else None
    if agent_id is not None:
        agent = session.get(User, agent_id)
        # An assignee who cannot open the ticket would get its events in their agent room: refuse.
        if agent is None or not can_be_assigned(session, agent, ticket.inbox_id):
            raise InvalidChange("that user cannot see this inbox")
    lifecycle.assign(session, ticket, agent_id, by=me().id)
    return _done(ticket)


@bp.post("/<int:ticket_id>/team")
@login_required
def team(ticket_id: int) -> ResponseReturnValue:
    ticket = visible_ticket(ticket_id)
    if me().role == "agent":
        abort(403)
    lifecycle.set_team(get_session(), ticket, request.form.get("team_id", type=int), by=me().id)
    return _done(ticket)


@bp.post("/<int:ticket_id>/tags")
@login_required
def add_tag(ticket_id: int) -> ResponseReturnValue:
    ticket = visible_ticket(ticket_id)
    lifecycle.add_tag(get_session(), ticket, request.form.get("name", ""), by=me().id)
    return _done(ticket)


@bp.post("/<int:ticket_id>/tags/remove")
@login_required
def remove_tag(ticket_id: int) -> ResponseReturnValue:
    ticket = visible_ticket(ticket_id)
    lifecycle.remove_tag(get_session(), ticket, request.form.get("name", ""), by=me().id)
    return _done(ticket)


@bp.post("/<int:ticket_id>/snooze")
@login_required
def snooze(ticket_id: int) -> ResponseReturnValue:
    ticket = visible_ticket(ticket_id)
    hours = request.form.get("hours", type=int)
    if hours not in SNOOZE_HOURS:
        raise InvalidChange("choose how long to snooze")
    lifecycle.snooze(get_session(), ticket, utcnow() + dt.timedelta(hours=hours), by=me().id)
    return _done(ticket)


@bp.post("/<int:ticket_id>/merge")
@login_required
def merge(ticket_id: int) -> ResponseReturnValue:
    """Merge this ticket into another one the user can also see."""
    source = visible_ticket(ticket_id)
    target_id = request.form.get("into", "").strip().lstrip("#")
    if not target_id.isdigit():
        raise InvalidChange("give the number of the ticket to merge into")
    target = visible_ticket(int(target_id))
    lifecycle.merge_tickets(get_session(), source, target, by=me().id)
    return _done(target)


from web import message_actions  # noqa: E402, F401  (split/move and Instagram routes on this blueprint)
