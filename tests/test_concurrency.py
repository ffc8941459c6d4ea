"""The same message ingested at the same moment by two processes is stored once (both databases)."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pytest
from sqlalchemy import func, select

from inbox.config import Settings
from inbox.models import Contact, Identity, Message, Ticket
from inbox.runtime import Storage
from tests.factories import inbound, make_inbox

N_MESSAGES = 40


def _worker(data_dir: str, url: str, inbox_id: int, batch: int, start: mp.synchronize.Barrier, out: mp.Queue) -> None:
    from inbox import ingest_many

    storage = Storage.from_settings(Settings(data_dir=Path(data_dir), database_url=url, secret_key="k"))
    stored = 0
    start.wait()
    messages = [
        inbound(external_id=f"race-{i}", handle=f"racer{i % 7}@x.test", message_id=f"<race-{i}@x>")
        for i in range(N_MESSAGES)
    ]
    for offset in range(0, N_MESSAGES, batch):
        with storage.factory.begin() as session:
            stored += sum(m is not None for m in ingest_many(session, inbox_id, messages[offset : offset + batch]))
    storage.dispose()
    out.put(stored)


@pytest.mark.parametrize("batch", [1, 8])
def test_two_processes_ingesting_the_same_messages_store_each_once(
    storage: Storage, settings: Settings, batch: int
) -> None:
    with storage.factory.begin() as session:
        inbox_id = make_inbox(session).id
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    procs = [
        ctx.Process(
            target=_worker, args=(str(settings.data_dir), settings.sqlalchemy_url, inbox_id, batch, barrier, out)
        )
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    results = [out.get(timeout=5) for _ in procs]
    assert sum(results) == N_MESSAGES  # each message was stored by exactly one of the two
    with storage.factory() as session:
        assert session.scalar(select(func.count()).select_from(Message)) == N_MESSAGES
        assert session.scalar(select(func.count()).select_from(Identity)) == 7
        assert session.scalar(select(func.count()).select_from(Contact)) == 7
        assert session.scalar(select(func.count()).select_from(Ticket)) == N_MESSAGES
