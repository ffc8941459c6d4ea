"""Is anybody there? What the widget says about the team: "we typically reply in ..." or the offline form.

The team is *available* when the inbox's business calendar (its own, its team's or the default one; none means
around the clock) is open now and at least one agent of the inbox's team has the agent UI open (the agents'
presence of web.socket_events). The typical reply time is the median first response, in business time, of the
inbox's tickets answered in the last ``WINDOW`` (the reports' own definition, tickets.metrics), unless the admin
wrote a text of their own on the widget settings page. It is cached per inbox for ``CACHE_SECONDS``: every page
view of the shop asks.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

from sqlalchemy.orm import Session

from connectors import webchat
from inbox.db import utcnow
from inbox.models import Inbox
from tickets.business_hours import business_seconds, load_calendars, open_intervals
from tickets.metrics import Filters, Report, summarize

WINDOW = dt.timedelta(days=14)
CACHE_SECONDS = 300.0
MIN_SAMPLES = 3  # fewer answered chats say little: the generic text instead

_cache: dict[int, tuple[float, float | None]] = {}  # inbox id -> (monotonic time, median seconds)
_lock = threading.Lock()


def typical_first_response(session: Session, inbox_id: int, now: dt.datetime | None = None) -> float | None:
    """Median business-time first response of the inbox's recent tickets, in seconds; None if too few."""
    with _lock:
        hit = _cache.get(inbox_id)
    if hit is not None and time.monotonic() - hit[0] < CACHE_SECONDS:
        return hit[1]
    end = now or utcnow()
    samples = Report(session, Filters(end - WINDOW, end, inbox_ids=frozenset({inbox_id}))).first_responses()
    median = summarize(samples).median_business if len(samples) >= MIN_SAMPLES else None
    value = float(median) if median is not None else None
    with _lock:
        _cache[inbox_id] = (time.monotonic(), value)
    return value


def forget(inbox_id: int) -> None:
    """Drop the cached figure (the settings page changed what the widget says)."""
    with _lock:
        _cache.pop(inbox_id, None)


def agents_online(inbox: Inbox) -> bool:
    from web.socket_events import online_user_ids

    return bool(online_user_ids(inbox.team_id))


def is_open(session: Session, inbox: Inbox, now: dt.datetime | None = None) -> bool:
    calendar = load_calendars(session).for_inbox(inbox.id)
    start = now or utcnow()
    return business_seconds(start, start + dt.timedelta(minutes=1), calendar) > 0


LOOK_AHEAD = 8  # days searched for the next opening or closing hour; a longer closure is asked about again later


def next_change(session: Session, inbox: Inbox, now: dt.datetime | None = None) -> dt.datetime | None:
    """When ``is_open`` next flips for ``inbox`` (an opening or closing hour), or None: not within ``LOOK_AHEAD``
    days, or no calendar (around the clock). ``is_open`` looks a minute ahead, so the team counts as open from a
    minute before an opening hour until the closing hour; back-to-back hours (to midnight, from midnight) join."""
    calendar = load_calendars(session).for_inbox(inbox.id)
    if calendar is None:
        return None
    start = now or utcnow()
    first = start.astimezone(calendar.tz).date() - dt.timedelta(days=1)
    windows: list[tuple[dt.datetime, dt.datetime]] = []
    for lo, hi in open_intervals(calendar, first, first + dt.timedelta(days=LOOK_AHEAD)):
        lo -= dt.timedelta(minutes=1)
        if windows and lo <= windows[-1][1]:
            windows[-1] = (windows[-1][0], max(windows[-1][1], hi))
        else:
            windows.append((lo, hi))
    for lo, hi in windows:
        if lo < start < hi:
            return hi  # open now: closes at the end of this stretch
        if start <= lo:
            return lo  # closed now: opens just after this instant
    return None


def availability(session: Session, inbox: Inbox) -> dict[str, Any]:
    """``{"available", "reply_time", "away_reason"}`` for the widget; the reason is "closed" or "away"."""
    config = inbox.config or {}
    if not is_open(session, inbox):
        return {"available": False, "reply_time": "", "away_reason": "closed"}
    if not agents_online(inbox):
        return {"available": False, "reply_time": "", "away_reason": "away"}
    text = str(config.get("reply_time") or "")[: webchat.MAX_SETTING_TEXT]
    if not text:
        text = webchat.reply_time_text(typical_first_response(session, inbox.id))
    return {"available": True, "reply_time": text, "away_reason": ""}
