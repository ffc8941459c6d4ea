"""SLA clocks, badges, the sweep and compliance over tests/reports/world.py, by hand, on both databases.

Policy "Standard" (inbox 1 only, business hours): normal = first response 4 h, next response 2 h, resolution
16 h; high = first response 1 h only; warning 30 minutes before. Inbox 2 has no policy.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from inbox.models import Ticket, TicketEvent
from inbox.sla_models import BusinessCalendar, SlaPolicy
from tests.reports.world import END, START, World, Z, build
from tickets.metrics import Filters, Report
from tickets.sla import clocks_for, compliance, sla_status, sweep_sla


@pytest.fixture
def world(session: Session) -> World:
    w = build(session)
    session.commit()
    return w


def test_clocks_and_their_due_times(session: Session, world: World) -> None:
    w = world
    clocks = clocks_for(session, [w.t1, w.t2, w.t3, w.t4, w.t6])
    got = {tid: [(c.metric, c.due_at, c.state(END)) for c in cs] for tid, cs in clocks.items()}
    assert got[w.t2] == [
        ("first_response", Z("2026-10-21 12:30"), "met"),  # 10:30 CEST + 4 h
        ("resolution", Z("2026-10-23 08:30"), "met"),  # Wed 6.5 h + Thu 8 h + Fri 1.5 h -> Fri 10:30 CEST
        ("next_response", Z("2026-10-21 12:00"), "met"),  # replied exactly at the due time: met
        ("next_response", Z("2026-10-23 09:00"), "met"),  # Thu 17:00 CEST (closed) -> Fri 09:00 + 2 h
        ("resolution", Z("2026-10-27 16:00"), "met"),  # reopened Thu 15:00: Fri 8 h, holiday, Tue 8 h
    ]
    assert got[w.t1] == [
        ("first_response", Z("2026-10-27 11:00"), "met"),
        ("resolution", Z("2026-10-28 15:00"), "met"),
    ]
    assert got[w.t3] == [("first_response", Z("2026-10-27 09:00"), "met")]  # high: 1 h, next open hour Tue
    assert got[w.t4] == [
        ("first_response", Z("2026-10-27 12:00"), "overdue"),  # holiday start: Tue 09:00 CET + 4 h
        ("resolution", Z("2026-10-28 16:00"), "overdue"),
    ]
    assert got[w.t6] == []  # no policy for inbox 2


def test_sla_status_badge(session: Session, world: World) -> None:
    t4 = session.get(Ticket, world.t4)
    assert t4 is not None
    before = sla_status(t4, Z("2026-10-27 11:00"))
    assert before is not None
    assert (before.metric, before.seconds_left, before.state, before.label) == (
        "first_response",
        3600,
        "running",
        "due in 1h 0m",
    )
    warn = sla_status(t4, Z("2026-10-27 11:45"))
    assert warn is not None and (warn.seconds_left, warn.state) == (900, "warning")
    late = sla_status(t4, Z("2026-10-27 12:15"))
    assert late is not None and (late.seconds_left, late.state, late.label) == (-900, "overdue", "overdue 15m")
    t6 = session.get(Ticket, world.t6)
    assert t6 is not None and sla_status(t6, Z("2026-10-27 12:15")) is None


def _records(session: Session) -> list[tuple[int, str, str]]:
    rows = session.execute(
        select(TicketEvent.ticket_id, TicketEvent.kind, TicketEvent.data)
        .where(TicketEvent.kind.in_(("sla_warning", "sla_breach")))
        .order_by(TicketEvent.id)
    )
    return [(tid, kind, data["metric"]) for tid, kind, data in rows]


def test_sweep_warns_then_breaches_once(session: Session, world: World) -> None:
    t4 = world.t4
    assert sweep_sla(session, Z("2026-10-27 11:00")) == {"sla_warning": 0, "sla_breach": 0}  # 1 h left > 30 min
    assert sweep_sla(session, Z("2026-10-27 11:45")) == {"sla_warning": 1, "sla_breach": 0}
    assert sweep_sla(session, Z("2026-10-27 11:46")) == {"sla_warning": 0, "sla_breach": 0}  # idempotent
    assert sweep_sla(session, Z("2026-10-27 12:00")) == {"sla_warning": 0, "sla_breach": 1}
    session.commit()
    assert sweep_sla(session, Z("2026-10-27 12:01")) == {"sla_warning": 0, "sla_breach": 0}
    assert sweep_sla(session, Z("2026-10-28 15:40")) == {"sla_warning": 1, "sla_breach": 0}  # resolution, 20 min left
    assert sweep_sla(session, Z("2026-10-28 16:00")) == {"sla_warning": 0, "sla_breach": 1}
    session.commit()
    assert _records(session) == [
        (t4, "sla_warning", "first_response"),
        (t4, "sla_breach", "first_response"),
        (t4, "sla_warning", "resolution"),
        (t4, "sla_breach", "resolution"),
    ]
    breach = session.scalars(select(TicketEvent).where(TicketEvent.kind == "sla_breach")).first()
    assert breach is not None and breach.created_at == Z("2026-10-27 12:00")
    assert breach.data["due_at"] == Z("2026-10-27 12:00").isoformat()


def test_compliance(session: Session, world: World) -> None:
    w = world
    samples = compliance(Report(session, Filters(START, END)), now=END)
    got = [(s.ticket_id, s.figure, s.met, s.end) for s in samples]
    assert got == [
        (w.t2, "sla_first_response", True, Z("2026-10-21 09:30")),
        (w.t2, "sla_next_response", True, Z("2026-10-21 12:00")),
        (w.t2, "sla_resolution", True, Z("2026-10-21 13:00")),
        (w.t2, "sla_next_response", True, Z("2026-10-23 07:30")),
        (w.t2, "sla_resolution", True, Z("2026-10-23 08:00")),
        (w.t3, "sla_first_response", True, Z("2026-10-25 03:30")),
        (w.t1, "sla_first_response", True, Z("2026-10-27 09:00")),
        (w.t1, "sla_resolution", True, Z("2026-10-27 10:00")),
        (w.t4, "sla_first_response", False, Z("2026-10-27 12:00")),  # breached at its due time
        (w.t4, "sla_resolution", False, Z("2026-10-28 16:00")),
    ]
    # first response 3 of 4 met (75 %), next response 2 of 2, resolution 3 of 4.
    # Seen on Tue 27 11:00, t4's breach has not happened yet.
    early = compliance(Report(session, Filters(START, END)), now=Z("2026-10-27 11:00"))
    assert [s.ticket_id for s in early if not s.met] == []


def test_a_breach_counts_in_a_period_without_activity(session: Session, world: World) -> None:
    """t4 is solved on Fri 30 Oct; on Tue 27 nothing happened to it, yet its first response breached at 12:00."""
    t4 = session.get(Ticket, world.t4)
    assert t4 is not None
    t4.status = "solved"
    session.add(
        TicketEvent(
            ticket_id=t4.id, kind="status", data={"from": "new", "to": "solved"}, created_at=Z("2026-10-30 10:00")
        )
    )
    session.commit()
    tuesday = Report(session, Filters(Z("2026-10-27 00:00"), Z("2026-10-28 00:00")))
    got = [(s.ticket_id, s.figure, s.met, s.end) for s in compliance(tuesday, now=END)]
    assert (world.t4, "sla_first_response", False, Z("2026-10-27 12:00")) in got
    # Solved Fri 30 10:00, after its resolution due time (Wed 28 16:00): breached on Wednesday.
    wednesday = Report(session, Filters(Z("2026-10-28 00:00"), Z("2026-10-29 00:00")))
    assert [(s.ticket_id, s.figure, s.met) for s in compliance(wednesday, now=END)] == [
        (world.t4, "sla_resolution", False)
    ]


def test_a_policy_may_count_in_a_calendar_of_its_own(session: Session, world: World) -> None:
    """The policy picks a 24/7 calendar: t4's first response (Mon 26 10:00, the inbox's holiday) is due 4 h later,
    although the inbox's own calendar keeps counting its business time in reports."""
    always = BusinessCalendar(
        name="Always", timezone="UTC", hours={d: [["00:00", "24:00"]] for d in ("mon", "tue", "wed", "thu", "fri")}
    )
    session.add(always)
    session.flush()
    policy = session.scalars(select(SlaPolicy)).one()
    policy.calendar_id = always.id
    session.commit()
    clocks = clocks_for(session, [world.t4])[world.t4]
    assert [(c.metric, c.due_at) for c in clocks][0] == ("first_response", Z("2026-10-26 14:00"))
    r = Report(session, Filters(START, END))
    assert [s.business_seconds for s in r.backlog() if s.ticket_id == world.t4] == [32 * 3600]
