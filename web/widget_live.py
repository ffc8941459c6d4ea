"""Live availability for connected widgets: "We typically reply in ..." or the offline form, without a reload.

What the widget says about the team (web.widget_availability) changes when the first agent of the inbox's team
opens Helpline or the last one closes it, and at the business calendar's opening and closing hours. Every widget
socket joins its inbox's room (``room``, on the /widget namespace) and gets ``availability`` on connect. Then:

- agents: ``web.socket_events`` calls ``agents_changed`` when an agent's socket connects, and again ``GRACE``
  seconds after one closes (moving between pages closes a socket and opens the next). When that flips "anybody
  there" for a web-chat inbox (remembered in Redis, shared by the web processes), the new state goes to the room;
- hours: the payload says when to ask again (``ask_in``, milliseconds; ``next_change_at`` is the instant): at the
  next opening/closing hour, at the latest after ``RECHECK`` seconds (a web process that died says nothing of its
  agents). The widget then sends ``availability`` and gets the answer on its own socket.

Visitors learn open/away and the texts the frame shows, nothing else: ``payload`` is built from the same view
(``frame_view``) that renders the frame, and the widget applies it by element id with its existing gate logic.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
import time
from collections.abc import Mapping
from typing import Any

from flask import Flask, current_app, request
from flask_socketio import emit, join_room
from redis.exceptions import RedisError
from sqlalchemy import or_, select

from connectors import webchat
from inbox.db import utcnow
from inbox.models import Inbox
from web import widget_views as wv
from web.db import get_session
from web.realtime import socketio
from web.widget_availability import next_change

log = logging.getLogger(__name__)

EVENT = "availability"
GRACE = 4.0  # seconds after an agent's socket closed before the widgets may hear "away"
RECHECK = 900  # seconds: the longest a widget waits before asking again
_KEY = "helpline:webchat:agents:"  # + inbox id: "1"/"0", whether agents were there when last published
_last: dict[int, bool] = {}  # the same without Redis (one process)
_lock = threading.Lock()


def room(inbox_id: int) -> str:
    """The widgets of one inbox (all visitors) on the /widget namespace; only ``payload`` is sent there."""
    return f"widget:{inbox_id}"


@wv.bp.app_template_global("widget_view")
def frame_view(settings: Mapping[str, Any]) -> dict[str, Any]:
    """What the frame shows for ``settings`` (web.widget_views._widget_settings): the status line, the fields
    asked before chatting and the offline form's texts. ``away``: nobody there and an email inbox answers, so the
    widget asks for an email."""
    available = bool(settings["available"])
    away = not available and bool(settings["offline_email"])
    prechat = settings["prechat"]
    ask_name, ask_email = prechat["name"] != "off", prechat["email"] != "off" or away
    need = (["name"] if prechat["name"] == "required" else []) + (
        ["email"] if prechat["email"] == "required" or away else []
    )
    if away:
        summary = "We're away: leave your email"
    elif ask_name and ask_email:
        summary = "Leave your name and email"
    else:
        summary = "Leave your name" if ask_name else "Leave your email"
    return {
        "available": available,
        "away": away,
        "need": need,
        "ask_name": ask_name,
        "ask_email": ask_email,
        "status": settings["reply_time"] if available else settings["offline_message"],
        "summary": summary,
        "intro": "Leave your email and your message, and we'll answer there."
        if away
        else "Tell us who you are, then write your message.",
    }


def payload(inbox: Inbox, now: dt.datetime | None = None) -> dict[str, Any]:
    """The ``availability`` event: open/away, the texts and fields to show (by element id), when to ask again.
    Reads through the request's session (``get_session``), as the frame does."""
    at = now or utcnow()
    view = frame_view(wv._widget_settings(inbox))
    change = next_change(get_session(), inbox, at)
    wait = RECHECK if change is None else min(RECHECK, math.ceil((change - at).total_seconds()) + 1)
    return {
        "available": view["available"],
        "away": view["away"],
        "need": view["need"],
        "el": {
            "reply-time": {"textContent": view["status"]},
            "about-summary": {"textContent": view["summary"]},
            "profile-intro": {"textContent": view["intro"]},
            "about-you": {"hidden": not (view["ask_name"] or view["ask_email"])},
            "profile-email-field": {"hidden": not view["ask_email"]},
        },
        "next_change_at": change.isoformat() if change is not None else None,
        "ask_in": max(1, wait) * 1000,
    }


def joined(inbox: Inbox) -> None:
    """A visitor's socket connected (web.widget_socket): into the inbox's room, and the state as of now."""
    join_room(room(inbox.id))
    emit(EVENT, payload(inbox))


def asked(inbox_id: int, ip: str) -> None:
    """The widget asks again (an opening/closing hour came): answered on its own socket, counted as a connect."""
    lim = wv.limits()
    if not lim.hit(lim.connect, ip):
        return
    session = get_session()
    inbox = session.get(Inbox, inbox_id)
    if inbox is not None:
        emit(EVENT, payload(inbox), to=request.sid)  # type: ignore[attr-defined]


def agents_changed(teams: tuple[int, ...], *, later: bool = False) -> None:
    """An agent of ``teams`` connected (now) or disconnected (``later``: after ``GRACE``, so a page change, which
    closes one socket and opens the next, says nothing): tell the widgets of inboxes whose state flipped."""
    if not later:
        _publish_flips(teams)
        return
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    socketio.start_background_task(_later, app, teams)


def _later(app: Flask, teams: tuple[int, ...]) -> None:
    time.sleep(GRACE)
    try:
        with app.app_context():
            _publish_flips(teams)
    except Exception:  # a background thread: log, never raise into the server
        log.exception("widget availability after an agent left")


def _publish_flips(teams: tuple[int, ...]) -> None:
    from web.socket_events import presence

    session = get_session()
    team_match = or_(Inbox.team_id.is_(None), Inbox.team_id.in_(teams)) if teams else Inbox.team_id.is_(None)
    inboxes = list(session.scalars(select(Inbox).where(Inbox.channel == "webchat", team_match)))
    if not inboxes:
        return
    online = presence().connections().values()
    for inbox in inboxes:
        there = any(inbox.team_id is None or inbox.team_id in who.teams for who in online)
        if _flipped(inbox.id, there):
            socketio.emit(EVENT, payload(inbox), to=room(inbox.id), namespace=webchat.NAMESPACE)


def _flipped(inbox_id: int, there: bool) -> bool:
    """Record whether agents are there for ``inbox_id``; True if that differs from the last record (or none)."""
    from web.socket_events import presence

    client = presence().redis
    if client is not None:
        try:
            old = client.set(f"{_KEY}{inbox_id}", "1" if there else "0", ex=86400, get=True)  # one atomic step
            return old is None or old != (b"1" if there else b"0")
        except RedisError:
            log.warning("widget availability: Redis unreachable; telling the widgets of inbox %s anyway", inbox_id)
            return True
    with _lock:
        old_state = _last.get(inbox_id)
        _last[inbox_id] = there
    return old_state != there
