"""core/token_transfers: decoded ERC-20 `Transfer(address,address,uint256)` events."""

import time

import dagster as dg

from assets.checks import require_schema
from assets.policies import PER_CHAIN_DAYS, TRANSIENT_RETRY
from assets.ranges import each_day, run_chain_days
from chainlake.lake import DeltaStore
from chainlake.metadata import table_metadata
from chainlake.partitions import chain_day_partitions
from chainlake.raw.logs import LogsModel
from chainlake.schema import polars_schema, schema_metadata
from chainlake.token_transfers import (  # noqa: F401 - the asset's model and transform
    MAX_DECIMAL_38,
    TRANSFER_TOPIC,
    TokenTransfersModel,
    token_transfers_frame,
)

KEY = dg.AssetKey(["core", "token_transfers"])


@dg.asset(
    key=KEY,
    deps=[dg.AssetKey(["raw", "logs"])],
    partitions_def=chain_day_partitions,
    group_name="core",
    kinds={"delta", "polars"},
    check_specs=[dg.AssetCheckSpec("schema", asset=KEY, blocking=True)],
    description="One row per ERC-20 Transfer event of the chain-day, amounts exact.",
    metadata=schema_metadata(TokenTransfersModel),
    backfill_policy=PER_CHAIN_DAYS,
    retry_policy=TRANSIENT_RETRY,
)
def token_transfers(context: dg.AssetExecutionContext, delta: dg.ResourceParam[DeltaStore]):
    """Write each chain-day's ERC-20 transfers of the run, decoded from raw/logs."""
    yield from each_day(
        context, run_chain_days(context), lambda chain, day: _one_day(delta, chain, day)
    )


def _one_day(delta: DeltaStore, chain, day):
    started = time.monotonic()
    logs = delta.read_day(chain, "logs", day, schema=polars_schema(LogsModel))
    df = token_transfers_frame(logs)
    schema = yield from require_schema(
        TokenTransfersModel, df, f"{chain.name} {day}: token transfers"
    )
    version = delta.replace_day(chain, "token_transfers", day, df)
    yield dg.MaterializeResult(
        metadata=table_metadata(
            rows_written=df.height,
            seconds=time.monotonic() - started,
            preview_frame=df.head(5),
            version=version,
            tokens=df["token_address"].n_unique(),
            oversized_values=df["value"].null_count(),
        )
    )
    yield schema
