"""The report figures of tests/reports/world.py, computed by hand, on SQLite and PostgreSQL.

H = 3600 s. Berlin office hours Mon-Fri 09:00-17:00 (07:00-15:00 UTC before Sun 25 Oct, 08:00-16:00 after),
Mon 26 Oct a holiday. Inbox 2 has no calendar, so its business time is calendar time.
"""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy.orm import Session

from inbox.ingest import ingest
from inbox.models import Message
from tests.factories import inbound, make_inbox, make_user
from tests.reports.world import END, START, World, Z, build
from tickets import lifecycle
from tickets.metrics import Filters, Report, group, nearest_rank, summarize

H = 3600


@pytest.fixture
def world(session: Session) -> World:
    w = build(session)
    session.commit()
    return w


def report(session: Session, **kw: object) -> Report:
    return Report(session, Filters(START, END, tz="Europe/Berlin", **kw))  # type: ignore[arg-type]


def figures(samples: list) -> list[tuple[int, int, int]]:  # type: ignore[type-arg]
    return [(s.ticket_id, s.seconds, s.business_seconds) for s in samples]


def test_first_response_times(session: Session, world: World) -> None:
    w = world
    assert figures(report(session).first_responses()) == [
        (w.t2, 1 * H, 1 * H),  # Wed 10:30 -> 11:30 CEST; the auto-reply at 08:31 and the note do not count
        (w.t3, 5 * H, 0),  # Sat 22:30 -> Sun 03:30 UTC: 5 real hours across the DST night, all weekend
        (w.t1, 91 * H, 2 * H),  # Fri 14:00 -> Tue 09:00 UTC (90 h on the wall clock); Fri 1 h + Tue 1 h
        (w.t6, 600, 600),  # inbox 2, no calendar
    ]
    s = summarize(report(session).first_responses())
    # sorted calendar [600, 1 H, 5 H, 91 H]: median = rank ceil(0.5*4)=2, p90 = rank ceil(0.9*4)=4
    # sorted business [0, 600, 1 H, 2 H]
    assert (s.count, s.median, s.p90, s.median_business, s.p90_business) == (4, H, 91 * H, 600, 2 * H)


def test_next_response_times_wait_from_the_first_unanswered_message(session: Session, world: World) -> None:
    assert figures(report(session).next_responses()) == [
        (world.t2, 2 * H, 2 * H),  # customer 10:00 (and 10:30, already waiting) -> reply 12:00
        (world.t2, 16 * H + 1800, 1800),  # Thu 15:00 (17:00 CEST, closing time) -> Fri 07:30 UTC: Fri 09:00-09:30
    ]


def test_resolution_counts_again_from_the_reopening(session: Session, world: World) -> None:
    w = world
    samples = report(session).resolutions()
    assert figures(samples) == [
        (w.t2, 4 * H + 1800, 4 * H + 1800),  # Wed 08:30 -> 13:00, all in office hours
        (w.t2, 17 * H, 1 * H),  # reopened Thu 15:00 -> solved Fri 08:00: Fri 09:00-10:00 CEST
        (w.t1, 92 * H, 3 * H),  # Fri 14:00 -> Tue 10:00: Fri 1 h + Tue 09:00-11:00 CET
    ]
    # Attributed to the assignee at the moment of solving, although t2 belongs to A today.
    assert [s.agent_id for s in samples] == [w.b, w.a, w.a]
    s = summarize(samples)
    assert (s.median, s.p90, s.median_business, s.p90_business) == (17 * H, 92 * H, 3 * H, 4 * H + 1800)


def test_volume_by_berlin_week_and_day(session: Session, world: World) -> None:
    r = report(session)
    created = {k: len(v) for k, v in group(r.created(), "week", "Europe/Berlin").items()}
    solved = {k: len(v) for k, v in group(r.solved(), "week", "Europe/Berlin").items()}
    assert created == {dt.date(2026, 10, 19): 3, dt.date(2026, 10, 26): 2}  # t3 is Sun 00:30 local: week of 19th
    assert solved == {dt.date(2026, 10, 19): 2, dt.date(2026, 10, 26): 1}
    days = {k: [s.ticket_id for s in v] for k, v in group(r.created(), "day", "Europe/Berlin").items()}
    assert days[dt.date(2026, 10, 25)] == [world.t3]  # Saturday 22:30 UTC is Sunday in Berlin


def test_backlog_with_ages(session: Session, world: World) -> None:
    w = world
    at_end = report(session).backlog()
    assert figures(at_end) == [
        (w.t3, 8 * 24 * H + 5400, 32 * H),  # Sat 24 22:30 -> Mon 2 Nov 00:00; Tue-Fri 4 x 8 h (Mon holiday)
        (w.t4, 6 * 24 * H + 14 * H, 32 * H),  # Mon 26 10:00 -> ...; the same four office days
        (w.t6, 5 * 24 * H + 12 * H, 5 * 24 * H + 12 * H),  # inbox 2: calendar time
    ]
    assert [s.agent_id for s in at_end] == [w.a, None, w.c]
    # Thu 22 16:00: only t2 was open (reopened at 15:00, solved again on Friday); today it is solved.
    assert figures(report(session).backlog(Z("2026-10-22 16:00"))) == [(w.t2, 31 * H + 1800, 14 * H + 1800)]
    # Thu 22 12:00: t2 was solved (Wed 13:00) and t1 did not exist yet.
    assert report(session).backlog(Z("2026-10-22 12:00")) == []


def test_filters_use_the_team_and_agent_of_the_moment(session: Session, world: World) -> None:
    w = world
    team1 = [s.ticket_id for s in report(session, team_id=w.team1).first_responses()]
    team2 = [s.ticket_id for s in report(session, team_id=w.team2).first_responses()]
    assert team1 == [w.t2, w.t3]
    assert team2 == [w.t1, w.t6]  # t1 moved to team 2 on Monday, before its reply
    assert [s.ticket_id for s in report(session, team_id=w.team1).created()] == [w.t2, w.t1, w.t3, w.t4]
    alice = summarize(report(session, agent_id=w.a).first_responses())
    assert (alice.count, alice.median, alice.p90, alice.median_business, alice.p90_business) == (
        2,
        5 * H,
        91 * H,
        0,
        2 * H,
    )
    inbox1 = summarize(report(session, inbox_ids=frozenset({w.inbox1})).first_responses())
    assert (inbox1.median, inbox1.p90, inbox1.median_business, inbox1.p90_business) == (5 * H, 91 * H, H, 2 * H)


def test_replies_per_agent(session: Session, world: World) -> None:
    by_agent = group(report(session).replies(), "agent")
    w = world
    assert {k: len(v) for k, v in by_agent.items()} == {w.a: 3, w.b: 2, w.c: 1}  # no auto-reply, no note
    assert {k: len({s.ticket_id for s in v}) for k, v in by_agent.items()} == {w.a: 3, w.b: 1, w.c: 1}


def test_a_period_before_the_history_is_empty(session: Session, world: World) -> None:
    r = Report(session, Filters(Z("2026-09-01 00:00"), Z("2026-10-01 00:00")))
    assert r.created() == r.first_responses() == r.resolutions() == r.backlog() == []


def test_nearest_rank() -> None:
    assert nearest_rank([], 50) is None
    assert nearest_rank([7], 90) == 7
    assert nearest_rank([4, 1, 3, 2], 50) == 2  # rank ceil(2) = 2
    assert nearest_rank(list(range(1, 11)), 90) == 9  # rank ceil(9) = 9
    assert nearest_rank(list(range(1, 12)), 90) == 10  # rank ceil(9.9) = 10


def test_figures_of_a_history_written_by_the_real_lifecycle(session: Session) -> None:
    """ingest → note → auto-reply → reply → solve → customer reopens → reply → solve, with real timestamps."""
    inbox = make_inbox(session)
    agent = make_user(session)
    sent = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    first = ingest(session, inbox.id, inbound(handle="ann@example.com", sent_at=sent))
    assert first is not None
    ticket = first.ticket
    lifecycle.add_note(session, ticket, "internal", by=agent.id)
    auto = Message(
        ticket_id=ticket.id,
        inbox_id=inbox.id,
        contact_id=ticket.contact_id,
        direction="outbound",
        channel="email",
        is_auto=True,
        author_id=agent.id,
        body_text="We got your mail",
    )
    session.add(auto)
    answer = lifecycle.reply(session, ticket, "Hello Ann", by=agent.id, new_status="solved")
    session.commit()  # event rows take their time at flush: the customer's next message comes after it
    again = ingest(
        session,
        inbox.id,
        inbound(handle="ann@example.com", references=(first.message_id_header or "",), sent_at=dt.datetime.now(dt.UTC)),
    )
    assert again is not None and again.ticket_id == ticket.id and ticket.status == "open"
    second = lifecycle.reply(session, ticket, "Sure", by=agent.id, new_status="solved")
    session.commit()
    r = Report(session, Filters(sent - dt.timedelta(days=1), dt.datetime.now(dt.UTC) + dt.timedelta(days=1)))
    # No calendar: business time equals calendar time. The wait starts at the sent time (earlier than arrival).
    frt = int((answer.created_at - sent).total_seconds())
    assert figures(r.first_responses()) == [(ticket.id, frt, frt)]
    wait2 = again.sent_at if again.sent_at and again.sent_at < again.created_at else again.created_at
    assert [s.seconds for s in r.next_responses()] == [int((second.created_at - wait2).total_seconds())]
    assert len(r.resolutions()) == 2 and [s.agent_id for s in r.replies()] == [agent.id, agent.id]
