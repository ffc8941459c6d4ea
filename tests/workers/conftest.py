"""Fixtures for the worker tests: a clean private Redis, the runtime pointed at the test's storage, the stub
channel, and worker subprocesses that share a database file with the test."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from sqlalchemy.orm import Session

from inbox.config import Settings
from inbox.models import Inbox, Message, Ticket
from inbox.runtime import Storage
from tests import factories
from tests.workers.stub_channel import StubServer, register
from tickets import lifecycle
from workers import runtime
from workers.supervisor import kill_tree

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def wk(settings: Settings, storage: Storage, redis: Redis, redis_url: str) -> Iterator[Storage]:
    """The worker runtime of this process, on the test's database and Redis, with the stub channel registered."""
    register()
    runtime.configure(settings, redis_url)
    yield runtime.storage()
    runtime.reset()


@pytest.fixture
def stub() -> Iterator[StubServer]:
    with StubServer() as server:
        yield server


def make_stub_inbox(session: Session, stub: StubServer, **config: Any) -> Inbox:
    return factories.make_inbox(session, channel="stub", config={"port": stub.port} | config)


def customer_ticket(session: Session, inbox: Inbox, **inbound: Any) -> Ticket:
    """A ticket opened by one customer message on the inbox."""
    from inbox.ingest import ingest

    values = {"channel": inbox.channel} | inbound
    msg = ingest(session, inbox.id, factories.inbound(**values))
    assert msg is not None
    ticket = session.get(Ticket, msg.ticket_id)
    assert ticket is not None
    return ticket


def queue_replies(storage: Storage, stub: StubServer, n: int, **inbox_config: Any) -> list[int]:
    """Commit ``n`` queued replies on one stub inbox (the DeliveryEnqueuer, if installed, enqueues them)."""
    with storage.factory() as session:
        inbox = make_stub_inbox(session, stub, **inbox_config)
        ticket = customer_ticket(session, inbox)
        ids = [lifecycle.reply(session, ticket, f"reply {i}", by=None).id for i in range(n)]
        session.commit()
    return ids


def states(storage: Storage, ids: list[int]) -> dict[int, str | None]:
    with storage.factory() as session:
        return {i: session.get(Message, i).delivery_state for i in ids}  # type: ignore[union-attr]


def explain(storage: Storage, ids: list[int]) -> str:
    """Unsent replies with their delivery job's status, for assertion messages."""
    from rq.job import Job

    left = {i: s for i, s in states(storage, ids).items() if s != "sent"}
    jobs = Job.fetch_many([f"deliver-{i}" for i in left], connection=runtime.redis())
    return str({i: (s, j and j.get_status(refresh=False), j and j.started_at)
                for (i, s), j in zip(left.items(), jobs, strict=True)})


# --- worker subprocesses -------------------------------------------------------------------------------------------


@pytest.fixture
def file_settings(tmp_path: Path, sqlite_template: Path) -> Settings:
    """Settings on a SQLite file that worker subprocesses open too."""
    target = tmp_path / "data" / "helpline.db"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(sqlite_template, target)
    return Settings(data_dir=tmp_path / "data", database_url=f"sqlite:///{target}", secret_key="test-secret-key")


@pytest.fixture
def file_storage(file_settings: Settings, redis: Redis, redis_url: str) -> Iterator[Storage]:
    register()
    runtime.configure(file_settings, redis_url)
    yield runtime.storage()
    runtime.reset()


def process_env(settings: Settings, redis_url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(DATABASE_URL=settings.database_url, REDIS_URL=redis_url, HELPLINE_DATA_DIR=str(settings.data_dir),
               SECRET_KEY=settings.secret_key, PYTHONPATH=str(ROOT))
    env.update(extra)
    return env


class Workers:
    """Real ``helpline worker`` processes (with the stub channel), each in its own process group, so a kill -9
    takes the work horse down with it, as a crashed machine or container would."""

    def __init__(self, env: dict[str, str], logdir: Path) -> None:
        self.env = env
        self.logdir = logdir
        self.procs: list[subprocess.Popen[bytes]] = []
        self.started = 0
        self.log_of: dict[int, Path] = {}

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        self.started += 1
        log = open(self.logdir / f"worker-{self.started}.log", "wb")  # noqa: SIM115 — closed with the process
        proc = subprocess.Popen([sys.executable, "-m", "tests.workers.worker_main", *args], env=self.env, cwd=ROOT,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.procs.append(proc)
        self.log_of[proc.pid] = self.logdir / f"worker-{self.started}.log"
        return proc

    def wait_listening(self, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
        """Wait until the worker has started up and takes jobs (so a kill lands mid-work, not mid-import)."""
        log = self.log_of[proc.pid]
        deadline = time.monotonic() + timeout
        while b"Listening on" not in log.read_bytes():
            if time.monotonic() > deadline or proc.poll() is not None:
                raise AssertionError(f"worker did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.02)

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        """kill -9 the worker and its work horse (RQ puts the horse in a session of its own)."""
        kill_tree(proc.pid)
        proc.wait()

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                self.kill(proc)
        self.procs.clear()

    def logs(self) -> str:
        codes = ", ".join(f"{p.pid}: {p.poll()}" for p in self.procs)
        text = "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(self.logdir.glob("worker-*.log")))
        return f"{text}\nworker exit codes: {codes}"


@pytest.fixture
def workers_factory(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], Workers]]:
    made: list[Workers] = []

    def make(env: dict[str, str]) -> Workers:
        w = Workers(env, tmp_path)
        made.append(w)
        return w

    yield make
    for w in made:
        w.stop_all()
