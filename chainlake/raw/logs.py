"""raw/logs: one row per log (event) emitted by a transaction, from the receipts."""

from __future__ import annotations

from typing import Annotated, ClassVar

import pandera.polars as pa
import polars as pl

from chainlake.rpc import lower, quantity
from chainlake.schema import conform, empty

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
        unique: ClassVar[list[str]] = ["block_number", "log_index"]


def logs_from_rpc(blocks: pl.DataFrame, receipts: pl.DataFrame, chain_id: int) -> pl.DataFrame:
    """Pure transform: raw RPC frames → rows of raw/logs.

    `blocks` is `rpc_block_frame` output (one row per block, `_bi` its position), `receipts`
    the flat receipts of those blocks (`rpc_receipt_frame`), each with the `_bi` of its block.
    """
    head = blocks.select(
        pl.lit(chain_id, pl.Int64).alias("chain_id"),
        quantity("number").alias("block_number"),
        lower("hash").alias("block_hash"),
        pl.from_epoch(quantity("timestamp"), time_unit="s")
        .dt.replace_time_zone("UTC")
        .alias("block_timestamp"),
    )
    logs = (
        receipts.select("_bi", "logs")
        .filter(pl.col("logs").list.len() > 0)
        .explode("logs")
        .unnest("logs")
    )
    if logs.height == 0:
        return empty(LogsModel)
    topic = pl.col("topics")
    frame = pl.concat(
        [
            head.select(pl.all().gather(logs["_bi"])),
            logs.select(
                lower("transactionHash").alias("transaction_hash"),
                quantity("transactionIndex").alias("transaction_index"),
                quantity("logIndex").alias("log_index"),
                lower("address").alias("address"),
                *(lower(topic.list.get(i, null_on_oob=True)).alias(f"topic{i}") for i in range(4)),
                pl.col("data"),
            ),
        ],
        how="horizontal",
    ).with_columns(pl.col("block_timestamp").dt.date().alias("date"))
    return conform(frame, LogsModel)
