"""`chainlake db health|backup|restore`, and the checks `db migrate` runs before migrating.

chainlake db health [--json]                 # exit 1 when unreachable, behind, or NOTIFY fails
chainlake db backup [--output data/backups]  # Parquet per table + manifest.json
chainlake db restore DIR [--force]           # replace every row with the backup's
chainlake db migrate --check-only            # what would change; exit 1 when behind
chainlake db migrate                         # backs up first when the database has rows
chainlake db migrate --no-backup | --force   # skip the backup | rebuild an untracked schema

Attached to the `db` group of `cli/commands/db.py` by `attach(db)`.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import psycopg

from chainlake import db_admin
from cli.commands.options import postgres_url, url_option

DEFAULT_BACKUP_DIR = "data/backups"


def _fail(message: str) -> click.ClickException:
    return click.ClickException(message)


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


@click.command()
@url_option
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
def health(url: str | None, as_json: bool) -> None:
    """Check the events database: connection and latency, schema revision, LISTEN/NOTIFY,
    tables, events and deliveries. Exits 1 when something is wrong."""
    try:
        result = db_admin.health(postgres_url(url))
    except (psycopg.Error, db_admin.DbAdminError) as e:
        raise _fail(_one_line(e)) from None
    if as_json:
        click.echo(json.dumps({"ok": result.ok, "problems": result.problems, **result.checks}))
    else:
        c = result.checks
        if c.get("reachable"):
            click.echo(
                f"PostgreSQL {c['server_version']}, {c['database_size']}; connect "
                f"{c['connect_ms']} ms, query {c['query_ms']} ms"
            )
            pending = len(c["pending_migrations"])
            click.echo(
                f"schema: {c['schema_revision'] or 'none'} (head {c['schema_head']}"
                + (f", {pending} pending)" if pending else ", up to date)")
            )
            rt = c["notify_roundtrip_ms"]
            click.echo(f"LISTEN/NOTIFY: {f'{rt} ms' if rt is not None else 'no notification'}")
            if "events" in c:
                click.echo(f"events: {c['events']} (last {c['last_event_at'] or 'never'})")
            if "deliveries" in c:
                d = ", ".join(f"{k} {v}" for k, v in sorted(c["deliveries"].items())) or "none"
                click.echo(f"deliveries: {d}")
    if not result.ok:
        raise _fail("unhealthy: " + "; ".join(result.problems))
    if not as_json:
        click.echo("healthy")


@click.command()
@url_option
@click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_BACKUP_DIR,
    show_default=True,
    help="Folder in which the backup's own folder is created.",
)
def backup(url: str | None, output: Path) -> None:
    """Back up every table of the events database to Parquet (one consistent snapshot)."""
    try:
        directory, manifest = db_admin.backup(postgres_url(url), output)
    except (psycopg.Error, db_admin.DbAdminError, OSError) as e:
        raise _fail(f"backup failed: {_one_line(e)}") from None
    rows = sum(t.rows for t in manifest.tables)
    click.echo(
        f"backed up {len(manifest.tables)} tables, {rows} rows "
        f"(schema {manifest.revision or 'none'}) to {directory}"
    )


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@url_option
@click.option("--force", is_flag=True, help="Replace rows the database already holds.")
def restore(directory: Path, url: str | None, force: bool) -> None:
    """Restore a backup made by `chainlake db backup`: creates and migrates an empty database
    to the backup's revision, then loads every table in one transaction."""
    if not directory.is_dir():
        raise _fail(f"{directory}: no such backup folder")
    try:
        manifest = db_admin.restore(postgres_url(url), directory, force=force)
    except (psycopg.Error, db_admin.DbAdminError, OSError) as e:
        raise _fail(f"restore failed: {_one_line(e)}") from None
    rows = sum(t.rows for t in manifest.tables)
    click.echo(f"restored {len(manifest.tables)} tables, {rows} rows from {directory}")


def before_migrate(
    url: str, revision: str, *, check_only: bool, backup_first: bool, backup_dir: Path, force: bool
) -> bool:
    """What `db migrate` does before upgrading: report (and stop, for --check-only), refuse
    an untracked schema unless --force, back up a database that holds rows. Returns False
    when there is nothing to do."""
    try:
        status = db_admin.migration_status(url, revision)
    except (psycopg.Error, db_admin.DbAdminError) as e:
        raise _fail(_one_line(e)) from None
    where = url.rsplit("@", 1)[-1]
    if check_only:
        if not status.database_exists:
            click.echo(
                f"{where}: database does not exist; {len(status.pending)} migration(s) to apply"
            )
        else:
            click.echo(f"{where}: at {status.current or 'no schema'}, target {status.head}")
        for rev in status.pending:
            click.echo(f"  pending: {rev}")
        if status.untracked_tables:
            click.echo(
                f"  untracked tables (no migration history): {', '.join(status.untracked_tables)}"
            )
        if not status.up_to_date:
            raise _fail(
                f"{len(status.pending)} migration(s) pending"
                + (
                    "; tables without migration history (needs --force)"
                    if status.untracked_tables
                    else ""
                )
            )
        click.echo("up to date")
        return False
    if status.untracked_tables and not force:
        raise _fail(
            f"the database has tables ({', '.join(status.untracked_tables[:5])}) but no migration "
            "history; pass --force to back them up and rebuild the schema"
        )
    if not status.pending and not status.untracked_tables:
        click.echo(f"{where}: already at {status.head}")
        return False
    if status.database_exists and backup_first and db_admin.database_has_rows(url):
        try:
            directory, manifest = db_admin.backup(url, backup_dir, label=f"before-{status.head}")
        except (psycopg.Error, db_admin.DbAdminError, OSError) as e:
            raise _fail(
                f"backup before migrating failed, nothing migrated: {_one_line(e)} "
                "(--no-backup to migrate anyway)"
            ) from None
        click.echo(f"backed up {sum(t.rows for t in manifest.tables)} rows to {directory}")
    if status.untracked_tables and force:
        dropped = db_admin.drop_project_schema(url)
        click.echo(f"--force: dropped {len(dropped)} untracked tables to rebuild them")
    return True


def attach(group: click.Group) -> None:
    """Add the database operations (health, backup, restore) to the `db` command group."""
    for command in (health, backup, restore):
        group.add_command(command)
