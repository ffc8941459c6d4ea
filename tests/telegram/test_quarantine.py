"""Quarantined Telegram updates are re-processed after a fix: from the quarantine page, from
``helpline inbox reprocess``, through the real poll's code and the Bot API stub, on both databases."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import func, select

from inbox.config import Settings
from inbox.models import Attachment, Inbox, Message, Quarantine
from inbox.runtime import Storage
from inbox.settings_models import AuditLog
from tests.factories import make_user
from tests.telegram.botapi_stub import BotApiStub
from tests.telegram.conftest import load_update, make_telegram_inbox
from tests.web.conftest import login
from web import create_app
from web.cli_inbox import inbox_group
from workers import telegram_sync
from workers.telegram_sync import reprocess_quarantine, sync_telegram_inbox

PHOTO = b"\xff\xd8\xff\xe0\x00\x10JFIF" + b"q" * 700


def broken_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in storing: every update that reaches ``ingest`` fails (the fix is ``monkeypatch.undo``)."""

    def fail(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("a bug in storing")

    monkeypatch.setattr(telegram_sync, "ingest", fail)


def quarantine_rows(storage: Storage) -> list[tuple[int, str, bool]]:
    with storage.factory() as session:
        rows = session.scalars(select(Quarantine).order_by(Quarantine.id))
        return [(q.id, q.source_ref, q.resolved_at is not None) for q in rows]


def poisoned_inbox(storage: Storage, tg: BotApiStub, monkeypatch: pytest.MonkeyPatch) -> int:
    """An inbox whose poll quarantined a photo (storing failed) and a malformed update (it always will)."""
    with storage.factory() as session:
        inbox_id = make_telegram_inbox(session, storage, tg).id
        session.commit()
    tg.add_file(PHOTO, file_id="AgACAgIAAxkBAAIBKmdEq1_large", path="photos/file_12.jpg")
    malformed = load_update("private_text")
    del malformed["message"]["chat"]
    malformed["update_id"] = 815000050
    tg.updates.append(malformed)
    tg.push(load_update("private_photo_caption"))
    broken_store(monkeypatch)
    result = sync_telegram_inbox(storage, inbox_id)
    monkeypatch.undo()  # the fix is deployed
    assert (result.quarantined, result.stored) == (2, 0)
    return inbox_id


def test_reprocess_stores_what_now_works_with_its_media_and_keeps_the_rest(
    storage: Storage, tg: BotApiStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox_id = poisoned_inbox(storage, tg, monkeypatch)
    (malformed_id, malformed_ref, _), (photo_id, photo_ref, _) = quarantine_rows(storage)
    assert (malformed_ref, photo_ref) == ("telegram update 815000050", "telegram update 815000102")

    assert reprocess_quarantine(storage, inbox_id) == (1, 1)
    assert quarantine_rows(storage) == [(malformed_id, malformed_ref, False), (photo_id, photo_ref, True)]
    with storage.factory() as session:
        (message,) = session.scalars(select(Message).where(Message.inbox_id == inbox_id))
        assert message.body_text  # the caption
        (attachment,) = session.scalars(select(Attachment).where(Attachment.message_id == message.id))
        assert storage.blobs.get(attachment.sha256) == PHOTO  # downloaded again through getFile

    # Again: nothing left that stores, no second row for the malformed one, the photo stored once.
    assert reprocess_quarantine(storage, inbox_id) == (0, 1)
    assert len(quarantine_rows(storage)) == 2
    with storage.factory() as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 1


def test_a_still_failing_update_stays_quarantined_once(
    storage: Storage, tg: BotApiStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox_id = poisoned_inbox(storage, tg, monkeypatch)
    broken_store(monkeypatch)  # the fix did not work
    assert reprocess_quarantine(storage, inbox_id) == (0, 2)
    assert [resolved for _id, _ref, resolved in quarantine_rows(storage)] == [False, False]
    with storage.factory() as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 0


@pytest.fixture
def app(storage: Storage) -> Iterator[Flask]:
    flask_app = create_app(storage.settings)
    yield flask_app
    flask_app.extensions["helpline"].dispose()


def test_the_quarantine_page_reprocesses_one_update_and_audits_it(
    app: Flask, storage: Storage, tg: BotApiStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox_id = poisoned_inbox(storage, tg, monkeypatch)
    (malformed_id, *_), (photo_id, *_) = quarantine_rows(storage)
    with storage.factory() as session:
        admin = make_user(session, role="admin")
        agent = make_user(session, role="agent")
        session.commit()
        admin_email, agent_email = admin.email, agent.email

    agent_client = app.test_client()
    agent_token = login(agent_client, agent_email)
    refused = agent_client.post(f"/settings/quarantine/{photo_id}/reprocess", data={"csrf_token": agent_token})
    assert refused.status_code == 403

    client = app.test_client()
    token = login(client, admin_email)
    page = client.get("/settings/quarantine").get_data(as_text=True)
    assert page.count("Re-process</button>") == 2  # Telegram rows can be re-processed too
    assert client.post(f"/settings/quarantine/{photo_id}/reprocess", data={}).status_code == 400  # CSRF
    done = client.post(f"/settings/quarantine/{photo_id}/reprocess", data={"csrf_token": token},
                       follow_redirects=True).get_data(as_text=True)
    assert "Imported: the message is now in its ticket." in done
    kept = client.post(f"/settings/quarantine/{malformed_id}/reprocess", data={"csrf_token": token},
                       follow_redirects=True).get_data(as_text=True)
    assert "It still cannot be imported" in kept
    assert [resolved for _id, _ref, resolved in quarantine_rows(storage)] == [False, True]
    with storage.factory() as session:
        audits = session.scalars(select(AuditLog).where(AuditLog.action == "quarantine.reprocessed")
                                 .order_by(AuditLog.id)).all()
        assert [(a.target, a.detail["imported"]) for a in audits] == [
            (f"quarantine:{photo_id}", True), (f"quarantine:{malformed_id}", False)]
        assert session.scalar(select(func.count()).select_from(Message).where(Message.inbox_id == inbox_id)) == 1


def test_helpline_inbox_reprocess_handles_telegram_inboxes(
    settings: Settings, storage: Storage, tg: BotApiStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox_id = poisoned_inbox(storage, tg, monkeypatch)
    with storage.factory() as session:
        inbox = session.get(Inbox, inbox_id)
        assert inbox is not None
        name = inbox.name
    monkeypatch.setenv("HELPLINE_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("SECRET_KEY", settings.secret_key)
    result = CliRunner().invoke(inbox_group, ["reprocess", name])
    assert result.exit_code == 0, result.output
    assert "1 imported, 1 still quarantined" in result.output
