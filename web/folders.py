"""Inbox folders and the ticket list query: what each folder holds, counts, filters and keyset paging.

Paging is by keyset on (last_activity_at, id), never OFFSET, so page 500 costs what page 1 does. A folder spans
several statuses and inboxes, and no single index orders such a set by activity; so the list is one small
ordered, limited scan per (inbox, status) over ``ix_ticket_inbox_status_activity``, merged by UNION ALL. Each scan
reads at most a page of index entries, however many tickets there are.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, Select, func, or_, select, union_all
from sqlalchemy.orm import Session, selectinload

from inbox.db import utcnow
from inbox.models import CHANNELS, OPEN_STATUSES, PRIORITIES, Inbox, Tag, Ticket, TicketTag, User
from tickets.sla import SlaStatus, sla_statuses
from web import access

ACTIVE = ("new", "open", "pending")  # what "open" means in the folders: snoozed and solved have their own
PAGE_SIZE = 50
COUNT_CAP = 1000  # folder counts that need table rows stop here and show "1000+"
MAX_SCANS = 300  # beyond this many (inbox, status) pairs one plain query is cheaper to plan


@dataclass(frozen=True)
class Folder:
    key: str
    label: str
    count: int


@dataclass(frozen=True)
class ListPage:
    tickets: list[Ticket]
    next_cursor: str | None
    sla: dict[int, SlaStatus | None] = field(default_factory=dict)  # the SLA badge of each listed ticket


@dataclass(frozen=True)
class Spec:
    """What a folder holds: these statuses, these extra conditions, optionally one inbox."""

    statuses: tuple[str, ...]
    where: tuple[ColumnElement[bool], ...] = field(default=())
    inbox_id: int | None = None


def folder_spec(key: str, user_id: int) -> Spec | None:
    """The folder ``key``; None for an unknown one."""
    simple = {
        "unassigned": Spec(ACTIVE, (Ticket.assignee_id.is_(None),)),
        "mine": Spec(ACTIVE, (Ticket.assignee_id == user_id,)),
        "open": Spec(ACTIVE),
        "pending": Spec(("pending",)),
        "snoozed": Spec(("snoozed",)),
        "solved": Spec(("solved",)),  # closed tickets are found by search; they would drown this list
    }
    if key in simple:
        return simple[key]
    kind, _, value = key.partition(":")
    if kind == "inbox" and value.isdigit():
        return Spec(ACTIVE, inbox_id=int(value))
    if kind == "tag" and value:
        tagged = select(TicketTag.ticket_id).join(Tag, Tag.id == TicketTag.tag_id).where(Tag.name == value)
        return Spec(ACTIVE, (Ticket.id.in_(tagged),))
    return None


def filter_conditions(args: Mapping[str, str], user_id: int) -> list[ColumnElement[bool]]:
    """Filters from the query string; unknown values are ignored rather than erroring a bookmarked URL."""
    out: list[ColumnElement[bool]] = []
    if (priority := args.get("priority")) in PRIORITIES:
        out.append(Ticket.priority == priority)
    if (channel := args.get("channel")) in CHANNELS:
        out.append(Ticket.channel == channel)
    assignee = args.get("assignee", "")
    if assignee == "me":
        out.append(Ticket.assignee_id == user_id)
    elif assignee == "none":
        out.append(Ticket.assignee_id.is_(None))
    elif assignee.isdigit():
        out.append(Ticket.assignee_id == int(assignee))
    return out


def encode_cursor(ticket: Ticket) -> str:
    return f"{ticket.last_activity_at.timestamp():.6f}_{ticket.id}"


def decode_cursor(raw: str | None) -> tuple[dt.datetime, int] | None:
    if not raw:
        return None
    stamp, _, ident = raw.partition("_")
    try:
        return dt.datetime.fromtimestamp(float(stamp), dt.UTC), int(ident)
    except (ValueError, OverflowError, OSError):
        return None


def _after(cursor: str | None) -> list[ColumnElement[bool]]:
    if (after := decode_cursor(cursor)) is None:
        return []
    at, ident = after
    # "<= at" first, so the index range applies; the OR only breaks ties within one timestamp.
    return [Ticket.last_activity_at <= at, or_(Ticket.last_activity_at < at, Ticket.id < ident)]


def _scan_inboxes(spec: Spec, visible: set[int] | None) -> list[int | None]:
    if spec.inbox_id is not None:
        return [spec.inbox_id] if visible is None or spec.inbox_id in visible else []
    return [None] if visible is None else sorted(visible)


def _page_ids(session: Session, spec: Spec, visible: set[int] | None, conds: list[ColumnElement[bool]]) -> list[int]:
    newest = (Ticket.last_activity_at.desc(), Ticket.id.desc())
    inboxes = _scan_inboxes(spec, visible)
    if len(inboxes) * len(spec.statuses) > MAX_SCANS:
        stmt = select(Ticket.id).where(Ticket.status.in_(spec.statuses), Ticket.inbox_id.in_(inboxes), *conds)
        return list(session.scalars(stmt.order_by(*newest).limit(PAGE_SIZE + 1)))
    scans = []
    for inbox_id in inboxes:
        for status in spec.statuses:
            scan = select(Ticket.id, Ticket.last_activity_at).where(Ticket.status == status, *conds)
            if inbox_id is not None:
                scan = scan.where(Ticket.inbox_id == inbox_id)
            scans.append(select(scan.order_by(*newest).limit(PAGE_SIZE + 1).subquery()))
    if not scans:
        return []
    merged = union_all(*scans).subquery()
    stmt = select(merged.c.id).order_by(merged.c.last_activity_at.desc(), merged.c.id.desc()).limit(PAGE_SIZE + 1)
    return list(session.scalars(stmt))


def list_page(
    session: Session, user: User, key: str, args: Mapping[str, str], cursor: str | None = None
) -> ListPage | None:
    """One page of folder ``key`` for ``user``, newest activity first; None for an unknown folder."""
    spec = folder_spec(key, user.id)
    if spec is None:
        return None
    conds = [Ticket.merged_into_id.is_(None), *spec.where, *filter_conditions(args, user.id), *_after(cursor)]
    ids = _page_ids(session, spec, access.visible_inbox_ids(session, user), conds)
    more = len(ids) > PAGE_SIZE
    ids = ids[:PAGE_SIZE]
    options = (selectinload(Ticket.contact), selectinload(Ticket.assignee), selectinload(Ticket.tags))
    found = {t.id: t for t in session.scalars(select(Ticket).where(Ticket.id.in_(ids)).options(*options))}
    rows = [found[i] for i in ids if i in found]
    # One batch for the page (a few queries whatever its length), from the same clocks the SLA sweep uses.
    badges = sla_statuses(session, [t.id for t in rows if t.status in OPEN_STATUSES], utcnow()) if rows else {}
    return ListPage(rows, encode_cursor(rows[-1]) if more and rows else None, badges)


def _restrict(stmt: Select[tuple[int]], ids: set[int] | None) -> Select[tuple[int]]:
    return stmt if ids is None else stmt.where(Ticket.inbox_id.in_(ids))


def folders(session: Session, user: User) -> list[Folder]:
    """Every folder with its count. Counts read index entries only: statuses that folders show, never 'closed'
    (most of a mature helpdesk), so they stay cheap as history grows."""
    ids = access.visible_inbox_ids(session, user)
    per: dict[tuple[int, str], int] = {}
    counted = (*ACTIVE, "snoozed", "solved")
    grouped = select(Ticket.inbox_id, Ticket.status, func.count()).where(Ticket.status.in_(counted))
    for inbox_id, status, n in session.execute(_restrict(grouped, ids).group_by(Ticket.inbox_id, Ticket.status)):
        per[(inbox_id, status)] = n

    def total(statuses: tuple[str, ...], inbox_id: int | None = None) -> int:
        return sum(n for (i, s), n in per.items() if s in statuses and inbox_id in (None, i))

    def count(*where: ColumnElement[bool]) -> int:
        # Capped: these read table rows (assignee is not in the inbox index); "1000+" is all a folder needs.
        rows = _restrict(select(Ticket.id).where(Ticket.status.in_(ACTIVE), *where), ids).limit(COUNT_CAP)
        return int(session.scalar(select(func.count()).select_from(rows.subquery())) or 0)

    out = [
        Folder("unassigned", "Unassigned", count(Ticket.assignee_id.is_(None))),
        Folder("mine", "Mine", count(Ticket.assignee_id == user.id)),
        Folder("open", "All open", total(ACTIVE)),
        Folder("pending", "Pending", total(("pending",))),
        Folder("snoozed", "Snoozed", total(("snoozed",))),
        Folder("solved", "Solved", total(("solved",))),
    ]
    inboxes = select(Inbox.id, Inbox.name).order_by(Inbox.name)
    if ids is not None:
        inboxes = inboxes.where(Inbox.id.in_(ids))
    archived = access.archived_inbox_ids(session)  # their tickets stay reachable by URL, search and other folders
    out += [Folder(f"inbox:{i}", name, total(ACTIVE, i)) for i, name in session.execute(inboxes) if i not in archived]
    tags = _restrict(
        select(Tag.name, func.count(Ticket.id))
        .join(TicketTag, TicketTag.tag_id == Tag.id)
        .join(Ticket, Ticket.id == TicketTag.ticket_id)
        .where(Ticket.status.in_(ACTIVE))
        .group_by(Tag.name)
        .order_by(Tag.name),
        ids,
    )
    out += [Folder(f"tag:{name}", f"#{name}", n) for name, n in session.execute(tags)]
    return out
