"""The daily schedule against a real node: it requests a day only once a confirmed block lies
past the day's end, and only days not materialised yet."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest
from dagster_stack import day_start, start_chain

from chainlake.config import ChainConfig
from pipelines.schedules import daily_schedule

pytestmark = pytest.mark.integration

FIRST_DAY = dt.date(2026, 10, 1)


def _chain(url: str, confirmations: int) -> ChainConfig:
    return ChainConfig(
        name="sched-chain",
        network="sched",
        subnet="local",
        chain_id=4_401,
        rpc_urls=(url,),
        confirmations=confirmations,
        start_date=FIRST_DAY,
    )


def _tick(
    schedule: dg.ScheduleDefinition, at: dt.datetime, instance: dg.DagsterInstance
) -> tuple[list[dg.RunRequest], str | None]:
    """The schedule function's own answer: run requests, or the reason it skipped."""
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=at)
    result = schedule(context)
    if isinstance(result, dg.SkipReason):
        return [], result.skip_message
    return list(result), None


def test_requests_closed_confirmed_days_once() -> None:
    # blocks on Oct 1 and Oct 2, plus one block on Oct 3 (so Oct 2 is closed at head)
    node = start_chain("sched-chain", 4_401, FIRST_DAY, 2, blocks_per_day=2)
    try:
        tick_at = dt.datetime(2026, 10, 3, 0, 5, tzinfo=dt.UTC)
        with dg.instance_for_test() as instance:
            # no confirmations: Oct 1 and Oct 2 are closed; one run per day, keyed by day
            requests, _ = _tick(daily_schedule(_chain(node.url, 0)), tick_at, instance)
            keys = sorted(str(r.partition_key) for r in requests)
            assert keys == ["sched-chain|2026-10-01", "sched-chain|2026-10-02"]
            assert {r.run_key for r in requests} == set(keys)
            assert all(r.tags["chainlake/chain"] == "sched-chain" for r in requests)

            # with 2 confirmations the confirmed head is back on Oct 2: only Oct 1 is closed
            requests, _ = _tick(daily_schedule(_chain(node.url, 2)), tick_at, instance)
            assert [str(r.partition_key) for r in requests] == ["sched-chain|2026-10-01"]

            # with 4 the confirmed head is on Oct 1: nothing closed, the tick says why
            requests, skipped = _tick(daily_schedule(_chain(node.url, 4)), tick_at, instance)
            assert not requests
            assert "not closed yet" in (skipped or "")

            # a day the open-day runs materialised up to a head inside it is still open:
            # requested, so its last blocks (confirmed after midnight) are read
            for day, closed in (("2026-10-01", False), ("2026-10-02", False)):
                instance.report_runless_asset_event(
                    dg.AssetMaterialization(
                        asset_key=["raw", "blocks"],
                        partition=f"sched-chain|{day}",
                        metadata={"closed_day": closed},
                    )
                )
            requests, _ = _tick(daily_schedule(_chain(node.url, 0)), tick_at, instance)
            assert sorted(str(r.partition_key) for r in requests) == [
                "sched-chain|2026-10-01",
                "sched-chain|2026-10-02",
            ]
            assert all(r.job_name in (None, "closed_day_job") for r in requests)

            # a day already materialised as closed is not requested again
            instance.report_runless_asset_event(
                dg.AssetMaterialization(
                    asset_key=["raw", "blocks"],
                    partition="sched-chain|2026-10-01",
                    metadata={"closed_day": True},
                )
            )
            requests, _ = _tick(daily_schedule(_chain(node.url, 0)), tick_at, instance)
            assert [str(r.partition_key) for r in requests] == ["sched-chain|2026-10-02"]
    finally:
        node.stop()


def test_a_node_that_is_down_skips_the_tick() -> None:
    chain = _chain("http://127.0.0.1:1", 0)
    at = dt.datetime.fromtimestamp(day_start(dt.date(2026, 10, 3)) + 300, dt.UTC)
    with dg.instance_for_test() as instance:
        requests, skipped = _tick(daily_schedule(chain), at, instance)
    assert not requests
    assert "node unavailable" in (skipped or "")
