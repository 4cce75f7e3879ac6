"""raw/transactions: one row per transaction, with the fields of its receipt."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import pandera.polars as pa
import polars as pl
from pandera.polars import PolarsData

from chainlake.raw.shapes import rpc_block_frame, rpc_receipt_frame
from chainlake.rpc import lower, quantity, wei
from chainlake.schema import conform, empty

HASH = r"^0x[0-9a-f]{64}$"
ADDRESS = r"^0x[0-9a-f]{40}$"


class TransactionsModel(pa.DataFrameModel):
    """One row per transaction. `status` is 1 (success) or 0 (reverted), null before Byzantium
    (where the receipt carries a state `root` instead). Wei amounts are exact Decimal(38,0)."""

    chain_id: pl.Int64
    date: pl.Date
    block_number: pl.Int64 = pa.Field(ge=0)
    block_hash: pl.String = pa.Field(str_matches=HASH)
    block_timestamp: Annotated[pl.Datetime, "us", "UTC"]
    transaction_hash: pl.String = pa.Field(str_matches=HASH, unique=True)
    transaction_index: pl.Int32 = pa.Field(ge=0)
    from_address: pl.String = pa.Field(str_matches=ADDRESS)
    to_address: pl.String = pa.Field(str_matches=ADDRESS, nullable=True)
    value: Annotated[pl.Decimal, 38, 0] = pa.Field(ge=0)
    gas: pl.Int64 = pa.Field(ge=0)
    gas_price: Annotated[pl.Decimal, 38, 0] = pa.Field(nullable=True)
    max_fee_per_gas: Annotated[pl.Decimal, 38, 0] = pa.Field(nullable=True)
    max_priority_fee_per_gas: Annotated[pl.Decimal, 38, 0] = pa.Field(nullable=True)
    max_fee_per_blob_gas: Annotated[pl.Decimal, 38, 0] = pa.Field(nullable=True)
    blob_versioned_hashes: pl.List(pl.String) = pa.Field(nullable=True)  # type: ignore[valid-type]
    nonce: Annotated[pl.Decimal, 38, 0]
    input: pl.String
    type: pl.Int32 = pa.Field(ge=0, le=0x7F)
    tx_chain_id: pl.Int64 = pa.Field(nullable=True)
    access_list: pl.String = pa.Field(nullable=True, description="JSON")
    authorization_list: pl.String = pa.Field(nullable=True, description="JSON (type 4)")
    v: pl.String = pa.Field(nullable=True)
    r: pl.String = pa.Field(nullable=True)
    s: pl.String = pa.Field(nullable=True)
    y_parity: pl.Int32 = pa.Field(nullable=True)
    status: pl.Int32 = pa.Field(isin=[0, 1], nullable=True)
    root: pl.String = pa.Field(nullable=True)
    gas_used: pl.Int64 = pa.Field(ge=0)
    cumulative_gas_used: pl.Int64 = pa.Field(ge=0)
    effective_gas_price: Annotated[pl.Decimal, 38, 0] = pa.Field(nullable=True)
    contract_address: pl.String = pa.Field(str_matches=ADDRESS, nullable=True)
    logs_count: pl.Int32 = pa.Field(ge=0)
    blob_gas_used: pl.Int64 = pa.Field(nullable=True)
    blob_gas_price: Annotated[pl.Decimal, 38, 0] = pa.Field(nullable=True)

    class Config:
        strict = True

    @pa.dataframe_check
    def gas_used_within_gas(cls, data: PolarsData) -> pl.LazyFrame:  # type: ignore[misc]
        """A transaction uses no more gas than it was given."""
        return data.lazyframe.select(pl.col("gas_used") <= pl.col("gas"))


class ReceiptMismatch(ValueError):
    """Receipts do not belong to the block (a reorg between the two reads, or a bad node)."""


def _json_list(field: str) -> pl.Expr:
    """A list of structs as compact JSON text (`[{"address":..,"storageKeys":[..]}]`)."""
    col = pl.col(field)
    encoded = pl.lit("[") + col.list.eval(pl.element().struct.json_encode()).list.join(",")
    return pl.when(col.is_null()).then(pl.lit(None, pl.String)).otherwise(encoded + pl.lit("]"))


def transactions_from_rpc(
    blocks: pl.DataFrame, receipts: pl.DataFrame, chain_id: int
) -> pl.DataFrame:
    """Pure transform: raw RPC frames → rows of raw/transactions.

    `blocks` is `rpc_block_frame` output (one row per block with its full transactions, `_bi`
    its position); `receipts` the flat receipts of those blocks in order, each with the `_bi`
    of its block. Raises ReceiptMismatch when a block's receipts are not its transactions'.
    """
    txs = (
        blocks.select(
            "_bi",
            quantity("number").alias("_number"),
            lower("hash").alias("_hash"),
            quantity("timestamp").alias("_ts"),
            "transactions",
        )
        .filter(pl.col("transactions").list.len() > 0)
        .explode("transactions")
        .unnest("transactions")
    )
    # a node returns a block's receipts in transaction order; a proxy or a hand-made answer
    # may not, so they are put in that order before being lined up with the transactions
    rc = receipts.sort("_bi", quantity("transactionIndex"), maintain_order=True).select(
        pl.all().name.prefix("rc_")
    )
    _check_receipts(txs, rc)
    if txs.height == 0:
        return empty(TransactionsModel)
    ts = pl.from_epoch("_ts", time_unit="s").dt.replace_time_zone("UTC")
    frame = pl.concat([txs, rc], how="horizontal").select(
        pl.lit(chain_id, pl.Int64).alias("chain_id"),
        ts.dt.date().alias("date"),
        pl.col("_number").alias("block_number"),
        pl.col("_hash").alias("block_hash"),
        ts.alias("block_timestamp"),
        lower("hash").alias("transaction_hash"),
        quantity("transactionIndex").alias("transaction_index"),
        lower("from").alias("from_address"),
        lower("to").alias("to_address"),
        wei("value").alias("value"),
        quantity("gas").alias("gas"),
        wei("gasPrice").alias("gas_price"),
        wei("maxFeePerGas").alias("max_fee_per_gas"),
        wei("maxPriorityFeePerGas").alias("max_priority_fee_per_gas"),
        wei("maxFeePerBlobGas").alias("max_fee_per_blob_gas"),
        pl.col("blobVersionedHashes")
        .list.eval(pl.element().str.to_lowercase())
        .alias("blob_versioned_hashes"),
        wei("nonce").alias("nonce"),
        pl.col("input"),
        quantity("type").fill_null(0).alias("type"),
        quantity("chainId").alias("tx_chain_id"),
        _json_list("accessList").alias("access_list"),
        _json_list("authorizationList").alias("authorization_list"),
        pl.col("v"),
        pl.col("r"),
        pl.col("s"),
        quantity("yParity").alias("y_parity"),
        quantity("rc_status").alias("status"),
        pl.col("rc_root").alias("root"),
        quantity("rc_gasUsed").alias("gas_used"),
        quantity("rc_cumulativeGasUsed").alias("cumulative_gas_used"),
        wei("rc_effectiveGasPrice").alias("effective_gas_price"),
        lower("rc_contractAddress").alias("contract_address"),
        pl.col("rc_logs").list.len().fill_null(0).alias("logs_count"),
        quantity("rc_blobGasUsed").alias("blob_gas_used"),
        wei("rc_blobGasPrice").alias("blob_gas_price"),
    )
    return conform(frame, TransactionsModel)


def _check_receipts(txs: pl.DataFrame, rc: pl.DataFrame) -> None:
    """Receipts line up with transactions: same blocks, same count per block, same hashes."""
    same_len = txs.height == rc.height
    if same_len and txs.height:
        bad = pl.DataFrame(
            {
                "block": txs["_bi"] != rc["rc__bi"],
                "hash": txs["hash"].str.to_lowercase()
                != rc["rc_transactionHash"].str.to_lowercase(),
                "block_hash": (
                    rc["rc_blockHash"].is_not_null()
                    & (rc["rc_blockHash"].str.to_lowercase() != txs["_hash"])
                ),
            }
        ).select(pl.any_horizontal(pl.all()).fill_null(True).arg_true())
        if bad.height == 0:
            return
        i = bad.item(0, 0)
        raise ReceiptMismatch(
            f"block {txs['_number'][i]} {txs['_hash'][i]}: receipt "
            f"{rc['rc_transactionHash'][i]} (block {rc['rc_blockHash'][i]}) does not match "
            f"transaction {txs['hash'][i]}"
        )
    if not same_len:
        tx_counts = txs.group_by("_bi").len()
        rc_counts = rc.group_by("rc__bi").len().rename({"rc__bi": "_bi", "len": "rc_len"})
        diff = (
            tx_counts.join(rc_counts, on="_bi", how="full", coalesce=True)
            .fill_null(0)
            .filter(pl.col("len") != pl.col("rc_len"))
            .sort("_bi")
        )
        row = diff.row(0, named=True)
        raise ReceiptMismatch(
            f"block at position {row['_bi']} of the batch: {row['len']} transactions but "
            f"{row['rc_len']} receipts"
        )


def transactions_frame(
    blocks: Sequence[dict[str, Any]],
    receipts: Sequence[Sequence[dict[str, Any]]],
    chain_id: int,
) -> pl.DataFrame:
    """`transactions_from_rpc` on JSON-RPC results already decoded into dicts: full blocks
    and, for each block, its receipts."""
    return transactions_from_rpc(rpc_block_frame(blocks), rpc_receipt_frame(receipts), chain_id)
