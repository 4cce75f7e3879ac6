"""The code location: every asset, job, schedule, sensor and resource. Wiring only."""

from __future__ import annotations

import dagster as dg

from assets.analytics.portfolio_snapshots import portfolio_snapshots
from assets.analytics.risk_metrics import risk_metrics
from assets.core.balances import balances
from assets.core.contracts import contracts
from assets.core.native_balance_movements import native_balance_movements
from assets.core.native_transfers import native_transfers
from assets.core.nft_transfers import nft_transfers
from assets.core.token_prices import token_prices
from assets.core.token_transfers import token_transfers
from assets.core.tokens import tokens
from assets.events.chain_events import analytics_alerts, chain_events
from assets.raw.chain_tables import raw_chain_tables
from assets.serving.catalog import catalog, views
from assets.serving.rpc_nodes import rpc_nodes
from pipelines.executors import EXECUTOR
from pipelines.freshness import FRESHNESS_CHECKS, freshness_checks_sensor
from pipelines.jobs import JOBS
from pipelines.maintenance import MAINTENANCE_JOBS, MAINTENANCE_SCHEDULES
from pipelines.resources import RESOURCES
from pipelines.schedules import SCHEDULES
from pipelines.triggers import TRIGGER_JOBS, TRIGGER_SCHEDULES, TRIGGER_SENSORS
from sensors.livestate import livestate_sensor
from sensors.reorg_repairs import reorg_repairs_sensor

# In the order of the flow: raw → core → analytics → events → serving. Each asset carries its
# own blocking checks (`check_specs`).
ASSETS = [
    raw_chain_tables,
    token_transfers,
    tokens,
    nft_transfers,
    contracts,
    native_transfers,
    native_balance_movements,
    balances,
    token_prices,
    portfolio_snapshots,
    risk_metrics,
    chain_events,
    analytics_alerts,
    catalog,
    views,
]
# Observed by a sensor, never materialised: no table of the lake, no model.
OBSERVED = [rpc_nodes]

defs = dg.Definitions(
    assets=[*ASSETS, *OBSERVED],
    # per-layer freshness (pipelines/freshness.py), evaluated by freshness_checks_sensor
    asset_checks=FRESHNESS_CHECKS,
    # forkserver multiprocess on the run's machine, or Celery workers on several machines
    # (CHAINLAKE_EXECUTOR, read as the code location loads: pipelines/executors.py)
    executor=EXECUTOR,
    resources=RESOURCES,
    jobs=[*JOBS, *TRIGGER_JOBS, *MAINTENANCE_JOBS],
    schedules=[*SCHEDULES, *TRIGGER_SCHEDULES, *MAINTENANCE_SCHEDULES],
    sensors=[*TRIGGER_SENSORS, reorg_repairs_sensor, freshness_checks_sensor, livestate_sensor],
)
