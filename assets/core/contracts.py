"""core/contracts: the contracts created on the chain-day, with their code hash and the token
standards they implement.

Source: receipts (`raw/transactions.contract_address` of successful transactions without a
`to`): contracts created by a transaction. Contracts created by contracts (a factory's
CREATE/CREATE2) appear in call traces only; they are not here until `raw/traces` exists on
the chain (see the README). The code hash and the standards are read from the node at the
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
    source: pl.String = pa.Field(
        isin=["receipt"], description="receipt: a transaction's contractAddress"
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
        unique: ClassVar[list[str]] = ["contract_address", "transaction_hash"]

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
            pl.lit("receipt").alias("source"),
        )
        .sort("block_number", "transaction_index")
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
    deps=[dg.AssetKey(["raw", "transactions"])],
    partitions_def=chain_day_partitions,
    group_name="core",
    kinds={"delta", "polars"},
    check_specs=[dg.AssetCheckSpec("schema", asset=KEY, blocking=True)],
    description="One row per contract created on the chain-day (from receipts): deployer, "
    "creating transaction, code hash and ERC-20/721/1155 detection.",
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
    created = created_by_transactions(txs)
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
            covers="contracts created by transactions (receipts); not those created by "
            "contracts (needs raw/traces)",
        )
    )
    yield schema
