"""Risk and performance math on daily returns: Polars frames in, Polars frames out.

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

Rolling windows are computed on a dense (portfolio x day) matrix with NumPy sliding windows:
one code path whether a run covers one day (the daily asset) or a year (a backfill), in
blocks of portfolios so memory stays bounded. The agreement with empyrical-reloaded is tested
in `tests/unit/test_risk.py`.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence

import numpy as np
import polars as pl
from numpy.lib.stride_tricks import sliding_window_view

ANNUALIZATION = 365
VAR_CUTOFF = 0.05
# The rolling windows of analytics/risk_metrics, in calendar days.
WINDOWS = (30, 90)
# Fewer daily returns than this in a window leave its figures null (the count stays): a Sharpe
# ratio of 4 returns is noise. Two thirds of the window by default; portfolios.yaml's
# `risk.min_observations` changes it per window.
DEFAULT_MIN_OBSERVATIONS = {30: 20, 90: 60}
# Portfolios per block of the windowed computation: a block holds a few arrays of
# block x days x window floats (256 x 365 x 90 x 8 B = 67 MB each).
BLOCK = 256

RISK_COLUMNS = (
    "observations",
    "var_95",
    "cvar_95",
    "sharpe_ratio",
    "sortino_ratio",
    "max_drawdown",
    "volatility",
)


def _risk_schema() -> dict[str, pl.DataType]:
    return {"observations": pl.Int32()} | {c: pl.Float64() for c in RISK_COLUMNS[1:]}


def window_figures(
    returns: np.ndarray,
    window: int,
    *,
    cutoff: float = VAR_CUTOFF,
    annualization: int = ANNUALIZATION,
) -> dict[str, np.ndarray]:
    """Every `RISK_COLUMNS` figure for the window of `window` days ending at each day.

    `returns`: (portfolios, days), NaN where there is no return. Each result has the same
    shape; undefined figures are NaN."""
    p = returns.shape[0]
    padded = np.concatenate([np.full((p, window - 1), np.nan), returns], axis=1)
    win = sliding_window_view(padded, window, axis=1)  # (p, d, window), a view
    valid = ~np.isnan(win)
    n = valid.sum(axis=2)
    nf = n.astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        # Sorted ascending with NaN last: quantile and tail mean read the first n values.
        ordered = np.sort(win, axis=2)
        pos = (nf - 1.0) * cutoff
        lo = np.clip(np.floor(pos).astype(np.int64), 0, window - 1)
        hi = np.clip(lo + 1, 0, np.maximum(n - 1, 0))
        a = np.take_along_axis(ordered, lo[..., None], axis=2)[..., 0]
        b = np.take_along_axis(ordered, hi[..., None], axis=2)[..., 0]
        var = a + (b - a) * (pos - np.floor(pos))
        k = np.floor((nf - 1.0) * cutoff).astype(np.int64) + 1
        tail = np.cumsum(np.where(np.isnan(ordered), 0.0, ordered), axis=2)
        cvar = np.take_along_axis(tail, np.clip(k - 1, 0, window - 1)[..., None], axis=2)[..., 0]
        cvar = cvar / k
        del ordered, tail
        filled = np.where(valid, win, 0.0)
        mean = filled.sum(axis=2) / nf
        deviation = np.where(valid, win - mean[..., None], 0.0)
        sd = np.sqrt((deviation * deviation).sum(axis=2) / (nf - 1.0))
        del deviation
        spread = np.nanmax(np.where(valid, win, -np.inf), axis=2) - np.nanmin(
            np.where(valid, win, np.inf), axis=2
        )
        downside = np.sqrt((np.minimum(filled, 0.0) ** 2).sum(axis=2) / nf) * math.sqrt(
            annualization
        )
        wealth = np.cumprod(np.where(valid, 1.0 + win, 1.0), axis=2)
        del filled
        peak = np.maximum(np.maximum.accumulate(wealth, axis=2), 1.0)
        mdd = (wealth / peak - 1.0).min(axis=2)
        del wealth, peak
        sharpe = mean / sd * math.sqrt(annualization)
        sortino = mean * annualization / downside
    nan = np.nan
    return {
        "observations": n,
        "var_95": np.where(n >= 1, var, nan),
        "cvar_95": np.where(n >= 1, cvar, nan),
        "sharpe_ratio": np.where((n >= 2) & (spread > 0) & np.isfinite(sharpe), sharpe, nan),
        "sortino_ratio": np.where((n >= 2) & (downside > 0) & np.isfinite(sortino), sortino, nan),
        "max_drawdown": np.where(n >= 1, mdd, nan),
        "volatility": np.where(n >= 2, sd * math.sqrt(annualization), nan),
    }


def window_risk(
    returns: pl.DataFrame,
    *,
    as_of: Sequence[dt.date],
    window_days: int,
    by: str = "portfolio_id",
    date_col: str = "date",
    returns_col: str = "daily_return",
    min_observations: int = 1,
) -> pl.DataFrame:
    """Risk over the `window_days` calendar days ending at each date of `as_of` (inclusive),
    one row per (`by`, as-of date) that has at least one row in its window.

    `returns` holds one row per (`by`, date); days missing from it simply have no return.
    A window with fewer than `min_observations` returns keeps its `observations` count and
    has every figure null."""
    if window_days < 1:
        raise ValueError("window_days must be at least 1")
    if not 1 <= min_observations <= window_days:
        raise ValueError(
            f"min_observations must be between 1 and the window ({window_days} days), "
            f"not {min_observations}"
        )
    as_of = sorted(set(as_of))
    out_schema: dict[str, pl.DataType] = {by: returns.schema[by], date_col: pl.Date()}
    out_schema |= _risk_schema()
    if not as_of or returns.height == 0:
        return pl.DataFrame(schema=out_schema)
    first = as_of[0] - dt.timedelta(days=window_days - 1)
    span = (as_of[-1] - first).days + 1
    rows = (
        returns.lazy()
        .filter(pl.col(date_col).is_between(first, as_of[-1]))
        .select(by, pl.col(date_col).cast(pl.Date), pl.col(returns_col).cast(pl.Float64))
        .unique([by, date_col], keep="last", maintain_order=True)
        .collect()
    )
    if rows.height == 0:
        return pl.DataFrame(schema=out_schema)
    keys = rows[by].unique().sort()
    key_idx = pl.DataFrame({by: keys, "_k": np.arange(len(keys), dtype=np.int64)})
    coords = rows.join(key_idx, on=by).with_columns(
        (pl.col(date_col) - pl.lit(first)).dt.total_days().alias("_d")
    )
    k_idx = coords["_k"].to_numpy()
    d_idx = coords["_d"].to_numpy()
    values = np.full((len(keys), span), np.nan)
    values[k_idx, d_idx] = coords[returns_col].fill_null(np.nan).to_numpy()
    present = np.zeros((len(keys), span), dtype=np.int32)
    present[k_idx, d_idx] = 1
    # A portfolio has a row at an as-of date when any day of the window has one.
    rows_in_window = np.cumsum(
        np.concatenate([np.zeros((len(keys), 1), dtype=np.int64), present], axis=1), axis=1
    )
    cols = np.array([(d - first).days for d in as_of])
    has_row = (
        rows_in_window[:, cols + 1] - rows_in_window[:, np.maximum(cols + 1 - window_days, 0)]
    ) > 0
    parts = {c: np.empty((len(keys), len(cols))) for c in RISK_COLUMNS}
    for start in range(0, len(keys), BLOCK):
        block = window_figures(values[start : start + BLOCK], window_days)
        for c in RISK_COLUMNS:
            parts[c][start : start + BLOCK] = block[c][:, cols]
    pick = has_row.ravel()
    data: dict[str, object] = {
        by: np.repeat(keys.to_numpy(), len(cols))[pick],
        date_col: pl.Series(list(as_of) * len(keys), dtype=pl.Date).filter(pl.Series(pick)),
    }
    for c in RISK_COLUMNS:
        data[c] = parts[c].ravel()[pick]
    enough = pl.col("observations") >= min_observations
    out = pl.DataFrame(data).with_columns(
        pl.when(enough).then(pl.col(c).fill_nan(None)).alias(c) for c in RISK_COLUMNS[1:]
    )
    return out.cast(pl.Schema(out_schema)).sort(by, date_col)


def series_risk(returns: Sequence[float | None]) -> dict[str, float | None]:
    """Every risk figure of one return series, over all of it (for tests and notebooks)."""
    n = max(len(returns), 1)
    start = dt.date(2000, 1, 1)
    df = pl.DataFrame(
        {
            "portfolio_id": ["s"] * len(returns),
            "date": [start + dt.timedelta(days=i) for i in range(len(returns))],
            "daily_return": list(returns),
        },
        schema={"portfolio_id": pl.String, "date": pl.Date, "daily_return": pl.Float64},
    )
    out = window_risk(df, as_of=[start + dt.timedelta(days=n - 1)], window_days=n)
    if out.height == 0:
        return {"observations": 0} | {c: None for c in RISK_COLUMNS[1:]}
    return out.drop("portfolio_id", "date").row(0, named=True)


INCEPTION_COLUMNS = ("total_return", "sharpe_ratio", "max_drawdown", "volatility")
# The running state behind the since-inception figures, kept in each snapshot row so the next
# day starts from it instead of from the whole history (a daily run stays flat as the history
# grows). `max_drawdown` is part of it too.
INCEPTION_STATE: dict[str, pl.DataType] = {
    "returns_count": pl.Int32(),  # daily returns so far
    "return_shift": pl.Float64(),  # the first return: sums are of (r - shift), for precision
    "return_sum": pl.Float64(),  # sum of (r - shift)
    "return_sum_squares": pl.Float64(),  # sum of (r - shift)^2
    "wealth": pl.Float64(),  # product of (1 + r): 1 + total_return, unrounded
    "peak_wealth": pl.Float64(),  # running peak of the wealth, at least 1
    "max_return": pl.Float64(),  # the best and worst daily return so far (a series that
    "min_return": pl.Float64(),  # never moved has no Sharpe ratio)
}


def inception_risk(
    returns: pl.DataFrame,
    *,
    as_of: Sequence[dt.date],
    by: str = "portfolio_id",
    date_col: str = "date",
    returns_col: str = "daily_return",
    annualization: int = ANNUALIZATION,
    state: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Since-inception figures (`INCEPTION_COLUMNS`) and their running state
    (`INCEPTION_STATE`) at each date of `as_of`, one row per (`by`, as-of date) present in
    `returns`.

    Without `state`, `returns` is each series from its first day. With `state` (one row per
    `by`: the `INCEPTION_STATE` columns and `max_drawdown` of the day before `returns` starts,
    as this function returned them), `returns` holds the days after it only, and a series
    missing from `state` starts there. Either way the figures come from running sums and
    products taken in date order, each day's added to the day before's, so a range of days
    and the same days one at a time (each from the day before's state) give the same floats;
    sums are of the returns less the series' first return, for precision."""
    as_of = sorted(set(as_of))
    out_schema: dict[str, pl.DataType] = (
        {by: returns.schema[by], date_col: pl.Date()}
        | {c: pl.Float64() for c in INCEPTION_COLUMNS}
        | INCEPTION_STATE
    )
    if not as_of or returns.height == 0:
        return pl.DataFrame(schema=out_schema)
    r = pl.col(returns_col)
    rows = (
        returns.lazy()
        .filter(pl.col(date_col) <= as_of[-1])
        .select(by, pl.col(date_col).cast(pl.Date), r.cast(pl.Float64), pl.lit(False).alias("_s"))
    )
    carried = pl.LazyFrame(
        schema={by: returns.schema[by], date_col: pl.Date(), "_mdd0": pl.Float64()}
        | INCEPTION_STATE
    )
    if state is not None and state.height:
        carried = (
            state.lazy()
            .select(
                by,
                pl.col("max_drawdown").fill_null(0.0).alias("_mdd0"),
                *[pl.col(c).cast(t) for c, t in INCEPTION_STATE.items()],
            )
            # the state stands one day before the first return of its series
            .join(
                rows.group_by(by).agg(pl.col(date_col).min()),
                on=by,
                how="inner",
            )
            .with_columns(pl.col(date_col) - dt.timedelta(days=1))
            .select(by, date_col, "_mdd0", *INCEPTION_STATE)
        )
    seeds = carried.select(
        by,
        date_col,
        pl.lit(None, pl.Float64).alias(returns_col),
        pl.lit(True).alias("_s"),
        "_mdd0",
        *INCEPTION_STATE,
    )
    shift = (
        pl.when(pl.col("_s"))
        .then(pl.col("return_shift"))
        .otherwise(r)
        .drop_nulls()
        .first()
        .over(by)
        .fill_null(0.0)
    )
    x = r - pl.col("_shift")

    def seeded(seed: str, step: pl.Expr) -> pl.Expr:
        """The seed row adds the state's value, a day its own step: one running figure in date
        order, whether it starts from a state or from the first day."""
        return pl.when(pl.col("_s")).then(pl.col(seed)).otherwise(step)

    n = seeded("returns_count", r.is_not_null().cast(pl.Int32)).cum_sum().over(by)
    s1 = seeded("return_sum", x.fill_null(0.0)).cum_sum().over(by)
    s2 = seeded("return_sum_squares", (x * x).fill_null(0.0)).cum_sum().over(by)
    wealth = seeded("wealth", (r + 1.0).fill_null(1.0)).cum_prod().over(by)
    high = seeded("max_return", r).cum_max().forward_fill().over(by)
    low = seeded("min_return", r).cum_min().forward_fill().over(by)
    out = (
        pl.concat([seeds, rows], how="diagonal_relaxed")
        .sort(by, date_col)
        .with_columns(shift.alias("_shift"))
        .with_columns(
            n.alias("_n"),
            s1.alias("_s1"),
            s2.alias("_s2"),
            wealth.alias("_w"),
            high.alias("_high"),
            low.alias("_low"),
        )
        .with_columns(
            pl.max_horizontal(
                seeded("peak_wealth", pl.col("_w")).cum_max().over(by), pl.lit(1.0)
            ).alias("_peak")
        )
        .with_columns(
            seeded("_mdd0", pl.col("_w") / pl.col("_peak") - 1.0).cum_min().over(by).alias("_mdd")
        )
        .filter(~pl.col("_s") & pl.col(date_col).is_in(as_of))
        .with_columns(
            ((pl.col("_s2") - pl.col("_s1") * pl.col("_s1") / pl.col("_n")) / (pl.col("_n") - 1))
            .clip(lower_bound=0.0)
            .sqrt()
            .alias("_sd"),
            (pl.col("_shift") + pl.col("_s1") / pl.col("_n")).alias("_mean"),
            (pl.col("_high") - pl.col("_low")).alias("_spread"),
        )
        .select(
            by,
            date_col,
            (pl.col("_w") - 1.0).alias("total_return"),
            pl.when((pl.col("_n") >= 2) & (pl.col("_spread") > 0) & (pl.col("_sd") > 0))
            .then(pl.col("_mean") / pl.col("_sd") * math.sqrt(annualization))
            .alias("sharpe_ratio"),
            pl.when(pl.col("_n") >= 1).then(pl.col("_mdd")).alias("max_drawdown"),
            pl.when(pl.col("_n") >= 2)
            .then(pl.col("_sd") * math.sqrt(annualization))
            .alias("volatility"),
            pl.col("_n").alias("returns_count"),
            pl.when(pl.col("_n") >= 1).then(pl.col("_shift")).alias("return_shift"),
            pl.col("_s1").alias("return_sum"),
            pl.col("_s2").alias("return_sum_squares"),
            pl.col("_w").alias("wealth"),
            pl.col("_peak").alias("peak_wealth"),
            pl.col("_high").alias("max_return"),
            pl.col("_low").alias("min_return"),
        )
    )
    return out.collect().cast(pl.Schema(out_schema)).sort(by, date_col)


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
    as_of = sorted(set(as_of))
    if not as_of or holdings.height == 0:
        return pl.DataFrame(schema=out_schema)
    assets = sorted(asset_returns[asset_col].unique().drop_nulls().to_list())
    first = as_of[0] - dt.timedelta(days=window_days - 1)
    span = (as_of[-1] - first).days + 1
    asset_idx = pl.DataFrame(
        {asset_col: assets, "_a": np.arange(len(assets), dtype=np.int64)},
        schema={asset_col: pl.String, "_a": pl.Int64},
    )
    # Returns as a dense (day x asset) matrix over every window's days.
    moves = (
        asset_returns.filter(
            pl.col(date_col).is_between(first, as_of[-1]) & pl.col(returns_col).is_not_null()
        )
        .join(asset_idx, on=asset_col)
        .with_columns((pl.col(date_col) - pl.lit(first)).dt.total_days().alias("_d"))
    )
    matrix = np.full((span, len(assets)), np.nan)
    matrix[moves["_d"].to_numpy(), moves["_a"].to_numpy()] = moves[returns_col].to_numpy()
    # Holdings as integer coordinates, grouped by day.
    held = (
        holdings.filter(pl.col(date_col).is_in(as_of))
        .join(asset_idx, on=asset_col)
        .select(by, pl.col(date_col).cast(pl.Date), "_a")
        .sort(date_col)
    )
    keys = held[by].unique().sort()
    held = held.join(pl.DataFrame({by: keys, "_p": np.arange(len(keys), dtype=np.int64)}), on=by)
    held = held.sort(date_col, maintain_order=True)
    dates = held[date_col].to_numpy()
    p_all, a_all = held["_p"].to_numpy(), held["_a"].to_numpy()
    bounds = np.searchsorted(dates, np.array(as_of, dtype="datetime64[D]"), side="left")
    ends = np.searchsorted(dates, np.array(as_of, dtype="datetime64[D]"), side="right")
    out_keys, out_days, out_scores = [], [], []
    for day, lo, hi in zip(as_of, bounds, ends, strict=True):
        if hi <= lo:
            continue
        end = (day - first).days + 1
        corr, defined = _pairwise_correlation(matrix[end - window_days : end], min_observations)
        members = np.unique(p_all[lo:hi])
        rank = np.searchsorted(members, p_all[lo:hi])
        x = np.zeros((len(members), len(assets)))
        x[rank, a_all[lo:hi]] = 1.0
        num = ((x @ corr) * x).sum(axis=1)
        den = ((x @ defined.astype(float)) * x).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out_scores.append(np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan))
        out_keys.append(keys.to_numpy()[members])
        out_days.extend([day] * len(members))
    if not out_keys:
        return pl.DataFrame(schema=out_schema)
    return pl.DataFrame(
        {
            by: np.concatenate(out_keys),
            date_col: out_days,
            "correlation_score": np.concatenate(out_scores),
        },
        schema=out_schema,
    ).with_columns(pl.col("correlation_score").fill_nan(None))


def _pairwise_correlation(
    values: np.ndarray, min_observations: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pearson correlation of every asset pair over their common days of `values`
    (days x assets, NaN where no return), and which pairs (off the diagonal) have one."""
    n = values.shape[1]
    if values.size == 0:
        return np.zeros((n, n)), np.zeros((n, n), dtype=bool)
    present = ~np.isnan(values)
    m = present.astype(float)
    # Centre each asset on its own mean first: correlation does not change, precision does.
    counts = present.sum(axis=0)
    means = np.where(
        counts > 0, np.where(present, values, 0.0).sum(axis=0) / np.maximum(counts, 1), 0.0
    )
    centred = values - means
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
