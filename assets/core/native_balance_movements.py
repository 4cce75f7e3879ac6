"""core/native_balance_movements: every movement of the native coin, one row each, with its kind.

A wallet's native balance changes by `+amount` for every row whose `to_address` it is and by
`-amount` for every row whose `from_address` it is; summed by `kind`, an analyst sees where a
balance came from. The kinds:

- `transaction_value`: the value of a successful transaction, sender → recipient (or the
  contract it created);
- `internal_call`, `internal_create`: value sent by a contract in a call or with a contract it
  created (raw/traces: successful frames below the root, not inside a reverted subtree; a
  CALLCODE sends to itself and moves nothing);
- `selfdestruct`: a self-destructed contract's balance, to its beneficiary;
- `withdrawal`: a beacon-chain withdrawal (raw/blocks, Gwei → wei), to its address;
- `fee`: what the sender paid for gas: gas_used × effective_gas_price, plus blob gas, plus the
  L1 data fee and the operator fee on OP-stack chains; paid even when the transaction
  reverted (`to_address` null);
- `priority_fee`: the part of the fee above the base fee, to the block's fee recipient
  (`ethereum` and `op-stack` fee models: see chainlake/presets.py);
- `base_fee`, `l1_fee` (OP-stack only): the base fee and L1 data fee, to the BaseFeeVault and
  L1FeeVault (elsewhere the base fee is burned: it has no recipient row);
- `operator_fee` (OP-stack, since Isthmus): the operator fee, to the OperatorFeeVault, from
  the receipt's `operatorFeeScalar` / `operatorFeeConstant` as op-geth charges it (see
  `operator_fee`); none when the receipt has neither (op-geth leaves both out when zero);
- `deposit_mint` (OP-stack): ether minted on L2 to the sender of a deposit transaction
  (bridged from L1; `from_address` null), even when the deposit reverted;
- `block_reward`, `uncle_reward`: proof-of-work issuance (`from_address` null): the node's
  reward frames when its traces have them (trace_block), else Ethereum's schedule
  (`block_rewards: ethereum`): the block reward plus 1/32 of it per uncle included, to the
  miner, and (uncle number + 8 - block number) × block reward / 8 to each uncle's miner, from
  the uncle headers raw/blocks keeps (`uncles`). A block whose uncles were not read (null
  `uncles`) has no `uncle_reward` rows: the materialisation counts such blocks
  (`blocks_without_uncle_headers`).

Without traces (a chain with `trace_method: none`, or a node serving neither trace API) the
internal kinds are missing; the materialisation says so (`internal_transfers_covered`), and
the balance check against the chain names them when a wallet differs.
"""

import time
from typing import Annotated

import dagster as dg
import pandera.polars as pa
import polars as pl

from assets.checks import require_schema
from assets.policies import PER_CHAIN_DAYS
from assets.ranges import each_day, run_chain_days
from chainlake.config import ChainConfig
from chainlake.lake import DeltaStore
from chainlake.metadata import table_metadata
from chainlake.partitions import chain_day_partitions
from chainlake.presets import (
    ETHEREUM_BLOCK_REWARDS,
    ETHEREUM_MERGE_BLOCK,
    OP_BASE_FEE_VAULT,
    OP_L1_FEE_VAULT,
    OP_OPERATOR_FEE_VAULT,
)
from chainlake.raw.blocks import BlocksModel
from chainlake.raw.traces import TracesModel
from chainlake.raw.transactions import TransactionsModel
from chainlake.schema import conform, empty, polars_schema, schema_metadata

KEY = dg.AssetKey(["core", "native_balance_movements"])
TABLE = "native_balance_movements"
ADDRESS = r"^0x[0-9a-f]{40}$"
WEI = pl.Decimal(38, 0)
GWEI = 10**9

KINDS = (
    "transaction_value",
    "internal_call",
    "internal_create",
    "selfdestruct",
    "withdrawal",
    "fee",
    "priority_fee",
    "base_fee",
    "l1_fee",
    "operator_fee",
    "deposit_mint",
    "block_reward",
    "uncle_reward",
)
# What only traces show: missing when a day has no traces.
TRACE_KINDS = ("internal_call", "internal_create", "selfdestruct")


class NativeBalanceMovementsModel(pa.DataFrameModel):
    """One row per movement of the native coin. `amount` is wei, exact Decimal(38,0), never
    negative: the row takes it from `from_address` and gives it to `to_address` (a null side
    is the coin's issuance or burn)."""

    chain_id: pl.Int64 = pa.Field(description="EIP-155 chain id of the chain the row belongs to")
    date: pl.Date = pa.Field(description="UTC day of the row (the Delta partition column)")
    block_number: pl.Int64 = pa.Field(ge=0, description="number of the block")
    block_timestamp: Annotated[pl.Datetime, "us", "UTC"] = pa.Field(
        description="time of the block, UTC"
    )
    transaction_hash: pl.String = pa.Field(
        nullable=True, description="the transaction; null for withdrawals and rewards"
    )
    transaction_index: pl.Int32 = pa.Field(
        ge=0, nullable=True, description="position of the transaction in its block"
    )
    trace_address: pl.String = pa.Field(
        nullable=True, description="the call frame (raw/traces) of an internal movement"
    )
    kind: pl.String = pa.Field(isin=list(KINDS), description="what moved the coin (see above)")
    from_address: pl.String = pa.Field(
        str_matches=ADDRESS, nullable=True, description="who pays; null for issuance"
    )
    to_address: pl.String = pa.Field(
        str_matches=ADDRESS, nullable=True, description="who receives; null for a burn"
    )
    amount: Annotated[pl.Decimal, 38, 0] = pa.Field(gt=0, description="wei moved, exact")

    class Config:
        strict = True


_COLUMNS = [
    "chain_id",
    "date",
    "block_number",
    "block_timestamp",
    "transaction_hash",
    "transaction_index",
    "trace_address",
    "kind",
    "from_address",
    "to_address",
    "amount",
]


def _rows(frame: pl.LazyFrame, kind: str, **exprs: pl.Expr) -> pl.LazyFrame:
    """`frame` as movement rows of `kind`: the columns it lacks come from `exprs` or null."""
    defaults: dict[str, pl.Expr] = {
        "transaction_hash": pl.lit(None, pl.String),
        "transaction_index": pl.lit(None, pl.Int32),
        "trace_address": pl.lit(None, pl.String),
        "from_address": pl.lit(None, pl.String),
        "to_address": pl.lit(None, pl.String),
    }
    present = set(frame.collect_schema().names())
    select = []
    for name in _COLUMNS:
        if name == "kind":
            select.append(pl.lit(kind).alias("kind"))
        elif name in exprs:
            select.append(exprs[name].alias(name))
        elif name in present:
            select.append(pl.col(name))
        else:
            select.append(defaults[name].alias(name))
    return frame.select(select)


def _ethereum_block_reward() -> pl.Expr:
    reward = pl.lit(0, pl.Int128)
    for first, amount in ETHEREUM_BLOCK_REWARDS:
        reward = (
            pl.when(pl.col("block_number") >= first)
            .then(pl.lit(amount, pl.Int128))
            .otherwise(reward)
        )
    return pl.when(pl.col("block_number") < ETHEREUM_MERGE_BLOCK).then(reward).otherwise(0)


def operator_fee(columns: list[str]) -> pl.Expr:
    """The OP-stack operator fee of each transaction, in wei (Int128), 0 without one.

    As op-geth charges it, core/types/rollup_cost.go: the Isthmus cost function (read at
    op-geth 9cc4cbc2, where it is `newOperatorCostFunc`: gas × scalar, / 1e6, + constant,
    in big.Int), and from Jovian `newOperatorCostFuncOperatorFeeFix` (gas × scalar × 100 +
    constant), chosen by `config.IsJovian(blockTime)`: that version of the file was not in
    the stored sources, the formula is from the OP specs, jovian/exec-engine.md "Fee Formula
    Update" (isthmus/exec-engine.md "Operator Fee" for the rest). Charged on the gas the
    transaction used (the receipt's `gasUsed`):
    Isthmus: gas_used × operatorFeeScalar / 1e6 + operatorFeeConstant (integer division);
    Jovian: gas_used × operatorFeeScalar × 100 + operatorFeeConstant.
    A receipt is Jovian's when it carries `daFootprintGasScalar` (op-geth's
    core/types/receipt_opstack.go `deriveOPStackFields` sets it on receipts from Jovian only,
    and sets the operator fields only when either is non-zero)."""
    if "operator_fee_scalar" not in columns:
        return pl.lit(0, pl.Int128)
    gas_used = pl.col("gas_used").cast(pl.Int128)
    scalar = pl.col("operator_fee_scalar").cast(pl.Int128).fill_null(0)
    constant = pl.col("operator_fee_constant").cast(pl.Int128).fill_null(0)
    jovian = (
        pl.col("da_footprint_gas_scalar").is_not_null()
        if "da_footprint_gas_scalar" in columns
        else pl.lit(False)
    )
    return (
        pl.when(jovian)
        .then(gas_used * scalar * 100 + constant)
        .otherwise(gas_used * scalar // 1_000_000 + constant)
    )


def native_balance_movements_frame(
    transactions: pl.DataFrame,
    blocks: pl.DataFrame,
    traces: pl.DataFrame | None,
    *,
    fee_model: str = "ethereum",
    block_rewards: str = "none",
) -> pl.DataFrame:
    """Pure transform: a chain-day's raw/transactions, raw/blocks and raw/traces (None when
    the day has no traces) → its native movements, in block order.

    A transaction without a receipt status (before Byzantium) succeeded unless its root
    frame in the traces failed."""
    tx = transactions.lazy()
    blk = blocks.lazy()
    tr = None if traces is None else traces.lazy()
    head = blk.select("block_number", "base_fee_per_gas", "miner")
    if tr is not None:
        roots = tr.filter((pl.col("depth") == 0) & (pl.col("trace_type") != "reward")).select(
            "transaction_hash", pl.col("error").is_null().alias("_root_ok")
        )
        tx = tx.join(roots, on="transaction_hash", how="left")
    else:
        tx = tx.with_columns(pl.lit(None, pl.Boolean).alias("_root_ok"))
    succeeded = pl.coalesce(pl.col("status") == 1, pl.col("_root_ok"), pl.lit(True))
    gas_price = pl.coalesce("effective_gas_price", "gas_price").fill_null(0).cast(pl.Int128)
    gas_used = pl.col("gas_used").cast(pl.Int128)
    blob_fee = (
        pl.col("blob_gas_used").cast(pl.Int128) * pl.col("blob_gas_price").cast(pl.Int128)
    ).fill_null(0)
    l1_fee = pl.col("l1_fee").cast(pl.Int128).fill_null(0)
    op_fee = operator_fee(tx.collect_schema().names())
    base_fee = pl.col("base_fee_per_gas").cast(pl.Int128)
    # the price above the base fee; all of it before London (no base fee)
    tip = (gas_price - base_fee.fill_null(0)).clip(lower_bound=0)
    tx = tx.join(head, on="block_number", how="left")

    parts = [
        _rows(
            tx.filter(succeeded & (pl.col("value") > 0)),
            "transaction_value",
            to_address=pl.coalesce("to_address", "contract_address"),
            amount=pl.col("value").cast(pl.Int128),
        ),
        _rows(
            tx,
            "fee",
            to_address=pl.lit(None, pl.String),
            amount=gas_used * gas_price
            + blob_fee
            + (l1_fee + op_fee if fee_model == "op-stack" else 0),
        ),
    ]
    if "mint" in tx.collect_schema().names():
        parts.append(
            _rows(
                tx.filter(pl.col("mint").is_not_null()),
                "deposit_mint",
                from_address=pl.lit(None, pl.String),
                to_address=pl.col("from_address"),
                amount=pl.col("mint").cast(pl.Int128),
            )
        )
    if fee_model in ("ethereum", "op-stack"):
        parts.append(
            _rows(
                tx,
                "priority_fee",
                from_address=pl.lit(None, pl.String),
                to_address=pl.col("miner"),
                amount=gas_used * tip,
            )
        )
    if fee_model == "op-stack":
        parts += [
            _rows(
                tx,
                "base_fee",
                from_address=pl.lit(None, pl.String),
                to_address=pl.lit(OP_BASE_FEE_VAULT),
                amount=gas_used * pl.min_horizontal(base_fee.fill_null(0), gas_price),
            ),
            _rows(
                tx,
                "l1_fee",
                from_address=pl.lit(None, pl.String),
                to_address=pl.lit(OP_L1_FEE_VAULT),
                amount=l1_fee,
            ),
            _rows(
                tx,
                "operator_fee",
                from_address=pl.lit(None, pl.String),
                to_address=pl.lit(OP_OPERATOR_FEE_VAULT),
                amount=op_fee,
            ),
        ]
    if tr is not None:
        ok = ~pl.col("reverted") & (pl.col("value") > 0)
        frames = tr.filter(ok)
        parts += [
            _rows(
                frames.filter(
                    (pl.col("trace_type") == "call")
                    & (pl.col("depth") > 0)
                    & (pl.col("call_type") == "call")
                ),
                "internal_call",
                amount=pl.col("value").cast(pl.Int128),
            ),
            _rows(
                frames.filter(
                    (pl.col("trace_type") == "create")
                    & (pl.col("depth") > 0)
                    & pl.col("to_address").is_not_null()
                ),
                "internal_create",
                amount=pl.col("value").cast(pl.Int128),
            ),
            _rows(
                frames.filter(pl.col("trace_type") == "suicide"),
                "selfdestruct",
                amount=pl.col("value").cast(pl.Int128),
            ),
        ]
        for reward_type, kind in (("block", "block_reward"), ("uncle", "uncle_reward")):
            parts.append(
                _rows(
                    frames.filter(
                        (pl.col("trace_type") == "reward") & (pl.col("reward_type") == reward_type)
                    ),
                    kind,
                    amount=pl.col("value").cast(pl.Int128),
                )
            )
        rewarded = tr.filter(pl.col("trace_type") == "reward").select("block_number").unique()
    else:
        rewarded = pl.LazyFrame(schema={"block_number": pl.Int64})
    if block_rewards == "ethereum":
        # blocks without the node's reward frames: Ethereum's schedule, with the nephew bonus
        reward = _ethereum_block_reward()
        scheduled = blk.join(rewarded, on="block_number", how="anti").with_columns(
            (reward + reward // 32 * pl.col("uncle_count").cast(pl.Int128)).alias("_reward"),
            pl.col("timestamp").alias("block_timestamp"),
        )
        parts.append(
            _rows(
                scheduled.filter(pl.col("_reward") > 0),
                "block_reward",
                to_address=pl.col("miner"),
                amount=pl.col("_reward"),
            )
        )
        if "uncles" in blk.collect_schema().names():
            # each uncle's miner: (u + 8 - n) * R / 8, multiplied before dividing, as Geth's
            # accumulateRewards (consensus/ethash) does; R is the including block's reward
            uncles = (
                scheduled.select(
                    "chain_id",
                    "date",
                    "block_number",
                    "block_timestamp",
                    reward.alias("_block_reward"),
                    "uncles",
                )
                .explode("uncles")
                .drop_nulls("uncles")
                .with_columns(pl.col("uncles").struct.unnest())
                .with_columns(
                    (
                        (
                            pl.col("number").cast(pl.Int128)
                            + 8
                            - pl.col("block_number").cast(pl.Int128)
                        )
                        * pl.col("_block_reward")
                        // 8
                    ).alias("_uncle_reward")
                )
                .sort("block_number", "index")
            )
            parts.append(
                _rows(
                    uncles.filter(pl.col("_uncle_reward") > 0),
                    "uncle_reward",
                    to_address=pl.col("miner"),
                    amount=pl.col("_uncle_reward"),
                )
            )
    withdrawals = (
        blk.select(
            "chain_id",
            "date",
            "block_number",
            pl.col("timestamp").alias("block_timestamp"),
            "withdrawals",
        )
        .explode("withdrawals")
        .drop_nulls("withdrawals")
        .unnest("withdrawals")
    )
    parts.append(
        _rows(
            withdrawals.filter(pl.col("amount_gwei") > 0),
            "withdrawal",
            to_address=pl.col("address"),
            amount=pl.col("amount_gwei").cast(pl.Int128) * GWEI,
        )
    )
    frame = (
        pl.concat(
            [p.with_columns(pl.col("amount").cast(pl.Int128)) for p in parts],
            how="vertical_relaxed",
        )
        .filter(pl.col("amount") > 0)
        .with_columns(pl.col("amount").cast(WEI, strict=True))
        .sort(
            "block_number",
            pl.col("transaction_index"),
            "trace_address",
            nulls_last=True,
            maintain_order=True,
        )
        .collect()
    )
    if not frame.height:
        return empty(NativeBalanceMovementsModel)
    return conform(frame, NativeBalanceMovementsModel)


def missing_kinds(has_traces: bool) -> tuple[str, ...]:
    """The kinds a day's rows cannot hold: the internal ones when it has no traces."""
    return () if has_traces else TRACE_KINDS


def blocks_without_uncle_headers(
    blocks: pl.DataFrame, traces: pl.DataFrame | None, block_rewards: str
) -> int:
    """Blocks with uncles whose miners got no `uncle_reward` row: Ethereum's schedule applies
    (`block_rewards: ethereum`), the node's traces have no reward frame for the block, and
    its uncle headers were not read (null `uncles`, or a table written before the column)."""
    if block_rewards != "ethereum" or not blocks.height:
        return 0
    missing = blocks.filter(pl.col("uncle_count") > 0)
    if "uncles" in missing.columns:
        missing = missing.filter(pl.col("uncles").is_null())
    if traces is not None and traces.height:
        rewarded = traces.filter(pl.col("trace_type") == "reward").select("block_number")
        missing = missing.join(rewarded.unique(), on="block_number", how="anti")
    return missing.height


def day_has_traces(
    delta: DeltaStore, chain: ChainConfig, day, transactions: int
) -> pl.DataFrame | None:
    """The day's raw/traces rows, or None when the day has transactions but no traces (the
    chain's traces are not read): its internal movements are not covered."""
    if not delta.exists(chain, "traces"):
        return None if transactions else empty(TracesModel)
    traces = delta.read_day(chain, "traces", day, schema=polars_schema(TracesModel))
    if traces.height == 0 and transactions:
        return None
    return traces


@dg.asset(
    key=KEY,
    deps=[
        dg.AssetKey(["raw", "transactions"]),
        dg.AssetKey(["raw", "blocks"]),
        dg.AssetKey(["raw", "traces"]),
    ],
    partitions_def=chain_day_partitions,
    backfill_policy=PER_CHAIN_DAYS,
    group_name="core",
    kinds={"delta", "polars"},
    check_specs=[dg.AssetCheckSpec("schema", asset=KEY, blocking=True)],
    description="One row per native-coin movement of the chain-day, with its kind: "
    "transaction value, internal transfers (traces), withdrawals, fees and their recipients, "
    "block rewards.",
    metadata={"table": TABLE, **schema_metadata(NativeBalanceMovementsModel)},
)
def native_balance_movements(
    context: dg.AssetExecutionContext, delta: dg.ResourceParam[DeltaStore]
):
    """Write each chain-day's native movements of the run, from the raw tables."""
    yield from each_day(
        context, run_chain_days(context), lambda chain, day: _one_day(delta, chain, day)
    )


TX_COLUMNS = [
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
    "l1_fee",
    "operator_fee_scalar",
    "operator_fee_constant",
    "da_footprint_gas_scalar",
    "mint",
    "status",
]
BLOCK_COLUMNS = [
    "chain_id",
    "date",
    "block_number",
    "timestamp",
    "miner",
    "base_fee_per_gas",
    "uncle_count",
    "uncles",
    "withdrawals",
]


def _one_day(delta: DeltaStore, chain: ChainConfig, day):
    started = time.monotonic()
    # tables written before raw/transactions had the operator fee columns, or raw/blocks
    # `uncles`, read without them (no operator fee, no uncle rewards)
    have_tx = set(delta.columns(chain, "transactions"))
    txs = delta.read_day(
        chain,
        "transactions",
        day,
        columns=[c for c in TX_COLUMNS if not have_tx or c in have_tx],
        schema=polars_schema(TransactionsModel),
    )
    have = set(delta.columns(chain, "blocks"))
    blocks = delta.read_day(
        chain,
        "blocks",
        day,
        columns=[c for c in BLOCK_COLUMNS if not have or c in have],
        schema=polars_schema(BlocksModel),
    )
    traces = day_has_traces(delta, chain, day, txs.height)
    df = native_balance_movements_frame(
        txs, blocks, traces, fee_model=chain.fee_model, block_rewards=chain.block_rewards
    )
    schema = yield from require_schema(
        NativeBalanceMovementsModel, df, f"{chain.name} {day}: native balance movements"
    )
    version = delta.replace_day(chain, TABLE, day, df)
    by_kind = df.group_by("kind").agg(pl.len()).sort("kind")
    yield dg.MaterializeResult(
        metadata={
            **table_metadata(
                rows_written=df.height,
                seconds=time.monotonic() - started,
                preview_frame=df.head(5),
                version=version,
            ),
            "rows_by_kind": dg.MetadataValue.json(
                dict(zip(by_kind["kind"].to_list(), by_kind["len"].to_list(), strict=True))
            ),
            "internal_transfers_covered": traces is not None,
            "kinds_not_covered": ", ".join(missing_kinds(traces is not None)) or "none",
            "blocks_without_uncle_headers": blocks_without_uncle_headers(
                blocks, traces, chain.block_rewards
            ),
            "fee_model": chain.fee_model,
        }
    )
    yield schema
