"""full-text search over messages: FTS5 on SQLite, a GIN expression index on PostgreSQL

The agent workspace searches subjects and message text (web/search.py). SQLite keeps an external-content FTS5
table in step with ``message`` by triggers; PostgreSQL indexes ``to_tsvector('simple', subject || body_text)``,
the exact expression web/search.py queries, so the planner can use it. 'simple' because customers write in
every language: no stemming beats wrong stemming.

Revision ID: 0900_search
Revises: 0001
Create Date: 2026-11-25 22:05:00
"""

from __future__ import annotations

from alembic import op

revision = "0900_search"
down_revision = "0001"
branch_labels = None
depends_on = None

PG_EXPRESSION = "to_tsvector('simple', coalesce(subject, '') || ' ' || coalesce(body_text, ''))"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"CREATE INDEX ix_message_search ON message USING gin (({PG_EXPRESSION}))")
        return
    op.execute(
        "CREATE VIRTUAL TABLE message_fts USING fts5(subject, body_text, content='message', content_rowid='id', "
        "tokenize='unicode61 remove_diacritics 2')"
    )
    op.execute(
        "CREATE TRIGGER message_fts_insert AFTER INSERT ON message BEGIN "
        "INSERT INTO message_fts(rowid, subject, body_text) VALUES (new.id, new.subject, new.body_text); END"
    )
    op.execute(
        "CREATE TRIGGER message_fts_delete AFTER DELETE ON message BEGIN "
        "INSERT INTO message_fts(message_fts, rowid, subject, body_text) "
        "VALUES ('delete', old.id, old.subject, old.body_text); END"
    )
    op.execute(
        "CREATE TRIGGER message_fts_update AFTER UPDATE OF subject, body_text ON message BEGIN "
        "INSERT INTO message_fts(message_fts, rowid, subject, body_text) "
        "VALUES ('delete', old.id, old.subject, old.body_text); "
        "INSERT INTO message_fts(rowid, subject, body_text) VALUES (new.id, new.subject, new.body_text); END"
    )
    op.execute("INSERT INTO message_fts(message_fts) VALUES ('rebuild')")  # index what is already there


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_message_search")
        return
    for trigger in ("message_fts_insert", "message_fts_delete", "message_fts_update"):
        op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    op.execute("DROP TABLE IF EXISTS message_fts")
