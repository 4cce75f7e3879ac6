"""Connections to the events database (PostgreSQL) and its migrations.

Everything takes the URL as an argument; resolving it from `POSTGRES_URL` is the job of
`resources/postgres.py` (Dagster) and of the CLI, so nothing here reads the environment. Unset,
it is the instance's own events database (`chainlake.instance_names.events_postgres_url`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import DictRow, dict_row

# Every connection of the events code returns rows as dicts.
Conn = psycopg.Connection[DictRow]

# Dagster's own storage (dagster-postgres) keeps its revision in `alembic_version`; ours has a
# name of its own so both can share one database.
VERSION_TABLE = "chainlake_alembic_version"
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
NOTIFY_CHANNEL = "new_event"
# The newest revision in migrations/versions (a unit test keeps the two in step), so checking
# that a database is current needs one query, not alembic.
HEAD_REVISION = "0007"

_SCHEME_RE = re.compile(r"^postgres(?:ql)?(?:\+[a-z0-9]+)?://")


def libpq_url(url: str) -> str:
    """The URL in the form libpq (psycopg) accepts: no SQLAlchemy driver suffix."""
    return _SCHEME_RE.sub("postgresql://", url, count=1)


def sqlalchemy_url(url: str) -> str:
    """The URL for SQLAlchemy with the psycopg 3 driver (alembic runs on it)."""
    return _SCHEME_RE.sub("postgresql+psycopg://", url, count=1)


def connect(url: str, *, autocommit: bool = False) -> Conn:
    """A psycopg 3 connection whose rows are dicts."""
    return psycopg.connect(libpq_url(url), autocommit=autocommit, row_factory=dict_row)


@contextmanager
def connection(url: str, *, autocommit: bool = False) -> Iterator[Conn]:
    """A connection that commits on success, rolls back on error, and is closed either way."""
    conn = connect(url, autocommit=autocommit)
    try:
        with conn:
            yield conn
    finally:
        conn.close()


def _maintenance_url(url: str, dbname: str = "postgres") -> tuple[str, str]:
    """(URL of the server's maintenance database, name of the database in `url`)."""
    info: dict[str, Any] = psycopg.conninfo.conninfo_to_dict(libpq_url(url))
    target = str(info.get("dbname") or "")
    info["dbname"] = dbname
    return psycopg.conninfo.make_conninfo("", **info), target


def create_database(url: str, *, exist_ok: bool = True) -> bool:
    """Create the database named in `url`; True when it was created."""
    admin, name = _maintenance_url(url)
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists:
            if not exist_ok:
                raise RuntimeError(f"database {name!r} already exists")
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return True


def drop_database(url: str) -> None:
    """Drop the database of `url`, disconnecting its sessions."""
    admin, name = _maintenance_url(url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def alembic_config(url: str):  # -> alembic.config.Config, imported lazily (alembic is slow)
    """The Alembic configuration of the events schema's migrations, for the database at `url`."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Passed as an attribute, not an ini option: a password may contain '%', which
    # ConfigParser would try to interpolate.
    cfg.attributes["url"] = url
    return cfg


def migrate(url: str, revision: str = "head", *, create: bool = True) -> None:
    """Bring the schema up to `revision` (creating the database first when asked)."""
    from alembic import command

    if create:
        create_database(url)
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "-1") -> None:
    """Migrate the database at `url` down to `revision` (default: one step)."""
    from alembic import command

    command.downgrade(alembic_config(url), revision)


def current_revision(url: str) -> str | None:
    """The Alembic revision the database at `url` is at, or None if it was never migrated."""
    with connection(url) as conn:
        exists = conn.execute("SELECT to_regclass(%s) AS t", (VERSION_TABLE,)).fetchone()
        if not exists or exists["t"] is None:
            return None
        row = conn.execute(
            sql.SQL("SELECT version_num FROM {}").format(sql.Identifier(VERSION_TABLE))
        ).fetchone()
        return str(row["version_num"]) if row else None


def ensure_schema(url: str) -> bool:
    """Create the database if missing and migrate it to the head revision when it is behind;
    True if anything was done. One query when the schema is already current."""
    try:
        if current_revision(url) == HEAD_REVISION:
            return False
    except psycopg.OperationalError as e:
        if "does not exist" not in str(e):
            raise
    migrate(url)
    return True


def scalar(conn: Conn, query: Any, params: Any = None) -> Any:
    """The first column of the first row (a query that always returns a row: count, exists)."""
    row = conn.execute(query, params).fetchone()
    if row is None:
        raise LookupError("query returned no row")
    return next(iter(row.values()))
