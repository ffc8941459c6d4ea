"""Time the reports page's queries for a 90-day range over a large synthetic history, on SQLite and PostgreSQL.

Generates N tickets (default 100,000) with about 10 messages each (1,000,000), spread over a year, with their
``ticket_event`` history (created, status changes, assignments, reopenings), a Berlin business-hours calendar and
an SLA policy; fills the report summary (``tickets.summary.rebuild_all``: the bulk INSERTs bypass the commit
hook that keeps it in production); then builds every table of ``/reports/`` (``web.report_views.build_tables``:
volume, the three time figures, SLA compliance, backlog, agents) for the last 90 days, R times, and prints p50/p95,
plus one run's split by figure.

    python bench/reports.py [--tickets 100000] [--runs 5] [--days 90] [--pg-url postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from inbox.config import Settings  # noqa: E402
from inbox.migrate import upgrade  # noqa: E402
from inbox.models import Contact, Inbox, Message, Team, Ticket, TicketEvent, User  # noqa: E402
from inbox.runtime import Storage  # noqa: E402
from inbox.sla_models import BusinessCalendar, SlaPolicy, SlaTarget  # noqa: E402
from tickets import summary  # noqa: E402
from tickets.metrics import Filters, Report  # noqa: E402
from tickets.summary import SummaryReport  # noqa: E402
from web import report_views  # noqa: E402
from web.report_views import BACKLOG_BANDS, Query, build_tables  # noqa: E402

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
BATCH = 5000


def seed(session: Session, tickets: int, seed_value: int = 11) -> int:
    """Insert the synthetic history with bulk INSERTs; returns the number of messages."""
    rng = random.Random(seed_value)
    teams = [Team(name=f"Team {i}") for i in range(2)]
    session.add_all(teams)
    session.flush()
    agents = [User(email=f"agent{i}@bench.test", name=f"Agent {i}", role="agent") for i in range(20)]
    session.add_all(agents)
    inboxes = [
        Inbox(name=f"Inbox {i}", channel=("email", "telegram", "webchat", "instagram")[i], team_id=teams[i % 2].id)
        for i in range(4)
    ]
    session.add_all(inboxes)
    contact = Contact(name="Bench customer")
    session.add(contact)
    session.flush()
    session.add(
        BusinessCalendar(
            name="Berlin",
            timezone="Europe/Berlin",
            is_default=True,
            hours={d: [["09:00", "17:00"]] for d in ("mon", "tue", "wed", "thu", "fri")},
        )
    )
    policy = SlaPolicy(name="Standard", business_hours=True)
    for prio, fr in (("low", 8), ("normal", 4), ("high", 1), ("urgent", 1)):
        policy.targets.append(
            SlaTarget(
                priority=prio,
                first_response_seconds=fr * 3600,
                next_response_seconds=fr * 3600,
                resolution_seconds=5 * 8 * 3600,
            )
        )
    session.add(policy)
    session.flush()
    agent_ids = [a.id for a in agents]
    t_rows: list[dict[str, Any]] = []
    m_rows: list[dict[str, Any]] = []
    e_rows: list[dict[str, Any]] = []
    n_messages = 0
    next_tid = 1
    span = 365 * 86400

    def flush_rows() -> None:
        if t_rows:
            session.execute(insert(Ticket), t_rows)
        if m_rows:
            session.execute(insert(Message), m_rows)
        if e_rows:
            session.execute(insert(TicketEvent), e_rows)
        t_rows.clear()
        m_rows.clear()
        e_rows.clear()

    for _ in range(tickets):
        tid = next_tid
        next_tid += 1
        inbox = inboxes[rng.randrange(4)]
        created = NOW - dt.timedelta(seconds=rng.randrange(span))
        agent = rng.choice(agent_ids)
        at = created
        status = "new"
        msgs: list[tuple[str, dt.datetime, int | None, bool]] = [("inbound", at, None, False)]
        events: list[tuple[str, dt.datetime, dict[str, Any]]] = [("created", at, {})]
        assigned = False
        count = max(2, int(rng.gauss(10, 3)))
        for i in range(1, count):
            at = at + dt.timedelta(seconds=rng.randrange(60, 36 * 3600))
            if at >= NOW:
                break
            if i % 2:  # an agent's turn
                if not assigned:
                    events.append(("assignee", at, {"from": None, "to": agent}))
                    assigned = True
                kind = "note" if rng.random() < 0.1 else "outbound"
                msgs.append((kind, at, agent, False))
                if kind == "outbound" and status == "new":
                    events.append(("status", at, {"from": "new", "to": "open"}))
                    status = "open"
                if kind == "outbound" and rng.random() < 0.25:
                    events.append(("status", at + dt.timedelta(seconds=30), {"from": status, "to": "solved"}))
                    status = "solved"
            else:
                msgs.append(("inbound", at, None, rng.random() < 0.03))
                if status == "solved":
                    events.append(("status", at, {"from": "solved", "to": "open"}))
                    status = "open"
        if status != "solved" and at < NOW - dt.timedelta(days=2) and rng.random() < 0.95:
            at = at + dt.timedelta(seconds=rng.randrange(60, 4 * 3600))
            events.append(("status", at, {"from": status, "to": "solved"}))
            status = "solved"
        t_rows.append(
            {
                "id": tid,
                "inbox_id": inbox.id,
                "contact_id": contact.id,
                "channel": inbox.channel,
                "subject": "bench",
                "status": status,
                "priority": rng.choice(("low", "normal", "normal", "high", "urgent")),
                "assignee_id": agent if assigned else None,
                "team_id": inbox.team_id,
                "created_at": created,
                "updated_at": at,
                "last_activity_at": at,
                "message_count": len(msgs),
            }
        )
        for direction, when, author, auto in msgs:
            m_rows.append(
                {
                    "ticket_id": tid,
                    "inbox_id": inbox.id,
                    "contact_id": contact.id,
                    "author_id": author,
                    "direction": direction,
                    "channel": inbox.channel,
                    "body_text": "x",
                    "created_at": when,
                    "is_auto": auto,
                    "delivery_state": "sent" if direction == "outbound" else None,
                }
            )
        n_messages += len(msgs)
        for kind, when, data in events:
            e_rows.append({"ticket_id": tid, "kind": kind, "data": data, "created_at": when})
        if len(m_rows) >= BATCH:
            flush_rows()
    flush_rows()
    return n_messages


class BeforeReport(SummaryReport):
    """The previous code path, for the "before" column: the backlog rebuilt from the history of the tickets open at
    the instant (``metrics.Report.backlog``, the reference), and on SQLite every table aggregated in Python."""

    def __init__(self, session: Session, filters: Filters) -> None:
        super().__init__(session, filters, in_sql=session.get_bind().dialect.name == "postgresql")

    def backlog(self, at: dt.datetime | None = None) -> Any:
        return Report.backlog(self, at)

    def backlog_counts(self, at: dt.datetime, bands: Any) -> list[int]:
        return Report.backlog_counts(self, at, bands)


def time_page(session: Session, days: int, runs: int) -> list[float]:
    end_day = NOW.date()
    start_day = end_day - dt.timedelta(days=days - 1)
    filters = Filters(
        dt.datetime.combine(start_day, dt.time(), tzinfo=dt.UTC),
        dt.datetime.combine(end_day + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC),
    )
    q = Query(filters, "day", start_day, end_day, {})
    out = []
    for _ in range(runs):
        session.expire_all()
        t0 = time.perf_counter()
        build_tables(session, q, NOW)
        out.append(time.perf_counter() - t0)
        session.rollback()
    return out


def split(session: Session, days: int) -> dict[str, float]:
    """One run, figure by figure."""
    filters = Filters(NOW - dt.timedelta(days=days), NOW)
    report = SummaryReport(session, filters)
    steps: dict[str, float] = {}
    history = BeforeReport(session, filters)
    bands = [low for low, _label in BACKLOG_BANDS]
    for name, fn in (
        ("backlog counts (stretches)", lambda: report.backlog_counts(NOW, bands)),
        ("backlog counts (history)", lambda: history.backlog_counts(NOW, bands)),
        ("created", report.created),
        ("first responses", report.first_responses),
        ("next responses", report.next_responses),
        ("resolutions", report.resolutions),
        ("backlog samples", report.backlog),
        ("replies", report.replies),
        ("sla compliance", lambda: report.compliance(NOW)),
    ):
        t0 = time.perf_counter()
        fn()
        steps[name] = time.perf_counter() - t0
    return steps


def split_tables(session: Session, days: int) -> dict[str, float]:
    """One run of the page, table by table (what the database aggregates)."""
    end_day = NOW.date()
    start_day = end_day - dt.timedelta(days=days - 1)
    filters = Filters(
        dt.datetime.combine(start_day, dt.time(), tzinfo=dt.UTC),
        dt.datetime.combine(end_day + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC),
    )
    q = Query(filters, "day", start_day, end_day, {})
    report = SummaryReport(session, filters)
    names = report_views.load_names(session, filters.inbox_ids)
    steps: dict[str, float] = {}
    for name, fn in (
        ("volume", lambda: report_views.volume_table(report, q, names)),
        *(
            (figure, lambda figure=figure, title=title: report_views.times_table(report, q, names, figure, title))
            for figure, title in report_views.TIME_FIGURES
        ),
        ("sla", lambda: report_views.sla_table(report, q, NOW)),
        ("backlog", lambda: report_views.backlog_table(report, q, NOW)),
        ("agents", lambda: report_views.agents_table(session, report, q, names)),
        ("csat", lambda: report_views.csat_table(report, q, names)),
    ):
        t0 = time.perf_counter()
        fn()
        steps[name] = time.perf_counter() - t0
    session.rollback()
    return steps


def run(url: str, data_dir: Path, args: argparse.Namespace, label: str) -> None:
    upgrade(url)
    storage = Storage.from_settings(Settings(data_dir=data_dir, database_url=url, secret_key="bench"))
    t0 = time.perf_counter()
    with storage.factory() as session:
        messages = seed(session, args.tickets)
        summary.discard_pending(session)  # the calendar and policy added would rebuild it in this commit
        session.commit()
    seeded = time.perf_counter()
    with storage.factory() as session:
        rows = summary.rebuild_all(session)  # bulk INSERTs bypass the commit hook: fill the summary once
        session.commit()
    print(f"{label}: report summary: {rows} rows for {args.tickets} tickets in {time.perf_counter() - seeded:.0f} s")
    with storage.engine.connect() as conn:
        if storage.engine.dialect.name == "postgresql":
            conn.exec_driver_sql("ANALYZE")
        else:
            conn.exec_driver_sql("ANALYZE")
        conn.commit()
    print(f"{label}: seeded {args.tickets} tickets, {messages} messages in {time.perf_counter() - t0:.0f} s")
    with storage.factory() as session:
        report_views.Report = BeforeReport  # type: ignore[misc]
        try:
            before = time_page(session, args.days, args.runs)
        finally:
            report_views.Report = SummaryReport  # type: ignore[misc]
        times = time_page(session, args.days, args.runs)
        tables = split_tables(session, args.days)
        steps = split(session, args.days)
    for name, got in (("before (history backlog)", before), ("after", times)):
        p50 = statistics.median(got)
        p95 = sorted(got)[max(0, -(-95 * len(got) // 100) - 1)]
        print(
            f"{label}: reports page {name}, {args.days} days: p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms"
            f" ({args.runs} runs)"
        )
    print(f"{label}: page by table " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in tables.items()))
    print(f"{label}: split " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in steps.items()))
    storage.dispose()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tickets", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test")
    ap.add_argument("--only", choices=("sqlite", "postgresql"))
    args = ap.parse_args()
    machine = f"{platform.machine()}, Python {platform.python_version()}"
    print(f"# reports: {args.tickets} tickets, {machine}, {dt.date.today()}")
    if args.only != "postgresql":
        with tempfile.TemporaryDirectory() as tmp:
            run(f"sqlite:///{tmp}/bench.db", Path(tmp), args, "SQLite    ")
    if args.only == "sqlite":
        return
    import psycopg

    try:
        name = f"helpline_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(args.pg_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        print(f"PostgreSQL: skipped ({exc})")
        return
    base = args.pg_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            run(f"{base}/{name}", Path(tmp), args, "PostgreSQL")
    finally:
        with psycopg.connect(args.pg_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
