"""Pure transforms of analytics/portfolio_snapshots and analytics/risk_metrics."""

import datetime as dt
from decimal import Decimal

import empyrical
import numpy as np
import pandera.errors
import polars as pl
import pytest

from assets.analytics.portfolio_snapshots import PortfolioSnapshotsModel, portfolio_snapshots_frame
from assets.analytics.risk_metrics import RiskMetricsModel, asset_returns, risk_metrics_frame
from assets.core.balances import NATIVE_TOKEN, BalancesModel
from chainlake import risk
from chainlake.schema import conform, polars_schema

W1, W2, W3 = ("0x" + c * 40 for c in "123")
USDC = "0x" + "aa" * 20
XYZ = "0x" + "bb" * 20
D0, D1, D2 = dt.date(2026, 3, 9), dt.date(2026, 3, 10), dt.date(2026, 3, 11)
ETH = 10**18
MEMBERS = pl.DataFrame({"portfolio_id": ["p1", "p1", "p2"], "address": [W1, W2, W3]})


def _balances(rows: list[tuple[dt.date, str, str, str, int, int]]) -> pl.DataFrame:
    data = [
        {
            "chain_id": 1, "date": d, "address": a, "token_address": t, "token_symbol": s,
            "decimals": dec, "balance": Decimal(b), "net_change": Decimal(0), "block_number": 1,
            "account_type": "eoa", "source": "carried",
        }
        for d, a, t, s, b, dec in [(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]
    ]  # fmt: skip
    return conform(pl.DataFrame(data, schema=polars_schema(BalancesModel)), BalancesModel)


def _prices(rows: list[tuple[dt.date, str, str, str]]) -> pl.DataFrame:
    return pl.DataFrame(
        [(d, t, s, Decimal(p)) for d, t, s, p in rows],
        schema={"date": pl.Date, "token_address": pl.String, "token_symbol": pl.String,
                "price": pl.Decimal(38, 18)},
        orient="row",
    )  # fmt: skip


BALANCES = _balances(
    [
        (D1, W1, NATIVE_TOKEN, "ETH", 10 * ETH, 18),
        (D1, W2, USDC, "USDC", 1_000_000_000, 6),
        (D1, W3, NATIVE_TOKEN, "ETH", 0, 18),
        (D2, W1, NATIVE_TOKEN, "ETH", 15 * ETH, 18),  # a 5 ETH deposit: a flow, not a return
        (D2, W2, USDC, "USDC", 1_000_000_000, 6),
        (D2, W2, XYZ, "XYZ", 7, 0),  # no price feed
        (D2, W3, NATIVE_TOKEN, "ETH", 2 * ETH + 1, 18),
    ]
)
PRICES = _prices(
    [
        (D1, NATIVE_TOKEN, "ETH", "2000.5"),
        (D1, USDC, "USDC", "1"),
        (D2, NATIVE_TOKEN, "ETH", "2200.25"),
        (D2, USDC, "USDC", "0.999"),
    ]
)


def test_snapshot_value_return_and_allocation() -> None:
    # p1's history before D1: a first day without a return, then +2 % on D0 (its state)
    history = pl.DataFrame(
        {"portfolio_id": ["p1", "p1"], "date": [D0 - dt.timedelta(days=1), D0],
         "daily_return": [None, 0.02]},
        schema={"portfolio_id": pl.String, "date": pl.Date, "daily_return": pl.Float64},
    )  # fmt: skip
    state = risk.inception_risk(history, as_of=[D0])
    out = portfolio_snapshots_frame(
        BALANCES, PRICES, MEMBERS, days=[D1, D2], chain_id=1, state=state
    )
    PortfolioSnapshotsModel.validate(out)
    rows = {(r["portfolio_id"], r["date"]): r for r in out.iter_rows(named=True)}
    p1 = rows[("p1", D2)]
    assert p1["total_value"] == Decimal("15") * Decimal("2200.25") + Decimal("999")
    want = (10 * 2200.25 + 1000 * 0.999) / (10 * 2000.5 + 1000) - 1
    assert p1["daily_return"] == pytest.approx(want, rel=1e-12)
    alloc = {e["key"]: e["value"] for e in p1["asset_allocation"]}
    assert alloc.keys() == {"ETH", "USDC"}
    assert alloc["ETH"] == pytest.approx(15 * 2200.25 / float(p1["total_value"]), rel=1e-12)
    assert p1["unpriced_tokens"] == ["XYZ"]
    # Since inception: the history's 2 % then D1 (no previous close in the inputs: null) and D2.
    assert p1["total_return"] == pytest.approx(1.02 * (1 + want) - 1, rel=1e-12)
    assert p1["max_drawdown"] == 0.0
    assert (p1["returns_count"], p1["return_shift"]) == (2, 0.02)
    assert p1["wealth"] == pytest.approx(1.02 * (1 + want), rel=1e-12)
    # p2 had nothing priced on D1: no return on D2, value exact to the wei.
    p2 = rows[("p2", D2)]
    assert p2["daily_return"] is None
    exact = Decimal("2.000000000000000001") * Decimal("2200.25")  # 4400.50000000000000220025
    assert p2["total_value"] == exact.quantize(Decimal("1e-18"))
    assert rows[("p2", D1)]["asset_allocation"] == []
    assert rows[("p2", D1)]["total_return"] == 0.0


def test_one_day_at_a_time_equals_a_range() -> None:
    together = portfolio_snapshots_frame(BALANCES, PRICES, MEMBERS, days=[D1, D2], chain_id=1)
    first = portfolio_snapshots_frame(BALANCES, PRICES, MEMBERS, days=[D1], chain_id=1)
    second = portfolio_snapshots_frame(
        BALANCES, PRICES, MEMBERS, days=[D2], chain_id=1, state=first
    )
    assert pl.concat([first, second]).sort("portfolio_id", "date").equals(together)


def test_allocation_rule_catches_a_broken_frame() -> None:
    out = portfolio_snapshots_frame(BALANCES, PRICES, MEMBERS, days=[D2], chain_id=1)
    broken = out.with_columns(
        pl.col("asset_allocation").list.eval(
            pl.struct(pl.element().struct.field("key"),
                      (pl.element().struct.field("value") * 0.9).alias("value"))
        )
    )  # fmt: skip
    with pytest.raises(pandera.errors.SchemaError, match="allocation_sums_to_one"):
        PortfolioSnapshotsModel.validate(broken)


def _history(days: int, seed: int = 4) -> tuple[pl.DataFrame, pl.DataFrame, list[dt.date]]:
    rng = np.random.default_rng(seed)
    start = dt.date(2026, 1, 1)
    dates = [start + dt.timedelta(days=i) for i in range(days)]
    eth = 2000 * np.cumprod(1 + rng.normal(0, 0.03, days))
    btc = 40000 * np.cumprod(1 + 0.5 * np.diff(np.log(eth), prepend=np.log(eth[0])) +
                             rng.normal(0, 0.02, days))  # fmt: skip
    prices = pl.DataFrame(
        {"date": dates * 3, "token_symbol": ["ETH"] * days + ["BTC"] * days + ["USDC"] * days,
         "price": [*eth, *btc, *([1.0] * days)]}
    ).with_columns(pl.col("price").cast(pl.Decimal(38, 18)))  # fmt: skip
    alloc = [{"key": "BTC", "value": 0.5}, {"key": "ETH", "value": 0.3},
             {"key": "USDC", "value": 0.2}]  # fmt: skip
    snaps = pl.DataFrame(
        {
            "portfolio_id": ["a"] * days + ["b"] * days,
            "date": dates * 2,
            "daily_return": [
                None,
                *rng.normal(0.001, 0.02, days - 1),
                None,
                *rng.normal(-0.002, 0.04, days - 1),
            ],
            "asset_allocation": [alloc] * days + [[{"key": "ETH", "value": 1.0}]] * days,
        }
    )
    return snaps, prices, dates


def test_risk_metrics_windows_agree_with_empyrical_and_hold_their_rules() -> None:
    snaps, prices, dates = _history(120)
    days = dates[-5:]
    out = risk_metrics_frame(snaps, prices, days=days, chain_id=1)
    RiskMetricsModel.validate(out)
    assert out.height == 2 * 5 * 2
    row = out.filter(
        (pl.col("portfolio_id") == "a") & (pl.col("window_days") == 30)
        & (pl.col("date") == days[-1])
    ).row(0, named=True)  # fmt: skip
    r = snaps.filter(pl.col("portfolio_id") == "a")["daily_return"].to_numpy()[-30:]
    assert row["observations"] == 30
    assert row["var_95"] == pytest.approx(empyrical.value_at_risk(r), rel=1e-9)
    assert row["cvar_95"] == pytest.approx(empyrical.conditional_value_at_risk(r), rel=1e-9)
    assert row["sortino_ratio"] == pytest.approx(
        empyrical.sortino_ratio(r, annualization=365), rel=1e-9
    )
    assert row["max_drawdown"] == pytest.approx(empyrical.max_drawdown(r), rel=1e-9)
    # Correlation: ETH and BTC only (USDC does not move); portfolio b holds one token.
    moves = asset_returns(prices).filter(pl.col("date") > days[-1] - dt.timedelta(days=30))
    wide = moves.pivot(on="asset", index="date", values="asset_return")
    want = np.corrcoef(wide["ETH"].to_numpy(), wide["BTC"].to_numpy())[0, 1]
    assert row["correlation_score"] == pytest.approx(want, rel=1e-9)
    b = out.filter(pl.col("portfolio_id") == "b")
    assert b["correlation_score"].null_count() == b.height


def test_cvar_rule_catches_a_swapped_pair() -> None:
    snaps, prices, dates = _history(40)
    out = risk_metrics_frame(snaps, prices, days=dates[-1:], chain_id=1)
    swapped = out.with_columns(var_95=pl.col("cvar_95"), cvar_95=pl.col("var_95"))
    with pytest.raises(pandera.errors.SchemaError, match="cvar_at_least_as_bad_as_var"):
        RiskMetricsModel.validate(swapped)


def test_risk_figures_need_the_minimum_of_returns_and_the_90_day_row_must_add_some() -> None:
    snaps, prices, dates = _history(10)
    out = risk_metrics_frame(snaps, prices, days=dates[-1:], chain_id=1)
    RiskMetricsModel.validate(out)
    # 9 returns: below the default 20 of 30 days. The count is kept, every figure is null;
    # the 90-day window holds the same 9 returns, so it has no row of its own.
    assert out["window_days"].to_list() == [30, 30]
    assert out["observations"].to_list() == [9, 9]
    figures = [c for c in out.columns if c not in ("portfolio_id", "date", "chain_id",
                                                   "window_days", "observations")]  # fmt: skip
    assert all(out[c].null_count() == out.height for c in figures), out
    # With a minimum of 5 (portfolios.yaml `risk.min_observations: {30: 5}`), the same rows
    # have figures.
    lenient = risk_metrics_frame(
        snaps, prices, days=dates[-1:], chain_id=1, min_observations={30: 5}
    )
    assert lenient["sharpe_ratio"].null_count() == 0
    assert lenient["var_95"].to_list() != [None, None]
    # 40 days: the 30-day row has figures, the 90-day row covers 39 returns (more than 30),
    # so it is written, with null figures below its own minimum of 60.
    snaps, prices, dates = _history(40)
    out = risk_metrics_frame(snaps, prices, days=dates[-1:], chain_id=1)
    by_window = {r["window_days"]: r for r in out.filter(pl.col("portfolio_id") == "a").to_dicts()}
    assert (by_window[30]["observations"], by_window[90]["observations"]) == (30, 39)
    assert by_window[30]["sharpe_ratio"] is not None and by_window[90]["sharpe_ratio"] is None


def test_coverage_rule_catches_a_90_day_row_that_repeats_the_30_day_row() -> None:
    snaps, prices, dates = _history(10)
    out = risk_metrics_frame(snaps, prices, days=dates[-1:], chain_id=1)
    repeated = pl.concat([out, out.with_columns(pl.lit(90, pl.Int32).alias("window_days"))])
    with pytest.raises(pandera.errors.SchemaError, match="windows_differ_in_coverage"):
        RiskMetricsModel.validate(repeated)


def test_risk_minimum_is_validated_in_portfolios_yaml() -> None:
    from chainlake.config import ConfigError
    from chainlake.portfolios import parse_portfolios

    book = parse_portfolios({"risk": {"min_observations": {30: 10}}}, {})
    assert book.risk.min_observations == {30: 10, 90: 60}
    assert parse_portfolios({}, {}).risk.min_observations == {30: 20, 90: 60}
    for bad, message in [
        ({30: 31}, "30-day window: 31 is not between 1 and 30"),
        ({45: 3}, "window 45 is not one of the risk windows"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_portfolios({"risk": {"min_observations": bad}}, {}, path="p.yaml")
