"""Models of business-hour calendars and SLA policies (behaviour lives in ``tickets.business_hours``/``tickets.sla``).

Imported at the bottom of ``inbox.models`` so that Alembic and the tests see them in ``Base.metadata``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from inbox.db import Base, Timestamp

SLA_METRICS = ("first_response", "next_response", "resolution")


class BusinessCalendar(Base):
    """Weekly opening hours in an IANA time zone; applies to one inbox, one team, or is the default."""

    __tablename__ = "business_calendar"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")  # IANA name, e.g. "Europe/Berlin"
    # {"mon": [["09:00", "17:00"]], ...}: local wall-clock intervals per weekday; "24:00" ends a day.
    hours: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    inbox_id: Mapped[int | None] = mapped_column(ForeignKey("inbox.id", ondelete="CASCADE"), unique=True)
    team_id: Mapped[int | None] = mapped_column(ForeignKey("team.id", ondelete="CASCADE"), unique=True)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[Timestamp]
    holidays: Mapped[list[BusinessHoliday]] = relationship(
        back_populates="calendar", order_by="BusinessHoliday.day", cascade="all, delete-orphan"
    )


class BusinessHoliday(Base):
    """A local date on which a calendar is closed all day."""

    __tablename__ = "business_holiday"
    __table_args__ = (UniqueConstraint("calendar_id", "day"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    calendar_id: Mapped[int] = mapped_column(ForeignKey("business_calendar.id", ondelete="CASCADE"))
    day: Mapped[dt.date]
    name: Mapped[str] = mapped_column(String(100), default="")
    calendar: Mapped[BusinessCalendar] = relationship(back_populates="holidays")


class SlaPolicy(Base):
    """Response and resolution targets; the first active policy (by position) matching a ticket applies."""

    __tablename__ = "sla_policy"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    position: Mapped[int] = mapped_column(Integer, default=0)  # lower is tried first
    inbox_id: Mapped[int | None] = mapped_column(ForeignKey("inbox.id", ondelete="CASCADE"))  # None: any inbox
    tag: Mapped[str | None] = mapped_column(String(60))  # None: any ticket; else only tickets with this tag
    business_hours: Mapped[bool] = mapped_column(Boolean, default=False)  # count targets in business hours
    # The calendar business hours come from; None: the ticket's inbox calendar (its own, its team's, the default).
    calendar_id: Mapped[int | None] = mapped_column(ForeignKey("business_calendar.id", ondelete="SET NULL"))
    warn_before_seconds: Mapped[int] = mapped_column(Integer, default=900)  # warning this long before breach
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[Timestamp]
    targets: Mapped[list[SlaTarget]] = relationship(
        back_populates="policy", order_by="SlaTarget.id", cascade="all, delete-orphan"
    )


class SlaTarget(Base):
    """The targets of one policy for one priority, in seconds (None: no target for that metric)."""

    __tablename__ = "sla_target"
    __table_args__ = (UniqueConstraint("policy_id", "priority"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    policy_id: Mapped[int] = mapped_column(ForeignKey("sla_policy.id", ondelete="CASCADE"))
    priority: Mapped[str] = mapped_column(String(10))
    first_response_seconds: Mapped[int | None] = mapped_column(Integer)
    next_response_seconds: Mapped[int | None] = mapped_column(Integer)
    resolution_seconds: Mapped[int | None] = mapped_column(Integer)
    policy: Mapped[SlaPolicy] = relationship(back_populates="targets")
