"""events/chain_events retracts only what the lake shows is off the chain: with no raw/blocks
table at all (a new DELTA_ROOT, say) it retracts nothing; with the table and a day that lost
its blocks, the day's events go."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from tests.integration.triggers_helpers import database, transfer

pytestmark = pytest.mark.integration


def _run(delta_root: Path, url: str, day: dt.date) -> dg.ExecuteInProcessResult:
    from assets.events.chain_events import chain_events
    from chainlake.lake import DeltaStore
    from resources.postgres import PostgresResource

    return dg.materialize(
        [chain_events],
        partition_key=f"devnet|{day.isoformat()}",
        resources={
            "delta": DeltaStore(root=str(delta_root)),
            "postgres": PostgresResource(url=url),
        },
    )


def _retracted(url: str) -> list[int]:
    from chainlake.events import db

    with db.connection(url) as conn:
        rows = conn.execute(
            "SELECT block_number FROM events WHERE retracted_at IS NOT NULL ORDER BY 1"
        ).fetchall()
    return [r["block_number"] for r in rows]


def test_no_blocks_table_retracts_nothing_an_empty_day_retracts_its_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chainlake.config import load_chains
    from chainlake.events import db
    from chainlake.events import store as events
    from chainlake.lake import DeltaStore

    monkeypatch.setenv("CHAINS_CONFIG", "config/chains.yaml")
    monkeypatch.setenv("PORTFOLIOS_CONFIG", "config/portfolios.yaml")
    day = dt.date(2026, 11, 2)  # a partition of config/chains.yaml's devnet
    noon = int(dt.datetime.combine(day, dt.time(12), dt.UTC).timestamp())
    stored = [{**transfer(n, 10**18), "timestamp": noon + n} for n in (5, 6)]
    with database() as url:
        with db.connection(url) as conn:
            events.insert_events(conn, stored)

        assert _run(tmp_path / "empty-lake", url, day).success
        assert _retracted(url) == [], "no raw/blocks table: nothing is known, nothing retracted"

        # the lake has raw/blocks, but not for this day any more (a reorg to a shorter chain)
        chain = load_chains()["devnet"]
        lake = DeltaStore(root=str(tmp_path / "lake"))
        other_day = pl.DataFrame(
            {"date": [day - dt.timedelta(days=1)], "block_number": [1], "block_hash": ["0x01"]}
        )
        lake.replace_day(chain, "blocks", day - dt.timedelta(days=1), other_day)
        assert _run(tmp_path / "lake", url, day).success
        assert _retracted(url) == [5, 6]
