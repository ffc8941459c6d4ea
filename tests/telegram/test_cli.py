"""``helpline inbox add telegram`` (web.cli_telegram.add_telegram) against the Bot API stub."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from inbox.config import Settings
from inbox.crypto import decrypt_json
from inbox.models import Inbox
from inbox.runtime import Storage
from tests.telegram.botapi_stub import TOKEN, BotApiStub
from web.cli_telegram import add_telegram


@pytest.fixture
def env(settings: Settings, storage: Storage, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("HELPLINE_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("SECRET_KEY", settings.secret_key)
    monkeypatch.setenv("HELPLINE_BASE_URL", "https://help.shop.test")
    monkeypatch.setenv("SHOP_BOT_TOKEN", TOKEN)
    return settings


def inboxes(storage: Storage) -> list[Inbox]:
    with storage.factory() as session:
        return list(session.scalars(select(Inbox)))


def test_add_polling_bot_checks_the_token_and_stores_it_encrypted(
    env: Settings, storage: Storage, tg: BotApiStub
) -> None:
    tg.webhook = {"url": "https://old.example/hook"}
    args = ["--name", "Shop bot", "--token-env", "SHOP_BOT_TOKEN", "--api-base", tg.api_base]
    result = CliRunner().invoke(add_telegram, args)
    assert result.exit_code == 0, result.output
    assert "@shop_support_bot (Shop Support)" in result.output
    (inbox,) = inboxes(storage)
    assert (inbox.channel, inbox.address, inbox.config["mode"]) == ("telegram", "shop_support_bot", "polling")
    assert TOKEN not in (inbox.secrets or "") and TOKEN not in str(inbox.config)
    assert decrypt_json(env.secret_key, inbox.secrets)["token"] == TOKEN
    assert tg.methods() == ["getMe", "deleteWebhook"] and tg.webhook == {}


def test_add_webhook_bot_registers_the_url_and_secret(env: Settings, storage: Storage, tg: BotApiStub) -> None:
    args = ["--name", "Hook bot", "--token-env", "SHOP_BOT_TOKEN", "--mode", "webhook", "--api-base", tg.api_base]
    result = CliRunner().invoke(add_telegram, args)
    assert result.exit_code == 0, result.output
    (inbox,) = inboxes(storage)
    assert tg.webhook["url"] == f"https://help.shop.test/webhooks/telegram/{inbox.public_key}"
    assert tg.webhook["secret_token"] == decrypt_json(env.secret_key, inbox.secrets)["webhook_secret"]


def test_a_bad_token_is_a_clear_error_and_adds_nothing(
    env: Settings, storage: Storage, tg: BotApiStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHOP_BOT_TOKEN", "123:not-a-real-token")
    result = CliRunner().invoke(add_telegram, ["--name", "X", "--token-env", "SHOP_BOT_TOKEN", "--api-base",
                                               tg.api_base])
    assert result.exit_code == 1
    assert "Telegram did not accept the bot: Telegram rejected the bot token (Unauthorized)" in result.output
    assert inboxes(storage) == []


def test_a_missing_variable_and_a_taken_name_are_refused(env: Settings, storage: Storage, tg: BotApiStub) -> None:
    result = CliRunner().invoke(add_telegram, ["--name", "X", "--token-env", "NOPE_UNSET"])
    assert result.exit_code == 1 and "NOPE_UNSET is empty or not set" in result.output
    args = ["--name", "Shop bot", "--token-env", "SHOP_BOT_TOKEN", "--api-base", tg.api_base]
    assert CliRunner().invoke(add_telegram, args).exit_code == 0
    again = CliRunner().invoke(add_telegram, args)
    assert again.exit_code == 1 and "already exists" in again.output
    assert len(inboxes(storage)) == 1


def test_sync_fetches_a_polling_bot_and_processes_a_webhook_bots_waiting_updates(
    env: Settings, storage: Storage, tg: BotApiStub
) -> None:
    from tests.telegram.conftest import load_update
    from web.cli_inbox import inbox_group
    from workers.telegram_updates import receive_update

    runner = CliRunner()
    args = ["--name", "Shop bot", "--token-env", "SHOP_BOT_TOKEN", "--api-base", tg.api_base]
    assert runner.invoke(add_telegram, args).exit_code == 0
    tg.push(load_update("private_text"))
    tg.push(load_update("unknown_kind"))
    result = runner.invoke(inbox_group, ["sync", "Shop bot"])
    assert result.exit_code == 0, result.output
    assert "Shop bot: fetched=2, stored=1, " in result.output and "unknown=1" in result.output

    hook = ["--name", "Hook bot", "--token-env", "SHOP_BOT_TOKEN", "--mode", "webhook", "--api-base", tg.api_base]
    assert runner.invoke(add_telegram, hook).exit_code == 0
    with storage.factory() as session:
        inbox_id = session.scalars(select(Inbox.id).where(Inbox.name == "Hook bot")).one()
        # Kept by the webhook while no worker ran (Redis down, workers stopped).
        reply = load_update("private_reply")
        assert receive_update(session, inbox_id, reply)
    result = runner.invoke(inbox_group, ["sync", "Hook bot"])
    assert result.exit_code == 0, result.output
    assert "Hook bot: fetched=1, stored=1, " in result.output
    again = runner.invoke(inbox_group, ["sync", "Hook bot"])
    assert "Hook bot: fetched=0, stored=0, " in again.output
