"""Fixtures for the Telegram tests: recorded updates, the Bot API stub, and a Telegram inbox pointed at it."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from inbox.crypto import encrypt_json
from inbox.models import Inbox
from inbox.runtime import Storage
from tests import factories
from tests.telegram.botapi_stub import TOKEN, BotApiStub

DATA = Path(__file__).resolve().parents[1] / "data" / "telegram"


def load_update(name: str) -> dict[str, Any]:
    """A recorded Update from tests/data/telegram (a fresh copy each time)."""
    return copy.deepcopy(json.loads((DATA / f"{name}.json").read_text(encoding="utf-8")))


@pytest.fixture
def tg() -> Iterator[BotApiStub]:
    with BotApiStub() as stub:
        yield stub


def make_telegram_inbox(session: Session, storage: Storage, stub: BotApiStub, **config: Any) -> Inbox:
    secrets: dict[str, Any] = {"token": TOKEN}
    if "webhook_secret" in config:
        secrets["webhook_secret"] = config.pop("webhook_secret")
    return factories.make_inbox(
        session,
        channel="telegram",
        address="shop_support_bot",
        config={"api_base": stub.api_base, "mode": "polling"} | config,
        secrets=encrypt_json(storage.settings.secret_key, secrets),
    )
