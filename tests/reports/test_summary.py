"""The report summary (``report_sample``) gives exactly the event-based figures, and stays so as history changes.

``tickets.metrics.Report`` rebuilds each figure from the messages and events (the definition, with hand-computed
figures in test_figures.py and test_sla.py); ``tickets.summary.SummaryReport`` reads the rows the commit hook keeps.
Both run on the fixed world (weekend, holiday, DST change, a reopened and reassigned ticket) on SQLite and
PostgreSQL, with every filter, and after changes that must update the rows in the same commit.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from inbox.models import Inbox, Message, Ticket, TicketEvent
from inbox.report_models import ReportOpen, ReportSample
from inbox.sla_models import BusinessCalendar, BusinessHoliday, SlaTarget
from tests.reports.world import END, START, World, Z, build, sent_reply
from tickets import lifecycle, sla, summary
from tickets.metrics import Filters, Report
from tickets.summary import SummaryReport

H = 3600
FIGURES = ("created", "solved", "first_response", "next_response", "resolution", "replies")


@pytest.fixture
def world(session: Session) -> World:
    w = build(session)
    session.commit()
    return w


def filter_sets(w: World) -> list[dict[str, object]]:
    return [
        {},
        {"tz": "Europe/Berlin"},
        {"team_id": w.team1},
        {"team_id": w.team2},
        {"agent_id": w.a},
        {"agent_id": w.b},
        {"inbox_ids": frozenset({w.inbox1})},
        {"inbox_ids": frozenset({w.inbox2}), "agent_id": w.c},
        {"channel": "email"},
        {"channel": "telegram"},
    ]


def assert_same(session: Session, w: World, start: dt.datetime = START, end: dt.datetime = END) -> None:
    for kw in filter_sets(w):
        f = Filters(start, end, **kw)  # type: ignore[arg-type]
        history, stored = Report(session, f), SummaryReport(session, f)
        for figure in FIGURES:
            assert stored.figure(figure) == history.figure(figure), (figure, kw)
        for now in (Z("2026-10-21 12:00"), Z("2026-10-27 11:00"), Z("2026-10-27 12:00"), end, Z("2027-01-01 00:00")):
            assert stored.compliance(now) == sla.compliance(history, now), (now, kw)


def test_summary_figures_equal_the_event_based_ones(session: Session, world: World) -> None:
    assert_same(session, world)
    # Narrow periods too: one Berlin day, the DST night, the reopened ticket's Friday.
    assert_same(session, world, Z("2026-10-24 22:00"), Z("2026-10-25 23:00"))
    assert_same(session, world, Z("2026-10-23 00:00"), Z("2026-10-24 00:00"))
    r = SummaryReport(session, Filters(START, END))
    # The hand-computed figures of test_figures.py, read from the rows: the reopened t2 has two resolutions, the
    # second counted from its reopening, in Berlin business hours.
    assert [(s.ticket_id, s.seconds, s.business_seconds) for s in r.resolutions()] == [
        (world.t2, 4 * H + 1800, 4 * H + 1800),
        (world.t2, 17 * H, 1 * H),
        (world.t1, 92 * H, 3 * H),
    ]
    assert [s.agent_id for s in r.resolutions()] == [world.b, world.a, world.a]


def test_the_rows_follow_new_history_in_the_same_commit(session: Session, world: World) -> None:
    w = world
    t1 = session.get(Ticket, w.t1)
    assert t1 is not None
    # The customer writes again (reopening t1), an agent answers and solves it; the priority changes too.
    session.add(
        Message(
            ticket_id=t1.id,
            inbox_id=t1.inbox_id,
            contact_id=t1.contact_id,
            direction="inbound",
            channel="email",
            body_text="again",
            created_at=Z("2026-10-28 10:00"),
            sent_at=Z("2026-10-28 10:00"),
        )
    )
    session.add(
        TicketEvent(
            ticket_id=t1.id, kind="status", data={"from": "solved", "to": "open"}, created_at=Z("2026-10-28 10:00")
        )
    )
    session.commit()
    assert_same(session, w)
    session.add(sent_reply(t1, w.b, Z("2026-10-29 10:00")))
    lifecycle.set_status(session, t1, "solved", by=w.b)  # now: a resolution long after the fixture's period
    lifecycle.set_priority(session, t1, "high", by=w.b)
    session.commit()
    assert_same(session, w)
    late = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    assert_same(session, w, START, late)
    stored = SummaryReport(session, Filters(START, late))
    assert [s.ticket_id for s in stored.next_responses()][-1] == t1.id


def test_calendar_and_policy_changes_recompute_every_ticket(session: Session, world: World) -> None:
    w = world
    before = SummaryReport(session, Filters(START, END)).first_responses()
    # Monday 26 Oct is no longer a holiday: t1's first response gains its Monday office hours (8 h).
    for holiday in session.scalars(select(BusinessHoliday)):
        session.delete(holiday)
    session.commit()
    after = SummaryReport(session, Filters(START, END)).first_responses()
    t1_before = next(s for s in before if s.ticket_id == w.t1)
    t1_after = next(s for s in after if s.ticket_id == w.t1)
    assert t1_after.business_seconds == t1_before.business_seconds + 8 * H
    assert_same(session, w)
    # A tighter first-response target for normal tickets: t2's 1-hour reply now breaches.
    target = session.scalars(select(SlaTarget).where(SlaTarget.priority == "normal")).one()
    target.first_response_seconds = 1800
    session.commit()
    assert_same(session, w)
    got = SummaryReport(session, Filters(START, END)).compliance(END)
    assert (w.t2, "sla_first_response", False) in [(s.ticket_id, s.figure, s.met) for s in got]


def test_merge_moves_the_samples_and_rollback_leaves_none(session: Session, world: World) -> None:
    w = world
    t6, t4 = session.get(Ticket, w.t6), session.get(Ticket, w.t4)
    assert t6 is not None and t4 is not None
    lifecycle.merge_tickets(session, t4, t6, by=w.c)
    session.commit()
    assert session.scalar(select(func.count()).where(ReportSample.ticket_id == w.t4)) == 0
    assert_same(session, w, START, dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
    count = session.scalar(select(func.count()).select_from(ReportSample))
    lifecycle.set_status(session, t6, "solved", by=w.c)
    session.flush()
    session.rollback()
    assert session.scalar(select(func.count()).select_from(ReportSample)) == count


def test_rebuild_all_writes_the_same_rows(session: Session, world: World) -> None:
    def rows() -> list[tuple[object, ...]]:
        c = ReportSample.__table__.c
        stmt = select(*(col for col in c if col.name != "id")).order_by(c.ticket_id, c.figure, c.end_at, c.start_at)
        o = ReportOpen.__table__.c
        stretches = select(*(col for col in o if col.name != "id")).order_by(o.ticket_id, o.from_at)
        return [tuple(r) for r in session.execute(stmt)] + [tuple(r) for r in session.execute(stretches)]

    kept = rows()
    assert kept  # the commit hook wrote them
    # Open stretches, cut at each assignee or team change: t2 4 (unassigned, Bob; reopened: Bob, Alice), t1 3
    # (unassigned in team 1, then team 2; Alice), t3 2, t4 1, t6 2.
    assert session.scalar(select(func.count()).select_from(ReportOpen)) == 12
    session.execute(delete(ReportSample))
    session.execute(delete(ReportOpen))
    assert summary.rebuild_all(session) == len(kept)
    session.commit()
    assert rows() == kept


def test_sql_aggregates_equal_the_samples_they_summarise(session: Session, world: World) -> None:
    """The tables' counts come from the database, and so do medians and p90s on PostgreSQL (percentile_disc; on
    SQLite only the key and durations are loaded, days bucketed by the database); they equal nearest rank over the
    very samples the drill-down lists, for every grouping, filter and time zone."""
    w = world
    # More samples, so that p90 is not simply the maximum: 70 answered waits on t6 (0.9 * 70 is 63.000...007 in
    # floating point, where a naive ceil would pick rank 64).
    t6 = session.get(Ticket, w.t6)
    assert t6 is not None
    for i in range(70):
        at = Z("2026-10-28 09:00") + dt.timedelta(minutes=90 * i)
        for direction, when in (("inbound", at), ("outbound", at + dt.timedelta(minutes=i + 1))):
            session.add(
                Message(
                    ticket_id=t6.id,
                    inbox_id=t6.inbox_id,
                    contact_id=t6.contact_id,
                    direction=direction,
                    channel="email",
                    author_id=w.c if direction == "outbound" else None,
                    body_text=direction,
                    created_at=when,
                    sent_at=when if direction == "inbound" else None,
                )
            )
    session.commit()
    for kw in filter_sets(w):
        for tz in ("UTC", "Europe/Berlin", "America/New_York"):
            f = Filters(START, END, **(kw | {"tz": tz}))  # type: ignore[arg-type]
            in_sql, in_python = SummaryReport(session, f, in_sql=True), SummaryReport(session, f, in_sql=False)
            for by in ("day", "week", "month", "agent", "team", "inbox", "channel"):
                for figure in ("created", "solved", "replies"):
                    assert in_sql.counts(figure, by) == in_python.counts(figure, by), (figure, by, kw, tz)
                for figure in ("first_response", "next_response", "resolution"):
                    assert in_sql.summaries(figure, by) == in_python.summaries(figure, by), (figure, by, kw, tz)
            assert in_sql.reply_counts() == in_python.reply_counts()
            for now in (Z("2026-10-27 11:00"), END):
                assert in_sql.compliance_counts(now) == in_python.compliance_counts(now)
    nexts = SummaryReport(session, Filters(START, END), in_sql=True).summaries("next_response", "agent")[0]
    assert nexts[w.c].count == 70 and nexts[w.c].p90 == 63 * 60  # rank 63 of 1..70 minutes


def test_helpline_reports_rebuild_refills_the_summary(tmp_path: Path) -> None:
    """``helpline reports rebuild``: after an upgrade to the summary (or a bulk import) the table is refilled."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY")}
    env["HELPLINE_DATA_DIR"] = str(tmp_path / "data")
    cli = [sys.executable, "-m", "web.cli"]
    demo = subprocess.run([*cli, "demo"], env=env, capture_output=True, text=True, timeout=300, check=False)
    assert demo.returncode == 0, demo.stderr
    db = sqlite3.connect(tmp_path / "data" / "helpline.db")

    def count() -> int:
        return int(
            db.execute("SELECT (SELECT count(*) FROM report_sample) + (SELECT count(*) FROM report_open)").fetchone()[0]
        )

    kept = count()
    assert db.execute("SELECT count(*) FROM report_open").fetchone()[0] > 0  # the demo has open tickets
    assert kept > 0  # the demo's tickets were written through the ORM: the commit hook filled it
    db.execute("DELETE FROM report_sample")
    db.execute("DELETE FROM report_open")
    db.commit()
    done = subprocess.run(
        [*cli, "reports", "rebuild"], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"report summary rebuilt: {kept} rows"
    assert count() == kept
    # An upgrade from before the summary (an empty table, tickets present): the release step fills it by itself.
    db.execute("DELETE FROM report_sample")
    db.execute("DELETE FROM report_open")
    db.commit()
    upgraded = subprocess.run(
        [*cli, "db", "upgrade"], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"report summary filled from the tickets' history: {kept} rows" in upgraded.stdout
    assert count() == kept
    again = subprocess.run([*cli, "db", "upgrade"], env=env, capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 0 and "filled" not in again.stdout  # only when it is empty
    # An upgrade that left the summary without its backlog rows (open tickets, no stretch): refilled as well.
    db.execute("DELETE FROM report_open")
    db.commit()
    lacking = subprocess.run([*cli, "db", "upgrade"], env=env, capture_output=True, text=True, timeout=300, check=False)
    assert lacking.returncode == 0, lacking.stderr
    assert f"report summary filled from the tickets' history: {kept} rows" in lacking.stdout
    assert count() == kept
    db.close()


def test_moving_an_inbox_to_another_team_recomputes_with_that_teams_calendar(session: Session, world: World) -> None:
    """Inbox 2 has no calendar; moved to team 1, whose team calendar opens 13:00-17:00 UTC on weekdays, t6's
    10-minute first response (Tue 27 12:00-12:10 UTC) falls outside business hours."""
    afternoons = {d: [["13:00", "17:00"]] for d in ("mon", "tue", "wed", "thu", "fri")}
    session.add(BusinessCalendar(name="Afternoons", timezone="UTC", team_id=world.team1, hours=afternoons))
    session.commit()
    before = [s for s in SummaryReport(session, Filters(START, END)).first_responses() if s.ticket_id == world.t6]
    assert [(s.seconds, s.business_seconds) for s in before] == [(600, 600)]
    inbox2 = session.get(Inbox, world.inbox2)
    assert inbox2 is not None
    inbox2.team_id = world.team1
    session.commit()
    after = [s for s in SummaryReport(session, Filters(START, END)).first_responses() if s.ticket_id == world.t6]
    assert [(s.seconds, s.business_seconds) for s in after] == [(600, 0)]
    assert_same(session, world)
