"""The daily schedule's day choice, the confirmed-head rule, and the chain tag of a run."""

from __future__ import annotations

import datetime as dt

import pytest

from chainlake.run_coordinator import chain_of_run_tags, chain_tags, dates_of_run_tags
from chainlake.scheduling import HeadState, candidate_days

D = dt.date


def test_candidate_days_are_the_days_before_the_tick_oldest_first() -> None:
    got = candidate_days(D(2026, 11, 21), start_date=D(2026, 1, 1), lookback_days=3, done=set())
    assert got == [D(2026, 11, 18), D(2026, 11, 19), D(2026, 11, 20)]


def test_candidate_days_skip_done_days_and_days_before_the_chain_starts() -> None:
    got = candidate_days(
        D(2026, 11, 21), start_date=D(2026, 11, 19), lookback_days=3, done={D(2026, 11, 20)}
    )
    assert got == [D(2026, 11, 19)]


def test_a_day_closes_when_a_confirmed_block_reaches_the_next_day() -> None:
    day = D(2026, 11, 20)
    last_second = HeadState(10, dt.datetime(2026, 11, 20, 23, 59, 59, tzinfo=dt.UTC))
    midnight = HeadState(11, dt.datetime(2026, 11, 21, 0, 0, 0, tzinfo=dt.UTC))
    assert not last_second.closes(day)
    assert midnight.closes(day)


@pytest.mark.parametrize(
    ("tags", "chain"),
    [
        ({"chainlake/chain": "devnet"}, "devnet"),
        ({"dagster/partition/chain": "ethereum-mainnet"}, "ethereum-mainnet"),
        ({"dagster/partition": "devnet|2026-11-01"}, "devnet"),
        (
            {
                "dagster/asset_partition_range_start": "avalanche-c|2026-10-01",
                "dagster/asset_partition_range_end": "avalanche-c|2026-10-30",
            },
            "avalanche-c",
        ),
        # a range across chains, or no partition at all: no chain, no per-chain limit
        (
            {
                "dagster/asset_partition_range_start": "a|2026-10-01",
                "dagster/asset_partition_range_end": "b|2026-10-30",
            },
            None,
        ),
        ({"dagster/partition": "2026-11-01"}, None),
        ({}, None),
    ],
)
def test_chain_of_run_tags(tags: dict[str, str], chain: str | None) -> None:
    assert chain_of_run_tags(tags) == chain


TODAY = D(2026, 11, 21)
RANGE = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")


@pytest.mark.parametrize(
    ("tags", "want"),
    [
        # today and yesterday are the open edge: one writer per chain
        ({"dagster/partition": "devnet|2026-11-21"}, {"chainlake/chain": "devnet"}),
        ({"dagster/partition": "devnet|2026-11-20"}, {"chainlake/chain": "devnet"}),
        # older days are history: their own per-chain limit, several runs at once
        ({"dagster/partition": "devnet|2026-11-19"}, {"chainlake/chain-history": "devnet"}),
        (
            {"dagster/partition/chain": "base", "dagster/partition/date": "2026-10-01"},
            {"chainlake/chain-history": "base"},
        ),
        (
            {RANGE[0]: "base|2026-10-01", RANGE[1]: "base|2026-10-10"},
            {"chainlake/chain-history": "base"},
        ),
        # a range that reaches the edge is the edge's
        ({RANGE[0]: "base|2026-11-01", RANGE[1]: "base|2026-11-20"}, {"chainlake/chain": "base"}),
        # a tag set by the launcher (schedules, maintenance) stays; no chain, no tag
        ({"chainlake/chain": "devnet", "dagster/partition": "devnet|2026-01-01"}, {}),
        ({RANGE[0]: "a|2026-10-01", RANGE[1]: "b|2026-10-30"}, {}),
        ({}, {}),
        # a chain without readable dates stays on the single-writer side
        ({"dagster/partition/chain": "devnet"}, {"chainlake/chain": "devnet"}),
    ],
)
def test_chain_tags_split_the_open_edge_from_history(
    tags: dict[str, str], want: dict[str, str]
) -> None:
    assert chain_tags(tags, today=lambda: TODAY) == want


def test_dates_of_run_tags() -> None:
    assert dates_of_run_tags({"dagster/partition": "x|2026-11-02"}) == (D(2026, 11, 2),) * 2
    assert dates_of_run_tags({RANGE[0]: "x|2026-11-02", RANGE[1]: "x|2026-11-09"}) == (
        D(2026, 11, 2),
        D(2026, 11, 9),
    )
    assert dates_of_run_tags({"dagster/partition": "2026-11-02|x|y"}) is None
