"""Models of the people settings: invitations, canned responses and each user's profile (issue 10).

Behaviour lives in ``inbox.people`` and ``web.canned``. Imported at the bottom of ``inbox.models`` so that
Alembic and the tests see them in ``Base.metadata``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from inbox.db import Base, Timestamp


class Invite(Base):
    """A pending sign-up link for one email address; only the SHA-256 of its token is stored, and it works once."""

    __tablename__ = "invite"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), index=True)
    role: Mapped[str] = mapped_column(String(10), default="agent")
    team_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    invited_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    expires_at: Mapped[dt.datetime]
    accepted_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]
    sent_error: Mapped[str | None] = mapped_column(Text)  # why the invitation email could not be sent
    created_at: Mapped[Timestamp]


class CannedResponse(Base):
    """A reply text with placeholders: shared with everyone (``owner_id`` None) or personal to its owner."""

    __tablename__ = "canned_response"
    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(100))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[Timestamp]
    updated_at: Mapped[Timestamp]


class UserProfile(Base):
    """A user's own choices: avatar colour, which desktop notifications they want, and email notifications."""

    __tablename__ = "user_profile"
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), primary_key=True)
    avatar_color: Mapped[str] = mapped_column(String(7), default="")  # "#rrggbb"; "" = derived from the name
    notify_mentions: Mapped[bool] = mapped_column(Boolean, default=True)
    notify_assignments: Mapped[bool] = mapped_column(Boolean, default=True)
    notify_new_tickets: Mapped[bool] = mapped_column(Boolean, default=False)
    email_notifications: Mapped[bool] = mapped_column(Boolean, default=False)  # mentions/assignments by email too
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[Timestamp]
