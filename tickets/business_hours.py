"""Business hours: weekly opening hours in an IANA time zone, minus holidays, and time counted within them.

Hours are wall-clock times of the calendar's zone, so "09:00-17:00" stays 09:00-17:00 local across a daylight
saving change; each local interval is turned into UTC instants through ``zoneinfo`` and intersected with the
range asked about. That makes ``business_seconds`` exact across weekends, holidays and DST changes. No calendar
(``None``) means around the clock: business time equals calendar time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from inbox.models import Inbox
from inbox.sla_models import BusinessCalendar, BusinessHoliday

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = date.weekday()
MAX_DAYS = 3700  # add_business gives up after ten years of calendar without any open hour


@dataclass(frozen=True)
class Calendar:
    """Weekly hours (minutes after local midnight, end up to 1440) per weekday, a zone and holidays."""

    tz: ZoneInfo
    weekly: tuple[tuple[tuple[int, int], ...], ...]  # 7 entries, Monday first
    holidays: frozenset[dt.date] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if len(self.weekly) != 7:
            raise ValueError("weekly hours need 7 days, Monday first")
        for day in self.weekly:
            for start, end in day:
                if not 0 <= start < end <= 1440:
                    raise ValueError(f"bad interval {start}-{end} (minutes after midnight)")

    @property
    def is_open_somewhere(self) -> bool:
        return any(self.weekly)


def parse_hours(hours: Mapping[str, Sequence[Sequence[str]]]) -> tuple[tuple[tuple[int, int], ...], ...]:
    """``{"mon": [["09:00", "17:00"]], ...}`` → per-weekday minute intervals; "24:00" ends a day."""
    unknown = set(hours) - set(DAY_NAMES)
    if unknown:
        raise ValueError(f"unknown day names: {', '.join(sorted(unknown))}")
    return tuple(
        tuple(sorted((_minutes(start), _minutes(end)) for start, end in hours.get(day, ()))) for day in DAY_NAMES
    )


def _minutes(text: str) -> int:
    hours, _, minutes = text.partition(":")
    value = int(hours) * 60 + int(minutes or 0)
    if not 0 <= value <= 1440:
        raise ValueError(f"bad time of day {text!r}")
    return value


def make_calendar(tz: str, hours: Mapping[str, Sequence[Sequence[str]]], holidays: Sequence[dt.date] = ()) -> Calendar:
    return Calendar(ZoneInfo(tz), parse_hours(hours), frozenset(holidays))


def _local_instant(day: dt.date, minute: int, tz: ZoneInfo) -> dt.datetime:
    """The UTC instant of a local wall-clock minute (1440 = next midnight); a skipped time maps past the gap."""
    if minute == 1440:
        day, minute = day + dt.timedelta(days=1), 0
    local = dt.datetime.combine(day, dt.time(minute // 60, minute % 60), tzinfo=tz)
    return local.astimezone(dt.UTC)


class _DayCache:
    """Per calendar: each local day's open intervals in UTC, and running totals of open seconds per day, so that
    a range of months costs two partial days and one subtraction."""

    EPOCH = dt.date(2000, 1, 1)

    def __init__(self, calendar: Calendar) -> None:
        self.calendar = calendar
        self.days: dict[dt.date, tuple[tuple[dt.datetime, dt.datetime], ...]] = {}
        self.totals: list[int] = [0]  # totals[i]: open seconds of the days EPOCH .. EPOCH + i - 1

    def intervals(self, day: dt.date) -> tuple[tuple[dt.datetime, dt.datetime], ...]:
        found = self.days.get(day)
        if found is None:
            cal = self.calendar
            found = (
                ()
                if day in cal.holidays
                else tuple(
                    (_local_instant(day, s, cal.tz), _local_instant(day, e, cal.tz))
                    for s, e in cal.weekly[day.weekday()]
                )
            )
            if len(self.days) > 20000:
                self.days.clear()
            self.days[day] = found
        return found

    def before(self, day: dt.date) -> int:
        """Open seconds of all days from EPOCH up to ``day`` (exclusive)."""
        index = (day - self.EPOCH).days
        while len(self.totals) <= index:
            d = self.EPOCH + dt.timedelta(days=len(self.totals) - 1)
            self.totals.append(self.totals[-1] + sum(int((hi - lo).total_seconds()) for lo, hi in self.intervals(d)))
        return self.totals[index]


_CACHES: dict[Calendar, _DayCache] = {}


def _cache(calendar: Calendar) -> _DayCache:
    # Equal calendars (loaded again by each request) share one cache; each object looks it up (hashes) once.
    cache: _DayCache | None = calendar.__dict__.get("_day_cache")
    if cache is None:
        cache = _CACHES.get(calendar)
        if cache is None:
            if len(_CACHES) > 64:
                _CACHES.clear()
            cache = _CACHES[calendar] = _DayCache(calendar)
        object.__setattr__(calendar, "_day_cache", cache)  # a frozen dataclass; this is only a memo
    return cache


def open_intervals(calendar: Calendar, first: dt.date, last: dt.date) -> Iterator[tuple[dt.datetime, dt.datetime]]:
    """Open intervals (UTC) of the local days ``first``..``last``, in order, holidays left out."""
    cache = _cache(calendar)
    day = first
    while day <= last:
        yield from cache.intervals(day)
        day += dt.timedelta(days=1)


def _local_midnight(day: dt.date, tz: ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=tz).astimezone(dt.UTC)


def business_seconds(start: dt.datetime, end: dt.datetime, calendar: Calendar | None) -> int:
    """Whole seconds of open hours between two aware instants (0 when end <= start)."""
    if end <= start:
        return 0
    if calendar is None:
        return int((end - start).total_seconds())
    first = start.astimezone(calendar.tz).date()
    last = end.astimezone(calendar.tz).date()
    if (last - first).days > 2 and first > _DayCache.EPOCH:
        # Whole local days in between come from the running totals; only the two ends are intersected.
        inner_start, inner_end = first + dt.timedelta(days=1), last
        whole = _cache(calendar).before(inner_end) - _cache(calendar).before(inner_start)
        return (
            _intersect(start, _local_midnight(inner_start, calendar.tz), calendar, first - dt.timedelta(days=1), first)
            + whole
            + _intersect(_local_midnight(inner_end, calendar.tz), end, calendar, last, last)
        )
    return _intersect(start, end, calendar, first - dt.timedelta(days=1), last)


def _intersect(start: dt.datetime, end: dt.datetime, calendar: Calendar, first: dt.date, last: dt.date) -> int:
    total = dt.timedelta()
    for lo, hi in open_intervals(calendar, first, last):
        lo, hi = max(lo, start), min(hi, end)
        if hi > lo:
            total += hi - lo
    return int(total.total_seconds())


def add_business(start: dt.datetime, seconds: int, calendar: Calendar | None) -> dt.datetime:
    """The instant at which ``seconds`` of open hours have passed since ``start`` (a due time)."""
    if calendar is None:
        return start + dt.timedelta(seconds=seconds)
    if not calendar.is_open_somewhere:
        raise ValueError("a calendar without any open hours never reaches a due time")
    left = dt.timedelta(seconds=seconds)
    cache = _cache(calendar)
    day = start.astimezone(calendar.tz).date() - dt.timedelta(days=1)
    one = dt.timedelta(days=1)
    for _ in range(MAX_DAYS):
        intervals = cache.intervals(day)
        day += one
        for lo, hi in intervals:
            lo = max(lo, start)
            if hi <= lo:
                continue
            if hi - lo >= left:
                return lo + left
            left -= hi - lo
    raise ValueError("no due time within ten years; check the calendar's hours and holidays")


def calendar_from_row(row: BusinessCalendar, holidays: Sequence[dt.date]) -> Calendar:
    return make_calendar(row.timezone, row.hours, holidays)


@dataclass(frozen=True)
class Calendars:
    """Every configured calendar, and which applies to an inbox: its own, else its team's, else the default."""

    by_inbox: dict[int, Calendar]
    by_team: dict[int, Calendar]
    default: Calendar | None
    inbox_team: dict[int, int | None]
    by_id: dict[int, Calendar] = field(default_factory=dict)

    def for_inbox(self, inbox_id: int) -> Calendar | None:
        if inbox_id in self.by_inbox:
            return self.by_inbox[inbox_id]
        team_id = self.inbox_team.get(inbox_id)
        if team_id is not None and team_id in self.by_team:
            return self.by_team[team_id]
        return self.default


def load_calendars(session: Session) -> Calendars:
    """Load all calendars with their holidays (a handful of rows) in two queries."""
    holidays: dict[int, list[dt.date]] = {}
    for cal_id, day in session.execute(select(BusinessHoliday.calendar_id, BusinessHoliday.day)):
        holidays.setdefault(cal_id, []).append(day)
    by_inbox: dict[int, Calendar] = {}
    by_team: dict[int, Calendar] = {}
    default: Calendar | None = None
    by_id: dict[int, Calendar] = {}
    for row in session.scalars(select(BusinessCalendar).order_by(BusinessCalendar.id)):
        cal = by_id[row.id] = calendar_from_row(row, holidays.get(row.id, []))
        if row.inbox_id is not None:
            by_inbox[row.inbox_id] = cal
        if row.team_id is not None:
            by_team[row.team_id] = cal
        if row.is_default and default is None:
            default = cal
    inbox_team = {i: t for i, t in session.execute(select(Inbox.id, Inbox.team_id))}
    return Calendars(by_inbox, by_team, default, inbox_team, by_id)


def hours_payload(calendar: Calendar) -> dict[str, Any]:
    """A JSON-safe description, for pages and docs."""
    return {
        "timezone": calendar.tz.key,
        "hours": {
            name: [[f"{s // 60:02d}:{s % 60:02d}", f"{e // 60:02d}:{e % 60:02d}"] for s, e in calendar.weekly[i]]
            for i, name in enumerate(DAY_NAMES)
        },
        "holidays": sorted(d.isoformat() for d in calendar.holidays),
    }
