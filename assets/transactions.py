"""raw/transactions: one row per transaction, with the fields of its receipt."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Annotated, Any

import orjson
import pandera.polars as pa
import polars as pl
from pandera.polars import PolarsData

from chainlake.schema import conform, polars_schema

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
        return data.lazyframe.select(pl.col("gas_used") <= pl.col("gas"))


def _int(v: str | None) -> int | None:
    return None if v is None else int(v, 16)


def _lower(v: str | None) -> str | None:
    return None if v is None else v.lower()


def _json(v: Any) -> str | None:
    return None if v is None else orjson.dumps(v).decode()


class ReceiptMismatch(ValueError):
    """Receipts do not belong to the block (a reorg between the two reads, or a bad node)."""


def transaction_rows(
    block: dict[str, Any], receipts: Sequence[dict[str, Any]], chain_id: int
) -> list[dict[str, Any]]:
    txs = block.get("transactions") or []
    block_hash = block["hash"].lower()
    if len(receipts) != len(txs):
        raise ReceiptMismatch(
            f"block {int(block['number'], 16)} {block_hash}: {len(txs)} transactions but "
            f"{len(receipts)} receipts"
        )
    ts = dt.datetime.fromtimestamp(int(block["timestamp"], 16), dt.UTC)
    number = int(block["number"], 16)
    rows = []
    for tx, rc in zip(txs, receipts, strict=True):
        if rc["transactionHash"].lower() != tx["hash"].lower() or (
            rc.get("blockHash") and rc["blockHash"].lower() != block_hash
        ):
            raise ReceiptMismatch(
                f"block {number} {block_hash}: receipt {rc['transactionHash']} (block "
                f"{rc.get('blockHash')}) does not match transaction {tx['hash']}"
            )
        status = rc.get("status")
        rows.append(
            {
                "chain_id": chain_id,
                "date": ts.date(),
                "block_number": number,
                "block_hash": block_hash,
                "block_timestamp": ts,
                "transaction_hash": tx["hash"].lower(),
                "transaction_index": int(tx["transactionIndex"], 16),
                "from_address": tx["from"].lower(),
                "to_address": _lower(tx.get("to")),
                "value": int(tx["value"], 16),
                "gas": int(tx["gas"], 16),
                "gas_price": _int(tx.get("gasPrice")),
                "max_fee_per_gas": _int(tx.get("maxFeePerGas")),
                "max_priority_fee_per_gas": _int(tx.get("maxPriorityFeePerGas")),
                "max_fee_per_blob_gas": _int(tx.get("maxFeePerBlobGas")),
                "blob_versioned_hashes": tx.get("blobVersionedHashes"),
                "nonce": int(tx["nonce"], 16),
                "input": tx["input"],
                "type": _int(tx.get("type")) or 0,
                "tx_chain_id": _int(tx.get("chainId")),
                "access_list": _json(tx.get("accessList")),
                "authorization_list": _json(tx.get("authorizationList")),
                "v": tx.get("v"),
                "r": tx.get("r"),
                "s": tx.get("s"),
                "y_parity": _int(tx.get("yParity")),
                "status": _int(status),
                "root": rc.get("root"),
                "gas_used": int(rc["gasUsed"], 16),
                "cumulative_gas_used": int(rc["cumulativeGasUsed"], 16),
                "effective_gas_price": _int(rc.get("effectiveGasPrice")),
                "contract_address": _lower(rc.get("contractAddress")),
                "logs_count": len(rc.get("logs") or ()),
                "blob_gas_used": _int(rc.get("blobGasUsed")),
                "blob_gas_price": _int(rc.get("blobGasPrice")),
            }
        )
    return rows


_WIDE = {
    "value",
    "gas_price",
    "max_fee_per_gas",
    "max_priority_fee_per_gas",
    "max_fee_per_blob_gas",
    "nonce",
    "effective_gas_price",
    "blob_gas_price",
}


def transactions_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Pure transform: rows from `transaction_rows` → raw/transactions."""
    schema = dict(polars_schema(TransactionsModel))
    staging = {k: (pl.Int128 if k in _WIDE else v) for k, v in schema.items()}
    return conform(pl.DataFrame(rows, schema=staging, orient="row"), TransactionsModel)
