"""``helpline inbox add webchat``: a website chat inbox, and the snippet to paste into the shop's pages.

The inbox gets a public key (in the snippet) and a secret (stored encrypted; printed once) with which the shop's
server may sign logged-in customers (connectors.webchat.user_signature).
"""

from __future__ import annotations

from urllib.parse import urlsplit

import click
from sqlalchemy import select

from connectors.webchat import normalise_origin
from inbox.config import Settings
from inbox.models import Inbox, Team
from web.channel_setup import save_webchat_inbox


def snippet(settings: Settings, public_key: str) -> str:
    return f'<script src="{settings.base_url.rstrip("/")}/widget.js" data-inbox="{public_key}" async></script>'


def _origins(values: tuple[str, ...]) -> list[str]:
    origins: list[str] = []
    for value in values:
        origin = normalise_origin(value)
        if origin is None or urlsplit(value.strip()).path not in ("", "/"):
            raise click.BadParameter(f"{value!r} is not an origin like https://shop.example", param_hint="--origin")
        if origin not in origins:
            origins.append(origin)
    return origins


@click.command("webchat")
@click.option("--name", required=True, help="Name of the inbox, e.g. 'Website chat'.")
@click.option("--origin", "origins", multiple=True, required=True, metavar="URL",
              help="A website allowed to show the widget, e.g. https://shop.example (repeatable).")
@click.option("--team", default=None, help="The team that answers these chats.")
@click.option("--merge-contacts/--no-merge-contacts", default=False, show_default=True,
              help="Join a visitor whose email is a known customer's to that contact.")
@click.option("--email-inbox", default=None, metavar="NAME",
              help="The email inbox that answers visitors who left the chat (offline replies).")
def add_webchat(
    name: str, origins: tuple[str, ...], team: str | None, merge_contacts: bool, email_inbox: str | None
) -> None:
    """Add a website chat inbox and print the snippet to paste into the site's pages."""
    from web.cli import load_storage

    allowed = _origins(origins)
    storage = load_storage(migrate=True)
    try:
        with storage.factory() as session:
            if session.scalar(select(Inbox.id).where(Inbox.name == name)) is not None:
                raise click.ClickException(f"an inbox named {name!r} already exists")
            team_id = None
            if team is not None:
                team_id = session.scalar(select(Team.id).where(Team.name == team))
                if team_id is None:
                    raise click.ClickException(f"no team named {team!r}")
            config: dict[str, object] = {"origins": allowed, "merge_contacts": merge_contacts}
            if email_inbox is not None:
                email_id = session.scalar(
                    select(Inbox.id).where(Inbox.name == email_inbox, Inbox.channel == "email")
                )
                if email_id is None:
                    raise click.ClickException(f"no email inbox named {email_inbox!r}")
                config["email_inbox_id"] = email_id
            # The same set-up as the browser's (web.channel_setup.save_webchat_inbox).
            inbox, secret = save_webchat_inbox(session, storage.settings, name, config, team_id=team_id)
            session.commit()
            assert inbox.public_key is not None
            click.echo(f"added website chat inbox {name!r} (id {inbox.id}) for {', '.join(allowed)}")
            click.echo("Paste this into the pages of your site, before </body>:")
            click.echo("")
            click.echo(snippet(storage.settings, inbox.public_key))
            click.echo("")
            click.echo(f"Secret for signing signed-in customers (shown once): {secret}")
            if email_inbox is not None:
                click.echo(f"Visitors who leave get replies by email from {email_inbox!r}.")
    finally:
        storage.dispose()
