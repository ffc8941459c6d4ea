"""Outbox delivery throughput and latency: N replies through real ``helpline worker`` processes to an aiosmtpd
listener on loopback.

Two measurements per worker count:
- **drain**: N replies committed and enqueued first (a backlog, as after an outage), then the workers start;
  replies/second = N / (last SMTP acceptance − workers started).
- **steady**: replies committed one by one at a fixed rate below the drain rate (agents pressing send), workers
  already running; p50/p95 of "agent pressed send" (the reply's commit) → "accepted by the SMTP server" (the
  listener's 250 after DATA).

    python bench/delivery.py [--replies 5000] [--workers 1,2] [--steady 300] [--rate 0.6 | --steady-rate R]
                             [--simple]

The database is a SQLite file (the single-machine default); Redis is a private redis-server on a free port.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiosmtpd.controller import Controller  # noqa: E402

from inbox.config import Settings  # noqa: E402
from inbox.ingest import Inbound, ingest  # noqa: E402
from inbox.migrate import upgrade  # noqa: E402
from inbox.models import Inbox, Message, Ticket  # noqa: E402
from tests.services import free_port, private_redis  # noqa: E402
from tickets import lifecycle  # noqa: E402
from workers import runtime  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MESSAGE_ID = re.compile(rb"^Message-ID:\s*(<[^>]+>)", re.IGNORECASE | re.MULTILINE)


class Sink:
    """aiosmtpd handler: the time each Message-ID was accepted."""

    def __init__(self) -> None:
        self.accepted: dict[str, float] = {}
        self.duplicates = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook
        now = time.time()
        found = MESSAGE_ID.search(envelope.original_content or b"")
        key = found.group(1).decode() if found else f"?{now}"
        with self.lock:
            if key in self.accepted:
                self.duplicates += 1
            else:
                self.accepted[key] = now
        return "250 Message accepted"


def start_workers(n: int, env: dict[str, str], simple: bool, logdir: Path) -> list[subprocess.Popen[bytes]]:
    args = [sys.executable, "-m", "web.cli_processes", "worker", *(["--simple"] if simple else [])]
    procs = []
    for i in range(n):
        log = open(logdir / f"worker-{i}.log", "ab")  # noqa: SIM115 — the child keeps it
        procs.append(subprocess.Popen(args, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT))
        log.close()
    return procs


def stop_workers(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def wait_listening(logdir: Path, n: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        logs = [p.read_bytes() for p in logdir.glob("worker-*.log")]
        if sum(log.count(b"Listening on") for log in logs) >= n:
            return
        time.sleep(0.05)
    raise TimeoutError("workers did not start")


def new_ticket(session: Any, inbox_id: int, n: int) -> Ticket:
    msg = ingest(session, inbox_id, Inbound(channel="email", external_id=f"bench-{n}-{time.time_ns()}",
                                           handle=f"customer{n}@example.com", text="Where is my order?",
                                           subject=f"Order {n}", message_id=f"<bench-{n}-{time.time_ns()}@c.test>"))
    assert msg is not None
    ticket = session.get(Ticket, msg.ticket_id)
    assert ticket is not None
    return ticket


def wait_accepted(sink: Sink, keys: set[str], timeout: float) -> None:
    from workers.maintenance import sweep_outbox

    deadline = time.monotonic() + timeout
    next_sweep = time.monotonic() + 15
    while time.monotonic() < deadline:
        with sink.lock:
            if keys <= sink.accepted.keys():
                return
        if time.monotonic() > next_sweep:
            # What `helpline scheduler` does every minute (this bench runs no scheduler).
            if swept := sweep_outbox():
                print(f"(sweeper re-enqueued {swept} replies)", flush=True)
            next_sweep = time.monotonic() + 15
        time.sleep(0.05)
    missing = len(keys - sink.accepted.keys())
    raise TimeoutError(f"{missing} replies not accepted within {timeout:.0f}s")


def drain(n_workers: int, replies: int, inbox_id: int, sink: Sink, env: dict[str, str], simple: bool,
          logdir: Path) -> tuple[float, float, float]:
    """Replies/s, and p50/p95 of "workers started" → SMTP 250 (the wait of a reply in a backlog of ``replies``)."""
    storage = runtime.storage()
    keys: list[str] = []
    with storage.factory() as session:
        tickets = [new_ticket(session, inbox_id, i) for i in range(50)]
        session.commit()
        ticket_ids = [t.id for t in tickets]
    for start in range(0, replies, 200):
        # One short session per 200 replies (the DeliveryEnqueuer enqueues each after its commit): a single
        # session for all of them kept every reply and its ticket in its identity map.
        with storage.factory() as session:
            for i in range(start, min(start + 200, replies)):
                ticket = session.get(Ticket, ticket_ids[i % 50])
                assert ticket is not None
                keys.append(str(lifecycle.reply(session, ticket, f"Reply {i}", by=None).message_id_header))
            session.commit()
    t0 = time.time()
    procs = start_workers(n_workers, env, simple, logdir)
    try:
        wait_accepted(sink, set(keys), timeout=7200)
    finally:
        stop_workers(procs)
    waits = sorted(sink.accepted[k] - t0 for k in keys)
    return replies / waits[-1], statistics.median(waits), waits[int(0.95 * (len(waits) - 1))]


def steady(n_workers: int, count: int, rate: float, inbox_id: int, sink: Sink, env: dict[str, str], simple: bool,
           logdir: Path) -> tuple[float, float, float]:
    storage = runtime.storage()
    with storage.factory() as session:
        tickets = [new_ticket(session, inbox_id, i) for i in range(20)]
        session.commit()
    procs = start_workers(n_workers, env, simple, logdir)
    sent_at: dict[str, float] = {}
    try:
        wait_listening(logdir, n_workers)
        start = time.monotonic()
        for i in range(count):
            # Open loop: each reply is due at its slot, however long the previous commit took.
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            with storage.factory() as session:
                ticket = session.get(Ticket, tickets[i % 20].id)
                assert ticket is not None
                msg = lifecycle.reply(session, ticket, f"Steady reply {i}", by=None)
                session.commit()
                sent_at[str(msg.message_id_header)] = time.time()
        wait_accepted(sink, set(sent_at), timeout=600)
    finally:
        stop_workers(procs)
    latencies = sorted(sink.accepted[k] - t for k, t in sent_at.items())
    p50 = statistics.median(latencies)
    p95 = latencies[int(0.95 * (len(latencies) - 1))]
    return p50, p95, max(latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replies", type=int, default=5000)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--steady", type=int, default=300, help="replies in the steady-rate run (0: skip)")
    parser.add_argument("--rate", type=float, default=0.6, help="steady rate as a fraction of the drain rate")
    parser.add_argument("--steady-rate", type=float, default=0.0, help="steady rate in replies/s (overrides --rate)")
    parser.add_argument("--simple", action="store_true", help="run workers with --simple (no fork per job)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="hl-delivery-bench-"))
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    print(f"# {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"load {os.getloadavg()[0]:.1f}; workers {'--simple' if args.simple else 'fork per job'}")
    try:
        with private_redis(tmp / "redis") as redis_url:
            for n in (int(x) for x in args.workers.split(",")):
                data = tmp / f"data-{n}"
                settings = Settings(data_dir=data, database_url=f"sqlite:///{data / 'helpline.db'}",
                                    secret_key="bench-secret")
                data.mkdir(parents=True)
                upgrade(settings.sqlalchemy_url)
                runtime.configure(settings, redis_url)
                runtime.redis().flushdb()
                with runtime.storage().factory() as session:
                    inbox = Inbox(name="Bench", channel="email", address="support@shop.test",
                                  config={"smtp_host": "127.0.0.1", "smtp_port": controller.port,
                                          "smtp_security": "none"})
                    session.add(inbox)
                    session.commit()
                    inbox_id = inbox.id
                env = dict(os.environ, DATABASE_URL=settings.database_url, REDIS_URL=redis_url,
                           HELPLINE_DATA_DIR=str(data), SECRET_KEY=settings.secret_key, PYTHONPATH=str(ROOT))
                logdir = tmp / f"logs-{n}"
                logdir.mkdir()
                rate, p50, p95 = drain(n, args.replies, inbox_id, sink, env, args.simple, logdir)
                print(f"{n} worker(s): drain of {args.replies} replies: {rate:.1f} replies/s; workers started → SMTP "
                      f"250 p50 {p50:.0f} s, p95 {p95:.0f} s; load {os.getloadavg()[0]:.1f}", flush=True)
                if args.steady:
                    target = args.steady_rate or rate * args.rate
                    p50, p95, worst = steady(n, args.steady, target, inbox_id, sink, env, args.simple,
                                             tmp / f"logs-{n}")
                    print(f"{n} worker(s): steady {args.steady} replies at {target:.1f}/s: send → SMTP 250 "
                          f"p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, max {worst * 1000:.0f} ms; "
                          f"load {os.getloadavg()[0]:.1f}", flush=True)
                with runtime.storage().factory() as session:
                    unsent = session.query(Message).filter(Message.direction == "outbound",
                                                           Message.delivery_state != "sent").count()
                print(f"{n} worker(s): unsent {unsent}, duplicate deliveries {sink.duplicates}", flush=True)
                runtime.reset()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
