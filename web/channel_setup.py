"""Connecting a channel: validate the fields, test the connection live, create (or update) the inbox.

One function per channel kind, called by the first-run wizard, the channel settings pages and the CLI, so an inbox
made in the browser is the same as one made with ``helpline inbox add``. Tests explain failures in plain words
(wrong password, TLS mismatch, host unreachable, bad bot token) and never save anything; the caller commits.
"""

from __future__ import annotations

import secrets
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
from imapclient.exceptions import IMAPClientError
from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.errors import ChannelAuthError, ChannelError
from connectors.imap import AFTER_IMPORT, SECURITY_MODES, ImapMailbox, check_security
from connectors.instagram import normalize_username
from connectors.smtp import EmailChannel
from connectors.telegram import TelegramChannel
from connectors.webchat import normalise_origin
from inbox.config import Settings
from inbox.crypto import decrypt_json, encrypt_json
from inbox.models import CHANNELS, Inbox

TEST_TIMEOUT = 10.0  # seconds: a person waits for the answer
IMAP_PORTS = {"ssl": 993, "starttls": 143, "none": 143}
SMTP_PORTS = {"ssl": 465, "starttls": 587, "none": 25}
Fields = tuple[dict[str, Any], dict[str, Any]]  # (config, secrets) of an inbox


class SetupError(Exception):
    """What is wrong with a channel's settings or connection, in words for the person setting it up."""

    def __init__(self, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field


@dataclass
class ConnectionResult:
    """A passed connection test: a line for the person, and what the server told us (folders, bot name)."""

    summary: str
    folders: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)


def check_name(session: Session, name: str, *, inbox_id: int | None = None) -> str:
    name = name.strip()
    if not name:
        raise SetupError("Give the inbox a name, e.g. “Support mail”.", "name")
    if len(name) > 100:
        raise SetupError("The name is too long (at most 100 characters).", "name")
    other = session.scalar(select(Inbox.id).where(Inbox.name == name))
    if other is not None and other != inbox_id:
        raise SetupError(f"An inbox named “{name}” exists already; choose another name.", "name")
    return name


def _port(raw: str | None, default: int, label: str) -> int:
    if raw is None or not str(raw).strip():
        return default
    try:
        port = int(str(raw).strip())
    except ValueError:
        raise SetupError(f"The {label} port must be a number such as {default}.", label.lower() + "_port") from None
    if not 0 < port < 65536:
        raise SetupError(f"The {label} port must be between 1 and 65535.", label.lower() + "_port")
    return port


# -- email ---------------------------------------------------------------------------------------------------------


def email_fields(form: Mapping[str, str], stored_secrets: Mapping[str, Any] | None = None) -> Fields:
    """Config and secrets of an email inbox from form fields; an empty password keeps ``stored_secrets``'."""
    address = form.get("address", "").strip().lower()
    if "@" not in address:
        raise SetupError("The inbox address must be an email address, e.g. support@shop.example.", "address")
    host = form.get("imap_host", "").strip()
    if not host:
        raise SetupError("Enter the IMAP server's host name, e.g. imap.example.com.", "imap_host")
    security = form.get("imap_security", "ssl")
    if security not in SECURITY_MODES:
        raise SetupError("Choose how to secure the IMAP connection.", "imap_security")
    smtp_host = form.get("smtp_host", "").strip() or None
    smtp_security = form.get("smtp_security", "starttls")
    if smtp_security not in SECURITY_MODES:
        raise SetupError("Choose how to secure the SMTP connection.", "smtp_security")
    username = form.get("username", "").strip() or address
    after_import = form.get("after_import", "leave")
    if after_import not in AFTER_IMPORT:
        after_import = "leave"
    folders = [f.strip() for f in form.get("folders", "").split(",") if f.strip()] or ["INBOX"]
    config: dict[str, Any] = {
        "imap_host": host,
        "imap_port": _port(form.get("imap_port"), IMAP_PORTS[security], "IMAP"),
        "imap_security": security,
        "username": username,
        "folders": folders,
        "after_import": after_import,
        "move_to": form.get("move_to", "").strip() or None,
        "aliases": [],
        "address": address,
        "smtp_host": smtp_host,
        "smtp_port": _port(form.get("smtp_port"), SMTP_PORTS[smtp_security], "SMTP") if smtp_host else None,
        "smtp_security": smtp_security,
        "smtp_username": form.get("smtp_username", "").strip() or None,
        "ca_file": form.get("ca_file", "").strip() or None,
    }
    if after_import == "move" and not config["move_to"]:
        raise SetupError("Name the folder that imported mail is moved to.", "move_to")
    stored = dict(stored_secrets or {})
    password = form.get("password", "")
    if password:
        stored["password"] = password
    if not stored.get("password"):
        raise SetupError("Enter the mailbox password.", "password")
    smtp_password = form.get("smtp_password", "")
    if smtp_password:
        stored["smtp_password"] = smtp_password
    for h, mode, name in ((host, security, "imap_security"), (smtp_host, smtp_security, "smtp_security")):
        if h:
            try:
                check_security(h, mode)
            except ChannelError:
                raise SetupError(
                    f"An unencrypted connection to {h} would send the password in the clear; choose SSL/TLS or "
                    "STARTTLS (plain connections are allowed to this machine only).",
                    name,
                ) from None
    return config, stored


def explain_network(exc: BaseException, what: str, host: str, port: int, security: str) -> str:
    """Plain words for a failed connection, from the low-level cause kept in the exception chain."""
    chain: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and len(chain) < 5:
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    for err in chain:
        if isinstance(err, ssl.SSLCertVerificationError):
            return (
                f"The {what} server's certificate is not trusted ({err.verify_message}). If the server uses its own "
                "certificate, give its CA file."
            )
        if isinstance(err, ssl.SSLError):
            if security == "ssl":
                usual = 143 if what == "IMAP" else 587
                hint = f"Port {port} may expect STARTTLS: try STARTTLS (usually port {usual})."
            else:
                usual = 993 if what == "IMAP" else 465
                hint = f"Port {port} may expect TLS from the start: try SSL/TLS (usually port {usual})."
            mode = security.upper()
            return f"TLS mismatch: the {what} server at {host}:{port} did not answer the way {mode} expects. {hint}"
        if isinstance(err, socket.gaierror):
            return f"Host unreachable: the name “{host}” cannot be found. Check the {what} server's host name."
        if isinstance(err, ConnectionRefusedError):
            return (
                f"Host unreachable: {host} refused the connection on port {port}. Check the port; the {what} server "
                "may be down."
            )
        if isinstance(err, TimeoutError | socket.timeout) and security != "ssl" and _speaks_tls(host, port):
            return (
                f"TLS mismatch: the {what} server at {host}:{port} expects TLS from the start, not "
                f"{security.upper()}: choose SSL/TLS."
            )
        if isinstance(err, TimeoutError | socket.timeout):
            return (
                f"Host unreachable: {host}:{port} did not answer within {TEST_TIMEOUT:g} seconds. Check the host and "
                "port, or a firewall on the way"
                + (" (or this port expects TLS from the start: try SSL/TLS)." if security != "ssl" else ".")
            )
        if isinstance(err, IMAPClientError) and "STARTTLS" in str(err).upper():
            return f"TLS mismatch: the {what} server at {host}:{port} does not offer STARTTLS. Try SSL/TLS on port 993."
        if isinstance(err, OSError) and not isinstance(err, ssl.SSLError) and err.errno is not None:
            return f"Host unreachable: cannot connect to {host}:{port} ({err.strerror or err})."
    reason = exc.reason if isinstance(exc, ChannelError) else str(exc)
    return f"The {what} server at {host}:{port} could not be used: {reason}"


def _speaks_tls(host: str, port: int) -> bool:
    """Whether a TLS handshake succeeds at host:port (certificate unchecked: this only tells the protocol)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=3) as sock, context.wrap_socket(sock):
            return True
    except (OSError, ssl.SSLError):
        return False


def try_email(config: Mapping[str, Any], stored_secrets: Mapping[str, Any]) -> ConnectionResult:
    """Log in to IMAP (listing the folders) and, if configured, to SMTP; raise SetupError in plain words."""
    host, port, security = config["imap_host"], int(config["imap_port"]), config["imap_security"]
    mailbox = ImapMailbox(
        host,
        port,
        security,
        config["username"],
        str(stored_secrets.get("password", "")),
        timeout=TEST_TIMEOUT,
        ca_file=config.get("ca_file"),
    )
    try:
        with mailbox:
            assert mailbox.client is not None
            folders = sorted(str(f[2]) for f in mailbox.client.list_folders())
    except ChannelAuthError as exc:
        raise SetupError(
            f"Wrong user name or password: the IMAP server refused to sign in {config['username']} "
            f"({exc.reason.split(': ', 1)[-1]}).",
            "password",
        ) from exc
    except ChannelError as exc:
        raise SetupError(explain_network(exc, "IMAP", host, port, security), "imap_host") from exc
    missing = [f for f in config.get("folders", []) if f not in folders]
    if missing:
        raise SetupError(f"The mailbox has no folder {', '.join(missing)}; it has {', '.join(folders)}.", "folders")
    summary = f"Signed in to {host} as {config['username']}; {len(folders)} folders."
    if config.get("smtp_host"):
        summary += " " + _test_smtp(config, stored_secrets)
    return ConnectionResult(summary=summary, folders=folders)


def _test_smtp(config: Mapping[str, Any], stored_secrets: Mapping[str, Any]) -> str:
    channel = EmailChannel(dict(config) | {"timeout": TEST_TIMEOUT}, stored_secrets)
    try:
        with channel._connect() as smtp:  # noqa: SLF001 - the same connection the replies will use
            if channel.username and channel.password and smtp.has_extn("auth"):
                smtp.login(channel.username, channel.password)
    except Exception as exc:  # noqa: BLE001 - classified below
        import smtplib

        if isinstance(exc, smtplib.SMTPAuthenticationError):
            raise SetupError(
                "Wrong user name or password: the SMTP server refused to sign in.", "smtp_password"
            ) from exc
        raise SetupError(
            explain_network(exc, "SMTP", channel.host, channel.port, channel.security), "smtp_host"
        ) from exc
    return f"Sending through {channel.host}:{channel.port} works."


def save_email_inbox(
    session: Session,
    settings: Settings,
    name: str,
    config: dict[str, Any],
    stored_secrets: dict[str, Any],
    *,
    inbox: Inbox | None = None,
) -> Inbox:
    """Create (or update) an email inbox from validated, tested fields."""
    if inbox is None:
        inbox = Inbox(channel="email", cursor={})
        session.add(inbox)
    old = inbox.config or {}
    if any(old.get(k) != config.get(k) for k in ("imap_host", "imap_port", "username")):
        inbox.cursor = {}  # another mailbox: its UIDs say nothing about this one's (UIDVALIDITY may even match)
    inbox.name = name
    inbox.address = str(config["address"])
    kept = {k: v for k, v in (inbox.config or {}).items() if k in ("aliases", "alert_after", "archived")}
    inbox.config = config | kept
    inbox.secrets = encrypt_json(settings.secret_key, stored_secrets)
    inbox.credential_state = "ok"
    session.flush()
    return inbox


# -- Telegram ------------------------------------------------------------------------------------------------------


def telegram_fields(
    form: Mapping[str, str], stored_secrets: Mapping[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    stored = dict(stored_secrets or {})
    token = form.get("token", "").strip()
    if token:
        if ":" not in token:
            raise SetupError("That is not a bot token: @BotFather gives one like 123456:ABC-DEF…", "token")
        stored["token"] = token
    if not stored.get("token"):
        raise SetupError("Paste the bot token that @BotFather gave you.", "token")
    mode = form.get("mode", "polling")
    if mode not in ("polling", "webhook"):
        mode = "polling"
    config: dict[str, Any] = {"mode": mode, "groups": form.get("groups") in ("1", "on", "true")}
    api_base = form.get("api_base", "").strip()
    if api_base:
        config["api_base"] = api_base.rstrip("/")
    return config, stored


def try_telegram(config: Mapping[str, Any], stored_secrets: Mapping[str, Any]) -> ConnectionResult:
    channel = TelegramChannel(config, stored_secrets)
    try:
        bot = channel.get_me()
    except ChannelAuthError as exc:
        raise SetupError(
            "Bad bot token: Telegram does not know this token. Copy it again from @BotFather (all of it, with the "
            "number before the colon).",
            "token",
        ) from exc
    except ChannelError as exc:
        raise SetupError(f"Telegram could not be reached: {exc.reason}. Try again in a moment.", "token") from exc
    return ConnectionResult(
        summary=f"Connected to the bot @{bot.get('username')} ({bot.get('first_name')}).", facts=bot
    )


def save_telegram_inbox(
    session: Session,
    settings: Settings,
    name: str,
    config: dict[str, Any],
    stored_secrets: dict[str, Any],
    bot: Mapping[str, Any],
    *,
    inbox: Inbox | None = None,
) -> Inbox:
    """Create (or update) a Telegram inbox: sets the webhook (or clears it for polling) at Telegram first."""
    from web.cli_telegram import webhook_url

    if inbox is None:
        inbox = Inbox(channel="telegram", public_key=secrets.token_urlsafe(24), cursor={})
        session.add(inbox)
    channel = TelegramChannel(config, stored_secrets)
    try:
        if config["mode"] == "webhook":
            # Telegram allows A-Z, a-z, 0-9, _ and - in the secret: exactly token_urlsafe's alphabet.
            stored_secrets.setdefault("webhook_secret", secrets.token_urlsafe(32))
            channel.set_webhook(webhook_url(settings, str(inbox.public_key)), str(stored_secrets["webhook_secret"]))
        else:
            channel.delete_webhook()  # getUpdates is refused while a webhook is set
    except ChannelError as exc:
        raise SetupError(f"Telegram refused the {config['mode']} set-up: {exc.reason}", "mode") from exc
    inbox.name = name
    inbox.address = str(bot.get("username") or "")
    inbox.config = config | {"bot_id": bot.get("id")}
    inbox.poll_interval = 10 if config["mode"] == "polling" else None  # chats want quick answers
    inbox.secrets = encrypt_json(settings.secret_key, stored_secrets)
    inbox.credential_state = "ok"
    session.flush()
    return inbox


# -- web chat ------------------------------------------------------------------------------------------------------


def webchat_fields(form: Mapping[str, str]) -> dict[str, Any]:
    origins: list[str] = []
    for value in form.get("origins", "").replace(",", "\n").splitlines():
        if not value.strip():
            continue
        origin = normalise_origin(value)
        if origin is None or urlsplit(value.strip()).path not in ("", "/"):
            raise SetupError(f"“{value.strip()}” is not a web site address like https://shop.example.", "origins")
        if origin not in origins:
            origins.append(origin)
    if not origins:
        raise SetupError("Enter the address of the web site that shows the chat, e.g. https://shop.example.", "origins")
    return {"origins": origins, "merge_contacts": form.get("merge_contacts") in ("1", "on", "true")}


def save_webchat_inbox(
    session: Session,
    settings: Settings,
    name: str,
    config: dict[str, Any],
    *,
    team_id: int | None = None,
    inbox: Inbox | None = None,
) -> tuple[Inbox, str | None]:
    """Create (or update) a web chat inbox; a new one returns its signing secret (shown once), else None."""
    new_secret = None
    if inbox is None:
        new_secret = secrets.token_urlsafe(32)
        inbox = Inbox(
            channel="webchat",
            team_id=team_id,
            public_key=secrets.token_urlsafe(16),
            cursor={},
            secrets=encrypt_json(settings.secret_key, {"secret": new_secret}),
        )
        session.add(inbox)
    inbox.name = name
    inbox.address = urlsplit(config["origins"][0]).hostname or ""
    inbox.config = (inbox.config or {}) | config
    session.flush()
    return inbox, new_secret


def widget_snippet(settings: Settings, inbox: Inbox) -> str:
    from web.cli_webchat import snippet

    return snippet(settings, str(inbox.public_key))


# -- Instagram -----------------------------------------------------------------------------------------------------


def instagram_fields(
    form: Mapping[str, str], stored_secrets: Mapping[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    profile = normalize_username(form.get("profile", ""))
    if not profile:
        raise SetupError("Enter the shop's Instagram user name, e.g. @myshop.", "profile")
    stored = dict(stored_secrets or {})
    config: dict[str, Any] = {"profile": profile, "backfill_days": 7, "mode": "instaloader"}
    if form.get("mode") == "graph":
        config["mode"] = "graph"
        config["ig_user_id"] = form.get("ig_user_id", "").strip()
        if not config["ig_user_id"].isdigit():
            raise SetupError("The Instagram account id is a number (Meta's app dashboard shows it).", "ig_user_id")
        base = form.get("graph_api_base", "").strip()
        if base:
            config["graph_api_base"] = base.rstrip("/")
        for key, label in (("access_token", "access token"), ("app_secret", "app secret")):
            if form.get(key, "").strip():
                stored[key] = form[key].strip()
            if not stored.get(key):
                raise SetupError(f"Enter the Graph API {label}.", key)
        stored.setdefault("verify_token", secrets.token_urlsafe(24))
    return config, stored


def try_instagram(config: Mapping[str, Any], stored_secrets: Mapping[str, Any]) -> ConnectionResult:
    """Graph API mode: read the account with the token. Polling mode has nothing to sign in to here."""
    if config.get("mode") != "graph":
        return ConnectionResult(
            summary=f"Will watch @{config['profile']}. Comments need a logged-in session: add one with "
            "`helpline inbox add instagram --update --login USER --session-file F`."
        )
    from connectors.instagram import DEFAULT_GRAPH_BASE, DEFAULT_GRAPH_VERSION

    base = str(config.get("graph_api_base") or DEFAULT_GRAPH_BASE).rstrip("/")
    url = f"{base}/{DEFAULT_GRAPH_VERSION}/{config['ig_user_id']}"
    try:
        resp = requests.get(
            url,
            params={"fields": "username"},
            timeout=TEST_TIMEOUT,
            headers={"Authorization": f"Bearer {stored_secrets.get('access_token', '')}"},
        )
    except requests.RequestException as exc:
        raise SetupError(f"Host unreachable: the Graph API at {base} did not answer ({type(exc).__name__}).") from exc
    if resp.status_code in (401, 403) or resp.status_code == 400 and "OAuth" in resp.text:
        raise SetupError(
            "Bad access token: the Graph API refused it. Create a new one in Meta's dashboard.", "access_token"
        )
    if resp.status_code != 200:
        raise SetupError(f"The Graph API answered {resp.status_code}: {resp.text[:200]}", "ig_user_id")
    return ConnectionResult(
        summary=f"The Graph API knows the account {resp.json().get('username', config['ig_user_id'])}."
    )


def save_instagram_inbox(
    session: Session,
    settings: Settings,
    name: str,
    config: dict[str, Any],
    stored_secrets: dict[str, Any],
    *,
    inbox: Inbox | None = None,
    poll_interval: int | None = None,
) -> Inbox:
    """Create or update an Instagram inbox (the settings pages and ``helpline inbox add instagram``)."""
    if inbox is None:
        inbox = Inbox(channel="instagram", public_key=secrets.token_urlsafe(24), cursor={}, poll_interval=300)
        session.add(inbox)
    inbox.name = name
    inbox.address = str(config["profile"])
    inbox.config = (inbox.config or {}) | config
    inbox.secrets = encrypt_json(settings.secret_key, stored_secrets)
    if poll_interval is not None:
        inbox.poll_interval = poll_interval
    cursor = dict(inbox.cursor or {})
    if cursor.pop("backoff", None) is not None:  # new credentials: try them at the next poll
        inbox.cursor = cursor
    inbox.credential_state = "ok"
    session.flush()
    return inbox


# -- one entry point for forms ------------------------------------------------------------------------------------


@dataclass
class Connected:
    inbox: Inbox
    test: ConnectionResult
    widget_secret: str | None = None


def connect_from_form(
    session: Session,
    settings: Settings,
    kind: str,
    form: Mapping[str, str],
    *,
    inbox: Inbox | None = None,
    test_only: bool = False,
) -> Connected | ConnectionResult:
    """Validate the form of a ``kind`` inbox, test it live and (unless ``test_only``) save it; SetupError if not.

    With ``inbox`` given, its stored secrets are kept where the form leaves a secret field empty (secrets are
    write-only in the UI).
    """
    if kind not in CHANNELS:
        raise SetupError("Choose a kind of channel.", "kind")
    name = check_name(session, form.get("name", ""), inbox_id=inbox.id if inbox else None)
    stored = decrypt_json(settings.secret_key, inbox.secrets) if inbox is not None else {}
    if kind == "email":
        config, new_secrets = email_fields(form, stored)
        result = try_email(config, new_secrets)
        if test_only:
            return result
        return Connected(save_email_inbox(session, settings, name, config, new_secrets, inbox=inbox), result)
    if kind == "telegram":
        config, new_secrets = telegram_fields(form, stored)
        result = try_telegram(config, new_secrets)
        if test_only:
            return result
        saved = save_telegram_inbox(session, settings, name, config, new_secrets, result.facts, inbox=inbox)
        return Connected(saved, result)
    if kind == "instagram":
        config, new_secrets = instagram_fields(form, stored)
        result = try_instagram(config, new_secrets)
        if test_only:
            return result
        return Connected(save_instagram_inbox(session, settings, name, config, new_secrets, inbox=inbox), result)
    config = webchat_fields(form)
    result = ConnectionResult(summary=f"The chat will show on {', '.join(config['origins'])}.")
    if test_only:
        return result
    saved_chat, widget_secret = save_webchat_inbox(session, settings, name, config, inbox=inbox)
    return Connected(saved_chat, result, widget_secret)
