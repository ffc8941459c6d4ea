"""Backup and restore of a whole install: database, blob store and secret key, in one tar archive.

The snapshot is consistent while Helpline runs. SQLite is copied with the online backup API
(https://www.sqlite.org/backup.html), PostgreSQL with ``pg_dump --format=custom`` (one repeatable-read snapshot).
The database goes first and the blob store second: blobs are content-addressed, written before the row that names
them commits, and never deleted, so every blob the database snapshot refers to exists by the time we copy the folder.
Blobs are copied, never moved. The archive holds the secret key (without it the inbox secrets cannot be decrypted),
so it must be kept as safe as the install itself.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import os
import re
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, inspect, select, text
from sqlalchemy.engine import URL, make_url

from inbox.config import Settings
from inbox.db import make_engine
from inbox.errors import HelplineError
from inbox.migrate import upgrade

log = logging.getLogger(__name__)

FORMAT = "helpline-backup/1"
MANIFEST = "manifest.json"
SQLITE_MEMBER = "database/helpline.db"
PG_MEMBER = "database/helpline.pgdump"
SECRET_MEMBER = "secret_key"
BLOB_PREFIX = "blobs/"
# Tables whose rows make an install "not empty" (restore refuses to overwrite them).
DATA_TABLES = ("user", "inbox", "contact", "ticket", "message")
_BLOB_NAME = re.compile(r"^[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{64}$")


class BackupError(HelplineError):
    """A backup or restore cannot be done; the message says why in plain words."""


@dataclass
class BackupReport:
    """What a backup wrote (or a restore brought back)."""

    path: Path
    dialect: str
    revision: str | None
    blobs: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    has_secret_key: bool = False
    warnings: list[str] = field(default_factory=list)


Warn = Callable[[str], None]


# -- backup -------------------------------------------------------------------------------------------------------


def backup(settings: Settings, path: Path) -> BackupReport:
    """Write a consistent snapshot of the install described by ``settings`` to the tar archive ``path``."""
    settings = settings.with_secret()
    url = make_url(settings.sqlalchemy_url)
    dialect = url.get_backend_name()
    if dialect not in ("sqlite", "postgresql"):
        raise BackupError(f"backups support SQLite and PostgreSQL, not {dialect}")
    path = path.resolve()
    if path.exists():
        raise BackupError(f"{path} exists already; choose a new file name (a backup never overwrites)")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="helpline-backup-") as tmp:
        work = Path(tmp)
        if dialect == "sqlite":
            db_file = work / "helpline.db"
            _sqlite_snapshot(_sqlite_path(url), db_file)
            revision, counts = _sqlite_facts(db_file)
            member = SQLITE_MEMBER
        else:
            db_file = work / "helpline.pgdump"
            _pg_dump(url, db_file)
            revision, counts = _database_facts(settings.sqlalchemy_url)  # close to the dump; for the report only
            member = PG_MEMBER
        partial = path.with_name(path.name + ".partial")
        report = BackupReport(path=path, dialect=dialect, revision=revision, counts=counts)
        try:
            with tarfile.open(partial, "w:gz", compresslevel=3) as tar:
                tar.add(db_file, arcname=member)
                report.blobs = _add_blobs(tar, settings.blob_dir)  # after the database: see the module docstring
                _add_bytes(tar, SECRET_MEMBER, settings.secret_key.encode(), mode=0o600)
                report.has_secret_key = True
                manifest = {
                    "format": FORMAT,
                    "created_at": dt.datetime.now(dt.UTC).isoformat(),
                    "dialect": dialect,
                    "revision": revision,
                    "database": member,
                    "blobs": report.blobs,
                    "counts": counts,
                }
                _add_bytes(tar, MANIFEST, json.dumps(manifest, indent=2).encode())
            os.chmod(partial, 0o600)  # it holds the secret key
            os.replace(partial, path)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    report.warnings.append(
        f"{path} holds the secret key that decrypts the inbox passwords and tokens: store it as safely as the server"
    )
    return report


def _sqlite_path(url: URL) -> Path:
    if not url.database or url.database == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up")
    return Path(url.database)


def _sqlite_snapshot(source: Path, target: Path) -> None:
    if not source.exists():
        raise BackupError(f"no database at {source}: nothing to back up")
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    dst = sqlite3.connect(target)
    try:
        src.execute("PRAGMA busy_timeout=30000")
        # One step (pages=-1) copies the whole file under one read lock: a consistent snapshot even while writers
        # commit (WAL lets them go on meanwhile).
        src.backup(dst, pages=-1)
        dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file in the archive
    finally:
        dst.close()
        src.close()


def _sqlite_facts(db_file: Path) -> tuple[str | None, dict[str, int]]:
    return _database_facts(f"sqlite:///{db_file}")


def _database_facts(sqlalchemy_url: str) -> tuple[str | None, dict[str, int]]:
    """The Alembic revision and the row counts of the main tables."""
    engine = make_engine(sqlalchemy_url)
    try:
        names = set(inspect(engine).get_table_names())
        counts: dict[str, int] = {}
        revision = None
        with engine.connect() as conn:
            if "alembic_version" in names:
                revision = conn.scalar(text("SELECT version_num FROM alembic_version"))
            for table in (*DATA_TABLES, "attachment"):
                if table in names:
                    counts[table] = int(conn.scalar(text(f'SELECT count(*) FROM "{table}"')) or 0)
        return revision, counts
    finally:
        engine.dispose()


def _add_blobs(tar: tarfile.TarFile, blob_dir: Path) -> int:
    if not blob_dir.is_dir():
        return 0
    count = 0
    for file in sorted(blob_dir.rglob("*")):
        rel = file.relative_to(blob_dir).as_posix()
        if not file.is_file() or not _BLOB_NAME.match(rel):
            continue  # temporary ".tmp-" files of a write in progress, stray files
        tar.add(file, arcname=BLOB_PREFIX + rel)
        count += 1
    return count


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, *, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = int(dt.datetime.now(dt.UTC).timestamp())
    tar.addfile(info, io.BytesIO(data))


# -- PostgreSQL tools ---------------------------------------------------------------------------------------------


def _libpq(url: URL) -> tuple[list[str], dict[str, str]]:
    """Command-line connection options and environment for pg_dump/pg_restore (the password never on argv)."""
    args = ["--no-password"]
    if url.host:
        args += ["--host", url.host]
    if url.port:
        args += ["--port", str(url.port)]
    if url.username:
        args += ["--username", url.username]
    if not url.database:
        raise BackupError("the DATABASE_URL names no database")
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    return args, env


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} is not installed; install the PostgreSQL client tools (postgresql-client)")
    return found


def _major(version: str) -> int:
    match = re.search(r"(\d+)(?:\.\d+)?", version)
    if match is None:
        raise BackupError(f"cannot read a version number from {version!r}")
    return int(match.group(1))


def client_major(tool: str) -> int:
    out = subprocess.run([_tool(tool), "--version"], capture_output=True, text=True, check=True, timeout=30)
    # "pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)": the first number after the program's name
    return _major(out.stdout.split(")", 1)[-1] if "(PostgreSQL)" in out.stdout else out.stdout)


def server_major(sqlalchemy_url: str) -> int:
    engine = make_engine(sqlalchemy_url)
    try:
        with engine.connect() as conn:
            return int(conn.scalar(text("SHOW server_version_num")) or 0) // 10000
    finally:
        engine.dispose()


def check_versions(tool: str, client: int, server: int) -> None:
    """pg_dump cannot dump a newer server; say so plainly instead of passing on its message."""
    if tool == "pg_dump" and server > client:
        raise BackupError(
            f"the PostgreSQL server is version {server} but pg_dump is version {client}: pg_dump must be at least "
            f"as new as the server. Install postgresql-client-{server} (or put its bin folder first on PATH)."
        )


def _run(cmd: list[str], env: dict[str, str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        detail = proc.stderr.strip() or proc.stdout.strip()
        if "unsupported version" in detail:
            raise BackupError(
                f"{what} failed: the backup was written by a newer pg_dump than this {what}; install the PostgreSQL "
                f"client tools of at least the backup's version: {detail}"
            )
        if "version mismatch" in detail:
            raise BackupError(f"{what} failed: the client tools and the server are different major versions: {detail}")
        raise BackupError(f"{what} failed: {detail}")


def _pg_dump(url: URL, target: Path) -> None:
    check_versions("pg_dump", client_major("pg_dump"), server_major(url.render_as_string(hide_password=False)))
    args, env = _libpq(url)
    cmd = [_tool("pg_dump"), *args, "--format=custom", "--no-owner", "--no-privileges", "--file", str(target)]
    _run([*cmd, str(url.database)], env, "pg_dump")


def _pg_restore(url: URL, dump: Path) -> None:
    args, env = _libpq(url)
    cmd = [_tool("pg_restore"), *args, "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction"]
    _run([*cmd, "--dbname", str(url.database), str(dump)], env, "pg_restore")


# -- restore ------------------------------------------------------------------------------------------------------


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest of a backup archive; raises BackupError when ``path`` is not one."""
    try:
        with tarfile.open(path, "r:*") as tar:
            member = tar.extractfile(MANIFEST)
            if member is None:
                raise KeyError(MANIFEST)
            manifest: dict[str, Any] = json.loads(member.read())
    except (OSError, tarfile.TarError, KeyError, ValueError) as exc:
        raise BackupError(f"{path} is not a Helpline backup ({exc})") from exc
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{path} has an unknown backup format {manifest.get('format')!r}")
    return manifest


def install_contents(settings: Settings) -> list[str]:
    """What makes this install non-empty (rows in the main tables, files in the blob store); [] when empty."""
    found: list[str] = []
    url = make_url(settings.sqlalchemy_url)
    if url.get_backend_name() != "sqlite" or _sqlite_path(url).exists():
        _revision, counts = _database_facts(settings.sqlalchemy_url)
        found += [f"{n} {table} rows" for table, n in counts.items() if n and table in DATA_TABLES]
    if settings.blob_dir.is_dir() and any(p.is_file() for p in settings.blob_dir.rglob("*")):
        found.append(f"files in {settings.blob_dir}")
    return found


def restore(settings: Settings, path: Path, *, warn: Warn = log.warning) -> BackupReport:
    """Bring the archive ``path`` back into the empty install described by ``settings``.

    ``settings`` is taken as read from the environment (before ``with_secret``): an explicit SECRET_KEY that
    differs from the archived one is reported, since the restored inbox secrets would not decrypt with it.
    """
    manifest = read_manifest(path)
    url = make_url(settings.sqlalchemy_url)
    dialect = url.get_backend_name()
    if manifest["dialect"] != dialect:
        raise BackupError(
            f"the backup is of a {manifest['dialect']} database but this install uses {dialect}; "
            "restore it into the same kind of database"
        )
    contents = install_contents(settings)
    if contents:
        raise BackupError("restore needs an empty install, but this one has " + ", ".join(contents))
    report = BackupReport(path=path, dialect=dialect, revision=manifest.get("revision"))
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="helpline-restore-", dir=settings.data_dir) as tmp,
        tarfile.open(path, "r:*") as tar,
    ):
        work = Path(tmp)
        db_member = str(manifest["database"])
        tar.extract(db_member, work, filter="data")
        if dialect == "sqlite":
            _restore_sqlite(work / db_member, _sqlite_path(url))
        else:
            _drop_empty_schema(settings.sqlalchemy_url)
            _pg_restore(url, work / db_member)
        report.blobs = _restore_blobs(tar, settings.blob_dir)
        report.has_secret_key = _restore_secret(tar, settings, report, warn)
    upgrade(settings.sqlalchemy_url)  # a backup of an older version comes up to this version's schema
    report.revision, report.counts = _database_facts(settings.sqlalchemy_url)
    return report


def _restore_sqlite(snapshot: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)  # an empty install's leftovers must not replay
    tmp = target.with_name(target.name + ".restoring")
    shutil.copyfile(snapshot, tmp)
    os.replace(tmp, target)


def _drop_empty_schema(sqlalchemy_url: str) -> None:
    """Drop the (checked empty) tables of a freshly migrated database, so pg_restore recreates them as dumped."""
    engine = make_engine(sqlalchemy_url)
    try:
        meta = MetaData()
        meta.reflect(engine)
        with engine.begin() as conn:
            for table in (*DATA_TABLES,):
                if table in meta.tables and conn.scalar(select(meta.tables[table].c[0]).limit(1)) is not None:
                    raise BackupError(f"restore needs an empty install, but the {table} table has rows")
            meta.drop_all(conn)
    finally:
        engine.dispose()


def _restore_blobs(tar: tarfile.TarFile, blob_dir: Path) -> int:
    count = 0
    for member in tar:
        if not member.name.startswith(BLOB_PREFIX) or not member.isfile():
            continue
        rel = member.name[len(BLOB_PREFIX) :]
        if not _BLOB_NAME.match(rel):
            continue  # never write outside the blob store, whatever the archive says
        target = blob_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        src = tar.extractfile(member)
        if src is None:
            continue
        tmp = target.with_name(".tmp-" + target.name)
        with src, open(tmp, "wb") as out:
            shutil.copyfileobj(src, out)
        os.replace(tmp, target)
        count += 1
    return count


def _restore_secret(tar: tarfile.TarFile, settings: Settings, report: BackupReport, warn: Warn) -> bool:
    try:
        member = tar.extractfile(SECRET_MEMBER)
    except KeyError:
        member = None
    if member is None:
        message = "the backup holds no secret key: inbox passwords and tokens must be entered again"
        report.warnings.append(message)
        warn(message)
        return False
    key = member.read().decode().strip()
    if settings.secret_key:
        if settings.secret_key != key:
            message = (
                "SECRET_KEY is set and differs from the key in the backup: stored inbox passwords and tokens "
                "will not decrypt. Set SECRET_KEY to the backed-up key (written to secret_key.restored)."
            )
            _write_key(settings.data_dir / "secret_key.restored", key)
            report.warnings.append(message)
            warn(message)
        return True
    _write_key(settings.data_dir / "secret_key", key)
    return True


def _write_key(target: Path, key: str) -> None:
    tmp = target.with_name(target.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    os.replace(tmp, target)
