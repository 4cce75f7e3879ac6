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
        str_matches=HASH, unique=True, description="hash of the transaction, lowercase 0x-hex"
    )
    transaction_index: pl.Int32 = pa.Field(
        ge=0, description="position of the transaction in its block"
    )
    from_address: pl.String = pa.Field(str_matches=ADDRESS, description="sender, lowercase 0x-hex")
    to_address: pl.String = pa.Field(
        str_matches=ADDRESS, nullable=True, description="recipient; null for a contract creation"
    )
    value: Annotated[pl.Decimal, 38, 0] = pa.Field(ge=0, description="wei sent, exact")
    gas: pl.Int64 = pa.Field(ge=0, description="gas limit given by the sender")
    gas_price: Annotated[pl.Decimal, 38, 0] = pa.Field(
        nullable=True,
        description="gas price in wei (legacy and access-list transactions; for EIP-1559 as the node reports it)",
    )
    max_fee_per_gas: Annotated[pl.Decimal, 38, 0] = pa.Field(
        nullable=True, description="EIP-1559 fee cap in wei; null for legacy transactions"
    )
    max_priority_fee_per_gas: Annotated[pl.Decimal, 38, 0] = pa.Field(
        nullable=True, description="EIP-1559 tip cap in wei; null for legacy transactions"
    )
    max_fee_per_blob_gas: Annotated[pl.Decimal, 38, 0] = pa.Field(
        nullable=True, description="EIP-4844 blob fee cap in wei; null unless a blob transaction"
    )
    blob_versioned_hashes: pl.List(pl.String) = pa.Field(  # type: ignore[valid-type]
        nullable=True, description="EIP-4844 blob versioned hashes; null unless a blob transaction"
    )
    nonce: Annotated[pl.Decimal, 38, 0] = pa.Field(description="sender's nonce")
    input: pl.String = pa.Field(description="call data, 0x-hex")
    type: pl.Int32 = pa.Field(
        ge=0,
        le=0x7F,
        description="transaction type (0 legacy, 1 access list, 2 EIP-1559, 3 blob, 4 set-code)",
    )
    tx_chain_id: pl.Int64 = pa.Field(
        nullable=True,
        description="chain id signed into the transaction; null for pre-EIP-155 legacy",
    )
    access_list: pl.String = pa.Field(nullable=True, description="JSON")
    authorization_list: pl.String = pa.Field(nullable=True, description="JSON (type 4)")
    v: pl.String = pa.Field(nullable=True, description="signature v, 0x-hex")
    r: pl.String = pa.Field(nullable=True, description="signature r, 0x-hex")
    s: pl.String = pa.Field(nullable=True, description="signature s, 0x-hex")
    y_parity: pl.Int32 = pa.Field(
        nullable=True, description="signature y parity (typed transactions)"
    )
    status: pl.Int32 = pa.Field(
        isin=[0, 1],
        nullable=True,
        description="receipt status: 1 success, 0 reverted; null before Byzantium",
    )
    root: pl.String = pa.Field(
        nullable=True, description="receipt post-state root (pre-Byzantium); usually null"
    )
    gas_used: pl.Int64 = pa.Field(ge=0, description="gas used by the transaction (receipt)")
    cumulative_gas_used: pl.Int64 = pa.Field(
        ge=0, description="gas used in the block up to and including this transaction (receipt)"
    )
    effective_gas_price: Annotated[pl.Decimal, 38, 0] = pa.Field(
        nullable=True, description="price per gas actually paid, in wei (receipt)"
    )
    contract_address: pl.String = pa.Field(
        str_matches=ADDRESS,
        nullable=True,
        description="address of the contract created; null unless a creation",
    )
    logs_count: pl.Int32 = pa.Field(
        ge=0, description="number of logs the transaction emitted (receipt)"
    )
    blob_gas_used: pl.Int64 = pa.Field(
        nullable=True,
        description="blob gas used (receipt, EIP-4844), as served: null unless a blob "
        "transaction on Ethereum; on OP-stack chains since Jovian every receipt's data-availability "
        "footprint (no blob fee: OP receipts have no blob gas price)",
    )
    blob_gas_price: Annotated[pl.Decimal, 38, 0] = pa.Field(
        nullable=True,
        description="blob gas price in wei (receipt, EIP-4844); null unless a blob transaction",
    )
    mint: Annotated[pl.Decimal, 38, 0] = pa.Field(
        nullable=True,
        ge=0,
        description="wei minted to the sender by an OP-stack deposit transaction (type 0x7e, "
        "`mint`), even when it reverted; null elsewhere",
    )
    l1_fee: Annotated[pl.Decimal, 38, 0] = pa.Field(
        nullable=True,
        ge=0,
        description="L1 data fee in wei paid by the sender (receipt `l1Fee`, OP-stack chains); "
        "null elsewhere",
    )
    operator_fee_scalar: pl.Int64 = pa.Field(
        nullable=True,
        ge=0,
        description="OP-stack operator fee scalar (receipt `operatorFeeScalar`, since Isthmus, "
        "when the chain charges an operator fee); null elsewhere",
    )
    operator_fee_constant: Annotated[pl.Decimal, 38, 0] = pa.Field(
        nullable=True,
        ge=0,
        description="OP-stack operator fee constant in wei (receipt `operatorFeeConstant`, "
        "since Isthmus, when the chain charges an operator fee); null elsewhere",
    )
    da_footprint_gas_scalar: pl.Int64 = pa.Field(
        nullable=True,
        ge=0,
        description="OP-stack DA footprint gas scalar (receipt `daFootprintGasScalar`, since "
        "Jovian: it selects Jovian's operator fee formula); null elsewhere",
    )

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
        # a deposit (0x7e) served without its nonce: the receipt's depositNonce, which is
        # what op-geth and Nethermind serve as a deposit's nonce
        pl.coalesce(wei("nonce"), wei("rc_depositNonce")).alias("nonce"),
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
        wei("mint").alias("mint"),
        wei("rc_l1Fee").alias("l1_fee"),
        quantity("rc_operatorFeeScalar").alias("operator_fee_scalar"),
        wei("rc_operatorFeeConstant").alias("operator_fee_constant"),
        quantity("rc_daFootprintGasScalar").alias("da_footprint_gas_scalar"),
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
