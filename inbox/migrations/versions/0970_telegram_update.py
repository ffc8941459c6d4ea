"""telegram_update: webhook updates stored before they are processed (issue 6)

Revision ID: 0970_telegram_update
Revises: 0970_automation
Create Date: 2026-11-26 00:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0970_telegram_update"
down_revision = "0970_automation"
branch_labels = None
depends_on = None

UTC_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "telegram_update",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("inbox_id", sa.Integer(), nullable=False),
        sa.Column("update_id", sa.BigInteger(), nullable=False),
        sa.Column("raw", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=40), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("received_at", UTC_TS, nullable=False),
        sa.Column("processed_at", UTC_TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["inbox_id"], ["inbox.id"], name=op.f("fk_telegram_update_inbox_id_inbox"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_telegram_update")),
        sa.UniqueConstraint("inbox_id", "update_id", name=op.f("uq_telegram_update_inbox_id_update_id")),
    )
    op.create_index("ix_telegram_update_state_received_at", "telegram_update", ["state", "received_at"])


def downgrade() -> None:
    op.drop_index("ix_telegram_update_state_received_at", table_name="telegram_update")
    op.drop_table("telegram_update")
