"""A channel that cannot be reached from the Internet stands in here: a loopback TCP server that counts each
reply it accepts, serves inbound messages to poll, and can be told to answer 502 or refuse connections.

Wire format (one line each way): ``SEND <json>`` → ``OK <id>`` | ``TEMP <reason>`` | ``PERM <reason>``;
``FETCH <after>`` → one JSON line per message, then ``END``. The client, like an SMTP client, spends
``handshake_delay`` seconds connected before it sends, so a kill lands mid-conversation, while the server counts a
reply only once the whole line has arrived — the moment an SMTP server says 250.
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

from connectors.base import Outbound
from connectors.errors import ChannelAuthError, PermanentError, TemporaryError
from connectors.registry import CHANNELS
from inbox.ingest import Inbound, ingest
from inbox.models import Inbox
from inbox.runtime import Storage


class _Handler(socketserver.StreamRequestHandler):
    server: StubServer

    def handle(self) -> None:
        line = self.rfile.readline().decode().strip()
        verb, _, rest = line.partition(" ")
        if verb == "SEND":
            self.wfile.write(self.server.accept(json.loads(rest)).encode() + b"\n")
        elif verb == "FETCH":
            for msg in self.server.inbound[int(rest):]:
                self.wfile.write(json.dumps(msg).encode() + b"\n")
            self.wfile.write(b"END\n")


class StubServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.mode = "ok"  # ok | down (answers 502) | perm | auth
        self.received: list[dict[str, Any]] = []
        self.inbound: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def accept(self, data: dict[str, Any]) -> str:
        with self.lock:
            if self.mode == "down":
                return "TEMP 502 Bad Gateway"
            if self.mode == "perm":
                return "PERM 550 no such user"
            if self.mode == "auth":
                return "AUTH 535 authentication failed"
            self.received.append(data)
            return f"OK stub-{len(self.received)}"

    def counts(self) -> Counter[str]:
        with self.lock:
            return Counter(str(d["key"]) for d in self.received)

    def __enter__(self) -> StubServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


class StubChannel:
    name = "stub"

    def __init__(self, config: Mapping[str, Any], secrets: Mapping[str, Any]) -> None:
        self.port = int(config["port"])
        self.handshake_delay = float(config.get("handshake_delay", 0))

    def send(self, outbound: Outbound) -> str:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
                time.sleep(self.handshake_delay)
                payload = {"key": outbound.message_id_header or outbound.message_id, "to": outbound.to_handle,
                           "text": outbound.text, "in_reply_to": outbound.in_reply_to,
                           "references": list(outbound.references), "subject": outbound.subject,
                           "attachments": [a.filename for a in outbound.attachments]}
                sock.sendall(b"SEND " + json.dumps(payload).encode() + b"\n")
                answer = sock.makefile("rb").readline().decode().strip()
        except OSError as exc:
            raise TemporaryError(f"connection failed: {exc}") from exc
        verb, _, rest = answer.partition(" ")
        if verb == "OK":
            return rest
        if verb == "TEMP":
            raise TemporaryError(rest)
        if verb == "AUTH":
            raise ChannelAuthError(rest)
        raise PermanentError(rest or "connection closed")


def fetch(port: int, after: int) -> list[dict[str, Any]]:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(f"FETCH {after}\n".encode())
            out = []
            for raw in sock.makefile("rb"):
                if raw.strip() == b"END":
                    break
                out.append(json.loads(raw))
    except OSError as exc:
        raise TemporaryError(f"connection failed: {exc}") from exc
    return out


def sync_stub_inbox(storage: Storage, inbox_id: int) -> int:
    """Poll the stub like an IMAP mailbox: each message commits with the cursor, as mail_sync does."""
    with storage.factory() as session:
        inbox = session.get(Inbox, inbox_id)
        assert inbox is not None
        port, delay = int(inbox.config["port"]), float(inbox.config.get("fetch_delay", 0))
        after = int((inbox.cursor or {}).get("after", 0))
    stored = 0
    for i, item in enumerate(fetch(port, after), start=after + 1):
        time.sleep(delay)  # a slow mailbox, so kills land mid-poll
        with storage.factory() as session, session.begin():
            if ingest(session, inbox_id, Inbound(channel="stub", external_id=item["id"], handle=item["from"],
                                                 text=item["text"], subject=item.get("subject", ""))) is not None:
                stored += 1
            inbox = session.get(Inbox, inbox_id)
            assert inbox is not None
            inbox.cursor = {"after": i}
    return stored


def register() -> None:
    from workers import sync

    CHANNELS["stub"] = StubChannel
    sync.SYNCERS["stub"] = sync_stub_inbox
