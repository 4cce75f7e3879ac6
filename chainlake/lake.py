"""Delta Lake: the raw and core tables, in a local folder or S3-compatible object storage.

Layout (Ekko's network/subnet layout): `<root>/<network>/<subnet>/<table>`, each table partitioned by a Date
column `date`. A day is replaced with a predicate overwrite, one atomic commit, so a
re-materialised day replaces exactly that day and a killed run leaves the previous version.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import random
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeAlias, TypeVar
from urllib.parse import urlparse

import polars as pl
import pyarrow as pa
from deltalake import DeltaTable, WriterProperties, write_deltalake
from deltalake import Schema as DeltaSchema
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError
from deltalake.transaction import AddAction, create_table_with_add_actions

from chainlake.config import ChainConfig
from chainlake.retry import backoff_delay

PARTITION_COLUMN = "date"
COMMIT_ATTEMPTS = 8
T = TypeVar("T")
# Vacuum keeps every file a version of the last week needs: delta-rs' own default
# (delta.deletedFileRetentionDuration), below which it refuses to vacuum unless forced.
DEFAULT_RETENTION_HOURS = 168

log = logging.getLogger(__name__)


class ObjectStoreError(RuntimeError):
    """The bucket behind DELTA_ROOT is missing, unreachable, or refuses our credentials."""


# What a write takes: a table or frame, a stream, or a callable that opens a fresh stream (so
# a commit that lost a race can be written again).
Data: TypeAlias = (
    pa.Table | pa.RecordBatchReader | pl.DataFrame | Callable[[], pa.RecordBatchReader]
)


def day_predicate(day: dt.date) -> str:
    """The Delta predicate selecting one day's partition."""
    # deltalake predicates take no bound parameters; a date's ISO form is the only value here.
    return f"{PARTITION_COLUMN} = '{day.isoformat()}'"


@dataclass(frozen=True)
class CompactResult:
    """What compacting one day of one table did: that day's live files, bytes and rows before
    and after (rows from the files' statistics, None when a file has none), and the table's
    version before and after (equal when there was nothing to compact)."""

    table: str
    day: dt.date
    files_before: int
    files_after: int
    bytes_before: int
    bytes_after: int
    rows_before: int | None
    rows_after: int | None
    version_before: int
    version_after: int
    files_removed: int
    files_added: int
    seconds: float

    @property
    def compacted(self) -> bool:
        """Whether a commit rewrote files (a day already in one file is left as it is)."""
        return self.files_removed > 0


@dataclass(frozen=True)
class VacuumResult:
    """What vacuuming one table did: the files deleted (or, in a dry run, that would be), their
    bytes when delta-rs reports them, and the table's version before and after (vacuum records
    itself in the log, and changes no row)."""

    table: str
    files_deleted: int
    bytes_deleted: int | None
    version_before: int
    version_after: int
    retention_hours: int
    dry_run: bool
    seconds: float


@dataclass(eq=False)
class DeltaStore:
    """Where the Delta tables live, and how a day of one is read and replaced.

    A plain object: the library's functions take it, and `resources.delta.DeltaResource`
    builds it from the code location's configuration.
    """

    root: str = "data/delta"  # local folder or s3://bucket/prefix
    s3_endpoint_url: str | None = None  # an S3-compatible server, e.g. MinIO
    s3_region: str | None = None  # unset: AWS_REGION, AWS_DEFAULT_REGION, else us-east-1
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = dataclass_field(default=None, repr=False)
    s3_allow_http: bool = False  # a plain-http endpoint (local MinIO or test servers)
    s3_create_bucket: bool = False  # create a missing bucket instead of failing
    _bucket_checked: bool = dataclass_field(default=False, init=False, repr=False)
    # The tables opened at their latest version, by thread and URI (`_table`).
    _opened: dict[tuple[int, str], DeltaTable] = dataclass_field(
        default_factory=dict, init=False, repr=False
    )

    # -- object storage ---------------------------------------------------------------------

    @property
    def region(self) -> str:
        """The S3 region: configured, else from the environment, else us-east-1."""
        return (
            self.s3_region
            or os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
            or "us-east-1"
        )

    @property
    def bucket(self) -> str:
        """The S3 bucket of an `s3://` root."""
        return urlparse(self.root).netloc

    @property
    def prefix(self) -> str:
        """The key prefix under the bucket of an `s3://` root."""
        return urlparse(self.root).path.strip("/")

    def _s3(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.s3_endpoint_url or None,
            region_name=self.region,
            aws_access_key_id=self.s3_access_key_id or None,
            aws_secret_access_key=self.s3_secret_access_key or None,
            config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5),
        )

    def check_bucket(self, *, create: bool | None = None) -> None:
        """Make sure the bucket of DELTA_ROOT exists and takes our credentials, creating it
        when allowed; raise ObjectStoreError saying which of those is wrong otherwise."""
        if not self.is_s3 or self._bucket_checked:
            return
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        if create is None:
            # also settable without touching the code location: DELTA_S3_CREATE_BUCKET=true
            flag = os.environ.get("DELTA_S3_CREATE_BUCKET", "").strip().lower()
            create = self.s3_create_bucket or flag in ("1", "true", "yes")
        where = (
            f"bucket {self.bucket!r} at {self.s3_endpoint_url or 'AWS S3'} (DELTA_ROOT={self.root})"
        )
        s3 = self._s3()
        try:
            s3.head_bucket(Bucket=self.bucket)
        except NoCredentialsError as e:
            raise ObjectStoreError(
                f"no S3 credentials for {where}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            ) from e
        except ClientError as e:
            code = str(e.response.get("Error", {}).get("Code", ""))
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("404", "NoSuchBucket", "NotFound"):
                if not create:
                    raise ObjectStoreError(
                        f"{where} does not exist: create it, or set DELTA_S3_CREATE_BUCKET=true "
                        "to let chainlake create it"
                    ) from e
                self._create_bucket(s3, where)
            elif status in (401, 403) or code in _CREDENTIAL_ERRORS:
                raise ObjectStoreError(
                    f"S3 refused the credentials for {where} ({code or status}): check "
                    "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and the bucket policy"
                ) from e
            else:
                raise ObjectStoreError(f"S3 error on {where}: {e}") from e
        except BotoCoreError as e:
            raise ObjectStoreError(f"cannot reach {where}: {e}") from e
        self._bucket_checked = True

    def _create_bucket(self, s3: Any, where: str) -> None:
        from botocore.exceptions import ClientError

        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        if self.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            s3.create_bucket(**kwargs)
        except ClientError as e:
            code = str(e.response.get("Error", {}).get("Code", ""))
            if code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise ObjectStoreError(f"could not create {where}: {e}") from e
        log.info("created %s", where)

    @property
    def is_s3(self) -> bool:
        """Whether the tables live in S3 (or an S3-compatible server)."""
        return self.root.startswith("s3://")

    def storage_options(self) -> dict[str, str]:
        """The delta-rs storage options for S3 (region, endpoint, credentials); empty when local."""
        if not self.is_s3:
            return {}
        opts = {"AWS_REGION": self.region}
        if self.s3_endpoint_url:
            opts["AWS_ENDPOINT_URL"] = self.s3_endpoint_url
        if self.s3_access_key_id:
            opts["AWS_ACCESS_KEY_ID"] = self.s3_access_key_id
        if self.s3_secret_access_key:
            opts["AWS_SECRET_ACCESS_KEY"] = self.s3_secret_access_key
        if self.s3_allow_http or (self.s3_endpoint_url or "").startswith("http://"):
            opts["AWS_ALLOW_HTTP"] = "true"
        return opts

    def table_uri(self, chain: ChainConfig, table: str) -> str:
        """Where the chain's `table` lives: `<root>/<network>/<subnet>/<table>`.

        On S3 the bucket is checked (and created when allowed) before the first table is
        touched, once per store, so a missing bucket is one clear error, not a failed read."""
        if self.is_s3:
            self.check_bucket()
        return f"{self.root.rstrip('/')}/{chain.network}/{chain.subnet}/{table}"

    def _table(self, uri: str, version: int | None = None) -> DeltaTable | None:
        """The table at `uri`, at its latest version (or at `version`), or None if there is none.

        Opening a table replays its log since the last checkpoint (up to 100 commits: 10 ms at
        30 on a local disk), and a step opens each of its tables several times (to read, check
        the schema, write, record the version). A table opened at its latest version is kept,
        for the thread that opened it (a DeltaTable is not shared between threads), and later
        brought up to date with the commits made since, by any writer (about 1 ms when there
        are none). Should that fail (the table was deleted), it is opened afresh."""
        key = (threading.get_ident(), uri)
        if version is None and (kept := self._opened.get(key)) is not None:
            try:
                kept.update_incremental()
                return kept
            except Exception:
                del self._opened[key]
        try:
            table = DeltaTable(uri, version=version, storage_options=self.storage_options() or None)
        except TableNotFoundError:
            return None
        if version is None:
            self._opened[key] = table
        return table

    def exists(self, chain: ChainConfig, table: str) -> bool:
        """Whether the chain's `table` exists."""
        return self._table(self.table_uri(chain, table)) is not None

    def columns(self, chain: ChainConfig, table: str) -> list[str]:
        """The column names of the chain's `table` (none if it does not exist)."""
        t = self._table(self.table_uri(chain, table))
        return [] if t is None else [f.name for f in t.schema().fields]

    def list_tables(self, chain: ChainConfig, *, include_state: bool = False) -> list[str]:
        """Every Delta table of the chain's network/subnet (names relative to it, like
        `blocks` or `core/x`), found in storage: whatever wrote them. `_state` is left out
        unless `include_state` (vacuum cleans its tables too; they hold no chain data)."""
        base = f"{self.root.rstrip('/')}/{chain.network}/{chain.subnet}"
        found: list[str] = []
        for name in self._children(base):
            if name.startswith("_") and not (include_state and name == "_state"):
                continue
            if self._is_table(f"{base}/{name}"):
                found.append(name)
                continue
            for sub in self._children(f"{base}/{name}"):
                if not sub.startswith("_") and self._is_table(f"{base}/{name}/{sub}"):
                    found.append(f"{name}/{sub}")
        return sorted(found)

    def _children(self, uri: str) -> list[str]:
        if not self.is_s3:
            try:
                return [e.name for e in os.scandir(uri) if e.is_dir()]
            except FileNotFoundError:
                return []
        prefix = urlparse(uri).path.strip("/") + "/"
        out: list[str] = []
        for page in self._s3_client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix, Delimiter="/"
        ):
            for p in page.get("CommonPrefixes", ()):
                out.append(p["Prefix"][len(prefix) :].rstrip("/"))
        return out

    def _is_table(self, uri: str) -> bool:
        if not self.is_s3:
            return os.path.isdir(os.path.join(uri, "_delta_log"))
        prefix = urlparse(uri).path.strip("/") + "/_delta_log/"
        page = self._s3_client.list_objects_v2(Bucket=self.bucket, Prefix=prefix, MaxKeys=1)
        return bool(page.get("KeyCount"))

    @cached_property
    def _s3_client(self) -> Any:
        return self._s3()

    # -- writes ---------------------------------------------------------------------------

    def replace_day(
        self,
        chain: ChainConfig,
        table: str,
        day: dt.date,
        data: Data,
        *,
        where: str | None = None,
    ) -> int:
        """Replace exactly `day` of `table` with `data` in one commit; returns the new version.
        Every row of `data` must belong to `day` (Delta enforces the predicate). With `where`
        (a predicate built from trusted values only), only the day's rows matching it are
        replaced, e.g. `block_number >= 1200` for the open day's newest blocks."""
        return self._write(
            self.table_uri(chain, table), data, mode="overwrite", day=day, predicate=where
        )

    def replace_day_files(
        self,
        chain: ChainConfig,
        table: str,
        day: dt.date,
        files: Sequence[Path],
        schema: pa.Schema,
    ) -> int:
        """Replace exactly `day` of `table` with Parquet files already written in the table's
        format (columns of `schema` but the partition column `date`), in one commit.

        The files become the table's data files as they are: moved into the table's folder
        (or uploaded, streaming, to S3) under fresh names, then one commit removes the day's
        old files and adds these. Nothing is encoded again and nothing is held in memory, so
        a day of any size costs the same memory. Until the commit they are invisible to
        readers, and a run killed before it leaves only unreferenced files (removed by
        `vacuum`). Falls back to delta-rs' writer if the table's schema is not `schema`."""
        uri = self.table_uri(chain, table)
        existing = self._table(uri)
        if existing is not None and not _same_schema(existing, schema):
            log.warning("%s: schema differs from the files'; writing through delta-rs", uri)
            return self.replace_day(chain, table, day, _files_reader(files, schema, day))
        adds = [self._place(uri, day, f) for f in files]

        def commit() -> None:
            t = self._table(uri)
            if t is None:
                create_table_with_add_actions(
                    uri,
                    DeltaSchema.from_arrow(schema),
                    adds,
                    mode="append",
                    partition_by=[PARTITION_COLUMN],
                    storage_options=self.storage_options() or None,
                )
            else:
                t.create_write_transaction(
                    list(adds),  # type: ignore[arg-type]
                    mode="overwrite",
                    schema=t.schema(),
                    partition_by=[PARTITION_COLUMN],
                    partition_filters=[(PARTITION_COLUMN, "=", day.isoformat())],
                )

        retrying_commit(uri, commit)
        t = self._table(uri)
        assert t is not None
        return t.version()

    def _place(self, uri: str, day: dt.date, source: Path) -> AddAction:
        """Move or upload one data file into the table; its add action."""
        import pyarrow.parquet as pq

        meta = pq.read_metadata(source)
        rel = f"{PARTITION_COLUMN}={day.isoformat()}/part-{uuid.uuid4().hex}.zstd.parquet"
        size = source.stat().st_size
        if self.is_s3:
            key = f"{urlparse(uri).path.strip('/')}/{rel}"
            self._s3_client.upload_file(str(source), self.bucket, key)
        else:
            dest = Path(uri) / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(source), dest)
        return AddAction(
            path=rel,
            size=size,
            partition_values={PARTITION_COLUMN: day.isoformat()},
            modification_time=int(time.time() * 1000),
            data_change=True,
            stats=json.dumps(_file_stats(meta)),
        )

    def append(self, chain: ChainConfig, table: str, data: Data) -> int:
        """Append rows to the chain's `table`; returns the number written."""
        return self._write(self.table_uri(chain, table), data, mode="append", day=None)

    def replace_where(
        self,
        chain: ChainConfig,
        table: str,
        predicate: str,
        data: Data,
    ) -> int:
        """Replace the rows matching `predicate` (built by the caller from trusted values only)
        with `data`, in one commit: every row of `data` must match it. Used to rewrite a block
        range after a reorg, and to make the open day's appends idempotent."""
        return self._write(
            self.table_uri(chain, table), data, mode="overwrite", day=None, predicate=predicate
        )

    def delete(self, chain: ChainConfig, table: str, predicate: str) -> int:
        """Delete rows matching a predicate built by the caller from trusted values only."""
        uri = self.table_uri(chain, table)

        def commit() -> int:
            t = self._table(uri)
            if t is None:
                return 0
            return int(t.delete(predicate).get("num_deleted_rows", 0))

        return retrying_commit(uri, commit)

    def _write(
        self,
        uri: str,
        data: Data,
        *,
        mode: str,
        day: dt.date | None,
        predicate: str | None = None,
    ) -> int:
        """One commit. Writers of other days of the same table may commit at the same time:
        delta-rs resolves the races that do not conflict, and a commit that still loses one
        (or two writers creating the table at once) is tried again, so none is lost. A
        record-batch stream can be read once only; pass a callable that opens it to make the
        write retryable."""
        if isinstance(data, pl.DataFrame):
            data = data.to_arrow()
        kwargs: dict[str, Any] = {
            "mode": mode,
            "partition_by": [PARTITION_COLUMN],
            "storage_options": self.storage_options() or None,
        }
        if day is not None:
            kwargs["predicate"] = day_predicate(day)
        if predicate is not None:
            kwargs["predicate"] = (
                predicate if day is None else f"({kwargs['predicate']}) AND ({predicate})"
            )
        # The table's log is read once for the schema check, the write and the version
        # (opening a table replays its log since the last checkpoint: the dearest part of a
        # small commit, three times over when each step opened it again); a retry after a lost
        # race reads it afresh.
        table = self._table(uri)
        if (
            table is not None
            and mode == "overwrite"
            and isinstance(data, pa.Table | pa.RecordBatchReader)
        ):
            added = _added_columns(table, data.schema)
            if added:
                # A table written before the model gained these columns (an upgrade): they
                # are added to the table, the rows of other days read them as null.
                kwargs["schema_mode"] = "merge"
                log.warning(
                    "%s: adding column(s) %s; rows written before read them as null",
                    uri,
                    ", ".join(added),
                )
        attempts = 0

        def commit() -> DeltaTable | None:
            nonlocal attempts, table
            attempts += 1
            if attempts > 1:
                table = self._table(uri)
            # a DeltaTable written through moves to the version of its own commit
            write_deltalake(
                uri if table is None else table, data() if callable(data) else data, **kwargs
            )
            return table

        # A record-batch stream passed as is was consumed by the first attempt: not retried.
        once = isinstance(data, pa.RecordBatchReader)
        written = retrying_commit(uri, commit, retry=lambda e: not once and _is_commit_race(e))
        if written is None:  # the write created the table
            written = self._table(uri)
            assert written is not None
        return written.version()

    # -- reads ----------------------------------------------------------------------------

    def current_version(self, chain: ChainConfig, table: str) -> int | None:
        """The chain's `table`'s latest version, or None when it does not exist. Read it once
        before reading with `version=` so what a run records is exactly what it read."""
        t = self._table(self.table_uri(chain, table))
        return None if t is None else t.version()

    def scan(
        self, chain: ChainConfig, table: str, *, version: int | None = None
    ) -> pl.LazyFrame | None:
        """A lazy scan of the chain's `table` (as of `version`, when given: time travel), or
        None when it does not exist."""
        t = self._table(self.table_uri(chain, table), version)
        # the scan reads the table opened here (with its storage options), not the log again:
        # opening a table costs more than reading a small day from it
        return None if t is None else pl.scan_delta(t)

    def read_days(
        self,
        chain: ChainConfig,
        table: str,
        days: Iterable[dt.date],
        columns: Sequence[str] | None = None,
        schema: pl.Schema | None = None,
        *,
        version: int | None = None,
    ) -> pl.DataFrame:
        """The rows of `days` (an empty frame of `schema`, if given, when the table is absent),
        as of `version` when given."""
        days = list(days)
        lf = self.scan(chain, table, version=version)
        if lf is None:
            if schema is None:
                raise FileNotFoundError(
                    f"Delta table {self.table_uri(chain, table)} does not exist"
                )
            df = pl.DataFrame(schema=schema)
            return df.select(columns) if columns else df
        lf = lf.filter(pl.col(PARTITION_COLUMN).is_in(days))
        if columns:
            lf = lf.select(columns)
        return lf.collect()

    def read_day(
        self,
        chain: ChainConfig,
        table: str,
        day: dt.date,
        columns: Sequence[str] | None = None,
        schema: pl.Schema | None = None,
        *,
        version: int | None = None,
    ) -> pl.DataFrame:
        """The rows of one day (see `read_days`)."""
        return self.read_days(chain, table, [day], columns, schema, version=version)

    def history(self, chain: ChainConfig, table: str, limit: int = 1) -> list[dict[str, Any]]:
        """The table's latest `limit` commits, newest first (none if it does not exist)."""
        t = self._table(self.table_uri(chain, table))
        return [] if t is None else t.history(limit)

    # -- maintenance ----------------------------------------------------------------------

    def compact_day(
        self,
        chain: ChainConfig,
        table: str,
        day: dt.date,
        *,
        target_size: int | None = None,
    ) -> CompactResult:
        """Rewrite the small files of one day of `table` into a few large ones (Delta OPTIMIZE,
        bin-packing compaction) in one commit that changes no row.

        The commit marks the old files removed without changing data (`dataChange: false`), so
        readers of the current version see the same rows and every older version still reads
        its own files until `vacuum` deletes them after the retention window. A day already in
        one file (or in files of the target size) gets no commit. A commit that loses a race
        with another writer of the table is tried again, as writes are.

        Args:
            chain: The chain whose table it is.
            table: The table, as `list_tables` names it (e.g. `blocks`).
            day: The day (the `date` partition) to compact.
            target_size: Bytes per compacted file; None: the table's `delta.targetFileSize`,
                else delta-rs' 100 MiB.

        Returns:
            The day's files, bytes and rows before and after, and the table's versions.

        Raises:
            FileNotFoundError: The table does not exist.
            ValueError: The table is not partitioned by `date`.
        """
        uri = self.table_uri(chain, table)
        started = time.monotonic()

        def commit() -> tuple[int, tuple[int, int, int | None], dict[str, Any]]:
            t = self._table(uri)
            if t is None:
                raise FileNotFoundError(f"Delta table {uri} does not exist")
            if PARTITION_COLUMN not in t.metadata().partition_columns:
                raise ValueError(f"Delta table {uri} is not partitioned by {PARTITION_COLUMN}")
            version, files = t.version(), _day_files(t, day)
            metrics = t.optimize.compact(
                partition_filters=[(PARTITION_COLUMN, "=", day.isoformat())],
                target_size=target_size,
                writer_properties=_COMPACT_WRITER,
            )
            return version, files, metrics

        version_before, before, metrics = retrying_commit(uri, commit)
        t = self._table(uri)
        assert t is not None
        after = _day_files(t, day)
        return CompactResult(
            table=table,
            day=day,
            files_before=before[0],
            files_after=after[0],
            bytes_before=before[1],
            bytes_after=after[1],
            rows_before=before[2],
            rows_after=after[2],
            version_before=version_before,
            version_after=t.version(),
            files_removed=int(metrics.get("numFilesRemoved", 0)),
            files_added=int(metrics.get("numFilesAdded", 0)),
            seconds=time.monotonic() - started,
        )

    def vacuum(
        self,
        chain: ChainConfig,
        table: str,
        *,
        retention_hours: int = DEFAULT_RETENTION_HOURS,
        full: bool = True,
        dry_run: bool = False,
    ) -> VacuumResult:
        """Delete the files of `table` that no version of the last `retention_hours` needs.

        A file is deleted once it was removed from the table (by a replaced day, a delete or a
        compaction) more than `retention_hours` ago, so every version that was current at some
        moment inside the window can still be read (`DeltaTable(uri, version=v)`); older
        versions cannot. The retention may not be shorter than the table's
        `delta.deletedFileRetentionDuration` (7 days unless set): delta-rs refuses, so time
        travel inside the window cannot be broken by a short setting. Rows never change.

        Args:
            chain: The chain whose table it is.
            table: The table, as `list_tables` names it (`_state/...` included).
            retention_hours: The time-travel window kept readable.
            full: Also delete files no version references at all and older than the window:
                those of a write killed before its commit (`replace_day_files` leaves them),
                and removed files whose record the log's checkpoints have already dropped.
                Files being written now are younger than the window and stay.
            dry_run: Only list what would be deleted.

        Returns:
            The files deleted (or that would be), their bytes when known, and the versions.

        Raises:
            FileNotFoundError: The table does not exist.
            deltalake.exceptions.DeltaError: The retention is shorter than the table allows.
        """
        uri = self.table_uri(chain, table)
        started = time.monotonic()

        def commit() -> tuple[int, list[str]]:
            t = self._table(uri)
            if t is None:
                raise FileNotFoundError(f"Delta table {uri} does not exist")
            version = t.version()
            deleted = t.vacuum(
                retention_hours=retention_hours,
                dry_run=dry_run,
                enforce_retention_duration=True,
                full=full,
            )
            return version, deleted

        version_before, deleted = retrying_commit(uri, commit)
        t = self._table(uri)
        assert t is not None
        return VacuumResult(
            table=table,
            files_deleted=len(deleted),
            bytes_deleted=None if dry_run or not deleted else _vacuumed_bytes(t, version_before),
            version_before=version_before,
            version_after=t.version(),
            retention_hours=retention_hours,
            dry_run=dry_run,
            seconds=time.monotonic() - started,
        )


_CREDENTIAL_ERRORS = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "Forbidden",
    "403",
    "401",
    "ExpiredToken",
    "InvalidToken",
}


def _is_commit_race(e: Exception) -> bool:
    if isinstance(e, CommitFailedError):
        return True
    msg = str(e).lower()
    return "version" in msg and ("already exists" in msg or "conflict" in msg)


def retrying_commit(
    uri: str, commit: Callable[[], T], *, retry: Callable[[Exception], bool] = _is_commit_race
) -> T:
    """`commit()`, again after a short backoff each time it loses a race to another writer of
    the table (up to COMMIT_ATTEMPTS in all). `commit` opens the table itself, so each attempt
    starts from the version the winner left. Other errors are raised at once."""
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        try:
            return commit()
        except (CommitFailedError, DeltaError) as e:
            if attempt == COMMIT_ATTEMPTS or not retry(e):
                raise
            delay = backoff_delay(attempt, base=0.05, cap=2.0, jitter=random.random)
            log.warning("Delta commit to %s lost a race (%s); retrying in %.2fs", uri, e, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


# Compacted files stay for good: zstd, as the extraction writes its files, is smaller than
# delta-rs' default snappy, and DuckDB, Polars and ClickHouse all read it.
_COMPACT_WRITER = WriterProperties(compression="ZSTD")


def _day_files(table: DeltaTable, day: dt.date) -> tuple[int, int, int | None]:
    """Live files, bytes and rows (None if a file has no row count) of one day's partition."""
    adds = pl.from_arrow(pa.table(table.get_add_actions(flatten=True)))
    assert isinstance(adds, pl.DataFrame)
    column = f"partition.{PARTITION_COLUMN}"
    if column not in adds.columns:
        return 0, 0, 0
    day_adds = adds.filter(pl.col(column) == day)
    if "num_records" in day_adds.columns and day_adds["num_records"].null_count() == 0:
        rows: int | None = int(day_adds["num_records"].sum())
    else:
        rows = None if day_adds.height else 0
    return day_adds.height, int(day_adds["size_bytes"].sum()), rows


def _vacuumed_bytes(table: DeltaTable, since_version: int) -> int | None:
    """The bytes the vacuum after `since_version` deleted, as its VACUUM START commit says."""
    for commit in table.history(4):
        if commit.get("operation") == "VACUUM START" and commit.get("version", -1) > since_version:
            size = (commit.get("operationMetrics") or {}).get("sizeOfDataToDelete")
            return None if size is None else int(size)
    return None


def _added_columns(table: DeltaTable, schema: pa.Schema) -> list[str]:
    """The columns of `schema` the existing table lacks, when it lacks nothing else: an older
    table of a model that has only gained columns. Empty when equal or when it differs
    otherwise (a write that drops or renames a column is refused by delta-rs as before)."""
    have = {f.name for f in table.schema().fields}
    want = [n for n in schema.names if n != PARTITION_COLUMN]
    if not have - {PARTITION_COLUMN} <= set(want):
        return []
    return [n for n in want if n not in have]


def _same_schema(table: DeltaTable, schema: pa.Schema) -> bool:
    return bool(table.schema().to_json() == DeltaSchema.from_arrow(schema).to_json())


def _files_reader(files: Sequence[Path], schema: pa.Schema, day: dt.date) -> pa.RecordBatchReader:
    import pyarrow.dataset as pads

    data = pads.dataset([str(f) for f in files], format="parquet")
    date = pa.scalar(day, pa.date32())

    def batches() -> Iterable[pa.RecordBatch]:
        for b in data.scanner(batch_size=16_384).to_batches():
            cols = {
                n: b.column(n) if n != PARTITION_COLUMN else pa.array([date] * b.num_rows)
                for n in schema.names
            }
            yield pa.RecordBatch.from_pydict(cols, schema=schema)

    return pa.RecordBatchReader.from_batches(schema, batches())


def _file_stats(meta: Any) -> dict[str, Any]:
    """Delta file statistics from the Parquet footer: row count, and min, max and null count
    of the flat columns whose row groups all carry them (block_number above all, which
    reorg repairs and block-range reads filter on)."""
    stats: dict[str, Any] = {
        "numRecords": meta.num_rows,
        "minValues": {},
        "maxValues": {},
        "nullCount": {},
    }
    # Parquet numbers its leaf columns: a nested column (withdrawals, uncles) has several, so
    # a top-level field's position is not its column chunk's; a flat field's leaf has its name
    leaf = {meta.schema.column(j).path: j for j in range(meta.num_columns)}
    for field in meta.schema.to_arrow_schema():
        if not (pa.types.is_integer(field.type) or pa.types.is_string(field.type)):
            continue
        i = leaf.get(field.name)
        if i is None:
            continue
        lo = hi = None
        nulls = 0
        for g in range(meta.num_row_groups):
            st = meta.row_group(g).column(i).statistics
            if st is None or not st.has_min_max:
                lo = hi = None
                break
            lo = st.min if lo is None else min(lo, st.min)
            hi = st.max if hi is None else max(hi, st.max)
            nulls += st.null_count or 0
        else:
            if lo is not None and (not isinstance(lo, str) or len(lo) <= 66):
                stats["minValues"][field.name] = lo
                stats["maxValues"][field.name] = hi
                stats["nullCount"][field.name] = nulls
    return stats
