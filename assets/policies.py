"""How partitioned assets are backfilled and retried. Wiring only; the asset decorators use these.

A backfill is planned per asset from its backfill policy. A range of the chain × date
partitions is a rectangle (chains × consecutive days); Dagster builds ranges of one chain from
a backfill's chain-days when it can, of several chains when the chain-days it requests form
such a rectangle. So:

- `PER_CHAIN_DAYS`: runs of up to `CHAIN_DAYS_PER_RUN` chain-days. For assets whose body takes
  one day at a time: `assets/ranges.py` calls it for each (chain, day) of the run, each
  chain's days in date order, one Delta commit per day and table. A day's process start-up
  (~12 s on a busy 2-core machine) is paid once per run instead of once per day. Assets that
  share a run must share a policy; give every per-day asset this one so a range's raw and core
  steps run together.
- `FROM_DAY_BEFORE`: for assets that read their own previous day (balances, snapshots). Dagster
  never puts a self-dependent asset in a run with others, and with a partition limit it takes
  the first partitions of an unordered set: runs of single days out of date order, one run per
  chain-day again. Without a limit, each backfill tick requests every partition whose sources
  are done in one run, whose body takes them chain by chain in date order (`assets/ranges.py`),
  each day committed before the next starts from it.
- `PER_CHAIN_DAY`: one run per chain-day, for a body that reads `context.partition_key`.
- `PER_CHAIN_RANGE`: one run per chain over the whole selected date range. For assets that
  take a range in one go (`context.partition_keys`, see `chain_days`), e.g. rolling analytics.

The instance limits (`dagster.yaml`) keep one run per chain at its open edge (today and
yesterday) and up to three runs of a chain's closed days at once, chains in parallel (see
`chainlake/run_coordinator.py`; a run of several chains, of a `FROM_DAY_BEFORE` asset, takes
no chain's slot: it writes only its own table, other days than any other run), and the pools
cap RPC, DuckDB and ClickHouse work across runs.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg

from chainlake.config import ChainConfig
from chainlake.partitions import partition_chain_day

# Ten days a run: a month of one chain in three runs, and a failing day costs at most nine
# days of work to redo (the days before it stay committed and recorded).
CHAIN_DAYS_PER_RUN = 10
PER_CHAIN_DAYS = dg.BackfillPolicy.multi_run(max_partitions_per_run=CHAIN_DAYS_PER_RUN)
# One run per chain-day, for an asset whose body reads `context.partition_key` alone
# (events/analytics_alerts: a failing alert fails its own day only).
PER_CHAIN_DAY = dg.BackfillPolicy.multi_run(max_partitions_per_run=1)
FROM_DAY_BEFORE = dg.BackfillPolicy.single_run()
PER_CHAIN_RANGE = dg.BackfillPolicy.single_run()

# Transient step failures only: a node still failing after the RPC client's own retries, or a
# commit that lost a race. Data errors raise `dg.Failure(allow_retries=False)` and are not retried.
TRANSIENT_RETRY = dg.RetryPolicy(
    max_retries=2, delay=15, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


def chain_days(context: dg.AssetExecutionContext) -> list[tuple[ChainConfig, dt.date]]:
    """Every (chain, day) a run covers, in order: one for a single partition, many for a range
    run of a `PER_CHAIN_RANGE` asset."""
    pairs = [partition_chain_day(k) for k in context.partition_keys]
    return sorted(pairs, key=lambda p: (p[0].name, p[1]))
