"""Models of automation rules and outgoing webhooks (behaviour in ``tickets.automation`` and ``tickets.webhooks``).

Imported at the bottom of ``inbox.models`` so that Alembic and the tests see them in ``Base.metadata``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from inbox.db import Base, Timestamp


class AutomationRule(Base):
    """An admin's "when <trigger>, if <conditions>, then <actions>" rule; rules run in ``position`` order."""

    __tablename__ = "automation_rule"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    trigger: Mapped[str] = mapped_column(String(40))  # tickets.automation.TRIGGERS
    match: Mapped[str] = mapped_column(String(3), default="all")  # "all" or "any" of the conditions
    conditions: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)  # [{field, op, value, key?}]
    actions: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)  # [{type, value, subject?}]
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    position: Mapped[int] = mapped_column(Integer, default=0, index=True)
    fire_count: Mapped[int] = mapped_column(Integer, default=0)
    last_fired_at: Mapped[dt.datetime | None]
    created_at: Mapped[Timestamp]
    updated_at: Mapped[Timestamp]


class WebhookSubscription(Base):
    """An outgoing webhook: domain events POSTed as signed JSON to an admin's URL."""

    __tablename__ = "webhook_subscription"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    secret: Mapped[str] = mapped_column(Text)  # Fernet token (inbox.crypto); never shown again after saving
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[Timestamp]
    updated_at: Mapped[Timestamp]
    deliveries: Mapped[list[WebhookDelivery]] = relationship(
        back_populates="subscription", cascade="all, delete-orphan", passive_deletes=True
    )


class WebhookDelivery(Base):
    """One event sent (or being sent) to one subscription, with the outcome of its last attempt."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (Index("ix_webhook_delivery_subscription_id_id", "subscription_id", "id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("webhook_subscription.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(60))
    event_id: Mapped[str] = mapped_column(String(40), unique=True)  # X-Helpline-Delivery: receivers dedupe by it
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(10), default="pending")  # pending, retrying, delivered, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    next_attempt_at: Mapped[dt.datetime | None]
    created_at: Mapped[Timestamp]
    updated_at: Mapped[Timestamp]
    subscription: Mapped[WebhookSubscription] = relationship(back_populates="deliveries")


class AutomationEvent(Base):
    """A committed domain event that automation rules or webhooks want, kept until its job has run.

    The transactional outbox of ``workers.automation_jobs``: the row is written in the very commit that raised the
    event, and deleted in the transaction that runs the rules for it. So an event is neither lost when Redis is
    down at the commit (or the process dies right after it; the scheduler's sweep enqueues it later), nor acted on
    twice when its job runs twice.
    """

    __tablename__ = "automation_event"
    __table_args__ = (Index("ix_automation_event_created_at", "created_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(60))
    room: Mapped[str] = mapped_column(String(200))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    sweeps: Mapped[int] = mapped_column(Integer, default=0)  # times the sweeper had to enqueue it again
    created_at: Mapped[Timestamp]
