"""`chainlake backfill`: the chain-day keys it asks for and the asset backfill it stores."""

from __future__ import annotations

import datetime as dt

import click
import dagster as dg
import pytest

from cli.commands.backfill import DEFAULT_SELECTION, chain_day_keys, submit_asset_backfill

D = dt.date


def test_keys_chain_by_chain_oldest_first() -> None:
    keys = chain_day_keys(["a", "b"], D(2026, 11, 1), D(2026, 11, 3))
    assert keys == [
        "a|2026-11-01",
        "a|2026-11-02",
        "a|2026-11-03",
        "b|2026-11-01",
        "b|2026-11-02",
        "b|2026-11-03",
    ]


def test_a_reversed_range_is_refused() -> None:
    with pytest.raises(click.BadParameter, match="before"):
        chain_day_keys(["a"], D(2026, 11, 3), D(2026, 11, 1))


def test_submits_an_asset_backfill_of_raw_and_core(monkeypatch: pytest.MonkeyPatch) -> None:
    from dagster._core.execution.backfill import BulkActionStatus

    from chainlake.partitions import CHAINS

    chain = sorted(CHAINS)[0]
    start = CHAINS[chain].start_date
    keys = chain_day_keys([chain], start, start + dt.timedelta(days=2))
    with dg.instance_for_test() as instance:
        monkeypatch.setattr(dg.DagsterInstance, "get", staticmethod(lambda: instance))
        backfill_id = submit_asset_backfill(DEFAULT_SELECTION, keys, title="t")
        backfill = instance.get_backfill(backfill_id)
        assert backfill is not None and backfill.status == BulkActionStatus.REQUESTED
        # an asset backfill (planned by the daemon from the backfill policies), not a job's
        assert backfill.is_asset_backfill
        groups = {k.path[0] for k in backfill.asset_selection or []}
        assert groups == {"raw", "core"}
        subset = backfill.asset_backfill_data.target_subset
        for key in backfill.asset_selection or []:
            assert sorted(subset.get_partitions_subset(key).get_partition_keys()) == keys
