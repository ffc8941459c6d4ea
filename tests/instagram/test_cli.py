"""``helpline inbox add instagram`` (web.cli_instagram.add_instagram): session file in, encrypted secrets out."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from inbox.config import Settings
from inbox.crypto import decrypt_json
from inbox.models import Inbox
from inbox.runtime import Storage
from tests.instagram.fake import SESSION
from web.cli_instagram import add_instagram


@pytest.fixture
def env(settings: Settings, storage: Storage, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("HELPLINE_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("SECRET_KEY", settings.secret_key)
    monkeypatch.setenv("HELPLINE_BASE_URL", "https://help.shop.test")
    monkeypatch.setenv("IG_TOKEN", "EAAG-token")
    monkeypatch.setenv("IG_APP_SECRET", "app-secret")
    return settings


@pytest.fixture
def session_file(tmp_path: Path) -> Path:
    path = tmp_path / "session-shop.owner"
    path.write_bytes(pickle.dumps(SESSION))  # what 'instaloader --login' writes: a pickled cookie dict
    return path


def inboxes(storage: Storage) -> list[Inbox]:
    with storage.factory() as session:
        return list(session.scalars(select(Inbox)))


def test_add_with_session_file_stores_it_encrypted(env: Settings, storage: Storage, session_file: Path) -> None:
    args = ["--name", "Shop IG", "--profile", "@The.Shop", "--login", "Shop.Owner", "--session-file", str(session_file)]
    result = CliRunner().invoke(add_instagram, args)
    assert result.exit_code == 0, result.output
    assert "Instagram profile @the.shop, polled every 300 s" in result.output
    (inbox,) = inboxes(storage)
    assert (inbox.channel, inbox.address, inbox.poll_interval) == ("instagram", "the.shop", 300)
    assert inbox.config == {"profile": "the.shop", "mode": "instaloader", "backfill_days": 7}
    assert SESSION["sessionid"] not in (inbox.secrets or "")
    assert decrypt_json(env.secret_key, inbox.secrets) == {"login": "shop.owner", "session": SESSION}


def test_update_replaces_the_session_and_clears_the_backoff(env: Settings, storage: Storage,
                                                           session_file: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(add_instagram, ["--name", "IG", "--profile", "shop"]).exit_code == 0
    with storage.factory() as session:
        inbox = session.scalars(select(Inbox)).one()
        inbox.cursor = {"backoff": {"failures": 3}, "profile_id": "1001"}
        inbox.credential_state = "needs_reauth"
        session.commit()
    args = ["--name", "IG", "--profile", "shop", "--login", "owner", "--session-file", str(session_file), "--update"]
    result = runner.invoke(add_instagram, args)
    assert result.exit_code == 0, result.output
    (inbox,) = inboxes(storage)
    assert inbox.cursor == {"profile_id": "1001"} and inbox.credential_state == "ok"
    assert decrypt_json(env.secret_key, inbox.secrets)["session"] == SESSION


def test_graph_mode_prints_the_webhook(env: Settings, storage: Storage) -> None:
    args = ["--name", "Biz", "--profile", "shop", "--graph", "--ig-user-id", "1784", "--access-token-env", "IG_TOKEN",
            "--app-secret-env", "IG_APP_SECRET"]
    result = CliRunner().invoke(add_instagram, args)
    assert result.exit_code == 0, result.output
    (inbox,) = inboxes(storage)
    assert f"https://help.shop.test/webhooks/instagram/{inbox.public_key}" in result.output
    stored = decrypt_json(env.secret_key, inbox.secrets)
    assert stored["access_token"] == "EAAG-token" and stored["app_secret"] == "app-secret"
    assert stored["verify_token"] in result.output and inbox.config["ig_user_id"] == "1784"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--login", "owner"], "--login and --session-file go together"),
        (["--graph"], "--graph needs"),
        (["--update"], "no inbox named"),
    ],
)
def test_refused_combinations(env: Settings, storage: Storage, extra: list[str], message: str) -> None:
    result = CliRunner().invoke(add_instagram, ["--name", "X", "--profile", "shop", *extra])
    assert result.exit_code != 0 and message in result.output
    assert inboxes(storage) == []


def test_not_a_session_file(env: Settings, storage: Storage, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.write_bytes(b"hello")
    result = CliRunner().invoke(add_instagram, ["--name", "X", "--profile", "s", "--login", "u", "--session-file",
                                                str(bad)])
    assert result.exit_code != 0 and "is not an instaloader session file" in result.output


def test_same_name_twice_is_refused(env: Settings, storage: Storage) -> None:
    runner = CliRunner()
    assert runner.invoke(add_instagram, ["--name", "Dup", "--profile", "shop"]).exit_code == 0
    result = runner.invoke(add_instagram, ["--name", "Dup", "--profile", "shop"])
    assert result.exit_code != 0 and "already exists" in result.output
