"""invitations, canned responses as rows (personal and shared), user profiles (issue 10)

Shared canned responses kept until now in the ``canned.responses`` workspace setting move into the new table
(and back on downgrade), so upgrading loses none of them.

Revision ID: 0970_people_settings
Revises: 0970_telegram_update
Create Date: 2026-11-26 01:00:00
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0970_people_settings"
down_revision = "0970_telegram_update"
branch_labels = None
depends_on = None

UTC_TS = sa.DateTime(timezone=True)
CANNED_KEY = "canned.responses"
setting = sa.table(
    "workspace_setting", sa.column("key", sa.String), sa.column("value", sa.JSON), sa.column("updated_at", UTC_TS)
)
canned = sa.table(
    "canned_response",
    sa.column("owner_id", sa.Integer),
    sa.column("title", sa.String),
    sa.column("body", sa.Text),
    sa.column("created_at", UTC_TS),
    sa.column("updated_at", UTC_TS),
)


def upgrade() -> None:
    op.create_table(
        "invite",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("role", sa.String(length=10), nullable=False),
        sa.Column("team_ids", sa.JSON(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("invited_by_id", sa.Integer(), nullable=True),
        sa.Column("expires_at", UTC_TS, nullable=False),
        sa.Column("accepted_at", UTC_TS, nullable=True),
        sa.Column("revoked_at", UTC_TS, nullable=True),
        sa.Column("sent_error", sa.Text(), nullable=True),
        sa.Column("created_at", UTC_TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["invited_by_id"], ["user.id"], name=op.f("fk_invite_invited_by_id_user"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invite")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_invite_token_hash")),
    )
    op.create_index(op.f("ix_invite_email"), "invite", ["email"])
    op.create_table(
        "canned_response",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=True),
        sa.Column("title", sa.String(length=100), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", UTC_TS, nullable=False),
        sa.Column("updated_at", UTC_TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["user.id"], name=op.f("fk_canned_response_owner_id_user"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_canned_response")),
    )
    op.create_index(op.f("ix_canned_response_owner_id"), "canned_response", ["owner_id"])
    op.create_table(
        "user_profile",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("avatar_color", sa.String(length=7), nullable=False),
        sa.Column("notify_mentions", sa.Boolean(), nullable=False),
        sa.Column("notify_assignments", sa.Boolean(), nullable=False),
        sa.Column("notify_new_tickets", sa.Boolean(), nullable=False),
        sa.Column("email_notifications", sa.Boolean(), nullable=False),
        sa.Column("extra", sa.JSON(), nullable=False),
        sa.Column("updated_at", UTC_TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user.id"], name=op.f("fk_user_profile_user_id_user"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_user_profile")),
    )
    conn = op.get_bind()
    stored = conn.execute(sa.select(setting.c.value).where(setting.c.key == CANNED_KEY)).scalar()
    if isinstance(stored, str):
        stored = json.loads(stored)
    now = dt.datetime.now(dt.UTC)
    rows: list[dict[str, Any]] = [
        {"owner_id": None, "title": str(r["title"])[:100], "body": str(r["body"]), "created_at": now, "updated_at": now}
        for r in stored or []
        if isinstance(r, dict) and r.get("title") and r.get("body")
    ]
    if rows:
        op.bulk_insert(canned, rows)
    conn.execute(sa.delete(setting).where(setting.c.key == CANNED_KEY))


def downgrade() -> None:
    conn = op.get_bind()
    shared = conn.execute(
        sa.select(canned.c.title, canned.c.body).where(canned.c.owner_id.is_(None)).order_by(sa.text("id"))
    ).all()
    if shared:
        value = [{"title": title, "body": body} for title, body in shared]
        conn.execute(sa.insert(setting).values(key=CANNED_KEY, value=value, updated_at=dt.datetime.now(dt.UTC)))
    op.drop_table("user_profile")
    op.drop_index(op.f("ix_canned_response_owner_id"), table_name="canned_response")
    op.drop_table("canned_response")
    op.drop_index(op.f("ix_invite_email"), table_name="invite")
    op.drop_table("invite")
