"""Socket.IO events from agents' browsers: authenticate on connect, check every room join, presence and typing.

Clients never change data over the socket (forms and CSRF do that); they only listen, and say who is viewing or
typing. A room is ``inbox:{id}``, ``ticket:{id}`` or ``agent:{id}``; each join is checked against the user's
inboxes, loaded afresh for every event, so a deactivated user or one moved out of a team is refused at once.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from flask import current_app, request
from flask_login import current_user
from flask_socketio import disconnect, emit, join_room, leave_room, rooms

from inbox.models import Ticket
from web import access
from web.db import get_session
from web.presence import Online, Presence
from web.realtime import same_origin, socketio

ROOM = re.compile(r"^(inbox|ticket|agent):([0-9]{1,12})$")
EVENTS = ("connect", "join", "leave", "typing", "disconnect")  # the authorisation matrix walks this list

_viewers: dict[str, dict[str, tuple[int, str]]] = {}  # room -> sid -> (user id, name); this process's sockets
_lock = threading.Lock()
ALL_PRESENCE = "presence:all"  # admins' room: any change of who is online (the live queue refreshes on it)


def presence() -> Presence:
    """Who is online, across web processes (``web.presence``; created by ``web.realtime.init_app``)."""
    found: Presence = current_app.extensions["helpline_presence"]
    return found


def registered() -> tuple[str, ...]:
    return EVENTS


def _user_ok() -> bool:
    if current_user.is_authenticated:
        return True
    disconnect()
    return False


def may_join(room: str) -> bool:
    match = ROOM.match(room)
    if match is None:
        return False
    kind, ident = match.group(1), int(match.group(2))
    session = get_session()
    user = current_user.row
    if kind == "agent":
        return ident == user.id
    if kind == "inbox":
        return access.can_see_inbox(session, user, ident)
    ticket = session.get(Ticket, ident)
    return ticket is not None and access.can_see_ticket(session, user, ticket)


def _viewer_list(room: str) -> list[dict[str, Any]]:
    with _lock:
        people = {uid: name for uid, name in _viewers.get(room, {}).values()}
    return [{"id": uid, "name": name} for uid, name in sorted(people.items())]


def _announce_viewers(room: str) -> None:
    if room.startswith("ticket:"):
        emit("ticket.viewers", {"room": room, "viewers": _viewer_list(room)}, to=room)


@socketio.on("connect")
def on_connect(_auth: Any = None) -> bool:
    origin_ok = same_origin(current_app.config["HELPLINE_SETTINGS"].base_url)
    if not origin_ok(request.headers.get("Origin"), request.environ):
        return False  # another site's page riding on the agent's cookie
    if not current_user.is_authenticated:
        return False  # refused: the client sees connect_error
    join_room(f"agent:{current_user.id}")
    from web.health_views import join_health_rooms  # the failing-channel banner hears its inboxes' health

    join_health_rooms()
    # Presence is shared with teammates only, through team rooms the server joins (clients cannot ask for them).
    teams = tuple(t.id for t in current_user.row.teams)
    for team_id in teams:
        join_room(f"team:{team_id}")
    if current_user.row.role == "admin":
        join_room(ALL_PRESENCE)
    presence().add(request.sid, Online(current_user.id, current_user.name, teams))
    _announce(teams)
    _widgets_hear(teams, later=False)
    return True


def online_user_ids(team_id: int | None) -> set[int]:
    """Users with the agent UI open in any web process (presence is shared through Redis): of ``team_id``, or
    anyone when it is None."""
    return set(presence().users(team_id))


def _announce(teams: tuple[int, ...]) -> None:
    for team_id in teams:
        people = presence().users(team_id)
        users = [{"id": uid, "name": name} for uid, name in sorted(people.items(), key=lambda p: p[1])]
        emit("presence.online", {"team_id": team_id, "users": users}, to=f"team:{team_id}")
    emit("presence.changed", {}, to=ALL_PRESENCE)


@socketio.on("join")
def on_join(data: Any) -> dict[str, Any]:
    if not _user_ok():
        return {"ok": False, "error": "sign in"}
    room = str(data.get("room", "")) if isinstance(data, dict) else ""
    if not may_join(room):
        return {"ok": False, "error": "not found"}  # same answer for "missing" and "not yours"
    try:
        join_room(room)
    except (ValueError, KeyError):  # python-socketio raises either, depending on how far the disconnect got
        return {"ok": False, "error": "disconnected"}  # the page went away while this join was in flight
    if room.startswith("ticket:"):
        with _lock:
            _viewers.setdefault(room, {})[request.sid] = (current_user.id, current_user.name)
        if not socketio.server.manager.is_connected(request.sid, "/"):
            _forget(room, request.sid)  # disconnected meanwhile: leave no ghost viewer behind
            return {"ok": False, "error": "disconnected"}
        _announce_viewers(room)
    return {"ok": True, "room": room}


@socketio.on("leave")
def on_leave(data: Any) -> dict[str, Any]:
    room = str(data.get("room", "")) if isinstance(data, dict) else ""
    if room in rooms() and room != request.sid:
        leave_room(room)
        _forget(room, request.sid)
    return {"ok": True}


@socketio.on("typing")
def on_typing(data: Any) -> dict[str, Any]:
    """Relay "X is typing a reply" to the other viewers of a ticket the sender has joined."""
    if not _user_ok():
        return {"ok": False}
    room = f"ticket:{data.get('ticket_id')}" if isinstance(data, dict) else ""
    if room not in rooms():
        return {"ok": False, "error": "not found"}
    kind = "note" if isinstance(data, dict) and data.get("kind") == "note" else "reply"
    payload = {"room": room, "user": {"id": current_user.id, "name": current_user.name}, "kind": kind}
    emit("ticket.typing", payload, to=room, include_self=False)
    if kind == "reply":
        from web.widget_socket import notify_agent_typing  # the visitor of a web chat sees "typing..."

        notify_agent_typing(int(str(data.get("ticket_id"))))
        from web.telegram_typing import notify_telegram_typing  # a Telegram customer sees "typing…" (throttled)

        notify_telegram_typing(int(str(data.get("ticket_id"))))
    return {"ok": True}


def _forget(room: str, sid: str) -> None:
    with _lock:
        people = _viewers.get(room)
        if people is not None:
            people.pop(sid, None)
            if not people:
                _viewers.pop(room, None)
    _announce_viewers(room)


@socketio.on("disconnect")
def on_disconnect(*_args: Any) -> None:
    with _lock:
        mine = [room for room, people in _viewers.items() if request.sid in people]
    gone = presence().remove(request.sid)
    for room in mine:
        _forget(room, request.sid)
    _announce(gone.teams if gone else ())
    if gone is not None:
        _widgets_hear(gone.teams, later=True)


def _widgets_hear(teams: tuple[int, ...], *, later: bool) -> None:
    """Web-chat widgets switch between open and away as their team's first agent arrives or last one leaves."""
    from web.widget_live import agents_changed

    agents_changed(teams, later=later)


def end_sockets(user_id: int) -> int:
    """Disconnect every socket of ``user_id`` on this process (one web process serves sockets: sticky sessions).
    Called when a user is deactivated, so they stop hearing live events at once."""
    sids = presence().local_sids(user_id)
    for sid in sids:
        socketio.server.disconnect(sid, namespace="/")
    return len(sids)
