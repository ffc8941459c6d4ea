"""The public website-chat widget over HTTP: the loader script, the chat frame, visitor sessions, uploads, the demo
shop page.

The widget is an iframe on Helpline's own origin: the host page's CSS and scripts cannot reach the conversation,
and the browser enforces the inbox's allowed origins through ``frame-ancestors``. Visitor endpoints carry no
cookies and no CSRF token; the signed visitor token authorises them, and a browser's Origin must be allowed.
The Socket.IO side is web/widget_socket.py; both share the helpers here.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Flask, Response, abort, current_app, render_template, request
from flask.typing import ResponseReturnValue
from sqlalchemy import Select, and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from werkzeug.sansio.response import Response as BaseResponse

from connectors import webchat
from inbox.crypto import decrypt_json
from inbox.identities import find_identity, live_contact, merge_contacts, resolve_identity
from inbox.ingest import InboundAttachment, find_message, ingest
from inbox.models import Attachment, Contact, Identity, Inbox, Message, Ticket, User
from web.db import get_session
from web.throttle import LoginThrottle
from web.widget_assets import script
from web.widget_availability import availability

log = logging.getLogger(__name__)

bp = Blueprint("widget", __name__)
HISTORY_LIMIT = 200


# --- shared with widget_socket ------------------------------------------------------------------------------------


@dataclass
class Limits:
    """Flood control, in process memory (one threaded web process holds every socket, see DESIGN.md)."""

    visitor: LoginThrottle = field(default_factory=lambda: LoginThrottle(20, 60.0))  # messages per visitor
    ip: LoginThrottle = field(default_factory=lambda: LoginThrottle(120, 60.0))  # messages+sessions per address
    connect: LoginThrottle = field(default_factory=lambda: LoginThrottle(60, 60.0))  # socket connects per address

    def hit(self, limiter: LoginThrottle, key: str) -> bool:
        """Count one event for ``key``; False if it is over its limit (then it is not counted)."""
        if limiter.blocked(key) > 0:
            return False
        limiter.fail(key)
        return True


def parse_limits(spec: str) -> dict[str, LoginThrottle]:
    """``"ip=600/60,connect=300/60,visitor=20/60"`` (events/seconds) from HELPLINE_WIDGET_LIMITS. Behind a proxy
    that hides visitors' addresses, every visitor shares one address: raise ``ip`` and ``connect`` there."""
    out: dict[str, LoginThrottle] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, value = part.partition("=")
        count, _, window = value.partition("/")
        if name not in ("ip", "connect", "visitor") or not count.isdigit() or not window.isdigit():
            raise ValueError(f"HELPLINE_WIDGET_LIMITS: cannot read {part!r} (want e.g. ip=600/60)")
        out[name] = LoginThrottle(int(count), float(window))
    return out


def limits() -> Limits:
    found: Limits = current_app.extensions["helpline_widget_limits"]
    return found


def find_widget_inbox(session: Session, public_key: object) -> Inbox | None:
    if not isinstance(public_key, str) or not 8 <= len(public_key) <= 64:
        return None
    return session.scalar(select(Inbox).where(Inbox.public_key == public_key, Inbox.channel == "webchat"))


def inbox_secret(inbox: Inbox) -> str:
    secret_key: str = current_app.config["SECRET_KEY"]
    stored = decrypt_json(secret_key, inbox.secrets) if inbox.secrets else {}
    secret = stored.get("secret")
    if isinstance(secret, str) and secret:
        return secret
    assert inbox.public_key is not None
    return webchat.derived_secret(secret_key, inbox.public_key)


def visitor_signing_key(inbox: Inbox) -> bytes:
    """The key of this inbox's visitor tokens. It outlives a new inbox secret (the settings page keeps the first
    secret as ``visitor_secret`` when it replaces it), so visitors keep their history when the shop rotates."""
    secret_key: str = current_app.config["SECRET_KEY"]
    stored = decrypt_json(secret_key, inbox.secrets) if inbox.secrets else {}
    kept = stored.get("visitor_secret")
    return webchat.visitor_key(kept if isinstance(kept, str) and kept else inbox_secret(inbox))


def own_origins() -> list[str]:
    """Helpline's own origin as configured and as this request reached it (the widget frame lives there)."""
    return [current_app.config["HELPLINE_SETTINGS"].base_url, f"{request.scheme}://{request.host}"]


def allowed_origins(inbox: Inbox) -> list[str]:
    origins = (inbox.config or {}).get("origins") or []
    return [o for o in origins if isinstance(o, str)]


def origin_ok(inbox: Inbox) -> bool:
    ok = webchat.origin_allowed(request.headers.get("Origin"), allowed_origins(inbox), own_origins())
    if not ok:  # logged: a shop that forgot an origin (www., a port) can see why its widget stays silent
        log.info("widget: inbox %s refused origin %r", inbox.id, request.headers.get("Origin"))
    return ok


def client_ip() -> str:
    return request.remote_addr or "unknown"


def visitor_contact(session: Session, visitor_id: str) -> Contact | None:
    identity = find_identity(session, "webchat", visitor_id)
    return live_contact(session, identity.contact) if identity is not None else None


def visitor_message_json(message: Message, visitor_id: str, authors: dict[int, str]) -> dict[str, Any]:
    """A message as the visitor may see it: text, side, time, author's name; never notes or internal fields."""
    prefix = f"{visitor_id}:"
    client_id = (
        message.external_id[len(prefix) :]
        if message.direction == "inbound" and message.external_id and message.external_id.startswith(prefix)
        else None
    )
    return {
        "id": message.id,
        "client_id": client_id,
        "from": "visitor" if message.direction == "inbound" else "agent",
        "text": message.body_text,
        "at": message.created_at.isoformat() if message.created_at else None,
        "author": authors.get(message.author_id or 0, "") if message.direction == "outbound" else "",
        "read": message.delivery_state == "read",
        "attachments": [
            {"id": a.id, "name": a.filename, "type": a.content_type} for a in message.attachments if a.sha256
        ],
    }


def visible_messages(
    session: Session, inbox: Inbox, visitor_id: str, *, signed: bool = False
) -> Select[Message] | None:
    """What this visitor may see: messages on this inbox from or to their own webchat identity; a customer the
    shop signed in also sees the chats of their other devices (the webchat identities of their contact).

    Selecting by identity, not by ticket, keeps a ticket merge by an agent (which can bring another customer's
    email into the chat's ticket) from showing that customer's messages in the widget. And an unsigned visitor,
    whose typed email may have joined them to an existing customer, sees their own chat only."""
    identity = find_identity(session, "webchat", visitor_id)
    if identity is None:
        return None
    contact = live_contact(session, identity.contact)
    if signed:
        identity_ids = select(Identity.id).where(Identity.contact_id == contact.id, Identity.channel == "webchat")
    else:
        identity_ids = select(Identity.id).where(Identity.id == identity.id)
    chat = and_(
        Message.inbox_id == inbox.id,
        Message.identity_id.in_(identity_ids),
        Message.direction.in_(("inbound", "outbound")),
    )
    # Replies that went by email while this visitor was away (web.widget_offline), on this chat's tickets.
    tickets = select(Ticket.id).where(Ticket.inbox_id == inbox.id, Ticket.contact_id == contact.id)
    emailed = and_(
        Message.ticket_id.in_(tickets),
        Message.direction == "outbound",
        Message.meta["webchat_visitor"].as_string() == visitor_id,
    )
    return select(Message).where(or_(chat, emailed))


def history(session: Session, inbox: Inbox, visitor_id: str, *, signed: bool = False) -> list[dict[str, Any]]:
    """The visitor's own conversation on this inbox: their messages and the replies to them, oldest first."""
    stmt = visible_messages(session, inbox, visitor_id, signed=signed)
    if stmt is None:
        return []
    rows = list(session.scalars(stmt.order_by(Message.id.desc()).limit(HISTORY_LIMIT)))
    author_ids = {m.author_id for m in rows if m.author_id is not None}
    authors = {u.id: u.name for u in session.scalars(select(User).where(User.id.in_(author_ids)))} if author_ids else {}
    return [visitor_message_json(m, visitor_id, authors) for m in reversed(rows)]


def store_visitor_message(
    session: Session,
    inbox: Inbox,
    visitor_id: str,
    event: object,
    profile: dict[str, Any],
    attachments: tuple[InboundAttachment, ...] = (),
) -> tuple[Message, bool]:
    """Parse, ingest and commit one visitor message; (message, created). A resend returns the stored one."""
    inbound = webchat.parse_visitor_message(
        visitor_id,
        event,
        display_name=profile.get("name", ""),
        attributes=profile.get("attributes", {}),
        attachments=attachments,
    )
    stored = find_message(session, inbox.id, inbound.external_id)
    if stored is not None:
        return stored, False
    message = ingest(session, inbox.id, inbound)
    if message is None:  # stored by a concurrent resend between our lookup and the insert
        stored = find_message(session, inbox.id, inbound.external_id)
        assert stored is not None
        return stored, False
    user = profile.get("user")
    if isinstance(user, webchat.VerifiedUser) and user.email and (inbox.config or {}).get("merge_contacts"):
        _merge_verified(session, message, user)
    elif typed := (profile.get("attributes") or {}).get("webchat_email"):
        link_typed_email(session, inbox, visitor_id, str(typed))
    session.commit()
    return message, True


def _merge_verified(session: Session, message: Message, user: webchat.VerifiedUser) -> None:
    """A customer the shop vouched for (signed) joins their email identity's contact."""
    email_identity = resolve_identity(session, "email", user.email, user.name)
    target = live_contact(session, email_identity.contact)
    source = live_contact(session, message.contact)
    if source.id != target.id:
        merge_contacts(session, source, target)


def link_typed_email(session: Session, inbox: Inbox, visitor_id: str, email: str) -> None:
    """Give the visitor's contact the email identity of the address they typed, so an agent's reply can reach them
    by email once they left (web.widget_offline) and their emailed answer joins the same customer.

    A free address becomes an identity of the visitor's contact. An address that is already another customer's
    joins the two contacts only when the shop turned on ``merge_contacts``: the address is unverified, so agents
    see one customer, but the widget still shows this visitor their own chat only (``visible_messages``).
    Without it, the address stays an attribute for the agents, and replies stay in the chat."""
    identity = find_identity(session, "webchat", visitor_id)
    if identity is None:
        return  # no message yet: linked when the first one is stored
    contact = live_contact(session, identity.contact)
    existing = find_identity(session, "email", email)
    if existing is None:
        try:
            with session.begin_nested():
                session.add(Identity(contact_id=contact.id, channel="email", handle=email, display_name=contact.name))
                session.flush()
        except IntegrityError:  # typed at the same moment elsewhere: treat it as taken
            return
        return
    owner = live_contact(session, existing.contact)
    if owner.id != contact.id and (inbox.config or {}).get("merge_contacts"):
        merge_contacts(session, contact, owner)


# --- HTTP ----------------------------------------------------------------------------------------------------------


def _json_error(status: int, error: str) -> ResponseReturnValue:
    return {"ok": False, "error": error}, status


def _cors(response: BaseResponse, inbox: Inbox | None) -> BaseResponse:
    origin = request.headers.get("Origin")
    if inbox is not None and origin and origin_ok(inbox):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = "Origin"
    return response


def _widget_settings(inbox: Inbox) -> dict[str, Any]:
    """What the widget shows; ``offline_email``: an email inbox answers visitors who left, so ask for an email."""
    from web.widget_offline import linked_email_inbox

    session = get_session()
    return (
        webchat.widget_settings(inbox.config or {}, inbox.name)
        | availability(session, inbox)
        | {"offline_email": linked_email_inbox(session, inbox) is not None}
    )


@bp.post("/widget/api/session")
def session_api() -> ResponseReturnValue:
    """Get (or confirm) the visitor's signed token: ``{"inbox": key, "token": optional}``."""
    data = request.get_json(silent=True)
    data = data if isinstance(data, dict) else {}
    session = get_session()
    inbox = find_widget_inbox(session, data.get("inbox"))
    if inbox is None:
        return _json_error(404, "unknown inbox")
    if not origin_ok(inbox):
        return _json_error(403, "this website may not use this chat")
    if not limits().hit(limits().ip, client_ip()):
        return _json_error(429, "too many requests, slow down")
    key = visitor_signing_key(inbox)
    token = data.get("token")
    if token:
        visitor_id = webchat.verify_visitor(key, token)
        if visitor_id is None:
            return _json_error(403, "invalid visitor token")  # forged or another inbox's: no data, no new id
    else:
        visitor_id = webchat.new_visitor_id()
    body = {"ok": True, "token": webchat.sign_visitor(key, visitor_id), "settings": _widget_settings(inbox)}
    return _cors(current_app.json.response(body), inbox)


@bp.post("/widget/api/attachments")
def attachments_api() -> ResponseReturnValue:
    """A visitor's image or PDF, as a message of its own (multipart: inbox, token, id, file)."""
    session = get_session()
    inbox = find_widget_inbox(session, request.form.get("inbox"))
    if inbox is None:
        return _json_error(404, "unknown inbox")
    if not origin_ok(inbox):
        return _json_error(403, "this website may not use this chat")
    visitor_id = webchat.verify_visitor(visitor_signing_key(inbox), request.form.get("token"))
    if visitor_id is None:
        return _json_error(403, "invalid visitor token")
    lim = limits()
    if not lim.hit(lim.visitor, visitor_id) or not lim.hit(lim.ip, client_ip()):
        return _json_error(429, "too many messages, slow down")
    upload = request.files.get("file")
    if upload is None:
        return _json_error(400, "no file")
    max_bytes = int((inbox.config or {}).get("max_attachment_bytes") or webchat.DEFAULT_MAX_ATTACHMENT)
    data = upload.stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        return _json_error(413, f"files up to {max_bytes // (1024 * 1024) or 1} MB")
    content_type = webchat.sniff_type(data)
    if content_type is None:
        return _json_error(415, "only images (PNG, JPEG, GIF, WebP) and PDF files")
    attachment = InboundAttachment(webchat.safe_filename(upload.filename or "", content_type), content_type, data)
    try:
        message, _created = store_visitor_message(
            session,
            inbox,
            visitor_id,
            {"id": request.form.get("id"), "text": request.form.get("text", "")},
            {},
            (attachment,),
        )
    except webchat.InvalidEvent as exc:
        return _json_error(400, str(exc))
    stored = next((a.id for a in message.attachments if a.filename == attachment.filename), None)
    shown = {"id": stored, "name": attachment.filename, "type": content_type}
    body = {"ok": True, "id": message.id, "attachment": shown}
    return _cors(current_app.json.response(body), inbox)


@bp.get("/widget/api/attachments/<int:attachment_id>")
def attachment_download(attachment_id: int) -> ResponseReturnValue:
    """A file of the visitor's own conversation (``?inbox=``, the token in ``X-Visitor-Token``, which keeps it
    out of URLs and logs, or ``&token=``); anything else is 404."""
    session = get_session()
    inbox = find_widget_inbox(session, request.args.get("inbox"))
    token = request.headers.get("X-Visitor-Token") or request.args.get("token")
    visitor_id = webchat.verify_visitor(visitor_signing_key(inbox), token) if inbox else None
    stmt = visible_messages(session, inbox, visitor_id) if inbox is not None and visitor_id else None
    att = session.get(Attachment, attachment_id)
    if stmt is None or att is None or att.sha256 is None:
        abort(404)
    if session.scalar(stmt.where(Message.id == att.message_id)) is None:
        abort(404)  # the same answer for "missing" and "not yours"
    data = get_session().info["blobs"].get(att.sha256)
    response = Response(data, mimetype=att.content_type if att.content_type in webchat.ALLOWED_TYPES else
                        "application/octet-stream")
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response.headers["Content-Disposition"] = f'inline; filename="{webchat.safe_filename(att.filename, "x")}"'
    return response


@bp.get("/widget.js")
def loader() -> ResponseReturnValue:
    """The snippet's script: creates the chat iframe; knows nothing of the conversation."""
    response = script("widget.js")
    response.headers["Cross-Origin-Resource-Policy"] = "cross-origin"
    return response


@bp.get("/widget/frame.js")
def frame_script() -> ResponseReturnValue:
    """The chat's own script, inside the frame."""
    return script("frame.js")


@bp.get("/widget/frame")
def frame() -> ResponseReturnValue:
    """The chat itself, on our origin; only pages of the inbox's allowed origins may frame it."""
    inbox = find_widget_inbox(get_session(), request.args.get("inbox"))
    if inbox is None:
        abort(404)
    ancestors = " ".join(
        o for o in (webchat.normalise_origin(x) for x in [*allowed_origins(inbox), *own_origins()]) if o
    )
    response = Response(
        render_template("widget/frame.html", inbox=inbox, settings=_widget_settings(inbox)), mimetype="text/html"
    )
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
        f"frame-ancestors {ancestors}; form-action 'none'; base-uri 'none'; object-src 'none'"
    )
    # The app's default X-Frame-Options (DENY) would contradict frame-ancestors; an empty value, which browsers
    # ignore, keeps it off (and browsers give frame-ancestors precedence anyway).
    response.headers["X-Frame-Options"] = ""
    return response


@bp.get("/demo/shop")
def demo_shop() -> ResponseReturnValue:
    """A sample shop page with the demo's chat widget, so a newcomer can chat with themselves."""
    session = get_session()
    inbox = session.scalar(
        select(Inbox).where(Inbox.channel == "webchat", Inbox.name == "Website chat", Inbox.public_key.is_not(None))
    )
    if inbox is None or not (inbox.config or {}).get("demo"):
        abort(404)
    return render_template("widget/demo_shop.html", public_key=inbox.public_key)


def init_app(app: Flask) -> None:
    """Register the widget's routes and its Socket.IO namespace (after ``realtime.init_app`` made the server)."""
    from web import security, widget_csat, widget_socket  # noqa: F401 (widget_csat adds its route to bp first)

    overrides = app.config.get("HELPLINE_WIDGET_LIMITS") or parse_limits(os.environ.get("HELPLINE_WIDGET_LIMITS", ""))
    app.extensions["helpline_widget_limits"] = Limits(**overrides)
    app.register_blueprint(bp)
    security.csrf.exempt(bp)  # no cookies here: the signed visitor token authorises, and Origin is checked
    widget_socket.register()
