"""Balances, prices, snapshots and risk on a real anvil chain filled by the devnet generator,
checked against what the node itself reports; re-materialising a day leaves one row per key
in every store (Delta, ClickHouse, DuckDB)."""

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from chainlake.rpc import RpcClient
from tools.devnet.anvil import Anvil
from tools.devnet.configs import write_chains_yaml, write_portfolios_yaml
from tools.devnet.generator import DevnetManifest, generate

pytestmark = pytest.mark.integration

START = dt.date(2026, 11, 3)
DAYS = 4
DAYS_LIST = [START + dt.timedelta(days=i) for i in range(DAYS)]
MIN_RETURNS = 2


@dataclass(frozen=True)
class Stage:
    url: str
    manifest: DevnetManifest
    root: Path
    last: dg.ExecuteInProcessResult  # the last day's run


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stage]:
    root = tmp_path_factory.mktemp("analytics")
    with Anvil(genesis=START) as node:
        manifest = generate(
            node.rpc_url, start=START, days=DAYS, blocks_per_day=16, txs_per_block=8, seed=5
        )
        write_chains_yaml(root / "chains.yaml", manifest, rpc_urls=[node.rpc_url])
        book = write_portfolios_yaml(root / "portfolios.yaml", manifest)
        # A 4-day chain has 3 returns at most: figures from 2 returns on (the default minimum
        # of 20 would leave them all null; test_analytics covers the rule itself).
        with book.open("a") as f:
            f.write(f"risk:\n  min_observations: {{30: {MIN_RETURNS}, 90: {MIN_RETURNS}}}\n")
        mp = pytest.MonkeyPatch()
        mp.setenv("CHAINS_CONFIG", str(root / "chains.yaml"))
        mp.setenv("PORTFOLIOS_CONFIG", str(root / "portfolios.yaml"))
        try:
            results = [_run_day(root, day) for day in DAYS_LIST]
            yield Stage(node.rpc_url, manifest, root, results[-1])
        finally:
            mp.undo()


def _resources(root: Path) -> dict[str, object]:
    from chainlake.lake import DeltaStore
    from resources.clickhouse import ClickHouseResource, EmbeddedClickHouse
    from resources.duckdb import ServingDuckDB
    from resources.rpc import RpcResource

    return {
        "delta": DeltaStore(root=str(root / "delta")),
        "rpc": RpcResource(),
        "clickhouse": ClickHouseResource(engine=EmbeddedClickHouse(path=str(root / "clickhouse"))),
        "duckdb": ServingDuckDB(database=str(root / "chainlake.duckdb")),
    }


def _run_day(root: Path, day: dt.date, *, raw: bool = True) -> dg.ExecuteInProcessResult:
    from assets.analytics.portfolio_snapshots import portfolio_snapshots
    from assets.analytics.risk_metrics import risk_metrics
    from assets.core.balances import balances
    from assets.core.native_balance_movements import native_balance_movements
    from assets.core.native_transfers import native_transfers
    from assets.core.token_prices import token_prices
    from assets.core.token_transfers import token_transfers
    from assets.core.tokens import tokens
    from assets.raw.chain_tables import raw_chain_tables

    upstream = [raw_chain_tables, token_transfers] if raw else []
    core = [
        tokens,
        native_transfers,
        native_balance_movements,
        balances,
        token_prices,
        portfolio_snapshots,
        risk_metrics,
    ]
    result = dg.materialize(
        [*upstream, *core],
        partition_key=f"devnet|{day.isoformat()}",
        resources=_resources(root),
    )
    assert result.success
    failed = [
        (e.asset_key.to_user_string(), e.check_name, e.description)
        for e in result.get_asset_check_evaluations()
        if not e.passed
    ]
    assert failed == [], failed
    return result


def _delta(root: Path, table: str) -> pl.DataFrame:
    return pl.read_delta(str(root / "delta" / "devnet" / "local" / table))


def _clickhouse(root: Path, sql: str) -> pl.DataFrame:
    from resources.clickhouse import ClickHouseResource, EmbeddedClickHouse

    with ClickHouseResource(
        engine=EmbeddedClickHouse(path=str(root / "clickhouse"))
    ).session() as ch:
        return ch.query(sql)


def _last_block(root: Path, day: dt.date) -> int:
    blocks = _delta(root, "blocks").filter(pl.col("date") == day)
    return int(blocks["block_number"].max())  # type: ignore[arg-type]


def test_balances_match_the_node_every_day(stage: Stage) -> None:
    # Every day's blocking check compared every tracked wallet and token with the node (a
    # failure would have failed the fixture); here, an independent look at the last day.
    b = _delta(stage.root, "balances")
    assert set(b["date"].unique().to_list()) == set(DAYS_LIST)
    last = b.filter(pl.col("date") == DAYS_LIST[-1])
    block = hex(_last_block(stage.root, DAYS_LIST[-1]))
    wallets = {w.address for w in stage.manifest.tracked_wallets}
    native = last.filter(pl.col("token_symbol") == stage.manifest.native_symbol)
    assert set(native["address"]) == wallets
    with RpcClient([stage.url]) as c:
        node = c.batch([("eth_getBalance", [a, block]) for a in native["address"]])
    assert [int(v) for v in native["balance"]] == [int(v, 16) for v in node]
    assert (b["source"] == "chain").sum() > 0 and set(
        b.filter(pl.col("date") > DAYS_LIST[0])["source"]
    ) == {"carried"}
    # Money stays exact: no float column anywhere in the table.
    assert b.schema["balance"] == pl.Decimal(38, 0)


def test_prices_are_the_feeds_answers(stage: Stage) -> None:
    p = _delta(stage.root, "token_prices")
    feeds = 1 + sum(1 for t in stage.manifest.tokens if t.price_feed)
    assert p.group_by("date").len()["len"].to_list() == [feeds] * DAYS
    eth = p.filter(
        (pl.col("token_symbol") == stage.manifest.native_symbol) & (pl.col("date") == DAYS_LIST[-1])
    ).row(0, named=True)
    block = hex(_last_block(stage.root, DAYS_LIST[-1]))
    with RpcClient([stage.url]) as c:
        raw = c.call("eth_call", [{"to": eth["price_feed"], "data": "0xfeaf968c"}, block])
    answer = int(raw[2 + 64 : 2 + 128], 16)
    assert eth["answer"] == Decimal(answer)
    assert eth["price"] == Decimal(answer) / Decimal(10**8)


def test_snapshots_value_the_holdings_at_the_close(stage: Stage) -> None:
    snaps = _clickhouse(stage.root, "SELECT * FROM portfolio_snapshots ORDER BY portfolio_id, date")
    ids = {p.name for p in stage.manifest.portfolios}
    assert snaps.height == len(ids) * DAYS
    assert set(snaps["portfolio_id"]) == ids
    # Recompute one portfolio's last value from the Delta tables, exactly.
    b = _delta(stage.root, "balances").filter(pl.col("date") == DAYS_LIST[-1])
    p = _delta(stage.root, "token_prices").filter(pl.col("date") == DAYS_LIST[-1])
    portfolio = stage.manifest.portfolios[0]
    names = {w.name: w.address for w in stage.manifest.tracked_wallets}
    members = [names.get(w, w) for w in portfolio.wallets]
    held = b.filter(pl.col("address").is_in(members)).join(p, on="token_address", how="inner")
    want = sum(
        (Decimal(int(r["balance"])) / Decimal(10) ** r["decimals"] * r["price"]).quantize(
            Decimal("1e-18")
        )
        for r in held.iter_rows(named=True)
    )
    got = snaps.filter(pl.col("portfolio_id") == portfolio.name)["total_value"][-1]
    assert abs(got - want) <= Decimal("1e-15")  # per-token rounding at 18 places only
    assert snaps.filter(pl.col("date") == DAYS_LIST[0])["daily_return"].null_count() == len(ids)
    assert snaps.filter(pl.col("date") > DAYS_LIST[0])["daily_return"].null_count() == 0


def test_risk_rows_and_summary(stage: Stage) -> None:
    from assets.analytics.risk_metrics import portfolio_summary
    from resources.clickhouse import ClickHouseResource, EmbeddedClickHouse

    risk = _clickhouse(stage.root, "SELECT * FROM risk_metrics")
    n = len(stage.manifest.portfolios)
    # One row per portfolio and day: the 90-day window covers the same returns as the 30-day
    # one on a 4-day chain, so it has no row of its own.
    assert risk.height == n * DAYS
    assert set(risk["window_days"]) == {30}
    last = risk.filter(pl.col("date") == DAYS_LIST[-1])
    assert set(last["observations"]) == {DAYS - 1}
    assert last["var_95"].null_count() == 0 and last["volatility"].null_count() == 0
    assert (last["cvar_95"] <= last["var_95"]).all()
    # below the minimum of returns: the count, no figures
    early = risk.filter(pl.col("observations") < MIN_RETURNS)
    assert early.height == 2 * n and early["var_95"].null_count() == early.height
    with ClickHouseResource(
        engine=EmbeddedClickHouse(path=str(stage.root / "clickhouse"))
    ).session() as ch:
        summary = portfolio_summary(ch)
    assert summary.height == n and summary["date"].to_list() == [DAYS_LIST[-1]] * n


def test_rematerialising_a_day_keeps_one_row_per_key_everywhere(stage: Stage) -> None:
    from assets.serving.catalog import catalog, views

    day = DAYS_LIST[1]
    before = {t: _delta(stage.root, t).sort(pl.all()) for t in ("balances", "token_prices",
                                                                 "native_transfers")}  # fmt: skip
    snaps_before = _clickhouse(stage.root, "SELECT * FROM portfolio_snapshots ORDER BY ALL")
    _run_day(stage.root, day, raw=False)
    _run_day(stage.root, day, raw=False)
    for table, frame in before.items():
        assert _delta(stage.root, table).sort(pl.all()).equals(frame), table
    snaps_after = _clickhouse(stage.root, "SELECT * FROM portfolio_snapshots ORDER BY ALL")
    # The same figures; only the re-materialised day's lineage moved on to the new versions.
    from deltalake import DeltaTable

    from chainlake.lineage import LINEAGE_COLUMNS, VERSION_COLUMNS

    assert snaps_after.drop(LINEAGE_COLUMNS).equals(snaps_before.drop(LINEAGE_COLUMNS))
    moved = snaps_after.join(snaps_before, on=["portfolio_id", "date"], suffix="_before").filter(
        pl.col("balances_version") != pl.col("balances_version_before")
    )
    assert set(moved["date"]) == {day}
    # each the version its table had when the day was re-materialised: what was read
    for column, table in VERSION_COLUMNS.items():
        now = DeltaTable(str(stage.root / "delta" / "devnet" / "local" / table)).version()
        assert set(moved[column]) == {now}, column
    for table, key in (("portfolio_snapshots", "portfolio_id, date"),
                       ("risk_metrics", "portfolio_id, date, window_days")):  # fmt: skip
        dupes = _clickhouse(
            stage.root,
            f"SELECT {key}, count() AS n FROM {table} GROUP BY {key} HAVING n > 1",  # noqa: S608
        )
        assert dupes.height == 0, table
    resources = _resources(stage.root)
    for _ in range(2):
        assert dg.materialize([catalog, views], resources=resources).success
    from resources.duckdb import ServingDuckDB

    serving = ServingDuckDB(database=str(stage.root / "chainlake.duckdb"))
    with serving.reader(delta_root=str(stage.root / "delta")) as conn:
        dupes = conn.execute(
            "SELECT count(*) FROM (SELECT address, token_address, count(*) AS n "
            "FROM wallet_balances_view GROUP BY ALL HAVING n > 1)"
        ).fetchone()
        wallets = conn.execute("SELECT count(*) FROM wallets").fetchone()
        recent = conn.execute("SELECT count(*) FROM recent_transactions_view").fetchone()
    assert dupes == (0,)
    assert wallets == (len(stage.manifest.tracked_wallets),)
    assert recent is not None and recent[0] > 0


def test_the_ui_gets_each_portfolios_figures_as_numbers_and_charts(stage: Stage) -> None:
    """Per portfolio: the day's value, return and 30-day risk as numeric metadata (the UI plots
    each over materialisations), and SVG charts of the last days."""
    day = DAYS_LIST[-1]
    mats = {
        m.asset_key.to_user_string(): m.metadata
        for m in stage.last.asset_materializations_for_node("analytics__portfolio_snapshots")
        + stage.last.asset_materializations_for_node("analytics__risk_metrics")
    }
    snaps = _clickhouse(stage.root, "SELECT * FROM portfolio_snapshots").filter(
        pl.col("date") == day
    )
    risk = _clickhouse(stage.root, "SELECT * FROM risk_metrics").filter(
        (pl.col("date") == day) & (pl.col("window_days") == 30)
    )
    values = mats["analytics/portfolio_snapshots"]
    for row in snaps.iter_rows(named=True):
        pid = row["portfolio_id"]
        assert values[f"value_usd/{pid}"].value == pytest.approx(float(row["total_value"]))
        assert values[f"daily_return/{pid}"].value == pytest.approx(row["daily_return"])
    figures = mats["analytics/risk_metrics"]
    for row in risk.iter_rows(named=True):
        assert figures[f"var_95_30d/{row['portfolio_id']}"].value == pytest.approx(row["var_95"])
    for md, key in ((values, "value_chart"), (values, "return_chart"), (figures, "var_chart")):
        assert "data:image/svg+xml;base64," in md[key].value, key
        for pid in snaps["portfolio_id"].to_list()[:6]:
            assert f"`{pid}`" in md[key].value, (key, pid)
