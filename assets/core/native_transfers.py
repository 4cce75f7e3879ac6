"""core/native_transfers: the native coin moved by each transaction and the fee its sender paid.

These are the inputs of the native side of `core/balances`: a wallet's native balance changes
by `+value` for every successful transaction to it, by `-value` for every successful one from
it and by `-fee` for every one it sent, successful or not. Value moved by internal calls
(a contract forwarding ETH) is not a transaction's `value` and is not here; the balance check
against the chain catches wallets that receive such transfers.
"""

import time
from typing import Annotated

import dagster as dg
import pandera.polars as pa
import polars as pl

from assets.checks import require_schema
from assets.policies import PER_CHAIN_DAYS
from assets.ranges import each_day, run_chain_days
from chainlake.lake import DeltaStore
from chainlake.metadata import table_metadata
from chainlake.partitions import chain_day_partitions
from chainlake.raw.transactions import TransactionsModel
from chainlake.schema import conform, polars_schema, schema_metadata

KEY = dg.AssetKey(["core", "native_transfers"])
TABLE = "native_transfers"
ADDRESS = r"^0x[0-9a-f]{40}$"
WEI = pl.Decimal(38, 0)


class NativeTransfersModel(pa.DataFrameModel):
    """One row per transaction of the chain-day. Amounts are wei, exact Decimal(38,0)."""

    chain_id: pl.Int64 = pa.Field(description="EIP-155 chain id of the chain the row belongs to")
    date: pl.Date = pa.Field(description="UTC day of the row (the Delta partition column)")
    block_number: pl.Int64 = pa.Field(ge=0, description="number of the block")
    block_timestamp: Annotated[pl.Datetime, "us", "UTC"] = pa.Field(
        description="time of the block, UTC"
    )
    transaction_hash: pl.String = pa.Field(
        unique=True, description="hash of the transaction, lowercase 0x-hex"
    )
    transaction_index: pl.Int32 = pa.Field(
        ge=0, description="position of the transaction in its block"
    )
    from_address: pl.String = pa.Field(str_matches=ADDRESS, description="sender, pays the fee")
    to_address: pl.String = pa.Field(
        str_matches=ADDRESS,
        nullable=True,
        description="recipient of `value`: the `to` of the transaction, or the contract it "
        "created; null for a failed creation",
    )
    value: Annotated[pl.Decimal, 38, 0] = pa.Field(
        ge=0, description="wei moved from sender to recipient; 0 when the transaction reverted"
    )
    fee: Annotated[pl.Decimal, 38, 0] = pa.Field(
        ge=0,
        description="wei paid by the sender: gas_used × effective_gas_price, plus blob gas "
        "(blob_gas_used × blob_gas_price); paid even when the transaction reverted",
    )
    status: pl.Int32 = pa.Field(
        isin=[0, 1], nullable=True, description="1 success, 0 reverted, null before Byzantium"
    )

    class Config:
        strict = True

    @pa.dataframe_check
    def reverted_moves_nothing(cls, data: pa.PolarsData) -> pl.LazyFrame:  # type: ignore[misc]
        """A reverted transaction moves no value."""
        return data.lazyframe.select((pl.col("status") != 0) | (pl.col("value") == 0))


def native_transfers_frame(transactions: pl.DataFrame) -> pl.DataFrame:
    """Pure transform: raw/transactions rows → one row per transaction with value and fee.
    A transaction without a status (pre-Byzantium) is taken as successful."""
    succeeded = pl.col("status").fill_null(1) == 1
    gas_price = pl.coalesce("effective_gas_price", "gas_price").fill_null(0)
    blob_fee = (pl.col("blob_gas_used").cast(WEI) * pl.col("blob_gas_price")).fill_null(0)
    frame = transactions.select(
        "chain_id",
        "date",
        "block_number",
        "block_timestamp",
        "transaction_hash",
        "transaction_index",
        "from_address",
        pl.coalesce("to_address", "contract_address").alias("to_address"),
        pl.when(succeeded).then(pl.col("value")).otherwise(0).cast(WEI).alias("value"),
        (pl.col("gas_used").cast(WEI) * gas_price.cast(WEI) + blob_fee.cast(WEI)).alias("fee"),
        "status",
    )
    return conform(frame, NativeTransfersModel)


@dg.asset(
    key=KEY,
    deps=[dg.AssetKey(["raw", "transactions"])],
    partitions_def=chain_day_partitions,
    backfill_policy=PER_CHAIN_DAYS,
    group_name="core",
    kinds={"delta", "polars"},
    check_specs=[dg.AssetCheckSpec("schema", asset=KEY, blocking=True)],
    description="One row per transaction of the chain-day: native value moved and fee paid.",
    metadata={"table": TABLE, **schema_metadata(NativeTransfersModel)},
)
def native_transfers(context: dg.AssetExecutionContext, delta: dg.ResourceParam[DeltaStore]):
    """Write each chain-day's native transfers and fees of the run, from raw/transactions."""
    yield from each_day(
        context, run_chain_days(context), lambda chain, day: _one_day(delta, chain, day)
    )


def _one_day(delta: DeltaStore, chain, day):
    started = time.monotonic()
    columns = [
        "chain_id",
        "date",
        "block_number",
        "block_timestamp",
        "transaction_hash",
        "transaction_index",
        "from_address",
        "to_address",
        "contract_address",
        "value",
        "gas_price",
        "effective_gas_price",
        "gas_used",
        "blob_gas_used",
        "blob_gas_price",
        "status",
    ]
    txs = delta.read_day(
        chain, "transactions", day, columns=columns, schema=polars_schema(TransactionsModel)
    )
    df = native_transfers_frame(txs)
    schema = yield from require_schema(
        NativeTransfersModel, df, f"{chain.name} {day}: native transfers"
    )
    version = delta.replace_day(chain, TABLE, day, df)
    yield dg.MaterializeResult(
        metadata=table_metadata(
            rows_written=df.height,
            seconds=time.monotonic() - started,
            preview_frame=df.head(5),
            version=version,
            reverted=df.filter(pl.col("status") == 0).height,
        )
    )
    yield schema
