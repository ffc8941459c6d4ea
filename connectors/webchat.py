"""Website chat: visitors of a shop's pages talk to agents over Socket.IO (namespace ``/widget``).

The wire format is our own (web/static/widget/frame.js is the client; the Socket.IO protocol is
https://socket.io/docs/v4/socket-io-protocol/). Everything here but ``WebchatChannel.send`` is pure: visitor
tokens are HMACs, parse functions turn a visitor event into an ``Inbound``, origin checks compare strings.

Embedding (``helpline inbox add webchat`` prints it): ``<script src="{base}/widget.js" data-inbox="{public key}"
async></script>``. For a signed-in customer the shop's server adds ``data-user-id``, ``data-user-email``,
``data-user-name`` and ``data-user-signature`` = hex HMAC-SHA256(inbox secret, "id\nemail\nname") with the email
lower-cased (``user_signature`` below); with ``config["merge_contacts"]`` such a customer joins the contact of that
email address. An email a visitor merely types is kept for replies and never merged on.

Keys: each widget inbox has a secret (``secrets["secret"]``, or one derived from SECRET_KEY for inboxes made
without one, such as the demo's). Visitor tokens are signed with a key *derived* from it, so the raw secret, which
the shop's server also holds to sign logged-in customers, never signs anything a browser can mint.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
import secrets as _secrets
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from redis.exceptions import RedisError

from connectors.base import Outbound
from connectors.errors import PermanentError, TemporaryError
from inbox.ingest import Inbound, InboundAttachment

log = logging.getLogger(__name__)

NAMESPACE = "/widget"
MAX_TEXT = 5000  # characters in one visitor message; longer ones are refused, not cut
MAX_NAME = 200
CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
VISITOR_ID = re.compile(r"^v_[A-Za-z0-9_-]{22}$")
_TOKEN_SIG_LEN = 43  # unpadded base64 of a SHA-256 digest
# Images a browser shows safely and PDFs; identified by their first bytes, never by the client's content type.
ALLOWED_TYPES: dict[str, tuple[bytes, ...]] = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "image/webp": (b"RIFF",),  # plus "WEBP" at offset 8, checked below
    "application/pdf": (b"%PDF-",),
}
DEFAULT_MAX_ATTACHMENT = 10 * 1024 * 1024


class InvalidEvent(ValueError):
    """A visitor event we refuse (bad shape, too long): the client gets the reason in its ack."""


# --- keys and visitor tokens -------------------------------------------------------------------------------------


def derived_secret(secret_key: str, public_key: str) -> str:
    """The inbox secret of a widget inbox that has none stored: stable per (SECRET_KEY, inbox key)."""
    return hmac.new(secret_key.encode(), f"helpline-webchat-inbox:{public_key}".encode(), hashlib.sha256).hexdigest()


def visitor_key(inbox_secret: str) -> bytes:
    """The key that signs visitor ids, derived so it differs from the secret shared with the shop's server."""
    return hmac.new(inbox_secret.encode(), b"helpline-webchat-visitor-v1", hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def new_visitor_id() -> str:
    return "v_" + _secrets.token_urlsafe(16)  # 128 random bits: unguessable, and the Identity handle


def sign_visitor(key: bytes, visitor_id: str) -> str:
    """``visitor_id.signature``: what the visitor's browser keeps and presents on every connection."""
    return f"{visitor_id}.{_b64(hmac.new(key, visitor_id.encode(), hashlib.sha256).digest())}"


def verify_visitor(key: bytes, token: object) -> str | None:
    """The visitor id of a genuine token, else None (forged, truncated, another inbox's, not a string)."""
    if not isinstance(token, str) or len(token) > 100:
        return None
    visitor_id, _, sig = token.rpartition(".")
    if not VISITOR_ID.match(visitor_id) or len(sig) != _TOKEN_SIG_LEN:
        return None
    expected = sign_visitor(key, visitor_id).rpartition(".")[2]
    return visitor_id if hmac.compare_digest(expected, sig) else None


# --- signed identity of a logged-in customer (computed by the shop's server) -------------------------------------


def user_signature(inbox_secret: str, user_id: str, email: str = "", name: str = "") -> str:
    """Hex HMAC-SHA256 of ``id\\nemail\\nname`` with the inbox secret; the shop's server computes the same."""
    message = "\n".join((user_id, email.strip().lower(), name.strip()))
    return hmac.new(inbox_secret.encode(), message.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class VerifiedUser:
    user_id: str
    email: str
    name: str


def verify_user(inbox_secret: str, data: object) -> VerifiedUser | None:
    """A logged-in customer the shop vouched for (``{"id", "email", "name", "signature"}``), else None."""
    if not isinstance(data, Mapping):
        return None
    user_id, email, name, sig = (str(data.get(k) or "") for k in ("id", "email", "name", "signature"))
    if not user_id or len(user_id) > 200 or len(email) > 320 or len(name) > MAX_NAME or not sig:
        return None
    if not hmac.compare_digest(user_signature(inbox_secret, user_id, email, name), sig.lower()):
        return None
    return VerifiedUser(user_id, email.strip().lower(), name.strip())


# --- origins ------------------------------------------------------------------------------------------------------


def normalise_origin(value: str) -> str | None:
    """``scheme://host[:port]`` in lower case, or None if ``value`` is not an http(s) origin."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    default = 443 if parts.scheme == "https" else 80
    netloc = parts.hostname.lower() + (f":{port}" if port not in (None, default) else "")
    return f"{parts.scheme}://{netloc}"


def origin_allowed(origin: str | None, allowed: Iterable[str], own: Iterable[str] = ()) -> bool:
    """May a browser on ``origin`` talk to this widget? No Origin header means no browser (or a same-origin GET),
    and the visitor token decides; otherwise it must be Helpline's own origin or one the inbox lists."""
    if origin is None:
        return True
    got = normalise_origin(origin)
    if got is None:
        return False
    return got in {o for o in (normalise_origin(a) for a in [*allowed, *own]) if o}


# --- widget settings (the admin's page writes them into ``inbox.config``) ------------------------------------------

PRECHAT_MODES = ("off", "optional", "required")  # per pre-chat field: hidden, asked, must be given before chatting
POSITIONS = ("right", "left")
DEFAULT_COLOR = "#2d5bd7"
DEFAULT_GREETING = "Hi! How can we help?"
DEFAULT_OFFLINE = "We're away right now. Leave us a message and we'll answer as soon as we can."
MAX_SETTING_TEXT = 500
COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")


def widget_settings(config: Mapping[str, Any], inbox_name: str) -> dict[str, Any]:
    """What the widget shows, from an inbox's stored config with defaults; every value is safe to hand out."""
    color = str(config.get("color") or "")
    position = str(config.get("position") or "right")
    stored = config.get("prechat")
    prechat: Mapping[str, Any] = stored if isinstance(stored, Mapping) else {}
    return {
        "title": str(config.get("title") or inbox_name)[:100],
        "greeting": str(config.get("greeting") or DEFAULT_GREETING)[:MAX_SETTING_TEXT],
        "color": color.lower() if COLOR.match(color) else DEFAULT_COLOR,
        "position": position if position in POSITIONS else "right",
        "prechat": {
            f: (str(prechat.get(f)) if prechat.get(f) in PRECHAT_MODES else "optional") for f in ("name", "email")
        },
        "offline_message": str(config.get("offline_message") or DEFAULT_OFFLINE)[:MAX_SETTING_TEXT],
    }


def reply_time_text(seconds: float | None) -> str:
    """The widget's "we typically reply in ..." line from a typical (median) first response; None: not known."""
    if seconds is None:
        return "We typically reply in a few minutes."
    minutes = seconds / 60
    if minutes < 2:
        return "We typically reply in under a minute." if seconds < 60 else "We typically reply in a minute or two."
    if minutes < 60:
        return f"We typically reply in about {round(minutes)} minutes."
    hours = minutes / 60
    if hours < 1.5:
        return "We typically reply in about an hour."
    if hours < 24:
        return f"We typically reply in about {round(hours)} hours."
    return "We typically reply within a day or two." if hours < 48 else "We typically reply within a few days."


# --- parsing visitor events ---------------------------------------------------------------------------------------


def parse_client_id(value: object) -> str:
    if not isinstance(value, str) or not CLIENT_ID.match(value):
        raise InvalidEvent("a message needs an id of 8-64 letters, digits, '-' or '_'")
    return value


def external_id(visitor_id: str, client_id: str) -> str:
    """Client ids are chosen by browsers: prefixing the visitor id keeps one visitor from colliding with (and so
    reading the stored id of) another's message."""
    return f"{visitor_id}:{client_id}"


def parse_visitor_message(
    visitor_id: str,
    event: object,
    *,
    display_name: str = "",
    attributes: Mapping[str, Any] | None = None,
    attachments: tuple[InboundAttachment, ...] = (),
) -> Inbound:
    """Turn one ``visitor:message`` event (``{"id": client id, "text": ...}``) into an Inbound."""
    if not isinstance(event, Mapping):
        raise InvalidEvent("a message is an object")
    client_id = parse_client_id(event.get("id"))
    text = event.get("text", "")
    if not isinstance(text, str):
        raise InvalidEvent("text must be a string")
    text = text.replace("\r\n", "\n").strip()
    if len(text) > MAX_TEXT:
        raise InvalidEvent(f"a message has at most {MAX_TEXT} characters")
    if not text and not attachments:
        raise InvalidEvent("an empty message")
    page = event.get("page")
    meta = {"page": page[:500]} if isinstance(page, str) and page.startswith(("http://", "https://")) else {}
    return Inbound(
        channel="webchat",
        external_id=external_id(visitor_id, client_id),
        handle=visitor_id,
        display_name=display_name[:MAX_NAME],
        text=text,
        attachments=attachments,
        contact_attributes=dict(attributes or {}),
        meta=meta,
    )


def parse_profile(data: object) -> tuple[str, dict[str, str]]:
    """Name and email a visitor typed into the pre-chat form: (display name, contact attributes).

    The email is unverified: stored for an offline reply, never used to merge contacts (anyone can type any
    address, and a merge would show them that person's history)."""
    if not isinstance(data, Mapping):
        return "", {}
    name = str(data.get("name") or "").strip()[:MAX_NAME]
    email = str(data.get("email") or "").strip().lower()
    attrs: dict[str, str] = {}
    if email and len(email) <= 320 and re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
        attrs["webchat_email"] = email
    return name, attrs


def sniff_type(data: bytes) -> str | None:
    """The allowed type ``data`` really is, from its magic bytes, or None."""
    for content_type, magics in ALLOWED_TYPES.items():
        if any(data.startswith(m) for m in magics):
            if content_type == "image/webp" and data[8:12] != b"WEBP":
                continue
            return content_type
    return None


def safe_filename(name: str, content_type: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._ -]+", "_", name.rsplit("/", 1)[-1].rsplit("\\", 1)[-1]).strip(" .")[:100]
    ext = {"image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif", "image/webp": ".webp"}.get(
        content_type, ".pdf"
    )
    if not stem.lower().endswith(ext if ext != ".jpg" else (".jpg", ".jpeg")):
        stem = (stem or "file") + ext
    return stem


# --- rendering for the visitor ------------------------------------------------------------------------------------


def render_agent_message(outbound: Outbound) -> dict[str, Any]:
    """What the visitor's browser receives for a reply: text and who wrote it; no internal ids but the message's."""
    return {
        "id": outbound.message_id,
        "from": "agent",
        "text": outbound.text,
        "author": str(outbound.meta.get("author_name") or outbound.from_name or ""),
        "attachments": [
            {"id": i, "name": a.filename, "type": a.content_type}
            for a, i in zip(outbound.attachments, _attachment_ids(outbound), strict=False)
        ],
    }


def _attachment_ids(outbound: Outbound) -> list[int | None]:
    """Our attachment ids (``meta["attachment_ids"]``, in order), so the visitor's browser can fetch the files."""
    ids = outbound.meta.get("attachment_ids")
    got = [i if isinstance(i, int) else None for i in ids] if isinstance(ids, list) else []
    return got + [None] * (len(outbound.attachments) - len(got))


def read_receipt(outbound: Outbound) -> dict[str, Any] | None:
    """A reply means the agent read the visitor's messages up to the one it answers: ``{"client_id": ...}``."""
    prefix = f"{outbound.to_handle}:"
    answered = outbound.reply_to_external_id or ""
    return {"client_id": answered[len(prefix) :]} if answered.startswith(prefix) else None


# --- sending ------------------------------------------------------------------------------------------------------

Emitter = Callable[[str, dict[str, Any], str], None]  # (event, payload, room) on the /widget namespace

_emitters: dict[str, Any] = {}
_emitters_lock = threading.Lock()


def message_queue_url() -> str:
    """The Redis behind Socket.IO: REDIS_URL, or the worker runtime's (embedded) Redis."""
    url = os.environ.get("REDIS_URL")
    if url:
        return url
    from workers import runtime  # late: only a sending process needs it; parsers stay free of I/O imports

    return runtime.redis_url()


def queue_emitter(url: str | None = None) -> Emitter:
    """A write-only ``SocketIO(message_queue=...)`` (Flask-SocketIO's "Emitting from an External Process"): any web
    process holding the visitor's socket delivers what we publish. One per URL and process."""
    resolved = url or message_queue_url()
    with _emitters_lock:
        sio = _emitters.get(resolved)
        if sio is None:
            from flask_socketio import SocketIO

            sio = _emitters[resolved] = SocketIO(message_queue=resolved)

    def emit(event: str, payload: dict[str, Any], room: str) -> None:
        sio.emit(event, payload, to=room, namespace=NAMESPACE)

    return emit


def visitor_room(visitor_id: str) -> str:
    """The room of one visitor's sockets (all tabs); joined only after the visitor's token was verified."""
    return f"visitor:{visitor_id}"


class WebchatChannel:
    """Sends an agent's reply to a visitor: an emit to the visitor's room. A visitor who is offline gets it with
    the history on the next connection, so the reply is not lost; the stored message is the truth."""

    name = "webchat"

    def __init__(self, config: Mapping[str, Any], secrets: Mapping[str, Any], *, emitter: Emitter | None = None):
        self.config = config
        self._emitter = emitter

    def send(self, outbound: Outbound) -> str:
        if not VISITOR_ID.match(outbound.to_handle):
            if self.config.get("demo"):
                return f"webchat:{outbound.message_id}"  # the demo's made-up visitors have no browser to reach
            raise PermanentError(f"{outbound.to_handle!r} is not a website visitor")
        emit = self._emitter or queue_emitter()
        room = visitor_room(outbound.to_handle)
        try:
            emit("agent:message", render_agent_message(outbound), room)
            answered = read_receipt(outbound)
            if answered is not None:
                emit("read", answered, room)
        except (OSError, RedisError) as exc:  # Redis unreachable: the worker retries with backoff
            raise TemporaryError(f"message queue unreachable: {exc}") from exc
        return f"webchat:{outbound.message_id}"
