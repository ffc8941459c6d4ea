"""``helpline inbox add telegram``: configure a bot as an inbox, checking its token with getMe first.

Bot API pages: https://core.telegram.org/bots/api#getme, #setwebhook and #deletewebhook.
The token is read from an environment variable (never a command-line argument, which other users of the machine
can see in the process list) and stored encrypted with the inbox's secrets.
"""

from __future__ import annotations

import os

import click
from sqlalchemy import select

from connectors.errors import ChannelError
from connectors.telegram import TelegramChannel
from inbox.config import Settings
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
    channel = TelegramChannel(config, {"token": token})  # getMe first: a bad token is refused before anything
    try:
        bot = channel.get_me()
    except ChannelError as exc:
        raise click.ClickException(f"Telegram did not accept the bot: {exc.reason}") from exc
    from web.channel_setup import SetupError, save_telegram_inbox

    storage = load_storage(migrate=True)
    try:
        with storage.factory() as session:
            if session.scalar(select(Inbox.id).where(Inbox.name == name)) is not None:
                raise click.ClickException(f"an inbox named {name!r} already exists")
            stored_secrets: dict[str, object] = {"token": token}
            try:  # the same set-up as the browser's (web.channel_setup): webhook or polling, then the inbox row
                inbox = save_telegram_inbox(session, storage.settings, name, config, stored_secrets, bot)
            except SetupError as exc:
                raise click.ClickException(exc.reason) from exc
            session.commit()
            inbox_id = inbox.id
            url = webhook_url(storage.settings, str(inbox.public_key))
    finally:
        storage.dispose()
    click.echo(f"inbox {name!r} (id {inbox_id}) added: bot @{bot.get('username')} ({bot.get('first_name')}), {mode}")
    if mode == "webhook":
        click.echo(f"Telegram will POST updates to {url}")
