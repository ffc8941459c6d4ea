"""The per-ticket report summary (``report_sample``): kept current on commit, read by ``SummaryReport``.

The figures are *defined* by ``tickets.metrics`` (a ticket's timeline rebuilt from its messages and events) and
``tickets.sla`` (its SLA clocks). What one ticket contributes to them depends only on its own history, its inbox's
calendar and the SLA policies, never on the report's period. So each ticket's samples are computed once, with
those same functions, and stored; a report then selects the rows of a figure that ended in its period (index
``(figure, end_at)``), and its cards, charts, tables, CSV files and drill-downs all use these rows.

Keeping it current: a session listener notes every ticket whose messages, events, tags or fields were flushed,
and before the commit recomputes those tickets' rows in the same transaction, so a report never sees a history
without its summary. A change to a business calendar, holiday, SLA policy or an inbox's team changes every
ticket's rows: ``tickets.summary_rebuild`` has a worker job recompute them in chunks after the commit (the
reports page says so meanwhile), or, in a process without Redis, recomputes them in the commit itself. Rows
written around the ORM (bulk INSERTs, a restore) are filled by ``rebuild_all`` (``helpline reports rebuild``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Date, case, cast, delete, event, func, insert, literal, select, union_all
from sqlalchemy.orm import Session, UOWTransaction, attributes

from inbox import workspace
from inbox.models import OPEN_STATUSES, Inbox, Message, Ticket, TicketEvent, TicketTag
from inbox.report_models import CsatRating, ReportOpen, ReportSample
from inbox.sla_models import BusinessCalendar, BusinessHoliday, SlaPolicy, SlaTarget
from tickets import sla, summary_rebuild
from tickets.business_hours import Calendars, business_seconds, load_calendars
from tickets.metrics import (
    REPLY,
    STATUS,
    Filters,
    Report,
    Sample,
    Summary,
    Timeline,
    load_timelines,
    nearest_rank,
    periods,
    time_buckets,
    waits,
)

FIGURES = ("created", "resolution", "first_response", "next_response", "replies", "csat")
SLA_FIGURES = tuple(f"sla_{m}" for m in ("first_response", "next_response", "resolution"))
CHUNK = 900
_DIRTY, _ALL = "report_summary_dirty", "report_summary_all"
_EVERYTHING = (BusinessCalendar, BusinessHoliday, SlaPolicy, SlaTarget)
VERSION_KEY = "report_config_version"
_CONFIG_CACHE: dict[tuple[str, str], tuple[Calendars, sla.Policies]] = {}


# -- what one ticket contributes ------------------------------------------------------------------------------------
def ticket_samples(tl: Timeline, calendars: Calendars) -> list[Sample]:
    """Every sample of one ticket, whatever the period, exactly as ``metrics.Report`` builds them."""
    cal = calendars.for_inbox(tl.inbox_id)

    def sample(figure: str, start: dt.datetime, end: dt.datetime, agent: int | None) -> Sample:
        seconds = int((end - start).total_seconds())
        return Sample(
            figure,
            tl.ticket_id,
            start,
            end,
            seconds,
            business_seconds(start, end, cal),
            agent,
            tl.team_at(end),
            tl.inbox_id,
            tl.channel,
        )

    out = [sample("created", tl.created_at, tl.created_at, tl.assignee_at(tl.created_at))]
    out.extend(sample("resolution", p.start, p.end, tl.assignee_at(p.end)) for p in periods(tl) if p.end is not None)
    for w in waits(tl):
        if w.answered and w.end is not None:
            out.append(sample("first_response" if w.first else "next_response", w.start, w.end, w.agent_id))
    out.extend(sample("replies", p.at, p.at, p.actor_id) for p in tl.points if p.kind == REPLY)
    return out


@dataclass(frozen=True)
class Stretch:
    """A ticket open from ``start`` until ``end`` (None: still open), with one assignee and team all along."""

    start: dt.datetime
    end: dt.datetime | None
    agent_id: int | None
    team_id: int | None


def open_stretches(tl: Timeline) -> list[Stretch]:
    """When ``metrics.Report.backlog`` counts this ticket, and as whose: the instants T >= creation at which
    ``status_at(T)`` is open (``OPEN_STATUSES``: new, open, pending, snoozed), cut where ``assignee_at(T)`` or
    ``team_at(T)`` changes. Those step functions only change at the ticket's status, snooze, assignee and team
    events, so they are evaluated once at each such instant (events at the same instant: the last one wins, as
    there). Like ``Report.backlog``, which only looks at tickets whose current status is open or that have a
    status change after T, a ticket whose current status is not open is never counted after its last status
    change (this matters only for a history that disagrees with the ticket's status)."""
    status_times = [p.at for p in tl.points if p.kind == STATUS]
    last_status = max(status_times) if status_times else None
    trusted_now = tl.status_now in OPEN_STATUSES
    changes = (*status_times, *(c[0] for c in tl.team_changes), *(c[0] for c in tl.assignee_changes))
    marks = sorted({tl.created_at, *(at for at in changes if at > tl.created_at)})
    out: list[Stretch] = []
    for i, at in enumerate(marks):
        end = marks[i + 1] if i + 1 < len(marks) else None
        counted = trusted_now or (last_status is not None and at < last_status)
        if not counted or tl.status_at(at) not in OPEN_STATUSES:
            continue
        agent, team = tl.assignee_at(at), tl.team_at(at)
        if out and out[-1].end == at and (out[-1].agent_id, out[-1].team_id) == (agent, team):
            out[-1] = Stretch(out[-1].start, end, agent, team)
        else:
            out.append(Stretch(at, end, agent, team))
    return out


def _open_row(tl: Timeline, s: Stretch) -> dict[str, Any]:
    return {
        "ticket_id": tl.ticket_id,
        "created_at": tl.created_at,
        "from_at": s.start,
        "until_at": s.end,
        "agent_id": s.agent_id,
        "team_id": s.team_id,
        "inbox_id": tl.inbox_id,
        "channel": tl.channel,
    }


def csat_sample(tl: Timeline, rating: CsatRating) -> Sample:
    """A rating as a sample: ``seconds`` holds the score (1-5); it counts when first given, for the assignee and
    team of the solve it rates."""
    at = rating.solved_at
    return Sample(
        "csat",
        tl.ticket_id,
        at,
        rating.created_at,
        rating.score,
        0,
        tl.assignee_at(at),
        tl.team_at(at),
        tl.inbox_id,
        tl.channel,
    )


def ticket_sla_samples(tl: Timeline, clocks: Sequence[sla.Clock]) -> list[sla.SlaSample]:
    """The SLA clocks of one ticket that can be decided: a met one at its stop, any other at its due time.

    A clock stopped without a response before its due time (cancelled) is never counted, so it is not stored. A
    clock still running is stored at its due time: it counts as breached once a report's horizon reaches it."""
    out = []
    for c in clocks:
        if c.stopped_at is not None and c.stopped_at <= c.due_at:
            if not c.responded:
                continue
            at, met = c.stopped_at, True
        else:
            at, met = c.due_at, False
        out.append(
            sla.SlaSample(
                f"sla_{c.metric}",
                tl.ticket_id,
                c.started_at,
                at,
                c.due_at,
                met,
                tl.assignee_at(at),
                tl.team_at(at),
                tl.inbox_id,
                tl.channel,
            )
        )
    return out


def refresh(session: Session, ticket_ids: Iterable[int]) -> int:
    """Recompute the summary rows (samples and open stretches) of these tickets (merged-away and deleted ones lose
    theirs); returns how many rows were written. Flushes."""
    ids = sorted(set(ticket_ids))
    if not ids:
        return 0
    calendars, policies = _config(session)
    written = 0
    for lo in range(0, len(ids), CHUNK):
        chunk = ids[lo : lo + CHUNK]
        session.execute(delete(ReportSample).where(ReportSample.ticket_id.in_(chunk)))
        session.execute(delete(ReportOpen).where(ReportOpen.ticket_id.in_(chunk)))
        tls = {tl.ticket_id: tl for tl in load_timelines(session, chunk)}
        rows: list[dict[str, Any]] = []
        opened: list[dict[str, Any]] = []
        for tl in tls.values():
            rows.extend(_row(s) for s in ticket_samples(tl, calendars))
            opened.extend(_open_row(tl, s) for s in open_stretches(tl))
        for tid, clocks in sla.clocks_for(session, list(tls), policies, tls).items():
            rows.extend(_sla_row(s) for s in ticket_sla_samples(tls[tid], clocks))
        for rating in session.scalars(select(CsatRating).where(CsatRating.ticket_id.in_(list(tls)))):
            rows.append(_row(csat_sample(tls[rating.ticket_id], rating)))
        if rows:
            session.execute(insert(ReportSample), rows)
        if opened:
            session.execute(insert(ReportOpen), opened)
        written += len(rows) + len(opened)
    return written


def _config(session: Session) -> tuple[Calendars, sla.Policies]:
    """Calendars and SLA policies, cached per process while the workspace's ``report_config_version`` (a random
    token the commit hook renews whenever a calendar, holiday, policy or an inbox's team changes) stays the same:
    one query per commit instead of one per table."""
    version = workspace.get_setting(session, VERSION_KEY)
    key = (str(session.get_bind().engine.url), str(version))
    if version is not None and (found := _CONFIG_CACHE.get(key)) is not None:
        return found
    calendars = load_calendars(session)
    loaded = calendars, sla.load_policies(session, calendars)
    if version is not None:
        _CONFIG_CACHE.clear()  # one workspace per process in production: keep only the current one
        _CONFIG_CACHE[key] = loaded
    return loaded


def rebuild_all(session: Session) -> int:
    """Recompute the whole summary (after bulk loads, a restore, or an upgrade from before the table). Flushes."""
    summary_rebuild.mark_rebuilt(session)  # a background rebuild has nothing left to do (its row first, then...)
    summary_rebuild.lock_for_refresh(session)  # ...the summary lock: the order a rebuild chunk takes them in
    session.execute(delete(ReportSample))
    session.execute(delete(ReportOpen))
    return refresh(session, session.scalars(select(Ticket.id).where(Ticket.merged_into_id.is_(None))))


def discard_pending(session: Session) -> None:
    """Forget the tickets noted for the next commit: for bulk loaders that call ``rebuild_all`` themselves."""
    session.info.pop(_DIRTY, None)
    session.info.pop(_ALL, None)


def _row(s: Sample) -> dict[str, Any]:
    return {
        "ticket_id": s.ticket_id,
        "figure": s.figure,
        "start_at": s.start,
        "end_at": s.end,
        "seconds": s.seconds,
        "business_seconds": s.business_seconds,
        "agent_id": s.agent_id,
        "team_id": s.team_id,
        "inbox_id": s.inbox_id,
        "channel": s.channel,
    }


def _sla_row(s: sla.SlaSample) -> dict[str, Any]:
    return {
        "ticket_id": s.ticket_id,
        "figure": s.figure,
        "start_at": s.start,
        "end_at": s.end,
        "seconds": int((s.end - s.start).total_seconds()),
        "business_seconds": 0,
        "agent_id": s.agent_id,
        "team_id": s.team_id,
        "inbox_id": s.inbox_id,
        "channel": s.channel,
        "due_at": s.due_at,
        "met": s.met,
    }


# -- keeping it current ---------------------------------------------------------------------------------------------
def _ticket_ids_of(obj: object) -> list[int]:
    if isinstance(obj, Ticket):
        return [obj.id]
    if isinstance(obj, Message | TicketEvent | TicketTag | CsatRating):
        ids = [obj.ticket_id]
        if isinstance(obj, Message):  # moved by a merge: the old ticket loses it too
            ids.extend(attributes.get_history(obj, "ticket_id").deleted or ())
        return [i for i in ids if i is not None]
    return []


@event.listens_for(Session, "after_flush")
def _note_changes(session: Session, _flush: UOWTransaction) -> None:
    dirty: set[int] = session.info.setdefault(_DIRTY, set())
    for obj in (*session.new, *session.dirty, *session.deleted):
        if isinstance(obj, _EVERYTHING):
            session.info[_ALL] = True
        elif isinstance(obj, Inbox) and obj in session.dirty and attributes.get_history(obj, "team_id").deleted:
            session.info[_ALL] = True  # the inbox may now count in its new team's calendar
        else:
            dirty.update(_ticket_ids_of(obj))


@event.listens_for(Session, "before_commit")
def _refresh_before_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint is released; the real commit comes later (ingestion uses many)
    session.flush()  # the last changes, so that their tickets are noted
    everything = session.info.pop(_ALL, False)
    ids = session.info.pop(_DIRTY, set())
    if everything:
        # A new config version; every ticket is recomputed now (no Redis) or by a job after the commit.
        summary_rebuild.request(session, rebuild_all)
        if summary_rebuild.deferred(session) and ids:
            summary_rebuild.lock_for_refresh(session, ids)
            refresh(session, ids)  # this commit's own tickets, with the new config, right away
    elif ids:
        summary_rebuild.lock_for_refresh(session, ids)  # one writer per ticket; never inside a rebuild's chunk
        refresh(session, ids)
    session.info.pop(_DIRTY, None)  # our own rows are not history


@event.listens_for(Session, "after_soft_rollback")
def _forget(session: Session, previous: Any) -> None:
    if not previous.nested:  # a rolled-back savepoint leaves earlier changes to commit; extra ids are harmless
        session.info.pop(_DIRTY, None)
        session.info.pop(_ALL, None)


# -- reading it -----------------------------------------------------------------------------------------------------
class SummaryReport(Report):
    """``metrics.Report`` with the figures read from the summary: the same samples, one indexed query each.

    The aggregates the tables show are computed by the database from the same rows and filters as the samples the
    drill-down lists: counts per group, SLA compliance and reply counts on every database; nearest-rank median and
    p90 with ``percentile_disc`` on PostgreSQL, and on SQLite (no ordered-set aggregates) in Python over just the
    group key and the two durations. Days, weeks and months are the report zone's: PostgreSQL converts with
    ``timezone()``; on SQLite (no time zones) the bucket boundaries are computed here and the database picks the
    bucket with a ``CASE``. The backlog at an instant is read from the open stretches (``report_open``), its age
    bands counted by the database."""

    def __init__(
        self, session: Session, filters: Filters, calendars: Calendars | None = None, *, in_sql: bool | None = None
    ) -> None:
        super().__init__(session, filters, calendars)
        self.postgres = session.get_bind().dialect.name == "postgresql"
        self.in_sql = True if in_sql is None else in_sql

    def _scoped(self, stmt: Any, c: Any) -> Any:
        """The report's inbox, channel, team and agent filters on the columns ``c`` of a summary table (both
        ``report_sample`` and ``report_open`` carry them)."""
        f = self.filters
        if f.inbox_ids is not None:
            stmt = stmt.where(c.inbox_id.in_(f.inbox_ids))
        if f.channel:
            stmt = stmt.where(c.channel == f.channel)
        if f.team_id is not None:
            stmt = stmt.where(c.team_id == f.team_id)
        if f.agent_id is not None:
            stmt = stmt.where(c.agent_id == f.agent_id)
        return stmt

    def _select(self, figures: Sequence[str], upto: dt.datetime | None = None) -> Any:
        f = self.filters
        stmt = select(ReportSample).where(
            ReportSample.figure.in_(figures), ReportSample.end_at >= f.start, ReportSample.end_at < f.end
        )
        if upto is not None:
            stmt = stmt.where(ReportSample.end_at <= upto)
        return self._scoped(stmt, ReportSample.__table__.c).order_by(
            ReportSample.end_at, ReportSample.ticket_id, ReportSample.figure, ReportSample.id
        )

    def _rows(self, figure: str) -> list[Sample]:
        cols = ReportSample.__table__.c
        stmt = self._select([figure]).with_only_columns(
            cols.figure,
            cols.ticket_id,
            cols.start_at,
            cols.end_at,
            cols.seconds,
            cols.business_seconds,
            cols.agent_id,
            cols.team_id,
            cols.inbox_id,
            cols.channel,
        )
        return [Sample(*row) for row in self.session.execute(stmt)]

    def created(self) -> list[Sample]:
        return self._memo("created", lambda: self._rows("created"))

    def resolutions(self) -> list[Sample]:
        return self._memo("resolution", lambda: self._rows("resolution"))

    def first_responses(self) -> list[Sample]:
        return self._memo("first_response", lambda: self._rows("first_response"))

    def next_responses(self) -> list[Sample]:
        return self._memo("next_response", lambda: self._rows("next_response"))

    def replies(self) -> list[Sample]:
        return self._memo("replies", lambda: self._rows("replies"))

    def csat(self) -> list[Sample]:
        """Ratings first given in the period (``seconds`` is the score)."""
        return self._memo("csat", lambda: self._rows("csat"))

    def figure(self, name: str) -> list[Sample]:
        return self.csat() if name == "csat" else super().figure(name)

    def compliance(self, now: dt.datetime) -> list[sla.SlaSample]:
        """``sla.compliance``'s samples: clocks decided in the period, by the horizon (the end, or now)."""
        cols = ReportSample.__table__.c
        stmt = self._select(SLA_FIGURES, upto=min(now, self.filters.end)).with_only_columns(
            cols.figure,
            cols.ticket_id,
            cols.start_at,
            cols.end_at,
            cols.due_at,
            cols.met,
            cols.agent_id,
            cols.team_id,
            cols.inbox_id,
            cols.channel,
        )
        return [sla.SlaSample(*row) for row in self.session.execute(stmt)]

    # -- aggregates in SQL ----------------------------------------------------------------------------
    def _key(self, by: str) -> tuple[Any, Callable[[Any], Any]]:
        """The group key of a summary row as SQL, and how to turn what the database returns into the key."""
        c = ReportSample.__table__.c
        if by in ("day", "week", "month") and not self.postgres:
            f = self.filters
            buckets = time_buckets(f.start, f.end, by, f.tz)
            tz = ZoneInfo(f.tz)
            # The first instant of each bucket after the first: local midnight of its first day (a midnight that
            # does not exist is read with the offset before the change, i.e. the first instant of that day).
            bounds = [dt.datetime.combine(day, dt.time(), tzinfo=tz).astimezone(dt.UTC) for day in buckets[1:]]
            return _bucket_index(c.end_at, bounds, 0, len(bounds)), lambda i: buckets[int(i)]
        if by in ("day", "week", "month"):
            local = func.timezone(self.filters.tz, c.end_at)  # wall-clock time in the report's zone
            if by == "day":
                return cast(local, Date), _same
            return cast(func.date_trunc(by, local), Date), _same  # weeks start on Monday, as bucket_start's
        column = {"agent": c.agent_id, "team": c.team_id, "inbox": c.inbox_id, "channel": c.channel}.get(by)
        if column is None:
            raise ValueError(f"cannot group by {by!r}")
        return column, _same

    def counts(self, figure: str, by: str) -> dict[Any, int]:
        if not self.in_sql:
            return super().counts(figure, by)
        expr, decode = self._key(by)
        key = expr.label("key")
        stmt = self._select([_stored(figure)]).order_by(None).with_only_columns(key, func.count()).group_by(key)
        return {decode(k): int(n) for k, n in self.session.execute(stmt)}

    def summaries(self, figure: str, by: str) -> tuple[dict[Any, Summary], Summary]:
        if not self.in_sql:
            return super().summaries(figure, by)
        if not self.postgres:
            return self._summaries_nearest_rank(figure, by)
        c = ReportSample.__table__.c
        key, decode = self._key(by)
        # Nearest rank = percentile_disc: the first value whose cumulative share reaches p. PostgreSQL computes
        # ceil(p * n) in floating point, where 0.9 * 70 = 63.000000000000007; a hair below p gives the exact rank.
        stats = [
            func.percentile_disc(p / 100 - 1e-9).within_group(col)
            for col in (c.seconds, c.business_seconds)
            for p in (50, 90)
        ]
        stmt = (
            self._select([_stored(figure)])
            .order_by(None)
            .with_only_columns(key.label("key"), func.grouping(key).label("total"), func.count(), *stats)
            .group_by(func.rollup(key))
        )
        groups: dict[Any, Summary] = {}
        everything = Summary(0, None, None, None, None)
        for k, total, n, med, p90, med_b, p90_b in self.session.execute(stmt):
            summary = Summary(int(n), _opt(med), _opt(p90), _opt(med_b), _opt(p90_b))
            if total:
                everything = summary
            else:
                groups[decode(k)] = summary
        return groups, everything

    def _summaries_nearest_rank(self, figure: str, by: str) -> tuple[dict[Any, Summary], Summary]:
        """Without ordered-set aggregates: only the key and the two durations of each row, ranked here."""
        c = ReportSample.__table__.c
        expr, decode = self._key(by)
        stmt = (
            self._select([_stored(figure)])
            .order_by(None)
            .with_only_columns(expr.label("key"), c.seconds, c.business_seconds)
        )
        per: dict[Any, tuple[list[int], list[int]]] = {}
        every: tuple[list[int], list[int]] = ([], [])
        for k, secs, biz in self.session.execute(stmt):
            cal_list, biz_list = per.setdefault(k, ([], []))
            cal_list.append(secs)
            biz_list.append(biz)
            every[0].append(secs)
            every[1].append(biz)
        return {decode(k): _summary(*v) for k, v in per.items()}, _summary(*every)

    def reply_counts(self) -> dict[int | None, tuple[int, int]]:
        if not self.in_sql:
            return super().reply_counts()
        c = ReportSample.__table__.c
        stmt = (
            self._select(["replies"])
            .order_by(None)
            .with_only_columns(c.agent_id, func.count(func.distinct(c.ticket_id)), func.count())
            .group_by(c.agent_id)
        )
        return {a: (int(t), int(n)) for a, t, n in self.session.execute(stmt)}

    def compliance_counts(self, now: dt.datetime) -> dict[str, tuple[int, int]]:
        """Per SLA figure: (met, breached) clocks decided in the period, as ``compliance(now)`` lists them."""
        if not self.in_sql:
            out: dict[str, tuple[int, int]] = {}
            for s in self.compliance(now):
                met, breached = out.get(s.figure, (0, 0))
                out[s.figure] = (met + 1, breached) if s.met else (met, breached + 1)
            return out
        c = ReportSample.__table__.c
        met_sum = func.sum(case((c.met.is_(True), 1), else_=0))
        stmt = (
            self._select(SLA_FIGURES, upto=min(now, self.filters.end))
            .order_by(None)
            .with_only_columns(c.figure, met_sum, func.count())
            .group_by(c.figure)
        )
        return {f: (int(m), int(n) - int(m)) for f, m, n in self.session.execute(stmt)}

    # -- the backlog, from the open stretches ------------------------------------------------------------------------
    def _open_at(self, when: dt.datetime, *columns: Any) -> Any:
        """The stretches covering ``when`` in the report's inboxes, channel, team and agent: two index range scans
        (still open; closed after ``when``), as a subquery of ``columns``."""
        o = ReportOpen.__table__.c

        def part(until: Any) -> Any:
            return self._scoped(select(*columns).where(until, o.from_at <= when), o)

        return union_all(part(o.until_at.is_(None)), part(o.until_at > when)).subquery()

    def backlog(self, at: dt.datetime | None = None) -> list[Sample]:
        """``Report.backlog`` from the open stretches: tickets open at ``at`` (default: the end of the period)."""
        when = at if at is not None else self.filters.end
        o = ReportOpen.__table__.c
        rows = self._open_at(when, o.ticket_id, o.created_at, o.agent_id, o.team_id, o.inbox_id, o.channel)
        out = []
        for tid, created_at, agent, team, inbox_id, channel in self.session.execute(select(rows)):
            cal = self.calendars.for_inbox(inbox_id)
            seconds = int((when - created_at).total_seconds())
            biz = business_seconds(created_at, when, cal)
            out.append(Sample("backlog", tid, created_at, when, seconds, biz, agent, team, inbox_id, channel))
        return sorted(out, key=lambda s: (s.end, s.ticket_id))

    def backlog_counts(self, at: dt.datetime, bands: Sequence[int]) -> list[int]:
        """Tickets open at ``at`` per age band, counted by the database: age >= bands[i] (whole seconds) is
        ``created_at <= at - bands[i]``."""
        if not self.in_sql:
            return super().backlog_counts(at, bands)
        o = ReportOpen.__table__.c
        rows = self._open_at(at, o.created_at)
        band = case(
            *((rows.c.created_at <= at - dt.timedelta(seconds=low), i) for i, low in reversed(list(enumerate(bands)))),
            else_=-1,
        ).label("band")
        found: dict[int, int] = {b: n for b, n in self.session.execute(select(band, func.count()).group_by(band))}
        return [int(found.get(i, 0)) for i in range(len(bands))]


def _bucket_index(column: Any, bounds: Sequence[dt.datetime], lo: int, hi: int) -> Any:
    """The number of ``bounds[lo:hi]`` at or before ``column`` plus ``lo`` (its bucket), as nested ``CASE``s that
    halve the range at each level: about 7 comparisons per row for 90 days instead of up to 90."""
    if lo >= hi:
        return literal(lo)
    mid = (lo + hi) // 2
    return case(
        (column < bounds[mid], _bucket_index(column, bounds, lo, mid)),
        else_=_bucket_index(column, bounds, mid + 1, hi),
    )


def _same(value: Any) -> Any:
    return value


def _summary(cal: list[int], biz: list[int]) -> Summary:
    """``metrics.summarize`` of these durations."""
    return Summary(len(cal), nearest_rank(cal, 50), nearest_rank(cal, 90), nearest_rank(biz, 50), nearest_rank(biz, 90))


def _stored(figure: str) -> str:
    """The figure's rows: "solved" is the count of resolutions."""
    if figure == "solved":
        return "resolution"
    if figure not in FIGURES:
        raise ValueError(f"unknown figure {figure!r}")
    return figure


def _opt(value: Any) -> int | None:
    return None if value is None else int(value)
