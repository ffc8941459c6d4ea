"""Typed SQLAlchemy models of the domain: people, channels, contacts, tickets, messages and their history.

Models hold columns, relationships and small derived properties; behaviour lives in functions
(``inbox.ingest``, ``tickets.lifecycle``) that views, jobs and tests all call.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, WriteOnlyMapped, mapped_column, relationship

from inbox.db import Base, Timestamp

STATUSES = ("new", "open", "pending", "snoozed", "solved", "closed")
OPEN_STATUSES = ("new", "open", "pending", "snoozed")
PRIORITIES = ("low", "normal", "high", "urgent")
ROLES = ("admin", "lead", "agent")
CHANNELS = ("email", "telegram", "instagram", "webchat")
DIRECTIONS = ("inbound", "outbound", "note")
# "manual": a reply the agent sent by hand on the channel (Instagram without the Graph API); never delivered by us
DELIVERY_STATES = ("queued", "sending", "sent", "delivered", "read", "delayed", "failed", "manual")


class TeamMember(Base):
    __tablename__ = "team_member"
    team_id: Mapped[int] = mapped_column(ForeignKey("team.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), primary_key=True)


class Team(Base):
    """A group of agents; teams own inboxes, and agents see only their teams' inboxes."""

    __tablename__ = "team"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[Timestamp]
    members: Mapped[list[User]] = relationship(secondary="team_member", back_populates="teams")


class User(Base):
    """An agent, lead or admin."""

    __tablename__ = "user"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(String(300), default="")
    role: Mapped[str] = mapped_column(String(10), default="agent")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    totp_secret: Mapped[str | None] = mapped_column(Text)  # encrypted with inbox.crypto
    created_at: Mapped[Timestamp]
    teams: Mapped[list[Team]] = relationship(secondary="team_member", back_populates="members")


class ApiToken(Base):
    """A bearer token for the JSON API; only its SHA-256 is stored."""

    __tablename__ = "api_token"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[Timestamp]
    last_used_at: Mapped[dt.datetime | None]


class Inbox(Base):
    """One configured channel account: a mailbox, a Telegram bot, an Instagram profile, a chat widget."""

    __tablename__ = "inbox"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    channel: Mapped[str] = mapped_column(String(20))
    address: Mapped[str] = mapped_column(String(320), default="")  # mail address, bot username, profile
    team_id: Mapped[int | None] = mapped_column(ForeignKey("team.id", ondelete="SET NULL"))
    public_key: Mapped[str | None] = mapped_column(String(64), unique=True)  # widget key, webhook path
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # non-secret settings
    secrets: Mapped[str | None] = mapped_column(Text)  # Fernet token of a JSON dict (inbox.crypto)
    cursor: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # UIDVALIDITY/last UID, update offset
    poll_interval: Mapped[int | None] = mapped_column(Integer)  # seconds; None = the configured default
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    last_sync_at: Mapped[dt.datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[dt.datetime | None]
    credential_state: Mapped[str] = mapped_column(String(20), default="ok")  # ok, needs_reauth
    created_at: Mapped[Timestamp]
    team: Mapped[Team | None] = relationship()


class Contact(Base):
    """A customer, reachable through one or more identities."""

    __tablename__ = "contact"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("contact.id"))
    created_at: Mapped[Timestamp]
    identities: Mapped[list[Identity]] = relationship(back_populates="contact", order_by="Identity.id")

    @property
    def first_name(self) -> str:
        return self.name.split()[0] if self.name.strip() else ""


class Identity(Base):
    """One way to reach a contact on one channel: an address, a Telegram user id."""

    __tablename__ = "identity"
    __table_args__ = (UniqueConstraint("channel", "handle"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id"), index=True)
    channel: Mapped[str] = mapped_column(String(20))
    handle: Mapped[str] = mapped_column(String(320))
    display_name: Mapped[str] = mapped_column(String(200), default="")
    unreachable: Mapped[str | None] = mapped_column(String(200))  # reason, e.g. "bot blocked by user"
    created_at: Mapped[Timestamp]
    contact: Mapped[Contact] = relationship(back_populates="identities")


class Tag(Base):
    __tablename__ = "tag"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(60), unique=True)
    color: Mapped[str] = mapped_column(String(20), default="")


class TicketTag(Base):
    __tablename__ = "ticket_tag"
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id", ondelete="CASCADE"), primary_key=True)
    tag_id: Mapped[int] = mapped_column(ForeignKey("tag.id", ondelete="CASCADE"), primary_key=True, index=True)


class Ticket(Base):
    """The unit of triage: the messages about one matter, with status, owner and SLA clocks."""

    __tablename__ = "ticket"
    __table_args__ = (
        Index("ix_ticket_status_activity", "status", "last_activity_at"),
        Index("ix_ticket_inbox_status_activity", "inbox_id", "status", "last_activity_at"),
        Index("ix_ticket_assignee_status_activity", "assignee_id", "status", "last_activity_at"),
        Index("ix_ticket_contact_inbox", "contact_id", "inbox_id"),
        Index("ix_ticket_updated_at", "updated_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    inbox_id: Mapped[int] = mapped_column(ForeignKey("inbox.id"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id"))
    channel: Mapped[str] = mapped_column(String(20))
    subject: Mapped[str] = mapped_column(String(500), default="")
    preview: Mapped[str] = mapped_column(String(300), default="")
    status: Mapped[str] = mapped_column(String(10), default="new")
    priority: Mapped[str] = mapped_column(String(10), default="normal")
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    team_id: Mapped[int | None] = mapped_column(ForeignKey("team.id", ondelete="SET NULL"))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("ticket.id"))  # the closed ticket this follows
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("ticket.id"))
    message_count: Mapped[int] = mapped_column(Integer, default=0)
    snoozed_until: Mapped[dt.datetime | None]
    created_at: Mapped[Timestamp]
    updated_at: Mapped[Timestamp]
    last_activity_at: Mapped[Timestamp]
    # SLA clocks: first customer message, first public agent reply, the oldest unanswered customer message.
    first_inbound_at: Mapped[dt.datetime | None]
    first_response_at: Mapped[dt.datetime | None]
    waiting_since: Mapped[dt.datetime | None]
    solved_at: Mapped[dt.datetime | None]
    closed_at: Mapped[dt.datetime | None]
    reopened_at: Mapped[dt.datetime | None]
    messages: WriteOnlyMapped[Message] = relationship(
        back_populates="ticket", order_by="Message.id", foreign_keys="Message.ticket_id"
    )
    contact: Mapped[Contact] = relationship()
    inbox: Mapped[Inbox] = relationship()
    assignee: Mapped[User | None] = relationship()
    team: Mapped[Team | None] = relationship()
    tags: Mapped[list[Tag]] = relationship(secondary="ticket_tag", order_by="Tag.name")


class Message(Base):
    """An inbound message, an outbound reply or an internal note."""

    __tablename__ = "message"
    __table_args__ = (
        UniqueConstraint("inbox_id", "external_id"),
        Index("ix_message_ticket_id_id", "ticket_id", "id"),
        Index("ix_message_contact_created", "contact_id", "created_at"),
        Index("ix_message_delivery_state", "delivery_state"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"))
    inbox_id: Mapped[int] = mapped_column(ForeignKey("inbox.id"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id"))
    identity_id: Mapped[int | None] = mapped_column(ForeignKey("identity.id"))
    author_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    direction: Mapped[str] = mapped_column(String(10))
    channel: Mapped[str] = mapped_column(String(20))
    external_id: Mapped[str | None] = mapped_column(String(500))
    message_id_header: Mapped[str | None] = mapped_column(String(500), index=True)
    subject: Mapped[str] = mapped_column(String(500), default="")
    body_text: Mapped[str] = mapped_column(Text, default="")
    body_html: Mapped[str | None] = mapped_column(Text)  # sanitised HTML, never the sender's original
    sent_at: Mapped[dt.datetime | None]
    created_at: Mapped[Timestamp]
    is_auto: Mapped[bool] = mapped_column(Boolean, default=False)  # auto-reply, bounce, bulk: never answered
    thread_reason: Mapped[str] = mapped_column(String(200), default="")  # why it joined its ticket
    raw_sha256: Mapped[str | None] = mapped_column(String(64))  # raw source in the blob store
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Outbound delivery.
    delivery_state: Mapped[str | None] = mapped_column(String(10))
    delivery_error: Mapped[str | None] = mapped_column(Text)
    delivery_attempts: Mapped[int] = mapped_column(Integer, default=0)
    delivered_at: Mapped[dt.datetime | None]
    next_attempt_at: Mapped[dt.datetime | None]
    ticket: Mapped[Ticket] = relationship(back_populates="messages", foreign_keys=[ticket_id])
    contact: Mapped[Contact] = relationship()
    identity: Mapped[Identity | None] = relationship()
    author: Mapped[User | None] = relationship()
    attachments: Mapped[list[Attachment]] = relationship(back_populates="message", order_by="Attachment.id")


class MessageRef(Base):
    """A Message-ID that a message refers to (In-Reply-To / References), indexed for threading lookups."""

    __tablename__ = "message_ref"
    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("message.id", ondelete="CASCADE"), index=True)
    ref: Mapped[str] = mapped_column(String(500), index=True)
    message: Mapped[Message] = relationship()


class Attachment(Base):
    """A file of a message, stored content-addressed under the data folder."""

    __tablename__ = "attachment"
    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("message.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(String(300))
    content_type: Mapped[str] = mapped_column(String(200), default="application/octet-stream")
    size: Mapped[int] = mapped_column(Integer, default=0)
    sha256: Mapped[str | None] = mapped_column(String(64))  # None when it was over the size limit
    content_id: Mapped[str | None] = mapped_column(String(300))
    inline: Mapped[bool] = mapped_column(Boolean, default=False)
    skipped_reason: Mapped[str | None] = mapped_column(String(200))
    message: Mapped[Message] = relationship(back_populates="attachments")


class TicketEvent(Base):
    """One change to a ticket (who, what, when): the audit trail that reports are rebuilt from."""

    __tablename__ = "ticket_event"
    __table_args__ = (
        Index("ix_ticket_event_ticket_id_id", "ticket_id", "id"),
        Index("ix_ticket_event_kind_at", "kind", "created_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(40))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[Timestamp]
    ticket: Mapped[Ticket] = relationship()


class Quarantine(Base):
    """A raw input that could not be parsed: kept once, listed to admins, re-processable by a command."""

    __tablename__ = "quarantine"
    id: Mapped[int] = mapped_column(primary_key=True)
    inbox_id: Mapped[int] = mapped_column(ForeignKey("inbox.id", ondelete="CASCADE"), index=True)
    raw_sha256: Mapped[str] = mapped_column(String(64))
    source_ref: Mapped[str] = mapped_column(String(200), default="")  # e.g. "INBOX uid 42"
    error: Mapped[str] = mapped_column(Text)
    created_at: Mapped[Timestamp]
    resolved_at: Mapped[dt.datetime | None]


# Calendars and SLA policies, workspace settings and the audit log live in their own modules; imported here so
# Base.metadata (Alembic, tests) has them.
from inbox.automation_models import AutomationRule, WebhookDelivery, WebhookSubscription  # noqa: E402, F401
from inbox.people_models import CannedResponse, Invite, UserProfile  # noqa: E402, F401
from inbox.report_models import CsatRating, ReportOpen, ReportSample  # noqa: E402, F401
from inbox.settings_models import AuditLog, WorkspaceSetting  # noqa: E402, F401
from inbox.sla_models import BusinessCalendar, BusinessHoliday, SlaPolicy, SlaTarget  # noqa: E402, F401
from inbox.telegram_models import TelegramUpdate  # noqa: E402, F401
