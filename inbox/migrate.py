"""Schema migrations with Alembic: ``helpline db upgrade`` and the tests both come through here."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


# Full-text search objects made by hand in migration 0900_search (FTS5 tables on SQLite, a GIN expression index
# on PostgreSQL). They have no model, so autogenerate and the model comparison must look past them.
SEARCH_OBJECTS = ("message_fts", "ix_message_search")


def include_object(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    """Alembic ``include_object`` hook: leave the hand-made search objects out of comparisons."""
    return not (reflected and compare_to is None and name is not None and name.startswith(SEARCH_OBJECTS))


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)
