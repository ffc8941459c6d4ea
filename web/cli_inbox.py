"""Command-line management of email inboxes: ``helpline inbox add email|sync|reprocess`` and ``helpline export``.

The password never appears on the command line (it would land in shell history and ``ps``): it is read from
the environment variable named by ``--password-env`` and stored encrypted (inbox.crypto).
"""

from __future__ import annotations

import importlib
import os
import sys

import click
from sqlalchemy import select

from connectors.errors import ChannelError
from connectors.imap import AFTER_IMPORT, SECURITY_MODES, check_security
from inbox.config import Settings
from inbox.crypto import encrypt_json
from inbox.models import Inbox, Message
from inbox.runtime import Storage


def _storage() -> Storage:
    return Storage.from_settings(Settings.from_env())


def _publish_to_browsers(storage: Storage) -> bool:
    """Like a worker, publish this command's committed events: to agents' browsers through the Socket.IO message
    queue, and to automation rules, webhooks and the outbox as jobs. Only when Redis answers: a one-shot sync must
    work (and not log a traceback per message) when Redis is down, and it never starts the embedded Redis."""
    from redis import Redis
    from redis.exceptions import RedisError

    from workers import runtime
    from workers.embedded_redis import running_url

    url = storage.settings.redis_url or running_url(storage.settings)
    if not url:
        return False
    try:
        Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2).ping()
    except (RedisError, OSError):
        return False
    runtime.configure(storage.settings, url)
    runtime.install_publishers()
    return True


def _find_inbox(storage: Storage, name: str) -> int:
    with storage.factory() as session:
        inbox_id = session.scalar(select(Inbox.id).where(Inbox.name == name))
    if inbox_id is None:
        raise click.ClickException(f"no inbox named {name!r}")
    return inbox_id


class LazyGroup(click.Group):
    """A group whose subcommands named in ``lazy`` ("name" -> "module:attribute") are imported only when used, so
    that ``helpline inbox sync`` does not pay for importing every channel's library (Telegram, Flask, ...)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.lazy: dict[str, str] = {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            module, _, attribute = self.lazy[cmd_name].partition(":")
            command = getattr(importlib.import_module(module), attribute)
            if not isinstance(command, click.Command):
                raise TypeError(f"{self.lazy[cmd_name]} is not a click command")
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group("inbox")
def inbox_group() -> None:
    """Add and sync channel inboxes."""


@inbox_group.group("add", cls=LazyGroup)
def inbox_add() -> None:
    """Add an inbox."""


@inbox_add.command("email")
@click.option("--name", required=True)
@click.option("--address", required=True, help="The inbox's own address (replies go out from it).")
@click.option("--imap-host", required=True)
@click.option("--imap-port", type=int, default=None, help="Default: 993 for ssl, 143 otherwise.")
@click.option("--imap-security", type=click.Choice(SECURITY_MODES), default="ssl", show_default=True)
@click.option("--username", required=True)
@click.option("--password-env", required=True, metavar="VAR", help="Environment variable holding the password.")
@click.option("--smtp-host", default=None)
@click.option("--smtp-port", type=int, default=None)
@click.option("--smtp-security", type=click.Choice(SECURITY_MODES), default="starttls", show_default=True)
@click.option("--smtp-username", default=None, help="Default: the IMAP username.")
@click.option("--folder", "folders", multiple=True, help="Folder to watch (repeatable). Default: INBOX.")
@click.option("--after-import", type=click.Choice(AFTER_IMPORT), default="leave", show_default=True)
@click.option("--move-to", default=None, help="Folder for --after-import move.")
@click.option("--alias", "aliases", multiple=True, help="Another address of this inbox (repeatable).")
@click.option("--ca-file", default=None, help="Extra CA bundle to trust (self-signed servers).")
def inbox_add_email(
    name: str,
    address: str,
    imap_host: str,
    imap_port: int | None,
    imap_security: str,
    username: str,
    password_env: str,
    smtp_host: str | None,
    smtp_port: int | None,
    smtp_security: str,
    smtp_username: str | None,
    folders: tuple[str, ...],
    after_import: str,
    move_to: str | None,
    aliases: tuple[str, ...],
    ca_file: str | None,
) -> None:
    """Add an email inbox (IMAP in, SMTP out)."""
    password = os.environ.get(password_env)
    if not password:
        raise click.ClickException(f"environment variable {password_env} is empty or unset")
    if after_import == "move" and not move_to:
        raise click.ClickException("--after-import move needs --move-to FOLDER")
    try:
        check_security(imap_host, imap_security)
        if smtp_host:
            check_security(smtp_host, smtp_security)
    except ChannelError as exc:
        raise click.ClickException(exc.reason) from exc
    config = {
        "imap_host": imap_host,
        "imap_port": imap_port or (993 if imap_security == "ssl" else 143),
        "imap_security": imap_security,
        "username": username,
        "folders": list(folders) or ["INBOX"],
        "after_import": after_import,
        "move_to": move_to,
        "aliases": [a.lower() for a in aliases],
        "address": address,
        "smtp_host": smtp_host,
        "smtp_port": smtp_port,
        "smtp_security": smtp_security,
        "smtp_username": smtp_username,
        "ca_file": ca_file,
    }
    storage = _storage()
    try:
        with storage.factory() as session:
            if session.scalar(select(Inbox.id).where(Inbox.name == name)) is not None:
                raise click.ClickException(f"an inbox named {name!r} exists already")
            inbox = Inbox(name=name, channel="email", address=address.lower(), config=config)
            inbox.secrets = encrypt_json(storage.settings.secret_key, {"password": password})
            session.add(inbox)
            session.commit()
            click.echo(f"added email inbox {name!r} (id {inbox.id}) for {address}")
    finally:
        storage.dispose()


@inbox_group.command("sync")
@click.argument("name")
def inbox_sync(name: str) -> None:
    """Fetch what is new in one inbox once, in the foreground, and print what was done."""
    from workers.sync import sync_inbox  # whatever the inbox's channel
    from workers.telegram_sync import SyncResult as TelegramResult
    from workers.telegram_updates import process_pending

    storage = _storage()
    live = _publish_to_browsers(storage)
    try:
        inbox_id = _find_inbox(storage, name)
        result = sync_inbox(storage, inbox_id)
        if isinstance(result, TelegramResult):  # and the webhook updates no worker has stored yet
            result = process_pending(storage, inbox_id, result)
    except ChannelError as exc:
        click.echo(f"sync of {name!r} failed: {exc.reason}", err=True)
        sys.exit(1)
    finally:
        storage.dispose()
    click.echo(f"{name}: {result if result is not None else 'nothing to fetch (this channel pushes its messages)'}")
    if not live:
        click.echo("(Redis is not reachable: agents see the new messages on their next page load, automation "
                   "rules and webhooks did not run for them)", err=True)


@inbox_group.command("reprocess")
@click.argument("name")
def inbox_reprocess(name: str) -> None:
    """Try the inbox's quarantined mail or Telegram updates again (after a fix); those that now import are
    marked resolved."""
    from connectors.errors import ChannelError

    storage = _storage()
    try:
        inbox_id = _find_inbox(storage, name)
        with storage.factory() as session:
            channel = session.scalar(select(Inbox.channel).where(Inbox.id == inbox_id))
        # Each channel's module only when needed: the Telegram one imports python-telegram-bot.
        module = importlib.import_module("workers.telegram_sync" if channel == "telegram" else "workers.mail_sync")
        done, left = module.reprocess_quarantine(storage, inbox_id)
    except ChannelError as exc:
        raise click.ClickException(exc.reason) from exc
    finally:
        storage.dispose()
    click.echo(f"{name}: {done} imported, {left} still quarantined")


@click.group("export")
def export_group() -> None:
    """Export data for other tools."""


@export_group.command("message-map")
@click.option("--inbox", "inbox_name", required=True)
def export_message_map(inbox_name: str) -> None:
    """Print "<Message-ID>\\t<ticket id>" for every stored inbound message of the inbox."""
    storage = _storage()
    try:
        inbox_id = _find_inbox(storage, inbox_name)
        with storage.factory() as session:
            rows = session.execute(
                select(Message.message_id_header, Message.ticket_id)
                .where(Message.inbox_id == inbox_id, Message.direction == "inbound")
                .where(Message.message_id_header.is_not(None))
                .order_by(Message.id)
                .execution_options(yield_per=2000)  # streamed: flat memory on large inboxes
            )
            out = sys.stdout
            for message_id, ticket_id in rows:
                out.write(f"{message_id}\t{ticket_id}\n")
    finally:
        storage.dispose()
