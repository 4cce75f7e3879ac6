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

    chain_id: pl.Int64 = pa.Field(description="EIP-155 chain id of the chain the row belongs to")
    date: pl.Date = pa.Field(description="UTC day of the row (the Delta partition column)")
    block_number: pl.Int64 = pa.Field(ge=0, description="number of the block")
    block_hash: pl.String = pa.Field(
        str_matches=HASH, description="hash of the block, lowercase 0x-hex"
    )
    block_timestamp: Annotated[pl.Datetime, "us", "UTC"] = pa.Field(
        description="time of the block, UTC"
    )
    transaction_hash: pl.String = pa.Field(
        str_matches=HASH, description="hash of the transaction, lowercase 0x-hex"
    )
    transaction_index: pl.Int32 = pa.Field(
        ge=0, description="position of the emitting transaction in its block"
    )
    log_index: pl.Int32 = pa.Field(ge=0, description="position of the log in its block")
    address: pl.String = pa.Field(
        str_matches=r"^0x[0-9a-f]{40}$",
        description="contract that emitted the log, lowercase 0x-hex",
    )
    topic0: pl.String = pa.Field(
        nullable=True, description="first topic (the event signature hash for non-anonymous events)"
    )
    topic1: pl.String = pa.Field(nullable=True, description="second topic (first indexed argument)")
    topic2: pl.String = pa.Field(nullable=True, description="third topic (second indexed argument)")
    topic3: pl.String = pa.Field(nullable=True, description="fourth topic (third indexed argument)")
    data: pl.String = pa.Field(description="non-indexed event data, 0x-hex")

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
