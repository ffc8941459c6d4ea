"""report summary: the stretches during which each ticket was open, so the backlog is one indexed query (issue 9)

Revision ID: 0980_report_open
Revises: 0980_automation_outbox
Create Date: 2026-11-26 04:00:00

The new table is filled from the tickets' history by ``tickets.summary`` like ``report_sample``. A migration never
imports app code, so it empties ``report_sample`` instead: ``helpline db upgrade`` then finds the summary empty and
refills both tables from the history (as ``helpline reports rebuild`` does), in the same release step.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0980_report_open"
down_revision = "0980_automation_outbox"
branch_labels = None
depends_on = None

UTC_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "report_open",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("created_at", UTC_TS, nullable=False),
        sa.Column("from_at", UTC_TS, nullable=False),
        sa.Column("until_at", UTC_TS, nullable=True),
        sa.Column("agent_id", sa.Integer(), nullable=True),
        sa.Column("team_id", sa.Integer(), nullable=True),
        sa.Column("inbox_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["ticket.id"], name=op.f("fk_report_open_ticket_id_ticket"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_open")),
    )
    op.create_index("ix_report_open_until_at_from_at", "report_open", ["until_at", "from_at"])
    op.create_index("ix_report_open_ticket_id", "report_open", ["ticket_id"])
    op.execute("DELETE FROM report_sample")  # the summary lacks the backlog: `helpline db upgrade` refills it


def downgrade() -> None:
    op.drop_index("ix_report_open_ticket_id", table_name="report_open")
    op.drop_index("ix_report_open_until_at_from_at", table_name="report_open")
    op.drop_table("report_open")
