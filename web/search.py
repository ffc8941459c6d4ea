"""Search: full text over subjects and messages (SQLite FTS5, PostgreSQL tsvector), plus contact names and
handles, with filters by status, inbox, assignee and date. Results are tickets the user may see.

The indexes come from migration 0900_search; the PostgreSQL expression here must stay identical to the indexed
one, or the planner falls back to a scan.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping

from flask import Blueprint, render_template, request
from flask.typing import ResponseReturnValue
from flask_login import login_required
from sqlalchemy import literal_column, or_, select, text
from sqlalchemy.orm import Session, selectinload

from inbox.db import utcnow
from inbox.models import OPEN_STATUSES, STATUSES, Contact, Identity, Inbox, Message, Ticket, User
from tickets.sla import sla_statuses
from web import access
from web.auth import me
from web.db import get_session
from web.folders import ListPage
from web.people import assignable_users

bp = Blueprint("search", __name__)
LIMIT = 50
MAX_TERMS = 12
MAX_HITS = 2000  # newest matching messages (and contacts) considered: "the 50 latest of many" needs no more
PG_DOCUMENT = "to_tsvector('simple', coalesce(message.subject, '') || ' ' || coalesce(message.body_text, ''))"
_WORD = re.compile(r"\w[\w@.+'-]*", re.UNICODE)


def fts5_query(q: str) -> str:
    """User words as FTS5 phrase strings, the last one a prefix: no FTS5 syntax reaches the engine."""
    words = _WORD.findall(q)[:MAX_TERMS]
    if not words:
        return ""
    quoted = ['"' + w.replace('"', '""') + '"' for w in words]
    quoted[-1] += "*"
    return " ".join(quoted)


def pg_tsquery(q: str) -> str:
    """The same words as a PostgreSQL tsquery: quoted lexemes joined by AND, the last one a prefix."""
    words = _WORD.findall(q)[:MAX_TERMS]
    if not words:
        return ""
    quoted = ["'" + w.replace("'", "''") + "'" for w in words]
    quoted[-1] += ":*"
    return " & ".join(quoted)


def _matching_tickets(session: Session, q: str) -> set[int]:
    """Tickets of the newest ``MAX_HITS`` matching messages: the index answers, then primary-key lookups."""
    if session.get_bind().dialect.name == "postgresql":
        if not (tsquery := pg_tsquery(q)):
            return set()
        hits = (
            select(Message.id)
            .where(text(f"{PG_DOCUMENT} @@ to_tsquery('simple', :q)").bindparams(q=tsquery))
            # "+ 0": ordering by the primary key would tempt the planner to walk all messages newest first,
            # computing every tsvector, instead of asking the GIN index; a rare word then takes seconds.
            .order_by((Message.id + 0).desc())
            .limit(MAX_HITS)
        )
    else:
        if not (match := fts5_query(q)):
            return set()
        hits = (
            select(literal_column("rowid"))
            .select_from(text("message_fts"))
            .where(text("message_fts MATCH :m").bindparams(m=match))
            .order_by(literal_column("rowid").desc())
            .limit(MAX_HITS)
        )
    message_ids = list(session.scalars(hits))
    if not message_ids:
        return set()
    return set(session.scalars(select(Message.ticket_id).where(Message.id.in_(message_ids)).distinct()))


def _matching_contacts(session: Session, q: str) -> list[int]:
    """Contacts by a piece of their name or of an address/handle (a scan, but of the smallest tables)."""
    if len(q) < 2:
        return []
    like = "%" + q.replace("\\", "").replace("%", "").replace("_", "") + "%"
    by_handle = select(Identity.contact_id).where(Identity.handle.ilike(like))
    found = select(Contact.id).where(or_(Contact.name.ilike(like), Contact.id.in_(by_handle))).limit(MAX_HITS)
    return list(session.scalars(found))


def _date(raw: str | None, *, end: bool = False) -> dt.datetime | None:
    try:
        day = dt.date.fromisoformat(raw or "")
    except ValueError:
        return None
    start = dt.datetime.combine(day, dt.time(), dt.UTC)
    return start + dt.timedelta(days=1) if end else start


def search_tickets(session: Session, user: User, q: str, args: Mapping[str, str]) -> list[Ticket]:
    """Tickets whose messages or contact match ``q``, newest activity first, within the user's inboxes."""
    ids = access.visible_inbox_ids(session, user)
    stmt = access.restrict_tickets(select(Ticket).where(Ticket.merged_into_id.is_(None)), ids)
    q = q.strip()
    if q:
        # Candidates first, as id lists: an OR of subqueries would make the planner scan every ticket.
        tickets, contacts = _matching_tickets(session, q), _matching_contacts(session, q)
        conditions = [Ticket.id.in_(sorted(tickets))] if tickets else []
        conditions += [Ticket.contact_id.in_(contacts)] if contacts else []
        if not conditions:
            return []
        stmt = stmt.where(or_(*conditions))
    if (status := args.get("status")) in STATUSES:
        stmt = stmt.where(Ticket.status == status)
    if (inbox := args.get("inbox", "")).isdigit():
        stmt = stmt.where(Ticket.inbox_id == int(inbox))
    assignee = args.get("assignee", "")
    if assignee == "me":
        stmt = stmt.where(Ticket.assignee_id == user.id)
    elif assignee == "none":
        stmt = stmt.where(Ticket.assignee_id.is_(None))
    elif assignee.isdigit():
        stmt = stmt.where(Ticket.assignee_id == int(assignee))
    if (since := _date(args.get("since"))) is not None:
        stmt = stmt.where(Ticket.last_activity_at >= since)
    if (until := _date(args.get("until"), end=True)) is not None:
        stmt = stmt.where(Ticket.last_activity_at < until)
    stmt = stmt.options(selectinload(Ticket.contact), selectinload(Ticket.assignee), selectinload(Ticket.tags))
    return list(session.scalars(stmt.order_by(Ticket.last_activity_at.desc(), Ticket.id.desc()).limit(LIMIT)))


@bp.get("/search")
@login_required
def search() -> ResponseReturnValue:
    session = get_session()
    q = request.args.get("q", "")
    asked = bool(q.strip()) or any(request.args.get(k) for k in ("status", "inbox", "assignee", "since", "until"))
    results = search_tickets(session, me(), q, request.args) if asked else []
    ids = access.visible_inbox_ids(session, me())
    inboxes = access.restrict_inboxes(select(Inbox).order_by(Inbox.name), ids)
    # Archived inboxes leave the filter (their tickets are still found), unless this search already uses one.
    archived = access.archived_inbox_ids(session) - {request.args.get("inbox", type=int)}
    badges = sla_statuses(session, [t.id for t in results if t.status in OPEN_STATUSES], utcnow()) if results else {}
    return render_template(
        "search.html",
        q=q,
        asked=asked,
        page=ListPage(results, None, badges),
        statuses=STATUSES,
        inboxes=[i for i in session.scalars(inboxes) if i.id not in archived],
        agents=assignable_users(session, me(), ids),
        total=len(results),
        limit=LIMIT,
    )
