"""Socket.IO namespace ``/widget``: website visitors, each allowed into their own conversation only.

Connect with ``auth={"inbox": public key, "token": signed visitor token, "profile": {name, email}?,
"user": signed customer?}``. A bad inbox, origin or token is refused before anything is sent; a good one joins the
room ``visitor:{visitor id}`` and receives ``history``. Events from the visitor: ``visitor:message`` (acked with the
stored id; a resend of the same client id is stored once), ``visitor:typing`` (agents get ``visitor.typing`` in
``ticket:{id}`` on the default namespace), ``visitor:read``, ``availability`` (ask again, web.widget_live). From
us: ``agent:message`` (connectors.webchat, via the Redis queue), ``agent:typing``, ``read``, ``visitor:message`` to
the visitor's other tabs, ``availability`` (open/away, on connect and to the inbox's room ``widget:{id}``), and
``csat:ask`` after an agent solved the chat (web.widget_csat: on solve, and on connect until rated).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from flask import request
from flask_socketio import ConnectionRefusedError, Namespace, emit, join_room
from sqlalchemy import select

from connectors import webchat
from inbox import events
from inbox.identities import find_identity, live_contact, resolve_identity
from inbox.ingest import message_payload
from inbox.models import OPEN_STATUSES, Inbox, Message, Ticket
from web import widget_csat, widget_live, widget_presence
from web import widget_views as wv
from web.db import get_session
from web.realtime import socketio

log = logging.getLogger(__name__)

TYPING_INTERVAL = 0.3  # seconds between two typing previews relayed for one socket
TYPING_PREVIEW = 200  # characters of the draft agents see


@dataclass
class Visitor:
    """One connected socket's verified facts; nothing here comes from an event after connect."""

    inbox_id: int
    visitor_id: str
    ip: str
    profile: dict[str, Any] = field(default_factory=dict)
    last_typing: float = 0.0


_visitors: dict[str, Visitor] = {}  # sid -> visitor, this process's sockets
_lock = threading.Lock()


def _current() -> Visitor | None:
    with _lock:
        return _visitors.get(request.sid)  # type: ignore[attr-defined]


def open_ticket_id(inbox_id: int, visitor_id: str) -> int | None:
    """The visitor's ticket agents are working on (where a typing preview belongs), if any."""
    session = get_session()
    identity = find_identity(session, "webchat", visitor_id)
    if identity is None:
        return None
    contact = live_contact(session, identity.contact)
    return session.scalar(
        select(Ticket.id)
        .where(Ticket.inbox_id == inbox_id, Ticket.contact_id == contact.id, Ticket.status.in_(OPEN_STATUSES))
        .order_by(Ticket.id.desc())
        .limit(1)
    )


def notify_agent_typing(ticket_id: int) -> None:
    """Tell the ticket's visitor that an agent is typing (called from the agents' ``typing`` handler)."""
    session = get_session()
    ticket = session.get(Ticket, ticket_id)
    if ticket is None or ticket.channel != "webchat":
        return
    handles = {i.handle for i in ticket.contact.identities if i.channel == "webchat"}
    for handle in handles:
        socketio.emit("agent:typing", {}, to=webchat.visitor_room(handle), namespace=webchat.NAMESPACE)


class WidgetNamespace(Namespace):  # type: ignore[misc]
    """Visitor sockets. Event names carry a colon, so dispatch is by table rather than ``on_<name>`` methods."""

    def trigger_event(self, event: str, *args: Any) -> Any:
        handler = {
            "connect": self.on_connect,
            "disconnect": self.on_disconnect,
            "visitor:message": self.on_message,
            "visitor:typing": self.on_typing,
            "visitor:read": self.on_read,
            "visitor:profile": self.on_profile,
            widget_live.EVENT: self.on_availability,
        }.get(event)
        if handler is None:
            return None
        if event == "disconnect":
            args = args[:1]  # the reason argument of newer python-socketio is not needed
        return self.socketio._handle_event(handler, event, self.namespace, *args)

    def on_connect(self, auth: Any = None) -> bool:
        auth = auth if isinstance(auth, dict) else {}
        session = get_session()
        inbox = wv.find_widget_inbox(session, auth.get("inbox"))
        if inbox is None:
            raise ConnectionRefusedError("unknown inbox")
        if not wv.origin_ok(inbox):
            raise ConnectionRefusedError("this website may not use this chat")
        lim = wv.limits()
        ip = wv.client_ip()
        if not lim.hit(lim.connect, ip):
            raise ConnectionRefusedError("too many connections, slow down")
        secret = wv.inbox_secret(inbox)
        visitor_id = webchat.verify_visitor(wv.visitor_signing_key(inbox), auth.get("token"))
        if visitor_id is None:
            raise ConnectionRefusedError("invalid visitor token")  # forged or another's: no room, no history
        name, attributes = webchat.parse_profile(auth.get("profile"))
        profile: dict[str, Any] = {"name": name, "attributes": attributes}
        user = webchat.verify_user(secret, auth.get("user"))
        if user is not None:
            profile["name"] = user.name or name
            profile["attributes"] = attributes | {"shop_user_id": user.user_id, "email": user.email}
            profile["user"] = user
        with _lock:
            _visitors[request.sid] = Visitor(inbox.id, visitor_id, ip, profile)  # type: ignore[attr-defined]
        join_room(webchat.visitor_room(visitor_id))
        widget_presence.arrived(visitor_id, request.sid)  # type: ignore[attr-defined]
        emit("history", {"messages": wv.history(session, inbox, visitor_id, signed=user is not None)})
        widget_live.joined(inbox)  # the inbox's room: open/away as it changes
        widget_csat.ask_on_connect(session, inbox, visitor_id)  # a solved chat not yet rated: "How did we do?"
        return True

    def on_disconnect(self, *_args: Any) -> None:
        with _lock:
            _visitors.pop(request.sid, None)  # type: ignore[attr-defined]
        widget_presence.left(request.sid)  # type: ignore[attr-defined]

    def on_availability(self, _data: Any = None) -> None:
        """The widget asks again at the opening/closing hour it was told (web.widget_live)."""
        visitor = _current()
        if visitor is not None:
            widget_live.asked(visitor.inbox_id, visitor.ip)

    def on_message(self, data: Any = None) -> dict[str, Any]:
        visitor = _current()
        if visitor is None:
            return {"ok": False, "error": "not connected"}
        lim = wv.limits()
        # A resend of an acknowledged id costs nothing but a lookup; counting it would punish flaky networks.
        if not self._is_resend(visitor, data) and (
            not lim.hit(lim.visitor, visitor.visitor_id) or not lim.hit(lim.ip, visitor.ip)
        ):
            return {"ok": False, "error": "too many messages, slow down", "retry": True}
        session = get_session()
        inbox = session.get(Inbox, visitor.inbox_id)
        if inbox is None:
            return {"ok": False, "error": "this chat was closed"}
        try:
            message, created = wv.store_visitor_message(session, inbox, visitor.visitor_id, data, visitor.profile)
        except webchat.InvalidEvent as exc:
            return {"ok": False, "error": str(exc)}
        if created:
            payload = wv.visitor_message_json(message, visitor.visitor_id, {})
            emit("visitor:message", payload, to=webchat.visitor_room(visitor.visitor_id), include_self=False)
        return {"ok": True, "id": message.id, "duplicate": not created}

    def _is_resend(self, visitor: Visitor, data: Any) -> bool:
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            return False
        if not webchat.CLIENT_ID.match(data["id"]):
            return False
        ext = webchat.external_id(visitor.visitor_id, data["id"])
        return get_session().scalar(
            select(Message.id).where(Message.inbox_id == visitor.inbox_id, Message.external_id == ext)
        ) is not None

    def on_typing(self, data: Any = None) -> None:
        visitor = _current()
        if visitor is None:
            return
        now = time.monotonic()
        if now - visitor.last_typing < TYPING_INTERVAL:
            return  # keystrokes come faster than agents can read; the next one carries the newer draft
        visitor.last_typing = now
        text = data.get("text", "") if isinstance(data, dict) else ""
        ticket_id = open_ticket_id(visitor.inbox_id, visitor.visitor_id)
        if ticket_id is None or not isinstance(text, str):
            return
        payload = {"ticket_id": ticket_id, "text": text[:TYPING_PREVIEW], "typing": bool(text.strip())}
        socketio.emit("visitor.typing", payload, to=f"ticket:{ticket_id}", namespace="/")

    def on_profile(self, data: Any = None) -> dict[str, Any]:
        """Name and email from the widget's form: shown to agents, kept for an offline reply, never merged on."""
        visitor = _current()
        if visitor is None:
            return {"ok": False}
        name, attributes = webchat.parse_profile(data)
        if "user" not in visitor.profile:  # a customer the shop signed in keeps the shop's name
            visitor.profile["name"] = name or visitor.profile.get("name", "")
        visitor.profile["attributes"] = visitor.profile.get("attributes", {}) | attributes
        session = get_session()
        if find_identity(session, "webchat", visitor.visitor_id) is not None:
            resolve_identity(session, "webchat", visitor.visitor_id, visitor.profile["name"], attributes)
            inbox = session.get(Inbox, visitor.inbox_id)
            if attributes.get("webchat_email") and inbox is not None and "user" not in visitor.profile:
                wv.link_typed_email(session, inbox, visitor.visitor_id, attributes["webchat_email"])
            session.commit()
        return {"ok": True, "email": bool(attributes)}

    def on_read(self, data: Any = None) -> dict[str, Any]:
        """The visitor saw replies up to ``{"id": n}``: they become ``read`` for the agents."""
        visitor = _current()
        up_to = data.get("id") if isinstance(data, dict) else None
        if visitor is None or not isinstance(up_to, int):
            return {"ok": False}
        session = get_session()
        inbox = session.get(Inbox, visitor.inbox_id)
        signed = "user" in visitor.profile
        stmt = wv.visible_messages(session, inbox, visitor.visitor_id, signed=signed) if inbox is not None else None
        if stmt is None:
            return {"ok": False}
        rows = list(
            session.scalars(
                stmt.where(
                    Message.direction == "outbound",
                    Message.id <= up_to,
                    Message.delivery_state.in_(("sent", "delivered")),
                )
            )
        )
        for m in rows:
            m.delivery_state = "read"
            events.record(session, events.MESSAGE_UPDATED, f"ticket:{m.ticket_id}", message_payload(m))
        if rows:
            session.commit()
        return {"ok": True, "read": len(rows)}


def register() -> None:
    socketio.on_namespace(WidgetNamespace(webchat.NAMESPACE))
