"""The per-layer freshness checks (`pipelines/freshness.py`) fail when a layer falls behind."""

from __future__ import annotations

import datetime as dt

import dagster as dg
from dagster._core.test_utils import freeze_time

from pipelines.freshness import (
    CLOSED_DAY_BOUND,
    FRESHNESS_CHECKS,
    OPEN_DAY_BOUND,
    freshness_checks_sensor,
)

RAW = dg.AssetKey(["raw", "blocks"])
SNAPSHOTS = dg.AssetKey(["analytics", "portfolio_snapshots"])
PARTITION = "devnet|2026-11-01"


def _evaluate(instance: dg.DagsterInstance) -> dict[tuple[str, str], bool]:
    """Run every freshness check once; (asset, check) -> passed."""
    defs = dg.Definitions(asset_checks=FRESHNESS_CHECKS)
    job = defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(instance=instance, raise_on_error=False)
    return {
        (e.asset_key.to_user_string(), e.check_name): e.passed
        for e in result.get_asset_check_evaluations()
    }


def _materialise(instance: dg.DagsterInstance, key: dg.AssetKey) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition=PARTITION))


def test_every_layer_has_a_check_and_the_sensor_runs_by_default() -> None:
    keys = {k.asset_key.to_user_string() for c in FRESHNESS_CHECKS for k in c.check_keys}
    for layer in ("raw/", "core/", "analytics/", "events/"):
        assert any(k.startswith(layer) for k in keys), layer
    assert freshness_checks_sensor.default_status == dg.DefaultSensorStatus.RUNNING


def test_every_partitioned_asset_of_the_code_location_has_a_freshness_check() -> None:
    """A new chain-day asset that nobody added here would fall behind unseen."""
    from pipelines.definitions import defs

    graph = defs.get_repository_def().asset_graph
    partitioned = {
        key for key in graph.materializable_asset_keys if graph.get(key).partitions_def is not None
    }
    checked = {k.asset_key for c in FRESHNESS_CHECKS for k in c.check_keys}
    assert partitioned, "no partitioned asset found"
    missing = sorted(k.to_user_string() for k in partitioned - checked)
    assert not missing, f"partitioned assets without a freshness check: {missing}"


def test_a_layer_that_falls_behind_fails_its_check() -> None:
    start = dt.datetime(2026, 11, 2, 12, tzinfo=dt.UTC)
    with dg.instance_for_test() as instance:
        with freeze_time(start):
            _materialise(instance, RAW)
            _materialise(instance, SNAPSHOTS)
        with freeze_time(start + OPEN_DAY_BOUND / 2):
            fresh = _evaluate(instance)
        assert fresh[("raw/blocks", "freshness_check")] is True
        assert fresh[("analytics/portfolio_snapshots", "freshness_check")] is True

        # raw stopped: its check fails past the open-day bound; analytics are still fresh
        with freeze_time(start + OPEN_DAY_BOUND + dt.timedelta(minutes=1)):
            late = _evaluate(instance)
        assert late[("raw/blocks", "freshness_check")] is False
        assert late[("analytics/portfolio_snapshots", "freshness_check")] is True

        # no closed day followed for more than a day: analytics fail too
        with freeze_time(start + CLOSED_DAY_BOUND + dt.timedelta(minutes=1)):
            stale = _evaluate(instance)
        assert stale[("analytics/portfolio_snapshots", "freshness_check")] is False
