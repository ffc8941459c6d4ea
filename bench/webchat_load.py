"""Website chat under load: N visitors hold Socket.IO connections, each sends messages and waits for the agent's echo.

The full path of a chat message, with real processes: visitor socket → web process (``/widget``) → ingest and
commit (SQLite) → domain event relayed to the agents' room → an agent's socket (signed in like a browser) → the
agent answers through ``WebchatChannel`` (a write-only emitter on the Redis message queue, as the workers send) →
the web process → the visitor's socket. Reported: connections held, messages/second, p50/p95 round trip, and the
web process's memory (RSS) idle, with the connections held, and after the messages.

    python bench/webchat_load.py [--visitors 500] [--rounds 3] [--threads 0 (= visitors + 64)]

The web process is ``helpline web`` (gunicorn, one gthread worker, as the Procfile). Each WebSocket holds one of
its threads, so ``--threads`` must exceed the number of visitors (plus agents and polling requests).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests  # noqa: E402
import socketio  # noqa: E402

from connectors import webchat  # noqa: E402
from connectors.base import Outbound  # noqa: E402
from inbox.config import Settings  # noqa: E402
from inbox.crypto import encrypt_json  # noqa: E402
from inbox.migrate import upgrade  # noqa: E402
from inbox.models import Inbox, Team  # noqa: E402
from inbox.runtime import Storage  # noqa: E402
from inbox.users import create_user  # noqa: E402
from tests.services import free_port, private_redis, wait_port  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
AGENT_EMAIL, AGENT_PASSWORD = "bench-agent@helpline.test", "bench-password-1"
SECRET = "bench-inbox-secret"


def rss_kib(pid: int) -> int:
    """Resident memory of a process and its children (gunicorn's arbiter and its worker)."""
    total = 0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for p in pids:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def prepare(data_dir: Path) -> tuple[Settings, str]:
    data_dir.mkdir(parents=True, exist_ok=True)
    settings = Settings(data_dir=data_dir, secret_key="bench-secret-key")
    upgrade(settings.sqlalchemy_url)
    storage = Storage.from_settings(settings)
    with storage.factory() as session:
        team = Team(name="Bench")
        session.add(team)
        agent = create_user(session, AGENT_EMAIL, AGENT_PASSWORD, role="agent", name="Bench Agent")
        agent.teams.append(team)
        session.flush()
        inbox = Inbox(
            name="Bench chat",
            channel="webchat",
            team_id=team.id,
            public_key="bench-widget-key",
            config={"origins": []},
            secrets=encrypt_json(settings.secret_key, {"secret": SECRET}),
        )
        session.add(inbox)
        session.commit()
        inbox_id = inbox.id
    storage.dispose()
    return settings, f"inbox:{inbox_id}"


class Agent:
    """A signed-in agent socket that answers every chat message at once, as fast as a bot would."""

    def __init__(self, url: str, room: str, redis_url: str) -> None:
        http = requests.Session()
        page = http.get(f"{url}/login", timeout=10).text
        token = re.search(r'name="csrf-token" content="([^"]+)"', page)
        assert token, "no CSRF token on the login page"
        form = {"email": AGENT_EMAIL, "password": AGENT_PASSWORD, "csrf_token": token.group(1)}
        assert http.post(f"{url}/login", data=form, allow_redirects=False, timeout=10).status_code == 302
        cookie = "; ".join(f"{c.name}={c.value}" for c in http.cookies)
        self.channel = webchat.WebchatChannel({}, {}, emitter=webchat.queue_emitter(redis_url))
        self.sio = socketio.Client(reconnection=False)
        self.sio.on("message.created", self.answer)
        self.sio.connect(url, transports=["websocket"], headers={"Cookie": cookie}, wait_timeout=10)
        assert self.sio.call("join", {"room": room}, timeout=10)["ok"]

    def answer(self, payload: dict[str, Any]) -> None:
        if payload.get("direction") != "inbound":
            return
        _, visitor_id, seq = payload["text"].split(" ")
        self.channel.send(
            Outbound(message_id=payload["id"], ticket_id=payload["ticket_id"], channel="webchat",
                     to_handle=visitor_id, text=f"echo {seq}")
        )


class Visitor:
    def __init__(self, url: str) -> None:
        self.visitor_id = webchat.new_visitor_id()
        self.token = webchat.sign_visitor(webchat.visitor_key(SECRET), self.visitor_id)
        self.sio = socketio.Client(reconnection=False)
        self.waiting: dict[str, tuple[float, threading.Event]] = {}
        self.rtts: list[float] = []
        self.sio.on("agent:message", self.received, namespace=webchat.NAMESPACE)
        self.url = url

    def connect(self) -> None:
        self.sio.connect(self.url, namespaces=[webchat.NAMESPACE], transports=["websocket"], wait_timeout=30,
                         auth={"inbox": "bench-widget-key", "token": self.token})

    def received(self, payload: dict[str, Any]) -> None:
        seq = payload["text"].split(" ")[1]
        started, done = self.waiting.pop(seq)
        self.rtts.append(time.perf_counter() - started)
        done.set()

    def round_trip(self, seq: int, timeout: float = 60.0) -> bool:
        done = threading.Event()
        self.waiting[str(seq)] = (time.perf_counter(), done)
        ack = self.sio.call("visitor:message", {"id": f"bench-{seq:06d}", "text": f"bench {self.visitor_id} {seq}"},
                            namespace=webchat.NAMESPACE, timeout=timeout)
        return bool(ack.get("ok")) and done.wait(timeout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--visitors", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3, help="messages per visitor, one after the other")
    parser.add_argument("--threads", type=int, default=0, help="gunicorn threads (default: visitors + 64)")
    args = parser.parse_args()
    threads = args.threads or args.visitors + 64
    with tempfile.TemporaryDirectory() as tmp, private_redis(Path(tmp) / "redis") as redis_url:
        settings, room = prepare(Path(tmp) / "data")
        port = free_port()
        env = os.environ | {
            "HELPLINE_DATA_DIR": str(settings.data_dir),
            "SECRET_KEY": settings.secret_key,
            "REDIS_URL": redis_url,
            # Every bench visitor comes from 127.0.0.1: the per-address brakes would (rightly) stop them.
            "HELPLINE_WIDGET_LIMITS": f"ip={args.visitors * args.rounds * 2}/60,connect={args.visitors * 2}/60",
        }
        cmd = [sys.executable, "-c", "from web.cli import main; main()", "web", "--port", str(port),
               "--threads", str(threads)]
        web = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port("127.0.0.1", port, timeout=60)
            url = f"http://127.0.0.1:{port}"
            time.sleep(1)
            idle = rss_kib(web.pid)
            agent = Agent(url, room, redis_url)  # kept referenced: its socket answers until the end
            visitors = [Visitor(url) for _ in range(args.visitors)]
            started = time.perf_counter()
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(lambda v: v.connect(), visitors))
            connect_s = time.perf_counter() - started
            held = sum(v.sio.connected for v in visitors)
            time.sleep(1)
            with_connections = rss_kib(web.pid)

            def converse(v: Visitor) -> int:
                return sum(v.round_trip(seq) for seq in range(args.rounds))

            started = time.perf_counter()
            with ThreadPoolExecutor(args.visitors) as pool:
                answered = sum(pool.map(converse, visitors))
            elapsed = time.perf_counter() - started
            after = rss_kib(web.pid)
            assert agent.sio.connected, "the agent socket dropped during the run"
            rtts = sorted(rtt for v in visitors for rtt in v.rtts)
            q = statistics.quantiles(rtts, n=20) if len(rtts) >= 2 else [rtts[0]] * 19
            print(f"machine: {platform.machine()}, {os.cpu_count()} cpus, Python {platform.python_version()}; "
                  f"web: gunicorn 1 gthread worker, {threads} threads, SQLite, Redis message queue")
            print(f"visitors connected and held: {held}/{args.visitors} (connecting took {connect_s:.1f} s)")
            print(f"messages answered: {answered}/{args.visitors * args.rounds} in {elapsed:.1f} s "
                  f"= {answered / elapsed:.0f} messages/s (each one visitor → agent → visitor)")
            print(f"round trip: p50 {statistics.median(rtts) * 1000:.0f} ms, p95 {q[18] * 1000:.0f} ms, "
                  f"max {rtts[-1] * 1000:.0f} ms")
            print(f"web process RSS: idle {idle / 1024:.0f} MiB, with {held} connections {with_connections / 1024:.0f}"
                  f" MiB ({(with_connections - idle) / max(held, 1):.0f} KiB each), after messages "
                  f"{after / 1024:.0f} MiB")
            sys.stdout.flush()
        finally:
            web.send_signal(signal.SIGINT)  # gunicorn's quick shutdown: held sockets need not drain
            try:
                web.wait(15)
            except subprocess.TimeoutExpired:
                web.kill()
                web.wait()
    # Closing hundreds of client WebSockets one by one waits for close frames from a server that is gone.
    os._exit(0)


if __name__ == "__main__":
    main()
