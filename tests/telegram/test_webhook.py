"""The Telegram webhook endpoint: recorded Update JSON POSTed to the real app, stored, then processed by RQ workers.

The app answers after committing the raw update; a worker (here an in-process ``SimpleWorker`` on the ``inbound``
queue, and in the last test a real ``helpline worker`` process) stores the message.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from rq import Queue, SimpleWorker
from sqlalchemy import func, select

from inbox.config import Settings
from inbox.models import Attachment, Message, TelegramUpdate
from inbox.runtime import Storage
from tests import services
from tests.telegram.botapi_stub import BotApiStub
from tests.telegram.conftest import load_update, make_telegram_inbox
from tests.workers.conftest import Workers, process_env
from tests.workers.test_processes import wait_until
from web import create_app
from workers import runtime, telegram_updates

SECRET = "wh-7Kq2-secret-token_for-tests"
HEADER = "X-Telegram-Bot-Api-Secret-Token"
PHOTO_ID = "AgACAgIAAxkBAAIBKmdEq1_large"


@pytest.fixture
def app(settings: Settings, storage: Storage, redis: Redis, redis_url: str) -> Iterator[Flask]:
    flask_app = create_app(settings, redis_url=redis_url)  # also points workers.runtime at this database and Redis
    yield flask_app
    runtime.reset()
    flask_app.extensions["helpline"].dispose()


def add_hook(storage: Storage, tg: BotApiStub) -> tuple[int, str]:
    with storage.factory() as session:
        inbox = make_telegram_inbox(session, storage, tg, mode="webhook", webhook_secret=SECRET)
        inbox.public_key = "tg-key-1"
        session.commit()
        return inbox.id, "/webhooks/telegram/tg-key-1"


@pytest.fixture
def hook(app: Flask, tg: BotApiStub) -> str:
    """The webhook path of a webhook-mode Telegram inbox."""
    return add_hook(app.extensions["helpline"], tg)[1]


def post(client: FlaskClient, path: str, update: Any, secret: str | None = SECRET) -> Any:
    headers = {HEADER: secret} if secret is not None else {}
    body = update if isinstance(update, str | bytes) else json.dumps(update)
    return client.post(path, data=body, headers=headers, content_type="application/json")


def count(app: Flask, model: type) -> int:
    with app.extensions["helpline"].factory() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def rows(app: Flask) -> list[TelegramUpdate]:
    with app.extensions["helpline"].factory() as session:
        return list(session.scalars(select(TelegramUpdate).order_by(TelegramUpdate.id)))


def work(redis: Redis) -> None:
    """What `helpline worker` does with the inbound queue, in this process, until it is empty."""
    SimpleWorker([Queue(runtime.INBOUND, connection=redis)], connection=redis).work(burst=True)


def test_an_update_is_kept_answered_200_and_stored_by_a_worker(app: Flask, hook: str, tg: BotApiStub,
                                                                redis: Redis) -> None:
    tg.add_file(b"\xff\xd8photo", file_id=PHOTO_ID, path="photos/file_3.jpg")
    response = post(app.test_client(), hook, load_update("private_photo_caption"))
    assert response.status_code == 200 and response.json == {"ok": True, "queued": True}
    # The request did no work beyond keeping the update: no download, no message yet, one job waiting.
    assert tg.calls == [] and count(app, Message) == 0
    (row,) = rows(app)
    assert (row.state, row.update_id, row.raw) == ("pending", 815000102, load_update("private_photo_caption"))
    assert Queue(runtime.INBOUND, connection=redis).count == 1
    work(redis)
    (row,) = rows(app)
    assert (row.state, row.outcome, row.processed_at is not None) == ("done", "stored", True)
    assert count(app, Message) == 1 and count(app, Attachment) == 1
    assert tg.methods() == ["getFile"]


@pytest.mark.parametrize("secret", [None, "", "wrong", SECRET[:-1], SECRET + "x"])
def test_a_wrong_or_missing_secret_is_refused_and_nothing_kept(app: Flask, hook: str, secret: str | None,
                                                               redis: Redis) -> None:
    response = post(app.test_client(), hook, load_update("private_text"), secret=secret)
    assert response.status_code == 403
    assert count(app, TelegramUpdate) == 0 and count(app, Message) == 0
    assert Queue(runtime.INBOUND, connection=redis).count == 0


def test_an_unknown_inbox_key_is_404(app: Flask, hook: str) -> None:
    assert post(app.test_client(), "/webhooks/telegram/nope", load_update("private_text")).status_code == 404


@pytest.mark.parametrize("body", ["{not json", "[1, 2]", '{"message": {}}', "", '{"update_id": "7"}',
                                  '{"update_id": true}', '{"update_id": -1}', '{"update_id": 99999999999999999999}'])
def test_malformed_json_is_400_and_nothing_breaks(app: Flask, hook: str, body: str, redis: Redis) -> None:
    client = app.test_client()
    assert post(client, hook, body).status_code == 400
    assert count(app, TelegramUpdate) == 0
    assert post(client, hook, load_update("private_text")).status_code == 200
    work(redis)
    assert count(app, Message) == 1


def test_an_oversized_body_is_refused(app: Flask, hook: str) -> None:
    update = load_update("private_text")
    update["message"]["text"] = "x" * (telegram_updates_max() + 1)
    assert post(app.test_client(), hook, update).status_code == 413
    assert count(app, TelegramUpdate) == 0


def telegram_updates_max() -> int:
    from web.webhook_views import MAX_UPDATE_BYTES

    return MAX_UPDATE_BYTES


def test_a_duplicate_update_id_is_stored_once(app: Flask, hook: str, redis: Redis) -> None:
    client = app.test_client()
    first = post(client, hook, load_update("private_text"))
    again = post(client, hook, load_update("private_text"))  # Telegram redelivers when it missed our 200
    assert (first.json["queued"], again.json["queued"]) == (True, False)
    assert count(app, TelegramUpdate) == 1 and Queue(runtime.INBOUND, connection=redis).count == 1
    work(redis)
    late = post(client, hook, load_update("private_text"))  # and once more, after it was processed
    assert late.status_code == 200 and late.json["queued"] is False
    work(redis)
    assert count(app, Message) == 1 and count(app, TelegramUpdate) == 1


def test_a_second_job_for_one_update_stores_it_once(app: Flask, hook: str, redis: Redis) -> None:
    post(app.test_client(), hook, load_update("private_text"))
    telegram_updates.enqueue_update(rows(app)[0].inbox_id, load_update("private_text"))  # as a sweep racing it
    work(redis)
    assert count(app, Message) == 1
    assert [r.outcome for r in rows(app)] == ["stored"]


def test_media_edits_and_unknown_kinds_through_the_webhook(app: Flask, hook: str, tg: BotApiStub,
                                                           redis: Redis) -> None:
    tg.add_file(b"\xff\xd8photo", file_id=PHOTO_ID, path="photos/file_3.jpg")
    client = app.test_client()
    for name in ("private_text", "private_photo_caption", "edited_message", "unknown_kind", "callback_query"):
        assert post(client, hook, load_update(name)).status_code == 200
        work(redis)  # one at a time: the edit must find its original
    assert [r.outcome for r in rows(app)] == ["stored", "stored", "edited", "unknown", "ignored"]
    with app.extensions["helpline"].factory() as session:
        att = session.scalars(select(Attachment)).one()
        assert app.extensions["helpline"].blobs.get(att.sha256) == b"\xff\xd8photo"
        first = session.scalars(select(Message).order_by(Message.id)).first()
        assert first is not None and "#10443" in first.body_text and len(first.meta["edits"]) == 1


def test_a_failed_download_is_retried_and_finally_given_up(app: Flask, hook: str, tg: BotApiStub,
                                                           redis: Redis) -> None:
    tg.add_file(b"\xff\xd8photo", file_id=PHOTO_ID, path="photos/file_3.jpg")
    tg.fail("getFile", 502)
    assert post(app.test_client(), hook, load_update("private_photo_caption")).status_code == 200
    work(redis)
    (row,) = rows(app)
    assert (row.state, row.attempts) == ("pending", 1) and "unreachable" in (row.error or "")
    assert count(app, Message) == 0
    job = telegram_updates.job_id(row.inbox_id, row.update_id)
    assert Queue(runtime.INBOUND, connection=redis).scheduled_job_registry.get_job_ids() == [job]  # RQ retries it
    # The retry (moved to the queue by a worker's scheduler when due) succeeds.
    telegram_updates.process_update(runtime.storage(), row.inbox_id, row.raw)
    assert count(app, Attachment) == 1 and rows(app)[0].state == "done"

    # A file Telegram never serves: after GIVE_UP_AFTER tries the message is stored, the file listed as missing.
    update = load_update("private_photo_caption") | {"update_id": 815000300}
    update["message"]["message_id"] = 77
    post(app.test_client(), hook, update)
    tg.fail("getFile", 502, times=telegram_updates.GIVE_UP_AFTER)
    for _ in range(telegram_updates.GIVE_UP_AFTER - 1):
        with pytest.raises(telegram_updates.ChannelError):
            telegram_updates.process_update(runtime.storage(), row.inbox_id, update)
    assert telegram_updates.process_update(runtime.storage(), row.inbox_id, update) == "stored"
    with app.extensions["helpline"].factory() as session:
        missing = session.scalars(select(Attachment).where(Attachment.sha256.is_(None))).one()
        assert missing.skipped_reason is not None and "kept failing" in missing.skipped_reason


def test_with_redis_down_the_update_waits_for_the_sweeper(settings: Settings, storage: Storage, tg: BotApiStub,
                                                          redis: Redis, redis_url: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    dead = services.free_port()
    down = create_app(settings, redis_url=f"redis://127.0.0.1:{dead}/0")
    try:
        inbox_id, path = add_hook(storage, tg)
        response = post(down.test_client(), path, load_update("private_text"))
        assert response.status_code == 200 and response.json["queued"] is True  # Telegram must not hold it
    finally:
        down.extensions["helpline"].dispose()
    runtime.configure(settings, redis_url)  # Redis is back
    try:
        monkeypatch.setattr(telegram_updates, "PENDING_GRACE", telegram_updates.dt.timedelta(0))
        assert telegram_updates.sweep_telegram_updates() == 1
        assert telegram_updates.sweep_telegram_updates() == 0  # its job is queued now: not twice
        work(redis)
        with storage.factory() as session:
            assert session.scalars(select(Message.external_id)).all() == ["5550192834:41"]
        # Processed rows are forgotten after KEEP_DONE (Telegram stopped redelivering long before).
        later = telegram_updates.utcnow() + telegram_updates.KEEP_DONE + telegram_updates.dt.timedelta(minutes=1)
        assert telegram_updates.sweep_telegram_updates(later) == 0
        with storage.factory() as session:
            assert session.scalar(select(func.count()).select_from(TelegramUpdate)) == 0
    finally:
        runtime.reset()


# --- a real worker process -------------------------------------------------------------------------------------------


@pytest.fixture
def file_app(tmp_path: Path, sqlite_template: Path, redis: Redis, redis_url: str) -> Iterator[Flask]:
    """The app on a SQLite file that a worker subprocess opens too."""
    target = tmp_path / "data" / "helpline.db"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(sqlite_template, target)
    settings = Settings(data_dir=tmp_path / "data", database_url=f"sqlite:///{target}", secret_key="test-secret-key")
    flask_app = create_app(settings, redis_url=redis_url)
    yield flask_app
    runtime.reset()
    flask_app.extensions["helpline"].dispose()


@pytest.fixture
def workers_factory(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], Workers]]:
    made: list[Workers] = []

    def make(env: dict[str, str]) -> Workers:
        made.append(Workers(env, tmp_path))
        return made[-1]

    yield make
    for w in made:
        w.stop_all()


def test_a_real_worker_process_stores_webhook_updates(
    file_app: Flask, tg: BotApiStub, redis_url: str, workers_factory: Callable[[dict[str, str]], Workers],
) -> None:
    storage: Storage = file_app.extensions["helpline"]
    tg.add_file(b"\xff\xd8photo", file_id=PHOTO_ID, path="photos/file_3.jpg")
    _inbox_id, path = add_hook(storage, tg)
    client = file_app.test_client()
    assert post(client, path, load_update("private_text"), secret="forged-" + SECRET).status_code == 403
    assert post(client, path, load_update("private_text")).status_code == 200
    assert post(client, path, load_update("private_photo_caption")).status_code == 200
    assert post(client, path, load_update("private_text")).json["queued"] is False  # redelivered
    workers = workers_factory(process_env(storage.settings, redis_url))
    proc = workers.start("inbound")
    wait_until(lambda: count(file_app, Message) == 2 and count(file_app, Attachment) == 1, 60,
               "the worker to store both messages", workers)
    assert [r.outcome for r in rows(file_app)] == ["stored", "stored"]
    with storage.factory() as session:
        assert sorted(session.scalars(select(Message.external_id))) == ["5550192834:41", "5550192834:42"]
    workers.kill(proc)


def test_an_edit_processed_before_its_original_keeps_both_versions(app: Flask, hook: str, redis: Redis) -> None:
    storage: Storage = app.extensions["helpline"]
    inbox_id = rows_inbox(app)
    # Two workers: the edit's job runs first, the original's second.
    assert telegram_updates.process_update(storage, inbox_id, load_update("edited_message")) == "stored"
    assert telegram_updates.process_update(storage, inbox_id, load_update("private_text")) == "edited"
    assert telegram_updates.process_update(storage, inbox_id, load_update("private_text")) == "duplicates"
    with storage.factory() as session:
        (msg,) = session.scalars(select(Message))
        assert "#10443" in msg.body_text
        (original,) = msg.meta["edits"]
        assert "#10442" in original["text"] and "original_missing" not in msg.meta


def rows_inbox(app: Flask) -> int:
    from inbox.models import Inbox

    with app.extensions["helpline"].factory() as session:
        return int(session.scalars(select(Inbox.id)).one())


def test_a_bug_is_recorded_on_the_update_and_not_swept_forever(app: Flask, hook: str, redis: Redis,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from workers import telegram_sync

    def broken(*args: Any, **kwargs: Any) -> str:
        raise RuntimeError("a bug")

    monkeypatch.setattr(telegram_sync, "store_update", broken)
    monkeypatch.setattr(telegram_updates, "PENDING_GRACE", telegram_updates.dt.timedelta(0))
    post(app.test_client(), hook, load_update("private_text"))
    work(redis)  # fails; RQ schedules its retry
    (row,) = rows(app)
    assert (row.state, row.attempts, row.error) == ("pending", 1, "internal error: RuntimeError('a bug')")
    with app.extensions["helpline"].factory() as session, session.begin():
        stuck = session.get(TelegramUpdate, row.id)
        assert stuck is not None
        stuck.attempts = telegram_updates.SWEEP_MAX_ATTEMPTS
    Queue(runtime.INBOUND, connection=redis).scheduled_job_registry.remove(
        telegram_updates.job_id(row.inbox_id, row.update_id), delete_job=True)
    assert telegram_updates.sweep_telegram_updates() == 0  # left for an admin, with its error, not retried forever
    monkeypatch.undo()
    assert telegram_updates.process_update(runtime.storage(), row.inbox_id, row.raw) == "stored"  # after the fix
