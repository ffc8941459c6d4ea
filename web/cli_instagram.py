"""``helpline inbox add instagram``: watch a shop's Instagram profile, optionally answering via the Graph API.

Instaloader sessions: https://instaloader.github.io/troubleshooting.html#login-error and
https://instaloader.github.io/as-module.html (``Instaloader.load_session_from_file``, ``save_session``). The
login is never made here and no password is ever asked for: the admin logs in once with ``instaloader --login
USER`` (which handles 2FA and checkpoints interactively) and hands us the session file it wrote; its cookies are
stored encrypted in the inbox's secrets. ``--update`` replaces the session of an existing inbox (after Instagram
logged it out) and clears its backoff.

Graph API mode (business accounts): https://developers.facebook.com/docs/instagram-platform/webhooks. Tokens are
read from environment variables, never from the command line (other users can read process lists).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

import click
from sqlalchemy import select

from connectors.instagram import normalize_username
from inbox.config import Settings
from inbox.crypto import decrypt_json
from inbox.models import Inbox

DEFAULT_POLL_INTERVAL = 300  # seconds: a few minutes keeps well inside Instagram's limits


def webhook_url(settings: Settings, public_key: str) -> str:
    """Where Meta POSTs this inbox's webhooks (web.instagram_webhook)."""
    return f"{settings.base_url.rstrip('/')}/webhooks/instagram/{public_key}"


def read_session_file(login: str, path: Path) -> dict[str, Any]:
    """The cookie dict of an instaloader session file (``instaloader --login USER`` writes one)."""
    import instaloader

    loader = instaloader.Instaloader(quiet=True)
    try:
        loader.load_session_from_file(login, str(path))
    except Exception as exc:  # noqa: BLE001 - a pickle of anything may fail in any way; say which file
        raise click.ClickException(f"{path} is not an instaloader session file ({exc!r})") from exc
    data = dict(loader.save_session())
    loader.close()  # type: ignore[no-untyped-call]
    if not data.get("sessionid"):
        raise click.ClickException(f"{path} holds no logged-in session (no sessionid cookie)")
    return data


def _env(name: str | None) -> str:
    if not name:
        return ""
    value = os.environ.get(name, "").strip()
    if not value:
        raise click.ClickException(f"environment variable {name} is empty or not set")
    return value


@click.command("instagram")
@click.option("--name", required=True, help="Name of the inbox, e.g. 'Shop Instagram'.")
@click.option("--profile", required=True, help="The shop's Instagram username (with or without @).")
@click.option("--login", default=None, metavar="USER", help="Instagram account the session belongs to.")
@click.option("--session-file", "session_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, metavar="F", help="Session file written by 'instaloader --login USER'.")
@click.option("--poll-interval", "poll_interval", type=click.IntRange(min=60), default=DEFAULT_POLL_INTERVAL,
              show_default=True, help="Seconds between two polls of the profile.")
@click.option("--backfill-days", "backfill_days", type=click.FloatRange(min=0), default=7, show_default=True,
              help="First poll: comments older than this are marked seen, not turned into tickets.")
@click.option("--graph", is_flag=True, help="Business account: receive Graph API webhooks and reply through them.")
@click.option("--ig-user-id", "ig_user_id", default=None, help="Graph API: the Instagram professional account id.")
@click.option("--access-token-env", "access_token_env", default=None, metavar="VAR",
              help="Graph API: environment variable holding the access token.")
@click.option("--app-secret-env", "app_secret_env", default=None, metavar="VAR",
              help="Graph API: environment variable holding the Meta app secret (checks webhook signatures).")
@click.option("--graph-api-base", "graph_api_base", default=None, metavar="URL",
              help="Graph API base URL (default https://graph.facebook.com).")
@click.option("--update", is_flag=True, help="Replace the session (and Graph settings) of an existing inbox.")
def add_instagram(name: str, profile: str, login: str | None, session_file: Path | None, poll_interval: int,
                  backfill_days: float, graph: bool, ig_user_id: str | None, access_token_env: str | None,
                  app_secret_env: str | None, graph_api_base: str | None, update: bool) -> None:
    """Add an Instagram profile as an inbox (comments, answers and tags; replies by hand or via the Graph API)."""
    from web.channel_setup import save_instagram_inbox
    from web.cli import load_storage

    shop = normalize_username(profile)
    if not shop:
        raise click.ClickException("--profile is empty")
    if bool(login) != bool(session_file):
        raise click.ClickException("--login and --session-file go together (run 'instaloader --login USER' first)")
    session = read_session_file(normalize_username(login or ""), session_file) if login and session_file else None
    new_secrets: dict[str, Any] = {}
    if session is not None:
        new_secrets |= {"login": normalize_username(login or ""), "session": session}
    config: dict[str, Any] = {"profile": shop, "backfill_days": backfill_days}
    if graph or not update:
        config["mode"] = "graph" if graph else "instaloader"  # --update without --graph keeps the mode
    if graph:
        if not (ig_user_id and access_token_env and app_secret_env):
            raise click.ClickException("--graph needs --ig-user-id, --access-token-env and --app-secret-env")
        config["ig_user_id"] = ig_user_id
        if graph_api_base:
            config["graph_api_base"] = graph_api_base.rstrip("/")
        new_secrets |= {"access_token": _env(access_token_env), "app_secret": _env(app_secret_env)}
    storage = load_storage(migrate=True)
    try:
        with storage.factory() as db:
            inbox = db.scalar(select(Inbox).where(Inbox.name == name))
            if inbox is not None and not update:
                raise click.ClickException(f"an inbox named {name!r} already exists (--update replaces its session)")
            if inbox is None and update:
                raise click.ClickException(f"no inbox named {name!r} to update")
            if inbox is not None and inbox.channel != "instagram":
                raise click.ClickException(f"inbox {name!r} is a {inbox.channel} inbox, not an Instagram one")
            stored = {} if inbox is None else decrypt_json(storage.settings.secret_key, inbox.secrets)
            merged = {**stored, **new_secrets}
            if graph:
                merged.setdefault("verify_token", secrets.token_urlsafe(24))
            # The same inbox row as the browser's set-up (web.channel_setup), with the CLI's poll interval.
            inbox = save_instagram_inbox(db, storage.settings, name, config, merged, inbox=inbox,
                                         poll_interval=poll_interval)
            db.commit()
            inbox_id, public_key = inbox.id, str(inbox.public_key)
            verify_token = str(merged.get("verify_token") or "")
    finally:
        storage.dispose()
    done = "updated" if update else "added"
    click.echo(f"inbox {name!r} (id {inbox_id}) {done}: Instagram profile @{shop}, polled every {poll_interval} s")
    if session is None and not update:
        click.echo("no login stored: Instagram shows comments to logged-in sessions only; add one with --update "
                   "--login USER --session-file F")
    if graph:
        click.echo(f"Graph API webhook: {webhook_url(storage.settings, public_key)} (verify token {verify_token})")
