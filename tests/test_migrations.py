"""Migrations run up from empty on both databases, match the models, and go down again."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from inbox.db import make_engine
from inbox.migrate import downgrade, include_object, upgrade
from inbox.models import Base
from tests import services


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path):  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    admin = services.ensure_postgres()
    if admin is None:
        pytest.skip("PostgreSQL is not running at 127.0.0.1:5432 and could not be started here")
    with services.private_pg_database(admin) as url:
        yield url


def test_upgrade_from_empty_matches_models_and_downgrades(empty_url: str) -> None:
    upgrade(empty_url)
    engine = make_engine(empty_url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_object": include_object})  # skips search objects
        diff = compare_metadata(context, Base.metadata)
    assert diff == [], f"models and migrations disagree: {diff}"
    tables = set(inspect(engine).get_table_names())
    assert {"ticket", "message", "contact", "identity", "inbox", "user", "ticket_event"} <= tables
    uniques = {tuple(u["column_names"]) for u in inspect(engine).get_unique_constraints("message")}
    assert ("inbox_id", "external_id") in uniques
    engine.dispose()
    downgrade(empty_url, "base")
    engine = make_engine(empty_url)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()
