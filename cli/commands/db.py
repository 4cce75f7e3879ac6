"""`chainlake db`: the events database (PostgreSQL) schema.

chainlake db migrate              # create the database if needed, upgrade to the latest
chainlake db downgrade            # one revision down (or --revision base for all)
chainlake db current              # the revision the database is at
"""

from __future__ import annotations

from pathlib import Path

import click

from chainlake.events import db as events_db
from cli.commands.options import postgres_url, url_option


@click.group()
def db() -> None:
    """The events database: schema migrations, health, backup and restore."""


@db.command()
@url_option
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@click.option("--check-only", is_flag=True, help="Report pending migrations; change nothing.")
@click.option(
    "--backup/--no-backup",
    "backup_first",
    default=True,
    show_default=True,
    help="Back up to Parquet first when the database holds rows.",
)
@click.option(
    "--backup-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default="data/backups",
    show_default=True,
)
@click.option("--force", is_flag=True, help="Rebuild a schema that has no migration history.")
def migrate(
    url: str | None,
    revision: str,
    check_only: bool,
    backup_first: bool,
    backup_dir: Path,
    force: bool,
) -> None:
    """Create the database if missing and upgrade its schema (--check-only, a
    backup before migrating, --force)."""
    from cli.commands.db_ops import before_migrate

    target = postgres_url(url)
    if not before_migrate(
        target,
        revision,
        check_only=check_only,
        backup_first=backup_first,
        backup_dir=backup_dir,
        force=force,
    ):
        return
    created = events_db.create_database(target)
    events_db.migrate(target, revision, create=False)
    where = target.rsplit("@", 1)[-1]
    click.echo(
        f"{'created and ' if created else ''}migrated {where} to {events_db.current_revision(target)}"
    )


@db.command()
@url_option
@click.option("--revision", default="-1", show_default=True, help="Target revision ('base': all).")
@click.confirmation_option(prompt="Downgrading drops tables and their rows. Continue?")
def downgrade(url: str | None, revision: str) -> None:
    """Step the schema down (drops what the undone revisions created)."""
    target = postgres_url(url)
    events_db.downgrade(target, revision)
    click.echo(f"downgraded to {events_db.current_revision(target) or 'base'}")


@db.command()
@url_option
def current(url: str | None) -> None:
    """Print the schema revision of the database."""
    click.echo(events_db.current_revision(postgres_url(url)) or "base (no schema)")
