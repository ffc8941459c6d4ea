"""SLA policies applied to tickets: clocks, live status, compliance, and the sweep that records warnings/breaches.

A policy (``inbox.sla_models.SlaPolicy``) sets targets per priority for first response, next response and
resolution, optionally only for one inbox and/or tickets with one tag; the first active policy by position that
matches a ticket (current inbox, priority and tags) applies. With ``business_hours`` the targets count in business
hours (``tickets.business_hours``): of the policy's own calendar when it names one, else of the ticket's inbox;
otherwise around the clock.

Clocks follow the report definitions of ``tickets.metrics``: a first/next response clock runs over a wait (from
the customer message to the reply; a solve stops it without a response), a resolution clock over a resolution
period. A clock is *met* when it stopped by its due time with a response or a solve, *breached* when its due
time passed first; a wait ended by a solve before its due time is *cancelled* (nothing to answer).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, object_session

from inbox import audit
from inbox.models import OPEN_STATUSES, Tag, Ticket, TicketEvent, TicketTag
from inbox.sla_models import SlaPolicy
from tickets.business_hours import Calendar, Calendars, add_business, business_seconds, load_calendars
from tickets.metrics import Report, Timeline, load_timelines, periods, waits

WARNING, BREACH = "sla_warning", "sla_breach"
SWEEP_LOOKBACK = dt.timedelta(days=2)  # clocks that stopped longer ago are settled; the sweep looks no further


@dataclass(frozen=True)
class Targets:
    first_response: int | None
    next_response: int | None
    resolution: int | None


@dataclass(frozen=True)
class Rule:
    """One policy as loaded: what it matches and its targets per priority."""

    policy_id: int
    name: str
    inbox_id: int | None
    tag: str | None
    business_hours: bool
    warn_before: int
    targets: dict[str, Targets]
    calendar_id: int | None = None  # None: the inbox's calendar


@dataclass(frozen=True)
class Policies:
    rules: tuple[Rule, ...]
    calendars: Calendars

    def match(self, inbox_id: int, priority: str, tags: Iterable[str]) -> tuple[Rule, Targets] | None:
        names = set(tags)
        for rule in self.rules:
            if rule.inbox_id is not None and rule.inbox_id != inbox_id:
                continue
            if rule.tag is not None and rule.tag not in names:
                continue
            if priority in rule.targets:
                return rule, rule.targets[priority]
        return None

    def calendar(self, rule: Rule, inbox_id: int) -> Calendar | None:
        if not rule.business_hours:
            return None
        if rule.calendar_id is not None and rule.calendar_id in self.calendars.by_id:
            return self.calendars.by_id[rule.calendar_id]
        return self.calendars.for_inbox(inbox_id)


def load_policies(session: Session, calendars: Calendars | None = None) -> Policies:
    rules = []
    for p in session.scalars(
        select(SlaPolicy).where(SlaPolicy.active.is_(True)).order_by(SlaPolicy.position, SlaPolicy.id)
    ):
        targets = {
            t.priority: Targets(t.first_response_seconds, t.next_response_seconds, t.resolution_seconds)
            for t in p.targets
        }
        rules.append(
            Rule(p.id, p.name, p.inbox_id, p.tag, p.business_hours, p.warn_before_seconds, targets, p.calendar_id)
        )
    return Policies(tuple(rules), calendars if calendars is not None else load_calendars(session))


@dataclass(frozen=True)
class Clock:
    ticket_id: int
    metric: str  # first_response, next_response, resolution
    started_at: dt.datetime
    due_at: dt.datetime
    stopped_at: dt.datetime | None
    responded: bool  # stopped by what the metric waits for (a reply; a solve for resolution)
    policy_id: int
    warn_before: int
    calendar: Calendar | None

    def state(self, now: dt.datetime) -> str:
        """met, breached, cancelled (stopped without response before due), running, or overdue (running, late)."""
        if self.stopped_at is not None and self.stopped_at <= now:
            if self.stopped_at <= self.due_at:
                return "met" if self.responded else "cancelled"
            return "breached"
        return "overdue" if now >= self.due_at else "running"

    def breached_by(self, now: dt.datetime) -> bool:
        return self.state(now) in ("breached", "overdue")

    def seconds_left(self, now: dt.datetime) -> int:
        """Until the due time, in the policy's time (business seconds when it counts business hours)."""
        if now >= self.due_at:
            return -int((now - self.due_at).total_seconds())
        return business_seconds(now, self.due_at, self.calendar)

    @property
    def key(self) -> str:
        return f"{self.metric}@{self.started_at.isoformat()}"


def ticket_clocks(tl: Timeline, rule: Rule, targets: Targets, calendar: Calendar | None) -> list[Clock]:
    """Every SLA clock of one ticket under one policy, in start order."""
    out: list[Clock] = []
    for w in waits(tl):
        seconds = targets.first_response if w.first else targets.next_response
        if seconds is None:
            continue
        metric = "first_response" if w.first else "next_response"
        due = add_business(w.start, seconds, calendar)
        out.append(
            Clock(tl.ticket_id, metric, w.start, due, w.end, w.answered, rule.policy_id, rule.warn_before, calendar)
        )
    if targets.resolution is not None:
        for p in periods(tl):
            due = add_business(p.start, targets.resolution, calendar)
            out.append(
                Clock(tl.ticket_id, "resolution", p.start, due, p.end, True, rule.policy_id, rule.warn_before, calendar)
            )
    return sorted(out, key=lambda c: (c.started_at, c.metric))


def _tags(session: Session, ticket_ids: Sequence[int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for lo in range(0, len(ticket_ids), 900):
        rows = session.execute(
            select(TicketTag.ticket_id, Tag.name)
            .join(Tag, Tag.id == TicketTag.tag_id)
            .where(TicketTag.ticket_id.in_(ticket_ids[lo : lo + 900]))
        )
        for tid, name in rows:
            out.setdefault(tid, []).append(name)
    return out


def clocks_for(
    session: Session,
    ticket_ids: Iterable[int],
    policies: Policies | None = None,
    timelines: Mapping[int, Timeline] | None = None,
) -> dict[int, list[Clock]]:
    """The clocks of many tickets (current priority, tags and inbox pick the policy); ``timelines`` already
    loaded are reused, the others loaded."""
    ids = sorted(set(ticket_ids))
    policies = policies if policies is not None else load_policies(session)
    if not policies.rules or not ids:
        return {i: [] for i in ids}
    known = dict(timelines or {})
    missing = [i for i in ids if i not in known]
    known.update((tl.ticket_id, tl) for tl in load_timelines(session, missing))
    tags = _tags(session, ids) if any(rule.tag is not None for rule in policies.rules) else {}
    out: dict[int, list[Clock]] = {i: [] for i in ids}
    for tid in ids:
        if (tl := known.get(tid)) is None:
            continue  # merged away
        found = policies.match(tl.inbox_id, tl.priority, tags.get(tid, []))
        if found is not None:
            rule, targets = found
            out[tid] = ticket_clocks(tl, rule, targets, policies.calendar(rule, tl.inbox_id))
    return out


@dataclass(frozen=True)
class SlaStatus:
    """The most urgent running clock of a ticket: the list badge ("due in 2h", "overdue 15m")."""

    metric: str
    due_at: dt.datetime
    seconds_left: int  # negative: overdue by that many seconds
    state: str  # running, warning, overdue

    @property
    def label(self) -> str:
        return (
            f"overdue {_short(-self.seconds_left)}" if self.seconds_left < 0 else f"due in {_short(self.seconds_left)}"
        )


def _short(seconds: int) -> str:
    if seconds >= 86400:
        return f"{seconds // 86400}d {seconds % 86400 // 3600}h"
    if seconds >= 3600:
        return f"{seconds // 3600}h {seconds % 3600 // 60}m"
    return f"{max(seconds, 0) // 60}m"


def status_of(clocks: Sequence[Clock], now: dt.datetime) -> SlaStatus | None:
    running = [c for c in clocks if c.state(now) in ("running", "overdue")]
    if not running:
        return None
    c = min(running, key=lambda c: c.due_at)
    left = c.seconds_left(now)
    state = "overdue" if left < 0 else ("warning" if left <= c.warn_before else "running")
    return SlaStatus(c.metric, c.due_at, left, state)


def sla_status(ticket: Ticket, now: dt.datetime, *, session: Session | None = None) -> SlaStatus | None:
    """Due in / overdue for one ticket, or None when no policy applies or no clock runs."""
    session = session or object_session(ticket)
    if session is None:
        raise ValueError("sla_status needs a ticket attached to a session")
    return sla_statuses(session, [ticket.id], now).get(ticket.id)  # the list's badges, for one ticket


def sla_statuses(session: Session, ticket_ids: Iterable[int], now: dt.datetime) -> dict[int, SlaStatus | None]:
    """Badges for a list page: a handful of queries for the whole page."""
    return {tid: status_of(clocks, now) for tid, clocks in clocks_for(session, ticket_ids).items()}


def sweep_sla(session: Session, now: dt.datetime) -> dict[str, int]:
    """Record an ``sla_warning`` event when a running clock gets within its policy's warning time, and an
    ``sla_breach`` event once its due time passed without a response. Idempotent: each clock gets at most one of
    each (keyed by metric and start in the event data). Flushes, never commits."""
    recent = select(TicketEvent.ticket_id).where(
        TicketEvent.kind.in_(("status", "snoozed")), TicketEvent.created_at >= now - SWEEP_LOOKBACK
    )
    ids = list(
        session.scalars(
            select(Ticket.id).where(
                Ticket.merged_into_id.is_(None), or_(Ticket.status.in_(OPEN_STATUSES), Ticket.id.in_(recent))
            )
        )
    )
    counts = {WARNING: 0, BREACH: 0}
    if not ids:
        return counts
    all_clocks = clocks_for(session, ids)
    done: set[tuple[int, str, str]] = set()
    for lo in range(0, len(ids), 900):
        rows = session.execute(
            select(TicketEvent.ticket_id, TicketEvent.kind, TicketEvent.data).where(
                TicketEvent.ticket_id.in_(ids[lo : lo + 900]), TicketEvent.kind.in_((WARNING, BREACH))
            )
        )
        done.update((tid, kind, str(data.get("clock"))) for tid, kind, data in rows)
    tickets: dict[int, Ticket] = {}
    for tid, clocks in all_clocks.items():
        for c in clocks:
            if c.stopped_at is not None and c.stopped_at < now - SWEEP_LOOKBACK:
                continue
            state = c.state(now)
            if state in ("breached", "overdue"):
                kind = BREACH
            elif state == "running" and c.seconds_left(now) <= c.warn_before:
                kind = WARNING
            else:
                continue
            if (tid, kind, c.key) in done or (kind == WARNING and (tid, BREACH, c.key) in done):
                continue
            ticket = tickets.get(tid) or session.get(Ticket, tid)
            assert ticket is not None
            tickets[tid] = ticket
            row = audit.log(
                session,
                ticket,
                kind,
                data={
                    "clock": c.key,
                    "metric": c.metric,
                    "policy_id": c.policy_id,
                    "started_at": c.started_at.isoformat(),
                    "due_at": c.due_at.isoformat(),
                    "stopped_at": c.stopped_at.isoformat() if c.stopped_at else None,
                },
            )
            row.created_at = now
            done.add((tid, kind, c.key))
            counts[kind] += 1
    session.flush()
    return counts


@dataclass(frozen=True)
class SlaSample:
    """One decided clock in a report period: met (at its stop) or breached (at its due time)."""

    figure: str  # sla_first_response, sla_next_response, sla_resolution
    ticket_id: int
    start: dt.datetime
    end: dt.datetime  # when it was decided: groups it into days/weeks/months
    due_at: dt.datetime
    met: bool
    agent_id: int | None
    team_id: int | None
    inbox_id: int
    channel: str


def compliance(report: Report, now: dt.datetime, policies: Policies | None = None) -> list[SlaSample]:
    """SLA compliance of the period: every clock decided in it. Met at its stop time, breached at its due time."""
    f = report.filters
    policies = policies if policies is not None else load_policies(report.session, report.calendars)
    if not policies.rules:
        return []
    horizon = min(now, f.end)
    ids = {tl.ticket_id for tl in report.timelines}
    # Also the tickets that were open during the period with nothing happening in it: open now, or changed status
    # since the period began. An unanswered ticket breaches without any activity.
    changed = select(TicketEvent.ticket_id).where(
        TicketEvent.kind.in_(("status", "snoozed")), TicketEvent.created_at >= f.start
    )
    open_then = select(Ticket.id).where(
        Ticket.created_at < f.end, or_(Ticket.status.in_(OPEN_STATUSES), Ticket.id.in_(changed))
    )
    ids.update(report.session.scalars(report.ticket_scope(open_then)))
    tls = {tl.ticket_id: tl for tl in report.timelines}
    tls.update((tl.ticket_id, tl) for tl in load_timelines(report.session, ids - set(tls)))
    out: list[SlaSample] = []
    for tid, clocks in clocks_for(report.session, ids, policies, tls).items():
        tl = tls.get(tid)
        if tl is None:
            continue
        for c in clocks:
            state = c.state(horizon)
            if state == "met" and c.stopped_at is not None:
                at, met = c.stopped_at, True
            elif state in ("breached", "overdue"):
                at, met = c.due_at, False
            else:
                continue
            if not f.start <= at < f.end:
                continue
            agent = tl.assignee_at(at)
            out.append(
                SlaSample(
                    f"sla_{c.metric}",
                    tid,
                    c.started_at,
                    at,
                    c.due_at,
                    met,
                    agent,
                    tl.team_at(at),
                    tl.inbox_id,
                    tl.channel,
                )
            )
    return sorted(
        (
            s
            for s in out
            if (f.team_id is None or s.team_id == f.team_id) and (f.agent_id is None or s.agent_id == f.agent_id)
        ),
        key=lambda s: (s.end, s.ticket_id, s.figure),
    )
