"""Fixtures: a fake www.instagram.com behind every requests.Session, and an Instagram inbox with a stored login."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from inbox.crypto import encrypt_json
from inbox.runtime import Storage
from tests.factories import make_inbox
from tests.instagram.fake import SESSION, FakeInstagram, installed


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeInstagram]:
    ig = FakeInstagram()
    yield from installed(ig, monkeypatch)
    assert ig.unexpected == [], "instaloader asked for something the fake does not serve"


@pytest.fixture
def ig_inbox_id(storage: Storage) -> int:
    with storage.factory() as session:
        inbox = make_inbox(
            session,
            channel="instagram",
            address="shop",
            config={"profile": "shop", "sleep": False, "max_attempts": 2},
            secrets=encrypt_json(storage.settings.secret_key, {"login": "shop", "session": SESSION}),
        )
        session.commit()
        return inbox.id
