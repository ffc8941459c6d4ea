"""Telegram webhook updates, kept from arrival until processed (behaviour in ``workers.telegram_updates``).

Imported at the bottom of ``inbox.models`` so that Alembic and the tests see it in ``Base.metadata``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from inbox.db import Base, Timestamp


class TelegramUpdate(Base):
    """One Update Telegram POSTed to a webhook inbox: stored before the webhook answers 200, so neither a Redis outage
    nor a dead worker loses it, and kept a few days after processing, so a redelivered ``update_id`` is stored once.
    """

    __tablename__ = "telegram_update"
    __table_args__ = (
        UniqueConstraint("inbox_id", "update_id"),
        Index("ix_telegram_update_state_received_at", "state", "received_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    inbox_id: Mapped[int] = mapped_column(ForeignKey("inbox.id", ondelete="CASCADE"))
    update_id: Mapped[int] = mapped_column(BigInteger)
    raw: Mapped[dict[str, Any]] = mapped_column(JSON)  # the Update exactly as Telegram sent it
    state: Mapped[str] = mapped_column(String(20), default="pending")  # pending, done
    attempts: Mapped[int] = mapped_column(default=0)  # failed tries (a media download Telegram did not serve)
    outcome: Mapped[str | None] = mapped_column(String(40))  # stored, edited, duplicates, ignored, unknown, ...
    error: Mapped[str | None] = mapped_column(Text)  # why the last try failed
    received_at: Mapped[Timestamp]
    processed_at: Mapped[dt.datetime | None]
