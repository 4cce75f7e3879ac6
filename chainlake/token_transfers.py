"""core/token_transfers rows from raw/logs rows: the Pandera model and the pure transform.

They live in the library because two layers decode transfers from logs: the asset
`core/token_transfers` (a chain-day of the lake) and the head reader of fast triggers
(`chainlake.events.head`, blocks past the confirmed head), which must decode them alike.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

import pandera.polars as pa
import polars as pl

from chainlake.schema import conform

TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
MAX_DECIMAL_38 = 10**38 - 1
ADDRESS = r"^0x[0-9a-f]{40}$"


class TokenTransfersModel(pa.DataFrameModel):
    """One row per ERC-20 Transfer log. `value` is the raw integer amount (before the token's
    decimals) as Decimal(38,0); a uint256 too wide for it (spam tokens do this) leaves `value`
    null and is kept exactly in `value_raw`, the decimal string of the full amount."""

    chain_id: pl.Int64 = pa.Field(description="EIP-155 chain id of the chain the row belongs to")
    date: pl.Date = pa.Field(description="UTC day of the row (the Delta partition column)")
    block_number: pl.Int64 = pa.Field(
        ge=0, description="number of the block holding the Transfer log"
    )
    block_hash: pl.String = pa.Field(description="hash of the block, lowercase 0x-hex")
    block_timestamp: Annotated[pl.Datetime, "us", "UTC"] = pa.Field(
        description="time of the block, UTC"
    )
    transaction_hash: pl.String = pa.Field(description="hash of the transaction, lowercase 0x-hex")
    transaction_index: pl.Int32 = pa.Field(description="position of the transaction in its block")
    log_index: pl.Int32 = pa.Field(ge=0, description="position of the Transfer log in its block")
    token_address: pl.String = pa.Field(
        str_matches=ADDRESS, description="ERC-20 contract address, lowercase 0x-hex"
    )
    from_address: pl.String = pa.Field(
        str_matches=ADDRESS, description="tokens' sender (topic1), lowercase 0x-hex"
    )
    to_address: pl.String = pa.Field(
        str_matches=ADDRESS, description="tokens' recipient (topic2), lowercase 0x-hex"
    )
    value: Annotated[pl.Decimal, 38, 0] = pa.Field(
        ge=0,
        nullable=True,
        description="amount in the token's base units, exact; null when it exceeds Decimal(38,0) (see value_raw)",
    )
    value_raw: pl.String = pa.Field(
        str_matches=r"^[0-9]+$",
        description="amount in base units as a decimal string, exact for any uint256",
    )

    class Config:
        strict = True
        unique: ClassVar[list[str]] = ["block_number", "log_index"]


def token_transfers_frame(logs: pl.DataFrame) -> pl.DataFrame:
    """Pure transform: raw/logs rows → ERC-20 transfers. ERC-721 transfers (token id in a
    fourth topic) and malformed logs (data not one 32-byte word) are not ERC-20 and are left out."""
    candidates = logs.filter(
        (pl.col("topic0") == TRANSFER_TOPIC)
        & pl.col("topic1").is_not_null()
        & pl.col("topic2").is_not_null()
        & pl.col("topic3").is_null()
        & (pl.col("data").str.len_bytes() == 66)
    )
    amounts = [int(d, 16) for d in candidates["data"].to_list()]
    frame = candidates.select(
        "chain_id",
        "date",
        "block_number",
        "block_hash",
        "block_timestamp",
        "transaction_hash",
        "transaction_index",
        "log_index",
        pl.col("address").alias("token_address"),
        ("0x" + pl.col("topic1").str.slice(26)).alias("from_address"),
        ("0x" + pl.col("topic2").str.slice(26)).alias("to_address"),
    ).with_columns(
        pl.Series("value", [a if a <= MAX_DECIMAL_38 else None for a in amounts], dtype=pl.Int128),
        pl.Series("value_raw", [str(a) for a in amounts], dtype=pl.String),
    )
    return conform(frame, TokenTransfersModel)
