"""Settings from the environment, with defaults that run on a bare machine (redash's ``REDASH_*`` pattern)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from inbox.errors import ConfigError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def parse_boolean(value: str) -> bool:
    """Parse a boolean strictly: a typo must not silently mean False."""
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"not a boolean: {value!r} (use true/false)")


def _int(env: Mapping[str, str], key: str, default: int) -> int:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{key} must be an integer, got {raw!r}") from exc


@dataclass(frozen=True)
class Settings:
    """Everything Helpline reads from its environment."""

    # Folder for the SQLite file, attachments, raw mail, the generated secret key and the embedded Redis.
    data_dir: Path = field(default_factory=lambda: Path("data").resolve())
    # SQLAlchemy URL; empty means a SQLite file ``helpline.db`` in data_dir.
    database_url: str = ""
    # Redis URL for RQ and the Socket.IO message queue; empty means an embedded redis-server in data_dir.
    redis_url: str = ""
    # Signs sessions and derives the key that encrypts inbox secrets. Generated into data_dir when unset.
    secret_key: str = ""
    # "development" or "production"; production refuses to start without SECRET_KEY.
    env: str = "development"
    # Largest attachment stored, in bytes (bigger ones are recorded as skipped, never silently dropped).
    max_attachment_bytes: int = 25 * 1024 * 1024
    # Default seconds between two polls of one inbox (IMAP IDLE and webhooks come on top).
    poll_interval: int = 60
    # Days after which a solved ticket is closed by the sweeper.
    close_solved_after_days: int = 7
    # Domain used in our own Message-IDs.
    mail_domain: str = "helpline.local"
    # Public base URL of the web app, used in widget snippets and links in mail.
    base_url: str = "http://127.0.0.1:5000"
    # Mark session cookies Secure (https only).
    secure_cookies: bool = False
    # Let outgoing webhooks post to loopback/private-network addresses (off: a webhook URL cannot reach inside).
    webhook_allow_private: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read settings from ``env`` (default ``os.environ``); tests pass a plain dict."""
        env = os.environ if env is None else env
        data_dir = Path(env.get("HELPLINE_DATA_DIR") or "data").resolve()
        settings = cls(
            data_dir=data_dir,
            database_url=env.get("DATABASE_URL", ""),
            redis_url=env.get("REDIS_URL", ""),
            secret_key=env.get("SECRET_KEY", ""),
            env=env.get("HELPLINE_ENV", "development"),
            max_attachment_bytes=_int(env, "HELPLINE_MAX_ATTACHMENT_BYTES", 25 * 1024 * 1024),
            poll_interval=_int(env, "HELPLINE_POLL_INTERVAL", 60),
            close_solved_after_days=_int(env, "HELPLINE_CLOSE_SOLVED_AFTER_DAYS", 7),
            mail_domain=env.get("HELPLINE_MAIL_DOMAIN", "helpline.local"),
            base_url=env.get("HELPLINE_BASE_URL", "http://127.0.0.1:5000"),
            secure_cookies=parse_boolean(env.get("HELPLINE_SECURE_COOKIES", "false")),
            webhook_allow_private=parse_boolean(env.get("HELPLINE_WEBHOOK_ALLOW_PRIVATE", "false")),
        )
        if settings.env == "production" and not settings.secret_key:
            raise ConfigError("SECRET_KEY must be set when HELPLINE_ENV=production")
        return settings

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            url = self.database_url
            # Heroku-style URLs name the scheme "postgres"; SQLAlchemy wants a driver.
            if url.startswith("postgres://"):
                url = "postgresql+psycopg://" + url[len("postgres://") :]
            elif url.startswith("postgresql://"):
                url = "postgresql+psycopg://" + url[len("postgresql://") :]
            return url
        return f"sqlite:///{self.data_dir / 'helpline.db'}"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    def with_secret(self) -> Settings:
        """Return settings whose secret key is set, generating one into the data folder on first run.

        Also creates the data folder, which every process needs before it opens the SQLite file.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.secret_key:
            return self
        key_file = self.data_dir / "secret_key"
        if not key_file.exists():
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(48))
        return replace(self, secret_key=key_file.read_text().strip())
