"""The analytics tables in ClickHouse, through the same client code in both modes.

- embedded: the chdb engine on a temporary directory (always runs);
- server: a ClickHouse server at `CLICKHOUSE_TEST_URL` (http://user:password@host:8123/db),
  skipped when it is unset: no registry ships a modern ClickHouse server binary for this
  machine (Debian's is 18.16, too old for clickhouse-connect), so the server path runs where
  one can (docker-compose, CI).
"""

import dataclasses
import datetime as dt
import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from assets.analytics.portfolio_snapshots import TABLE as SNAPSHOTS
from assets.analytics.risk_metrics import TABLE as RISK
from resources.clickhouse import (
    ClickHouseResource,
    ClickHouseSchemaMismatch,
    ClickHouseServer,
    ClickHouseTable,
    EmbeddedClickHouse,
)

pytestmark = pytest.mark.integration

SERVER_URL = os.environ.get("CLICKHOUSE_TEST_URL", "")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(
    params=[
        "embedded",
        pytest.param(
            "server",
            marks=pytest.mark.skipif(
                not SERVER_URL,
                reason="CLICKHOUSE_TEST_URL is not set: no ClickHouse server can be installed "
                "on this machine (no registry ships a modern server binary); the server path "
                "runs where one is available, e.g. `docker compose up clickhouse`",
            ),
        ),
    ]
)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ClickHouseResource:
    if request.param == "embedded":
        return ClickHouseResource(engine=EmbeddedClickHouse(path=str(tmp_path / "clickhouse")))
    return ClickHouseResource(engine=ClickHouseServer(url=SERVER_URL))


@pytest.fixture
def tables(store: ClickHouseResource) -> Iterator[tuple[ClickHouseTable, ClickHouseTable]]:
    # Unique names, so a shared server is never touched outside this test.
    suffix = uuid.uuid4().hex[:8]
    snaps = dataclasses.replace(SNAPSHOTS, name=f"test_snapshots_{suffix}")
    risk = dataclasses.replace(RISK, name=f"test_risk_{suffix}")
    yield snaps, risk
    with store.session() as ch:
        for t in (snaps, risk):
            ch.command(f"DROP TABLE IF EXISTS `{t.name}`")


def _snapshots(
    day: dt.date, value: str, portfolios: tuple[str, ...] = ("p1", "p2")
) -> pl.DataFrame:
    n = len(portfolios)
    return pl.DataFrame(
        {
            "date": [day] * n,
            "portfolio_id": list(portfolios),
            "chain_id": [31337] * n,
            "total_value": [Decimal(value)] * n,
            "total_return": [0.01] * n,
            "daily_return": [None] * n,
            "sharpe_ratio": [1.5] * n,
            "max_drawdown": [-0.1] * n,
            "volatility": [0.5] * n,
            "asset_allocation": [[{"key": "ETH", "value": 0.75}, {"key": "USDC", "value": 0.25}]]
            * n,
            "unpriced_tokens": [["XYZ"]] * n,
            "returns_count": [0] * n,
            "return_shift": [None] * n,
            "return_sum": [0.0] * n,
            "return_sum_squares": [0.0] * n,
            "wealth": [1.01] * n,
            "peak_wealth": [1.01] * n,
            "max_return": [None] * n,
            "min_return": [None] * n,
            "balances_version": [7] * n,
            "prices_version": [5] * n,
            "token_transfers_version": [3] * n,
            "native_transfers_version": [3] * n,
            "first_block": [100] * n,
            "last_block": [199] * n,
            "linked_lineage": [None] * n,
        },
        schema=SNAPSHOTS.polars_schema(),
    )


def test_replacing_a_day_leaves_one_row_per_key(store: ClickHouseResource, tables) -> None:  # type: ignore[no-untyped-def]
    snaps, _ = tables
    d1, d2 = dt.date(2026, 1, 31), dt.date(2026, 2, 1)  # two monthly partitions
    big = "12345678901234567890.123456789012345678"  # beyond float precision
    with store.session() as ch:
        ch.ensure(snaps)
        ch.replace_days(snaps, _snapshots(d1, "1.5"), chain_id=31337, days=[d1])
        ch.replace_days(snaps, _snapshots(d2, "2.5"), chain_id=31337, days=[d2])
        # Re-materialise d1 twice, the second time with one portfolio fewer.
        ch.replace_days(snaps, _snapshots(d1, big), chain_id=31337, days=[d1])
        ch.replace_days(snaps, _snapshots(d1, big, ("p1",)), chain_id=31337, days=[d1])
        # Test tables are named by the test itself (a uuid suffix).
        out = ch.query(f"SELECT * FROM `{snaps.name}` ORDER BY date, portfolio_id")  # noqa: S608
        dupes = ch.query(
            f"SELECT portfolio_id, date, count() AS n FROM `{snaps.name}` "  # noqa: S608
            "GROUP BY portfolio_id, date HAVING n > 1"
        )
    assert dupes.height == 0
    assert out.height == 3
    assert out["portfolio_id"].to_list() == ["p1", "p1", "p2"]
    assert out["total_value"][0] == Decimal(big)  # exact: read as Arrow, not floats
    assert out["total_value"].dtype == pl.Decimal(38, 18)
    assert out["asset_allocation"][0].to_list() == [
        {"key": "ETH", "value": 0.75},
        {"key": "USDC", "value": 0.25},
    ]
    assert out["unpriced_tokens"][0].to_list() == ["XYZ"]
    assert out.equals(out.cast(dict(snaps.polars_schema())))  # the model's types come back


def test_rows_outside_the_replaced_days_are_refused(store: ClickHouseResource, tables) -> None:  # type: ignore[no-untyped-def]
    snaps, _ = tables
    with store.session() as ch:
        ch.ensure(snaps)
        with pytest.raises(ValueError, match="fall outside"):
            ch.replace_days(
                snaps, _snapshots(dt.date(2026, 1, 2), "1"), chain_id=31337,
                days=[dt.date(2026, 1, 3)],
            )  # fmt: skip


def test_ddl_is_derived_from_the_model_and_checked(store: ClickHouseResource, tables) -> None:  # type: ignore[no-untyped-def]
    snaps, risk = tables
    with store.session() as ch:
        ch.ensure(snaps)
        ch.ensure(risk)
        ch.ensure(risk)  # idempotent
        engine = ch.query(
            "SELECT engine, partition_key, sorting_key FROM system.tables "
            "WHERE database = currentDatabase() AND name = {t:String}",
            {"t": snaps.name},
        ).row(0, named=True)
        assert engine == {
            "engine": "MergeTree",
            "partition_key": "toYYYYMM(date)",
            "sorting_key": "portfolio_id, date",
        }
        comment = ch.query(
            "SELECT comment FROM system.columns WHERE database = currentDatabase() "
            "AND table = {t:String} AND name = 'cvar_95'",
            {"t": risk.name},
        ).item()
        assert "<= var_95" in comment
        # a column the model requires (not nullable) missing: refused, naming it
        ch.command(f"ALTER TABLE `{risk.name}` DROP COLUMN `observations`")
        with pytest.raises(ClickHouseSchemaMismatch, match="observations"):
            ch.ensure(risk)
        # a column of another type: refused too, never altered in place
        ch.command(f"ALTER TABLE `{snaps.name}` DROP COLUMN `linked_lineage`")
        ch.command(f"ALTER TABLE `{snaps.name}` ADD COLUMN `linked_lineage` String DEFAULT ''")
        with pytest.raises(ClickHouseSchemaMismatch, match="linked_lineage"):
            ch.ensure(snaps)


def test_a_nullable_column_the_model_added_is_added_in_place(
    store: ClickHouseResource, tables
) -> None:  # type: ignore[no-untyped-def]
    """A table written before a nullable column joined the model (linked_lineage, say) gets it
    with `ADD COLUMN`: its rows stay, null in the new column."""
    snaps, _ = tables
    day = dt.date(2026, 1, 2)
    with store.session() as ch:
        ch.ensure(snaps)
        ch.replace_days(snaps, _snapshots(day, "5"), chain_id=31337, days=[day])
        ch.command(f"ALTER TABLE `{snaps.name}` DROP COLUMN `linked_lineage`")
        ch.ensure(snaps)
        columns = list(ch.table_types(snaps.name))
        out = ch.query(f"SELECT * FROM `{snaps.name}`")  # noqa: S608
    assert columns == list(snaps.expected_types())  # in the model's place
    assert out.height == 2 and out["linked_lineage"].to_list() == [None, None]
    assert out["total_value"].to_list() == [Decimal(5), Decimal(5)]


HOLDER = textwrap.dedent(
    """
    import time
    from resources.clickhouse import ClickHouseResource, EmbeddedClickHouse
    with ClickHouseResource(engine=EmbeddedClickHouse(path={path!r})).session() as ch:
        ch.query("SELECT count() FROM portfolio_snapshots")
        print("holding", flush=True)
        time.sleep(3)
    """
)


def test_embedded_session_waits_for_another_process(tmp_path: Path) -> None:
    """A reader in another process holds the embedded directory; a writer waits its turn
    instead of failing, then proceeds."""
    path = tmp_path / "clickhouse"
    store = ClickHouseResource(engine=EmbeddedClickHouse(path=str(path), lock_timeout_seconds=60))
    with store.session() as ch:
        ch.ensure(SNAPSHOTS)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            HOLDER.format(path=str(path)),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "holding"
        started = time.monotonic()
        with store.session() as ch:
            waited = time.monotonic() - started
            day = dt.date(2026, 1, 5)
            ch.replace_days(SNAPSHOTS, _snapshots(day, "1"), chain_id=31337, days=[day])
            assert ch.query("SELECT count() AS n FROM portfolio_snapshots").item() == 2
        assert waited > 1.0  # it did wait for the holder to let go
    finally:
        holder.wait(30)
    assert holder.returncode == 0


def test_embedded_session_times_out_with_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "clickhouse"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nfrom resources.clickhouse import ClickHouseResource, EmbeddedClickHouse\n"
            f"with ClickHouseResource(engine=EmbeddedClickHouse(path={str(path)!r})).session():\n"
            "    print('holding', flush=True)\n    time.sleep(8)\n",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        store = ClickHouseResource(
            engine=EmbeddedClickHouse(path=str(path), lock_timeout_seconds=1)
        )
        with pytest.raises(TimeoutError, match="stayed locked by another process"):
            with store.session():
                pass
    finally:
        holder.kill()
        holder.wait()
