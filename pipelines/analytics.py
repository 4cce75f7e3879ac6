"""Wiring of balances, prices, portfolio analytics and the DuckDB serving layer.

`pipelines/definitions.py` adds these to the code location. Checks are the assets' own
blocking `check_specs` (schema, balances against the chain), so `ANALYTICS_CHECKS` is empty.

Stores, each selected by one environment variable (read by Dagster when the resource starts):

- `CLICKHOUSE_URL` (unset: the embedded engine on `CLICKHOUSE_PATH`, default data/clickhouse);
- `DUCKDB_PATH` (default data/chainlake.duckdb).

Pools (dagster.yaml gives unconfigured pools one slot): `clickhouse` serialises the embedded
engine's writers, `duckdb` the serving file's writer.
"""

import dagster as dg

from assets.balances import balances
from assets.catalog import catalog, views
from assets.native_transfers import native_transfers
from assets.portfolio_snapshots import portfolio_snapshots
from assets.risk_metrics import risk_metrics
from assets.token_prices import token_prices
from chainlake.settings import env
from resources.clickhouse import ClickHouseResource
from resources.duckdb import ServingDuckDB

ANALYTICS_ASSETS: list[dg.AssetsDefinition] = [
    native_transfers,
    balances,
    token_prices,
    portfolio_snapshots,
    risk_metrics,
    catalog,
    views,
]

ANALYTICS_CHECKS: list[dg.AssetChecksDefinition] = []

ANALYTICS_RESOURCES: dict[str, dg.ConfigurableResource] = {
    "clickhouse": ClickHouseResource(
        url=env("CLICKHOUSE_URL", ""),
        path=env("CLICKHOUSE_PATH", "data/clickhouse"),
    ),
    "duckdb": ServingDuckDB(database=env("DUCKDB_PATH", "data/chainlake.duckdb")),
}

analytics_job = dg.define_asset_job(
    "analytics_job",
    selection=dg.AssetSelection.groups("analytics"),
    description="Portfolio snapshots and rolling risk of one chain-day, in ClickHouse.",
)

serving_job = dg.define_asset_job(
    "serving_job",
    selection=dg.AssetSelection.groups("serving"),
    description="Reload the DuckDB catalog from the config files and refresh the views.",
)

ANALYTICS_JOBS = [analytics_job, serving_job]
