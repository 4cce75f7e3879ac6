"""Per chain, a daily schedule: materialise the previous UTC day once it is closed and confirmed,
the whole partitioned graph of it (`closed_day_job`: raw, core, analytics, events).

The schedule ticks every 5 minutes, so a closed day is picked up within about 5 minutes of its
last block being confirmed, whenever that is (a slow chain, many confirmations, a node that was
down); a tick that finds nothing to do asks the node nothing. `run_key` makes each chain-day one
run however many ticks see it. The day comes from the tick's scheduled time, never the wall
clock, and a tick also catches up on the few days before it that were never materialised as
closed (the daemon was down). A day is done once its latest raw/blocks materialisation says
`closed_day`: the new-block sensor's runs of the open day (today, up to the confirmed head)
leave it open, so the blocks confirmed after midnight, the day's last, are read by this run,
and its events reach PostgreSQL once (inserts are idempotent by event id).
"""

from __future__ import annotations

import datetime as dt

import dagster as dg

from chainlake.config import ChainConfig
from chainlake.partitions import CHAINS, chain_day_key
from chainlake.rpc import RpcClient
from chainlake.run_coordinator import CHAIN_TAG
from chainlake.scheduling import candidate_days, read_confirmed_head

JOB_NAME = "closed_day_job"
CRON = "*/5 * * * *"
LOOKBACK_DAYS = 3
# Marks a chain-day as done for the schedule: written by the raw extraction step, whose
# metadata says whether it read the day closed (`closed_day`).
DONE_ASSET = dg.AssetKey(["raw", "blocks"])
CLOSED = "closed_day"


def schedule_name(chain: ChainConfig) -> str:
    """The name of the chain's daily schedule (`daily_<chain>`, dashes as underscores)."""
    return f"daily_{chain.name.replace('-', '_')}"


def closed_days(
    instance: dg.DagsterInstance, chain: ChainConfig, days: list[dt.date]
) -> set[dt.date]:
    """The `days` of `chain` whose latest raw/blocks materialisation read them closed.

    Args:
        instance: The Dagster instance (its event log).
        chain: The chain.
        days: The candidate days (a few: one query each).

    Returns:
        The days that need no closed-day run.
    """
    done = set()
    for day in days:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=DONE_ASSET, asset_partitions=[str(chain_day_key(chain.name, day))]
            ),
            limit=1,
        ).records
        materialization = records[0].asset_materialization if records else None
        closed = materialization.metadata.get(CLOSED) if materialization else None
        if getattr(closed, "value", closed) is True:
            done.add(day)
    return done


def daily_schedule(chain: ChainConfig) -> dg.ScheduleDefinition:
    """The chain's daily schedule: at each tick, requests the closed days not yet done (up to
    LOOKBACK_DAYS back) once the confirmed head is past them.
    """

    @dg.schedule(
        name=schedule_name(chain),
        cron_schedule=CRON,
        execution_timezone="UTC",
        job_name=JOB_NAME,
        description=(
            f"Materialise the previous UTC day of {chain.name} once its last block is confirmed "
            f"({chain.confirmations} confirmations); catches up {LOOKBACK_DAYS} days."
        ),
        tags={CHAIN_TAG: chain.name, "chainlake/trigger": "schedule"},
        # closed days follow without a person, like the open day (new_block_sensor)
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    def _schedule(context: dg.ScheduleEvaluationContext):
        tick_day = context.scheduled_execution_time.astimezone(dt.UTC).date()
        recent = candidate_days(
            tick_day, start_date=chain.start_date, lookback_days=LOOKBACK_DAYS, done=()
        )
        days = [d for d in recent if d not in closed_days(context.instance, chain, recent)]
        if not days:
            return dg.SkipReason(f"{chain.name}: every closed day up to {tick_day} is done")
        # Short timeout and few retries: a tick must finish well inside Dagster's 60 s limit.
        with RpcClient(
            chain.rpc_urls, timeout=5.0, max_retries=1, max_in_flight=1, chain_id=chain.chain_id
        ) as client:
            try:
                head = read_confirmed_head(client, chain.confirmations)
            except Exception as e:  # a node that is down is a skipped tick, not an error
                return dg.SkipReason(f"{chain.name}: node unavailable ({type(e).__name__}: {e})")
        if head is None:
            return dg.SkipReason(f"{chain.name}: the chain has no confirmed block yet")
        closed = [d for d in days if head.closes(d)]
        if not closed:
            return dg.SkipReason(
                f"{chain.name}: {days[-1]} not closed yet; confirmed head is block "
                f"{head.block_number} at {head.timestamp:%Y-%m-%d %H:%M:%S} UTC"
            )
        return [
            dg.RunRequest(
                run_key=f"{chain.name}|{day.isoformat()}",
                partition_key=chain_day_key(chain.name, day),
                tags={CHAIN_TAG: chain.name, "chainlake/trigger": "schedule"},
            )
            for day in closed
        ]

    return _schedule


SCHEDULES = [daily_schedule(chain) for chain in CHAINS.values()]
