"""Report figures rebuilt from the recorded history: messages and ``ticket_event`` rows, never current fields.

Definitions (also on the report pages and in docs/reports.md):

- A *customer message* is an inbound message not marked automatic; its time is when it was sent, or when it
  reached Helpline if that is earlier (clocks lie), as ingestion records it.
- An *agent reply* is an outbound message with an author that is not marked automatic; notes never count. A
  reply the agent posted by hand on the channel and recorded in Helpline (delivery state ``manual``, Instagram
  without the Graph API) is a public reply like any other; ``tickets.lifecycle.reply`` sets the ticket's clocks
  the same way for both.
- A *wait* starts at a customer message when nobody is waiting yet, and ends at the next agent reply (a
  response) or when the ticket is solved or closed (no response: the customer got nothing to wait for).
- *First response time*: the first wait of a ticket that ended in a reply. A ticket solved before anyone
  replied has none; its later waits are next responses.
- *Next response time*: every later wait that ended in a reply.
- *Resolution time*: from creation to solved (or closed straight from an open status); after a reopening,
  from the reopening to the next solve, counted again.
- *Backlog* at an instant: tickets created by then whose status at that instant (from the status events) was
  new, open, pending or snoozed; age = instant - creation.
- Every duration is given in calendar seconds and in business seconds of the inbox's calendar
  (``tickets.business_hours``).
- A figure belongs to the period, day, week or month in which it *ended* (the reply, the solve), so a closed
  month never changes. It is attributed to the team and assignee the ticket had at that moment (rebuilt from the
  "team"/"assignee" events), to the reply's author for responses, and to the ticket's inbox and channel.
- Median and 90th percentile are nearest-rank: the smallest sample with at least 50 % (90 %) of the samples at or
  below it, so each is the time of one real ticket, listed in the drill-down.
- Merged-away tickets (``merged_into_id`` set) are left out: their messages now belong to the ticket they joined.

``Report`` loads the history once per request; each figure has ONE method, used by every card, chart, table and
CSV, and returns the samples behind it (the drill-down).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Select, func, or_, select, union
from sqlalchemy.orm import Session

from inbox.models import OPEN_STATUSES, Message, Ticket, TicketEvent
from tickets.business_hours import Calendars, business_seconds, load_calendars

DONE = ("solved", "closed")
CUSTOMER, REPLY, STATUS = 0, 1, 2  # also the order of points at the same instant
FIGURES = ("created", "solved", "first_response", "next_response", "resolution", "replies", "backlog")
GROUPINGS = ("day", "week", "month", "agent", "team", "inbox", "channel")
CHUNK = 900  # ids per IN list (SQLite allows 32766 variables; PostgreSQL more)


@dataclass(frozen=True)
class Filters:
    """A report's period [start, end) and filters; ``inbox_ids`` None = every inbox (admins)."""

    start: dt.datetime
    end: dt.datetime
    inbox_ids: frozenset[int] | None = None
    team_id: int | None = None
    channel: str | None = None
    agent_id: int | None = None
    tz: str = "UTC"  # the zone whose days, weeks (Monday first) and months group figures


@dataclass(frozen=True)
class Point:
    at: dt.datetime
    kind: int  # CUSTOMER, REPLY or STATUS
    seq: int  # message or event id: a stable order within one instant and kind
    actor_id: int | None = None
    before: str | None = None  # STATUS: from
    after: str | None = None  # STATUS: to


@dataclass
class Timeline:
    """One ticket's history as far as the figures need it."""

    ticket_id: int
    inbox_id: int
    channel: str
    created_at: dt.datetime
    team_now: int | None
    assignee_now: int | None
    priority: str = "normal"  # current: SLA policies match on it
    status_now: str | None = None  # current: ``Report.backlog`` trusts it after the last status change
    points: list[Point] = field(default_factory=list)
    team_changes: list[tuple[dt.datetime, Any, Any]] = field(default_factory=list)
    assignee_changes: list[tuple[dt.datetime, Any, Any]] = field(default_factory=list)
    memo: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)  # waits, periods: once each

    def team_at(self, at: dt.datetime) -> int | None:
        return _value_at(self.team_changes, self.team_now, at)

    def assignee_at(self, at: dt.datetime) -> int | None:
        return _value_at(self.assignee_changes, self.assignee_now, at)

    def status_at(self, at: dt.datetime) -> str:
        status = "new"
        for p in self.points:
            if p.at > at:
                break
            if p.kind == STATUS and p.after is not None:
                status = p.after
        return status


def _value_at(changes: Sequence[tuple[dt.datetime, Any, Any]], now_value: int | None, at: dt.datetime) -> int | None:
    """The value at ``at``: the last change's "to" up to then, else the first later change's "from", else now's."""
    value: Any = None
    seen = False
    for when, before, after in changes:
        if when > at:
            return _int(value) if seen else _int(before)
        value, seen = after, True
    return _int(value) if seen else now_value


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class Wait:
    """A customer waiting: from ``start`` until a reply (``agent_id`` its author), a solve, or still (end None)."""

    first: bool
    start: dt.datetime
    end: dt.datetime | None
    answered: bool
    agent_id: int | None


@dataclass(frozen=True)
class Period:
    """A resolution period: from creation or a reopening until solved (end None: still unresolved)."""

    start: dt.datetime
    end: dt.datetime | None


def waits(tl: Timeline) -> list[Wait]:
    if "waits" not in tl.memo:
        tl.memo["waits"] = _waits(tl)
    found: list[Wait] = tl.memo["waits"]
    return found


def _waits(tl: Timeline) -> list[Wait]:
    out: list[Wait] = []
    since: dt.datetime | None = None
    first = True
    for p in tl.points:
        if p.kind == CUSTOMER and since is None:
            since = p.at
        elif p.kind == REPLY and since is not None:
            out.append(Wait(first, since, p.at, True, p.actor_id))
            since, first = None, False
        elif p.kind == STATUS and p.after in DONE and p.before not in DONE and since is not None:
            out.append(Wait(first, since, p.at, False, None))
            since, first = None, False
    if since is not None:
        out.append(Wait(first, since, None, False, None))
    return out


def periods(tl: Timeline) -> list[Period]:
    if "periods" not in tl.memo:
        tl.memo["periods"] = _periods(tl)
    found: list[Period] = tl.memo["periods"]
    return found


def _periods(tl: Timeline) -> list[Period]:
    out: list[Period] = []
    start: dt.datetime | None = tl.created_at
    for p in tl.points:
        if p.kind != STATUS:
            continue
        if p.after in DONE and p.before not in DONE and start is not None:
            out.append(Period(start, p.at))
            start = None
        elif p.before in DONE and p.after not in DONE and start is None:
            start = p.at
    if start is not None:
        out.append(Period(start, None))
    return out


@dataclass(frozen=True)
class Sample:
    """One ticket's contribution to a figure: the drill-down row."""

    figure: str
    ticket_id: int
    start: dt.datetime
    end: dt.datetime  # when the figure happened: groups it into days/weeks/months
    seconds: int  # calendar time
    business_seconds: int  # within the inbox's business hours
    agent_id: int | None
    team_id: int | None
    inbox_id: int
    channel: str


def customer_time(sent_at: dt.datetime | None, created_at: dt.datetime) -> dt.datetime:
    """When a customer message counts from: its sent time, unless that claims to be after its arrival."""
    return created_at if sent_at is None else min(sent_at, created_at)


def load_timelines(session: Session, ticket_ids: Iterable[int] | Select[tuple[int]]) -> list[Timeline]:
    """Rebuild the timelines of the given tickets: three queries for a ``select`` of ids (the database joins
    them; PostgreSQL plans one scan instead of one per chunk), or three per chunk of a list of ids."""
    if isinstance(ticket_ids, Select):
        return _load_chunk(session, ticket_ids)
    ids = sorted(set(ticket_ids))
    out: list[Timeline] = []
    for lo in range(0, len(ids), CHUNK):
        out.extend(_load_chunk(session, ids[lo : lo + CHUNK]))
    return out


def _load_chunk(session: Session, ids: list[int] | Select[tuple[int]]) -> list[Timeline]:
    tls: dict[int, Timeline] = {}
    rows = session.execute(
        select(
            Ticket.id,
            Ticket.inbox_id,
            Ticket.channel,
            Ticket.created_at,
            Ticket.team_id,
            Ticket.assignee_id,
            Ticket.priority,
            Ticket.status,
        ).where(Ticket.id.in_(ids), Ticket.merged_into_id.is_(None))
    )
    for tid, inbox_id, channel, created_at, team_id, assignee_id, priority, status in rows:
        tls[tid] = Timeline(tid, inbox_id, channel, created_at, team_id, assignee_id, priority, status)
    messages = session.execute(
        select(Message.ticket_id, Message.id, Message.direction, Message.author_id, Message.created_at, Message.sent_at)
        .where(Message.ticket_id.in_(ids), Message.is_auto.is_(False))
        .where(or_(Message.direction == "inbound", (Message.direction == "outbound") & Message.author_id.is_not(None)))
    )
    for tid, mid, direction, author_id, created_at, sent_at in messages:
        if (tl := tls.get(tid)) is None:
            continue
        if direction == "inbound":
            tl.points.append(Point(customer_time(sent_at, created_at), CUSTOMER, mid))
        else:
            tl.points.append(Point(created_at, REPLY, mid, author_id))
    # Only "from" and "to" are needed: extracted by the database (json_extract / ->>) instead of decoding every
    # event's JSON document in Python, which was a fifth of the load time.
    events = session.execute(
        select(
            TicketEvent.ticket_id,
            TicketEvent.id,
            TicketEvent.kind,
            TicketEvent.data["from"].as_string(),
            TicketEvent.data["to"].as_string(),
            TicketEvent.created_at,
        )
        .where(TicketEvent.ticket_id.in_(ids), TicketEvent.kind.in_(("status", "snoozed", "team", "assignee")))
        .order_by(TicketEvent.created_at, TicketEvent.id)
    )
    for tid, eid, kind, before, after, at in events:
        if (tl := tls.get(tid)) is None:
            continue
        if kind == "status":
            tl.points.append(Point(at, STATUS, eid, before=_str(before), after=_str(after)))
        elif kind == "snoozed":
            tl.points.append(Point(at, STATUS, eid, before=_str(before), after="snoozed"))
        elif kind == "team":
            tl.team_changes.append((at, before, after))
        else:
            tl.assignee_changes.append((at, before, after))
    for tl in tls.values():
        tl.points.sort(key=lambda p: (p.at, p.kind, p.seq))
    return list(tls.values())


class Report:
    """The figures of one period and filter set; the history is loaded once, on first use."""

    def __init__(self, session: Session, filters: Filters, calendars: Calendars | None = None) -> None:
        self.session = session
        self.filters = filters
        self.calendars = calendars if calendars is not None else load_calendars(session)
        self._memos: dict[str, list[Sample]] = {}

    # -- loading --------------------------------------------------------------------------------------------
    def ticket_scope(self, stmt: Any) -> Any:
        """Restrict a ticket query to the report's inboxes and channel, merged-away tickets left out."""
        f = self.filters
        stmt = stmt.where(Ticket.merged_into_id.is_(None))
        if f.inbox_ids is not None:
            stmt = stmt.where(Ticket.inbox_id.in_(f.inbox_ids))
        if f.channel:
            stmt = stmt.where(Ticket.channel == f.channel)
        return stmt

    @cached_property
    def timelines(self) -> list[Timeline]:
        """Tickets with something in the period: created, a message, or a status change."""
        f = self.filters
        touched = union(
            select(Ticket.id.label("tid")).where(Ticket.created_at >= f.start, Ticket.created_at < f.end),
            select(Message.ticket_id).where(Message.created_at >= f.start, Message.created_at < f.end),
            select(TicketEvent.ticket_id).where(
                TicketEvent.kind.in_(("status", "snoozed")),
                TicketEvent.created_at >= f.start,
                TicketEvent.created_at < f.end,
            ),
        ).subquery()
        return load_timelines(
            self.session, self.ticket_scope(select(Ticket.id).where(Ticket.id.in_(select(touched.c.tid))))
        )

    # -- helpers ----------------------------------------------------------------------------------------------
    def _in_period(self, at: dt.datetime) -> bool:
        return self.filters.start <= at < self.filters.end

    def _sample(self, figure: str, tl: Timeline, start: dt.datetime, end: dt.datetime, agent: int | None) -> Sample:
        cal = self.calendars.for_inbox(tl.inbox_id)
        return Sample(
            figure,
            tl.ticket_id,
            start,
            end,
            int((end - start).total_seconds()),
            business_seconds(start, end, cal),
            agent,
            tl.team_at(end),
            tl.inbox_id,
            tl.channel,
        )

    def _keep(self, samples: Iterable[Sample]) -> list[Sample]:
        f = self.filters
        return sorted(
            (
                s
                for s in samples
                if (f.team_id is None or s.team_id == f.team_id) and (f.agent_id is None or s.agent_id == f.agent_id)
            ),
            key=lambda s: (s.end, s.ticket_id),
        )

    # -- the figures: one method each ---------------------------------------------------------------------------
    def created(self) -> list[Sample]:
        """Tickets created in the period (attributed to the assignee and team at creation)."""
        return self._memo(
            "created",
            lambda: self._keep(
                self._sample("created", tl, tl.created_at, tl.created_at, tl.assignee_at(tl.created_at))
                for tl in self.timelines
                if self._in_period(tl.created_at)
            ),
        )

    def resolutions(self) -> list[Sample]:
        """Resolution times of solves in the period; their count is the "solved" volume."""
        return self._memo(
            "resolution",
            lambda: self._keep(
                self._sample("resolution", tl, p.start, p.end, tl.assignee_at(p.end))
                for tl in self.timelines
                for p in periods(tl)
                if p.end is not None and self._in_period(p.end)
            ),
        )

    def solved(self) -> list[Sample]:
        return self.resolutions()

    def first_responses(self) -> list[Sample]:
        return self._memo("first_response", lambda: self._responses(first=True))

    def next_responses(self) -> list[Sample]:
        return self._memo("next_response", lambda: self._responses(first=False))

    def _responses(self, *, first: bool) -> list[Sample]:
        name = "first_response" if first else "next_response"
        return self._keep(
            self._sample(name, tl, w.start, w.end, w.agent_id)
            for tl in self.timelines
            for w in waits(tl)
            if w.answered and w.first == first and w.end is not None and self._in_period(w.end)
        )

    def replies(self) -> list[Sample]:
        """Every agent reply in the period (per-agent view: replies and tickets handled)."""
        return self._memo(
            "replies",
            lambda: self._keep(
                self._sample("replies", tl, p.at, p.at, p.actor_id)
                for tl in self.timelines
                for p in tl.points
                if p.kind == REPLY and self._in_period(p.at)
            ),
        )

    def backlog(self, at: dt.datetime | None = None) -> list[Sample]:
        """Tickets open at ``at`` (default: the end of the period), with their age at that instant."""
        when = at if at is not None else self.filters.end
        later_change = select(TicketEvent.ticket_id).where(
            TicketEvent.kind.in_(("status", "snoozed")), TicketEvent.created_at > when
        )
        stmt = self.ticket_scope(
            select(Ticket.id).where(
                Ticket.created_at <= when, or_(Ticket.status.in_(OPEN_STATUSES), Ticket.id.in_(later_change))
            )
        )
        tls = load_timelines(self.session, stmt)
        return self._keep(
            self._sample("backlog", tl, tl.created_at, when, tl.assignee_at(when))
            for tl in tls
            if tl.status_at(when) in OPEN_STATUSES
        )

    def backlog_counts(self, at: dt.datetime, bands: Sequence[int]) -> list[int]:
        """Tickets open at ``at`` per age band: ``bands[i] <= age < bands[i + 1]`` in whole seconds (bands[0] = 0)."""
        ages = [s.seconds for s in self.backlog(at)]
        highs = [*bands[1:], None]
        return [
            sum(1 for a in ages if a >= low and (high is None or a < high))
            for low, high in zip(bands, highs, strict=True)
        ]

    def _memo(self, name: str, compute: Callable[[], list[Sample]]) -> list[Sample]:
        """Each figure is computed once per report: the volume and the resolution table share one list."""
        if name not in self._memos:
            self._memos[name] = compute()
        return self._memos[name]

    def figure(self, name: str) -> list[Sample]:
        """Samples of a figure by name (the CSV and drill-down routes use this)."""
        methods: dict[str, Callable[[], list[Sample]]] = {
            "created": self.created,
            "solved": self.solved,
            "first_response": self.first_responses,
            "next_response": self.next_responses,
            "resolution": self.resolutions,
            "replies": self.replies,
            "backlog": self.backlog,
        }
        if name not in methods:
            raise ValueError(f"unknown figure {name!r}")
        return methods[name]()

    # -- aggregates: what the tables show (``SummaryReport`` computes the same in SQL on PostgreSQL) ---------------
    def counts(self, figure: str, by: str) -> dict[Any, int]:
        """How many samples of a figure per group."""
        return {k: len(v) for k, v in group(self.figure(figure), by, self.filters.tz).items()}

    def summaries(self, figure: str, by: str) -> tuple[dict[Any, Summary], Summary]:
        """Count, median and p90 (calendar and business) of a figure per group, and over all of them."""
        samples = self.figure(figure)
        return {k: summarize(v) for k, v in group(samples, by, self.filters.tz).items()}, summarize(samples)

    def reply_counts(self) -> dict[int | None, tuple[int, int]]:
        """Per reply author: (tickets handled, replies)."""
        return {k: (len({s.ticket_id for s in v}), len(v)) for k, v in group(self.replies(), "agent").items()}


# -- aggregation -------------------------------------------------------------------------------------------------
def nearest_rank(values: Sequence[int], percent: int) -> int | None:
    """The nearest-rank percentile: the value at rank ceil(percent/100 * n) of the sorted values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = -(-percent * len(ordered) // 100)
    return ordered[max(rank, 1) - 1]


@dataclass(frozen=True)
class Summary:
    count: int
    median: int | None
    p90: int | None
    median_business: int | None
    p90_business: int | None


def summarize(samples: Sequence[Sample]) -> Summary:
    cal = [s.seconds for s in samples]
    biz = [s.business_seconds for s in samples]
    return Summary(
        len(samples), nearest_rank(cal, 50), nearest_rank(cal, 90), nearest_rank(biz, 50), nearest_rank(biz, 90)
    )


def bucket_start(at: dt.datetime, by: str, tz: str) -> dt.date:
    """The local date that starts the day, ISO week (Monday) or month containing ``at``."""
    day = at.astimezone(ZoneInfo(tz)).date()
    if by == "week":
        return day - dt.timedelta(days=day.weekday())
    if by == "month":
        return day.replace(day=1)
    return day


def group_key(sample: Sample, by: str, tz: str) -> Any:
    if by in ("day", "week", "month"):
        return bucket_start(sample.end, by, tz)
    if by == "agent":
        return sample.agent_id
    if by == "team":
        return sample.team_id
    if by == "inbox":
        return sample.inbox_id
    if by == "channel":
        return sample.channel
    raise ValueError(f"cannot group by {by!r}; use one of {', '.join(GROUPINGS)}")


def group(samples: Iterable[Sample], by: str, tz: str = "UTC") -> dict[Any, list[Sample]]:
    """Samples per group, groups in order (None — unassigned, no team — last)."""
    out: dict[Any, list[Sample]] = {}
    for s in samples:
        out.setdefault(group_key(s, by, tz), []).append(s)
    return dict(sorted(out.items(), key=lambda kv: (kv[0] is None, kv[0] if kv[0] is not None else 0)))


def time_buckets(start: dt.datetime, end: dt.datetime, by: str, tz: str) -> list[dt.date]:
    """Every bucket of the period, so that a chart shows empty days as zero instead of skipping them."""
    if by not in ("day", "week", "month"):
        return []
    first = bucket_start(start, by, tz)
    last = bucket_start(end - dt.timedelta(microseconds=1), by, tz)
    out: list[dt.date] = []
    day = first
    while day <= last:
        out.append(day)
        if by == "day":
            day += dt.timedelta(days=1)
        elif by == "week":
            day += dt.timedelta(days=7)
        else:
            day = (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return out


def open_load(session: Session, inbox_ids: frozenset[int] | None) -> dict[int, int]:
    """Open tickets assigned to each agent right now (a live figure: current assignee and status)."""
    stmt = (
        select(Ticket.assignee_id, func.count())
        .where(Ticket.status.in_(OPEN_STATUSES), Ticket.assignee_id.is_not(None), Ticket.merged_into_id.is_(None))
        .group_by(Ticket.assignee_id)
    )
    if inbox_ids is not None:
        stmt = stmt.where(Ticket.inbox_id.in_(inbox_ids))
    return {int(a): int(n) for a, n in session.execute(stmt) if a is not None}
