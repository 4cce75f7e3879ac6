"""ClickHouse: the analytics tables, through clickhouse-connect in both modes.

`ClickHouseResource(engine=...)` takes one of two engines, told apart by their `kind` field
(a Pydantic discriminated union, which Dagster shows as a selector):

- `EmbeddedClickHouse(path=...)` (config `engine: {embedded: {...}}`, the default): the
  in-process engine (chdb) on a local data directory, driven by clickhouse-connect's `chdb://`
  client. `path` unset: `CLICKHOUSE_PATH` when the store is used, else `data/clickhouse`.
- `ClickHouseServer(url=...)` (config `engine: {server: {...}}`): a server at
  http(s)://user:password@host:8123/database (the code location passes `CLICKHOUSE_URL`).

The same DDL, the same queries and the same client API serve both. The embedded directory can
be opened by one process at a time: each use holds it only for one short session, a session
that finds it busy waits and retries (`lock_timeout_seconds`), and the Dagster assets writing
it share the `clickhouse` pool so two runs never queue on each other's lock.

Tables are declared once, from their Pandera model (`ClickHouseTable`): the column types and
comments of the DDL are derived from it, and an existing table whose columns differ from the
model is an error rather than a silent mismatch.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import dagster as dg
import pandera.polars as pa
import polars as pl
import pyarrow
from polars._typing import PolarsDataType
from pydantic import Field

from resources.env import env_str

DEFAULT_PATH = "data/clickhouse"


def embedded_dir_busy(path: str | Path) -> bool:
    """Whether another process holds the chdb directory (its `status` file is flock-ed by the
    engine that opened it; chdb's own error only says "Error initializing EmbeddedServer")."""
    status = Path(path) / "status"
    try:
        fd = os.open(status, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


class ClickHouseSchemaMismatch(RuntimeError):
    """An existing table's columns differ from its model."""


def quote(identifier: str) -> str:
    """A ClickHouse identifier, backquoted."""
    return "`" + identifier.replace("\\", "\\\\").replace("`", "\\`") + "`"


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def clickhouse_type(dtype: PolarsDataType, nullable: bool = False) -> str:
    """The ClickHouse type of a Polars type. `List(Struct({key, value}))` is a Map."""
    base: str
    if isinstance(dtype, pl.Decimal):
        base = f"Decimal({dtype.precision}, {dtype.scale})"
    elif isinstance(dtype, pl.Datetime):
        digits = {"ms": 3, "us": 6, "ns": 9}[dtype.time_unit or "us"]
        base = f"DateTime64({digits}, {_literal(dtype.time_zone or 'UTC')})"
    elif isinstance(dtype, pl.List) and _is_map(dtype):
        inner = dtype.inner
        assert isinstance(inner, pl.Struct)
        fields = {f.name: f.dtype for f in inner.fields}
        return f"Map({clickhouse_type(fields['key'])}, {clickhouse_type(fields['value'])})"
    elif isinstance(dtype, pl.List):
        return f"Array({clickhouse_type(dtype.inner)})"  # type: ignore[arg-type]
    else:
        simple = {
            pl.String: "String",
            pl.Boolean: "Bool",
            pl.Date: "Date32",
            pl.Int8: "Int8",
            pl.Int16: "Int16",
            pl.Int32: "Int32",
            pl.Int64: "Int64",
            pl.UInt8: "UInt8",
            pl.UInt16: "UInt16",
            pl.UInt32: "UInt32",
            pl.UInt64: "UInt64",
            pl.Float32: "Float32",
            pl.Float64: "Float64",
        }
        base = next((v for k, v in simple.items() if dtype == k), "")
        if not base:
            raise TypeError(f"no ClickHouse type for Polars {dtype}")
    return f"Nullable({base})" if nullable else base


def _is_map(dtype: pl.DataType) -> bool:
    return (
        isinstance(dtype, pl.List)
        and isinstance(dtype.inner, pl.Struct)
        and [f.name for f in dtype.inner.fields] == ["key", "value"]
    )


@dataclass(frozen=True)
class ClickHouseTable:
    """A MergeTree table whose columns are a Pandera model's. Rows are replaced one
    (chain, day) at a time: `day_column` is the row's UTC day (a Date, or a timestamp whose UTC
    date is the day)."""

    name: str
    model: type[pa.DataFrameModel]
    order_by: tuple[str, ...]
    partition_by: str = "toYYYYMM(`date`)"
    day_column: str = "date"
    chain_column: str = "chain_id"
    comment: str = ""

    def columns(self) -> dict[str, tuple[pl.DataType, bool, str]]:
        """Each column: name → (Polars type, nullable, description), in the model's order."""
        return {
            name: (col.dtype.type, bool(col.nullable), col.description or "")
            for name, col in self.model.to_schema().columns.items()
        }

    def polars_schema(self) -> pl.Schema:
        """The table's columns as a Polars schema."""
        return pl.Schema({name: t for name, (t, _, _) in self.columns().items()})

    def create_sql(self) -> str:
        """The table's `CREATE TABLE IF NOT EXISTS` statement (MergeTree, with column comments)."""
        cols = ",\n    ".join(
            f"{quote(name)} {clickhouse_type(t, nullable)}"
            + (f" COMMENT {_literal(doc)}" if doc else "")
            for name, (t, nullable, doc) in self.columns().items()
        )
        order = ", ".join(quote(c) for c in self.order_by)
        sql = (
            f"CREATE TABLE IF NOT EXISTS {quote(self.name)} (\n    {cols}\n)\n"
            f"ENGINE = MergeTree\nPARTITION BY {self.partition_by}\nORDER BY ({order})"
        )
        if self.comment:
            sql += f"\nCOMMENT {_literal(self.comment)}"
        return sql

    def expected_types(self) -> dict[str, str]:
        """Each column's ClickHouse type, as the table should have it."""
        return {n: clickhouse_type(t, nb) for n, (t, nb, _) in self.columns().items()}


def _normalise_type(t: str) -> str:
    return t.replace(" ", "").replace('"', "'")


def to_arrow(frame: pl.DataFrame, table: ClickHouseTable) -> pyarrow.Table:
    """The frame as Arrow for `insert_arrow`, Map columns as Arrow maps."""
    at = frame.select(list(table.columns())).to_arrow()
    for name, (t, _, _) in table.columns().items():
        if _is_map(t):
            col = at.column(name).combine_chunks()
            values = col.values
            maps = pyarrow.MapArray.from_arrays(
                col.offsets, values.field("key"), values.field("value"), mask=col.is_null()
            )
            at = at.set_column(at.schema.get_field_index(name), name, maps)
    return at


def from_arrow(at: pyarrow.Table) -> pl.DataFrame:
    """A query result as Polars, Map columns as `List(Struct({key, value}))` and Decimals exact
    (Arrow keeps them; chdb's DataFrame output would turn them into floats)."""
    df = pl.from_arrow(at)
    assert isinstance(df, pl.DataFrame)
    casts = {
        name: pl.List(pl.Struct({"key": dtype.key, "value": dtype.value}))  # type: ignore[attr-defined]
        for name, dtype in df.schema.items()
        if isinstance(dtype, pl.Map)
    }
    return df.with_columns(pl.col(n).cast(t) for n, t in casts.items()) if casts else df


class ClickHouseSession:
    """One open connection: DDL, per-day replacement, queries to Polars."""

    def __init__(self, client: Any, *, embedded: bool) -> None:
        self.client = client
        self.embedded = embedded

    def command(self, sql: str, parameters: Mapping[str, Any] | None = None) -> Any:
        """Run a statement that returns no rows; `parameters` are bound server-side."""
        return self.client.command(sql, parameters=dict(parameters or {}))

    def query(self, sql: str, parameters: Mapping[str, Any] | None = None) -> pl.DataFrame:
        """Run a query and return its result as a Polars frame."""
        return from_arrow(self.client.query_arrow(sql, parameters=dict(parameters or {})))

    def table_types(self, name: str) -> dict[str, str]:
        """The columns of table `name` in the current database, with their ClickHouse types."""
        rows = self.client.query(
            "SELECT name, type FROM system.columns "
            "WHERE database = currentDatabase() AND table = {t:String} ORDER BY position",
            parameters={"t": name},
        ).result_rows
        return {n: t for n, t in rows}

    def ensure(self, table: ClickHouseTable) -> None:
        """Create the table if absent; fail, naming the columns, if it exists with others.

        One change is made in place: a table that lacks only nullable columns the model added
        (every column it has is the model's, of the model's type) gets them with
        `ADD COLUMN` (null in its existing rows, as a row written before them would be)."""
        self.command(table.create_sql())
        have = {n: _normalise_type(t) for n, t in self.table_types(table.name).items()}
        want = {n: _normalise_type(t) for n, t in table.expected_types().items()}
        added = [n for n in want if n not in have]
        if (
            added
            and all(want.get(n) == t for n, t in have.items())
            and all(want[n].startswith("Nullable(") for n in added)
        ):
            raw = table.expected_types()
            for n in added:
                after = list(want)[list(want).index(n) - 1]
                self.command(
                    f"ALTER TABLE {quote(table.name)} ADD COLUMN IF NOT EXISTS {quote(n)} "
                    f"{raw[n]} AFTER {quote(after)}"
                )
            have = {n: _normalise_type(t) for n, t in self.table_types(table.name).items()}
        if have != want:
            diff = sorted(
                f"{n}: table has {have.get(n, '(none)')}, model wants {want.get(n, '(none)')}"
                for n in set(have) | set(want)
                if have.get(n) != want.get(n)
            )
            raise ClickHouseSchemaMismatch(
                f"ClickHouse table {table.name!r} differs from its model "
                f"{table.model.__name__}: "
                + "; ".join(diff)
                + ". Drop or migrate the table (its rows can be rebuilt by re-materialising)."
            )

    def delete_days(
        self, table: ClickHouseTable, *, chain_id: int, days: Sequence[dt.date]
    ) -> None:
        """Delete the chain's rows of `days` from the table."""
        if not days:
            return
        # Lightweight DELETE: synchronous by default, and the rows are gone for every later
        # query at once (no FINAL needed), on chdb as on a server.
        # Identifiers come from the table's declaration in code and are quoted; values are bound.
        sql = (
            f"DELETE FROM {quote(table.name)} WHERE {quote(table.chain_column)} = {{chain:Int64}} "  # noqa: S608
            f"AND has({{days:Array(Date)}}, toDate({quote(table.day_column)}))"
        )
        self.command(
            sql,
            {"chain": chain_id, "days": sorted(set(days))},
        )

    def replace_days(
        self,
        table: ClickHouseTable,
        frame: pl.DataFrame,
        *,
        chain_id: int,
        days: Sequence[dt.date],
    ) -> int:
        """Make `frame` the only rows of `days` on `chain_id`: delete those days, then insert.
        Every row of `frame` must belong to them (checked), so nothing else is touched."""
        if frame.height:
            day = pl.col(table.day_column)
            if isinstance(frame.schema[table.day_column], pl.Datetime):
                day = day.dt.convert_time_zone("UTC").dt.date()
            day_of = frame.select(
                day.alias("d"),
                pl.col(table.chain_column).alias("c"),
            )
            stray = day_of.filter(~pl.col("d").is_in(list(days)) | (pl.col("c") != chain_id))
            if stray.height:
                raise ValueError(
                    f"{table.name}: {stray.height} rows fall outside chain {chain_id} days "
                    f"{sorted(set(days))}"
                )
        self.delete_days(table, chain_id=chain_id, days=days)
        if frame.height:
            self.client.insert_arrow(table.name, to_arrow(frame, table))
        return frame.height


class EmbeddedClickHouse(dg.Config):
    """The in-process engine (chdb) on a local data directory."""

    kind: Literal["embedded"] = Field(
        default="embedded", description="Selects the embedded engine (chdb)."
    )
    path: str | None = Field(
        default=None,
        description="Data directory of the embedded engine. Unset: CLICKHOUSE_PATH when the "
        f"store is used, else {DEFAULT_PATH}.",
    )
    lock_timeout_seconds: float = Field(
        default=600.0,
        description="How long a session waits for another process (a reader, another run) to "
        "release the data directory before failing.",
    )


class ClickHouseServer(dg.Config):
    """A ClickHouse server over HTTP(S)."""

    kind: Literal["server"] = Field(default="server", description="Selects a ClickHouse server.")
    url: str = Field(
        description="http(s)://[user:password@]host:8123/database of the server.",
    )
    username: str | None = Field(
        default=None, description="User, when not in the URL (overrides the URL's)."
    )
    password: str | None = Field(
        default=None, description="Password, when not in the URL (overrides the URL's)."
    )
    connect_timeout_seconds: float = Field(
        default=10.0, description="Timeout for opening a connection to the server."
    )
    send_receive_timeout_seconds: float = Field(
        default=300.0, description="Timeout for one request to the server (a query, an insert)."
    )


class ClickHouseResource(dg.ConfigurableResource):
    """The analytics store: the embedded engine (default) or a ClickHouse server.

    Assets call `session()` for a connection and `describe()` for where the data goes.
    """

    engine: EmbeddedClickHouse | ClickHouseServer = Field(
        default_factory=EmbeddedClickHouse,
        discriminator="kind",
        description="`embedded` (chdb on a local directory) or `server` (a URL).",
    )

    @property
    def embedded(self) -> bool:
        """Whether this is the in-process engine rather than a server."""
        return isinstance(self.engine, EmbeddedClickHouse)

    def data_dir(self) -> Path:
        """The embedded engine's data directory, CLICKHOUSE_PATH read now when unset.

        Raises:
            TypeError: The engine is a server.
        """
        engine = self.engine
        if not isinstance(engine, EmbeddedClickHouse):
            raise TypeError("a ClickHouse server has no local data directory")
        return Path(engine.path or env_str(dg.EnvVar("CLICKHOUSE_PATH"), DEFAULT_PATH)).resolve()

    def dsn(self) -> str:
        """The clickhouse-connect DSN: chdb://<directory> or the server URL."""
        engine = self.engine
        if isinstance(engine, EmbeddedClickHouse):
            return f"chdb://{self.data_dir()}"
        return engine.url

    def describe(self) -> str:
        """Where the data goes, without credentials (for logs and metadata)."""
        engine = self.engine
        if isinstance(engine, EmbeddedClickHouse):
            return f"chdb:{self.data_dir()}"
        u = urlsplit(engine.url)
        return f"{u.scheme}://{u.hostname}:{u.port or ''}{u.path}"

    def _connect(self) -> Any:
        import clickhouse_connect

        engine = self.engine
        if isinstance(engine, EmbeddedClickHouse):
            self.data_dir().mkdir(parents=True, exist_ok=True)
            return clickhouse_connect.get_client(dsn=self.dsn())
        return clickhouse_connect.get_client(
            dsn=engine.url,
            # None / "" make clickhouse-connect take the user and password from the URL
            username=engine.username,
            password=engine.password or "",
            connect_timeout=engine.connect_timeout_seconds,
            send_receive_timeout=engine.send_receive_timeout_seconds,
        )

    @contextmanager
    def session(self) -> Iterator[ClickHouseSession]:
        """An open connection for the duration of the block; the embedded directory is
        released when the block ends.

        Raises:
            TimeoutError: The embedded directory stayed locked by another process for the
                engine's `lock_timeout_seconds`.
        """
        engine = self.engine
        lock_timeout = (
            engine.lock_timeout_seconds if isinstance(engine, EmbeddedClickHouse) else 0.0
        )
        deadline = time.monotonic() + lock_timeout
        delay = 0.1
        attempt = 0
        while True:
            attempt += 1
            try:
                client = self._connect()
                break
            except Exception as e:  # clickhouse-connect wraps chdb's errors in its own types
                # The holder may let go between the failed open and the probe: a couple of
                # quick retries cover that race.
                busy = self.embedded and (
                    embedded_dir_busy(self.data_dir())
                    or ("EmbeddedServer" in str(e) and attempt < 3)
                )
                if not busy or time.monotonic() + delay > deadline:
                    if busy:
                        raise TimeoutError(
                            f"the embedded ClickHouse directory {self.data_dir()} stayed locked by "
                            f"another process for {lock_timeout:.0f} s"
                        ) from e
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        try:
            yield ClickHouseSession(client, embedded=self.embedded)
        finally:
            client.close()
