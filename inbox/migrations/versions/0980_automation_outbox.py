"""automation_event: the outbox of domain events waiting for their automation/webhook job

Revision ID: 0980_automation_outbox
Revises: 0970_report_summary
Create Date: 2026-11-26 04:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0980_automation_outbox"
down_revision = "0970_report_summary"
branch_labels = None
depends_on = None

UTC_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "automation_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=60), nullable=False),
        sa.Column("room", sa.String(length=200), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("sweeps", sa.Integer(), nullable=False),
        sa.Column("created_at", UTC_TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_automation_event")),
    )
    op.create_index("ix_automation_event_created_at", "automation_event", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_automation_event_created_at", table_name="automation_event")
    op.drop_table("automation_event")
