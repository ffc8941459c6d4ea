"""``helpline inbox add telegram``: configure a bot as an inbox, checking its token with getMe first.

Bot API pages: https://core.telegram.org/bots/api#getme, #setwebhook and #deletewebhook.
The token is read from an environment variable (never a command-line argument, which other users of the machine
can see in the process list) and stored encrypted with the inbox's secrets.
"""

from __future__ import annotations

import os
import secrets

import click
from sqlalchemy import select

from connectors.errors import ChannelError
from connectors.telegram import TelegramChannel
from inbox.config import Settings
from inbox.crypto import encrypt_json
from inbox.models import Inbox


def webhook_url(settings: Settings, public_key: str) -> str:
    """Where Telegram POSTs this inbox's updates (web.webhook_views)."""
    return f"{settings.base_url.rstrip('/')}/webhooks/telegram/{public_key}"


@click.command("telegram")
@click.option("--name", required=True, help="Name of the inbox, e.g. 'Shop bot'.")
@click.option("--token-env", "token_env", required=True, metavar="VAR",
              help="Environment variable that holds the bot token from @BotFather.")
@click.option("--mode", type=click.Choice(["polling", "webhook"]), default="polling", show_default=True,
              help="polling: workers fetch updates (getUpdates); webhook: Telegram POSTs them to HELPLINE_BASE_URL.")
@click.option("--api-base", "api_base", default=None, metavar="URL",
              help="A self-hosted Telegram Bot API server (default https://api.telegram.org).")
@click.option("--groups/--no-groups", default=False, show_default=True,
              help="Also take messages from group chats the bot is in.")
def add_telegram(name: str, token_env: str, mode: str, api_base: str | None, groups: bool) -> None:
    """Add a Telegram bot as an inbox."""
    from web.cli import load_storage

    token = os.environ.get(token_env, "").strip()
    if not token:
        raise click.ClickException(f"environment variable {token_env} is empty or not set")
    config: dict[str, object] = {"mode": mode, "groups": groups}
    if api_base:
        config["api_base"] = api_base.rstrip("/")
    channel = TelegramChannel(config, {"token": token})
    try:
        bot = channel.get_me()
    except ChannelError as exc:
        raise click.ClickException(f"Telegram did not accept the bot: {exc.reason}") from exc
    storage = load_storage(migrate=True)
    try:
        with storage.factory() as session:
            if session.scalar(select(Inbox.id).where(Inbox.name == name)) is not None:
                raise click.ClickException(f"an inbox named {name!r} already exists")
            stored_secrets: dict[str, object] = {"token": token}
            public_key = secrets.token_urlsafe(24)
            try:
                if mode == "webhook":
                    # Telegram allows A-Z, a-z, 0-9, _ and - in the secret: exactly token_urlsafe's alphabet.
                    stored_secrets["webhook_secret"] = secrets.token_urlsafe(32)
                    url = webhook_url(storage.settings, public_key)
                    channel.set_webhook(url, str(stored_secrets["webhook_secret"]))
                else:
                    channel.delete_webhook()  # getUpdates is refused while a webhook is set
            except ChannelError as exc:
                raise click.ClickException(f"Telegram refused the {mode} set-up: {exc.reason}") from exc
            inbox = Inbox(
                name=name,
                channel="telegram",
                address=str(bot.get("username") or ""),
                public_key=public_key,
                config=config | {"bot_id": bot.get("id")},
                poll_interval=10 if mode == "polling" else None,  # chats want quick answers; getUpdates is cheap
                secrets=encrypt_json(storage.settings.secret_key, stored_secrets),
            )
            session.add(inbox)
            session.commit()
            inbox_id = inbox.id
    finally:
        storage.dispose()
    click.echo(f"inbox {name!r} (id {inbox_id}) added: bot @{bot.get('username')} ({bot.get('first_name')}), {mode}")
    if mode == "webhook":
        click.echo(f"Telegram will POST updates to {url}")
