"""Delta Lake: the raw and core tables, local folder or S3-compatible object storage.

Layout (seed 000): `<root>/<network>/<subnet>/<table>`, each table partitioned by a Date
column `date`. A day is replaced with a predicate overwrite, one atomic commit, so a
re-materialised day replaces exactly that day and a killed run leaves the previous version.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

import dagster as dg
import polars as pl
import pyarrow as pa
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import TableNotFoundError
from pydantic import Field

from chainlake.config import ChainConfig

PARTITION_COLUMN = "date"


def day_predicate(day: dt.date) -> str:
    # deltalake predicates take no bound parameters; a date's ISO form is the only value here.
    return f"{PARTITION_COLUMN} = '{day.isoformat()}'"


class DeltaStore(dg.ConfigurableResource):
    """Where the Delta tables live, and how a day of one is read and replaced."""

    root: str = Field(
        default="data/delta",
        description="Local folder or s3://bucket/prefix holding every Delta table (DELTA_ROOT).",
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        description="Endpoint of an S3-compatible server, e.g. MinIO (S3_ENDPOINT_URL).",
    )
    s3_region: str = Field(default="us-east-1", description="Region of the bucket (AWS_REGION).")
    s3_access_key_id: str | None = Field(default=None, description="AWS_ACCESS_KEY_ID.")
    s3_secret_access_key: str | None = Field(default=None, description="AWS_SECRET_ACCESS_KEY.")
    s3_allow_http: bool = Field(
        default=False, description="Allow a plain-http endpoint (local MinIO or test servers)."
    )

    @property
    def is_s3(self) -> bool:
        return self.root.startswith("s3://")

    def storage_options(self) -> dict[str, str]:
        if not self.is_s3:
            return {}
        opts = {"AWS_REGION": self.s3_region}
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
        return f"{self.root.rstrip('/')}/{chain.network}/{chain.subnet}/{table}"

    def _table(self, uri: str) -> DeltaTable | None:
        try:
            return DeltaTable(uri, storage_options=self.storage_options() or None)
        except TableNotFoundError:
            return None

    def exists(self, chain: ChainConfig, table: str) -> bool:
        return self._table(self.table_uri(chain, table)) is not None

    # -- writes ---------------------------------------------------------------------------

    def replace_day(
        self,
        chain: ChainConfig,
        table: str,
        day: dt.date,
        data: pa.Table | pa.RecordBatchReader | pl.DataFrame,
    ) -> int:
        """Replace exactly `day` of `table` with `data` in one commit; returns the new version.
        Every row of `data` must belong to `day` (Delta enforces the predicate)."""
        return self._write(self.table_uri(chain, table), data, mode="overwrite", day=day)

    def append(
        self, chain: ChainConfig, table: str, data: pa.Table | pa.RecordBatchReader | pl.DataFrame
    ) -> int:
        return self._write(self.table_uri(chain, table), data, mode="append", day=None)

    def delete(self, chain: ChainConfig, table: str, predicate: str) -> int:
        """Delete rows matching a predicate built by the caller from trusted values only."""
        t = self._table(self.table_uri(chain, table))
        if t is None:
            return 0
        metrics = t.delete(predicate)
        return int(metrics.get("num_deleted_rows", 0))

    def _write(
        self,
        uri: str,
        data: pa.Table | pa.RecordBatchReader | pl.DataFrame,
        *,
        mode: str,
        day: dt.date | None,
    ) -> int:
        if isinstance(data, pl.DataFrame):
            data = data.to_arrow()
        kwargs: dict[str, Any] = {
            "mode": mode,
            "partition_by": [PARTITION_COLUMN],
            "storage_options": self.storage_options() or None,
        }
        if day is not None:
            kwargs["predicate"] = day_predicate(day)
        write_deltalake(uri, data, **kwargs)
        t = self._table(uri)
        assert t is not None
        return t.version()

    # -- reads ----------------------------------------------------------------------------

    def scan(self, chain: ChainConfig, table: str) -> pl.LazyFrame | None:
        uri = self.table_uri(chain, table)
        if self._table(uri) is None:
            return None
        return pl.scan_delta(uri, storage_options=self.storage_options() or None)

    def read_days(
        self,
        chain: ChainConfig,
        table: str,
        days: Iterable[dt.date],
        columns: Sequence[str] | None = None,
        schema: pl.Schema | None = None,
    ) -> pl.DataFrame:
        """The rows of `days` (an empty frame of `schema`, if given, when the table is absent)."""
        days = list(days)
        lf = self.scan(chain, table)
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
    ) -> pl.DataFrame:
        return self.read_days(chain, table, [day], columns, schema)

    def history(self, chain: ChainConfig, table: str, limit: int = 1) -> list[dict[str, Any]]:
        t = self._table(self.table_uri(chain, table))
        return [] if t is None else t.history(limit)
