"""A loopback stand-in for graph.facebook.com: ``POST /<version>/<comment-id>/replies`` and
``POST /<version>/<ig-user-id>/messages``, answering as the Graph API does (``{"id": ...}``, ``{"recipient_id",
"message_id"}``, or ``{"error": {...}}``)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from tests.services import free_port

TOKEN = "EAAG-test-access-token"


@dataclass
class GraphCall:
    path: str
    params: dict[str, str]
    body: Any
    authorization: str


@dataclass
class GraphStub:
    calls: list[GraphCall] = field(default_factory=list)
    errors: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # answered first, in order

    def __enter__(self) -> GraphStub:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.server = make_server("127.0.0.1", self.port, self.app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    @Request.application  # type: ignore[misc]
    def app(self, request: Request) -> Response:
        body = request.get_json(silent=True)
        self.calls.append(GraphCall(request.path, dict(request.args), body, request.headers.get("Authorization", "")))
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._json(400, {"error": {"message": "Invalid OAuth access token.", "type": "OAuthException",
                                              "code": 190, "fbtrace_id": "A1"}})
        if self.errors:
            return self._json(*self.errors.pop(0))
        parts = request.path.strip("/").split("/")
        if request.method == "POST" and len(parts) == 3 and parts[2] == "replies" and request.args.get("message"):
            return self._json(200, {"id": f"reply-to-{parts[1]}"})
        if request.method == "POST" and len(parts) == 3 and parts[2] == "messages" and body:
            return self._json(200, {"recipient_id": body["recipient"]["id"], "message_id": "m_reply_1"})
        return self._json(400, {"error": {"message": "Unsupported post request.", "type": "GraphMethodException",
                                          "code": 100, "error_subcode": 33, "fbtrace_id": "A2"}})

    @staticmethod
    def _json(status: int, body: dict[str, Any]) -> Response:
        return Response(json.dumps(body), status=status, content_type="application/json")
