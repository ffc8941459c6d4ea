"""``helpline backup PATH`` and ``helpline restore PATH``: a consistent snapshot of a running install, and back.

The domain work is in inbox.backup; these commands read the environment, print what was done and its warnings.
"""

from __future__ import annotations

from pathlib import Path

import click

from inbox.backup import BackupError, backup, restore
from inbox.config import Settings


@click.command("backup")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def backup_command(path: Path) -> None:
    """Write a snapshot of the database, attachments and secret key to the archive PATH (Helpline may run)."""
    try:
        report = backup(Settings.from_env(), path)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    counts = ", ".join(f"{n} {table}" for table, n in report.counts.items())
    click.echo(
        f"backup written to {report.path}: {report.dialect} database at {report.revision} ({counts}), "
        f"{report.blobs} stored files"
    )
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)


@click.command("restore")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def restore_command(path: Path) -> None:
    """Bring the backup archive PATH back into this (empty) install; a non-empty install is refused.

    Stop Helpline's processes first (web, workers, scheduler): the database is replaced underneath them.
    """
    try:
        report = restore(Settings.from_env(), path, warn=lambda m: None)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    counts = ", ".join(f"{n} {table}" for table, n in report.counts.items())
    click.echo(
        f"restored {path}: {report.dialect} database now at {report.revision} ({counts}), {report.blobs} stored files"
    )
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)


BACKUP_COMMANDS = [backup_command, restore_command]
