"""Models of workspace-wide settings (name, time zone) and the admin audit log (behaviour in ``inbox.workspace``).

Imported at the bottom of ``inbox.models`` so that Alembic and the tests see them in ``Base.metadata``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from inbox.db import Base, Timestamp


class WorkspaceSetting(Base):
    """One workspace-wide setting as a key and a JSON value; shared by every process through the database."""

    __tablename__ = "workspace_setting"
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)
    updated_at: Mapped[Timestamp]


class AuditLog(Base):
    """Who did what and when: sign-ins, settings and permission changes, exports."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_created_at", "created_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    actor_email: Mapped[str] = mapped_column(String(320), default="")  # kept when the user is deleted
    action: Mapped[str] = mapped_column(String(60), index=True)  # "noun.past_verb", e.g. "inbox.created"
    target: Mapped[str] = mapped_column(String(200), default="")  # e.g. "inbox:3"
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    ip: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[Timestamp]
