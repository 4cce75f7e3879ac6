"""Freshness checks per layer, and the sensor that evaluates them. Wiring only.

Each check fails (severity ERROR, red in the UI's asset checks and in the sensor's runs) when
no partition of its asset was materialised within its layer's bound:

- raw, core (but balances and prices) and events/chain_events: `OPEN_DAY_BOUND`. The new-block
  sensor brings the open day up to the confirmed head every few seconds while the chain makes
  blocks, so an update older than this means extraction stopped (a node down, a failing run,
  the daemon off).
- core/balances, core/token_prices, analytics and events/analytics_alerts: `CLOSED_DAY_BOUND`. They follow each closed day
  (`closed_day_job`), so a day and a few hours without one means a day was missed.

A chain that makes no block for `OPEN_DAY_BOUND` (an idle devnet) fails the raw checks too:
the check cannot tell an idle chain from a stuck pipeline, and says so in the UI.

Dagster 1.13 marks these factories superseded by `FreshnessPolicy`; they are kept because they
are asset checks: a history per asset, a run to look at, and testable by executing them
(tests/unit/test_freshness.py). Their SupersessionWarning is silenced here, where the choice is
made, so it does not reach every process that loads the code location.
"""

from __future__ import annotations

import datetime as dt
import warnings

import dagster as dg

OPEN_DAY_BOUND = dt.timedelta(minutes=30)
CLOSED_DAY_BOUND = dt.timedelta(hours=26)
# How often the sensor looks; it launches a run only when a check is due.
SENSOR_INTERVAL_SECONDS = 300

_OPEN_DAY_ASSETS = [
    dg.AssetKey(["raw", "blocks"]),
    dg.AssetKey(["raw", "transactions"]),
    dg.AssetKey(["raw", "logs"]),
    dg.AssetKey(["raw", "traces"]),
    dg.AssetKey(["core", "token_transfers"]),
    dg.AssetKey(["core", "native_transfers"]),
    dg.AssetKey(["core", "native_balance_movements"]),
    dg.AssetKey(["core", "nft_transfers"]),
    dg.AssetKey(["core", "contracts"]),
    dg.AssetKey(["core", "tokens"]),
    dg.AssetKey(["events", "chain_events"]),
]
_CLOSED_DAY_ASSETS = [
    dg.AssetKey(["core", "balances"]),
    dg.AssetKey(["core", "token_prices"]),
    dg.AssetKey(["analytics", "portfolio_snapshots"]),
    dg.AssetKey(["analytics", "risk_metrics"]),
    dg.AssetKey(["events", "analytics_alerts"]),
]

with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.SupersessionWarning)
    FRESHNESS_CHECKS = [
        *dg.build_last_update_freshness_checks(
            assets=_OPEN_DAY_ASSETS,
            lower_bound_delta=OPEN_DAY_BOUND,
            severity=dg.AssetCheckSeverity.ERROR,
        ),
        *dg.build_last_update_freshness_checks(
            assets=_CLOSED_DAY_ASSETS,
            lower_bound_delta=CLOSED_DAY_BOUND,
            severity=dg.AssetCheckSeverity.ERROR,
        ),
    ]
    freshness_checks_sensor = dg.build_sensor_for_freshness_checks(
        freshness_checks=FRESHNESS_CHECKS,
        minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
