"""Range runs of per-day assets (`assets/ranges.py`): the days arrive one chain at a time in
date order, one result per asset and check, and a failing day leaves the days before it
recorded as materialised."""

# no `from __future__ import annotations`: Dagster reads the context annotation at definition

import datetime as dt

import dagster as dg

from assets.policies import CHAIN_DAYS_PER_RUN, PER_CHAIN_DAYS
from assets.ranges import each_day, run_chain_days
from chainlake.partitions import CHAINS, chain_day_key, chain_day_partitions

CHAIN = sorted(CHAINS)[0]
START = min(c.start_date for c in CHAINS.values())
DAYS = [START + dt.timedelta(days=n) for n in range(4)]
KEY = dg.AssetKey(["test", "per_day"])


def _asset(seen: list[dt.date], fail_on: dt.date | None = None) -> dg.AssetsDefinition:
    @dg.asset(
        key=KEY,
        partitions_def=chain_day_partitions,
        backfill_policy=PER_CHAIN_DAYS,
        check_specs=[dg.AssetCheckSpec("positive", asset=KEY)],
    )
    def per_day(context: dg.AssetExecutionContext):
        def one(chain, day: dt.date):
            if day == fail_on:
                yield dg.AssetCheckResult(check_name="positive", passed=False)
                raise dg.Failure(f"{day} is bad", allow_retries=False)
            seen.append(day)
            yield dg.MaterializeResult(metadata={"rows_written": day.day})
            yield dg.AssetCheckResult(check_name="positive", passed=True)

        yield from each_day(context, run_chain_days(context), one)

    return per_day


def _range_tags() -> dict[str, str]:
    # what the backfill daemon puts on a run of a range of DAYS of CHAIN
    return {
        "dagster/asset_partition_range_start": str(chain_day_key(CHAIN, DAYS[0])),
        "dagster/asset_partition_range_end": str(chain_day_key(CHAIN, DAYS[-1])),
    }


def _materialized(instance: dg.DagsterInstance) -> set[str]:
    return set(instance.get_materialized_partitions(KEY))


def test_policy_takes_ten_days() -> None:
    assert CHAIN_DAYS_PER_RUN == 10
    assert PER_CHAIN_DAYS.max_partitions_per_run == CHAIN_DAYS_PER_RUN


def test_range_run_takes_each_day_in_order_and_records_every_partition() -> None:
    seen: list[dt.date] = []
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [_asset(seen)],
            instance=instance,
            tags=_range_tags(),
        )
        assert result.success
        assert seen == DAYS
        assert _materialized(instance) == {str(chain_day_key(CHAIN, d)) for d in DAYS}
        checks = result.get_asset_check_evaluations()
        assert len(checks) == 1 and checks[0].passed
        assert checks[0].metadata["days_checked"].value == len(DAYS)


def test_failing_day_records_the_days_before_it() -> None:
    seen: list[dt.date] = []
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [_asset(seen, fail_on=DAYS[2])],
            instance=instance,
            raise_on_error=False,
            tags=_range_tags(),
        )
        assert not result.success
        assert seen == DAYS[:2]
        assert _materialized(instance) == {str(chain_day_key(CHAIN, d)) for d in DAYS[:2]}
        checks = result.get_asset_check_evaluations()
        assert len(checks) == 1 and not checks[0].passed
        assert str(DAYS[2]) in checks[0].metadata["failed_days"].value


def test_single_partition_run_is_unchanged() -> None:
    seen: list[dt.date] = []
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [_asset(seen)], instance=instance, partition_key=str(chain_day_key(CHAIN, DAYS[1]))
        )
        assert result.success and seen == [DAYS[1]]
        mats = result.asset_materializations_for_node("test__per_day")
        assert mats[0].metadata["rows_written"].value == DAYS[1].day
