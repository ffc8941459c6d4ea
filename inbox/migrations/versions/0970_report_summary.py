"""report summary: the samples each ticket contributes to the report figures; an SLA policy's calendar; CSAT
ratings (issue 9)

Revision ID: 0970_report_summary
Revises: 0970_people_settings
Create Date: 2026-11-26 00:50:00

Filled by ``tickets.summary`` on every commit that changes a ticket's history; existing tickets are filled by
``helpline reports rebuild`` (or ``tickets.summary.rebuild_all``), which the upgrade does not run (it may be long).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0970_report_summary"
down_revision = "0970_people_settings"
branch_labels = None
depends_on = None

UTC_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "report_sample",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("figure", sa.String(length=30), nullable=False),
        sa.Column("start_at", UTC_TS, nullable=False),
        sa.Column("end_at", UTC_TS, nullable=False),
        sa.Column("seconds", sa.Integer(), nullable=False),
        sa.Column("business_seconds", sa.Integer(), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=True),
        sa.Column("team_id", sa.Integer(), nullable=True),
        sa.Column("inbox_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("due_at", UTC_TS, nullable=True),
        sa.Column("met", sa.Boolean(), nullable=True),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["ticket.id"], name=op.f("fk_report_sample_ticket_id_ticket"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_sample")),
    )
    op.create_index("ix_report_sample_figure_end_at", "report_sample", ["figure", "end_at"])
    op.create_index("ix_report_sample_ticket_id", "report_sample", ["ticket_id"])
    op.create_table(
        "csat_rating",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("solved_at", UTC_TS, nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("created_at", UTC_TS, nullable=False),
        sa.Column("updated_at", UTC_TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["ticket.id"], name=op.f("fk_csat_rating_ticket_id_ticket"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_csat_rating")),
        sa.UniqueConstraint("ticket_id", "solved_at", name=op.f("uq_csat_rating_ticket_id_solved_at")),
    )
    with op.batch_alter_table("sla_policy") as batch:
        batch.add_column(sa.Column("calendar_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_sla_policy_calendar_id_business_calendar"),
            "business_calendar",
            ["calendar_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    with op.batch_alter_table("sla_policy") as batch:
        batch.drop_constraint(op.f("fk_sla_policy_calendar_id_business_calendar"), type_="foreignkey")
        batch.drop_column("calendar_id")
    op.drop_table("csat_rating")
    op.drop_index("ix_report_sample_ticket_id", table_name="report_sample")
    op.drop_index("ix_report_sample_figure_end_at", table_name="report_sample")
    op.drop_table("report_sample")
