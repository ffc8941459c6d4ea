"""The Graph API webhook: handshake, signed deliveries POSTed to the real app, dedupe, unknown fields."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from connectors.instagram import sign
from inbox.config import Settings
from inbox.crypto import encrypt_json
from inbox.models import Message, Ticket
from inbox.runtime import Storage
from tests.factories import make_inbox
from tests.instagram.fake import load
from web import create_app

APP_SECRET = "meta-app-secret-for-tests"
VERIFY = "verify-me-123"
HOOK = "/webhooks/instagram/ig-key-1"


@pytest.fixture
def app(settings: Settings, storage: Storage) -> Iterator[Flask]:
    flask_app = create_app(settings)
    with storage.factory() as session:
        make_inbox(session, channel="instagram", public_key="ig-key-1",
                   config={"mode": "graph", "ig_user_id": "17841400000000001"},
                   secrets=encrypt_json(settings.secret_key, {"app_secret": APP_SECRET, "verify_token": VERIFY,
                                                              "access_token": "tok"}))
        session.commit()
    yield flask_app
    flask_app.extensions["helpline"].dispose()


def post(client: FlaskClient, payload: Any, signature: str | None = "good") -> Any:
    body = json.dumps(payload).encode()
    headers = {}
    if signature == "good":
        headers["X-Hub-Signature-256"] = sign(APP_SECRET, body)
    elif signature is not None:
        headers["X-Hub-Signature-256"] = signature
    return client.post(HOOK, data=body, headers=headers, content_type="application/json")


def count(app: Flask, model: type) -> int:
    with app.extensions["helpline"].factory() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_handshake_echoes_the_challenge(app: Flask) -> None:
    args = {"hub.mode": "subscribe", "hub.verify_token": VERIFY, "hub.challenge": "1158201444"}
    response = app.test_client().get(HOOK, query_string=args)
    assert response.status_code == 200 and response.get_data(as_text=True) == "1158201444"


@pytest.mark.parametrize("token", ["", "wrong", VERIFY + "x"])
def test_handshake_with_a_wrong_token_is_refused(app: Flask, token: str) -> None:
    args = {"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": "1"}
    assert app.test_client().get(HOOK, query_string=args).status_code == 403


def test_unknown_webhook_is_404(app: Flask) -> None:
    assert app.test_client().get("/webhooks/instagram/nope").status_code == 404
    assert app.test_client().post("/webhooks/instagram/nope", data=b"{}").status_code == 404


def test_signed_delivery_is_stored_and_unknown_fields_ignored(app: Flask) -> None:
    response = post(app.test_client(), load("graph_comment.json"))  # carries story_insights and unknown keys
    assert response.status_code == 200 and response.json == {"ok": True, "received": 1, "stored": 1}
    with app.extensions["helpline"].factory() as session:
        message = session.scalar(select(Message))
        assert message is not None and message.external_id == "17865799348089039"
        assert message.meta["source"] == "graph" and message.meta["thread_key"] == "media:17895695668004550"


def test_duplicate_delivery_is_stored_once(app: Flask) -> None:
    client = app.test_client()
    assert post(client, load("graph_messages.json")).json["stored"] == 2
    again = post(client, load("graph_messages.json"))
    assert again.status_code == 200 and again.json["stored"] == 0
    assert count(app, Message) == 2 and count(app, Ticket) == 1  # one DM conversation


@pytest.mark.parametrize("signature", [None, "", "sha256=", "sha256=" + "0" * 64, "sha1=abc",
                                       sign("another-secret", b"{}")])
def test_forged_or_missing_signature_is_refused_and_nothing_stored(app: Flask, signature: str | None) -> None:
    response = post(app.test_client(), load("graph_comment.json"), signature=signature)
    assert response.status_code == 403
    assert count(app, Message) == 0


def test_signature_of_other_bytes_is_refused(app: Flask) -> None:
    body = json.dumps(load("graph_comment.json")).encode()
    forged = body.replace(b"Is the red one", b"Send me money")
    response = app.test_client().post(HOOK, data=forged, headers={"X-Hub-Signature-256": sign(APP_SECRET, body)},
                                      content_type="application/json")
    assert response.status_code == 403 and count(app, Message) == 0


def test_signed_garbage_is_400(app: Flask) -> None:
    body = b"not json"
    response = app.test_client().post(HOOK, data=body, headers={"X-Hub-Signature-256": sign(APP_SECRET, body)})
    assert response.status_code == 400
