"""raw/blocks: one row per block of a chain, partitioned by the UTC day of its timestamp."""

from __future__ import annotations

from typing import Annotated

import pandera.polars as pa
import polars as pl
from pandera.polars import PolarsData

from chainlake.rpc import lower, quantity, wei
from chainlake.schema import conform

WITHDRAWALS = pl.List(
    pl.Struct(
        {
            "index": pl.Int64,
            "validator_index": pl.Int64,
            "address": pl.String,
            "amount_gwei": pl.Int64,
        }
    )
)


class BlocksModel(pa.DataFrameModel):
    """One row per block. Hashes and addresses are lowercase 0x-hex strings; wei amounts are
    Decimal(38,0) (exact integers); header fields of later forks are null before that fork."""

    chain_id: pl.Int64
    date: pl.Date
    block_number: pl.Int64 = pa.Field(ge=0, unique=True)
    block_hash: pl.String = pa.Field(str_matches=r"^0x[0-9a-f]{64}$", unique=True)
    parent_hash: pl.String = pa.Field(str_matches=r"^0x[0-9a-f]{64}$")
    timestamp: Annotated[pl.Datetime, "us", "UTC"]
    miner: pl.String = pa.Field(str_matches=r"^0x[0-9a-f]{40}$")
    nonce: pl.String = pa.Field(nullable=True)
    sha3_uncles: pl.String
    logs_bloom: pl.String
    transactions_root: pl.String
    state_root: pl.String
    receipts_root: pl.String
    difficulty: Annotated[pl.Decimal, 38, 0]
    total_difficulty: Annotated[pl.Decimal, 38, 0] = pa.Field(nullable=True)
    size: pl.Int64 = pa.Field(nullable=True)
    extra_data: pl.String
    mix_hash: pl.String = pa.Field(nullable=True)
    gas_limit: pl.Int64 = pa.Field(ge=0)
    gas_used: pl.Int64 = pa.Field(ge=0)
    base_fee_per_gas: Annotated[pl.Decimal, 38, 0] = pa.Field(nullable=True)
    transaction_count: pl.Int32 = pa.Field(ge=0)
    uncle_count: pl.Int32 = pa.Field(ge=0)
    withdrawals_root: pl.String = pa.Field(nullable=True)
    withdrawal_count: pl.Int32 = pa.Field(nullable=True)
    withdrawals: WITHDRAWALS = pa.Field(nullable=True)  # type: ignore[valid-type]
    blob_gas_used: pl.Int64 = pa.Field(nullable=True)
    excess_blob_gas: pl.Int64 = pa.Field(nullable=True)
    parent_beacon_block_root: pl.String = pa.Field(nullable=True)
    requests_hash: pl.String = pa.Field(nullable=True)

    class Config:
        strict = True

    @pa.dataframe_check
    def gas_used_within_limit(cls, data: PolarsData) -> pl.LazyFrame:  # type: ignore[misc]
        """A block uses no more gas than its limit."""
        return data.lazyframe.select(pl.col("gas_used") <= pl.col("gas_limit"))


def blocks_from_rpc(blocks: pl.DataFrame, chain_id: int) -> pl.DataFrame:
    """Pure transform: raw RPC block frame (`rpc_block_frame`) → rows of raw/blocks."""
    ts = pl.from_epoch(quantity("timestamp"), time_unit="s").dt.replace_time_zone("UTC")
    w = pl.element().struct.field
    withdrawals = pl.col("withdrawals").list.eval(
        pl.struct(
            quantity(w("index")).alias("index"),
            quantity(w("validatorIndex")).alias("validator_index"),
            lower(w("address")).alias("address"),
            quantity(w("amount")).alias("amount_gwei"),
        )
    )
    frame = blocks.select(
        pl.lit(chain_id, pl.Int64).alias("chain_id"),
        ts.dt.date().alias("date"),
        quantity("number").alias("block_number"),
        lower("hash").alias("block_hash"),
        lower("parentHash").alias("parent_hash"),
        ts.alias("timestamp"),
        lower("miner").alias("miner"),
        pl.col("nonce"),
        lower("sha3Uncles").alias("sha3_uncles"),
        pl.col("logsBloom").alias("logs_bloom"),
        lower("transactionsRoot").alias("transactions_root"),
        lower("stateRoot").alias("state_root"),
        lower("receiptsRoot").alias("receipts_root"),
        wei("difficulty").fill_null(0).alias("difficulty"),
        wei("totalDifficulty").alias("total_difficulty"),
        quantity("size").alias("size"),
        pl.col("extraData").alias("extra_data"),
        lower("mixHash").alias("mix_hash"),
        quantity("gasLimit").alias("gas_limit"),
        quantity("gasUsed").alias("gas_used"),
        wei("baseFeePerGas").alias("base_fee_per_gas"),
        pl.col("transactions").list.len().fill_null(0).alias("transaction_count"),
        pl.col("uncles").list.len().fill_null(0).alias("uncle_count"),
        lower("withdrawalsRoot").alias("withdrawals_root"),
        pl.col("withdrawals").list.len().alias("withdrawal_count"),
        withdrawals.alias("withdrawals"),
        quantity("blobGasUsed").alias("blob_gas_used"),
        quantity("excessBlobGas").alias("excess_blob_gas"),
        lower("parentBeaconBlockRoot").alias("parent_beacon_block_root"),
        lower("requestsHash").alias("requests_hash"),
    )
    return conform(frame, BlocksModel)
