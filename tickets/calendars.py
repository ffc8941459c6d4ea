"""Editing business-hour calendars: weekly hours typed as text per day, a time zone, holidays, and what the
calendar applies to (the workspace default, one team or one inbox). ``tickets.business_hours`` computes with them.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections.abc import Mapping

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from inbox.errors import InvalidChange
from inbox.models import Inbox, Team
from inbox.sla_models import BusinessCalendar, BusinessHoliday
from tickets.business_hours import DAY_NAMES, make_calendar

INTERVAL = re.compile(r"^\s*(\d{1,2})(?::(\d{2}))?\s*[-–]\s*(\d{1,2})(?::(\d{2}))?\s*$")
DAY_LABELS = dict(
    zip(DAY_NAMES, ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"), strict=True)
)


def parse_day(text: str, day: str) -> list[list[str]]:
    """``"09:00-12:00, 13:00-17:30"`` → ``[["09:00", "12:00"], ["13:00", "17:30"]]``; empty = closed."""
    intervals: list[list[str]] = []
    for part in filter(None, (p.strip() for p in text.replace(";", ",").split(","))):
        match = INTERVAL.match(part)
        if match is None:
            raise InvalidChange(f"{DAY_LABELS[day]}: write hours like 09:00-17:00, not {part!r}")
        h1, m1, h2, m2 = match.groups()
        start, end = f"{int(h1):02d}:{m1 or '00'}", f"{int(h2):02d}:{m2 or '00'}"
        if not (start < end and int(h1) < 24 and int(m1 or 0) < 60 and int(m2 or 0) < 60 and end <= "24:00"):
            raise InvalidChange(f"{DAY_LABELS[day]}: {part!r} must start before it ends, within 00:00-24:00")
        intervals.append([start, end])
    intervals.sort()
    for (_, end), (start, _) in zip(intervals, intervals[1:], strict=False):
        if start < end:
            raise InvalidChange(f"{DAY_LABELS[day]}: the intervals overlap")
    return intervals


def format_day(intervals: list[list[str]]) -> str:
    return ", ".join(f"{a}-{b}" for a, b in intervals)


def save_calendar(
    session: Session,
    row: BusinessCalendar | None,
    *,
    name: str,
    timezone: str,
    days: Mapping[str, str],
    applies_to: str,
) -> BusinessCalendar:
    """Create or update a calendar from the form. ``applies_to``: "default", "team:ID", "inbox:ID" or "" (none
    yet). An inbox or team has one calendar, so taking it here releases it from the calendar that had it."""
    name = name.strip()[:100]
    if not name:
        raise InvalidChange("a calendar needs a name")
    if timezone not in zoneinfo.available_timezones():
        raise InvalidChange(f"{timezone!r} is not a time zone name like Europe/Berlin")
    hours = {day: parse_day(days.get(day, ""), day) for day in DAY_NAMES}
    hours = {day: iv for day, iv in hours.items() if iv}
    make_calendar(timezone, hours)  # the engine's own check
    clash = select(BusinessCalendar.id).where(BusinessCalendar.name == name)
    if row is not None:
        clash = clash.where(BusinessCalendar.id != row.id)
    if session.scalar(clash) is not None:
        raise InvalidChange(f"a calendar named {name!r} already exists")
    if row is None:
        row = BusinessCalendar(name=name)
        session.add(row)
    row.name, row.timezone, row.hours = name, timezone, hours
    kind, _, ident = applies_to.partition(":")
    inbox_id = team_id = None
    if kind == "inbox" and ident.isdigit() and session.get(Inbox, int(ident)) is not None:
        inbox_id = int(ident)
    elif kind == "team" and ident.isdigit() and session.get(Team, int(ident)) is not None:
        team_id = int(ident)
    elif applies_to not in ("", "default"):
        raise InvalidChange("pick what this calendar applies to")
    session.flush()
    others = BusinessCalendar.id != row.id
    if inbox_id is not None:
        session.execute(
            update(BusinessCalendar).where(others, BusinessCalendar.inbox_id == inbox_id).values(inbox_id=None)
        )
    if team_id is not None:
        session.execute(
            update(BusinessCalendar).where(others, BusinessCalendar.team_id == team_id).values(team_id=None)
        )
    if applies_to == "default":
        session.execute(update(BusinessCalendar).where(others).values(is_default=False))
    session.flush()  # the unique inbox/team columns are free before this row takes them
    row.inbox_id, row.team_id, row.is_default = inbox_id, team_id, applies_to == "default"
    session.flush()
    return row


def applies_to(row: BusinessCalendar) -> str:
    if row.is_default:
        return "default"
    if row.inbox_id is not None:
        return f"inbox:{row.inbox_id}"
    if row.team_id is not None:
        return f"team:{row.team_id}"
    return ""


def add_holiday(session: Session, row: BusinessCalendar, day: str, name: str) -> BusinessHoliday:
    try:
        date = dt.date.fromisoformat(day.strip())
    except ValueError as exc:
        raise InvalidChange(f"{day!r} is not a date like 2026-12-25") from exc
    if session.scalar(
        select(BusinessHoliday.id).where(BusinessHoliday.calendar_id == row.id, BusinessHoliday.day == date)
    ):
        raise InvalidChange(f"{date} is already a holiday of this calendar")
    holiday = BusinessHoliday(calendar_id=row.id, day=date, name=name.strip()[:100])
    session.add(holiday)
    session.flush()
    return holiday
