"""Configuration from the environment, and secrets encrypted at rest."""

from __future__ import annotations

from pathlib import Path

import pytest

from inbox.config import Settings
from inbox.crypto import decrypt_json, encrypt_json
from inbox.errors import ConfigError, SecretError


def test_defaults_run_on_a_bare_machine(tmp_path: Path) -> None:
    s = Settings.from_env({"HELPLINE_DATA_DIR": str(tmp_path / "d")})
    assert s.sqlalchemy_url == f"sqlite:///{tmp_path / 'd' / 'helpline.db'}"
    assert s.redis_url == "" and s.poll_interval == 60
    first = s.with_secret()
    assert len(first.secret_key) > 40
    assert s.with_secret().secret_key == first.secret_key  # kept in the data folder
    assert (tmp_path / "d" / "secret_key").stat().st_mode & 0o077 == 0


def test_environment_overrides_and_strict_booleans(tmp_path: Path) -> None:
    env = {
        "HELPLINE_DATA_DIR": str(tmp_path),
        "DATABASE_URL": "postgresql://u@h/db",
        "REDIS_URL": "redis://r:1/2",
        "HELPLINE_POLL_INTERVAL": "30",
        "HELPLINE_SECURE_COOKIES": "yes",
    }
    s = Settings.from_env(env)
    assert s.sqlalchemy_url == "postgresql+psycopg://u@h/db" and s.poll_interval == 30 and s.secure_cookies
    with pytest.raises(ConfigError):
        Settings.from_env(env | {"HELPLINE_SECURE_COOKIES": "ture"})
    with pytest.raises(ConfigError):
        Settings.from_env(env | {"HELPLINE_POLL_INTERVAL": "soon"})


def test_production_needs_a_secret_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        Settings.from_env({"HELPLINE_DATA_DIR": str(tmp_path), "HELPLINE_ENV": "production"})


def test_secrets_round_trip_and_are_not_plaintext() -> None:
    token = encrypt_json("key-one", {"password": "hunter22"})
    assert "hunter22" not in token
    assert decrypt_json("key-one", token) == {"password": "hunter22"}
    with pytest.raises(SecretError):
        decrypt_json("another-key", token)
