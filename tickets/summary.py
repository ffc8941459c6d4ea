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
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Date, case, cast, delete, event, func, insert, select
from sqlalchemy.orm import Session, UOWTransaction, attributes

from inbox import workspace
from inbox.models import Inbox, Message, Ticket, TicketEvent, TicketTag
from inbox.report_models import CsatRating, ReportSample
from inbox.sla_models import BusinessCalendar, BusinessHoliday, SlaPolicy, SlaTarget
from tickets import sla, summary_rebuild
from tickets.business_hours import Calendars, business_seconds, load_calendars
from tickets.metrics import (
    REPLY,
    Filters,
    Report,
    Sample,
    Summary,
    Timeline,
    load_timelines,
    periods,
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
    """Recompute the summary rows of these tickets (merged-away and deleted ones lose theirs). Flushes."""
    ids = sorted(set(ticket_ids))
    if not ids:
        return 0
    calendars, policies = _config(session)
    written = 0
    for lo in range(0, len(ids), CHUNK):
        chunk = ids[lo : lo + CHUNK]
        session.execute(delete(ReportSample).where(ReportSample.ticket_id.in_(chunk)))
        tls = {tl.ticket_id: tl for tl in load_timelines(session, chunk)}
        rows: list[dict[str, Any]] = []
        for tl in tls.values():
            rows.extend(_row(s) for s in ticket_samples(tl, calendars))
        for tid, clocks in sla.clocks_for(session, list(tls), policies, tls).items():
            rows.extend(_sla_row(s) for s in ticket_sla_samples(tls[tid], clocks))
        for rating in session.scalars(select(CsatRating).where(CsatRating.ticket_id.in_(list(tls)))):
            rows.append(_row(csat_sample(tls[rating.ticket_id], rating)))
        if rows:
            session.execute(insert(ReportSample), rows)
        written += len(rows)
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
    """``metrics.Report`` with the period figures read from the summary: the same samples, one indexed query each.

    On PostgreSQL the aggregates the tables show (counts, nearest-rank median and p90 per group) are computed by
    the database (``percentile_disc``), from the same rows and filters as the samples that the drill-down lists;
    elsewhere (SQLite has no ordered-set aggregates) in Python from those samples. Backlog (an instant, not a
    period) is still rebuilt from the history of the tickets open at that instant."""

    def __init__(
        self, session: Session, filters: Filters, calendars: Calendars | None = None, *, in_sql: bool | None = None
    ) -> None:
        super().__init__(session, filters, calendars)
        self.in_sql = session.get_bind().dialect.name == "postgresql" if in_sql is None else in_sql

    def _select(self, figures: Sequence[str], upto: dt.datetime | None = None) -> Any:
        f = self.filters
        stmt = select(ReportSample).where(
            ReportSample.figure.in_(figures), ReportSample.end_at >= f.start, ReportSample.end_at < f.end
        )
        if upto is not None:
            stmt = stmt.where(ReportSample.end_at <= upto)
        if f.inbox_ids is not None:
            stmt = stmt.where(ReportSample.inbox_id.in_(f.inbox_ids))
        if f.channel:
            stmt = stmt.where(ReportSample.channel == f.channel)
        if f.team_id is not None:
            stmt = stmt.where(ReportSample.team_id == f.team_id)
        if f.agent_id is not None:
            stmt = stmt.where(ReportSample.agent_id == f.agent_id)
        return stmt.order_by(ReportSample.end_at, ReportSample.ticket_id, ReportSample.figure, ReportSample.id)

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

    # -- aggregates in SQL (PostgreSQL) ----------------------------------------------------------------------------
    def _key(self, by: str) -> Any:
        c = ReportSample.__table__.c
        local = func.timezone(self.filters.tz, c.end_at)  # wall-clock time in the report's zone
        if by == "day":
            return cast(local, Date)
        if by in ("week", "month"):
            return cast(func.date_trunc(by, local), Date)  # weeks start on Monday, as bucket_start's
        column = {"agent": c.agent_id, "team": c.team_id, "inbox": c.inbox_id, "channel": c.channel}.get(by)
        if column is None:
            raise ValueError(f"cannot group by {by!r}")
        return column

    def counts(self, figure: str, by: str) -> dict[Any, int]:
        if not self.in_sql:
            return super().counts(figure, by)
        key = self._key(by).label("key")
        stmt = self._select([_stored(figure)]).order_by(None).with_only_columns(key, func.count()).group_by(key)
        return {k: int(n) for k, n in self.session.execute(stmt)}

    def summaries(self, figure: str, by: str) -> tuple[dict[Any, Summary], Summary]:
        if not self.in_sql:
            return super().summaries(figure, by)
        c = ReportSample.__table__.c
        key = self._key(by)
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
                groups[k] = summary
        return groups, everything

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


def _stored(figure: str) -> str:
    """The figure's rows: "solved" is the count of resolutions."""
    if figure == "solved":
        return "resolution"
    if figure not in FIGURES:
        raise ValueError(f"unknown figure {figure!r}")
    return figure


def _opt(value: Any) -> int | None:
    return None if value is None else int(value)
