"""The ``helpline`` command: database, users, tokens, demo data and the web process.

Process commands (run, worker, scheduler, mail, status) live in web/cli_processes.py; channel commands
(inbox add/sync, export) in web/cli_inbox.py.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from inbox.config import Settings
from inbox.errors import HelplineError
from inbox.runtime import Storage


def load_storage(*, migrate: bool = False) -> Storage:
    settings = Settings.from_env().with_secret()  # creates the data folder
    if migrate:
        from inbox.migrate import upgrade  # Alembic: imported only by the commands that migrate

        upgrade(settings.sqlalchemy_url)
    return Storage.from_settings(settings)


@click.group()
def cli() -> None:
    """Helpline: an omnichannel inbox and support ticketing system."""


@cli.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply Alembic migrations up to REVISION."""
    from inbox.migrate import upgrade

    settings = Settings.from_env().with_secret()  # creates the data folder the SQLite file goes in
    upgrade(settings.sqlalchemy_url, revision)
    click.echo(f"database at {_safe_url(settings.sqlalchemy_url)} is at {revision}")
    if revision == "head":
        _fill_report_summary(settings)


def _fill_report_summary(settings: Settings) -> None:
    """An upgrade from before the report summary leaves it empty while tickets exist (a migration never imports app
    code): fill it once, as ``helpline reports rebuild`` does, so that the release step is the only step. Likewise
    when it lacks the backlog rows (``report_open``: none although a ticket is open)."""
    from sqlalchemy import select

    from inbox.models import OPEN_STATUSES, Ticket
    from inbox.report_models import ReportOpen, ReportSample
    from tickets import summary

    storage = Storage.from_settings(settings)
    try:
        with storage.factory() as session:
            live = Ticket.merged_into_id.is_(None)
            empty = session.scalar(select(ReportSample.ticket_id).limit(1)) is None
            no_backlog = session.scalar(select(ReportOpen.ticket_id).limit(1)) is None and (
                session.scalar(select(Ticket.id).where(live, Ticket.status.in_(OPEN_STATUSES)).limit(1)) is not None
            )
            if (empty or no_backlog) and session.scalar(select(Ticket.id).limit(1)) is not None:
                rows = summary.rebuild_all(session)
                session.commit()
                click.echo(f"report summary filled from the tickets' history: {rows} rows")
    finally:
        storage.dispose()


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@cli.command("create-admin")
@click.option("--email", required=True)
@click.option("--password", required=True, help="At least 8 characters.")
@click.option("--name", default="")
def create_admin(email: str, password: str, name: str) -> None:
    """Create an admin user."""
    from inbox.users import create_user

    storage = load_storage(migrate=True)
    with storage.factory() as session:
        user = create_user(session, email, password, role="admin", name=name)
        session.commit()
        click.echo(f"admin {user.email} created (id {user.id})")


@cli.group()
def reports() -> None:
    """Team-lead reports."""


@reports.command("rebuild")
def reports_rebuild() -> None:
    """Recompute the report summary of every ticket (after upgrading to it, a bulk import or a restore)."""
    from tickets import summary

    storage = load_storage(migrate=True)
    with storage.factory() as session:
        rows = summary.rebuild_all(session)
        session.commit()
    click.echo(f"report summary rebuilt: {rows} rows")
    storage.dispose()


@cli.group()
def token() -> None:
    """API tokens."""


@token.command("create")
@click.option("--email", required=True, help="The user the token acts as.")
@click.option("--name", default="cli", show_default=True)
def token_create(email: str, name: str) -> None:
    """Create an API token and print it (it is shown only once)."""
    from inbox.users import create_token, find_user_by_email

    storage = load_storage(migrate=True)
    with storage.factory() as session:
        user = find_user_by_email(session, email)
        if user is None:
            raise click.ClickException(f"no user with email {email}")
        value = create_token(session, user, name)
        session.commit()
    click.echo(value)


@cli.command()
def demo() -> None:
    """Create the demo workspace: a login, inboxes on four channels, customers and conversations (idempotent)."""
    from web.demo import DEMO_EMAIL, DEMO_PASSWORD, load_demo

    storage = load_storage(migrate=True)
    with storage.factory() as session:
        created = load_demo(session)
        session.commit()
    if created:
        click.echo(f"demo data created; sign in as {DEMO_EMAIL} / {DEMO_PASSWORD}")
    else:
        click.echo(f"demo data already present; sign in as {DEMO_EMAIL} / {DEMO_PASSWORD}")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--threads", default=100, show_default=True, type=int)
def web(host: str, port: int, threads: int) -> None:
    """Serve the web app (one threaded process: Socket.IO needs sticky sessions)."""
    from inbox.migrate import upgrade

    settings = Settings.from_env().with_secret()
    upgrade(settings.sqlalchemy_url)
    redis_url = settings.redis_url or _embedded_redis(settings)
    from web import create_app

    app = create_app(settings, redis_url=redis_url)
    serve(app, host, port, threads)


def _embedded_redis(settings: Settings) -> str:
    from workers.embedded_redis import ensure_redis

    return ensure_redis(settings)


def serve(app: Any, host: str, port: int, threads: int) -> None:
    from gunicorn.app.base import BaseApplication

    class _Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", 1)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("threads", threads)
            self.cfg.set("timeout", 120)
            self.cfg.set("accesslog", "-")

        def load(self) -> Any:
            return app

    _Server().run()


def _register_optional() -> None:
    """Channel and process commands (separate modules so each stays small). The ``inbox add`` commands of the
    chat channels are imported only when run: their libraries cost more to import than a mail sync of 100 mails."""
    from web import cli_inbox, cli_processes

    cli_inbox.inbox_add.lazy.update(
        telegram="web.cli_telegram:add_telegram",
        webchat="web.cli_webchat:add_webchat",
        instagram="web.cli_instagram:add_instagram",
    )
    cli.add_command(cli_inbox.inbox_group)
    cli.add_command(cli_inbox.export_group)
    for command in cli_processes.PROCESS_COMMANDS:
        cli.add_command(command)
    from web.cli_backup import BACKUP_COMMANDS  # backup PATH, restore PATH (issue 10)

    for command in BACKUP_COMMANDS:
        cli.add_command(command)


def main() -> None:
    _register_optional()
    try:
        cli(standalone_mode=True)
    except HelplineError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
