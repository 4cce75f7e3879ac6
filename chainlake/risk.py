"""Risk and performance math on daily returns, as Polars expressions.

Conventions (the column docs of `analytics/portfolio_snapshots` and `analytics/risk_metrics`
repeat them):

- Returns are simple daily returns (0.01 = +1 %). Nulls (a portfolio's first day, a day
  without value) are left out of every figure.
- `var_95` is the historical 5th percentile of the daily returns (linear interpolation), and
  `cvar_95` the mean of the worst `floor((n - 1) * 0.05) + 1` returns. Both are returns, so a
  loss is **negative**: `cvar_95 <= var_95`. This is empyrical's convention.
- Sharpe and Sortino take a zero risk-free rate / required return and annualise with 365
  periods (crypto trades every day): Sharpe = mean / std(ddof=1) * sqrt(365); Sortino =
  mean * 365 / (sqrt(mean(min(r, 0)^2)) * sqrt(365)). Volatility = std(ddof=1) * sqrt(365).
- `max_drawdown` is the worst fall of the compounded value from its running peak, the value
  before the first return counting as a peak; a fraction <= 0 (-0.25 = fell 25 %).
- A figure that is undefined (too few returns, zero dispersion, no downside) is null, where
  empyrical would give NaN or infinity.

Everything here is pure: frames in, frames out. The agreement with empyrical-reloaded is
tested in `tests/unit/test_risk.py`.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence

import numpy as np
import polars as pl

ANNUALIZATION = 365
VAR_CUTOFF = 0.05

RISK_COLUMNS = (
    "observations",
    "var_95",
    "cvar_95",
    "sharpe_ratio",
    "sortino_ratio",
    "max_drawdown",
    "volatility",
)


def _undefined_as_null(expr: pl.Expr) -> pl.Expr:
    return pl.when(expr.is_finite()).then(expr).otherwise(None)


def value_at_risk(r: pl.Expr, cutoff: float = VAR_CUTOFF) -> pl.Expr:
    return r.drop_nulls().quantile(cutoff, interpolation="linear")


def conditional_value_at_risk(r: pl.Expr, cutoff: float = VAR_CUTOFF) -> pl.Expr:
    r = r.drop_nulls()
    tail = (((r.len() - 1) * cutoff).floor() + 1).cast(pl.UInt32)
    return pl.when(r.len() > 0).then(r.sort().slice(0, tail).mean())


def volatility(r: pl.Expr, annualization: int = ANNUALIZATION) -> pl.Expr:
    r = r.drop_nulls()
    return pl.when(r.len() >= 2).then(r.std(ddof=1) * math.sqrt(annualization))


def sharpe_ratio(r: pl.Expr, annualization: int = ANNUALIZATION) -> pl.Expr:
    r = r.drop_nulls()
    # Identical returns have zero dispersion; their floating-point std can be a 1e-18 residue
    # that would turn an undefined ratio into a huge finite number.
    spread = r.max() - r.min()
    ratio = r.mean() / r.std(ddof=1) * math.sqrt(annualization)
    return pl.when((r.len() >= 2) & (spread > 0)).then(_undefined_as_null(ratio))


def sortino_ratio(r: pl.Expr, annualization: int = ANNUALIZATION) -> pl.Expr:
    r = r.drop_nulls()
    downside = (r.clip(upper_bound=0.0) ** 2).mean().sqrt() * math.sqrt(annualization)
    ratio = r.mean() * annualization / downside
    return pl.when((r.len() >= 2) & (downside > 0)).then(_undefined_as_null(ratio))


def max_drawdown(r: pl.Expr) -> pl.Expr:
    r = r.drop_nulls()
    wealth = (r + 1.0).cum_prod()
    # The value before the first return (1.0) is the first peak.
    peak = wealth.cum_max().clip(lower_bound=1.0)
    return pl.when(r.len() >= 1).then((wealth / peak - 1.0).min())


def total_return(r: pl.Expr) -> pl.Expr:
    return (r.drop_nulls() + 1.0).product() - 1.0


def risk_exprs(
    returns: str = "daily_return",
    *,
    annualization: int = ANNUALIZATION,
    cutoff: float = VAR_CUTOFF,
) -> list[pl.Expr]:
    """Aggregations (for `group_by`/`rolling`) producing every column of `RISK_COLUMNS`.
    Rows must be in date order within each group (max drawdown compounds in row order)."""
    r = pl.col(returns).cast(pl.Float64)
    return [
        r.drop_nulls().len().cast(pl.Int32).alias("observations"),
        value_at_risk(r, cutoff).alias("var_95"),
        conditional_value_at_risk(r, cutoff).alias("cvar_95"),
        sharpe_ratio(r, annualization).alias("sharpe_ratio"),
        sortino_ratio(r, annualization).alias("sortino_ratio"),
        max_drawdown(r).alias("max_drawdown"),
        volatility(r, annualization).alias("volatility"),
    ]


INCEPTION_COLUMNS = ("total_return", "sharpe_ratio", "max_drawdown", "volatility")


def inception_exprs(
    returns: str = "daily_return", *, annualization: int = ANNUALIZATION
) -> list[pl.Expr]:
    """Since-inception performance: compounded total return, Sharpe, max drawdown, volatility."""
    r = pl.col(returns).cast(pl.Float64)
    return [
        total_return(r).alias("total_return"),
        sharpe_ratio(r, annualization).alias("sharpe_ratio"),
        max_drawdown(r).alias("max_drawdown"),
        volatility(r, annualization).alias("volatility"),
    ]


def series_risk(returns: Sequence[float | None], **kwargs: int | float) -> dict[str, float | None]:
    """Every risk figure of one return series (a convenience for tests and notebooks)."""
    df = pl.DataFrame({"daily_return": list(returns)}, schema={"daily_return": pl.Float64})
    return df.select(risk_exprs(**kwargs)).row(0, named=True)  # type: ignore[arg-type]


def window_risk(
    returns: pl.DataFrame,
    *,
    as_of: Sequence[dt.date],
    window_days: int,
    by: str = "portfolio_id",
    date_col: str = "date",
    returns_col: str = "daily_return",
    inception: bool = False,
) -> pl.DataFrame:
    """Risk over the `window_days` calendar days ending at each date of `as_of` (inclusive),
    one row per (`by`, as-of date) that has at least one row in its window. With
    `inception=True` the figures are `INCEPTION_COLUMNS` instead of `RISK_COLUMNS` (give a
    window reaching back to the first return).

    `returns` holds one row per (`by`, date); days missing from it simply have no return."""
    if window_days < 1:
        raise ValueError("window_days must be at least 1")
    as_of = sorted(set(as_of))
    if inception:
        exprs = inception_exprs(returns_col)
        figures: dict[str, pl.DataType] = {c: pl.Float64() for c in INCEPTION_COLUMNS}
    else:
        exprs = risk_exprs(returns_col)
        figures = _risk_schema()
    out_schema: dict[str, pl.DataType] = {by: returns.schema[by], date_col: pl.Date()} | figures
    if not as_of or returns.height == 0:
        return pl.DataFrame(schema=out_schema)
    lo = as_of[0] - dt.timedelta(days=window_days - 1)
    data = (
        returns.lazy()
        .filter(pl.col(date_col).is_between(lo, as_of[-1]))
        .select(by, date_col, returns_col)
        .sort(by, date_col)
    )
    if len(as_of) == 1:
        day = as_of[0]
        start = day - dt.timedelta(days=window_days - 1)
        out = (
            data.filter(pl.col(date_col).is_between(start, day))
            .group_by(by, maintain_order=True)
            .agg(exprs)
            .with_columns(pl.lit(day).alias(date_col))
        )
    else:
        # A rolling window anchored at every date a row exists, then kept at the as-of dates;
        # as-of dates without a row of their own are anchored by an empty (null return) row.
        anchors = (
            data.select(by)
            .unique()
            .join(pl.LazyFrame({date_col: as_of}, schema={date_col: pl.Date}), how="cross")
            .with_columns(pl.lit(None, dtype=pl.Float64).alias(returns_col))
        )
        rows = pl.concat([data, anchors.select(by, date_col, returns_col)])
        rows = rows.unique([by, date_col], keep="first", maintain_order=False).sort(by, date_col)
        out = (
            rows.rolling(index_column=date_col, period=f"{window_days}d", group_by=by)
            .agg(exprs)
            .filter(pl.col(date_col).is_in(as_of))
        )
    return out.select(list(out_schema)).cast(pl.Schema(out_schema)).sort(by, date_col).collect()


def _risk_schema() -> dict[str, pl.DataType]:
    return {"observations": pl.Int32()} | {c: pl.Float64() for c in RISK_COLUMNS[1:]}


def mean_pairwise_correlation(
    asset_returns: pl.DataFrame,
    holdings: pl.DataFrame,
    *,
    as_of: Sequence[dt.date],
    window_days: int,
    by: str = "portfolio_id",
    asset_col: str = "asset",
    date_col: str = "date",
    returns_col: str = "asset_return",
    min_observations: int = 2,
) -> pl.DataFrame:
    """Mean Pearson correlation over the distinct pairs of a portfolio's assets.

    `asset_returns`: one row per (asset, date) with that asset's daily return.
    `holdings`: one row per (`by`, as-of date, asset) the portfolio holds on that date.
    For each as-of date, correlations use the window's days where both assets of a pair have
    a return (pairwise complete); a pair with fewer than `min_observations` such days or with
    zero variance has no correlation and is left out of the mean. Null when no pair is left
    (a portfolio of one asset, or of stable-priced ones)."""
    out_schema: dict[str, pl.DataType] = {
        by: holdings.schema[by],
        date_col: pl.Date(),
        "correlation_score": pl.Float64(),
    }
    results: list[pl.DataFrame] = []
    assets = sorted(asset_returns[asset_col].unique().drop_nulls().to_list())
    index = {a: i for i, a in enumerate(assets)}
    for day in sorted(set(as_of)):
        held = holdings.filter(pl.col(date_col) == day)
        if held.height == 0:
            continue
        start = day - dt.timedelta(days=window_days - 1)
        window = asset_returns.filter(
            pl.col(date_col).is_between(start, day) & pl.col(returns_col).is_not_null()
        )
        corr, defined = _pairwise_correlation(
            window, assets, asset_col, date_col, returns_col, min_observations
        )
        portfolios = held[by].unique(maintain_order=True).to_list()
        pos = {p: i for i, p in enumerate(portfolios)}
        x = np.zeros((len(portfolios), len(assets)))
        rows = [pos[p] for p in held[by].to_list()]
        cols = [index.get(a, -1) for a in held[asset_col].to_list()]
        for r, c in zip(rows, cols, strict=True):
            if c >= 0:
                x[r, c] = 1.0
        num = np.einsum("pi,ij,pj->p", x, np.where(defined, corr, 0.0), x)
        den = np.einsum("pi,ij,pj->p", x, defined.astype(float), x)
        with np.errstate(invalid="ignore", divide="ignore"):
            score = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
        results.append(
            pl.DataFrame(
                {by: portfolios, date_col: [day] * len(portfolios), "correlation_score": score},
                schema=out_schema,
            ).with_columns(pl.col("correlation_score").fill_nan(None))
        )
    if not results:
        return pl.DataFrame(schema=out_schema)
    return pl.concat(results)


def _pairwise_correlation(
    window: pl.DataFrame,
    assets: list[str],
    asset_col: str,
    date_col: str,
    returns_col: str,
    min_observations: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Pearson correlation of every asset pair over their common days, and which pairs (off
    the diagonal) have one."""
    n = len(assets)
    if window.height == 0 or n == 0:
        return np.zeros((n, n)), np.zeros((n, n), dtype=bool)
    wide = window.pivot(
        on=asset_col, index=date_col, values=returns_col, aggregate_function="first"
    )
    values = np.full((wide.height, n), np.nan)
    for i, a in enumerate(assets):
        if a in wide.columns:
            values[:, i] = wide[a].cast(pl.Float64).to_numpy()
    present = ~np.isnan(values)
    m = present.astype(float)
    # Centre each asset on its own mean first: correlation does not change, precision does.
    with np.errstate(invalid="ignore"):
        centred = values - np.nanmean(np.where(present, values, np.nan), axis=0)
    x = np.where(present, centred, 0.0)
    count = m.T @ m
    sx = x.T @ m  # sum of asset i over the days both i and j have a return
    sxx = (x * x).T @ m
    sxy = x.T @ x
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = sxy - sx * sx.T / count
        var_i = sxx - sx * sx / count
        var_j = var_i.T
        corr = cov / np.sqrt(var_i * var_j)
    # An asset whose returns do not move in the window (a stablecoin at its peg) has no
    # correlation with anything; testing the raw values avoids a 1e-34 rounding residue.
    moving = np.nanmax(values, axis=0, initial=-np.inf) > np.nanmin(values, axis=0, initial=np.inf)
    defined = (
        (count >= min_observations)
        & moving[:, None]
        & moving[None, :]
        & (var_i > 0)
        & (var_j > 0)
        & np.isfinite(corr)
    )
    np.fill_diagonal(defined, False)
    return np.clip(np.where(defined, corr, 0.0), -1.0, 1.0), defined
