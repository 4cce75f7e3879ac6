"""core/contracts: the contracts created on the chain-day, with their code hash and the token
standards they implement.

Two sources:

- receipts (`raw/transactions.contract_address` of successful transactions without a `to`):
  contracts created by a transaction (`source` receipt, `trace_address` '');
- create frames of `raw/traces` below a transaction's root frame, not reverted: contracts
  created by contracts, a factory's CREATE / CREATE2 (`source` trace; `creator` is the
  contract whose frame created it, `deployer` the transaction's sender).

On a chain or day without traces (`trace_method: none`, or a node that serves no tracer) only
the first kind is found; the materialisation says which (`covers`). The code hash and the standards are read from the node at the
creation block (`eth_getCode`, ERC-165 `supportsInterface`, selectors in the runtime code;
see `chainlake/tokens.py`), so the node must serve that block's state (an archive node for
old days).
"""

import time
from typing import Annotated, ClassVar

import dagster as dg
import pandera.polars as pa
import polars as pl

from assets.checks import require_schema
from assets.policies import PER_CHAIN_DAYS, TRANSIENT_RETRY
from assets.ranges import each_day, run_chain_days
from chainlake.lake import DeltaStore
from chainlake.metadata import table_metadata
from chainlake.partitions import chain_day_partitions
from chainlake.raw.traces import TracesModel
from chainlake.raw.transactions import TransactionsModel
from chainlake.rpc import NodeError, RpcError
from chainlake.schema import conform, empty, polars_schema, schema_metadata
from chainlake.tokens import EMPTY_CODE_HASH, ContractFacts, MetadataReadError, detect_standards
from resources.rpc import RpcResource

KEY = dg.AssetKey(["core", "contracts"])
TABLE = "contracts"
ADDRESS = r"^0x[0-9a-f]{40}$"
HASH = r"^0x[0-9a-f]{64}$"


class ContractsModel(pa.DataFrameModel):
    """One row per contract created on the chain-day."""

    chain_id: pl.Int64 = pa.Field(description="EIP-155 chain id of the chain the row belongs to")
    date: pl.Date = pa.Field(description="UTC day of the row (the Delta partition column)")
    block_number: pl.Int64 = pa.Field(ge=0, description="block of the creation")
    block_timestamp: Annotated[pl.Datetime, "us", "UTC"] = pa.Field(
        description="time of the block, UTC"
    )
    transaction_hash: pl.String = pa.Field(
        str_matches=HASH, description="the creating transaction, lowercase 0x-hex"
    )
    transaction_index: pl.Int32 = pa.Field(ge=0, description="its position in the block")
    contract_address: pl.String = pa.Field(
        str_matches=ADDRESS, description="the created contract, lowercase 0x-hex"
    )
    deployer: pl.String = pa.Field(
        str_matches=ADDRESS, description="the account that sent the creating transaction"
    )
    creator: pl.String = pa.Field(
        str_matches=ADDRESS,
        description="the account whose CREATE made it: the deployer for a transaction's "
        "creation, the factory contract for a contract's",
    )
    trace_address: pl.String = pa.Field(
        description="the creating frame's path in its transaction (raw/traces); '' for the "
        "transaction's own creation"
    )
    source: pl.String = pa.Field(
        isin=["receipt", "trace"],
        description="receipt: a transaction's contractAddress; trace: a create frame below "
        "the root (a contract created by a contract)",
    )
    code_size: pl.Int32 = pa.Field(ge=0, description="runtime code size in bytes at the block")
    code_hash: pl.String = pa.Field(
        str_matches=HASH,
        description="keccak-256 of the runtime code at the block (the empty code's hash when "
        "the contract holds none: it destroyed itself, or its constructor returned nothing)",
    )
    supports_erc165: pl.Boolean = pa.Field(
        description="answers supportsInterface(0x01ffc9a7) true and (0xffffffff) false"
    )
    is_erc20: pl.Boolean = pa.Field(
        description="its code dispatches all six ERC-20 functions (transfer, transferFrom, "
        "approve, balanceOf, allowance, totalSupply)"
    )
    is_erc721: pl.Boolean = pa.Field(
        description="ERC-165 says ERC-721 (0x80ac58cd), or without ERC-165 its code has "
        "ERC-721's transfer and owner selectors"
    )
    is_erc1155: pl.Boolean = pa.Field(
        description="ERC-165 says ERC-1155 (0xd9b67a26), or without ERC-165 its code has "
        "ERC-1155's batch selectors"
    )
    detected_by: pl.String = pa.Field(
        isin=["erc165", "selectors", "erc165+selectors", "none"],
        description="how the standards were recognised; none: no token standard",
    )

    class Config:
        strict = True
        unique: ClassVar[list[str]] = ["transaction_hash", "trace_address"]

    @pa.dataframe_check
    def sources_agree(cls, data: pa.PolarsData) -> pl.LazyFrame:  # type: ignore[misc]
        """A transaction's own creation is the root frame and its creator is the deployer; a
        contract's creation is below the root."""
        receipt = pl.col("source") == "receipt"
        return data.lazyframe.select(
            pl.when(receipt)
            .then((pl.col("trace_address") == "") & (pl.col("creator") == pl.col("deployer")))
            .otherwise(pl.col("trace_address") != "")
        )

    @pa.dataframe_check
    def standards_say_how(cls, data: pa.PolarsData) -> pl.LazyFrame:  # type: ignore[misc]
        """A contract with a standard says how it was recognised; one without says none; an
        ERC-721 is not also counted an ERC-20."""
        any_standard = pl.col("is_erc20") | pl.col("is_erc721") | pl.col("is_erc1155")
        return data.lazyframe.select(
            (any_standard == (pl.col("detected_by") != "none"))
            & ~(pl.col("is_erc20") & pl.col("is_erc721"))
        )

    @pa.dataframe_check
    def no_code_no_standard(cls, data: pa.PolarsData) -> pl.LazyFrame:  # type: ignore[misc]
        """A contract without code has the empty code's hash and no standard."""
        return data.lazyframe.select(
            (pl.col("code_size") > 0)
            | ((pl.col("code_hash") == EMPTY_CODE_HASH) & (pl.col("detected_by") == "none"))
        )


def created_by_transactions(transactions: pl.DataFrame) -> pl.DataFrame:
    """Pure transform: raw/transactions → the contracts created by successful transactions
    (or, before Byzantium, transactions without a status) (chain_id, date, block, transaction, contract_address, deployer), in block order."""
    return (
        # before Byzantium (status null) a failed creation also has an address: its code is empty
        transactions.filter(
            pl.col("contract_address").is_not_null() & (pl.col("status").fill_null(1) == 1)
        )
        .select(
            "chain_id",
            "date",
            "block_number",
            "block_timestamp",
            "transaction_hash",
            "transaction_index",
            "contract_address",
            pl.col("from_address").alias("deployer"),
            pl.col("from_address").alias("creator"),
            pl.lit("").alias("trace_address"),
            pl.lit("receipt").alias("source"),
        )
        .sort("block_number", "transaction_index")
    )


def created_by_contracts(traces: pl.DataFrame, transactions: pl.DataFrame) -> pl.DataFrame:
    """Pure transform: raw/traces → the contracts created by contracts: create frames below a
    transaction's root that did not revert (nor any frame above them), with the transaction's
    sender as deployer; columns as `created_by_transactions`."""
    senders = transactions.select("transaction_hash", pl.col("from_address").alias("deployer"))
    return (
        traces.filter(
            (pl.col("trace_type") == "create")
            & (pl.col("depth") > 0)
            & ~pl.col("reverted")
            & pl.col("to_address").is_not_null()
        )
        .join(senders, on="transaction_hash", how="left")
        .select(
            "chain_id",
            "date",
            "block_number",
            "block_timestamp",
            "transaction_hash",
            "transaction_index",
            pl.col("to_address").alias("contract_address"),
            "deployer",
            pl.col("from_address").alias("creator"),
            "trace_address",
            pl.lit("trace").alias("source"),
            "trace_index",
        )
        .sort("block_number", "trace_index")
        .drop("trace_index")
    )


def contracts_frame(created: pl.DataFrame, facts: list[ContractFacts]) -> pl.DataFrame:
    """Pure transform: created contracts + what the node says of each (in the same order) →
    core/contracts rows."""
    if created.height != len(facts):
        raise ValueError(f"{created.height} contracts but {len(facts)} facts")
    by = pl.DataFrame(
        {
            "code_size": [f.code_size for f in facts],
            "code_hash": [f.code_hash for f in facts],
            "supports_erc165": [f.erc165 for f in facts],
            "is_erc20": [f.erc20 for f in facts],
            "is_erc721": [f.erc721 for f in facts],
            "is_erc1155": [f.erc1155 for f in facts],
            "detected_by": [f.detected_by for f in facts],
        },
        schema={
            "code_size": pl.Int32,
            "code_hash": pl.String,
            "supports_erc165": pl.Boolean,
            "is_erc20": pl.Boolean,
            "is_erc721": pl.Boolean,
            "is_erc1155": pl.Boolean,
            "detected_by": pl.String,
        },
    )
    return conform(pl.concat([created, by], how="horizontal"), ContractsModel)


@dg.asset(
    key=KEY,
    deps=[dg.AssetKey(["raw", "transactions"]), dg.AssetKey(["raw", "traces"])],
    partitions_def=chain_day_partitions,
    group_name="core",
    kinds={"delta", "polars"},
    check_specs=[dg.AssetCheckSpec("schema", asset=KEY, blocking=True)],
    description="One row per contract created on the chain-day (by a transaction, from "
    "receipts; by a contract, from traces): deployer, creator, creating transaction, code hash "
    "and ERC-20/721/1155 detection.",
    metadata={"table": TABLE, **schema_metadata(ContractsModel)},
    backfill_policy=PER_CHAIN_DAYS,
    retry_policy=TRANSIENT_RETRY,
)
def contracts(
    context: dg.AssetExecutionContext, delta: dg.ResourceParam[DeltaStore], rpc: RpcResource
):
    """Write each chain-day's created contracts of the run, with what the node says of them."""
    yield from each_day(
        context, run_chain_days(context), lambda chain, day: _one_day(delta, rpc, chain, day)
    )


def _one_day(delta: DeltaStore, rpc: RpcResource, chain, day):
    started = time.monotonic()
    txs = delta.read_day(
        chain,
        "transactions",
        day,
        columns=[
            "chain_id",
            "date",
            "block_number",
            "block_timestamp",
            "transaction_hash",
            "transaction_index",
            "from_address",
            "contract_address",
            "status",
        ],
        schema=polars_schema(TransactionsModel),
    )
    traces = delta.read_day(chain, "traces", day, schema=polars_schema(TracesModel))
    # every transaction has a root frame when the day's traces were read
    traced = chain.trace_method != "none" and (traces.height > 0 or txs.height == 0)
    created = (
        pl.concat([created_by_transactions(txs), created_by_contracts(traces, txs)]).sort(
            "block_number", "transaction_index", "trace_address"
        )
        if traced
        else created_by_transactions(txs)
    )
    df = empty(ContractsModel)
    if created.height:
        try:
            facts = detect_standards(
                rpc.client(chain),
                created["contract_address"].to_list(),
                created["block_number"].to_list(),
            )
        except (MetadataReadError, RpcError) as e:
            raise dg.Failure(
                description=f"{chain.name} {day}: the node cannot report the code of the day's "
                f"new contracts ({e}); it must keep the state of the days being materialised",
                allow_retries=False,
            ) from e
        except NodeError as e:
            raise dg.Failure(description=f"{chain.name} {day}: {e}", allow_retries=False) from e
        df = contracts_frame(created, facts)
    schema = yield from require_schema(ContractsModel, df, f"{chain.name} {day}: contracts")
    version = delta.replace_day(chain, TABLE, day, df)
    yield dg.MaterializeResult(
        metadata=table_metadata(
            rows_written=df.height,
            seconds=time.monotonic() - started,
            preview_frame=df.head(5),
            version=version,
            erc20=int(df["is_erc20"].sum()),
            erc721=int(df["is_erc721"].sum()),
            erc1155=int(df["is_erc1155"].sum()),
            by_contracts=df.filter(pl.col("source") == "trace").height,
            covers="contracts created by transactions (receipts) and by contracts (traces)"
            if traced
            else "contracts created by transactions (receipts) only: no traces for this day "
            f"(trace_method {chain.trace_method})",
        )
    )
    yield schema
