"""analytics/portfolio_snapshots: what each portfolio is worth at each day's close (YieldSensei's snapshots).

Value: the portfolio's wallets' closing balances (`core/balances`) at the day's USD close
(`core/token_prices`), exact Decimal(38,18). Tokens without a price that day are left out of
the value and listed in `unpriced_tokens`. A portfolio whose wallets span chains is valued in
its home chain's partition (`chain` in portfolios.yaml): each holding at its own chain's
balances and prices of the day, summed in USD; the home chain's days depend on those chains'
days (`chainlake.partitions.portfolio_window`). Its day is complete when every one of its
chains has that day's balances: until then its row is left out (the run says which chain it
waits for) and the next run of the day, which the other chain's balances trigger, writes it.

Return: `daily_return` is the price return of the previous close's holdings,
sum(q[d-1] * p[d]) / sum(q[d-1] * p[d-1]) - 1 over the tokens priced on both days. Deposits,
withdrawals, transfers between the portfolio's wallets and fees are flows, not returns, so they
do not show up as gains or losses (a time-weighted return). `total_return`, `sharpe_ratio`,
`max_drawdown` and `volatility` are since the portfolio's first snapshot, with the conventions
of `chainlake.risk` (annualised over 365 days; drawdown <= 0). Each row also keeps the running
state behind them (`returns_count`, `return_sum`, `wealth`, ...): a day goes on from the day
before's row, so its cost does not grow with the history. A portfolio without a row the day
before (new, or left out of portfolios.yaml for a while) starts its history again that day.

The table lives in ClickHouse (embedded engine or server), MergeTree partitioned by month and
ordered by (portfolio_id, date); a day is replaced whole, so re-materialising leaves one
row per (portfolio_id, date).
"""

import datetime as dt
import time
from collections.abc import Sequence
from decimal import Decimal
from typing import Annotated, ClassVar

import dagster as dg
import pandera.polars as pa
import polars as pl

from assets.checks import require_schema
from assets.core.balances import BalancesModel
from assets.core.token_prices import TokenPricesModel
from assets.policies import FROM_DAY_BEFORE
from assets.ranges import each_day, run_chain_days
from chainlake import risk
from chainlake.config import ChainConfig, load_chains
from chainlake.lake import DeltaStore
from chainlake.lineage import (
    Lineage,
    day_block_range,
    day_lineage,
    lineage_frame,
    lineage_markdown,
    linked_text,
    read_versions,
    with_lineage,
)
from chainlake.metadata import chart_by_key, numbers_by_key, table_metadata
from chainlake.partitions import (
    chain_day_partitions,
    portfolio_window,
    previous_day,
)
from chainlake.portfolios import load_portfolios
from chainlake.schema import conform, polars_schema, schema_metadata
from resources.clickhouse import ClickHouseResource, ClickHouseSession, ClickHouseTable

KEY = dg.AssetKey(["analytics", "portfolio_snapshots"])
USD = pl.Decimal(38, 18)
MAX_DECIMALS = 18
ALLOCATION = pl.List(pl.Struct({"key": pl.String, "value": pl.Float64}))


class PortfolioSnapshotsModel(pa.DataFrameModel):
    """One row per portfolio and day, at the day's close."""

    date: pl.Date = pa.Field(description="the UTC day; figures are as of its last block")
    portfolio_id: pl.String = pa.Field(description="portfolio id from portfolios.yaml")
    chain_id: pl.Int64 = pa.Field(description="EIP-155 chain id of the chain the row belongs to")
    total_value: Annotated[pl.Decimal, 38, 18] = pa.Field(
        description="USD value of the priced holdings, exact"
    )
    total_return: pl.Float64 = pa.Field(
        nullable=True, description="since the first snapshot: compounded daily returns"
    )
    daily_return: pl.Float64 = pa.Field(
        nullable=True,
        description="price return of the previous close's holdings (flows excluded); null on "
        "the first day or when the previous close had no priced value",
    )
    sharpe_ratio: pl.Float64 = pa.Field(
        nullable=True, description="since the first snapshot, annualised over 365 days"
    )
    max_drawdown: pl.Float64 = pa.Field(
        nullable=True, ge=-1.0, le=0.0, description="since the first snapshot; <= 0"
    )
    volatility: pl.Float64 = pa.Field(
        nullable=True, ge=0.0, description="since the first snapshot, annualised over 365 days"
    )
    asset_allocation: pl.List(pl.Struct({"key": pl.String, "value": pl.Float64})) = pa.Field(  # type: ignore[valid-type]
        description="token symbol -> share of total_value; the shares sum to 1"
    )
    unpriced_tokens: pl.List(pl.String) = pa.Field(  # type: ignore[valid-type]
        description="tokens held without a price that day (left out of total_value)"
    )
    # The running state of the since-inception figures (chainlake.risk.INCEPTION_STATE): the
    # next day starts from it, so a day costs the same at day 30 as at day 3,000.
    returns_count: pl.Int32 = pa.Field(ge=0, description="daily returns since the first snapshot")
    return_shift: pl.Float64 = pa.Field(
        nullable=True, description="running state: the first daily return (null before one)"
    )
    return_sum: pl.Float64 = pa.Field(
        description="running state: sum of (daily_return - return_shift)"
    )
    return_sum_squares: pl.Float64 = pa.Field(
        ge=0.0, description="running state: sum of (daily_return - return_shift)^2"
    )
    wealth: pl.Float64 = pa.Field(
        ge=0.0, description="running state: product of (1 + daily_return); 1 + total_return"
    )
    peak_wealth: pl.Float64 = pa.Field(
        ge=1.0, description="running state: highest wealth so far, at least 1"
    )
    max_return: pl.Float64 = pa.Field(
        nullable=True, description="running state: best daily return so far"
    )
    min_return: pl.Float64 = pa.Field(
        nullable=True, description="running state: worst daily return so far"
    )
    # Lineage (chainlake.lineage): what the row was computed from, read back by
    # `chainlake explain` through Delta time travel.
    balances_version: pl.Int64 = pa.Field(
        nullable=True,
        ge=0,
        description="lineage: Delta version of balances read (the day's and the day before's "
        "closing balances); null: the table did not exist",
    )
    prices_version: pl.Int64 = pa.Field(
        nullable=True,
        ge=0,
        description="lineage: Delta version of token_prices read; null: the table did not exist",
    )
    token_transfers_version: pl.Int64 = pa.Field(
        nullable=True,
        ge=0,
        description="lineage: Delta version of token_transfers when the row was computed (the "
        "day's token movements behind the balances); null: the table did not exist",
    )
    native_transfers_version: pl.Int64 = pa.Field(
        nullable=True,
        ge=0,
        description="lineage: Delta version of native_transfers when the row was computed (the "
        "day's native movements and fees behind the balances); null: the table did not exist",
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
    linked_lineage: pl.String = pa.Field(
        nullable=True,
        description="lineage of the other chains' days a multi-chain portfolio's value read: "
        "'<chain>: balances=N,prices=N,token_transfers=N,native_transfers=N,blocks=A-B' per "
        "chain, '; '-separated; null for a portfolio of one chain",
    )

    class Config:
        strict = True
        unique: ClassVar[list[str]] = ["portfolio_id", "date"]

    @pa.dataframe_check
    def allocation_sums_to_one(cls, data: pa.PolarsData) -> pl.LazyFrame:  # type: ignore[misc]
        """The allocation weights of a portfolio with value sum to 1; one without has none."""
        total = pl.col("asset_allocation").list.eval(pl.element().struct.field("value")).list.sum()
        return data.lazyframe.select(
            pl.when(pl.col("total_value") > 0)
            .then((total - 1.0).abs() <= 1e-9)
            .otherwise(pl.col("asset_allocation").list.len() == 0)
        )


TABLE = ClickHouseTable(
    name="portfolio_snapshots",
    model=PortfolioSnapshotsModel,
    order_by=("portfolio_id", "date"),
    comment="One row per portfolio and day (chainlake analytics/portfolio_snapshots)",
)


# -- pure transforms ------------------------------------------------------------------------


def _units(decimals: pl.Series) -> pl.DataFrame:
    """Each token's decimals → 10^-decimals, as an exact Decimal(38,18)."""
    values = sorted(set(decimals.to_list()))
    if values and values[-1] > MAX_DECIMALS:
        raise ValueError(f"tokens with more than {MAX_DECIMALS} decimals cannot be valued exactly")
    return pl.DataFrame(
        {"decimals": values, "unit": [Decimal(1).scaleb(-d) for d in values]},
        schema={"decimals": pl.Int32, "unit": USD},
    )


def _on_chain(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` with a `chain` column: a frame of one chain's table has none (its chain is
    then the same for every input, named "")."""
    if "chain" in frame.columns:
        return frame
    return frame.with_columns(pl.lit("", pl.String).alias("chain"))


def holdings_values(
    balances: pl.DataFrame, prices: pl.DataFrame, portfolio_wallets: pl.DataFrame
) -> pl.DataFrame:
    """(portfolio_id, date, chain, token_address, token_symbol, quantity, price, value): each
    portfolio's holdings summed over its wallets and valued at the day's price of the token's
    own chain (null when the token has no price that day). Exact decimals throughout.

    The inputs of several chains carry a `chain` column (balances and prices of each chain,
    portfolio_wallets as (portfolio_id, chain, address)); those of one chain may leave it out."""
    balances, prices, portfolio_wallets = (
        _on_chain(balances), _on_chain(prices), _on_chain(portfolio_wallets)
    )  # fmt: skip
    units = _units(balances["decimals"])
    held = (
        balances.lazy()
        .join(portfolio_wallets.lazy(), on=["chain", "address"], how="inner")
        .group_by("portfolio_id", "date", "chain", "token_address", "token_symbol", "decimals")
        .agg(pl.col("balance").sum())
        .join(units.lazy(), on="decimals", how="left")
        .with_columns((pl.col("balance") * pl.col("unit")).cast(USD).alias("quantity"))
        .join(
            prices.lazy().select("chain", "date", "token_address", pl.col("price").cast(USD)),
            on=["chain", "date", "token_address"],
            how="left",
        )
        .with_columns((pl.col("quantity") * pl.col("price")).cast(USD).alias("value"))
        .select(
            "portfolio_id", "date", "chain", "token_address", "token_symbol", "quantity",
            "price", "value",
        )
    )  # fmt: skip
    return held.collect()


def portfolio_snapshots_frame(
    balances: pl.DataFrame,
    prices: pl.DataFrame,
    portfolio_wallets: pl.DataFrame,
    *,
    days: Sequence[dt.date],
    chain_id: int,
    state: pl.DataFrame | None = None,
    lineage: pl.DataFrame | None = None,
    linked_lineage: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Pure transform: snapshots of `days` (consecutive).

    balances / prices: rows of `days` and of the day before the first (for its return), with
    a `chain` column when they hold several chains' rows.
    portfolio_wallets: (portfolio_id, address), or (portfolio_id, chain, address).
    state: the snapshots of the day before `days` (their `max_drawdown` and running-state
    columns, see `read_state`), from which the since-inception figures go on; a portfolio
    without a row there starts its history on the first of `days`.
    lineage: (date, lineage columns) of `days` (`chainlake.lineage.lineage_frame`): the
    versions the inputs were read at and the day's blocks; None leaves them null.
    linked_lineage: (portfolio_id, linked_lineage) of the multi-chain portfolios: the other
    chains' lineage (`chainlake.lineage.linked_text`); the others' are null."""
    days = sorted(days)
    schema = polars_schema(PortfolioSnapshotsModel)
    if not days:
        return pl.DataFrame(schema=schema)
    values = holdings_values(balances, prices, portfolio_wallets)
    prices = _on_chain(prices)
    portfolios = portfolio_wallets.select("portfolio_id").unique()
    if portfolios.height == 0:
        return pl.DataFrame(schema=schema)
    grid = portfolios.join(pl.DataFrame({"date": days}, schema={"date": pl.Date}), how="cross")

    totals = (
        values.filter(pl.col("date").is_in(days))
        .group_by("portfolio_id", "date")
        .agg(
            pl.col("value").sum().alias("total_value"),
            pl.col("token_symbol")
            .filter(pl.col("price").is_null() & (pl.col("quantity") != 0))
            .unique()
            .sort()
            .alias("unpriced_tokens"),
        )
    )
    allocation = (
        values.filter(pl.col("date").is_in(days) & (pl.col("value") != 0))
        # one weight per symbol: ETH held on two chains is one ETH position
        .group_by("portfolio_id", "date", "token_symbol")
        .agg(pl.col("value").sum())
        .join(totals.select("portfolio_id", "date", "total_value"), on=["portfolio_id", "date"])
        .filter(pl.col("total_value") != 0)
        .sort("token_symbol")
        .group_by("portfolio_id", "date")
        .agg(
            pl.struct(
                pl.col("token_symbol").alias("key"),
                (pl.col("value").cast(pl.Float64) / pl.col("total_value").cast(pl.Float64)).alias(
                    "value"
                ),
            ).alias("asset_allocation")
        )
    )
    # Yesterday's quantities at today's and at yesterday's price.
    previous = values.select(
        "portfolio_id",
        (pl.col("date") + dt.timedelta(days=1)).alias("date"),
        "chain",
        "token_address",
        "quantity",
        pl.col("price").alias("previous_price"),
    )
    returns = (
        previous.filter(pl.col("date").is_in(days))
        # Today's market price: a token sold out today has no holding row today.
        .join(
            prices.select("chain", "date", "token_address", pl.col("price").cast(USD)),
            on=["chain", "date", "token_address"],
            how="left",
        )
        .filter(pl.col("price").is_not_null() & pl.col("previous_price").is_not_null())
        .group_by("portfolio_id", "date")
        .agg(
            (pl.col("quantity") * pl.col("price")).cast(USD).sum().alias("now"),
            (pl.col("quantity") * pl.col("previous_price")).cast(USD).sum().alias("before"),
        )
        .select(
            "portfolio_id",
            "date",
            pl.when(pl.col("before") > 0)
            .then(pl.col("now").cast(pl.Float64) / pl.col("before").cast(pl.Float64) - 1.0)
            .alias("daily_return"),
        )
    )
    frame = (
        grid.join(totals, on=["portfolio_id", "date"], how="left")
        .join(allocation, on=["portfolio_id", "date"], how="left")
        .join(returns, on=["portfolio_id", "date"], how="left")
        .with_columns(
            pl.col("total_value").fill_null(pl.lit(0, USD)).cast(USD),
            pl.col("asset_allocation").fill_null(pl.lit([], ALLOCATION)),
            pl.col("unpriced_tokens").fill_null(pl.lit([], pl.List(pl.String))),
        )
    )
    inception = risk.inception_risk(
        frame.select("portfolio_id", "date", "daily_return"), as_of=days, state=state
    )
    out = frame.join(inception, on=["portfolio_id", "date"], how="left").with_columns(
        pl.lit(chain_id, pl.Int64).alias("chain_id"),
    )
    out = with_lineage(out, lineage)
    if linked_lineage is not None and linked_lineage.height:
        out = out.join(linked_lineage, on="portfolio_id", how="left")
    else:
        out = out.with_columns(pl.lit(None, pl.String).alias("linked_lineage"))
    return conform(out, PortfolioSnapshotsModel).sort("portfolio_id", "date")


# -- the asset ------------------------------------------------------------------------------


STATE_COLUMNS = ("portfolio_id", "max_drawdown", *risk.INCEPTION_STATE)
# Days of history drawn in the materialisation's charts.
CHART_DAYS = 30


def read_recent(session: ClickHouseSession, *, chain_id: int, day: dt.date) -> pl.DataFrame:
    """Value and daily return of the chain's portfolios over the `CHART_DAYS` days to `day`."""
    return session.query(
        "SELECT portfolio_id, date, total_value, daily_return FROM `portfolio_snapshots` "
        "WHERE chain_id = {chain:Int64} AND date BETWEEN {first:Date} AND {day:Date} "
        "ORDER BY portfolio_id, date",
        {"chain": chain_id, "first": day - dt.timedelta(days=CHART_DAYS - 1), "day": day},
    )


def chart_metadata(day_frame: pl.DataFrame, recent: pl.DataFrame) -> dict[str, dg.MetadataValue]:
    """What the UI draws for a day: each large portfolio's value and return as numbers (plotted
    over materialisations) and as small charts of the last `CHART_DAYS` days."""
    if day_frame.height == 0:
        return {}
    largest = day_frame.sort("total_value", "portfolio_id", descending=[True, False])[
        "portfolio_id"
    ].to_list()
    return {
        **numbers_by_key(day_frame, key="portfolio_id", value="total_value", prefix="value_usd",
                         order=largest),
        **numbers_by_key(day_frame, key="portfolio_id", value="daily_return",
                         prefix="daily_return", order=largest),
        "value_chart": chart_by_key(recent, key="portfolio_id", x="date", y="total_value",
                                    title=f"Value at close (USD), last {CHART_DAYS} days",
                                    order=largest),
        "return_chart": chart_by_key(recent, key="portfolio_id", x="date", y="daily_return",
                                     title="Daily return", order=largest, value_format="{:+.2%}"),
    }  # fmt: skip


def read_state(session: ClickHouseSession, *, chain_id: int, day: dt.date) -> pl.DataFrame:
    """The since-inception state of the chain's snapshots of the day before `day`: one day's
    rows, whatever the length of the history."""
    columns = ", ".join(f"`{c}`" for c in STATE_COLUMNS)
    return session.query(
        f"SELECT {columns} FROM `portfolio_snapshots` WHERE chain_id = {{chain:Int64}} "  # noqa: S608
        "AND date = {day:Date} ORDER BY portfolio_id",
        {"chain": chain_id, "day": day - dt.timedelta(days=1)},
    )


@dg.asset(
    key=KEY,
    deps=[
        # the day and the day before, of the chain and of the chains its portfolios link
        dg.AssetDep(dg.AssetKey(["core", "balances"]), partition_mapping=portfolio_window(-1)),
        dg.AssetDep(dg.AssetKey(["core", "token_prices"]), partition_mapping=portfolio_window(-1)),
        dg.AssetDep(KEY, partition_mapping=previous_day()),
    ],
    partitions_def=chain_day_partitions,
    # it starts from its own day before: see FROM_DAY_BEFORE
    backfill_policy=FROM_DAY_BEFORE,
    pool="clickhouse",
    group_name="analytics",
    kinds={"clickhouse", "polars"},
    check_specs=[dg.AssetCheckSpec("schema", asset=KEY, blocking=True)],
    description="One row per portfolio and day: value, returns, allocation (ClickHouse).",
    metadata={"table": TABLE.name, **schema_metadata(PortfolioSnapshotsModel)},
)
def portfolio_snapshots(
    context: dg.AssetExecutionContext,
    delta: dg.ResourceParam[DeltaStore],
    clickhouse: ClickHouseResource,
):
    """Write each chain-day's portfolio snapshots of the run to ClickHouse, from the Delta
    balances and prices and the previous snapshots (for returns), in date order.
    """
    yield from each_day(
        context,
        run_chain_days(context),
        lambda chain, day: _one_day(delta, clickhouse, chain, day),
    )


def _read_inputs(
    delta: DeltaStore, chain: ChainConfig, days: list[dt.date], versions: dict[str, int | None]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A chain's balances and prices of `days` at `versions`, each row with its chain's name."""
    name = pl.lit(chain.name, pl.String).alias("chain")
    balances = delta.read_days(
        chain, "balances", days, schema=polars_schema(BalancesModel), version=versions["balances"]
    ).with_columns(name)
    prices = delta.read_days(
        chain,
        "token_prices",
        days,
        schema=polars_schema(TokenPricesModel),
        version=versions["token_prices"],
    ).with_columns(name)
    return balances, prices


def _one_day(delta: DeltaStore, clickhouse: ClickHouseResource, chain, day):
    started = time.monotonic()
    chains = load_chains()
    book = load_portfolios(chains)
    members = book.portfolio_members(chain.name)
    both = [day - dt.timedelta(days=1), day]
    # Each input's version once, then every read at it: the row records exactly what it read.
    versions = read_versions(delta, chain)
    lineage = day_lineage(versions, day_block_range(delta, chain, day))
    balances, prices = _read_inputs(delta, chain, both, versions)
    # Multi-chain portfolios: the other chains' day, at their versions of now. A chain whose
    # day has no balances of the portfolio's wallets yet holds its portfolios back.
    waiting: dict[str, str] = {}
    linked: dict[str, Lineage] = {}
    for name in book.linked_chains(chain.name):
        other = chains[name]
        if day < other.start_date:
            continue  # nothing held there yet
        other_versions = read_versions(delta, other)
        b, p = _read_inputs(delta, other, both, other_versions)
        theirs = members.filter(pl.col("chain") == name)["address"]
        if b.filter((pl.col("date") == day) & pl.col("address").is_in(theirs)).height == 0:
            for pid in members.filter(pl.col("chain") == name)["portfolio_id"].unique():
                waiting[pid] = name
            continue
        balances, prices = pl.concat([balances, b]), pl.concat([prices, p])
        linked[name] = day_lineage(other_versions, day_block_range(delta, other, day))
    members = members.filter(~pl.col("portfolio_id").is_in(list(waiting)))
    texts = [
        (p.id, linked_text({c: linked[c] for c in book.chains_of(p)[1:] if c in linked}))
        for p in book.portfolios_on(chain.name)
        if len(book.chains_of(p)) > 1
    ]
    linked_lineage = pl.DataFrame(
        texts, schema={"portfolio_id": pl.String, "linked_lineage": pl.String}, orient="row"
    )
    with clickhouse.session() as ch:
        ch.ensure(TABLE)
        state = read_state(ch, chain_id=chain.chain_id, day=day)
        try:
            df = portfolio_snapshots_frame(
                balances,
                prices,
                members,
                days=[day],
                chain_id=chain.chain_id,
                state=state,
                lineage=lineage_frame({day: lineage}),
                linked_lineage=linked_lineage,
            )
        except ValueError as e:
            raise dg.Failure(description=f"{chain.name} {day}: {e}", allow_retries=False) from e
        schema = yield from require_schema(
            PortfolioSnapshotsModel, df, f"{chain.name} {day}: snapshots"
        )
        ch.replace_days(TABLE, df, chain_id=chain.chain_id, days=[day])
        recent = read_recent(ch, chain_id=chain.chain_id, day=day)
    unpriced = sorted({t for ts in df["unpriced_tokens"].to_list() for t in ts})
    yield dg.MaterializeResult(
        metadata=table_metadata(
            rows_written=df.height,
            seconds=time.monotonic() - started,
            preview_frame=df.select(
                "portfolio_id", "total_value", "daily_return", "total_return"
            ).head(10),
            store=clickhouse.describe(),
            portfolios=df.height,
            total_value_usd=str(df["total_value"].sum()) if df.height else "0",
            unpriced_tokens=", ".join(unpriced) or None,
            waiting_for=", ".join(f"{p} ({c} {day})" for p, c in sorted(waiting.items())) or None,
        )
        | {
            "lineage": dg.MetadataValue.md(
                lineage_markdown(
                    [
                        (chain.name, day, lineage),
                        *((c, day, lin) for c, lin in sorted(linked.items())),
                    ]
                )
            )
        }
        | chart_metadata(df, recent)
    )
    yield schema
