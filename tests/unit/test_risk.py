"""chainlake.risk agrees with empyrical-reloaded on the same return series."""

from __future__ import annotations

import datetime as dt

import empyrical
import numpy as np
import pandas as pd
import polars as pl
import pytest

from chainlake import risk

REL = 1e-9


def _series(seed: int, n: int, *, drift: float = 0.0005, vol: float = 0.03) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # Fat tails, as crypto returns have: Student t with 3 degrees of freedom.
    return drift + vol * rng.standard_t(3, size=n) / np.sqrt(3.0)


def _expected(r: np.ndarray) -> dict[str, float | None]:
    """empyrical's figures, with its NaN/infinity for undefined ones as our null."""
    want = {
        "var_95": empyrical.value_at_risk(r, cutoff=0.05),
        "cvar_95": empyrical.conditional_value_at_risk(r, cutoff=0.05),
        "sharpe_ratio": empyrical.sharpe_ratio(r, annualization=365),
        "sortino_ratio": empyrical.sortino_ratio(r, annualization=365),
        "max_drawdown": empyrical.max_drawdown(r),
        "volatility": empyrical.annual_volatility(r, annualization=365),
    }
    return {k: (float(v) if np.isfinite(v) else None) for k, v in want.items()}


def _assert_close(got: float | None, want: float | None, label: object) -> None:
    if want is None:
        assert got is None, label
    else:
        assert got == pytest.approx(want, rel=REL, abs=0), label


@pytest.mark.parametrize("n", [2, 3, 20, 30, 90, 365, 1000])
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_agrees_with_empyrical(seed: int, n: int) -> None:
    r = _series(seed, n)
    got = risk.series_risk(r.tolist())
    assert got["observations"] == n
    for name, want in _expected(r).items():
        _assert_close(got[name], want, name)


def test_losing_series_and_conventions() -> None:
    r = _series(3, 90, drift=-0.01)
    got = risk.series_risk(r.tolist())
    for name, want in _expected(r).items():
        _assert_close(got[name], want, name)
    # Stated sign convention: losses are negative and CVaR is at least as bad as VaR.
    assert got["var_95"] < 0
    assert got["cvar_95"] <= got["var_95"]
    assert -1.0 <= got["max_drawdown"] <= 0.0
    assert got["sharpe_ratio"] < 0


def test_nulls_are_left_out() -> None:
    r = _series(5, 60)
    with_gaps: list[float | None] = [None, *r[:30].tolist(), None, *r[30:].tolist()]
    got = risk.series_risk(with_gaps)
    assert got["observations"] == 60
    for name, want in _expected(r).items():
        _assert_close(got[name], want, name)


def test_undefined_figures_are_null() -> None:
    flat = risk.series_risk([0.001] * 30)
    assert flat["sharpe_ratio"] is None  # zero dispersion
    assert flat["sortino_ratio"] is None  # no downside
    assert flat["volatility"] == pytest.approx(0.0, abs=1e-15)
    assert flat["max_drawdown"] == 0.0
    one = risk.series_risk([-0.02])
    assert one["observations"] == 1
    assert one["sharpe_ratio"] is None and one["volatility"] is None
    assert one["var_95"] == pytest.approx(-0.02) and one["cvar_95"] == pytest.approx(-0.02)
    assert one["max_drawdown"] == pytest.approx(-0.02)
    none = risk.series_risk([])
    assert none["observations"] == 0 and none["var_95"] is None and none["cvar_95"] is None


def test_up_only_series_has_no_drawdown() -> None:
    got = risk.series_risk([0.01, 0.02, 0.005, 0.03])
    assert got["max_drawdown"] == 0.0
    assert got["sortino_ratio"] is None
    assert empyrical.max_drawdown(np.array([0.01, 0.02, 0.005, 0.03])) == 0.0


def _frame(days: int, portfolios: int, seed: int = 11) -> pl.DataFrame:
    start = dt.date(2025, 1, 1)
    rows = []
    for p in range(portfolios):
        r = _series(seed + p, days)
        for i in range(days):
            # The first day of a portfolio has no return; day 40 of portfolio 1 is missing.
            if p == 1 and i == 40:
                continue
            rows.append((f"p{p}", start + dt.timedelta(days=i), None if i == 0 else float(r[i])))
    return pl.DataFrame(
        rows,
        schema={"portfolio_id": pl.String, "date": pl.Date, "daily_return": pl.Float64},
        orient="row",
    )


@pytest.mark.parametrize("window", [30, 90])
def test_window_risk_matches_slices(window: int) -> None:
    df = _frame(120, 3)
    as_of = [dt.date(2025, 1, 1) + dt.timedelta(days=i) for i in (0, 1, 29, 45, 89, 119)]
    many = risk.window_risk(df, as_of=as_of, window_days=window)
    assert many.height == 3 * len(as_of)
    for day in as_of:
        one = risk.window_risk(df, as_of=[day], window_days=window)
        assert one.height == 3
        lo = day - dt.timedelta(days=window - 1)
        for row in one.iter_rows(named=True):
            r = (
                df.filter(
                    (pl.col("portfolio_id") == row["portfolio_id"])
                    & pl.col("date").is_between(lo, day)
                )
                .sort("date")["daily_return"]
                .drop_nulls()
                .to_numpy()
            )
            assert row["observations"] == len(r)
            other = many.filter(
                (pl.col("portfolio_id") == row["portfolio_id"]) & (pl.col("date") == day)
            ).row(0, named=True)
            if len(r) >= 2:
                for name, want in _expected(r).items():
                    _assert_close(row[name], want, (day, name))
                    _assert_close(other[name], want, (day, name))
            else:
                assert other["observations"] == row["observations"]


def test_window_risk_is_empty_without_rows() -> None:
    df = _frame(10, 1)
    out = risk.window_risk(df.head(0), as_of=[dt.date(2025, 1, 5)], window_days=30)
    assert out.height == 0
    assert out.columns == ["portfolio_id", "date", *risk.RISK_COLUMNS]


def test_mean_pairwise_correlation_matches_pandas() -> None:
    rng = np.random.default_rng(3)
    start = dt.date(2025, 3, 1)
    days = [start + dt.timedelta(days=i) for i in range(40)]
    base = rng.normal(0, 0.02, 40)
    series = {
        "A": base + rng.normal(0, 0.01, 40),
        "B": base + rng.normal(0, 0.02, 40),
        "C": rng.normal(0, 0.03, 40),
        "USD": np.zeros(40),  # pegged: no correlation with anything
    }
    series["C"][5] = np.nan  # a missing day: pairs with C use the days both have
    rows = [
        (a, d, None if np.isnan(v[i]) else float(v[i]))
        for a, v in series.items()
        for i, d in enumerate(days)
    ]
    returns = pl.DataFrame(
        rows, schema={"asset": pl.String, "date": pl.Date, "asset_return": pl.Float64}, orient="row"
    )
    as_of = days[-1]
    holdings = pl.DataFrame(
        [
            ("p1", as_of, "A"),
            ("p1", as_of, "B"),
            ("p1", as_of, "C"),
            ("p1", as_of, "USD"),
            ("p2", as_of, "A"),
            ("p3", as_of, "USD"),
            ("p3", as_of, "A"),
        ],
        schema={"portfolio_id": pl.String, "date": pl.Date, "asset": pl.String},
        orient="row",
    )
    out = risk.mean_pairwise_correlation(returns, holdings, as_of=[as_of], window_days=30)
    got = dict(zip(out["portfolio_id"], out["correlation_score"], strict=True))
    window = pd.DataFrame({a: v[-30:] for a, v in series.items() if a != "USD"})
    c = window.corr()  # pandas: pairwise complete observations
    want = (c.loc["A", "B"] + c.loc["A", "C"] + c.loc["B", "C"]) / 3
    assert got["p1"] == pytest.approx(want, rel=1e-9)
    assert got["p2"] is None  # one asset
    assert got["p3"] is None  # the only pair involves a pegged asset


def test_inception_figures_agree_with_empyrical() -> None:
    df = _frame(200, 3)
    start = dt.date(2025, 1, 1)
    as_of = [start + dt.timedelta(days=i) for i in (0, 1, 2, 39, 41, 120, 199)]
    out = risk.inception_risk(df, as_of=as_of)
    assert out.columns == ["portfolio_id", "date", *risk.INCEPTION_COLUMNS, *risk.INCEPTION_STATE]
    assert out.height == 3 * len(as_of)
    for row in out.iter_rows(named=True):
        r = df.filter(
            (pl.col("portfolio_id") == row["portfolio_id"]) & (pl.col("date") <= row["date"])
        ).sort("date")["daily_return"]
        r = r.drop_nulls().to_numpy()
        label = (row["portfolio_id"], row["date"])
        if len(r) == 0:
            assert row["total_return"] == 0.0 and row["max_drawdown"] is None
            continue
        _assert_close(row["total_return"], float(empyrical.cum_returns_final(r)), label)
        want = _expected(r)
        for name in ("sharpe_ratio", "max_drawdown", "volatility"):
            _assert_close(row[name], want[name], (label, name))
    # One day at a time gives the same figures as the whole range.
    for day in as_of:
        one = risk.inception_risk(df, as_of=[day])
        assert one.equals(out.filter(pl.col("date") == day))


def test_inception_figures_from_the_day_befores_state_equal_the_whole_history() -> None:
    """Each day from the day before's carried state (what a daily run reads) gives the same
    floats as the range from the first day, to the last bit, and so does a range that starts
    from a state; a series missing from the state starts on its first day."""
    df = _frame(120, 3)
    days = sorted(df["date"].unique().to_list())
    whole = risk.inception_risk(df, as_of=days)
    state = None
    for day in days:
        one = risk.inception_risk(df.filter(pl.col("date") == day), as_of=[day], state=state)
        assert one.equals(whole.filter(pl.col("date") == day)), day
        # p1 has no row on day 40: its state of day 39 carries over the gap
        kept = (
            []
            if state is None
            else [state.filter(~pl.col("portfolio_id").is_in(one["portfolio_id"].implode()))]
        )
        state = pl.concat([*kept, one]).sort("portfolio_id")
    middle = days[60]
    before = whole.filter(pl.col("date") == middle - dt.timedelta(days=1))
    rest = risk.inception_risk(df.filter(pl.col("date") >= middle), as_of=days[60:], state=before)
    assert rest.equals(whole.filter(pl.col("date") >= middle))
    # p0 missing from the state: its figures start at `middle`, as if that were its first day
    partial = risk.inception_risk(
        df.filter(pl.col("date") >= middle),
        as_of=days[60:],
        state=before.filter(pl.col("portfolio_id") != "p0"),
    )
    fresh = risk.inception_risk(
        df.filter((pl.col("date") >= middle) & (pl.col("portfolio_id") == "p0")), as_of=days[60:]
    )
    assert partial.filter(pl.col("portfolio_id") == "p0").equals(fresh)
