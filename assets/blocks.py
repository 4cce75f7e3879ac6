"""raw/blocks: one row per block of a chain, partitioned by the UTC day of its timestamp."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Annotated, Any

import pandera.polars as pa
import polars as pl
from pandera.polars import PolarsData

from chainlake.schema import conform, polars_schema

UTC = dt.UTC


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
        return data.lazyframe.select(pl.col("gas_used") <= pl.col("gas_limit"))


def _int(v: str | None) -> int | None:
    return None if v is None else int(v, 16)


def block_row(b: dict[str, Any], chain_id: int) -> dict[str, Any]:
    ts = dt.datetime.fromtimestamp(int(b["timestamp"], 16), UTC)
    withdrawals = b.get("withdrawals")
    return {
        "chain_id": chain_id,
        "date": ts.date(),
        "block_number": int(b["number"], 16),
        "block_hash": b["hash"].lower(),
        "parent_hash": b["parentHash"].lower(),
        "timestamp": ts,
        "miner": b["miner"].lower(),
        "nonce": b.get("nonce"),
        "sha3_uncles": b["sha3Uncles"],
        "logs_bloom": b["logsBloom"],
        "transactions_root": b["transactionsRoot"],
        "state_root": b["stateRoot"],
        "receipts_root": b["receiptsRoot"],
        "difficulty": int(b.get("difficulty") or "0x0", 16),
        "total_difficulty": _int(b.get("totalDifficulty")),
        "size": _int(b.get("size")),
        "extra_data": b["extraData"],
        "mix_hash": b.get("mixHash"),
        "gas_limit": int(b["gasLimit"], 16),
        "gas_used": int(b["gasUsed"], 16),
        "base_fee_per_gas": _int(b.get("baseFeePerGas")),
        "transaction_count": len(b.get("transactions") or ()),
        "uncle_count": len(b.get("uncles") or ()),
        "withdrawals_root": b.get("withdrawalsRoot"),
        "withdrawal_count": None if withdrawals is None else len(withdrawals),
        "withdrawals": None
        if withdrawals is None
        else [
            {
                "index": int(w["index"], 16),
                "validator_index": int(w["validatorIndex"], 16),
                "address": w["address"].lower(),
                "amount_gwei": int(w["amount"], 16),
            }
            for w in withdrawals
        ],
        "blob_gas_used": _int(b.get("blobGasUsed")),
        "excess_blob_gas": _int(b.get("excessBlobGas")),
        "parent_beacon_block_root": b.get("parentBeaconBlockRoot"),
        "requests_hash": b.get("requestsHash"),
    }


_DECIMALS = ("difficulty", "total_difficulty", "base_fee_per_gas")


def blocks_frame(blocks: Sequence[dict[str, Any]], chain_id: int) -> pl.DataFrame:
    """Pure transform: `eth_getBlockByNumber` results → rows of raw/blocks."""
    rows = [block_row(b, chain_id) for b in blocks]
    schema = dict(polars_schema(BlocksModel))
    # Python ints wider than 64 bits go in through Int128, then exactly into Decimal(38,0).
    staging = {k: (pl.Int128 if k in _DECIMALS else v) for k, v in schema.items()}
    return conform(pl.DataFrame(rows, schema=staging, orient="row"), BlocksModel)
