"""The per-ticket report summary: the samples each ticket contributes to the report figures.

One row per sample (a created ticket, a resolution period, an answered wait, an agent reply, a decided SLA clock),
computed from the ticket's recorded history by ``tickets.summary`` whenever that history changes, so that a report
reads narrow rows by ``(figure, end_at)`` instead of rebuilding every ticket's timeline. Behaviour lives in
``tickets.summary``; imported at the bottom of ``inbox.models``.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from inbox.db import Base, Timestamp, UTCDateTime


class ReportSample(Base):
    """One ticket's contribution to one figure, attributed as the report definitions say (docs/reports.md)."""

    __tablename__ = "report_sample"
    __table_args__ = (
        Index("ix_report_sample_figure_end_at", "figure", "end_at"),
        Index("ix_report_sample_ticket_id", "ticket_id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id", ondelete="CASCADE"))
    # created, resolution, first_response, next_response, replies, sla_first_response, sla_next_response, ...
    figure: Mapped[str] = mapped_column(String(30))
    start_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    end_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())  # when it happened: the period it belongs to
    seconds: Mapped[int] = mapped_column(Integer, default=0)  # calendar time
    business_seconds: Mapped[int] = mapped_column(Integer, default=0)  # within the inbox's business hours
    agent_id: Mapped[int | None] = mapped_column(Integer)  # no foreign key: a deleted user's history stays
    team_id: Mapped[int | None] = mapped_column(Integer)
    inbox_id: Mapped[int] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(20))
    # SLA clocks only: the due time, and whether it was met (end_at = the stop) or breached (end_at = due_at).
    due_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    met: Mapped[bool | None] = mapped_column(Boolean)


class ReportOpen(Base):
    """One stretch of time during which a ticket was open with the same assignee and team: the backlog's rows.

    The backlog is a state at an instant, not something that ends in a period, so it does not fit ``report_sample``
    (a sample's row is selected by when it *ended*): a ticket is in the backlog at T exactly when one of its
    stretches covers T, ``from_at <= T < until_at`` (``until_at`` NULL: open until further notice). Its own narrow
    table, indexed by ``(until_at, from_at)``, makes "open at T" one range scan over the stretches that end after T
    (few, for a recent T), and keeps the sample scans by ``(figure, end_at)`` free of rows of another shape.
    ``created_at`` (the ticket's) gives the age; the attribution is the one of the stretch.
    """

    __tablename__ = "report_open"
    __table_args__ = (
        Index("ix_report_open_until_at_from_at", "until_at", "from_at"),
        Index("ix_report_open_ticket_id", "ticket_id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id", ondelete="CASCADE"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())  # the ticket's creation: age = T - created_at
    from_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    until_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    agent_id: Mapped[int | None] = mapped_column(Integer)
    team_id: Mapped[int | None] = mapped_column(Integer)
    inbox_id: Mapped[int] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(20))


class CsatRating(Base):
    """A customer's rating (1-5, optional comment) of one solve of a ticket, given through a signed link."""

    __tablename__ = "csat_rating"
    __table_args__ = (UniqueConstraint("ticket_id", "solved_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id", ondelete="CASCADE"))
    solved_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())  # the solve the survey asked about
    score: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[Timestamp]  # when first rated: the report period it belongs to
    updated_at: Mapped[Timestamp]  # a customer may change their mind while the link is valid
