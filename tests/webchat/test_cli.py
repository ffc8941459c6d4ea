"""``helpline inbox add webchat``: stores the inbox and prints the snippet."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import select

from connectors import webchat
from inbox import crypto
from inbox.config import Settings
from inbox.models import Inbox
from inbox.runtime import Storage
from web.cli_webchat import add_webchat


def test_add_webchat_prints_the_snippet(tmp_path: Path, sqlite_template: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "helpline.db").write_bytes(sqlite_template.read_bytes())
    env = {"HELPLINE_DATA_DIR": str(data), "SECRET_KEY": "cli-secret", "HELPLINE_BASE_URL": "https://help.example"}
    args = ["--name", "Shop chat", "--origin", "https://Shop.example/", "--origin", "https://www.shop.example:8443"]
    result = CliRunner().invoke(add_webchat, args, env=env)
    assert result.exit_code == 0, result.output
    storage = Storage.from_settings(Settings(data_dir=data, secret_key="cli-secret"))
    with storage.factory() as session:
        inbox = session.scalars(select(Inbox).where(Inbox.name == "Shop chat")).one()
    storage.dispose()
    assert inbox.channel == "webchat" and inbox.public_key
    assert inbox.config["origins"] == ["https://shop.example", "https://www.shop.example:8443"]
    expected = f'<script src="https://help.example/widget.js" data-inbox="{inbox.public_key}" async></script>'
    assert expected in result.output.splitlines()
    secret = crypto.decrypt_json("cli-secret", inbox.secrets)["secret"]
    assert secret in result.output and webchat.visitor_key(secret)

    again = CliRunner().invoke(add_webchat, args, env=env)
    assert again.exit_code != 0 and "already exists" in again.output
    bad = CliRunner().invoke(add_webchat, ["--name", "X", "--origin", "shop.example/page"], env=env)
    assert bad.exit_code == 2 and "not an origin" in bad.output


def test_add_webchat_links_an_email_inbox_for_offline_replies(tmp_path: Path, sqlite_template: Path) -> None:
    from tests.factories import make_inbox

    data = tmp_path / "data"
    data.mkdir()
    (data / "helpline.db").write_bytes(sqlite_template.read_bytes())
    env = {"HELPLINE_DATA_DIR": str(data), "SECRET_KEY": "cli-secret"}
    storage = Storage.from_settings(Settings(data_dir=data, secret_key="cli-secret"))
    with storage.factory() as session:
        mail_id = make_inbox(session, channel="email", name="Support mail").id
        make_inbox(session, channel="telegram", name="Bot")
        session.commit()
    base = ["--name", "Chat", "--origin", "https://shop.example"]
    for wrong in ("Bot", "Nothing"):
        refused = CliRunner().invoke(add_webchat, [*base, "--email-inbox", wrong], env=env)
        assert refused.exit_code == 1 and f"no email inbox named '{wrong}'" in refused.output
    result = CliRunner().invoke(add_webchat, [*base, "--email-inbox", "Support mail"], env=env)
    assert result.exit_code == 0, result.output
    assert "replies by email from 'Support mail'" in result.output
    with storage.factory() as session:
        inbox = session.scalars(select(Inbox).where(Inbox.name == "Chat")).one()
        assert inbox.config["email_inbox_id"] == mail_id
    storage.dispose()
