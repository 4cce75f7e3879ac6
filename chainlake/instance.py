"""Prepare a Dagster instance for this project: `python -m chainlake.instance`.

Idempotent. Creates the PostgreSQL database named in DAGSTER_POSTGRES_URL if it is missing,
links the repository's `dagster.yaml` into DAGSTER_HOME, and sets the pool limits (pools are
instance state, not part of dagster.yaml). `make dev`, the docker daemon and the tests that
start a webserver or a daemon all go through here, so they share one set of limits.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import click
import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
DAGSTER_YAML = ROOT / "dagster.yaml"
DEFAULT_DAGSTER_POSTGRES_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/dagster"

# Slots per pool across all runs. rpc: extraction steps reading the nodes, all chains
# together (one run per chain at a time is the run queue's limit). duckdb and clickhouse:
# one writer, because a DuckDB file and the embedded ClickHouse store each allow one.
POOL_LIMITS = {"rpc": 4, "duckdb": 1, "clickhouse": 1}


def libpq_url(url: str) -> str:
    """A SQLAlchemy URL (`postgresql+psycopg2://...`) as libpq takes it (`postgresql://...`)."""
    parts = urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme not in ("postgresql", "postgres"):
        raise ValueError(f"not a PostgreSQL URL: {parts.scheme}://…")
    return urlunsplit(("postgresql", parts.netloc, parts.path, parts.query, parts.fragment))


def ensure_database(url: str) -> bool:
    """Create the URL's database when it does not exist; True if it was created."""
    parts = urlsplit(libpq_url(url))
    name = parts.path.lstrip("/")
    if not name:
        raise ValueError("the PostgreSQL URL names no database")
    admin = urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, ""))
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists:
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return True


def link_config(dagster_home: Path) -> Path:
    """Point `$DAGSTER_HOME/dagster.yaml` at the project's dagster.yaml (a symlink)."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    target = dagster_home / "dagster.yaml"
    if target.is_symlink() or target.exists():
        if target.resolve() == DAGSTER_YAML.resolve():
            return target
        target.unlink()
    target.symlink_to(DAGSTER_YAML)
    return target


def set_pool_limits(limits: dict[str, int] | None = None) -> None:
    """Set the pool limits on the instance at DAGSTER_HOME (which must be configured)."""
    from dagster import DagsterInstance

    with DagsterInstance.get() as instance:
        for pool, slots in (limits or POOL_LIMITS).items():
            instance.event_log_storage.set_concurrency_slots(pool, slots)


def ensure_instance(dagster_home: Path, postgres_url: str) -> None:
    """Make the Dagster instance usable: its database, its dagster.yaml and its pool limits."""
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    os.environ["DAGSTER_POSTGRES_URL"] = postgres_url
    ensure_database(postgres_url)
    link_config(dagster_home)
    set_pool_limits()


def main() -> int:
    """Set up the instance of `$DAGSTER_HOME` (`python -m chainlake.instance`); the exit status."""
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        click.echo("chainlake.instance: DAGSTER_HOME is not set", err=True)
        return 2
    url = os.environ.get("DAGSTER_POSTGRES_URL") or DEFAULT_DAGSTER_POSTGRES_URL
    try:
        ensure_instance(Path(home).resolve(), url)
    except (psycopg.Error, ValueError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        click.echo(f"chainlake.instance: {first}", err=True)
        return 1
    limits = ", ".join(f"{k}={v}" for k, v in POOL_LIMITS.items())
    click.echo(
        f"Dagster instance at {home} (PostgreSQL {urlsplit(url).path.lstrip('/')}); pools {limits}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
