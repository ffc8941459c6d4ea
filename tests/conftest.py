"""Fixtures: storage on SQLite and PostgreSQL (schema from Alembic), a private Redis, event recorders."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis
from sqlalchemy import text
from sqlalchemy.orm import Session

from inbox import events
from inbox.config import Settings
from inbox.migrate import upgrade
from inbox.models import Base
from inbox.runtime import Storage
from tests import services

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(autouse=True, scope="session")
def no_embedded_redis_in_the_checkout() -> Iterator[None]:
    """The suite never starts an embedded Redis in the checkout's ``data/``: it would outlive the run (a stray
    redis-server on the CI machine). Tests use the session's private Redis; code that would fall back to the
    embedded one (a process whose runtime was never told its Redis) gets an error instead."""
    from workers import embedded_redis

    original = embedded_redis.ensure_redis
    checkout = Path(__file__).resolve().parents[1]

    def guarded(settings: Settings, timeout: float = 15.0) -> str:
        folder = Path(settings.data_dir).resolve()
        if not settings.redis_url and (folder == checkout or checkout in folder.parents):
            raise RuntimeError(f"the test suite must not start an embedded Redis in {folder}")
        return original(settings, timeout)

    embedded_redis.ensure_redis = guarded  # type: ignore[assignment]
    yield
    embedded_redis.ensure_redis = original  # type: ignore[assignment]


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file per session; each test copies it (migrations run once, checked every run)."""
    path = tmp_path_factory.mktemp("sqlite-template") / "helpline.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    admin = services.ensure_postgres()
    if admin is None:
        pytest.skip("PostgreSQL is not running at 127.0.0.1:5432 and could not be started here")
    with services.private_pg_database(admin) as url:
        upgrade(url)
        yield url


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with services.private_redis(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
def redis(redis_url: str) -> Iterator[Redis]:
    """A client of the session's private Redis, emptied before and after the test."""
    conn = Redis.from_url(redis_url)
    conn.flushdb()
    yield conn
    conn.flushdb()
    conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> str:
    """Parametrises a test over both databases."""
    if request.param == "sqlite":
        target = tmp_path / "data" / "helpline.db"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(sqlite_template, target)
        return f"sqlite:///{target}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=db_url, secret_key="test-secret-key")


@pytest.fixture
def storage(settings: Settings) -> Iterator[Storage]:
    st = Storage.from_settings(settings)
    yield st
    if st.engine.dialect.name == "postgresql":
        names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        with st.engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    st.dispose()


@pytest.fixture
def session(storage: Storage) -> Iterator[Session]:
    with storage.factory() as s:
        yield s


@pytest.fixture
def published() -> Iterator[list[events.DomainEvent]]:
    """Events that left the process (after commit), in order."""
    seen: list[events.DomainEvent] = []
    events.add_publisher(seen.append)
    yield seen
    events.remove_publisher(seen.append)


@pytest.fixture
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"../shared is not beside the repo ({SHARED}); corpus tests need it")
    return SHARED
