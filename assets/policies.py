"""How partitioned assets are backfilled and retried. Wiring only; the asset decorators use these.

A backfill is planned per asset from its backfill policy, and Dagster holds one dimension of
the chain × date partition fixed when it builds ranges, so:

- `PER_CHAIN_DAY`: one run per chain-day. For assets whose body reads `context.partition_key`
  (extraction: one day's block range at a time). Assets that share a run must share a policy;
  give every per-day asset this one so a day's raw and core steps run together.
- `PER_CHAIN_RANGE`: one run per chain over the whole selected date range. For assets that
  can take a range (`context.partition_keys`, see `chain_days`), e.g. rolling analytics.

Either way the instance limits (`dagster.yaml`) keep one run per chain at a time, chains in
parallel, and the pools cap RPC, DuckDB and ClickHouse work across runs.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg

from chainlake.config import ChainConfig
from chainlake.partitions import partition_chain_day

PER_CHAIN_DAY = dg.BackfillPolicy.multi_run(max_partitions_per_run=1)
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
