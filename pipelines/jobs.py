"""The asset jobs of the chain-day flow. Wiring only."""

from __future__ import annotations

import dagster as dg

from sensors.reorg_repairs import JOB as REORG_REBUILD_JOB

chain_day_job = dg.define_asset_job(
    "chain_day_job",
    selection=dg.AssetSelection.groups("raw", "core"),
    description="Extract and decode one chain-day into Delta Lake.",
)

# What the daily schedule runs for a chain-day that has closed: the whole partitioned graph, so
# a day's analytics, risk, events and alerts follow its last confirmed block without a person.
closed_day_job = dg.define_asset_job(
    "closed_day_job",
    selection=dg.AssetSelection.groups("raw", "core", "analytics", "events"),
    description="A closed chain-day, whole: raw read again to the day's last block, then core, "
    "analytics, events and alerts (launched by daily_<chain> once the day is confirmed closed).",
)

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

# Everything of a chain-day built from the raw tables: what a reorg repair leaves stale.
reorg_rebuild_job = dg.define_asset_job(
    REORG_REBUILD_JOB,
    selection=dg.AssetSelection.groups("core", "analytics", "events"),
    description="Rebuild the derived tables and events of a chain-day whose raw tables a reorg "
    "repair rewrote (launched by reorg_repairs_sensor).",
)

JOBS = [chain_day_job, closed_day_job, analytics_job, serving_job, reorg_rebuild_job]
