"""The inbox commands end to end: add an email inbox, sync it from Dovecot, export the message map."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from inbox.config import Settings
from inbox.crypto import decrypt_json
from inbox.migrate import upgrade
from inbox.models import Inbox, Message
from inbox.runtime import Storage
from tests.email.conftest import mail
from tests.mail_services import PASSWORD, Dovecot
from web.cli_inbox import export_group, inbox_group


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    values = {"HELPLINE_DATA_DIR": str(tmp_path / "data"), "SECRET_KEY": "cli-test-key", "MAIL_PW": PASSWORD}
    (tmp_path / "data").mkdir()
    upgrade(Settings.from_env(values).sqlalchemy_url)
    return values


def test_add_sync_export(env: dict[str, str], dovecot: Dovecot, imap_user: str) -> None:
    runner = CliRunner()
    add = [
        "add",
        "email",
        "--name",
        "support",
        "--address",
        "Support@Shop.test",
        "--imap-host",
        "127.0.0.1",
        "--imap-port",
        str(dovecot.port),
        "--imap-security",
        "none",
        "--username",
        imap_user,
        "--password-env",
        "MAIL_PW",
        "--smtp-host",
        "127.0.0.1",
        "--smtp-port",
        "2525",
        "--smtp-security",
        "none",
    ]
    result = runner.invoke(inbox_group, add, env=env)
    assert result.exit_code == 0, result.output
    assert "added email inbox 'support'" in result.output
    again = runner.invoke(inbox_group, add, env=env)
    assert again.exit_code != 0 and "exists already" in again.output

    dovecot.deliver(imap_user, mail(message_id="<a@x.test>"), mail(message_id="<b@x.test>", in_reply_to="<a@x.test>"))
    result = runner.invoke(inbox_group, ["sync", "support"], env=env)
    assert result.exit_code == 0, result.output
    assert "fetched=2, stored=2, duplicates=0, quarantined=0" in result.output

    result = runner.invoke(export_group, ["message-map", "--inbox", "support"], env=env)
    assert result.exit_code == 0, result.output
    lines = [line.split("\t") for line in result.output.splitlines()]
    assert [m for m, _ in lines] == ["<a@x.test>", "<b@x.test>"] and lines[0][1] == lines[1][1]

    storage = Storage.from_settings(Settings.from_env(env))
    with storage.factory() as session:
        inbox = session.scalars(select(Inbox)).one()
        assert inbox.address == "support@shop.test" and inbox.config["imap_security"] == "none"
        assert PASSWORD not in (inbox.secrets or "")  # encrypted at rest
        assert decrypt_json("cli-test-key", inbox.secrets) == {"password": PASSWORD}
        assert len(list(session.scalars(select(Message)))) == 2
    storage.dispose()


def test_add_refuses_plain_imap_to_a_remote_host_and_missing_passwords(env: dict[str, str]) -> None:
    runner = CliRunner()
    base = ["add", "email", "--name", "x", "--address", "a@b.test", "--username", "u", "--password-env", "MAIL_PW"]
    plain = runner.invoke(inbox_group, [*base, "--imap-host", "imap.example.com", "--imap-security", "none"], env=env)
    assert plain.exit_code != 0 and "loopback" in plain.output
    nopw = runner.invoke(inbox_group, [*base, "--imap-host", "127.0.0.1", "--password-env", "NOPE"], env=env)
    assert nopw.exit_code != 0 and "NOPE" in nopw.output
    sync = runner.invoke(inbox_group, ["sync", "nope"], env=env)
    assert sync.exit_code != 0 and "no inbox named" in sync.output
