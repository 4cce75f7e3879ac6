"""Per chain, a daily schedule: materialise the previous UTC day once it is closed and confirmed.

The schedule ticks hourly so that a day whose last block is confirmed late (a slow chain, many
confirmations, a node that was down) is still picked up the same day; `run_key` makes each
chain-day one run however many ticks see it. The day comes from the tick's scheduled time,
never the wall clock, and a tick also catches up on the few days before it that were never
materialised (the daemon was down). Today's open day is the new-block sensor's job.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg

from chainlake.config import ChainConfig
from chainlake.partitions import CHAINS, chain_day_key
from chainlake.rpc import RpcClient
from chainlake.run_coordinator import CHAIN_TAG
from chainlake.scheduling import candidate_days, read_confirmed_head

JOB_NAME = "chain_day_job"
CRON = "5 * * * *"
LOOKBACK_DAYS = 3
# Marks a chain-day as done for the schedule: written by the raw extraction step.
DONE_ASSET = dg.AssetKey(["raw", "blocks"])


def schedule_name(chain: ChainConfig) -> str:
    """The name of the chain's daily schedule (`daily_<chain>`, dashes as underscores)."""
    return f"daily_{chain.name.replace('-', '_')}"


def _done_days(context: dg.ScheduleEvaluationContext, chain: ChainConfig) -> set[dt.date]:
    done = set()
    for key in context.instance.get_materialized_partitions(DONE_ASSET):
        chain_name, _, day = key.partition("|")
        if chain_name == chain.name:
            done.add(dt.date.fromisoformat(day))
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
    )
    def _schedule(context: dg.ScheduleEvaluationContext):
        tick_day = context.scheduled_execution_time.astimezone(dt.UTC).date()
        days = candidate_days(
            tick_day,
            start_date=chain.start_date,
            lookback_days=LOOKBACK_DAYS,
            done=_done_days(context, chain),
        )
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
