"""The backlog read from the open stretches (``report_open``) equals the history-based definition.

``tickets.metrics.Report.backlog`` rebuilds the timelines of the tickets that may be open at an instant (the
definition, hand-computed in test_figures.py); ``tickets.summary.SummaryReport.backlog`` reads the stretches the
commit hook keeps, and ``backlog_counts`` counts their age bands in SQL. Both run on SQLite and PostgreSQL over the
fixed world and over random histories (reopenings, reassignments, team moves, snoozes, merges, events at the same
instant, a current status that disagrees with the history), at every instant where something changes, just
before and after it, and with every filter.
"""

from __future__ import annotations

import datetime as dt
import random

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from inbox.models import Contact, Ticket, TicketEvent
from inbox.report_models import ReportOpen
from tests.reports.world import END, START, World, Z, build
from tickets import lifecycle
from tickets.metrics import Filters, Report, load_timelines
from tickets.summary import SummaryReport, open_stretches

H = 3600
BANDS = [0, 86400, 3 * 86400, 7 * 86400]
HIGHS = [*BANDS[1:], 10**9]
SECOND = dt.timedelta(seconds=1)


@pytest.fixture
def world(session: Session) -> World:
    w = build(session)
    session.commit()
    return w


def filter_sets(w: World) -> list[dict[str, object]]:
    return [
        {},
        {"team_id": w.team1},
        {"team_id": w.team2},
        {"agent_id": w.a},
        {"agent_id": w.b},
        {"agent_id": w.c},
        {"inbox_ids": frozenset({w.inbox1})},
        {"inbox_ids": frozenset({w.inbox2}), "team_id": w.team2},
        {"channel": "email"},
        {"channel": "telegram"},
    ]


def instants(session: Session) -> list[dt.datetime]:
    """Every instant at which a ticket is created or changes, one second either side, and far later."""
    marks = set(session.scalars(select(TicketEvent.created_at))) | set(session.scalars(select(Ticket.created_at)))
    out = {m + d for m in marks for d in (-SECOND, dt.timedelta(0), SECOND)}
    return sorted(out | {Z("2020-01-01 00:00"), dt.datetime.now(dt.UTC) + dt.timedelta(days=30)})


def assert_same_backlog(
    session: Session, w: World, at: list[dt.datetime], filters: list[dict[str, object]] | None = None
) -> int:
    """Compares the two at every instant with every filter; returns how many open tickets were compared."""
    seen = 0
    for kw in filter_sets(w) if filters is None else filters:
        f = Filters(START, END, **kw)  # type: ignore[arg-type]
        history, stored = Report(session, f), SummaryReport(session, f)
        for when in at:
            expected = history.backlog(when)
            assert stored.backlog(when) == expected, (when, kw)
            counts = [
                sum(1 for s in expected if low <= s.seconds < high) for low, high in zip(BANDS, HIGHS, strict=True)
            ]
            assert history.backlog_counts(when, BANDS) == counts, (when, kw)
            assert stored.backlog_counts(when, BANDS) == counts, (when, kw)
            seen += len(expected)
    return seen


def test_backlog_of_the_fixture_equals_the_history(session: Session, world: World) -> None:
    w = world
    stored = SummaryReport(session, Filters(START, END, tz="Europe/Berlin"))
    # The hand-computed backlog of test_figures.py, read from the stretches.
    assert [(s.ticket_id, s.seconds, s.business_seconds) for s in stored.backlog(Z("2026-10-22 16:00"))] == [
        (w.t2, 31 * H + 1800, 14 * H + 1800)
    ]
    assert stored.backlog(Z("2026-10-22 12:00")) == []
    assert [s.ticket_id for s in stored.backlog()] == [w.t3, w.t4, w.t6]
    # t2 reassigned from Bob to Alice on Thu 22 16:00 while reopened: the backlog follows the assignee of the time.
    bob = SummaryReport(session, Filters(START, END, agent_id=w.b))
    assert [s.ticket_id for s in bob.backlog(Z("2026-10-22 15:59"))] == [w.t2]
    assert bob.backlog(Z("2026-10-22 16:00")) == []
    assert assert_same_backlog(session, w, instants(session)) > 0


def _random_history(session: Session, w: World, rng: random.Random, n: int) -> list[int]:
    """Tickets with random status, snooze, assignee and team events (some at the same instant, some before the
    ticket's creation time), a current status that usually, but not always, agrees with the history."""
    contact = Contact(name="Random customer")
    session.add(contact)
    session.flush()
    agents, teams = [w.a, w.b, w.c, None], [w.team1, w.team2, None]
    base = Z("2026-10-19 00:00")
    ids = []
    for _ in range(n):
        inbox = rng.choice([w.inbox1, w.inbox2])
        created = base + dt.timedelta(minutes=rng.randrange(0, 14 * 24 * 60))
        status, assignee, team = "new", rng.choice(agents), rng.choice(teams)
        ticket = Ticket(
            inbox_id=inbox,
            contact_id=contact.id,
            channel=rng.choice(["email", "email", "telegram"]),
            subject="random",
            status=status,
            assignee_id=assignee,
            team_id=team,
            created_at=created,
            updated_at=created,
            last_activity_at=created,
        )
        session.add(ticket)
        session.flush()
        ids.append(ticket.id)
        at = created - dt.timedelta(minutes=rng.choice([0, 0, 0, 30]))
        events = [TicketEvent(ticket_id=ticket.id, kind="created", data={}, created_at=created)]
        for _ in range(rng.randrange(0, 9)):
            at += rng.choice([dt.timedelta(0), dt.timedelta(minutes=rng.randrange(1, 3 * 24 * 60))])
            kind = rng.choice(["status", "status", "snoozed", "assignee", "team"])
            if kind == "status":
                to = rng.choice(["open", "pending", "solved", "closed", "new"])
                events.append(
                    TicketEvent(ticket_id=ticket.id, kind=kind, data={"from": status, "to": to}, created_at=at)
                )
                status = to
            elif kind == "snoozed":
                until = (at + dt.timedelta(days=1)).isoformat()
                events.append(
                    TicketEvent(ticket_id=ticket.id, kind=kind, data={"from": status, "until": until}, created_at=at)
                )
                status = "snoozed"
            elif kind == "assignee":
                to_agent = rng.choice(agents)
                data = {"from": assignee, "to": to_agent}
                events.append(TicketEvent(ticket_id=ticket.id, kind=kind, data=data, created_at=at))
                assignee = to_agent
            else:
                to_team = rng.choice(teams)
                events.append(
                    TicketEvent(ticket_id=ticket.id, kind=kind, data={"from": team, "to": to_team}, created_at=at)
                )
                team = to_team
        session.add_all(events)
        ticket.status = status if rng.random() < 0.85 else rng.choice(["open", "solved", "new", "closed"])
        if rng.random() < 0.7:
            ticket.assignee_id, ticket.team_id = assignee, team
    session.flush()
    for source in rng.sample(ids, n // 8):  # merged away: never in the backlog
        target = next(i for i in ids if i != source)
        merged = session.get(Ticket, source)
        assert merged is not None
        merged.merged_into_id = target
    return ids


@pytest.mark.parametrize("seed", [1, 2])
def test_backlog_of_random_histories_equals_the_history(session: Session, world: World, seed: int) -> None:
    rng = random.Random(seed)
    ids = _random_history(session, world, rng, 30)
    session.commit()
    w = world
    # Every instant where something changes, and 60 others around them; the filters the stretches carry.
    marks = sorted(set(session.scalars(select(TicketEvent.created_at).where(TicketEvent.ticket_id.in_(ids)))))
    near = [m + rng.choice([-SECOND, SECOND, dt.timedelta(hours=rng.randrange(1, 48))]) for m in rng.sample(marks, 60)]
    filters: list[dict[str, object]] = [
        {},
        {"team_id": w.team2},
        {"agent_id": w.a},
        {"inbox_ids": frozenset({w.inbox2}), "channel": "telegram"},
    ]
    assert assert_same_backlog(session, w, sorted({*marks, *near}), filters) > 0
    # The stored stretches are exactly the ones the timelines give (merged-away tickets have none).
    tls = load_timelines(session, ids)
    expected = sorted((tl.ticket_id, s.start, s.end) for tl in tls for s in open_stretches(tl))
    o = ReportOpen.__table__.c
    stored = sorted(tuple(r) for r in session.execute(select(o.ticket_id, o.from_at, o.until_at)))
    assert [r for r in stored if r[0] in ids] == expected
    merged = [t for t in ids if session.get(Ticket, t).merged_into_id is not None]  # type: ignore[union-attr]
    assert merged and session.scalar(select(func.count()).where(ReportOpen.ticket_id.in_(merged))) == 0


def test_the_stretches_follow_changes_in_the_same_commit(session: Session, world: World) -> None:
    """Through the real lifecycle (times are now): reassign, move team, snooze, solve, reopen, merge."""
    w = world
    t3, t4, t6 = (session.get(Ticket, t) for t in (w.t3, w.t4, w.t6))
    assert t3 is not None and t4 is not None and t6 is not None
    later = [dt.datetime.now(dt.UTC) + dt.timedelta(days=d) for d in (1, 10)]
    steps = [
        lambda: lifecycle.assign(session, t3, w.b, by=w.a),
        lambda: lifecycle.set_team(session, t3, w.team2, by=w.a),
        lambda: lifecycle.snooze(session, t6, dt.datetime.now(dt.UTC) + dt.timedelta(hours=2), by=w.c),
        lambda: lifecycle.set_status(session, t3, "solved", by=w.b),
        lambda: lifecycle.set_status(session, t3, "open", by=w.b),
        lambda: lifecycle.merge_tickets(session, t4, t6, by=w.c),
    ]
    for step in steps:
        step()
        session.commit()
        assert assert_same_backlog(session, w, [*instants(session)[-4:], *later], filter_sets(w)[:6]) > 0
    assert session.scalar(select(func.count()).where(ReportOpen.ticket_id == w.t4)) == 0
    bob = SummaryReport(session, Filters(START, END, agent_id=w.b, team_id=w.team2))
    assert [s.ticket_id for s in bob.backlog(later[0])] == [w.t3]
