"""raw/blocks: one row per block of a chain, partitioned by the UTC day of its timestamp."""

from __future__ import annotations

from typing import Annotated

import pandera.polars as pa
import polars as pl
from pandera.polars import PolarsData

from chainlake.raw.shapes import UNCLE_HEADERS
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

UNCLES = pl.List(
    pl.Struct({"index": pl.Int32, "hash": pl.String, "number": pl.Int64, "miner": pl.String})
)


class BlocksModel(pa.DataFrameModel):
    """One row per block. Hashes and addresses are lowercase 0x-hex strings; wei amounts are
    Decimal(38,0) (exact integers); header fields of later forks are null before that fork."""

    chain_id: pl.Int64 = pa.Field(description="EIP-155 chain id of the chain the row belongs to")
    date: pl.Date = pa.Field(description="UTC day of the row (the Delta partition column)")
    block_number: pl.Int64 = pa.Field(ge=0, unique=True, description="number of the block (height)")
    block_hash: pl.String = pa.Field(
        str_matches=r"^0x[0-9a-f]{64}$",
        unique=True,
        description="hash of the block, lowercase 0x-hex",
    )
    parent_hash: pl.String = pa.Field(
        str_matches=r"^0x[0-9a-f]{64}$", description="hash of the parent block"
    )
    timestamp: Annotated[pl.Datetime, "us", "UTC"] = pa.Field(description="time of the block, UTC")
    miner: pl.String = pa.Field(
        str_matches=r"^0x[0-9a-f]{40}$", description="fee recipient (coinbase), lowercase 0x-hex"
    )
    nonce: pl.String = pa.Field(
        nullable=True,
        description="proof-of-work nonce (zero since the merge); null if the node omits it",
    )
    sha3_uncles: pl.String = pa.Field(description="hash of the uncle headers")
    logs_bloom: pl.String = pa.Field(description="bloom filter of the block's logs")
    transactions_root: pl.String = pa.Field(description="root of the transactions trie")
    state_root: pl.String = pa.Field(description="root of the state trie after the block")
    receipts_root: pl.String = pa.Field(description="root of the receipts trie")
    difficulty: Annotated[pl.Decimal, 38, 0] = pa.Field(
        description="proof-of-work difficulty (0 since the merge)"
    )
    total_difficulty: Annotated[pl.Decimal, 38, 0] = pa.Field(
        nullable=True,
        description="chain's total difficulty up to this block; null when the node omits it",
    )
    size: pl.Int64 = pa.Field(nullable=True, description="block size in bytes")
    extra_data: pl.String = pa.Field(description="extra data field of the header, 0x-hex")
    mix_hash: pl.String = pa.Field(
        nullable=True, description="mix hash (prevRandao since the merge)"
    )
    gas_limit: pl.Int64 = pa.Field(ge=0, description="gas limit of the block")
    gas_used: pl.Int64 = pa.Field(ge=0, description="gas used by all transactions of the block")
    base_fee_per_gas: Annotated[pl.Decimal, 38, 0] = pa.Field(
        nullable=True, description="EIP-1559 base fee in wei; null before London"
    )
    transaction_count: pl.Int32 = pa.Field(ge=0, description="number of transactions in the block")
    uncle_count: pl.Int32 = pa.Field(ge=0, description="number of uncle (ommer) headers")
    uncles: UNCLES = pa.Field(  # type: ignore[valid-type]
        nullable=True,
        description="the uncle headers (index in the block, hash, number, miner), read with "
        "eth_getUncleByBlockHashAndIndex on chains with proof-of-work rewards (`block_rewards: "
        "ethereum`); empty when the block has no uncles, null when it has some not read",
    )
    withdrawals_root: pl.String = pa.Field(
        nullable=True, description="root of the withdrawals trie; null before Shanghai"
    )
    withdrawal_count: pl.Int32 = pa.Field(
        nullable=True, description="number of beacon-chain withdrawals; null before Shanghai"
    )
    withdrawals: WITHDRAWALS = pa.Field(  # type: ignore[valid-type]
        nullable=True,
        description="beacon-chain withdrawals (index, validator_index, address, amount_gwei)",
    )
    blob_gas_used: pl.Int64 = pa.Field(
        nullable=True,
        description="blob gas used (EIP-4844), as served; null before Cancun; on OP-stack chains "
        "since Jovian the block's data-availability footprint",
    )
    excess_blob_gas: pl.Int64 = pa.Field(
        nullable=True, description="excess blob gas (EIP-4844); null before Cancun"
    )
    parent_beacon_block_root: pl.String = pa.Field(
        nullable=True, description="root of the parent beacon block (EIP-4788); null before Cancun"
    )
    requests_hash: pl.String = pa.Field(
        nullable=True,
        description="hash of the execution-layer requests (EIP-7685); null before Prague",
    )

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
    u = pl.element().struct.field
    uncle_count = pl.col("uncles").list.len().fill_null(0)
    if UNCLE_HEADERS in blocks.columns:
        read = pl.col(UNCLE_HEADERS).list.eval(
            pl.struct(
                u("index").alias("index"),
                lower(u("hash")).alias("hash"),
                quantity(u("number")).alias("number"),
                lower(u("miner")).alias("miner"),
            )
        )
    else:
        read = pl.lit(None, UNCLES)
    uncles = pl.when(uncle_count == 0).then(pl.lit([], UNCLES)).otherwise(read.cast(UNCLES))
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
        uncle_count.alias("uncle_count"),
        uncles.alias("uncles"),
        lower("withdrawalsRoot").alias("withdrawals_root"),
        pl.col("withdrawals").list.len().alias("withdrawal_count"),
        withdrawals.alias("withdrawals"),
        quantity("blobGasUsed").alias("blob_gas_used"),
        quantity("excessBlobGas").alias("excess_blob_gas"),
        lower("parentBeaconBlockRoot").alias("parent_beacon_block_root"),
        lower("requestsHash").alias("requests_hash"),
    )
    return conform(frame, BlocksModel)
