"""Recomputing the whole report summary after a settings change, in the background, a chunk per transaction.

A change to a business calendar, a holiday, an SLA policy or target, or an inbox's team changes what every ticket
contributes to the reports. ``tickets.summary`` notices it at commit time and calls :func:`request`, which renews
the config version (``summary.VERSION_KEY``) and then either

- records a rebuild to do for that version in the workspace setting ``report_rebuild`` (``{version, after_id,
  done, total, started_at, progress_at, finished_at}``) and, once the commit is through, hands the version to the
  enqueuer that the process installed on its session factory (:func:`install_enqueuer`: the web app with Redis
  enqueues ``workers.report_jobs.rebuild_summary``), so the admin's request answers at once; or
- without an enqueuer (no Redis: tests, the ``helpline`` CLI, a web app without workers) rebuilds every ticket in
  the commit itself, as before, so figures are never silently stale.

The job calls :func:`step` until it says so: each step, in its own transaction, recomputes the next ``batch``
tickets (by id, after the cursor ``after_id``) with ``summary.refresh`` and moves the cursor. A step first takes
the summary's write lock exclusively (on PostgreSQL an advisory lock that every ticket commit takes shared before
it refreshes its tickets, so a ticket committed meanwhile is refreshed strictly before or after the chunk, never
interleaved into duplicate rows; SQLite runs one writer at a time anyway) and then the setting row ``FOR UPDATE``,
so two jobs of the same version take turns on successive chunks instead of racing on one. A step whose version is
no longer the current one stops: the newer change has enqueued its own job, which starts over from the first ticket.
Ticket commits during a rebuild keep refreshing their tickets inline with the new config, so overwriting them later
with the same figures is harmless.

A lost job (Redis flushed, a worker killed) is found by ``workers.report_jobs.sweep_report_rebuild``: an
unfinished rebuild whose ``progress_at`` is older than ``STALE`` is enqueued again and resumes at its cursor.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, event, func, select, text
from sqlalchemy.orm import Session

from inbox import workspace
from inbox.db import utcnow
from inbox.models import Ticket
from inbox.report_models import ReportSample
from inbox.settings_models import WorkspaceSetting

log = logging.getLogger(__name__)

REBUILD_KEY = "report_rebuild"
ENQUEUER = "report_rebuild_enqueue"  # key in a session factory's ``info``: Callable[[str], None]
DEFERRED = "report_rebuild_deferred"  # set in ``session.info`` after a commit that left the rebuild to a job
_PENDING = "report_rebuild_pending"  # the version to hand to the enqueuer once the commit is through
BATCH = 500  # tickets per transaction of the job: about a second of work, the longest a ticket commit waits
STALE = dt.timedelta(seconds=int(os.environ.get("HELPLINE_REPORT_REBUILD_STALE", "120")))
LOCK_ID = 0x5E0A7_0001  # the PostgreSQL advisory lock of summary writers (shared: ticket commits; exclusive: steps)

Enqueuer = Callable[[str], None]


@dataclass(frozen=True)
class Progress:
    """An unfinished rebuild: ``done`` of ``total`` tickets recomputed for config ``version``."""

    version: str
    done: int
    total: int
    started_at: str
    progress_at: str


# -- the commit side ------------------------------------------------------------------------------------------------
def install_enqueuer(factory_info: dict[str, Any], enqueue: Enqueuer | None) -> None:
    """Let sessions of this factory (its ``sessionmaker.kw["info"]``) defer rebuilds to ``enqueue``; None: inline."""
    if enqueue is None:
        factory_info.pop(ENQUEUER, None)
    else:
        factory_info[ENQUEUER] = enqueue


def deferred(session: Session) -> bool:
    """True if a rebuild committed in this session is left to a background job."""
    return session.info.get(ENQUEUER) is not None


def lock_for_refresh(session: Session, ticket_ids: Iterable[int] = ()) -> None:
    """Before a commit writes summary rows (PostgreSQL; SQLite has one writer at a time anyway).

    The tickets' rows ``FOR NO KEY UPDATE``, in id order: two commits on one ticket (two agents, or an agent and a
    worker) refresh it one after the other, the second seeing the first's rows to delete, instead of both deleting
    the old rows and each inserting a copy. Then the summary lock, shared: a background rebuild's chunk (which holds
    it exclusively) commits before or after this commit's refresh, never interleaved with it. Neither lock blocks
    the ``FOR KEY SHARE`` locks that a chunk takes on its tickets first, so the two cannot wait on each other."""
    if session.get_bind().dialect.name != "postgresql":
        return
    ids = sorted(set(ticket_ids))
    for lo in range(0, len(ids), 1000):
        chunk = ids[lo : lo + 1000]
        session.execute(
            select(Ticket.id).where(Ticket.id.in_(chunk)).order_by(Ticket.id).with_for_update(key_share=True)
        )
    session.execute(text("SELECT pg_advisory_xact_lock_shared(:id)"), {"id": LOCK_ID})


def request(session: Session, rebuild_all: Callable[[Session], int]) -> str:
    """A calendar, holiday, policy or inbox team changed in this transaction: renew the version and rebuild (now, or
    by a job after the commit). Returns the new version."""
    version = uuid.uuid4().hex
    workspace.set_setting(session, _version_key(), version)  # other processes reload their cached config
    total = session.scalar(select(func.count()).select_from(Ticket).where(Ticket.merged_into_id.is_(None))) or 0
    if not deferred(session) or not total:  # no Redis, or nothing to recompute (a new workspace's first calendar)
        rebuild_all(session)  # marks any unfinished rebuild as done
        return version
    now = utcnow().isoformat()
    state = {
        "version": version,
        "after_id": 0,
        "done": 0,
        "total": int(total),
        "started_at": now,
        "progress_at": now,
        "finished_at": None,
    }
    workspace.set_setting(session, REBUILD_KEY, state)
    session.info[_PENDING] = version
    return version


def mark_rebuilt(session: Session) -> None:
    """``summary.rebuild_all`` runs in this transaction: an unfinished background rebuild has nothing left to do."""
    state = workspace.get_setting(session, REBUILD_KEY)
    if not isinstance(state, dict) or state.get("finished_at"):
        return
    now = utcnow().isoformat()
    total = session.scalar(select(func.count()).select_from(Ticket).where(Ticket.merged_into_id.is_(None))) or 0
    version = workspace.get_setting(session, _version_key())
    workspace.set_setting(
        session,
        REBUILD_KEY,
        state | {"version": version, "done": int(total), "total": int(total), "progress_at": now, "finished_at": now},
    )


@event.listens_for(Session, "after_commit")
def _enqueue_after_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return
    version = session.info.pop(_PENDING, None)
    enqueue = session.info.get(ENQUEUER)
    if version is None or enqueue is None:
        return
    session.info[DEFERRED] = version
    try:
        enqueue(version)
    except Exception:  # Redis down: the setting says unfinished, and the sweeper enqueues it when it is stale
        log.warning("enqueue of the report rebuild %s failed; the sweeper will retry", version, exc_info=True)


@event.listens_for(Session, "after_soft_rollback")
def _forget(session: Session, previous: Any) -> None:
    if not previous.nested:
        session.info.pop(_PENDING, None)


# -- the job side ---------------------------------------------------------------------------------------------------
def step(session: Session, version: str, batch: int = BATCH) -> str:
    """Recompute the next ``batch`` tickets of the rebuild for ``version`` in this transaction (the caller commits).

    Returns "more" (call again), "finished" (nothing left; also when another job finished it) or "superseded" (the
    config changed again: a newer job does the work)."""
    from tickets import summary  # summary imports this module

    postgresql = session.get_bind().dialect.name == "postgresql"
    # Lock order (a chunk, a ticket commit and a settings commit never wait on each other in a circle): the setting
    # row (two jobs of one version take turns), then the chunk's tickets FOR KEY SHARE (after a commit holding one
    # FOR UPDATE, as automation does, is through), then the summary lock exclusively (after the ticket commits that
    # hold it shared are through).
    row = session.get(WorkspaceSetting, REBUILD_KEY, with_for_update=True, populate_existing=True)
    state = row.value if row is not None else None
    if not isinstance(state, dict) or state.get("version") != version:
        return "superseded"
    if workspace.get_setting(session, _version_key()) != version:
        return "superseded"
    if state.get("finished_at"):
        return "finished"
    after = int(state.get("after_id") or 0)
    chunk = select(Ticket.id).where(Ticket.id > after, Ticket.merged_into_id.is_(None)).order_by(Ticket.id).limit(batch)
    if postgresql:
        chunk = chunk.with_for_update(read=True, key_share=True)
    ids = list(session.scalars(chunk))
    if postgresql:
        session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": LOCK_ID})
    now = utcnow().isoformat()
    if not ids:
        # Rows past the last ticket (deleted ones) go as ``rebuild_all``'s DELETE would take them.
        session.execute(delete(ReportSample).where(ReportSample.ticket_id > after))
        done = int(state.get("done") or 0)
        workspace.set_setting(
            session,
            REBUILD_KEY,
            state
            | {"done": done, "total": max(done, int(state.get("total") or 0)), "progress_at": now, "finished_at": now},
        )
        return "finished"
    upto = ids[-1]
    # The range's rows, merged-away tickets' too (they have none once rebuilt), then the chunk's own.
    session.execute(delete(ReportSample).where(ReportSample.ticket_id > after, ReportSample.ticket_id <= upto))
    summary.refresh(session, ids)
    done = int(state.get("done") or 0) + len(ids)
    workspace.set_setting(
        session,
        REBUILD_KEY,
        state | {"after_id": upto, "done": done, "total": max(done, int(state.get("total") or 0)), "progress_at": now},
    )
    return "more"


def status(session: Session) -> Progress | None:
    """The rebuild in progress, if any (for the reports page's notice)."""
    state = workspace.get_setting(session, REBUILD_KEY)
    if not isinstance(state, dict) or state.get("finished_at"):
        return None
    return Progress(
        str(state.get("version")),
        int(state.get("done") or 0),
        int(state.get("total") or 0),
        str(state.get("started_at") or ""),
        str(state.get("progress_at") or ""),
    )


def stalled(session: Session, now: dt.datetime | None = None) -> str | None:
    """The version of an unfinished rebuild that no job has moved for ``STALE`` (the sweeper enqueues it again)."""
    progress = status(session)
    if progress is None or workspace.get_setting(session, _version_key()) != progress.version:
        return None
    try:
        last = dt.datetime.fromisoformat(progress.progress_at)
    except ValueError:
        return progress.version
    if last.tzinfo is None:
        last = last.replace(tzinfo=dt.UTC)
    return progress.version if (now or utcnow()) - last >= STALE else None


def _version_key() -> str:
    from tickets.summary import VERSION_KEY

    return VERSION_KEY
