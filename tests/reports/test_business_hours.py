"""Business time by hand: Berlin office hours Mon-Fri 09:00-17:00, a holiday, and the October 2026 DST change."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.reports.world import WEEKDAYS_9_TO_5, Z
from tickets.business_hours import add_business, business_seconds, make_calendar

BERLIN = make_calendar("Europe/Berlin", WEEKDAYS_9_TO_5, [dt.date(2026, 10, 26)])
NO_HOLIDAY = make_calendar("Europe/Berlin", WEEKDAYS_9_TO_5)


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        # Fri 16:00 CEST -> Tue 10:00 CET: Fri 1 h, weekend 0, holiday Monday 0, Tue 1 h.
        ("2026-10-23 14:00", "2026-10-27 09:00", 2 * 3600),
        # Inside one day, summer time: 10:30-11:30 CEST.
        ("2026-10-21 08:30", "2026-10-21 09:30", 3600),
        # The DST night (Sat 22:30 -> Sun 03:30 UTC) is all weekend: 0.
        ("2026-10-24 22:30", "2026-10-25 03:30", 0),
        # Thu 17:00 CEST -> Fri 09:30 CEST: closed until Friday 09:00, then 30 minutes.
        ("2026-10-22 15:00", "2026-10-23 07:30", 1800),
        # After the change the day is 08:00-16:00 UTC: Tue 07:00 -> 17:00 UTC is exactly 8 h.
        ("2026-10-27 07:00", "2026-10-27 17:00", 8 * 3600),
        # Before the change it is 07:00-15:00 UTC.
        ("2026-10-21 06:00", "2026-10-21 16:00", 8 * 3600),
        # Reversed or empty ranges count nothing.
        ("2026-10-21 12:00", "2026-10-21 10:00", 0),
    ],
)
def test_business_seconds(start: str, end: str, expected: int) -> None:
    assert business_seconds(Z(start), Z(end), BERLIN) == expected


def test_without_the_holiday_monday_counts() -> None:
    assert business_seconds(Z("2026-10-23 14:00"), Z("2026-10-27 09:00"), NO_HOLIDAY) == 10 * 3600  # + Mon 8 h


def test_no_calendar_counts_around_the_clock() -> None:
    assert business_seconds(Z("2026-10-24 22:30"), Z("2026-10-25 03:30"), None) == 5 * 3600  # 5 real hours


@pytest.mark.parametrize(
    ("start", "seconds", "due"),
    [
        ("2026-10-23 14:00", 4 * 3600, "2026-10-27 11:00"),  # Fri 1 h, holiday skipped, Tue 09:00 CET + 3 h
        ("2026-10-23 14:00", 16 * 3600, "2026-10-28 15:00"),  # Fri 1 h + Tue 8 h + Wed 7 h = 16:00 CET
        ("2026-10-21 10:00", 2 * 3600, "2026-10-21 12:00"),
        ("2026-10-22 15:00", 2 * 3600, "2026-10-23 09:00"),  # Thu closes at 17:00 CEST; Fri 09:00 + 2 h
        ("2026-10-24 22:30", 3600, "2026-10-27 09:00"),  # weekend, holiday: Tue 09:00 CET + 1 h = 09:00 UTC
        ("2026-10-26 10:00", 16 * 3600, "2026-10-28 16:00"),  # holiday start: Tue 8 h + Wed 8 h
    ],
)
def test_add_business(start: str, seconds: int, due: str) -> None:
    assert add_business(Z(start), seconds, BERLIN) == Z(due)


def test_a_calendar_without_hours_is_refused() -> None:
    with pytest.raises(ValueError):
        add_business(Z("2026-10-21 10:00"), 60, make_calendar("UTC", {}))
    with pytest.raises(ValueError):
        make_calendar("UTC", {"mon": [["17:00", "09:00"]]})


def _by_the_minute(start: dt.datetime, end: dt.datetime) -> int:
    """An independent count: step minute by minute and ask the wall clock in Berlin."""
    tz = BERLIN.tz
    minutes, at = 0, start
    while at < end:
        local = at.astimezone(tz)
        if local.weekday() < 5 and local.date() not in BERLIN.holidays and 9 <= local.hour < 17:
            minutes += 1
        at += dt.timedelta(minutes=1)
    return minutes * 60


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2026-10-20 06:17", "2026-11-03 19:03"),  # two weeks across the autumn change and the holiday
        ("2026-03-24 13:00", "2026-04-02 08:31"),  # across the spring change (Sun 29 March)
        ("2026-10-23 14:00", "2026-10-27 09:00"),
    ],
)
def test_business_seconds_matches_a_minute_by_minute_count(start: str, end: str) -> None:
    assert business_seconds(Z(start), Z(end), BERLIN) == _by_the_minute(Z(start), Z(end))


def test_long_ranges_use_running_totals_with_the_same_result() -> None:
    start = Z("2025-12-30 10:00")
    total = 0
    at = start
    for _ in range(400):  # a year of single days, summed, against the one-call answer
        total += business_seconds(at, at + dt.timedelta(days=1), BERLIN)
        at += dt.timedelta(days=1)
    assert business_seconds(start, at, BERLIN) == total
