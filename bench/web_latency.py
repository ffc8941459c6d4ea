"""Server time of the agent pages at scale, and how fast a new message reaches connected agents.

Seeds N tickets and M messages (default 100,000 and 1,000,000) with bulk inserts, then measures, as a team agent:
p50/p95 server time of the inbox list (folder counts included), a ticket page and a search, through the WSGI app
in-process; and the time from an ingested message's commit to its arrival in each of C connected Socket.IO
clients (python-socketio over WebSocket, through a private Redis as in production).

    python bench/web_latency.py [--db sqlite|postgresql] [--tickets 100000] [--messages 1000000] [--clients 50]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests  # noqa: E402
import socketio  # noqa: E402
from sqlalchemy import Engine, insert, text  # noqa: E402

from inbox.config import Settings  # noqa: E402
from inbox.ingest import Inbound, ingest  # noqa: E402
from inbox.migrate import upgrade  # noqa: E402
from inbox.models import Contact, Identity, Inbox, Message, Team, TeamMember, Ticket, User  # noqa: E402
from tests import services  # noqa: E402
from web import create_app  # noqa: E402

WORDS = (
    "order refund parcel shipping invoice size colour jacket shirt mug broken late tracking address return "
    "exchange discount coupon payment card paypal stock delivery warehouse courier receipt vat company"
).split()
PASSWORD = "bench password"
CHUNK = 20_000
ORDERS = 200_000  # distinct order numbers mentioned in messages


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def seed(engine: Engine, tickets: int, messages: int, rng: random.Random) -> None:
    """Bulk rows, spread over 4 inboxes and a year of activity; ~2 tickets per contact."""
    from werkzeug.security import generate_password_hash

    now = dt.datetime.now(dt.UTC)
    contacts = max(1, tickets // 2)
    with engine.begin() as conn:
        conn.execute(insert(Team), [{"id": 1, "name": "Support"}])
        conn.execute(
            insert(User),
            [
                {
                    "id": 1,
                    "email": "agent@bench.test",
                    "name": "Bench Agent",
                    "role": "agent",
                    "password_hash": generate_password_hash(PASSWORD),
                }
            ],
        )
        conn.execute(insert(TeamMember), [{"team_id": 1, "user_id": 1}])
        conn.execute(
            insert(Inbox),
            [
                {"id": i, "name": f"Inbox {i}", "channel": "email", "team_id": 1, "config": {}, "cursor": {}}
                for i in range(1, 5)
            ],
        )
        for start in range(1, contacts + 1, CHUNK):
            ids = range(start, min(contacts + 1, start + CHUNK))
            conn.execute(insert(Contact), [{"id": c, "name": f"Customer {c}", "attributes": {}} for c in ids])
            conn.execute(
                insert(Identity),
                [{"id": c, "contact_id": c, "channel": "email", "handle": f"customer{c}@example.com"} for c in ids],
            )
        # A realistic backlog: most tickets are long solved; about 1 in 8 is still being worked on.
        statuses = ("new", "open", "open", "pending", "snoozed") + ("solved",) * 5 + ("closed",) * 30
        for start in range(1, tickets + 1, CHUNK):
            rows = []
            for t in range(start, min(tickets + 1, start + CHUNK)):
                at = now - dt.timedelta(minutes=rng.randint(0, 525_600))
                rows.append(
                    {
                        "id": t,
                        "inbox_id": 1 + t % 4,
                        "contact_id": 1 + t % contacts,
                        "channel": "email",
                        "subject": f"About my {rng.choice(WORDS)} {t}",
                        "preview": "Hello",
                        "status": rng.choice(statuses),
                        "priority": "normal",
                        "assignee_id": 1 if t % 7 == 0 else None,
                        "message_count": 0,
                        "created_at": at,
                        "updated_at": at,
                        "last_activity_at": at,
                    }
                )
            conn.execute(insert(Ticket), rows)
        for start in range(1, messages + 1, CHUNK):
            rows = []
            for m in range(start, min(messages + 1, start + CHUNK)):
                t = 1 + (m * 7919) % tickets  # scatter messages over tickets
                # Common words plus an order number: searches look for rare things (numbers, names, addresses).
                words = [rng.choice(WORDS) for _ in range(rng.randint(8, 40))]
                body = " ".join([*words, f"order{rng.randint(1, ORDERS)}"])
                rows.append(
                    {
                        "id": m,
                        "ticket_id": t,
                        "inbox_id": 1 + t % 4,
                        "contact_id": 1 + t % contacts,
                        "identity_id": 1 + t % contacts,
                        "direction": "inbound" if m % 3 else "outbound",
                        "channel": "email",
                        "external_id": f"bench-{m}",
                        "subject": "",
                        "body_text": body,
                        "meta": {},
                        "created_at": now - dt.timedelta(seconds=messages - m),
                        "is_auto": False,
                        "thread_reason": "",
                        "delivery_attempts": 0,
                    }
                )
            conn.execute(insert(Message), rows)
            print(f"  seeded {min(messages, start + CHUNK - 1):,} messages", flush=True)
        if engine.dialect.name == "postgresql":
            for table in ("contact", "identity", "ticket", "message", "inbox", "team", "user"):
                quoted = f'"{table}"'  # "user" is a reserved word
                conn.execute(
                    text(f"SELECT setval(pg_get_serial_sequence('{quoted}', 'id'), (SELECT max(id) FROM {quoted}))")
                )
    if engine.dialect.name == "postgresql":
        # What autovacuum would do soon: statistics, and the visibility map that index-only scans need.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))


def timed(fn: Callable[[], Any], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def page_latency(app: Any, tickets: int, samples: int, rng: random.Random) -> dict[str, list[float]]:
    client = app.test_client()
    html = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)  # type: ignore[union-attr]
    client.post("/login", data={"email": "agent@bench.test", "password": PASSWORD, "csrf_token": token})

    def get(url: str) -> None:
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)

    get("/")  # warm caches and templates
    return {
        "inbox list (page 1, with folder counts)": timed(lambda: get("/?folder=open"), samples),
        "inbox rows fragment (live refresh)": timed(lambda: get("/fragments/inbox/rows?folder=open"), samples),
        "ticket page": timed(lambda: get(f"/tickets/{rng.randint(1, tickets)}"), samples),
        "search (an order number)": timed(lambda: get(f"/search?q=order{rng.randint(1, ORDERS)}"), samples),
        "search (a common word and a prefix)": timed(
            lambda: get(f"/search?q={rng.choice(WORDS)}+order{rng.randint(1, 99)}"), samples
        ),
    }


@contextmanager
def gunicorn(settings: Settings, redis_url: str) -> Iterator[str]:
    """The production web process (Procfile: one gthread worker, 100 threads) on a free loopback port."""
    port = services.free_port()
    env = dict(
        os.environ,
        DATABASE_URL=settings.database_url,
        REDIS_URL=redis_url,
        SECRET_KEY=settings.secret_key,
        HELPLINE_DATA_DIR=str(settings.data_dir),
        HELPLINE_BASE_URL=f"http://127.0.0.1:{port}",
    )
    cmd = [
        sys.executable,
        "-m",
        "gunicorn",
        "-w",
        "1",
        "-k",
        "gthread",
        "--threads",
        "100",
        "-b",
        f"127.0.0.1:{port}",
        "--log-level",
        "warning",
        "web:create_app()",
    ]
    proc = subprocess.Popen(cmd, env=env, cwd=Path(__file__).resolve().parents[1])
    try:
        services.wait_port("127.0.0.1", port, 30)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(20)


def live_latency(app: Any, settings: Settings, redis_url: str, clients: int, rounds: int) -> list[float]:
    """Commit an inbound message here (as a worker would), time its arrival in every client of the web process."""
    arrivals: dict[str, dict[int, float]] = {}
    lock = threading.Lock()
    with gunicorn(settings, redis_url) as url, ExitStack() as stack:
        http = requests.Session()
        token = re.search(r'name="csrf-token" content="([^"]+)"', http.get(url + "/login").text).group(1)
        http.post(url + "/login", data={"email": "agent@bench.test", "password": PASSWORD, "csrf_token": token})
        cookie = "; ".join(f"{k}={v}" for k, v in http.cookies.items())
        for n in range(clients):
            sio = socketio.Client()

            def on_message(payload: dict[str, Any], n: int = n) -> None:
                with lock:
                    arrivals.setdefault(str(payload["id"]), {})[n] = time.perf_counter()

            sio.on("message.created", on_message)
            sio.connect(url, headers={"Cookie": cookie}, transports=["websocket"])
            assert sio.call("join", {"room": "inbox:1"})["ok"]
            stack.callback(sio.disconnect)
        factory = app.extensions["helpline"].factory  # this process emits through Redis, like a worker
        latencies: list[float] = []
        run = uuid.uuid4().hex[:8]
        for r in range(rounds):
            with factory() as session:
                msg = ingest(
                    session,
                    1,
                    Inbound(
                        channel="email",
                        external_id=f"live-{run}-{r}",
                        handle="live@x.test",
                        text="live update",
                        subject="Live",
                        message_id=f"<live-{run}-{r}@x>",
                    ),
                )
                assert msg is not None
                t0 = time.perf_counter()
                session.commit()
                key = str(msg.id)
            deadline = time.monotonic() + 10
            got: dict[int, float] = {}
            while time.monotonic() < deadline and len(got) < clients:
                time.sleep(0.002)
                with lock:
                    got = dict(arrivals.get(key, {}))
            assert len(got) == clients, f"only {len(got)} of {clients} clients heard message {key}"
            latencies += [t - t0 for t in got.values()]
            time.sleep(0.05)
    return latencies


@contextmanager
def database(kind: str, data_dir: Path, url: str | None = None) -> Iterator[str]:
    if url:
        yield url  # an already seeded database
        return
    if kind == "sqlite":
        data_dir.mkdir(parents=True, exist_ok=True)
        yield f"sqlite:///{data_dir / 'helpline.db'}"
        return
    admin = services.ensure_postgres()
    if admin is None:
        raise SystemExit("PostgreSQL is not reachable")
    with services.private_pg_database(admin) as url:
        yield url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--data-dir", type=Path, help="keep the seeded SQLite here and reuse it next time")
    parser.add_argument("--database-url", help="an already seeded PostgreSQL database to reuse")
    args = parser.parse_args()
    rng = random.Random(5)
    with tempfile.TemporaryDirectory() as tmp, database(args.db, args.data_dir or Path(tmp), args.database_url) as url:
        data_dir = args.data_dir or Path(tmp)
        reuse = bool(args.database_url) or (args.db == "sqlite" and (data_dir / "helpline.db").exists())
        upgrade(url)
        with services.private_redis(Path(tmp) / "redis") as redis_url:
            settings = Settings(data_dir=data_dir, database_url=url, secret_key="bench")
            app = create_app(settings, redis_url=redis_url)
            t0 = time.perf_counter()
            if reuse:
                print("reusing the seeded database")
            else:
                seed(app.extensions["helpline"].engine, args.tickets, args.messages, rng)
                print(
                    f"seeded {args.tickets:,} tickets, {args.messages:,} messages in {time.perf_counter() - t0:.0f} s"
                )
            print(f"\n{args.db}, {args.tickets:,} tickets, {args.messages:,} messages\n")
            print("| measure | p50 ms | p95 ms |\n| --- | ---: | ---: |")
            for name, samples in page_latency(app, args.tickets, args.samples, rng).items():
                print(f"| {name} | {pct(samples, 0.5):.1f} | {pct(samples, 0.95):.1f} |", flush=True)
            live = live_latency(app, settings, redis_url, args.clients, args.rounds)
            print(
                f"| new message to {args.clients} clients (n={len(live)}) | {pct(live, 0.5):.1f} "
                f"| {pct(live, 0.95):.1f} |"
            )
            app.extensions["helpline"].dispose()


if __name__ == "__main__":
    main()
