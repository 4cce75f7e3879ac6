"""Which chain-days the compaction schedule asks for, and what the maintenance metadata says."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from chainlake.extract import day_bounds
from chainlake.lake import CompactResult, VacuumResult
from chainlake.maintenance import (
    DayMaterialisation,
    compaction_metadata,
    compaction_run_key,
    days_to_compact,
    is_closed_for_compaction,
    vacuum_metadata,
)

D = dt.date
TICK = D(2026, 11, 21)


def _at(day: dt.date, seconds: int) -> float:
    return float(day_bounds(day)[0] + seconds)


def test_a_day_is_closed_once_materialised_after_its_midnight_and_before_the_tick_day() -> None:
    day = D(2026, 11, 20)
    assert not is_closed_for_compaction(day, TICK, _at(day, 86_399))  # last run before midnight
    assert is_closed_for_compaction(day, TICK, _at(day, 86_400))  # a run after midnight
    # the tick's own day is open whatever ran
    assert not is_closed_for_compaction(TICK, TICK, _at(TICK, 86_400))


def test_days_to_compact_are_the_closed_days_of_the_lookback_oldest_first() -> None:
    latest = [
        DayMaterialisation(D(2026, 11, 20), _at(D(2026, 11, 21), 60), 9),
        DayMaterialisation(D(2026, 11, 18), _at(D(2026, 11, 19), 600), 5),
        DayMaterialisation(D(2026, 11, 19), _at(D(2026, 11, 19), 3_600), 7),  # still open then
        DayMaterialisation(D(2026, 11, 10), _at(D(2026, 11, 11), 60), 1),  # past the lookback
        DayMaterialisation(TICK, _at(TICK, 60), 11),
    ]
    got = days_to_compact(TICK, latest, start_date=D(2026, 11, 1), lookback_days=7)
    assert [m.day for m in got] == [D(2026, 11, 18), D(2026, 11, 20)]
    assert days_to_compact(TICK, latest, start_date=D(2026, 11, 19)) == [latest[0]]
    assert compaction_run_key("devnet", latest[0]) == "compact|devnet|2026-11-20|9"


def test_compaction_metadata_totals_and_per_table() -> None:
    day = D(2026, 11, 20)
    results = [
        CompactResult("blocks", day, 200, 1, 400_000, 6_000, 600, 600, 200, 201, 200, 1, 0.5),
        CompactResult("token_transfers", day, 1, 1, 7_000, 7_000, 20, 20, 9, 9, 0, 0, 0.1),
    ]
    md = compaction_metadata(results)
    assert (md["tables"], md["tables_compacted"]) == (2, 1)
    assert (md["files_before"], md["files_after"]) == (201, 2)
    assert (md["bytes_before"], md["bytes_after"]) == (407_000, 13_000)
    assert md["duration_s"] == 0.6
    table = md["per_table"].value
    assert "| blocks | 200 → 1 | 0.38 MiB → 0.01 MiB | 600 | 200 → 201 | 0.50 |" in table
    assert md["per_table_json"].value["token_transfers"]["version_after"] == 9

    vac = vacuum_metadata(
        {"devnet": [VacuumResult("blocks", 2, 4_096, 203, 205, 168, False, 0.02)]},
        retention_hours=168,
    )
    assert (vac["files_deleted"], vac["bytes_deleted"], vac["retention_hours"]) == (2, 4_096, 168)
    assert "| devnet | blocks | 2 | 0.00 MiB | 203 → 205 | 0.02 |" in vac["per_table"].value


def _tick(at: dt.datetime, instance: dg.DagsterInstance) -> list[dg.RunRequest]:
    from pipelines.maintenance import delta_compaction_schedule

    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=at)
    result = delta_compaction_schedule(context)
    return [] if isinstance(result, dg.SkipReason) else list(result)


def test_the_schedule_requests_each_closed_day_once_per_materialisation() -> None:
    from chainlake.partitions import CHAINS

    # the chains the code location loaded (config/chains.yaml unless CHAINS_CONFIG said else)
    name = min(CHAINS)
    # runless materialisations are stamped with the wall clock: the tick is now, so the
    # days before today were all materialised after their midnight
    now = dt.datetime.now(dt.UTC)
    today = now.date()
    yesterday, older = today - dt.timedelta(days=1), today - dt.timedelta(days=3)
    assert CHAINS[name].start_date <= older

    def materialise(day: dt.date) -> None:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(asset_key=["raw", "blocks"], partition=f"{name}|{day}")
        )

    with dg.instance_for_test() as instance:
        assert _tick(now, instance) == []
        for day in (older, yesterday, today):
            materialise(day)
        requests = _tick(now, instance)
        assert sorted(str(r.partition_key) for r in requests) == [
            f"{name}|{older}",
            f"{name}|{yesterday}",
        ]
        assert all(r.tags["chainlake/chain"] == name for r in requests)
        assert all(r.run_key and r.run_key.startswith(f"compact|{name}|") for r in requests)
        # the same materialisations give the same run keys (Dagster runs a key once); a day
        # materialised again gets a new one, so it is compacted again
        assert {r.run_key for r in _tick(now, instance)} == {r.run_key for r in requests}
        materialise(yesterday)
        again = {r.run_key for r in _tick(now, instance)}
        assert len(again - {r.run_key for r in requests}) == 1
