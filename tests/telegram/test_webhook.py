"""The Telegram webhook endpoint: recorded Update JSON POSTed to the real app (Flask's test client)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from inbox.config import Settings
from inbox.models import Attachment, Message
from inbox.runtime import Storage
from tests.telegram.botapi_stub import BotApiStub
from tests.telegram.conftest import load_update, make_telegram_inbox
from web import create_app

SECRET = "wh-7Kq2-secret-token_for-tests"
HEADER = "X-Telegram-Bot-Api-Secret-Token"


@pytest.fixture
def app(settings: Settings, storage: Storage) -> Iterator[Flask]:
    flask_app = create_app(settings)
    yield flask_app
    flask_app.extensions["helpline"].dispose()


@pytest.fixture
def hook(app: Flask, tg: BotApiStub) -> str:
    """The webhook path of a webhook-mode Telegram inbox."""
    storage: Storage = app.extensions["helpline"]
    with storage.factory() as session:
        make_telegram_inbox(session, storage, tg, mode="webhook", webhook_secret=SECRET).public_key = "tg-key-1"
        session.commit()
    return "/webhooks/telegram/tg-key-1"


def post(client: FlaskClient, path: str, update: Any, secret: str | None = SECRET) -> Any:
    headers = {HEADER: secret} if secret is not None else {}
    body = update if isinstance(update, str | bytes) else json.dumps(update)
    return client.post(path, data=body, headers=headers, content_type="application/json")


def count(app: Flask, model: type) -> int:
    with app.extensions["helpline"].factory() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_an_update_is_stored_and_answered_200(app: Flask, hook: str) -> None:
    response = post(app.test_client(), hook, load_update("private_text"))
    assert response.status_code == 200 and response.json == {"ok": True, "outcome": "stored"}
    assert count(app, Message) == 1


@pytest.mark.parametrize("secret", [None, "", "wrong", SECRET[:-1], SECRET + "x"])
def test_a_wrong_or_missing_secret_is_refused(app: Flask, hook: str, secret: str | None) -> None:
    response = post(app.test_client(), hook, load_update("private_text"), secret=secret)
    assert response.status_code == 403
    assert count(app, Message) == 0


def test_an_unknown_inbox_key_is_404(app: Flask, hook: str) -> None:
    assert post(app.test_client(), "/webhooks/telegram/nope", load_update("private_text")).status_code == 404


@pytest.mark.parametrize("body", ["{not json", "[1, 2]", '{"message": {}}', "", '{"update_id": "7"}'])
def test_malformed_json_is_400_and_nothing_breaks(app: Flask, hook: str, body: str) -> None:
    client = app.test_client()
    assert post(client, hook, body).status_code == 400
    assert post(client, hook, load_update("private_text")).status_code == 200
    assert count(app, Message) == 1


def test_a_duplicate_update_id_is_stored_once(app: Flask, hook: str) -> None:
    client = app.test_client()
    first = post(client, hook, load_update("private_text"))
    again = post(client, hook, load_update("private_text"))  # Telegram redelivers when it missed our 200
    assert (first.json["outcome"], again.json["outcome"]) == ("stored", "duplicates")
    assert count(app, Message) == 1


def test_media_edits_and_unknown_kinds_through_the_webhook(app: Flask, hook: str, tg: BotApiStub) -> None:
    tg.add_file(b"\xff\xd8photo", file_id="AgACAgIAAxkBAAIBKmdEq1_large", path="photos/file_3.jpg")
    client = app.test_client()
    assert post(client, hook, load_update("private_text")).json["outcome"] == "stored"
    assert post(client, hook, load_update("private_photo_caption")).json["outcome"] == "stored"
    assert post(client, hook, load_update("edited_message")).json["outcome"] == "edited"
    assert post(client, hook, load_update("unknown_kind")).json["outcome"] == "unknown"
    assert post(client, hook, load_update("callback_query")).json["outcome"] == "ignored"
    with app.extensions["helpline"].factory() as session:
        att = session.scalars(select(Attachment)).one()
        assert app.extensions["helpline"].blobs.get(att.sha256) == b"\xff\xd8photo"
        first = session.scalars(select(Message).order_by(Message.id)).first()
        assert first is not None and "#10443" in first.body_text and len(first.meta["edits"]) == 1


def test_a_failed_download_asks_telegram_to_deliver_again(app: Flask, hook: str, tg: BotApiStub) -> None:
    tg.add_file(b"\xff\xd8photo", file_id="AgACAgIAAxkBAAIBKmdEq1_large", path="photos/file_3.jpg")
    tg.fail("getFile", 502)
    client = app.test_client()
    assert post(client, hook, load_update("private_photo_caption")).status_code == 503
    assert count(app, Message) == 0
    assert post(client, hook, load_update("private_photo_caption")).status_code == 200
    assert count(app, Attachment) == 1
