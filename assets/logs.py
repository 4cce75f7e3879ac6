"""raw/logs: one row per log (event) emitted by a transaction, from the receipts."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Annotated, Any

import pandera.polars as pa
import polars as pl

from chainlake.schema import conform, polars_schema

HASH = r"^0x[0-9a-f]{64}$"


class LogsModel(pa.DataFrameModel):
    """One row per log. `topic0` is the event signature hash for events that are not
    anonymous; `data` is the undecoded 0x-hex payload."""

    chain_id: pl.Int64
    date: pl.Date
    block_number: pl.Int64 = pa.Field(ge=0)
    block_hash: pl.String = pa.Field(str_matches=HASH)
    block_timestamp: Annotated[pl.Datetime, "us", "UTC"]
    transaction_hash: pl.String = pa.Field(str_matches=HASH)
    transaction_index: pl.Int32 = pa.Field(ge=0)
    log_index: pl.Int32 = pa.Field(ge=0)
    address: pl.String = pa.Field(str_matches=r"^0x[0-9a-f]{40}$")
    topic0: pl.String = pa.Field(nullable=True)
    topic1: pl.String = pa.Field(nullable=True)
    topic2: pl.String = pa.Field(nullable=True)
    topic3: pl.String = pa.Field(nullable=True)
    data: pl.String

    class Config:
        strict = True
        unique = ["block_number", "log_index"]


def log_rows(
    block: dict[str, Any], receipts: Sequence[dict[str, Any]], chain_id: int
) -> list[dict[str, Any]]:
    ts = dt.datetime.fromtimestamp(int(block["timestamp"], 16), dt.UTC)
    number = int(block["number"], 16)
    block_hash = block["hash"].lower()
    rows = []
    for rc in receipts:
        for lg in rc.get("logs") or ():
            topics = [t.lower() for t in lg.get("topics") or ()]
            topics += [None] * (4 - len(topics))
            rows.append(
                {
                    "chain_id": chain_id,
                    "date": ts.date(),
                    "block_number": number,
                    "block_hash": block_hash,
                    "block_timestamp": ts,
                    "transaction_hash": lg["transactionHash"].lower(),
                    "transaction_index": int(lg["transactionIndex"], 16),
                    "log_index": int(lg["logIndex"], 16),
                    "address": lg["address"].lower(),
                    "topic0": topics[0],
                    "topic1": topics[1],
                    "topic2": topics[2],
                    "topic3": topics[3],
                    "data": lg["data"],
                }
            )
    return rows


def logs_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Pure transform: rows from `log_rows` → raw/logs."""
    return conform(pl.DataFrame(rows, schema=polars_schema(LogsModel), orient="row"), LogsModel)
