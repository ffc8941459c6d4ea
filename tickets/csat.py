"""Customer satisfaction: a one-question survey after a solve, answered through a signed, expiring link.

When a ticket is solved and the workspace setting ``csat_enabled`` is on, the commit that solves it also sends
the survey. Web-chat tickets are asked in the chat widget (``ask_in_chat``: a ``csat:ask`` event to the visitor's
room, and again each time the widget connects until the solve is rated or the survey expires; the widget rates
through ``web.widget_csat``, which checks that the visitor wrote on the ticket, then calls ``rate``). Email
tickets get an automatic outbound message (``is_auto``, so it goes out with
``Auto-Submitted: auto-generated`` and never counts as an agent reply) through the normal outbox, with links to
``/rate/<token>``. The token is signed with the app's secret key and names the ticket and the solve; it expires
after ``LINK_DAYS``. A rating (1-5, optional comment) is stored once per solve (changing it replaces it), audited
on the ticket, and becomes a ``csat`` sample of the report summary (``tickets.summary``): the score, attributed
to the assignee and team at the solve, in the period in which it was first given.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets as pysecrets
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import event, select
from sqlalchemy.orm import Session, UOWTransaction

from inbox import audit, events, workspace
from inbox.db import utcnow
from inbox.models import Identity, Message, Ticket, TicketEvent
from inbox.report_models import CsatRating

log = logging.getLogger(__name__)

SETTING = "csat_enabled"
LINK_DAYS = 14
SATISFIED = 4  # a score of 4 or 5 counts as satisfied
MAX_COMMENT = 2000
_SOLVED = "csat_solved"
DONE = ("solved", "closed")
WIDGET_EVENT = "csat:ask"  # to the visitor's room on the /widget namespace: {"ticket_id", "survey": token}
WIDGET_NAMESPACE = "/widget"  # connectors.webchat.NAMESPACE (tickets/ does not import connectors/)


class BadLink(ValueError):
    """The rating link is not one of ours, or it expired."""


def _serializer(secret_key: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key, salt="helpline-csat")


def make_token(secret_key: str, ticket_id: int, solved_at: dt.datetime) -> str:
    return _serializer(secret_key).dumps({"t": ticket_id, "s": solved_at.astimezone(dt.UTC).isoformat()})


def read_token(secret_key: str, token: str, max_age: int = LINK_DAYS * 86400) -> tuple[int, dt.datetime]:
    """The ticket id and solve instant a link names; ``BadLink`` when forged, mangled or expired."""
    try:
        data = _serializer(secret_key).loads(token, max_age=max_age)
        return int(data["t"]), dt.datetime.fromisoformat(str(data["s"]))
    except SignatureExpired as exc:
        raise BadLink("This rating link has expired.") from exc
    except (BadSignature, KeyError, TypeError, ValueError) as exc:
        raise BadLink("This rating link is not valid.") from exc


def enabled(session: Session) -> bool:
    return bool(workspace.get_setting(session, SETTING, False))


def render_survey(ticket: Ticket, url: str) -> tuple[str, str]:
    """Text and HTML bodies: one link per score, so one click answers (the page then asks for a comment)."""
    text = (
        f"Your request #{ticket.id} ({ticket.subject}) has been solved.\n\n"
        "How satisfied are you with the help you got? Choose a score from 1 (not at all) to 5 (very):\n\n"
        + "\n".join(f"{n}: {url}?score={n}" for n in range(5, 0, -1))
        + f"\n\nThe link is valid for {LINK_DAYS} days. Replying to this email reopens your request."
    )
    links = " ".join(
        f'<a href="{url}?score={n}" style="padding:6px 10px;border:1px solid #888;text-decoration:none">{n}</a>'
        for n in range(1, 6)
    )
    html = (
        f"<p>Your request #{ticket.id} has been solved.</p>"
        "<p>How satisfied are you with the help you got? 1 = not at all, 5 = very.</p>"
        f"<p>{links}</p><p><small>The link is valid for {LINK_DAYS} days.</small></p>"
    )
    return text, html


def queue_survey(
    session: Session, ticket: Ticket, solved_at: dt.datetime, *, secret_key: str, base_url: str, mail_domain: str
) -> Message | None:
    """Queue the survey email of one solve (email tickets only; once per solve). Flushes."""
    sent = session.scalars(
        select(TicketEvent.data).where(TicketEvent.ticket_id == ticket.id, TicketEvent.kind == "csat_sent")
    )
    if any(d.get("solved_at") == solved_at.isoformat() for d in sent):
        return None
    identity_id = session.scalar(
        select(Message.identity_id)
        .where(Message.ticket_id == ticket.id, Message.direction == "inbound", Message.identity_id.is_not(None))
        .order_by(Message.id.desc())
        .limit(1)
    )
    identity = session.get(Identity, identity_id) if identity_id is not None else None
    if identity is None or identity.channel != "email":
        return None  # the widget asks in the chat; other channels get no survey
    url = f"{base_url.rstrip('/')}/rate/{make_token(secret_key, ticket.id, solved_at)}"
    text, html = render_survey(ticket, url)
    now = utcnow()
    message = Message(
        ticket_id=ticket.id,
        inbox_id=ticket.inbox_id,
        contact_id=ticket.contact_id,
        identity_id=identity.id,
        direction="outbound",
        channel="email",
        body_text=text,
        body_html=html,
        subject=ticket.subject,
        created_at=now,
        delivery_state="queued",
        thread_reason="satisfaction survey",
        next_attempt_at=now,
        is_auto=True,  # Auto-Submitted: auto-generated; never an agent reply in the reports
    )
    session.add(message)
    session.flush()
    message.message_id_header = f"<ticket-{ticket.id}.{message.id}.{pysecrets.token_hex(4)}@{mail_domain}>"
    message.external_id = f"out:{message.id}"
    audit.log(session, ticket, "csat_sent", data={"solved_at": solved_at.isoformat(), "message_id": message.id})
    return message


def rate(session: Session, ticket: Ticket, solved_at: dt.datetime, score: int, comment: str) -> CsatRating:
    """Store (or replace) the rating of one solve, and audit it on the ticket. Flushes."""
    if not 1 <= score <= 5:
        raise ValueError("Choose a score from 1 to 5.")
    comment = comment.strip()
    if len(comment) > MAX_COMMENT:
        raise ValueError(f"A comment has at most {MAX_COMMENT} characters.")
    row = session.scalar(select(CsatRating).where(CsatRating.ticket_id == ticket.id, CsatRating.solved_at == solved_at))
    if row is None:
        row = CsatRating(ticket_id=ticket.id, solved_at=solved_at, score=score, comment=comment)
        session.add(row)
    else:
        row.score, row.comment, row.updated_at = score, comment, utcnow()
    session.flush()
    audit.log(session, ticket, "csat_rated", data={"score": score, "comment": comment[:200]})
    return row


def current_solve(session: Session, ticket: Ticket) -> dt.datetime | None:
    """The solve a done (solved or closed) ticket is in: the instant of its last move to ``solved`` since it was
    last reopened (the ``solved_at`` the survey of that solve names). None for an open ticket, or one closed
    without a solve."""
    if ticket.status not in DONE or ticket.merged_into_id is not None:
        return None
    solve: dt.datetime | None = None
    changes = session.execute(
        select(TicketEvent.data, TicketEvent.created_at)
        .where(TicketEvent.ticket_id == ticket.id, TicketEvent.kind == "status")
        .order_by(TicketEvent.id)
    )
    for data, at in changes:
        data = data or {}
        if data.get("to") == "solved" and data.get("from") not in DONE:
            solve = at
        elif data.get("to") not in DONE:
            solve = None  # reopened: a later solve asks again
    return solve


def expired(solved_at: dt.datetime, now: dt.datetime | None = None) -> bool:
    """A survey is open for ``LINK_DAYS`` after its solve, in the chat as by the email link."""
    return (now or utcnow()) - solved_at > dt.timedelta(days=LINK_DAYS)


def surveyed(session: Session, ticket_id: int, solved_at: dt.datetime) -> bool:
    """Whether the commit of that solve sent its survey (by email or in the chat): the switch was on then."""
    sent = session.scalars(
        select(TicketEvent.data).where(TicketEvent.ticket_id == ticket_id, TicketEvent.kind == "csat_sent")
    )
    return any((d or {}).get("solved_at") == solved_at.isoformat() for d in sent)


def rating_of(session: Session, ticket_id: int, solved_at: dt.datetime) -> CsatRating | None:
    """The rating of one solve, if the customer gave one."""
    stmt = select(CsatRating).where(CsatRating.ticket_id == ticket_id, CsatRating.solved_at == solved_at)
    return session.scalar(stmt)


def chat_visitors(session: Session, ticket: Ticket) -> list[str]:
    """The web-chat visitor ids (identity handles) that wrote on this ticket in its own (web-chat) inbox: the
    visitors whose widget may show and rate its survey."""
    if ticket.channel != "webchat":
        return []
    return sorted(
        session.scalars(
            select(Identity.handle)
            .join(Message, Message.identity_id == Identity.id)
            .where(
                Message.ticket_id == ticket.id,
                Message.inbox_id == ticket.inbox_id,
                Message.direction == "inbound",
                Identity.channel == "webchat",
            )
            .distinct()
        )
    )


def ask_in_chat(session: Session, ticket: Ticket, solved_at: dt.datetime, *, secret_key: str) -> bool:
    """Ask the survey of one solve of a web-chat ticket in its visitors' widgets (live if they are connected;
    ``chat_survey`` asks again when they come back). Recorded as ``csat_sent`` ``via`` webchat. Flushes.

    False for a ticket of another channel. A web-chat ticket never gets the survey email, even when the visitor
    answered an offline reply by email: the address was typed, not verified, and the widget asks on return."""
    visitors = chat_visitors(session, ticket)
    if not visitors:
        return False
    if surveyed(session, ticket.id, solved_at):
        return True
    audit.log(session, ticket, "csat_sent", data={"solved_at": solved_at.isoformat(), "via": "webchat"})
    payload = {"ticket_id": ticket.id, "survey": make_token(secret_key, ticket.id, solved_at)}
    for handle in visitors:
        events.record(session, WIDGET_EVENT, f"visitor:{handle}", payload, namespace=WIDGET_NAMESPACE)
    return True


def chat_survey(session: Session, inbox_id: int, visitor_id: str) -> tuple[Ticket, dt.datetime] | None:
    """The survey a web-chat visitor's widget shows when it connects: about the visitor's newest ticket on this
    inbox, if it is solved (or closed after a solve), its survey was sent, it is unrated and not expired."""
    ticket = session.scalar(
        select(Ticket)
        .join(Message, Message.ticket_id == Ticket.id)
        .join(Identity, Message.identity_id == Identity.id)
        .where(
            Ticket.inbox_id == inbox_id,
            Message.inbox_id == inbox_id,
            Message.direction == "inbound",
            Identity.channel == "webchat",
            Identity.handle == visitor_id,
        )
        .order_by(Ticket.id.desc())
        .limit(1)
    )
    if ticket is None or not enabled(session):
        return None
    solved_at = current_solve(session, ticket)
    if solved_at is None or expired(solved_at) or not surveyed(session, ticket.id, solved_at):
        return None
    if rating_of(session, ticket.id, solved_at) is not None:
        return None
    return ticket, solved_at


def latest(session: Session, ticket_id: int) -> CsatRating | None:
    """The rating of the ticket's latest rated solve, for the ticket page."""
    return session.scalar(
        select(CsatRating).where(CsatRating.ticket_id == ticket_id).order_by(CsatRating.solved_at.desc()).limit(1)
    )


# -- sent from the commit that solves ---------------------------------------------------------------------------------
@event.listens_for(Session, "after_flush")
def _note_solves(session: Session, _flush: UOWTransaction) -> None:
    for obj in session.new:
        if isinstance(obj, TicketEvent) and obj.kind == "status":
            data: dict[str, Any] = obj.data or {}
            if data.get("to") == "solved" and data.get("from") not in ("solved", "closed"):
                session.info.setdefault(_SOLVED, []).append((obj.ticket_id, obj.created_at))


@event.listens_for(Session, "before_commit")
def _send_surveys(session: Session) -> None:
    if session.in_nested_transaction():
        return
    session.flush()
    solves = session.info.pop(_SOLVED, [])
    settings = session.info.get("settings")
    if not solves or settings is None or not enabled(session):
        return
    for ticket_id, solved_at in solves:
        ticket = session.get(Ticket, ticket_id)
        if ticket is None or ticket.merged_into_id is not None:
            continue
        if ask_in_chat(session, ticket, solved_at, secret_key=settings.secret_key):
            continue  # a web-chat visitor is asked in the widget, not by email
        queue_survey(
            session,
            ticket,
            solved_at,
            secret_key=settings.secret_key,
            base_url=settings.base_url,
            mail_domain=settings.mail_domain,
        )
    session.info.pop(_SOLVED, None)


@event.listens_for(Session, "after_soft_rollback")
def _forget(session: Session, previous: Any) -> None:
    if not previous.nested:
        session.info.pop(_SOLVED, None)
