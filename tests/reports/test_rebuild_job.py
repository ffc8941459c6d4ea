"""A calendar, holiday or SLA change recomputes the report summary in a worker job, not in the admin's request.

The fixed world (tests/reports/world.py) is built with the summary complete; then a session factory with the
rebuild enqueuer (as the web app with Redis installs it) commits a settings change. The commit must write no
summary rows for the untouched tickets and enqueue a job; a real RQ worker then runs it and the rows must equal a
full synchronous ``rebuild_all``. Both databases.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from redis import Redis
from rq import Queue, SimpleWorker
from sqlalchemy import event, select
from sqlalchemy.orm import Session, sessionmaker

from inbox import workspace
from inbox.config import Settings
from inbox.db import utcnow
from inbox.models import Inbox, Message, Ticket, User
from inbox.report_models import ReportSample
from inbox.runtime import Storage
from inbox.settings_models import WorkspaceSetting
from inbox.sla_models import BusinessHoliday, SlaTarget
from tests.reports.world import END, START, World, Z, build, sent_reply
from tests.web.conftest import login
from tickets import summary, summary_rebuild
from tickets.metrics import Filters
from tickets.summary import SummaryReport
from web import create_app
from workers import report_jobs, runtime

Row = tuple[Any, ...]


@pytest.fixture
def world(storage: Storage) -> World:
    with storage.factory() as session:  # no enqueuer yet: the commit fills the whole summary inline
        w = build(session)
        session.commit()
        return w


@pytest.fixture
def deferring(settings: Settings, storage: Storage, world: World, redis: Redis, redis_url: str) -> Iterator[Storage]:
    """The test's storage, its sessions leaving rebuilds to jobs on the test's Redis; the worker runtime (what the
    job uses) on the same database."""
    runtime.configure(settings, redis_url)
    report_jobs.install(storage.factory, redis_url)
    yield storage
    report_jobs.uninstall(storage.factory)
    runtime.reset()


def rows(session: Session) -> list[Row]:
    c = ReportSample.__table__.c
    stmt = select(*(col for col in c if col.name != "id")).order_by(
        c.ticket_id, c.figure, c.end_at, c.start_at, c.agent_id, c.seconds
    )
    return [tuple(r) for r in session.execute(stmt)]


def full_rebuild(factory: sessionmaker[Session]) -> list[Row]:
    """The rows a synchronous ``rebuild_all`` writes now (rolled back afterwards)."""
    with factory() as session:
        summary.rebuild_all(session)
        out = rows(session)
        session.rollback()
    return out


def current(factory: sessionmaker[Session]) -> list[Row]:
    with factory() as session:
        return rows(session)


class SummaryWrites:
    """Counts the statements that write ``report_sample`` on an engine."""

    def __init__(self, storage: Storage) -> None:
        self.engine = storage.engine
        self.statements: list[str] = []

    def _seen(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        head = statement.lstrip().upper()
        if "REPORT_SAMPLE" in head and head.startswith(("INSERT", "DELETE", "UPDATE")):
            self.statements.append(statement)

    def __enter__(self) -> SummaryWrites:
        event.listen(self.engine, "before_cursor_execute", self._seen)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._seen)


def tighten_first_response(factory: sessionmaker[Session]) -> str:
    """Commit a tighter first-response target (t2's 1-hour reply now breaches); returns the new version."""
    with factory() as session:
        target = session.scalars(select(SlaTarget).where(SlaTarget.priority == "normal")).one()
        target.first_response_seconds = 1800
        session.commit()
    return summary_version(factory)


def drop_holiday(factory: sessionmaker[Session]) -> None:
    with factory() as session:
        for holiday in session.scalars(select(BusinessHoliday)):
            session.delete(holiday)
        session.commit()


def jobs(redis: Redis) -> list[Any]:
    queue = Queue("default", connection=redis)
    return [queue.fetch_job(i) for i in queue.job_ids]


def work(redis: Redis) -> None:
    SimpleWorker([Queue("default", connection=redis)], connection=redis).work(burst=True)


def t2_first_response_met(factory: sessionmaker[Session], w: World) -> bool:
    with factory() as session:
        got = SummaryReport(session, Filters(START, END)).compliance(END)
    return next(s.met for s in got if s.ticket_id == w.t2 and s.figure == "sla_first_response")


def test_a_policy_change_commits_without_recomputing_and_a_worker_finishes_it(
    deferring: Storage, world: World, redis: Redis
) -> None:
    factory = deferring.factory
    before = current(factory)
    with SummaryWrites(deferring) as writes:
        version = tighten_first_response(factory)
    assert writes.statements == []  # not one ticket recomputed in the admin's commit
    assert current(factory) == before
    with factory() as session:
        progress = summary_rebuild.status(session)
        count = len(list(session.scalars(select(Ticket.id))))
    assert progress is not None and (progress.version, progress.done, progress.total) == (version, 0, count)
    queued = jobs(redis)
    assert [(j.func_name, j.args) for j in queued] == [("workers.report_jobs.rebuild_summary", (version,))]
    assert t2_first_response_met(factory, world)  # still the old target until the job runs

    work(redis)  # a real RQ worker runs the job
    assert queued[0].latest_result().return_value["outcome"] == "finished"
    assert current(factory) == full_rebuild(factory)
    assert not t2_first_response_met(factory, world)
    with factory() as session:
        assert summary_rebuild.status(session) is None
        state = session.get_one(WorkspaceSetting, "report_rebuild")
        assert state.value["done"] == state.value["total"] == count and state.value["finished_at"]


def test_the_commits_own_tickets_are_refreshed_at_once_with_the_new_calendar(deferring: Storage, world: World) -> None:
    factory = deferring.factory
    old = current(factory)
    with factory() as session:
        for holiday in session.scalars(select(BusinessHoliday)):
            session.delete(holiday)
        t1 = session.get_one(Ticket, world.t1)
        session.add(
            Message(
                ticket_id=t1.id,
                inbox_id=t1.inbox_id,
                contact_id=t1.contact_id,
                direction="note",
                channel="email",
                author_id=world.a,
                body_text="a note",
                created_at=Z("2026-10-28 10:00"),
            )
        )
        session.commit()
    now, expected = current(factory), full_rebuild(factory)
    assert [r for r in now if r[0] == world.t1] == [r for r in expected if r[0] == world.t1]  # new calendar
    assert [r for r in now if r[0] != world.t1] == [r for r in old if r[0] != world.t1]  # left to the job
    assert now != expected  # t1's Monday is an office day now: its first response gained 8 business hours
    report_jobs.rebuild_summary(summary_version(factory))
    assert current(factory) == expected


def summary_version(factory: sessionmaker[Session]) -> str:
    with factory() as session:
        return str(workspace.get_setting(session, summary.VERSION_KEY))


def test_moving_an_inbox_to_another_team_is_rebuilt_by_the_job(deferring: Storage, world: World, redis: Redis) -> None:
    factory = deferring.factory
    with SummaryWrites(deferring) as writes, factory() as session:
        inbox = session.get_one(Inbox, world.inbox2)
        inbox.team_id = world.team1  # inbox 2 now counts in team 1's calendar
        session.commit()
    assert writes.statements == []
    with factory() as session:
        assert summary_rebuild.status(session) is not None
    work(redis)
    assert current(factory) == full_rebuild(factory)
    with factory() as session:
        assert summary_rebuild.status(session) is None


def test_a_second_change_mid_rebuild_restarts_it(deferring: Storage, world: World, redis: Redis) -> None:
    factory = deferring.factory
    first = tighten_first_response(factory)
    with factory() as session, session.begin():
        assert summary_rebuild.step(session, first, batch=2) == "more"
    with factory() as session:
        progress = summary_rebuild.status(session)
        assert progress is not None and progress.done == 2
    drop_holiday(factory)  # a newer version: its own job starts over from the first ticket
    second = summary_version(factory)
    assert second != first
    with factory() as session:
        progress = summary_rebuild.status(session)
        assert progress is not None and (progress.version, progress.done) == (second, 0)
    with factory() as session, session.begin():
        assert summary_rebuild.step(session, first, batch=2) == "superseded"
    queued = jobs(redis)
    assert [j.args for j in queued] == [(first,), (second,)]
    work(redis)
    outcomes = [j.latest_result().return_value for j in queued]
    assert [(o["outcome"], o["chunks"]) for o in outcomes] == [("superseded", 0), ("finished", 1)]
    assert current(factory) == full_rebuild(factory)
    assert not t2_first_response_met(factory, world)


def test_the_sweeper_enqueues_a_lost_rebuild_again_and_it_resumes(
    deferring: Storage, world: World, redis: Redis
) -> None:
    factory = deferring.factory
    version = tighten_first_response(factory)
    with factory() as session, session.begin():
        assert summary_rebuild.step(session, version, batch=2) == "more"
    redis.flushdb()  # Redis lost the job (or its worker died and took it along)
    assert report_jobs.sweep_report_rebuild() is None  # it moved a moment ago: not yet
    later = utcnow() + summary_rebuild.STALE + dt.timedelta(seconds=1)
    assert report_jobs.sweep_report_rebuild(later) == version
    queued = jobs(redis)
    assert [(j.func_name, j.args) for j in queued] == [("workers.report_jobs.rebuild_summary", (version,))]
    work(redis)
    assert current(factory) == full_rebuild(factory)
    with factory() as session:
        assert summary_rebuild.status(session) is None
    assert report_jobs.sweep_report_rebuild(later) is None  # finished: nothing to sweep


def test_a_failed_enqueue_leaves_the_rebuild_for_the_sweeper(
    settings: Settings, storage: Storage, world: World, redis: Redis, redis_url: str
) -> None:
    runtime.configure(settings, redis_url)
    report_jobs.install(storage.factory, "redis://127.0.0.1:1/0")  # Redis down at commit time
    try:
        version = tighten_first_response(storage.factory)  # the commit goes through all the same
        with storage.factory() as session:
            progress = summary_rebuild.status(session)
        assert progress is not None and progress.version == version
        assert report_jobs.sweep_report_rebuild(utcnow() + summary_rebuild.STALE) == version
        work(redis)
        assert current(storage.factory) == full_rebuild(storage.factory)
    finally:
        report_jobs.uninstall(storage.factory)
        runtime.reset()


def test_without_redis_the_commit_rebuilds_inline_and_ends_an_unfinished_rebuild(
    deferring: Storage, world: World, redis: Redis
) -> None:
    factory = deferring.factory
    tighten_first_response(factory)  # deferred: left unfinished, its job never runs
    report_jobs.uninstall(factory)  # now a process without Redis (the CLI, a web app without workers)
    with SummaryWrites(deferring) as writes:
        drop_holiday(factory)
    assert writes.statements  # recomputed in the commit
    assert current(factory) == full_rebuild(factory)
    assert not t2_first_response_met(factory, world)  # the deferred change is in the figures too
    with factory() as session:
        assert summary_rebuild.status(session) is None  # no notice left behind
    work(redis)  # the old job, if it runs after all, finds nothing to do
    assert current(factory) == full_rebuild(factory)


def test_jobs_and_ticket_commits_running_at_once_never_leave_wrong_rows(
    deferring: Storage, world: World, redis: Redis
) -> None:
    """Two jobs of one version and agents committing ticket changes, all at the same time, chunk by chunk."""
    factory = deferring.factory
    version = tighten_first_response(factory)
    errors: list[BaseException] = []

    def job() -> None:
        try:
            report_jobs.rebuild_summary(version, batch=1)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def agent(tickets: tuple[int, ...]) -> None:
        try:
            for i in range(12):
                with factory() as session:
                    ticket = session.get_one(Ticket, tickets[i % len(tickets)])
                    at = Z("2026-10-29 10:00") + dt.timedelta(minutes=i)
                    session.add(sent_reply(ticket, world.a, at, f"reply {i}"))
                    session.commit()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=job) for _ in range(2)]
    threads += [threading.Thread(target=agent, args=(ts,)) for ts in ((world.t1, world.t2), (world.t3, world.t6))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert current(factory) == full_rebuild(factory)
    with factory() as session:
        assert summary_rebuild.status(session) is None


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_commits_on_one_ticket_at_once_leave_one_copy_of_its_rows(storage: Storage, world: World) -> None:
    """Two agents answer the same ticket at the same moment. Each commit, once it has deleted the ticket's old rows,
    waits up to a second for the other to get that far too: without a lock per ticket both get there and each
    inserts a copy; with it the second waits until the first has committed and replaces its rows."""
    deleted = [threading.Event(), threading.Event()]
    errors: list[BaseException] = []

    def agent(n: int) -> None:
        def after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            if statement.lstrip().upper().startswith("DELETE FROM REPORT_SAMPLE"):
                deleted[n].set()
                deleted[1 - n].wait(timeout=1.0)

        try:
            with storage.factory() as session:
                ticket = session.get_one(Ticket, world.t1)
                session.add(sent_reply(ticket, world.a, Z("2026-10-29 10:00") + dt.timedelta(minutes=n), f"reply {n}"))
                session.flush()
                event.listen(session.connection(), "after_cursor_execute", after)
                session.commit()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=agent, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert current(storage.factory) == full_rebuild(storage.factory)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_ticket_commit_never_interleaves_with_a_rebuild_chunk(deferring: Storage, world: World) -> None:
    """The job's chunk and an agent's commit on a ticket of that chunk, each waiting at its DELETE for the other to
    get there too: with the summary lock, the agent waits at the lock until the chunk has committed."""
    factory = deferring.factory
    version = tighten_first_response(factory)
    deleted = {"job": threading.Event(), "agent": threading.Event()}
    errors: list[BaseException] = []

    def hook(me: str, other: str) -> Any:
        def after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            if statement.lstrip().upper().startswith("DELETE FROM REPORT_SAMPLE"):
                deleted[me].set()
                deleted[other].wait(timeout=1.0)

        return after

    def job() -> None:
        try:
            with factory() as session, session.begin():
                event.listen(session.connection(), "after_cursor_execute", hook("job", "agent"))
                assert summary_rebuild.step(session, version, batch=10) == "more"
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def agent() -> None:
        try:
            with factory() as session:
                ticket = session.get_one(Ticket, world.t1)
                session.add(sent_reply(ticket, world.a, Z("2026-10-29 10:00"), "a reply while the rebuild runs"))
                session.flush()
                event.listen(session.connection(), "after_cursor_execute", hook("agent", "job"))
                session.commit()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=job), threading.Thread(target=agent)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert current(factory) == full_rebuild(factory)


# -- the pages ------------------------------------------------------------------------------------------------------
@pytest.fixture
def app(settings: Settings, storage: Storage, world: World, redis: Redis, redis_url: str) -> Iterator[Flask]:
    flask_app = create_app(settings, redis_url=redis_url)  # with Redis: settings changes go to a job
    yield flask_app
    flask_app.extensions["helpline"].dispose()
    runtime.reset()


def test_the_settings_page_answers_at_once_and_the_reports_page_shows_progress(
    app: Flask, world: World, redis: Redis
) -> None:
    factory = app.extensions["helpline"].factory
    with factory() as session:
        admin_email = session.get_one(User, world.admin).email
        holiday = session.scalars(select(BusinessHoliday)).one()
        calendar_id, holiday_id = holiday.calendar_id, holiday.id
    client = app.test_client()
    token = login(client, admin_email)
    with SummaryWrites(app.extensions["helpline"]) as writes:
        response = client.post(
            f"/settings/hours/{calendar_id}/holidays/{holiday_id}/delete",
            data={"csrf_token": token},
            follow_redirects=True,
        )
    assert response.status_code == 200
    assert writes.statements == []
    assert "recomputed in the background" in response.get_data(as_text=True)
    page = client.get("/reports/?start=2026-10-19&end=2026-11-01").get_data(as_text=True)
    assert "Figures are being recomputed after a settings change: 0 of 5 tickets" in page
    work(redis)
    page = client.get("/reports/?start=2026-10-19&end=2026-11-01").get_data(as_text=True)
    assert "being recomputed" not in page
    assert current(factory) == full_rebuild(factory)


def test_the_notice_counts_progress(app: Flask, world: World, redis: Redis) -> None:
    factory = app.extensions["helpline"].factory
    version = tighten_first_response(factory)
    with factory() as session, session.begin():
        summary_rebuild.step(session, version, batch=2)
    with factory() as session:
        admin_email = session.get_one(User, world.admin).email
    client = app.test_client()
    login(client, admin_email)
    page = client.get("/reports/").get_data(as_text=True)
    assert 'id="rebuild-notice"' in page and "2 of 5 tickets" in page
