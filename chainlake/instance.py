"""Prepare, show or drop this checkout's instance: `python -m chainlake.instance [setup|env|drop]`.

An instance is a Dagster instance (DAGSTER_HOME, its storage in PostgreSQL) and an events
database, named after CHAINLAKE_INSTANCE or the checkout's path (`chainlake.instance_names`),
so two checkouts on one machine never share runs, events or deliveries.

- `setup` (the default; `make instance`, `make dev`, the docker daemon, the tests that start a
  webserver or a daemon): idempotent. Creates the two databases when missing, links
  `config/dagster/dagster.yaml` (the PostgreSQL instance) into DAGSTER_HOME, and sets the pool
  limits (pools are instance state, not part of dagster.yaml), so all share one set of limits.
- `env`: the shell lines that give another terminal the same instance
  (`eval "$(.venv/bin/python -m chainlake.instance env)"`).
- `drop` (`make clean`): drops the instance's two databases, saying which. A database named by
  an explicit DAGSTER_POSTGRES_URL or POSTGRES_URL other than the instance's own is left alone.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import click
import psycopg
from psycopg import sql

from chainlake import instance_names
from chainlake.instance_names import DAGSTER_URL_VARIABLE, EVENTS_URL_VARIABLE

ROOT = instance_names.CHECKOUT
# The PostgreSQL instance config this module links into DAGSTER_HOME. The root dagster.yaml is
# the same without PostgreSQL, for a bare `dagster` command (it needs no variable).
INSTANCE_CONFIG = ROOT / "config" / "dagster" / "dagster.yaml"
DEFAULT_DAGSTER_HOME = ROOT / ".dagster_home"

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


def database_name(url: str) -> str:
    """The database a PostgreSQL URL names."""
    name = urlsplit(libpq_url(url)).path.lstrip("/")
    if not name:
        raise ValueError("the PostgreSQL URL names no database")
    return name


def _admin_url(url: str) -> str:
    """The URL of the same server's `postgres` maintenance database."""
    parts = urlsplit(libpq_url(url))
    return urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, ""))


def ensure_database(url: str) -> bool:
    """Create the URL's database when it does not exist; True if it was created."""
    name = database_name(url)
    with psycopg.connect(_admin_url(url), autocommit=True, connect_timeout=10) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists:
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return True


def drop_database(url: str) -> bool:
    """Drop the URL's database, closing its connections; True if it existed."""
    name = database_name(url)
    with psycopg.connect(_admin_url(url), autocommit=True, connect_timeout=10) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        return exists is not None


def link_config(dagster_home: Path, config: Path = INSTANCE_CONFIG) -> Path:
    """Point `$DAGSTER_HOME/dagster.yaml` at `config` (a symlink)."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    target = dagster_home / "dagster.yaml"
    if target.is_symlink() or target.exists():
        if target.resolve() == config.resolve():
            return target
        target.unlink()
    target.symlink_to(config)
    return target


def set_pool_limits(limits: dict[str, int] | None = None) -> None:
    """Set the pool limits on the instance at DAGSTER_HOME (which must be configured)."""
    from dagster import DagsterInstance

    with DagsterInstance.get() as instance:
        for pool, slots in (limits or POOL_LIMITS).items():
            instance.event_log_storage.set_concurrency_slots(pool, slots)


def ensure_instance(dagster_home: Path, postgres_url: str, events_url: str | None = None) -> None:
    """Make the Dagster instance usable: its database, its dagster.yaml and its pool limits;
    with `events_url`, the events database too (created empty; its schema comes with the
    first use or `chainlake db migrate`)."""
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    os.environ[DAGSTER_URL_VARIABLE] = postgres_url
    ensure_database(postgres_url)
    if events_url:
        ensure_database(events_url)
    link_config(dagster_home)
    set_pool_limits()


@dataclass(frozen=True)
class Instance:
    """What this process's environment makes of the instance: its name, DAGSTER_HOME, the
    URLs of its two databases, and whether each URL is the instance's own (not set apart)."""

    name: str
    dagster_home: Path
    dagster_url: str
    events_url: str
    own_dagster_url: bool
    own_events_url: bool


def resolve(environ: Mapping[str, str] | None = None) -> Instance:
    """The instance of `environ` (default: this process's environment).

    Raises:
        chainlake.instance_names.InstanceNameError: CHAINLAKE_INSTANCE cannot name databases.
    """
    env = os.environ if environ is None else environ
    names = instance_names.names(env)
    dagster_url = instance_names.dagster_postgres_url(env)
    events_url = instance_names.events_postgres_url(env)
    return Instance(
        name=names.instance,
        dagster_home=Path(env.get("DAGSTER_HOME") or DEFAULT_DAGSTER_HOME).resolve(),
        dagster_url=dagster_url,
        events_url=events_url,
        own_dagster_url=dagster_url == names.dagster_url,
        own_events_url=events_url == names.events_url,
    )


@dataclass(frozen=True)
class Dropped:
    """One database `drop_databases` dealt with: what it is, and what happened to it."""

    role: str  # "Dagster storage" or "events"
    database: str
    outcome: str  # "dropped", "absent" or "kept: <why>"


def drop_databases(environ: Mapping[str, str] | None = None) -> list[Dropped]:
    """Drop the instance's Dagster storage and events databases (what `make clean` does).

    A database that an explicit DAGSTER_POSTGRES_URL or POSTGRES_URL names, other than the
    instance's own, is not this instance's to drop: it is kept and said so.

    Raises:
        chainlake.instance_names.InstanceNameError: CHAINLAKE_INSTANCE cannot name databases.
        psycopg.Error: The server cannot be reached or refuses the drop.
    """
    inst = resolve(environ)
    done = []
    for role, url, own, variable in (
        ("Dagster storage", inst.dagster_url, inst.own_dagster_url, DAGSTER_URL_VARIABLE),
        ("events", inst.events_url, inst.own_events_url, EVENTS_URL_VARIABLE),
    ):
        name = database_name(url)
        if not own:
            outcome = f"kept: {variable} names it, not instance {inst.name}"
        else:
            outcome = "dropped" if drop_database(url) else "absent"
        done.append(Dropped(role, name, outcome))
    return done


def shell_env(inst: Instance) -> str:
    """`export` lines for a POSIX shell that give another terminal this instance."""
    values = {
        instance_names.INSTANCE_VARIABLE: inst.name,
        "DAGSTER_HOME": str(inst.dagster_home),
        DAGSTER_URL_VARIABLE: inst.dagster_url,
        EVENTS_URL_VARIABLE: inst.events_url,
    }
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in values.items())


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _setup(inst: Instance) -> None:
    ensure_instance(inst.dagster_home, inst.dagster_url, inst.events_url)
    limits = ", ".join(f"{k}={v}" for k, v in POOL_LIMITS.items())
    click.echo(
        f"Instance {inst.name}: Dagster at {inst.dagster_home} (PostgreSQL database "
        f"{database_name(inst.dagster_url)}), events in database "
        f"{database_name(inst.events_url)}; pools {limits}"
    )


def _drop(inst: Instance) -> None:
    click.echo(f"Dropping the PostgreSQL databases of instance {inst.name}:")
    for d in drop_databases():
        click.echo(f"  {d.role}: {d.database} ({d.outcome})")


def main(argv: list[str] | None = None) -> int:
    """`python -m chainlake.instance [setup|env|drop]`; the exit status."""
    args = sys.argv[1:] if argv is None else argv
    command = args[0] if args else "setup"
    if command not in ("setup", "env", "drop") or len(args) > 1:
        click.echo("usage: python -m chainlake.instance [setup|env|drop]", err=True)
        return 2
    try:
        inst = resolve()
        if command == "env":
            click.echo(shell_env(inst), nl=False)
        elif command == "drop":
            _drop(inst)
        else:
            _setup(inst)
    except (psycopg.Error, ValueError, OSError) as e:
        click.echo(f"chainlake.instance {command}: {_first_line(e)}", err=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
