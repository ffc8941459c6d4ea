"""Time a settings change with the report summary rebuilt in the background, on SQLite and PostgreSQL.

Seeds N tickets with ``bench/reports.py``'s generator and fills the summary; then commits a change to the SLA
policy's target from a session that defers the rebuild (as the web app with Redis does; the enqueuer here only
records the version) and times that commit; then runs the job's steps (``tickets.summary_rebuild.step``, 500
tickets per transaction) as the worker would and prints the time per chunk (p50/max, the longest a ticket commit
waits for the summary lock) and in all, and checks the rows equal a synchronous ``rebuild_all``.

    python bench/report_rebuild.py [--tickets 20000] [--batch 500] [--pg-url postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import func, select  # noqa: E402

from bench.reports import seed  # noqa: E402
from inbox.config import Settings  # noqa: E402
from inbox.migrate import upgrade  # noqa: E402
from inbox.report_models import ReportSample  # noqa: E402
from inbox.runtime import Storage  # noqa: E402
from inbox.sla_models import SlaTarget  # noqa: E402
from tickets import summary, summary_rebuild  # noqa: E402


def run(url: str, data_dir: Path, args: argparse.Namespace, label: str) -> None:
    upgrade(url)
    storage = Storage.from_settings(Settings(data_dir=data_dir, database_url=url, secret_key="bench"))
    with storage.factory() as session:
        seed(session, args.tickets)
        summary.discard_pending(session)
        session.commit()
    with storage.factory() as session:
        summary.rebuild_all(session)
        session.commit()
    enqueued: list[str] = []
    summary_rebuild.install_enqueuer(storage.factory.kw["info"], enqueued.append)
    t0 = time.perf_counter()
    with storage.factory() as session:
        for target in session.scalars(select(SlaTarget)):
            target.first_response_seconds = (target.first_response_seconds or 3600) // 2
        session.commit()
    commit_s = time.perf_counter() - t0
    (version,) = enqueued
    chunks: list[float] = []
    started = time.perf_counter()
    while True:
        c0 = time.perf_counter()
        with storage.factory() as session, session.begin():
            outcome = summary_rebuild.step(session, version, args.batch)
        chunks.append(time.perf_counter() - c0)
        if outcome != "more":
            break
    total_s = time.perf_counter() - started
    with storage.factory() as session:
        rows = session.scalar(select(func.count()).select_from(ReportSample))
        stored = sorted(tuple(r[1:]) for r in session.execute(select(ReportSample.__table__)))
        summary.rebuild_all(session)
        fresh = sorted(tuple(r[1:]) for r in session.execute(select(ReportSample.__table__)))
        session.rollback()
    print(
        f"{label}: settings commit {commit_s * 1000:.0f} ms; job: {len(chunks)} chunks of {args.batch} tickets, "
        f"p50 {statistics.median(chunks):.2f} s, max {max(chunks):.2f} s, all {total_s:.0f} s "
        f"({total_s / args.tickets * 1000:.1f} ms/ticket); {rows} rows, equal to rebuild_all: {stored == fresh}"
    )
    storage.dispose()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tickets", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=summary_rebuild.BATCH)
    ap.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test")
    ap.add_argument("--only", choices=("sqlite", "postgresql"))
    args = ap.parse_args()
    print(
        f"# report rebuild: {args.tickets} tickets, {platform.machine()}, Python {platform.python_version()}, "
        f"{dt.date.today()}"
    )
    if args.only != "postgresql":
        with tempfile.TemporaryDirectory() as tmp:
            run(f"sqlite:///{tmp}/bench.db", Path(tmp), args, "SQLite    ")
    if args.only == "sqlite":
        return
    import psycopg

    name = f"helpline_bench_{uuid.uuid4().hex[:8]}"
    try:
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
