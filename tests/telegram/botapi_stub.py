"""A local stand-in for Telegram's Bot API server, speaking its documented JSON (https://core.telegram.org/bots/api).

python-telegram-bot talks to it through ``base_url``/``base_file_url`` exactly as it talks to api.telegram.org
or a self-hosted ``telegram-bot-api``: ``POST /bot<token>/<method>`` with form or multipart parameters, answers
``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code": ..., "description": ...}``, files under
``GET /file/bot<token>/<file_path>``. It keeps what a test needs to look at (``calls``, ``sent``, ``actions``)
and can be told to answer an error (401, 403, 429 with ``retry_after``, 502) once or several times.
When a webhook is set, ``push`` POSTs each update to it with the secret header, as Telegram does.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
BOT_USER = {"id": 123456789, "is_bot": True, "first_name": "Shop Support", "username": "shop_support_bot",
            "can_join_groups": True, "can_read_all_group_messages": False, "supports_inline_queries": False}
BAD_GATEWAY_HTML = b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway" \
                   b"</h1></center>\r\n<hr><center>nginx/1.18.0</center>\r\n</body>\r\n</html>\r\n"
_INT_FIELDS = {"offset", "limit", "timeout", "message_id", "max_connections"}
_JSON_FIELDS = {"reply_parameters", "allowed_updates", "reply_markup"}


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    files: dict[str, tuple[str, bytes, str]] = field(default_factory=dict)  # field → (filename, data, type)


@dataclass
class StoredFile:
    file_id: str
    file_unique_id: str
    data: bytes
    file_path: str
    reported_size: int | None = None  # what getFile says, when a test pretends a file is bigger


class BotApiStub:
    """Run with ``with BotApiStub() as stub:``; ``stub.api_base`` goes into the inbox's ``config["api_base"]``."""

    def __init__(self, token: str = TOKEN) -> None:
        self.tokens = {token: dict(BOT_USER)}
        self.lock = threading.Condition()
        self.updates: list[dict[str, Any]] = []  # unconfirmed updates, oldest first
        self.next_update_id = 815_000_001
        self.next_message_id = 900
        self.calls: list[Call] = []
        self.sent: list[Call] = []  # sendMessage/sendPhoto/sendDocument that succeeded
        self.actions: list[tuple[str, str]] = []  # (chat_id, action)
        self.blocked: set[str] = set()  # chat ids whose user blocked the bot
        self.files: dict[str, StoredFile] = {}
        self.failures: dict[str, list[tuple[int, str, dict[str, Any] | None]]] = {}
        self.webhook: dict[str, Any] = {}
        self.webhook_responses: list[int] = []
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    # --- test API --------------------------------------------------------------------------------------------

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def __enter__(self) -> BotApiStub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def add_file(self, data: bytes, *, file_id: str, file_unique_id: str = "", path: str = "",
                 reported_size: int | None = None) -> StoredFile:
        unique = file_unique_id or hashlib.sha1(file_id.encode()).hexdigest()[:16]
        stored = StoredFile(file_id, unique, data, path or f"documents/file_{len(self.files)}", reported_size)
        self.files[file_id] = stored
        return stored

    def push(self, update: Mapping[str, Any]) -> dict[str, Any]:
        """Queue an update for getUpdates (keeping its update_id if it has one), or POST it to the webhook."""
        with self.lock:
            upd = dict(update)
            if int(upd.get("update_id") or 0) < self.next_update_id:
                upd["update_id"] = self.next_update_id  # Telegram's ids only grow: a replayed recording gets a new one
            self.next_update_id = max(self.next_update_id, int(upd["update_id"])) + 1
            webhook = dict(self.webhook)
            if not webhook:
                self.updates.append(upd)
                self.lock.notify_all()
        if webhook:
            self.webhook_responses.append(self._post_webhook(webhook, upd))
        return upd

    def fail(self, method: str, status: int, description: str | None = None, *, retry_after: int | None = None,
             times: int = 1) -> None:
        """Answer the next ``times`` calls of ``method`` (or "*" for any) with an error."""
        defaults = {401: "Unauthorized", 403: "Forbidden: bot was blocked by the user", 400: "Bad Request",
                    429: f"Too Many Requests: retry after {retry_after}", 502: "Bad Gateway"}
        params = {"retry_after": retry_after} if retry_after is not None else None
        with self.lock:
            self.failures.setdefault(method, []).extend(
                [(status, description or defaults.get(status, "Error"), params)] * times
            )

    def methods(self) -> list[str]:
        return [c.method for c in self.calls]

    # --- server -----------------------------------------------------------------------------------------------

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        return self._dispatch(request)(environ, start_response)

    def _dispatch(self, request: Request) -> Response:
        parts = request.path.strip("/").split("/")
        if len(parts) >= 3 and parts[0] == "file" and parts[1].startswith("bot"):
            return self._download(parts[1][3:], "/".join(parts[2:]))
        if len(parts) != 2 or not parts[0].startswith("bot"):
            return _error(404, "Not Found")
        token, method = parts[0][3:], parts[1]
        if token not in self.tokens:
            return _error(401, "Unauthorized")
        call = Call(method, _params(request), {k: (f.filename or k, f.read(), f.mimetype)
                                               for k, f in request.files.items()})
        with self.lock:
            self.calls.append(call)
            queued = self.failures.get(method) or self.failures.get("*")
            failure = queued.pop(0) if queued else None
        if failure is not None:
            status, description, parameters = failure
            if status == 502:
                return Response(BAD_GATEWAY_HTML, status=502, content_type="text/html")
            return _error(status, description, parameters)
        handler = getattr(self, f"_api_{method}", None)
        if handler is None:
            return _error(404, "Not Found: method not found")
        result = handler(token, call)
        return result if isinstance(result, Response) else _ok(result)

    def _api_getMe(self, token: str, call: Call) -> Any:
        return self.tokens[token]

    def _api_getUpdates(self, token: str, call: Call) -> Any:
        if self.webhook:
            return _error(409, "Conflict: can't use getUpdates method while webhook is active; "
                               "use deleteWebhook to delete the webhook first")
        offset = int(call.params.get("offset") or 0)
        limit = min(int(call.params.get("limit") or 100), 100)
        deadline = time.monotonic() + min(float(call.params.get("timeout") or 0), 5.0)
        with self.lock:
            if offset:
                # Asking with an offset confirms every update before it: Telegram forgets them.
                self.updates = [u for u in self.updates if u["update_id"] >= offset]
            while not self.updates and time.monotonic() < deadline:
                self.lock.wait(deadline - time.monotonic())
            return [u for u in self.updates if u["update_id"] >= offset][:limit]

    def _message(self, call: Call, **content: Any) -> dict[str, Any]:
        chat_id = str(call.params.get("chat_id", ""))
        if chat_id in self.blocked:
            return {"error": _error(403, "Forbidden: bot was blocked by the user")}
        if not chat_id:
            return {"error": _error(400, "Bad Request: chat not found")}
        with self.lock:
            self.next_message_id += 1
            mid = self.next_message_id
        chat: dict[str, Any] = {"id": int(chat_id) if chat_id.lstrip("-").isdigit() else chat_id, "type": "private"}
        message = {"message_id": mid, "from": self.tokens[TOKEN] if TOKEN in self.tokens else BOT_USER,
                   "chat": chat, "date": int(time.time()), **content}
        reply = call.params.get("reply_parameters")
        if isinstance(reply, dict) and reply.get("message_id"):
            message["reply_to_message"] = {"message_id": reply["message_id"], "chat": chat, "date": int(time.time())}
        self.sent.append(call)
        return message

    def _finish(self, message: dict[str, Any]) -> Any:
        return message["error"] if "error" in message else message

    def _api_sendMessage(self, token: str, call: Call) -> Any:
        text = call.params.get("text") or ""
        if not text.strip():
            return _error(400, "Bad Request: message text is empty")
        if len(text.encode("utf-16-le")) // 2 > 4096:
            return _error(400, "Bad Request: message is too long")
        return self._finish(self._message(call, text=text))

    def _upload(self, call: Call, field_name: str) -> tuple[str, bytes, str] | Response:
        if field_name in call.files:
            return call.files[field_name]
        ref = call.params.get(field_name)
        stored = self.files.get(str(ref))
        if stored is None:
            return _error(400, "Bad Request: wrong file identifier/HTTP URL specified")
        return (stored.file_path, stored.data, "application/octet-stream")

    def _store_upload(self, filename: str, data: bytes, folder: str) -> StoredFile:
        digest = hashlib.sha256(data).hexdigest()
        return self.add_file(data, file_id=f"AgAC{digest[:40]}", file_unique_id=f"AQAD{digest[:12]}",
                             path=f"{folder}/{filename}")

    def _api_sendPhoto(self, token: str, call: Call) -> Any:
        upload = self._upload(call, "photo")
        if isinstance(upload, Response):
            return upload
        stored = self._store_upload(upload[0], upload[1], "photos")
        size = {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id, "file_size": len(upload[1]),
                "width": 800, "height": 600}
        caption = {"caption": call.params["caption"]} if call.params.get("caption") else {}
        return self._finish(self._message(call, photo=[size], **caption))

    def _api_sendDocument(self, token: str, call: Call) -> Any:
        upload = self._upload(call, "document")
        if isinstance(upload, Response):
            return upload
        stored = self._store_upload(upload[0], upload[1], "documents")
        doc = {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id, "file_size": len(upload[1]),
               "file_name": upload[0], "mime_type": upload[2]}
        caption = {"caption": call.params["caption"]} if call.params.get("caption") else {}
        return self._finish(self._message(call, document=doc, **caption))

    def _api_sendChatAction(self, token: str, call: Call) -> Any:
        chat_id = str(call.params.get("chat_id", ""))
        if chat_id in self.blocked:
            return _error(403, "Forbidden: bot was blocked by the user")
        self.actions.append((chat_id, str(call.params.get("action"))))
        return True

    def _api_getFile(self, token: str, call: Call) -> Any:
        stored = self.files.get(str(call.params.get("file_id")))
        if stored is None:
            return _error(400, "Bad Request: invalid file_id")
        size = stored.reported_size if stored.reported_size is not None else len(stored.data)
        if size > 20 * 1024 * 1024:
            return _error(400, "Bad Request: file is too big")
        return {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id, "file_size": size,
                "file_path": stored.file_path}

    def _api_setWebhook(self, token: str, call: Call) -> Any:
        url = str(call.params.get("url") or "")
        if not url:
            self.webhook = {}
            return _ok(True, "Webhook was deleted")
        self.webhook = {"url": url, "secret_token": call.params.get("secret_token"),
                        "allowed_updates": call.params.get("allowed_updates")}
        return _ok(True, "Webhook was set")

    def _api_deleteWebhook(self, token: str, call: Call) -> Any:
        self.webhook = {}
        return _ok(True, "Webhook was deleted")

    def _api_getWebhookInfo(self, token: str, call: Call) -> Any:
        return {"url": self.webhook.get("url", ""), "has_custom_certificate": False,
                "pending_update_count": len(self.updates)}

    def _download(self, token: str, path: str) -> Response:
        if token not in self.tokens:
            return _error(401, "Unauthorized")
        for stored in self.files.values():
            if stored.file_path == path:
                return Response(stored.data, content_type="application/octet-stream")
        return _error(404, "Not Found")

    def _post_webhook(self, webhook: Mapping[str, Any], update: Mapping[str, Any]) -> int:
        headers = {"Content-Type": "application/json"}
        if webhook.get("secret_token"):
            headers["X-Telegram-Bot-Api-Secret-Token"] = str(webhook["secret_token"])
        req = urllib.request.Request(str(webhook["url"]), data=json.dumps(update).encode(), headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            exc.close()
            return int(exc.code)


def _params(request: Request) -> dict[str, Any]:
    raw: dict[str, Any] = dict(request.form.items())
    if request.is_json:
        raw.update(request.get_json())
    raw.update(request.args.items())
    params: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, str) and key in _JSON_FIELDS:
            value = json.loads(value)
        elif isinstance(value, str) and key in _INT_FIELDS and value.lstrip("-").isdigit():
            value = int(value)
        params[key] = value
    return params


def _ok(result: Any, description: str | None = None) -> Response:
    body: dict[str, Any] = {"ok": True, "result": result}
    if description:
        body["description"] = description
    return Response(json.dumps(body), content_type="application/json")


def _error(status: int, description: str, parameters: dict[str, Any] | None = None) -> Response:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if parameters:
        body["parameters"] = parameters
    return Response(json.dumps(body), status=status, content_type="application/json")
