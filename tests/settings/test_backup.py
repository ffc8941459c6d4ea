"""Backup and restore: a snapshot taken while messages keep arriving comes back whole in a fresh data folder."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from inbox import backup as bk
from inbox.config import Settings
from inbox.crypto import decrypt_json, encrypt_json
from inbox.ingest import InboundAttachment, ingest
from inbox.migrate import upgrade
from inbox.models import Attachment, Inbox, Message, Ticket
from inbox.runtime import Storage
from tests import factories, services
from web.cli_backup import BACKUP_COMMANDS


def _ingest_one(storage: Storage, inbox_id: int, n: int) -> int:
    with storage.factory() as session:
        data = f"attachment {n} ".encode() * 20
        message = ingest(
            session,
            inbox_id,
            factories.inbound(attachments=(InboundAttachment(f"file{n}.txt", "text/plain", data),)),
        )
        session.commit()
        assert message is not None
        return message.id


class Arrivals:
    """A thread that keeps ingesting messages (as a mail worker would) until stopped."""

    def __init__(self, storage: Storage, inbox_id: int) -> None:
        self.storage, self.inbox_id = storage, inbox_id
        self.ids: list[int] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 1000
        while not self._stop.is_set():
            try:
                self.ids.append(_ingest_one(self.storage, self.inbox_id, n))
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                self.errors.append(exc)
                return
            n += 1
            time.sleep(0.005)

    def __enter__(self) -> Arrivals:
        self._thread.start()
        while not self.ids and not self.errors:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


@pytest.fixture
def fresh_target(tmp_path: Path, db_url: str) -> Iterator[Settings]:
    """An installed but empty Helpline: a new data folder and a new, migrated database of the same kind."""
    data_dir = tmp_path / "fresh"
    if db_url.startswith("sqlite"):
        data_dir.mkdir()
        upgrade(f"sqlite:///{data_dir / 'helpline.db'}")
        yield Settings(data_dir=data_dir)
        return
    admin = services.ensure_postgres()
    assert admin is not None
    with services.private_pg_database(admin) as url:
        upgrade(url)
        yield Settings(data_dir=data_dir, database_url=url)


def test_round_trip_while_messages_arrive(storage: Storage, tmp_path: Path, fresh_target: Settings) -> None:
    with storage.factory() as session:
        inbox = factories.make_inbox(session)
        inbox.secrets = encrypt_json(storage.settings.secret_key, {"password": "hunter2"})
        session.commit()
        inbox_id = inbox.id
    before = [_ingest_one(storage, inbox_id, n) for n in range(5)]
    archive = tmp_path / "backups" / "helpline.tar.gz"
    with Arrivals(storage, inbox_id) as arrivals:
        during = len(arrivals.ids)
        report = bk.backup(storage.settings, archive)
        while len(arrivals.ids) < during + 3 and not arrivals.errors:
            time.sleep(0.01)  # the worker went on while (and after) the snapshot was taken
    assert arrivals.errors == []
    assert archive.exists() and archive.stat().st_mode & 0o077 == 0
    assert any("secret key" in w for w in report.warnings)
    assert len(list(storage.settings.blob_dir.rglob("*"))) > 0  # copied, never moved

    restored = bk.restore(fresh_target, archive)

    target = Storage.from_settings(fresh_target)  # reads the restored secret_key file
    try:
        assert target.settings.secret_key == storage.settings.secret_key
        with target.factory() as session:
            ids = set(session.scalars(select(Message.id)))
            assert set(before) | set(arrivals.ids[:during]) <= ids  # everything committed before the backup
            assert ids <= set(before) | set(arrivals.ids)
            for message in session.scalars(select(Message)):
                assert session.get(Ticket, message.ticket_id) is not None
            attachments = list(session.scalars(select(Attachment)))
            assert len(attachments) == len(ids)
            for att in attachments:
                assert att.sha256 is not None
                assert target.blobs.get(att.sha256).startswith(b"attachment ")
            restored_inbox = session.get(Inbox, inbox_id)
            assert restored_inbox is not None
            assert decrypt_json(target.settings.secret_key, restored_inbox.secrets) == {"password": "hunter2"}
        assert restored.counts["message"] == len(ids)
        # The live install keeps working and a second restore into the now-full install is refused.
        _ingest_one(storage, inbox_id, 9999)
        with pytest.raises(bk.BackupError, match="empty install"):
            bk.restore(fresh_target, archive)
    finally:
        target.dispose()


def test_restore_refuses_a_non_empty_install(storage: Storage, tmp_path: Path) -> None:
    with storage.factory() as session:
        inbox_id = factories.make_inbox(session).id
        session.commit()
    _ingest_one(storage, inbox_id, 1)
    archive = tmp_path / "b.tar.gz"
    bk.backup(storage.settings, archive)
    with pytest.raises(bk.BackupError, match="has .*message rows"):
        bk.restore(storage.settings, archive)
    with pytest.raises(bk.BackupError, match="exists already"):
        bk.backup(storage.settings, archive)


def test_newer_server_than_pg_dump_is_a_clear_error() -> None:
    with pytest.raises(bk.BackupError, match="server is version 17 but pg_dump is version 15"):
        bk.check_versions("pg_dump", 15, 17)
    bk.check_versions("pg_dump", 16, 15)  # a newer pg_dump dumps an older server
    assert bk.client_major("pg_dump") >= 10


def test_not_a_backup(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tar")
    with pytest.raises(bk.BackupError, match="not a Helpline backup"):
        bk.read_manifest(junk)


def test_cli_backup_and_restore(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "source"
    monkeypatch.setenv("HELPLINE_DATA_DIR", str(source))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("SECRET_KEY", raising=False)
    storage = Storage.from_settings(Settings.from_env())
    upgrade(storage.settings.sqlalchemy_url)
    with storage.factory() as session:
        inbox_id = factories.make_inbox(session).id
        session.commit()
    _ingest_one(storage, inbox_id, 1)
    storage.dispose()
    commands = {c.name: c for c in BACKUP_COMMANDS}
    runner = CliRunner()
    archive = tmp_path / "out.tar.gz"
    result = runner.invoke(commands["backup"], [str(archive)])
    assert result.exit_code == 0, result.output
    assert "1 message" in result.output and "secret key" in result.output

    monkeypatch.setenv("HELPLINE_DATA_DIR", str(tmp_path / "fresh"))
    result = runner.invoke(commands["restore"], [str(archive)])
    assert result.exit_code == 0, result.output
    assert "1 message" in result.output
    result = runner.invoke(commands["restore"], [str(archive)])
    assert result.exit_code != 0 and "empty install" in result.output
