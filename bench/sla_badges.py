"""What the SLA badges cost the inbox list at scale: the same pages timed without and with an SLA policy.

Seeds the workspace of ``bench/web_latency.py`` (default 100,000 tickets, 1,000,000 messages), times the inbox page
and the rows fragment as a team agent with no policy (no badge work), then adds one around-the-clock policy that
applies to every ticket and times them again: every open row then gets its badge from ``tickets.sla``.

    python bench/sla_badges.py [--db sqlite|postgresql] [--tickets 100000] [--messages 1000000] [--samples 200]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import event  # noqa: E402

from bench.web_latency import database, pct, seed, timed  # noqa: E402
from inbox.config import Settings  # noqa: E402
from inbox.migrate import upgrade  # noqa: E402
from inbox.models import SlaPolicy, SlaTarget  # noqa: E402
from web import create_app  # noqa: E402

PAGES = {"inbox list (page 1, with folder counts)": "/?folder=open", "inbox rows fragment": "/fragments/inbox/rows"}


def measure(app: object, samples: int) -> dict[str, tuple[list[float], int, int]]:
    from bench.web_latency import PASSWORD

    client = app.test_client()  # type: ignore[attr-defined]
    html = client.get("/login").get_data(as_text=True)
    token = html.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
    client.post("/login", data={"email": "agent@bench.test", "password": PASSWORD, "csrf_token": token})
    engine = app.extensions["helpline"].engine  # type: ignore[attr-defined]
    out = {}
    for name, url in PAGES.items():
        client.get(url)  # warm up
        statements: list[str] = []

        def listener(*a: object, seen: list[str] = statements) -> None:
            seen.append(str(a[2]))

        event.listen(engine, "before_cursor_execute", listener)
        body = client.get(url).get_data(as_text=True)
        event.remove(engine, "before_cursor_execute", listener)
        out[name] = (timed(lambda url=url: client.get(url), samples), len(statements), body.count("sla-badge"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    rng = random.Random(5)
    with tempfile.TemporaryDirectory() as tmp, database(args.db, Path(tmp)) as url:
        upgrade(url)
        app = create_app(Settings(data_dir=Path(tmp), database_url=url, secret_key="bench"), redis_url="")
        t0 = time.perf_counter()
        seed(app.extensions["helpline"].engine, args.tickets, args.messages, rng)
        print(f"seeded {args.tickets:,} tickets, {args.messages:,} messages in {time.perf_counter() - t0:.0f} s")
        rows = []
        for label in ("no SLA policy", "one policy for every ticket"):
            if label != "no SLA policy":
                with app.extensions["helpline"].factory() as session:
                    policy = SlaPolicy(name="Standard")
                    policy.targets = [
                        SlaTarget(priority=p, first_response_seconds=4 * 3600, resolution_seconds=3 * 86400)
                        for p in ("low", "normal", "high", "urgent")
                    ]
                    session.add(policy)
                    session.commit()
            for name, (samples, queries, badges) in measure(app, args.samples).items():
                rows.append(
                    f"| {name}, {label} | {pct(samples, 0.5):.1f} | {pct(samples, 0.95):.1f} | {queries} | {badges} |"
                )
        print(f"\n{args.db}, {args.tickets:,} tickets, {args.messages:,} messages\n")
        print("| page | p50 ms | p95 ms | SQL statements | badges shown |\n| --- | ---: | ---: | ---: | ---: |")
        print("\n".join(rows))
        app.extensions["helpline"].dispose()


if __name__ == "__main__":
    main()
