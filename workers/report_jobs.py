"""The report summary's background rebuild (``default`` queue) and its sweeper.

``rebuild_summary(version)`` recomputes every ticket's report rows after a settings change, a chunk of tickets per
transaction (``tickets.summary_rebuild.step``), until it is done or a newer change supersedes it. The web app
enqueues it after the commit that changed a calendar, holiday, SLA policy or inbox team (``install``), and
``sweep_report_rebuild`` (every minute, wired in ``workers.schedule.PERIODIC``) enqueues it again when a rebuild
is unfinished and nothing has moved it for ``summary_rebuild.STALE``: the job was lost with Redis, or its worker
died. Two jobs for the same version are harmless: they take turns on successive chunks.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from typing import Any

from redis import Redis
from rq import Queue
from rq.job import Job
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from tickets import summary_rebuild
from workers import runtime

log = logging.getLogger(__name__)

RETRIES = 5  # a chunk that fails this many times in a row fails the job
REBUILD_TIMEOUT = 3600  # seconds; a job killed by it is resumed at its cursor by the sweeper


def rebuild_summary(version: str, batch: int = summary_rebuild.BATCH) -> dict[str, Any]:
    """Recompute the summary for config ``version``, one transaction per ``batch`` tickets. Returns how it ended."""
    factory = runtime.storage().factory
    chunks = 0
    failures = 0
    while True:
        try:
            with factory() as session, session.begin():
                outcome = summary_rebuild.step(session, version, batch)
        except OperationalError:  # a deadlock the database broke, a locked SQLite file: the chunk rolled back
            failures += 1
            if failures > RETRIES:
                raise  # the sweeper enqueues the rebuild again, from its cursor
            log.warning("report rebuild %s: chunk failed, retrying", version, exc_info=True)
            time.sleep(0.2 * failures)
            continue
        failures = 0
        if outcome != "more":
            break
        chunks += 1
    log.info("report rebuild %s: %s after %d chunks", version, outcome, chunks)
    return {"version": version, "outcome": outcome, "chunks": chunks}


def enqueue_rebuild(version: str, queue: Queue | None = None) -> Job:
    return (queue or runtime.queue(runtime.DEFAULT)).enqueue(
        "workers.report_jobs.rebuild_summary",
        version,
        job_id=f"report-rebuild-{version[:12]}-{uuid.uuid4().hex[:8]}",
        job_timeout=REBUILD_TIMEOUT,
        result_ttl=3600,
        failure_ttl=7 * 24 * 3600,
        description=f"rebuild the report summary for config {version[:12]}",
    )


def sweep_report_rebuild(now: dt.datetime | None = None) -> str | None:
    """Enqueue an unfinished rebuild that no job has moved for a while; returns its version if enqueued."""
    with runtime.storage().factory() as session:
        version = summary_rebuild.stalled(session, now)
    if version is None:
        return None
    log.warning("report rebuild %s has not moved for %s; enqueueing it again", version, summary_rebuild.STALE)
    enqueue_rebuild(version)
    return version


def install(factory: sessionmaker[Session], redis_url: str) -> None:
    """Sessions of ``factory`` (the web app's) leave whole-summary rebuilds to ``rebuild_summary`` jobs enqueued on
    the Redis at ``redis_url``."""
    connection = Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=2)

    def enqueue(version: str) -> None:
        enqueue_rebuild(version, Queue(runtime.DEFAULT, connection=connection))

    summary_rebuild.install_enqueuer(factory.kw.setdefault("info", {}), enqueue)


def uninstall(factory: sessionmaker[Session]) -> None:
    """Sessions of ``factory`` rebuild the whole summary inline again (no Redis)."""
    summary_rebuild.install_enqueuer(factory.kw.setdefault("info", {}), None)
