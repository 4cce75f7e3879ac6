"""The PostgreSQL `events` table that feeds the trigger engine, from two sources.

- events/chain_events: events of interest of a chain-day decoded from the Delta tables: the
  logs of the contracts the chain lists in chains.yaml (`contracts:`, e.g. the 8004 identity,
  reputation and validation registries, each by its ABI from `chainlake/abis/`) and ERC-20
  transfers from or to a tracked wallet (portfolios.yaml).
- events/analytics_alerts: the alerts of portfolios.yaml (as Ekko's alerts: an expression over
  `wallet_balances` or `risk_metrics`, checked by the safe grammar) evaluated when the day's
  balances and risk metrics materialise; each matching row is an `analytics` event.

Inserts are idempotent (`ON CONFLICT DO NOTHING`): today's partition is materialised again and
again as blocks arrive, and only new events reach the triggers.
"""

import datetime as dt
import time
from collections.abc import Mapping, Sequence

import dagster as dg
import polars as pl

from assets.checks import require_schema
from assets.core.token_transfers import TokenTransfersModel
from assets.policies import PER_CHAIN_DAY, PER_CHAIN_DAYS, TRANSIENT_RETRY
from assets.ranges import each_day, run_chain_days
from chainlake.config import ChainConfig, ContractConfig
from chainlake.events import store
from chainlake.events.columns import decoded_events_model
from chainlake.events.db import scalar
from chainlake.events.decode import CHAIN_EVENTS_MODEL, chain_events_frame, frame_events
from chainlake.extract import day_bounds
from chainlake.lake import DeltaStore
from chainlake.metadata import table_metadata
from chainlake.partitions import chain_day_partitions, partition_chain_day
from chainlake.raw.logs import LogsModel
from chainlake.schema import polars_schema, schema_metadata
from resources.clickhouse import ClickHouseResource
from resources.postgres import PostgresResource

KEY = dg.AssetKey(["events", "chain_events"])
NO_CONTRACTS = "(none configured in chains.yaml)"

# One row per event of interest: the columns of the PostgreSQL `events` table that the decoder
# fills, built from their single definition (chainlake.events.columns, which the test suite
# checks against the migrated table).
ChainEventsModel = decoded_events_model(CHAIN_EVENTS_MODEL)


def contracts_summary(contracts: Sequence[ContractConfig]) -> str:
    """What the materialisation's metadata says about the decoded contracts: one
    `name (abi) address from block N` per contract, or that chains.yaml configures none."""
    return (
        "; ".join(f"{c.name} ({c.abi}) {c.address} from block {c.start_block}" for c in contracts)
        or NO_CONTRACTS
    )


def _canonical_blocks(delta: DeltaStore, chain: ChainConfig, day: dt.date) -> dict[int, str] | None:
    """{block_number: block_hash} of the day as raw/blocks holds it now (empty: the chain has
    no block that day any more); None when there is no raw/blocks table at all, which says
    nothing about the chain (a new DELTA_ROOT, say) and must not retract anything."""
    try:
        blocks = delta.read_day(chain, "blocks", day, ["block_number", "block_hash"])
    except FileNotFoundError:
        return None
    return dict(blocks.iter_rows())


def _last_block(delta: DeltaStore, chain: ChainConfig, day: dt.date) -> tuple[int, str] | None:
    try:
        blocks = delta.read_day(chain, "blocks", day, ["block_number", "block_hash"])
    except FileNotFoundError:
        return None
    if blocks.height == 0:
        return None
    row = blocks.sort("block_number").row(-1)
    return int(row[0]), str(row[1])


@dg.asset(
    key=KEY,
    deps=[dg.AssetKey(["raw", "logs"]), dg.AssetKey(["core", "token_transfers"])],
    partitions_def=chain_day_partitions,
    group_name="events",
    kinds={"postgres", "polars"},
    check_specs=[
        dg.AssetCheckSpec("schema", asset=KEY, blocking=True, description="ChainEventsModel"),
        dg.AssetCheckSpec(
            "all_in_postgres",
            asset=KEY,
            description="Every decoded event of the day is in the events table.",
        ),
    ],
    description="One row per event of interest of the chain-day (events of the contracts "
    "listed under the chain's `contracts:` in chains.yaml, ERC-20 transfers touching tracked "
    "wallets), inserted into PostgreSQL `events`.",
    metadata=schema_metadata(ChainEventsModel),
    backfill_policy=PER_CHAIN_DAYS,
    retry_policy=TRANSIENT_RETRY,
    # follows its sources: today's partition is decoded again whenever they update
    automation_condition=dg.AutomationCondition.eager(),
)
def chain_events(
    context: dg.AssetExecutionContext,
    delta: dg.ResourceParam[DeltaStore],
    postgres: PostgresResource,
):
    """Decode the chain-day's registry events and tracked-wallet transfers into the events table,
    retracting those of blocks a reorg abandoned, and move the chain's checkpoint; a run's
    days in date order."""
    yield from each_day(
        context,
        run_chain_days(context),
        lambda chain, day: _chain_events_day(context, delta, postgres, chain, day),
    )


def _chain_events_day(
    context: dg.AssetExecutionContext,
    delta: DeltaStore,
    postgres: PostgresResource,
    chain: ChainConfig,
    day: dt.date,
):
    from chainlake.config import load_chains
    from chainlake.portfolios import load_portfolios

    started = time.monotonic()
    logs = delta.read_day(chain, "logs", day, schema=polars_schema(LogsModel))
    transfers = delta.read_day(
        chain, "token_transfers", day, schema=polars_schema(TokenTransfersModel)
    )
    tracked = [w.address for w in load_portfolios(load_chains()).tracked_wallets(chain.name)]
    if not chain.contracts:
        context.log.info(f"{chain.name}: no contracts in chains.yaml, no registry events decoded")
    frame = chain_events_frame(logs, transfers, contracts=chain.contracts, tracked=tracked)
    schema = yield from require_schema(
        ChainEventsModel,
        frame,
        f"{chain.name} {day}: decoded events",
        consequence="nothing inserted",
    )
    events = frame_events(frame)
    start, end = day_bounds(day)
    canonical = _canonical_blocks(delta, chain, day)
    with postgres.connection() as conn:
        # events of blocks a reorg abandoned (decoded by an earlier run of this day) go first
        retracted = (
            []
            if canonical is None
            else store.retract_off_chain(conn, chain.chain_id, start, end, canonical)
        )
        added = store.insert_events(conn, events)
        ids = [e["id"] for e in events]
        present = scalar(conn, "SELECT count(*) FROM events WHERE id = ANY(%s)", (ids,))
        last = _last_block(delta, chain, day)
        if last is not None:
            store.advance_checkpoint(conn, chain.chain_id, *last)
    yield dg.MaterializeResult(
        metadata=table_metadata(
            rows_written=len(added),
            seconds=time.monotonic() - started,
            preview_frame=frame.head(5),
            decoded=frame.height,
            already_present=frame.height - len(added),
            retracted=len(retracted),
            registries=contracts_summary(chain.contracts),
            tracked_wallets=len(tracked),
        )
    )
    yield schema
    yield dg.AssetCheckResult(
        check_name="all_in_postgres",
        passed=present == len(ids),
        metadata={"decoded": len(ids), "in_postgres": present},
    )


# ---- events/analytics_alerts ---------------------------------------------------------------

ALERTS_KEY = dg.AssetKey(["events", "analytics_alerts"])
BALANCES_KEY = dg.AssetKey(["core", "balances"])
RISK_KEY = dg.AssetKey(["analytics", "risk_metrics"])


def wallet_balances_frame(balances: pl.DataFrame, wallet_names: Mapping[str, str]) -> pl.DataFrame:
    """core/balances rows as alert expressions see them: the wallet's name and the balance in
    token units (`balance < 10` means ten ETH), the exact base units kept as `balance_raw`."""
    names = pl.DataFrame(
        {"address": list(wallet_names), "wallet_name": list(wallet_names.values())},
        schema={"address": pl.String, "wallet_name": pl.String},
    )
    if balances.height == 0:
        return balances.with_columns(
            pl.lit(None, pl.String).alias("wallet_name"),
            pl.lit(None, pl.String).alias("balance_raw"),
        )
    units = [
        float(b) / 10 ** int(d) if b is not None else None
        for b, d in zip(balances["balance"].to_list(), balances["decimals"].to_list(), strict=True)
    ]
    return balances.join(names, on="address", how="left").with_columns(
        pl.col("balance").cast(pl.String).alias("balance_raw"),
        pl.Series("balance", units, dtype=pl.Float64),
    )


def _read_risk(
    context: dg.AssetExecutionContext,
    clickhouse: ClickHouseResource,
    chain: ChainConfig,
    day: dt.date,
) -> pl.DataFrame:
    try:
        with clickhouse.session() as ch:
            return ch.query(
                "SELECT * FROM `risk_metrics` WHERE chain_id = {chain:Int64} AND date = {day:Date}",
                {"chain": chain.chain_id, "day": day},
            )
    except Exception as e:  # no table yet (risk never materialised): nothing to alert on
        context.log.info(
            f"risk_metrics unavailable for {chain.name} {day}: {type(e).__name__}: {e}"
        )
        return pl.DataFrame()


@dg.asset(
    key=ALERTS_KEY,
    deps=[BALANCES_KEY, RISK_KEY],
    partitions_def=chain_day_partitions,
    group_name="events",
    kinds={"postgres", "polars"},
    pool="clickhouse",
    check_specs=[
        dg.AssetCheckSpec(
            "expressions_valid",
            asset=ALERTS_KEY,
            description="Every alert expression of portfolios.yaml is inside the safe grammar, "
            "names columns of the frame it reads, and was evaluated on the chain-day without "
            "error (an alert that fails is reported here; the others still fire).",
        )
    ],
    description="One event per alert of portfolios.yaml whose expression matches a row of the "
    "chain-day's balances or risk metrics, inserted into PostgreSQL `events` (registry analytics).",
    metadata=schema_metadata(ChainEventsModel),
    backfill_policy=PER_CHAIN_DAY,
    retry_policy=TRANSIENT_RETRY,
    # follows its sources: today's partition is decoded again whenever they update
    automation_condition=dg.AutomationCondition.eager(),
)
def analytics_alerts(
    context: dg.AssetExecutionContext,
    delta: dg.ResourceParam[DeltaStore],
    postgres: PostgresResource,
    clickhouse: ClickHouseResource,
):
    """Evaluate the active alerts of portfolios.yaml on the day's balances and risk metrics and
    insert an `analytics` event per matching row."""
    from assets.core.balances import BalancesModel
    from chainlake.config import load_chains
    from chainlake.events.alerts import Alert, check_alert_columns, fire_alerts
    from chainlake.events.expressions import ExpressionError
    from chainlake.portfolios import load_portfolios

    chain, day = partition_chain_day(context.partition_key)
    started = time.monotonic()
    book = load_portfolios(load_chains())
    alerts: list[Alert] = []
    refused: dict[str, str] = {}
    for a in book.alerts:
        if not a.active or not a.expression:
            continue
        try:
            check_alert_columns(a.expression)
        except ExpressionError as e:
            refused[a.name] = str(e)
            context.log.warning(f"alert {a.name!r} refused: {e}")
            continue
        alerts.append(Alert(str(a.id), a.name, a.expression, parameters=a.parameters))
    frames = {
        "wallet_balances": wallet_balances_frame(
            delta.read_day(chain, "balances", day, schema=polars_schema(BalancesModel)),
            {w.address: w.name for w in book.tracked_wallets(chain.name)},
        ),
        "risk_metrics": _read_risk(context, clickhouse, chain, day),
    }
    # an alert that fails on a frame fails alone: the others still fire
    failed: dict[str, str] = {}
    events = [
        e
        for name, frame in frames.items()
        if frame.height
        for e in fire_alerts(alerts, name, frame, chain_id=chain.chain_id, day=day, errors=failed)
    ]
    for alert_name, msg in failed.items():
        context.log.error(f"alert {alert_name!r} failed on {chain.name} {day}: {msg}")
    with postgres.connection() as conn:
        added = store.insert_events(conn, events)
    yield dg.MaterializeResult(
        metadata=table_metadata(
            rows_written=len(added),
            seconds=time.monotonic() - started,
            alerts=len(alerts),
            fired=len(events),
            already_present=len(events) - len(added),
            balances_rows=frames["wallet_balances"].height,
            risk_rows=frames["risk_metrics"].height,
            alerts_failed=len(failed),
        )
    )
    problems = {**refused, **failed}
    yield dg.AssetCheckResult(
        check_name="expressions_valid",
        passed=not problems,
        metadata={name: dg.MetadataValue.md(f"```\n{msg}\n```") for name, msg in problems.items()},
    )
