"""analytics/risk_metrics: rolling 30- and 90-day risk per portfolio (YieldSensei's metrics, plus Sortino).

Over the daily returns of `analytics/portfolio_snapshots` in the window ending at the day
(inclusive), with the conventions of `chainlake.risk`:

- `var_95`, `cvar_95`: historical 5 % VaR and CVaR of the daily returns, as returns: a loss is
  negative and `cvar_95 <= var_95`.
- `sharpe_ratio`, `sortino_ratio`, `volatility`: annualised over 365 days, zero risk-free rate.
- `max_drawdown`: worst fall from a running peak within the window, <= 0.
- `correlation_score`: mean pairwise Pearson correlation of the daily price returns of the
  tokens the portfolio holds at the day's close.

Honest with little history: each row carries `observations`, the daily returns its window
holds; below the window's minimum (portfolios.yaml `risk.min_observations`, by default 20 of
30 days and 60 of 90) every figure is null. The 90-day row is written only once it covers more
returns than the 30-day row of the same day (before that it would repeat it).

The windows reach back through partition mappings (89 earlier snapshot days, 90 earlier price
days), so a backfill orders itself; the asset takes a range of days in one run.
"""

import datetime as dt
import time
from collections.abc import Mapping, Sequence
from typing import ClassVar

import dagster as dg
import pandera.polars as pa
import polars as pl

from assets.analytics.portfolio_snapshots import KEY as SNAPSHOTS_KEY
from assets.analytics.portfolio_snapshots import TABLE as SNAPSHOTS
from assets.checks import require_schema
from assets.core.token_prices import TokenPricesModel
from assets.policies import PER_CHAIN_RANGE, chain_days
from chainlake import risk
from chainlake.config import load_chains
from chainlake.lake import DeltaStore
from chainlake.lineage import LINEAGE_COLUMNS, Lineage, lineage_markdown, with_lineage
from chainlake.metadata import chart_by_key, numbers_by_key, table_metadata
from chainlake.partitions import chain_day_partitions, window
from chainlake.portfolios import load_portfolios
from chainlake.schema import conform, polars_schema, schema_metadata
from resources.clickhouse import ClickHouseResource, ClickHouseSession, ClickHouseTable

KEY = dg.AssetKey(["analytics", "risk_metrics"])
WINDOWS = risk.WINDOWS


class RiskMetricsModel(pa.DataFrameModel):
    """One row per portfolio, day and window length."""

    date: pl.Date = pa.Field(description="the UTC day; the window ends with this day's close")
    portfolio_id: pl.String = pa.Field(description="portfolio id from portfolios.yaml")
    chain_id: pl.Int64 = pa.Field(description="EIP-155 chain id of the chain the row belongs to")
    window_days: pl.Int32 = pa.Field(isin=list(WINDOWS), description="calendar days")
    observations: pl.Int32 = pa.Field(
        ge=0,
        description="daily returns in the window; below the window's minimum (portfolios.yaml "
        "risk.min_observations, default 20 of 30 and 60 of 90) every figure is null",
    )
    var_95: pl.Float64 = pa.Field(
        nullable=True, description="historical 5 % VaR of daily returns; a loss is negative"
    )
    cvar_95: pl.Float64 = pa.Field(
        nullable=True,
        description="mean of the worst floor((n-1)*5%)+1 daily returns; negative loss, <= var_95",
    )
    sharpe_ratio: pl.Float64 = pa.Field(
        nullable=True, description="mean / std of daily returns * sqrt(365)"
    )
    sortino_ratio: pl.Float64 = pa.Field(
        nullable=True, description="mean * 365 / (downside deviation * sqrt(365))"
    )
    max_drawdown: pl.Float64 = pa.Field(
        nullable=True, ge=-1.0, le=0.0, description="worst fall from a running peak; <= 0"
    )
    volatility: pl.Float64 = pa.Field(
        nullable=True, ge=0.0, description="std of daily returns * sqrt(365)"
    )
    correlation_score: pl.Float64 = pa.Field(
        nullable=True,
        ge=-1.0,
        le=1.0,
        description="mean pairwise correlation of the held tokens' daily price returns",
    )
    # Lineage (chainlake.lineage): what the row was computed from, read back by
    # `chainlake explain` through Delta time travel.
    balances_version: pl.Int64 = pa.Field(
        nullable=True,
        ge=0,
        description="lineage: Delta version of balances behind the day's snapshot (its "
        "holdings weigh the correlation), from that snapshot row",
    )
    prices_version: pl.Int64 = pa.Field(
        nullable=True,
        ge=0,
        description="lineage: Delta version of token_prices this row read (the window's price "
        "returns); null: the table did not exist",
    )
    token_transfers_version: pl.Int64 = pa.Field(
        nullable=True,
        ge=0,
        description="lineage: Delta version of token_transfers behind the day's snapshot, from "
        "that snapshot row",
    )
    native_transfers_version: pl.Int64 = pa.Field(
        nullable=True,
        ge=0,
        description="lineage: Delta version of native_transfers behind the day's snapshot, "
        "from that snapshot row",
    )
    first_block: pl.Int64 = pa.Field(
        nullable=True, ge=0, description="lineage: the chain-day's first block; null: no block"
    )
    last_block: pl.Int64 = pa.Field(
        nullable=True,
        ge=0,
        description="lineage: the chain-day's last block (the close; the open day's newest); "
        "null: no block",
    )

    class Config:
        strict = True
        unique: ClassVar[list[str]] = ["portfolio_id", "date", "window_days"]

    @pa.dataframe_check
    def cvar_at_least_as_bad_as_var(cls, data: pa.PolarsData) -> pl.LazyFrame:  # type: ignore[misc]
        """The CVaR is never better than the VaR of the same window."""
        return data.lazyframe.select(
            pl.col("cvar_95").is_null()
            | pl.col("var_95").is_null()
            | (pl.col("cvar_95") <= pl.col("var_95") + 1e-12)
        )

    @pa.dataframe_check
    def windows_differ_in_coverage(cls, data: pa.PolarsData) -> pl.LazyFrame:  # type: ignore[misc]
        """A longer window's row is there only when it covers more returns than the shorter
        one: no two rows of a portfolio's day count the same returns."""
        day = ["portfolio_id", "date"]
        return data.lazyframe.select(
            pl.col("observations").n_unique().over(day) == pl.len().over(day)
        )

    @pa.dataframe_check
    def observations_fit_thewindow(cls, data: pa.PolarsData) -> pl.LazyFrame:  # type: ignore[misc]
        """A window has no more observations than days."""
        return data.lazyframe.select(pl.col("observations") <= pl.col("window_days"))


TABLE = ClickHouseTable(
    name="risk_metrics",
    model=RiskMetricsModel,
    order_by=("portfolio_id", "date", "window_days"),
    comment="Rolling risk per portfolio, day and window (chainlake analytics/risk_metrics)",
)


# -- pure transforms ------------------------------------------------------------------------


def asset_returns(prices: pl.DataFrame) -> pl.DataFrame:
    """(asset, date, asset_return) from (date, token_symbol, price): the change from the
    previous calendar day's price (null when that day has no price)."""
    p = prices.select(
        pl.col("token_symbol").alias("asset"), "date", pl.col("price").cast(pl.Float64)
    )
    before = p.select(
        "asset",
        (pl.col("date") + dt.timedelta(days=1)).alias("date"),
        pl.col("price").alias("previous"),
    )
    return (
        p.join(before, on=["asset", "date"], how="left")
        .select("asset", "date", (pl.col("price") / pl.col("previous") - 1.0).alias("asset_return"))
        .sort("asset", "date")
    )


def risk_metrics_frame(
    snapshots: pl.DataFrame,
    prices: pl.DataFrame,
    *,
    days: Sequence[dt.date],
    chain_id: int,
    windows: Sequence[int] = WINDOWS,
    min_observations: Mapping[int, int] | None = None,
    lineage: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Pure transform: risk of every portfolio for `days` and each window length.

    snapshots: (portfolio_id, date, daily_return, asset_allocation) from the first window's
    start to the last day; prices: (date, token_symbol, price) from the day before that.

    A window with fewer returns than `min_observations[window]` (default
    `risk.DEFAULT_MIN_OBSERVATIONS`) has its count and null figures. A longer window's row is
    written only when it covers more returns than the next shorter one: before 30 days of
    history the 90-day row would repeat the 30-day row, so it is left out.

    lineage: (portfolio_id, date, lineage columns) of `days` (see `snapshot_lineage`); None
    leaves them null."""
    minimum = {**risk.DEFAULT_MIN_OBSERVATIONS, **(min_observations or {})}
    days = sorted(set(days))
    returns = snapshots.select("portfolio_id", pl.col("date").cast(pl.Date), "daily_return")
    held = (
        snapshots.filter(pl.col("date").is_in(days))
        .select("portfolio_id", pl.col("date").cast(pl.Date), "asset_allocation")
        .explode("asset_allocation")
        .filter(pl.col("asset_allocation").is_not_null())
        .select(
            "portfolio_id",
            "date",
            pl.col("asset_allocation").struct.field("key").alias("asset"),
            pl.col("asset_allocation").struct.field("value").alias("weight"),
        )
        .filter(pl.col("weight") > 0)
    )
    moves = asset_returns(prices)
    frames = []
    shorter: pl.DataFrame | None = None
    for w in sorted(windows):
        n_min = minimum.get(w, 1)
        figures = risk.window_risk(returns, as_of=days, window_days=w, min_observations=n_min)
        corr = risk.mean_pairwise_correlation(moves, held, as_of=days, window_days=w)
        frame = figures.join(corr, on=["portfolio_id", "date"], how="left").with_columns(
            pl.when(pl.col("observations") >= n_min).then(pl.col("correlation_score")),
            pl.lit(w, pl.Int32).alias("window_days"),
        )
        if shorter is not None:
            frame = frame.join(shorter, on=["portfolio_id", "date"], how="left").filter(
                pl.col("_shorter").is_null() | (pl.col("observations") > pl.col("_shorter"))
            )
        shorter = figures.select("portfolio_id", "date", pl.col("observations").alias("_shorter"))
        frames.append(frame.drop("_shorter", strict=False))
    out = pl.concat(frames).with_columns(pl.lit(chain_id, pl.Int64).alias("chain_id"))
    out = with_lineage(out, lineage)
    return conform(out, RiskMetricsModel).sort("portfolio_id", "date", "window_days")


# -- the asset ------------------------------------------------------------------------------


def snapshot_lineage(
    snapshots: pl.DataFrame, days: Sequence[dt.date], prices_version: int | None
) -> pl.DataFrame:
    """(portfolio_id, date, lineage columns) of `days`: the day's snapshot row's versions of
    balances and transfers and its blocks, with the prices version this run read."""
    return snapshots.filter(pl.col("date").is_in(list(days))).select(
        "portfolio_id",
        pl.col("date").cast(pl.Date),
        *(c if c != "prices_version" else pl.lit(prices_version, pl.Int64).alias(c)
          for c in LINEAGE_COLUMNS),
    )  # fmt: skip


def read_snapshots(
    session: ClickHouseSession, *, chain_id: int, first: dt.date, last: dt.date
) -> pl.DataFrame:
    """The chain's daily snapshots (return, allocation and lineage) from `first` to `last`,
    from ClickHouse."""
    lineage = ", ".join(f"`{c}`" for c in LINEAGE_COLUMNS)
    return session.query(
        f"SELECT portfolio_id, date, daily_return, asset_allocation, {lineage} "  # noqa: S608
        "FROM `portfolio_snapshots` WHERE chain_id = {chain:Int64} "
        "AND date BETWEEN {first:Date} AND {last:Date} "
        "ORDER BY portfolio_id, date",
        {"chain": chain_id, "first": first, "last": last},
    )


@dg.asset(
    key=KEY,
    deps=[
        dg.AssetDep(SNAPSHOTS_KEY, partition_mapping=window(-(max(WINDOWS) - 1))),
        dg.AssetDep(dg.AssetKey(["core", "token_prices"]), partition_mapping=window(-max(WINDOWS))),
    ],
    partitions_def=chain_day_partitions,
    backfill_policy=PER_CHAIN_RANGE,
    pool="clickhouse",
    group_name="analytics",
    kinds={"clickhouse", "polars"},
    check_specs=[dg.AssetCheckSpec("schema", asset=KEY, blocking=True)],
    description="One row per portfolio, day and window (30/90 days): VaR, CVaR, Sharpe, "
    "Sortino, drawdown, volatility, correlation (ClickHouse).",
    metadata={"table": TABLE.name, **schema_metadata(RiskMetricsModel)},
)
def risk_metrics(
    context: dg.AssetExecutionContext,
    delta: dg.ResourceParam[DeltaStore],
    clickhouse: ClickHouseResource,
):
    """Compute the rolling risk metrics of the partitions' chain-days and write them to
    ClickHouse."""
    started = time.monotonic()
    by_chain: dict[str, list[dt.date]] = {}
    chains = {}
    for chain, day in chain_days(context):
        by_chain.setdefault(chain.name, []).append(day)
        chains[chain.name] = chain
    written = rows_checked = below_minimum = 0
    lineage_rows: list[tuple[str, dt.date, Lineage]] = []
    minimum = load_portfolios(load_chains()).risk.min_observations
    with clickhouse.session() as ch:
        ch.ensure(SNAPSHOTS)
        ch.ensure(TABLE)
        for name, days in by_chain.items():
            chain = chains[name]
            first, last = min(days), max(days)
            start = first - dt.timedelta(days=max(WINDOWS) - 1)
            snaps = read_snapshots(ch, chain_id=chain.chain_id, first=start, last=last)
            price_days = [
                start - dt.timedelta(days=1) + dt.timedelta(days=i)
                for i in range((last - start).days + 2)
            ]
            # the version once, then the read at it: the rows record exactly what was read
            prices_version = delta.current_version(chain, "token_prices")
            prices = delta.read_days(
                chain,
                "token_prices",
                price_days,
                schema=polars_schema(TokenPricesModel),
                version=prices_version,
            )
            lineage = snapshot_lineage(snaps, days, prices_version)
            df = risk_metrics_frame(
                snaps,
                prices,
                days=days,
                chain_id=chain.chain_id,
                min_observations=minimum,
                lineage=lineage,
            )
            lineage_rows += [
                (name, r["date"], Lineage.from_row(r))
                for r in lineage.unique(["date", *LINEAGE_COLUMNS])
                .sort("date")
                .iter_rows(named=True)
            ]
            yield from require_schema(RiskMetricsModel, df, f"{name} {first}..{last}: risk metrics")
            ch.replace_days(TABLE, df, chain_id=chain.chain_id, days=days)
            recent = read_recent(ch, chain_id=chain.chain_id, day=last)
            written += df.height
            rows_checked += df.height
            below_minimum += df.filter(
                pl.col("observations") < pl.col("window_days").replace_strict(minimum, default=1)
            ).height
            last_frame = df
    yield dg.MaterializeResult(
        metadata=table_metadata(
            rows_written=written,
            seconds=time.monotonic() - started,
            preview_frame=last_frame.filter(pl.col("window_days") == WINDOWS[0]).head(10)
            if written
            else None,
            store=clickhouse.describe(),
            days=sum(len(d) for d in by_chain.values()),
        )
        | {
            "min_observations": ", ".join(f"{w} days: {n}" for w, n in sorted(minimum.items())),
            "rows_below_minimum": dg.MetadataValue.int(below_minimum),
        }
        | ({"lineage": dg.MetadataValue.md(lineage_markdown(lineage_rows))} if lineage_rows else {})
        | (chart_metadata(recent) if written else {})
    )
    yield dg.AssetCheckResult(
        check_name="schema",
        passed=True,  # every chain's frame passed require_schema above, or the step failed
        metadata={"rows_checked": rows_checked, "model": RiskMetricsModel.__name__},
    )


CHART_DAYS = 30


def read_recent(session: ClickHouseSession, *, chain_id: int, day: dt.date) -> pl.DataFrame:
    """The 30-day window's figures of the chain's portfolios over the `CHART_DAYS` days to
    `day`."""
    return session.query(
        "SELECT portfolio_id, date, observations, var_95, max_drawdown, volatility "
        "FROM `risk_metrics` WHERE chain_id = {chain:Int64} AND window_days = {w:Int32} "
        "AND date BETWEEN {first:Date} AND {day:Date} ORDER BY portfolio_id, date",
        {
            "chain": chain_id,
            "w": WINDOWS[0],
            "first": day - dt.timedelta(days=CHART_DAYS - 1),
            "day": day,
        },
    )


def chart_metadata(recent: pl.DataFrame) -> dict[str, dg.MetadataValue]:
    """The 30-day figures of the run's last day as numbers (plotted over materialisations) and
    the last `CHART_DAYS` days as small charts; null figures (too few returns) are left out."""
    if recent.height == 0:
        return {}
    day = recent["date"].max()
    last = recent.filter(pl.col("date") == day)
    out: dict[str, dg.MetadataValue] = {}
    for column in ("var_95", "max_drawdown", "volatility"):
        out |= numbers_by_key(last, key="portfolio_id", value=column, prefix=f"{column}_30d")
    out["var_chart"] = chart_by_key(
        recent, key="portfolio_id", x="date", y="var_95",
        title=f"VaR 95 % over 30 days, last {CHART_DAYS} days", value_format="{:+.2%}",
    )  # fmt: skip
    out["drawdown_chart"] = chart_by_key(
        recent, key="portfolio_id", x="date", y="max_drawdown",
        title="Max drawdown over 30 days", value_format="{:+.2%}",
    )  # fmt: skip
    return out


def portfolio_summary(session: ClickHouseSession, *, window_days: int = WINDOWS[0]) -> pl.DataFrame:
    """The latest snapshot of every portfolio with its risk over `window_days`: what
    `make demo` prints."""
    return session.query(
        "SELECT s.portfolio_id AS portfolio_id, s.date AS date, "
        "s.total_value AS total_value, s.total_return AS total_return, "
        "s.daily_return AS daily_return, r.observations AS observations, "
        "r.var_95 AS var_95, r.cvar_95 AS cvar_95, "
        "r.sharpe_ratio AS sharpe, r.sortino_ratio AS sortino, r.max_drawdown AS max_drawdown, "
        "r.volatility AS volatility, r.correlation_score AS correlation "
        "FROM `portfolio_snapshots` AS s "
        "LEFT JOIN `risk_metrics` AS r ON r.portfolio_id = s.portfolio_id "
        "AND r.date = s.date AND r.window_days = {w:Int32} "
        "WHERE (s.portfolio_id, s.date) IN (SELECT portfolio_id, max(date) "
        "FROM `portfolio_snapshots` GROUP BY portfolio_id) ORDER BY portfolio_id",
        {"w": window_days},
    )
