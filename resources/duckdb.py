"""DuckDB: the serving catalog (wallets, nodes, tokens, portfolios, alerts) and the views over
the Delta tables, in one file: `ServingDuckDB.database`, or when that is unset `DUCKDB_PATH`
read when the file is opened, else `data/chainlake.duckdb`.

A DuckDB file takes one read-write process or many read-only ones, never both: a reader would
make the pipeline's writer fail, and the writer would lock readers out. So nobody writes the
published file in place. The writer (one at a time: the assets share the `duckdb` pool) works
on a private copy, checkpoints it and atomically renames it over the published file. Readers
open the published file read-only; one that is already open keeps its consistent snapshot
(the old inode), the next one sees the new catalog. Neither ever waits on the other.

DuckDB cannot download extensions here: `delta` (and `httpfs`/`aws` for S3) are loaded from
the `duckdb-extension-*` wheels pinned with duckdb 1.5.5 (`load_delta`).

The views over Delta hold no location of one machine: they read
`delta_scan(chainlake_table('<network>/<subnet>/<table>'))`, a macro that prefixes the
session variable `chainlake_delta_root`. Whoever opens the file sets it to its own
DELTA_ROOT (`set_lake_root`; `reader()`, `writer()` and `chainlake sql` do), so the same
file works on every machine and after the lake moves; a session without it gets an error
saying what to set.
"""

from __future__ import annotations

import fcntl
import importlib
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
from dagster_duckdb import DuckDBResource
from polars._typing import PolarsDataType
from pydantic import Field

from resources.env import env_str

DEFAULT_PATH = "data/chainlake.duckdb"
DEFAULT_DELTA_ROOT = "data/delta"  # as resources.delta's default
LAKE_ROOT_VARIABLE = "chainlake_delta_root"
LAKE_MACRO = "chainlake_table"
_NO_DOWNLOADS: dict[str, str | bool | int | float | list[str]] = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
}


def extension_file(name: str) -> Path:
    """The extension binary shipped by the `duckdb-extension-<name>` wheel for this duckdb."""
    module = importlib.import_module(f"duckdb_extension_{name}")
    base = Path(module.__file__ or "").parent / "extensions"
    path = base / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
    if not path.exists():
        raise FileNotFoundError(
            f"no {name} extension for duckdb {duckdb.__version__} in {base}; "
            "the duckdb-extension-* wheels must match the duckdb version"
        )
    return path


def load_delta(conn: duckdb.DuckDBPyConnection, storage_options: Mapping[str, str] | None) -> None:
    """Make `delta_scan` available; with S3 storage options, also the S3 secret they describe."""
    conn.execute(f"LOAD '{extension_file('delta')}'")
    opts = dict(storage_options or {})
    if not opts:
        return
    for name in ("httpfs", "aws"):
        conn.execute(f"LOAD '{extension_file(name)}'")
    endpoint = opts.get("AWS_ENDPOINT_URL", "")
    secret: dict[str, str] = {"TYPE": "s3", "PROVIDER": "config"}
    if opts.get("AWS_ACCESS_KEY_ID"):
        secret["KEY_ID"] = opts["AWS_ACCESS_KEY_ID"]
    if opts.get("AWS_SECRET_ACCESS_KEY"):
        secret["SECRET"] = opts["AWS_SECRET_ACCESS_KEY"]
    if opts.get("AWS_REGION"):
        secret["REGION"] = opts["AWS_REGION"]
    if endpoint:
        scheme, _, host = endpoint.partition("://")
        secret["ENDPOINT"] = host.rstrip("/")
        secret["URL_STYLE"] = "path"
        secret["USE_SSL"] = "true" if scheme == "https" else "false"
    # CREATE SECRET takes no bound parameters; values are quoted as string literals.
    body = ", ".join(
        f"{k} {v}" if k in {"TYPE", "PROVIDER", "USE_SSL"} else f"{k} {_literal(v)}"
        for k, v in secret.items()
    )
    conn.execute(f"CREATE OR REPLACE TEMPORARY SECRET chainlake_s3 ({body})")


def lake_macro_sql(*, temporary: bool = False) -> str:
    """The macro the views read Delta tables through: `chainlake_table('devnet/local/blocks')`
    is that table under the session's lake root, or an error naming what to set."""
    var = f"getvariable({_literal(LAKE_ROOT_VARIABLE)})"
    message = _literal(
        f"the lake's root is not set in this session: SET VARIABLE {LAKE_ROOT_VARIABLE} = "
        "'<DELTA_ROOT>' (and LOAD the delta extension), or query through `chainlake sql`"
    )
    temp = "TEMPORARY " if temporary else ""
    return (
        f"CREATE OR REPLACE {temp}MACRO {LAKE_MACRO}(path) AS CASE WHEN {var} IS NULL "
        f"THEN error({message}) ELSE rtrim({var}, '/') || '/' || path END"
    )


def lake_root(root: str) -> str:
    """The root as the views need it: an s3:// URI as is, a folder made absolute (DuckDB
    resolves relative paths against the process's directory, not the file's)."""
    return root if "://" in root else str(Path(root).resolve())


def set_lake_root(conn: duckdb.DuckDBPyConnection, root: str) -> None:
    """Point this session's views at the Delta tables under `root` (DELTA_ROOT)."""
    conn.execute(f"SET VARIABLE {LAKE_ROOT_VARIABLE} = {_literal(lake_root(root))}")


def duckdb_type(dtype: PolarsDataType) -> str:
    """The DuckDB type of a Polars type; `List(Struct({key, value}))` is a MAP."""
    if isinstance(dtype, pl.Decimal):
        return f"DECIMAL({dtype.precision}, {dtype.scale})"
    if isinstance(dtype, pl.Datetime):
        return "TIMESTAMPTZ" if dtype.time_zone else "TIMESTAMP"
    if isinstance(dtype, pl.List):
        inner = dtype.inner
        if isinstance(inner, pl.Struct) and [f.name for f in inner.fields] == ["key", "value"]:
            key, value = (f.dtype for f in inner.fields)
            return f"MAP({duckdb_type(key)}, {duckdb_type(value)})"
        return f"{duckdb_type(inner)}[]"  # type: ignore[arg-type]
    if isinstance(dtype, pl.Struct):
        fields = ", ".join(f"{quote(f.name)} {duckdb_type(f.dtype)}" for f in dtype.fields)
        return f"STRUCT({fields})"
    simple = {
        pl.String: "VARCHAR", pl.Boolean: "BOOLEAN", pl.Date: "DATE", pl.Int8: "TINYINT",
        pl.Int16: "SMALLINT", pl.Int32: "INTEGER", pl.Int64: "BIGINT", pl.Int128: "HUGEINT",
        pl.UInt8: "UTINYINT", pl.UInt16: "USMALLINT", pl.UInt32: "UINTEGER", pl.UInt64: "UBIGINT",
        pl.Float32: "FLOAT", pl.Float64: "DOUBLE",
    }  # fmt: skip
    for k, v in simple.items():
        if dtype == k:
            return v
    raise TypeError(f"no DuckDB type for Polars {dtype}")


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def quote(identifier: str) -> str:
    """A DuckDB identifier, double-quoted."""
    return '"' + identifier.replace('"', '""') + '"'


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """One writer at a time on this machine, also outside Dagster (the pool covers runs)."""
    with open(lock_path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class ServingDuckDB(DuckDBResource):
    """dagster-duckdb's resource on the serving file, with a publishing writer and
    read-only readers that never block each other (see the module docstring).

    `get_connection()` opens the published file read-write in place; pipeline code uses
    `writer()` instead, so readers are never locked out."""

    # dagster-duckdb requires `database`; here it may be left unset for DUCKDB_PATH, which a
    # field cannot express (an unset EnvVar fails the run), so `path` resolves it when used.
    database: str = Field(
        default="",
        description="Path of the serving DuckDB file. Empty: DUCKDB_PATH when the file is "
        f"opened, else {DEFAULT_PATH}.",
    )

    @property
    def path(self) -> Path:
        """The serving file: `database`, else DUCKDB_PATH read now, else the default."""
        return Path(self.database or env_str(dg.EnvVar("DUCKDB_PATH"), DEFAULT_PATH))

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """dagster-duckdb's read-write connection, in place on `path` (an empty `database`
        would otherwise open an in-memory database)."""
        in_place = DuckDBResource(database=str(self.path), connection_config=self.connection_config)
        with in_place.get_connection() as conn:
            yield conn

    @contextmanager
    def writer(
        self, storage_options: Mapping[str, str] | None = None, delta_root: str | None = None
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-write connection on a private copy of the file; when the block ends without
        an error the copy replaces the published file in one rename. On an error the
        published file is left as it was. With `delta_root`, the views over Delta resolve
        against it in this session (`set_lake_root`)."""
        target = self.path
        target.parent.mkdir(parents=True, exist_ok=True)
        with _exclusive(target.with_name(f".{target.name}.writer.lock")):
            yield from self._publish(target, storage_options, delta_root)

    def _publish(
        self, target: Path, storage_options: Mapping[str, str] | None, delta_root: str | None
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        if Path(f"{target}.wal").exists():
            # A previous in-place writer died before its checkpoint: fold its WAL in first,
            # or the copy below would miss those changes.
            duckdb.connect(str(target), config=_NO_DOWNLOADS).close()
        work = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        if target.exists():
            shutil.copyfile(target, work)
        conn = duckdb.connect(str(work), config={**_NO_DOWNLOADS, **self.connection_config})
        try:
            load_delta(conn, storage_options)
            if delta_root is not None:
                set_lake_root(conn, delta_root)
            yield conn
            conn.execute("CHECKPOINT")
            conn.close()
            os.replace(work, target)
        except BaseException:
            conn.close()
            raise
        finally:
            for leftover in (work, Path(f"{work}.wal")):
                leftover.unlink(missing_ok=True)

    @contextmanager
    def reader(
        self, storage_options: Mapping[str, str] | None = None, delta_root: str | None = None
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection on the published file with `delta_scan` loaded and the views
        over Delta resolving against `delta_root`, else DELTA_ROOT read now, else
        data/delta (S3 roots also need the Delta store's `storage_options`)."""
        if not self.path.exists():
            raise FileNotFoundError(
                f"{self.path} does not exist yet: materialise serving/catalog first"
            )
        conn = duckdb.connect(
            str(self.path), read_only=True, config={**_NO_DOWNLOADS, **self.connection_config}
        )
        try:
            load_delta(conn, storage_options)
            set_lake_root(conn, delta_root or env_str(dg.EnvVar("DELTA_ROOT"), DEFAULT_DELTA_ROOT))
            yield conn
        finally:
            conn.close()
