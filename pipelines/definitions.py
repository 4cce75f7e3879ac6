"""The code location: every asset, check, job, schedule, sensor and resource. Wiring only."""

from __future__ import annotations

import dagster as dg

from assets.raw import raw_chain_tables
from assets.token_transfers import token_transfers
from chainlake.settings import env
from pipelines.analytics import (
    ANALYTICS_ASSETS,
    ANALYTICS_CHECKS,
    ANALYTICS_JOBS,
    ANALYTICS_RESOURCES,
)
from pipelines.schedules import SCHEDULES
from pipelines.triggers import (
    TRIGGER_ASSETS,
    TRIGGER_JOBS,
    TRIGGER_RESOURCES,
    TRIGGER_SCHEDULES,
    TRIGGER_SENSORS,
)
from resources.delta import DeltaStore
from resources.rpc import RpcResource

ASSETS = [raw_chain_tables, token_transfers, *ANALYTICS_ASSETS, *TRIGGER_ASSETS]

RESOURCES = {
    "delta": DeltaStore(
        root=env("DELTA_ROOT", "data/delta"),
        s3_endpoint_url=env("S3_ENDPOINT_URL", None),
        s3_access_key_id=env("AWS_ACCESS_KEY_ID", None),
        s3_secret_access_key=env("AWS_SECRET_ACCESS_KEY", None),
    ),
    "rpc": RpcResource(),
    **ANALYTICS_RESOURCES,
    **TRIGGER_RESOURCES,
}

chain_day_job = dg.define_asset_job(
    "chain_day_job",
    selection=dg.AssetSelection.groups("raw", "core"),
    description="Extract and decode one chain-day into Delta Lake.",
)

# Steps run in processes of their own (a step's memory and a native crash stay its own), forked
# from a server that has imported this code location once per run: a step starts in a fraction
# of a second instead of paying the interpreter and the imports (Dagster, Polars, Delta Lake,
# DuckDB, chdb, web3) again, which dominated short chain-day runs in backfills.
# (Named explicitly: Dagster preloads the job's own module only when the job was loaded from a
# module, not through a workspace.)
EXECUTOR = dg.multiprocess_executor.configured(
    {"start_method": {"forkserver": {"preload_modules": ["pipelines.definitions"]}}},
    name="forkserver_multiprocess",
)

defs = dg.Definitions(
    assets=ASSETS,
    executor=EXECUTOR,
    asset_checks=ANALYTICS_CHECKS,
    resources=RESOURCES,
    jobs=[chain_day_job, *ANALYTICS_JOBS, *TRIGGER_JOBS],
    schedules=[*SCHEDULES, *TRIGGER_SCHEDULES],
    sensors=TRIGGER_SENSORS,
)
