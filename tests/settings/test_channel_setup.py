"""Connecting channels: live tests say in plain words what is wrong, save nothing on failure, and save on success."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from inbox.crypto import decrypt_json
from inbox.models import Inbox
from inbox.runtime import Storage
from tests.mail_services import PASSWORD, Dovecot, running_dovecot
from tests.services import free_port
from tests.telegram.botapi_stub import TOKEN, BotApiStub
from web import channel_setup
from web.channel_setup import Connected, SetupError, connect_from_form


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    with running_dovecot() as server:
        yield server


def email_form(dovecot: Dovecot, user: str, **overrides: str) -> dict[str, str]:
    return {
        "name": "Support mail",
        "address": "support@shop.test",
        "imap_host": "127.0.0.1",
        "imap_port": str(dovecot.port),
        "imap_security": "none",
        "username": user,
        "password": PASSWORD,
        "ca_file": dovecot.ca_file,
    } | overrides


def inbox_count(storage: Storage) -> int:
    with storage.factory() as session:
        return int(session.scalar(select(func.count()).select_from(Inbox)) or 0)


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"password": "wrong-password"}, "Wrong user name or password"),
        ({"imap_security": "ssl"}, "TLS mismatch"),
        ({"imap_security": "starttls", "imap_port": "__tls__"}, "TLS mismatch"),
        ({"imap_port": "__closed__"}, "Host unreachable"),
        ({"imap_host": "mail.example.com"}, "would send the password in the clear"),
        ({"folders": "Nope"}, "has no folder Nope"),
    ],
)
def test_email_failures_are_plain_and_save_nothing(
    storage: Storage, dovecot: Dovecot, overrides: dict[str, str], words: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if overrides.get("imap_port") == "__tls__":
        # The client waits for a greeting the TLS port never sends; don't wait 10 s for that here. (Only here:
        # Dovecot delays the next login from this address after a wrong password by a few seconds.)
        monkeypatch.setattr(channel_setup, "TEST_TIMEOUT", 2.0)
        overrides = overrides | {"imap_port": str(dovecot.tls_port)}
    if overrides.get("imap_port") == "__closed__":
        overrides = overrides | {"imap_port": str(free_port())}
    form = email_form(dovecot, dovecot.new_user(), **overrides)
    with storage.factory() as session:
        with pytest.raises(SetupError, match=words) as info:
            connect_from_form(session, storage.settings, "email", form)
        session.commit()
    assert PASSWORD not in info.value.reason and "wrong-password" not in info.value.reason
    assert inbox_count(storage) == 0


def test_email_connects_lists_folders_and_keeps_secrets_write_only(storage: Storage, dovecot: Dovecot) -> None:
    user = dovecot.new_user()
    dovecot.deliver(user, b"Subject: hi\r\n\r\nhello", folder="Orders")
    with storage.factory() as session:
        done = connect_from_form(session, storage.settings, "email", email_form(dovecot, user))
        session.commit()
        assert isinstance(done, Connected)
        assert {"INBOX", "Orders"} <= set(done.test.folders)
        inbox_id = done.inbox.id
    with storage.factory() as session:
        inbox = session.get(Inbox, inbox_id)
        assert inbox is not None and inbox.channel == "email" and inbox.address == "support@shop.test"
        assert decrypt_json(storage.settings.secret_key, inbox.secrets) == {"password": PASSWORD}
        assert PASSWORD not in str(inbox.config)
        # Editing with an empty password keeps the stored one; a wrong new one is refused and changes nothing.
        form = email_form(dovecot, user, password="", folders="INBOX, Orders", name="Renamed")
        connect_from_form(session, storage.settings, "email", form, inbox=inbox)
        session.commit()
        assert inbox.name == "Renamed" and inbox.config["folders"] == ["INBOX", "Orders"]
        with pytest.raises(SetupError, match="Wrong user name or password"):
            connect_from_form(session, storage.settings, "email", form | {"password": "bad"}, inbox=inbox)
        session.rollback()
    with storage.factory() as session:
        inbox = session.get(Inbox, inbox_id)
        assert inbox is not None
        assert decrypt_json(storage.settings.secret_key, inbox.secrets) == {"password": PASSWORD}


def test_telegram_bad_token_then_good(storage: Storage) -> None:
    with BotApiStub() as stub, storage.factory() as session:
        form: dict[str, Any] = {"name": "Shop bot", "api_base": stub.api_base}
        with pytest.raises(SetupError, match="Bad bot token"):
            connect_from_form(session, storage.settings, "telegram", form | {"token": "123:not-the-token"})
        with pytest.raises(SetupError, match="not a bot token"):
            connect_from_form(session, storage.settings, "telegram", form | {"token": "garbage"})
        session.commit()
        assert inbox_count(storage) == 0
        done = connect_from_form(session, storage.settings, "telegram", form | {"token": TOKEN})
        session.commit()
        assert isinstance(done, Connected) and done.inbox.channel == "telegram"
        assert done.inbox.address and "@" + done.inbox.address in done.test.summary
        assert "deleteWebhook" in stub.methods()


def test_webchat_and_duplicate_names(storage: Storage) -> None:
    with storage.factory() as session:
        with pytest.raises(SetupError, match="not a web site address"):
            connect_from_form(session, storage.settings, "webchat", {"name": "Chat", "origins": "shop dot com"})
        done = connect_from_form(session, storage.settings, "webchat", {"name": "Chat", "origins": "https://shop.test"})
        session.commit()
        assert isinstance(done, Connected) and done.widget_secret
        assert done.inbox.config["origins"] == ["https://shop.test"]
        with pytest.raises(SetupError, match="exists already"):
            connect_from_form(session, storage.settings, "webchat", {"name": "Chat", "origins": "https://a.test"})
