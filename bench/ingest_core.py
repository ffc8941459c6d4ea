"""Ingest N synthetic messages straight through ``inbox.ingest`` and print messages/second.

Runs on SQLite (a fresh file) and, when reachable, PostgreSQL (a throwaway database). The mix is what a real
inbox sees: new email threads, replies that thread by In-Reply-To (~40%), returning customers, and chat messages.
One transaction per batch of 100, as the mail sync commits per fetch batch; SQLite is measured both one message
at a time (``ingest``) and per batch (``ingest_many``), in the same run.

    python bench/ingest_core.py [--n 10000] [--batch 100] [--pg-url postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inbox import Inbound, ingest, ingest_many  # noqa: E402
from inbox.config import Settings  # noqa: E402
from inbox.migrate import upgrade  # noqa: E402
from inbox.models import Inbox  # noqa: E402
from inbox.runtime import Storage  # noqa: E402


def synthetic(n: int, seed: int = 7) -> list[tuple[str, Inbound]]:
    rng = random.Random(seed)
    now = dt.datetime.now(dt.UTC)
    out: list[tuple[str, Inbound]] = []
    roots: list[tuple[str, str]] = []  # (message-id, sender)
    for i in range(n):
        roll = rng.random()
        text = f"Hello, question number {i} about order #{rng.randint(1000, 9999)}. " * rng.randint(1, 6)
        if roll < 0.15:
            out.append(
                (
                    "chat",
                    Inbound(
                        channel="telegram",
                        external_id=f"tg-{i}",
                        handle=str(rng.randint(1, 800)),
                        display_name="Chat user",
                        text=text,
                        sent_at=now,
                    ),
                )
            )
            continue
        mid = f"<bench-{i}@example.com>"
        if roots and roll < 0.55:
            parent, sender = rng.choice(roots)
            inbound = Inbound(
                channel="email",
                external_id=mid,
                handle=sender,
                text=text,
                subject="Re: question",
                message_id=mid,
                references=(parent,),
                sent_at=now,
            )
        else:
            sender = f"customer{rng.randint(1, n // 4 + 1)}@example.com"
            inbound = Inbound(
                channel="email",
                external_id=mid,
                handle=sender,
                display_name="Customer",
                text=text,
                subject=f"Question {i}",
                message_id=mid,
                sent_at=now,
            )
        roots.append((mid, sender))
        out.append(("mail", inbound))
    return out


def run(url: str, data_dir: Path, n: int, batch: int, *, batched: bool = True) -> float:
    upgrade(url)
    storage = Storage.from_settings(Settings(data_dir=data_dir, database_url=url, secret_key="bench"))
    with storage.factory.begin() as s:
        mail = Inbox(name="bench mail", channel="email", address="support@bench.test")
        chat = Inbox(name="bench chat", channel="telegram")
        s.add_all([mail, chat])
        s.flush()
        ids = {"mail": mail.id, "chat": chat.id}
    messages = synthetic(n)
    start = time.perf_counter()
    for offset in range(0, n, batch):
        chunk = messages[offset : offset + batch]
        with storage.factory.begin() as s:
            if batched:  # as the mail sync does: one ingest_many call per inbox and fetch batch
                for kind in ("mail", "chat"):
                    ingest_many(s, ids[kind], [m for k, m in chunk if k == kind])
            else:
                for kind, inbound in chunk:
                    ingest(s, ids[kind], inbound)
    elapsed = time.perf_counter() - start
    storage.dispose()
    return n / elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test")
    args = ap.parse_args()
    print(
        f"# ingest_core: N={args.n}, batch={args.batch}, {platform.machine()}, Python {platform.python_version()}, "
        f"{dt.date.today()}"
    )
    for batched in (False, True):
        label = "ingest_many per batch" if batched else "ingest one by one   "
        with tempfile.TemporaryDirectory() as tmp:
            rate = run(f"sqlite:///{tmp}/bench.db", Path(tmp), args.n, args.batch, batched=batched)
            print(f"SQLite,     {label}: {rate:8.0f} messages/s")
    try:
        import psycopg

        name = f"helpline_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(args.pg_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        base = args.pg_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
        try:
            with tempfile.TemporaryDirectory() as tmp:
                rate = run(f"{base}/{name}", Path(tmp), args.n, args.batch)
                print(f"PostgreSQL, ingest_many per batch: {rate:8.0f} messages/s")
        finally:
            with psycopg.connect(args.pg_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except psycopg.OperationalError as exc:
        print(f"PostgreSQL: skipped ({exc})")


if __name__ == "__main__":
    main()
