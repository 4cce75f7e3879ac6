"""Operating the events database (PostgreSQL): migration status, health, Parquet backups, restore.

The `chainlake db` commands call these; nothing here reads the environment. The project's
tables are every table of the `public` schema except Dagster's own storage (the two may share
a database) and the migration version tables.

A backup is a directory: one Parquet file per table and `manifest.json` (schema revision,
tables in restore order, rows, each column's PostgreSQL type). Values keep their exact form:
integers, floats, booleans, timestamps, dates and bytes as native Parquet types; numeric,
JSON, UUID, arrays and anything else as PostgreSQL's own text form, which is what COPY reads
back, so a restore reproduces every value.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
from psycopg import sql

from chainlake.events import db as events_db

BACKUP_FORMAT = "chainlake-db-backup/1"
BATCH_ROWS = 10_000

_ARROW_TYPES: dict[str, pa.DataType] = {
    "smallint": pa.int16(),
    "integer": pa.int32(),
    "bigint": pa.int64(),
    "real": pa.float32(),
    "double precision": pa.float64(),
    "boolean": pa.bool_(),
    "text": pa.string(),
    "character varying": pa.string(),
    "character": pa.string(),
    "bytea": pa.binary(),
    "date": pa.date32(),
    "timestamp with time zone": pa.timestamp("us", tz="UTC"),
    "timestamp without time zone": pa.timestamp("us"),
}


Conn = psycopg.Connection[Any]


def _all(conn: Conn, query: Any, params: Any = None) -> list[Any]:
    """Rows as dicts (the events database's connections use `dict_row`)."""
    return list(conn.execute(query, params).fetchall())


def _one(conn: Conn, query: Any, params: Any = None) -> Any:
    return conn.execute(query, params).fetchone()


class DbAdminError(RuntimeError):
    """An operation refused or failed; the message is one line for the command line."""


# -- the project's tables --------------------------------------------------------------------


def _dagster_tables() -> set[str]:
    from dagster._core.storage.event_log.schema import SqlEventLogStorageMetadata
    from dagster._core.storage.runs.schema import RunStorageSqlMetadata
    from dagster._core.storage.schedules.schema import ScheduleStorageSqlMetadata

    names: set[str] = set()
    for md in (RunStorageSqlMetadata, SqlEventLogStorageMetadata, ScheduleStorageSqlMetadata):
        names.update(md.tables)
    return names | {"alembic_version"}


def project_tables(conn: Conn) -> list[str]:
    """The project's tables, parents before the tables whose foreign keys point at them."""
    rows = _all(
        conn,
        "SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY c.relname",
    )
    skip = _dagster_tables() | {events_db.VERSION_TABLE}
    names = [r["name"] for r in rows if r["name"] not in skip]
    deps = _all(
        conn,
        "SELECT c.relname AS child, p.relname AS parent FROM pg_constraint k "
        "JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class p ON p.oid = k.confrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE k.contype = 'f' AND n.nspname = 'public'",
    )
    parents: dict[str, set[str]] = {n: set() for n in names}
    for r in deps:
        child, parent = r["child"], r["parent"]
        if child in parents and parent in parents and child != parent:
            parents[child].add(parent)
    ordered: list[str] = []
    while parents:
        ready = sorted(n for n, ps in parents.items() if not ps - set(ordered))
        if not ready:  # a cycle: the rest in name order (restore disables FK checks anyway)
            ready = sorted(parents)
        for n in ready:
            ordered.append(n)
            del parents[n]
    return ordered


@dataclass(frozen=True)
class Column:
    """A stored column of a table and how it is written to Arrow in backups."""

    name: str
    pg_type: str
    arrow: str  # "native" or "text"


def table_columns(conn: Conn, table: str) -> list[Column]:
    """Stored (not generated) columns in table order."""
    rows = _all(
        conn,
        "SELECT a.attname AS name, format_type(a.atttypid, NULL) AS type "
        "FROM pg_attribute a WHERE a.attrelid = %s::regclass AND a.attnum > 0 "
        "AND NOT a.attisdropped AND a.attgenerated = '' ORDER BY a.attnum",
        (sql.Identifier(table).as_string(conn),),
    )
    out = []
    for r in rows:
        name, pg_type = r["name"], r["type"]
        out.append(Column(name, pg_type, "native" if pg_type in _ARROW_TYPES else "text"))
    return out


def _arrow_schema(columns: Sequence[Column]) -> pa.Schema:
    return pa.schema(
        [
            pa.field(c.name, _ARROW_TYPES[c.pg_type] if c.arrow == "native" else pa.string())
            for c in columns
        ]
    )


# -- migrations ------------------------------------------------------------------------------


@dataclass
class MigrationStatus:
    """How the events database stands against the code's migrations."""

    database_exists: bool
    current: str | None
    head: str
    pending: list[str]
    untracked_tables: list[str] = field(default_factory=list)

    @property
    def up_to_date(self) -> bool:
        """Whether the database exists, has no pending revision and no table outside the
        migrations."""
        return self.database_exists and not self.pending and not self.untracked_tables


def _script(url: str):
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(events_db.alembic_config(url))


def database_exists(url: str) -> bool:
    """Whether the database of `url` exists on its server."""
    admin, name = events_db._maintenance_url(url)
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
        return bool(_one(conn, "SELECT 1 FROM pg_database WHERE datname = %s", (name,)))


def migration_status(url: str, target: str = "head") -> MigrationStatus:
    """The database's revision, the revisions still to apply up to `target`, and stray tables."""
    script = _script(url)
    head = script.get_revision(target)
    if head is None:
        raise DbAdminError(f"unknown revision {target!r}")
    if not database_exists(url):
        pending = [r.revision for r in script.iterate_revisions(head.revision, "base")]
        return MigrationStatus(False, None, head.revision, list(reversed(pending)))
    current = events_db.current_revision(url)
    if current is not None and script.get_revision(current) is None:
        raise DbAdminError(
            f"the database is at revision {current!r}, which this code does not know "
            "(is it newer than this checkout?)"
        )
    pending = [r.revision for r in script.iterate_revisions(head.revision, current or "base")]
    untracked: list[str] = []
    if current is None:
        with events_db.connection(url) as conn:
            untracked = project_tables(conn)
    return MigrationStatus(True, current, head.revision, list(reversed(pending)), untracked)


def database_has_rows(url: str) -> bool:
    """Whether any of the project's tables holds a row."""
    with events_db.connection(url) as conn:
        for table in project_tables(conn):
            q = sql.SQL("SELECT EXISTS (SELECT 1 FROM {}) AS x").format(sql.Identifier(table))
            if _one(conn, q)["x"]:
                return True
    return False


def drop_project_schema(url: str) -> list[str]:
    """Drop every project table (views on them go too) and the migration history: what
    `migrate --force` does before rebuilding. Returns the dropped tables."""
    with events_db.connection(url) as conn:
        tables = project_tables(conn)
        for view in _all(
            conn, "SELECT matviewname AS name FROM pg_matviews WHERE schemaname = 'public'"
        ):
            conn.execute(
                sql.SQL("DROP MATERIALIZED VIEW IF EXISTS {} CASCADE").format(
                    sql.Identifier(view["name"])
                )
            )
        for table in tables:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(sql.Identifier(table)))
        conn.execute(
            sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(events_db.VERSION_TABLE))
        )
    return tables


# -- backup ----------------------------------------------------------------------------------


@dataclass
class TableBackup:
    """One table's file in a backup: its row count and columns."""

    name: str
    file: str
    rows: int
    columns: list[dict[str, str]]


@dataclass
class Manifest:
    """The manifest.json of a backup directory: where it came from and what tables it holds."""

    format: str
    created_at: str
    database: str
    server_version: str
    revision: str | None
    tables: list[TableBackup]

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        """Read and check the manifest of the backup in `directory`."""
        path = directory / "manifest.json"
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise DbAdminError(f"{directory}: no manifest.json, not a chainlake backup") from None
        except json.JSONDecodeError as e:
            raise DbAdminError(f"{path}: not valid JSON ({e})") from None
        if raw.get("format") != BACKUP_FORMAT:
            raise DbAdminError(f"{path}: format {raw.get('format')!r}, expected {BACKUP_FORMAT}")
        raw["tables"] = [TableBackup(**t) for t in raw["tables"]]
        return cls(**raw)

    def write(self, directory: Path) -> None:
        """Write the manifest into `directory`."""
        (directory / "manifest.json").write_text(json.dumps(asdict(self), indent=2) + "\n")


def _check_can_read_all_rows(conn: Conn, tables: Sequence[str]) -> None:
    bypass = _one(
        conn, "SELECT rolsuper OR rolbypassrls AS ok FROM pg_roles WHERE rolname = current_user"
    )
    if bypass and bypass["ok"]:
        return
    rls = _all(
        conn,
        "SELECT relname FROM pg_class WHERE relrowsecurity AND relname = ANY(%s)",
        (list(tables),),
    )
    if rls:
        names = ", ".join(r["relname"] for r in rls)
        raise DbAdminError(
            f"row-level security on {names} would hide rows from this role; back up as a "
            "superuser or a role with BYPASSRLS"
        )


def backup(url: str, output_root: Path, *, label: str | None = None) -> tuple[Path, Manifest]:
    """Write every project table to Parquet under a new directory of `output_root`, all read
    in one REPEATABLE READ snapshot so the tables agree with each other."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    with events_db.connection(url) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        dbname = conn.info.dbname
        tables = project_tables(conn)
        _check_can_read_all_rows(conn, tables)
        revision_row = _one(conn, "SELECT to_regclass(%s) AS t", (events_db.VERSION_TABLE,))
        revision = None
        if revision_row and revision_row["t"]:
            r = _one(
                conn,
                sql.SQL("SELECT version_num FROM {}").format(
                    sql.Identifier(events_db.VERSION_TABLE)
                ),
            )
            revision = r["version_num"] if r else None
        name = f"{dbname}-{stamp}" + (f"-{label}" if label else "")
        directory = output_root / name
        if directory.exists():
            directory = output_root / f"{name}-{uuid.uuid4().hex[:6]}"
        directory.mkdir(parents=True)
        backups = [_backup_table(conn, t, directory) for t in tables]
        manifest = Manifest(
            format=BACKUP_FORMAT,
            created_at=dt.datetime.now(dt.UTC).isoformat(),
            database=dbname,
            server_version=str(conn.info.server_version),
            revision=revision,
            tables=backups,
        )
    manifest.write(directory)
    return directory, manifest


def _backup_table(conn: Conn, table: str, directory: Path) -> TableBackup:
    columns = table_columns(conn, table)
    schema = _arrow_schema(columns)
    select = sql.SQL("SELECT {} FROM {}").format(
        sql.SQL(", ").join(
            sql.Identifier(c.name)
            if c.arrow == "native"
            else sql.SQL("{}::text").format(sql.Identifier(c.name))
            for c in columns
        ),
        sql.Identifier(table),
    )
    file = f"{table}.parquet"
    rows = 0
    with (
        pq.ParquetWriter(directory / file, schema, compression="zstd") as writer,
        conn.cursor(name=f"backup_{table}", row_factory=psycopg.rows.tuple_row) as cur,
    ):
        cur.itersize = BATCH_ROWS
        cur.execute(select)
        while batch := cur.fetchmany(BATCH_ROWS):
            cols = list(zip(*batch, strict=True))
            writer.write_table(
                pa.Table.from_arrays(
                    [pa.array(list(v), type=f.type) for v, f in zip(cols, schema, strict=True)],
                    schema=schema,
                )
            )
            rows += len(batch)
    return TableBackup(
        table,
        file,
        rows,
        [{"name": c.name, "type": c.pg_type, "stored_as": c.arrow} for c in columns],
    )


# -- restore ---------------------------------------------------------------------------------


def _read_batches(path: Path) -> Iterator[list[tuple[Any, ...]]]:
    pf = pq.ParquetFile(path)
    for batch in pf.iter_batches(batch_size=BATCH_ROWS):
        cols = [c.to_pylist() for c in batch.columns]
        yield list(zip(*cols, strict=True)) if cols else []


def restore(url: str, directory: Path, *, force: bool = False) -> Manifest:
    """Replace the project's rows with the backup's, in one transaction. The database is
    created and migrated to the backup's revision when it has no schema yet; a database at
    another revision, or one that already holds rows (unless `force`), is refused."""
    manifest = Manifest.read(directory)
    for t in manifest.tables:
        if not (directory / t.file).exists():
            raise DbAdminError(f"{directory}: {t.file} listed in the manifest is missing")
    events_db.create_database(url)
    current = events_db.current_revision(url)
    # A schema this call creates may hold rows its migrations seed; they are replaced.
    fresh = False
    if current is None and manifest.revision is not None:
        with events_db.connection(url) as conn:
            existing = project_tables(conn)
        if existing and not force:
            raise DbAdminError(
                f"the database has tables ({', '.join(existing[:5])}) but no migration history; "
                "pass --force to rebuild it from the backup"
            )
        if existing:
            drop_project_schema(url)
        events_db.migrate(url, manifest.revision, create=False)
        current = events_db.current_revision(url)
        fresh = True
    if current != manifest.revision:
        raise DbAdminError(
            f"the backup is at schema revision {manifest.revision}, the database at {current}; "
            f"run `chainlake db migrate --revision {manifest.revision}` (or downgrade) first"
        )
    if not fresh and not force and database_has_rows(url):
        raise DbAdminError("the database already holds rows; pass --force to replace them")

    with events_db.connection(url) as conn:
        present = set(project_tables(conn))
        missing = [t.name for t in manifest.tables if t.name not in present]
        if missing:
            raise DbAdminError(f"tables in the backup but not in the database: {missing}")
        # Replica mode: no triggers (NOTIFY, immutability guards) and no FK checks while the
        # rows go back exactly as they were; the transaction makes it all or nothing.
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute(
            sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(
                sql.SQL(", ").join(sql.Identifier(t) for t in sorted(present))
            )
        )
        for t in manifest.tables:
            cols = [c["name"] for c in t.columns]
            copy = sql.SQL("COPY {} ({}) FROM STDIN").format(
                sql.Identifier(t.name), sql.SQL(", ").join(sql.Identifier(c) for c in cols)
            )
            loaded = 0
            with conn.cursor().copy(copy) as cp:
                for batch in _read_batches(directory / t.file):
                    for row in batch:
                        cp.write_row(row)
                    loaded += len(batch)
            if loaded != t.rows:
                raise DbAdminError(f"{t.file}: {loaded} rows, the manifest says {t.rows}")
            _reset_sequences(conn, t.name, cols)
        for view in _all(
            conn, "SELECT matviewname AS name FROM pg_matviews WHERE schemaname = 'public'"
        ):
            conn.execute(
                sql.SQL("REFRESH MATERIALIZED VIEW {}").format(sql.Identifier(view["name"]))
            )
    return manifest


def _reset_sequences(conn: Conn, table: str, columns: Sequence[str]) -> None:
    qualified = sql.Identifier(table).as_string(conn)
    for col in columns:
        seq = _one(conn, "SELECT pg_get_serial_sequence(%s, %s) AS s", (qualified, col))
        if not seq or not seq["s"]:
            continue
        conn.execute(
            sql.SQL(
                "SELECT setval(%s, COALESCE((SELECT max({c}) FROM {t}), 1), "
                "(SELECT max({c}) FROM {t}) IS NOT NULL)"
            ).format(c=sql.Identifier(col), t=sql.Identifier(table)),
            (seq["s"],),
        )


# -- health ----------------------------------------------------------------------------------


@dataclass
class Health:
    """The outcome of `health`: ok, the problems found and every check's measurements."""

    ok: bool
    problems: list[str]
    checks: dict[str, Any]


def health(url: str, *, notify_timeout: float = 5.0) -> Health:
    """Reachability and latency, schema revision against the code's head, LISTEN/NOTIFY round
    trip, and the state of the event and delivery tables."""
    checks: dict[str, Any] = {}
    problems: list[str] = []
    where = url.rsplit("@", 1)[-1]
    started = time.perf_counter()
    try:
        conn = events_db.connect(url, autocommit=True)
    except psycopg.Error as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return Health(False, [f"cannot connect to {where}: {reason}"], {"reachable": False})
    with conn:
        checks["reachable"] = True
        checks["connect_ms"] = round((time.perf_counter() - started) * 1000, 1)
        t = time.perf_counter()
        conn.execute("SELECT 1")
        checks["query_ms"] = round((time.perf_counter() - t) * 1000, 2)
        checks["server_version"] = _one(conn, "SHOW server_version")["server_version"]
        checks["database_size"] = _one(
            conn, "SELECT pg_size_pretty(pg_database_size(current_database())) AS s"
        )["s"]

        status = migration_status(url)
        checks["schema_revision"] = status.current
        checks["schema_head"] = status.head
        checks["pending_migrations"] = status.pending
        if status.pending:
            problems.append(
                f"{len(status.pending)} migration(s) pending ({', '.join(status.pending)}): "
                "run `chainlake db migrate`"
            )

        channel = f"chainlake_health_{uuid.uuid4().hex[:8]}"
        t = time.perf_counter()
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        with events_db.connect(url, autocommit=True) as other:
            other.execute("SELECT pg_notify(%s, 'ping')", (channel,))
        got = next(iter(conn.notifies(timeout=notify_timeout, stop_after=1)), None)
        conn.execute(sql.SQL("UNLISTEN {}").format(sql.Identifier(channel)))
        checks["notify_roundtrip_ms"] = round((time.perf_counter() - t) * 1000, 1) if got else None
        if got is None:
            problems.append(f"LISTEN/NOTIFY: no notification within {notify_timeout:.0f}s")

        tables = project_tables(conn)
        checks["tables"] = {
            r["relname"]: int(r["n"])
            for r in _all(
                conn,
                "SELECT relname, GREATEST(reltuples, 0)::bigint AS n FROM pg_class "
                "WHERE relname = ANY(%s) AND relkind IN ('r', 'p')",
                (tables,),
            )
        }
        if "events" in tables:
            row = _one(conn, "SELECT max(created_at) AS last, count(*) AS n FROM events")
            checks["events"] = row["n"]
            checks["last_event_at"] = row["last"].isoformat() if row["last"] else None
        if "deliveries" in tables:
            checks["deliveries"] = {
                r["status"]: r["n"]
                for r in _all(conn, "SELECT status, count(*) AS n FROM deliveries GROUP BY status")
            }
    return Health(not problems, problems, checks)
