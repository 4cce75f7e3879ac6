"""core/token_prices: the USD close of every priced token, from on-chain price feeds.

A token is priced when chains.yaml gives it a `price_feed` (an AggregatorV3 contract) and its
`price_feed_decimals`. The day's close is the feed's last `AnswerUpdated` event of the day
(raw/logs); a feed that did not update that day is read with `latestRoundData()` at the day's
last block, which returns the answer still in force. The native coin is priced through a
token entry with the address 0xeeee…eeee (see `core/balances`).
"""

import datetime as dt
import time
from collections.abc import Mapping
from decimal import Decimal, localcontext
from typing import Annotated

import dagster as dg
import pandera.polars as pa
import polars as pl

from assets.checks import require_schema
from assets.core.days import day_blocks
from assets.core.tokens import NATIVE_TOKEN, TokensModel
from assets.core.tokens import TABLE as TOKENS_TABLE
from assets.policies import PER_CHAIN_DAYS, TRANSIENT_RETRY
from assets.ranges import each_day, run_chain_days
from chainlake.config import ChainConfig
from chainlake.lake import DeltaStore
from chainlake.metadata import table_metadata
from chainlake.partitions import chain_day_partitions
from chainlake.raw.logs import LogsModel
from chainlake.rpc import NodeError, RpcClient, RpcError
from chainlake.schema import conform, empty, polars_schema, schema_metadata
from resources.rpc import RpcResource

KEY = dg.AssetKey(["core", "token_prices"])
TABLE = "token_prices"
ADDRESS = r"^0x[0-9a-f]{40}$"
ANSWER_UPDATED = "0x0559884fd3a460db3073b7fc896cc77986f16e378210ded43186175bf646fc5f"
LATEST_ROUND_DATA = "0xfeaf968c"
PRICE = pl.Decimal(38, 18)


class TokenPricesModel(pa.DataFrameModel):
    """One row per priced token and day: its USD price at the day's close."""

    chain_id: pl.Int64 = pa.Field(description="EIP-155 chain id of the chain the row belongs to")
    date: pl.Date = pa.Field(description="UTC day of the row (the Delta partition column)")
    token_address: pl.String = pa.Field(
        str_matches=ADDRESS, unique=True, description="0xeeee…eeee for the native coin"
    )
    token_symbol: pl.String = pa.Field(
        description="token symbol: the chains.yaml override, else core/tokens' label"
    )
    price_feed: pl.String = pa.Field(
        str_matches=ADDRESS,
        description="Chainlink-style price feed contract read, lowercase 0x-hex",
    )
    feed_decimals: pl.Int32 = pa.Field(ge=0, le=77, description="decimals of the feed's answer")
    answer: Annotated[pl.Decimal, 38, 0] = pa.Field(gt=0, description="the feed's raw answer")
    round_id: Annotated[pl.Decimal, 38, 0] = pa.Field(
        ge=0, description="feed round the answer comes from"
    )
    price: Annotated[pl.Decimal, 38, 18] = pa.Field(
        gt=0, description="USD per whole token: answer / 10^feed_decimals"
    )
    updated_at: Annotated[pl.Datetime, "us", "UTC"] = pa.Field(
        description="when the feed last updated (the round's updatedAt)"
    )
    block_number: pl.Int64 = pa.Field(
        ge=0, description="block of the AnswerUpdated event, or the day's last block for a call"
    )
    source: pl.String = pa.Field(
        isin=["event", "call"],
        description="event: from the feed's AnswerUpdated logs; call: latestRoundData at the day's last block",
    )

    class Config:
        strict = True


def feeds_frame(chain: ChainConfig, symbols: Mapping[str, str] | None = None) -> pl.DataFrame:
    """(token_address, token_symbol, price_feed, feed_decimals) of the chain's priced tokens.

    A token's symbol is its chains.yaml override, else `symbols[address]` (the day's
    core/tokens label), else the chain's native symbol for the native coin's entry, else
    the address."""
    symbols = symbols or {}

    def label(address: str, override: str | None) -> str:
        if override:
            return override
        if address in symbols:
            return symbols[address]
        return chain.native_symbol if address == NATIVE_TOKEN else address

    return pl.DataFrame(
        [
            (t.address, label(t.address, t.symbol), t.price_feed, t.price_feed_decimals)
            for t in chain.tokens
            if t.price_feed
        ],
        schema={
            "token_address": pl.String,
            "token_symbol": pl.String,
            "price_feed": pl.String,
            "feed_decimals": pl.Int32,
        },
        orient="row",
    )


def _int256(word: str) -> int:
    v = int(word, 16)
    return v - (1 << 256) if v >= 1 << 255 else v


def _price(answer: int, decimals: int) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 80
        return (Decimal(answer) / (Decimal(10) ** decimals)).quantize(Decimal(1).scaleb(-18))


def prices_from_events(logs: pl.DataFrame, feeds: pl.DataFrame) -> pl.DataFrame:
    """Pure transform: each feed's last AnswerUpdated log of the day → a price row.
    `AnswerUpdated(int256 indexed current, uint256 indexed roundId, uint256 updatedAt)`."""
    last = (
        logs.filter(
            (pl.col("topic0") == ANSWER_UPDATED)
            & pl.col("address").is_in(feeds["price_feed"].to_list())
            & pl.col("topic2").is_not_null()
        )
        .sort("block_number", "log_index")
        .group_by("address", maintain_order=True)
        .last()
        .join(feeds, left_on="address", right_on="price_feed", how="inner")
    )
    rows = []
    for r in last.iter_rows(named=True):
        answer = _int256(r["topic1"])
        rows.append(
            {
                "chain_id": r["chain_id"],
                "date": r["date"],
                "token_address": r["token_address"],
                "token_symbol": r["token_symbol"],
                "price_feed": r["address"],
                "feed_decimals": r["feed_decimals"],
                "answer": Decimal(answer),
                "round_id": Decimal(int(r["topic2"], 16)),
                "price": _price(answer, r["feed_decimals"]),
                "updated_at": dt.datetime.fromtimestamp(int(r["data"][:66], 16), dt.UTC),
                "block_number": r["block_number"],
                "source": "event",
            }
        )
    return conform(pl.DataFrame(rows, schema=polars_schema(TokenPricesModel)), TokenPricesModel)


def price_from_round_data(
    result: str, feed: dict[str, object], *, chain_id: int, day: dt.date, block: int
) -> dict[str, object] | None:
    """Pure: a `latestRoundData()` return value → a price row (None for an empty return: no
    contract at that block yet)."""
    body = result[2:] if result.startswith("0x") else result
    if len(body) < 64 * 4:
        return None
    words = [body[i * 64 : (i + 1) * 64] for i in range(5)]
    answer = _int256(words[1])
    decimals = int(feed["feed_decimals"])  # type: ignore[call-overload]
    return {
        "chain_id": chain_id,
        "date": day,
        "token_address": feed["token_address"],
        "token_symbol": feed["token_symbol"],
        "price_feed": feed["price_feed"],
        "feed_decimals": decimals,
        "answer": Decimal(answer),
        "round_id": Decimal(int(words[0], 16)),
        "price": _price(answer, decimals),
        "updated_at": dt.datetime.fromtimestamp(int(words[3], 16), dt.UTC),
        "block_number": block,
        "source": "call",
    }


def read_round_data(
    client: RpcClient, feeds: pl.DataFrame, *, chain_id: int, day: dt.date, block: int
) -> tuple[pl.DataFrame, list[str]]:
    """latestRoundData() of each feed at `block`; the symbols that could not be read."""
    rows, missing = [], []
    for feed in feeds.iter_rows(named=True):
        try:
            result = client.call(
                "eth_call", [{"to": feed["price_feed"], "data": LATEST_ROUND_DATA}, hex(block)]
            )
        except RpcError:  # a revert: no round yet
            result = "0x"
        row = price_from_round_data(result, feed, chain_id=chain_id, day=day, block=block)
        if row is None:
            missing.append(feed["token_symbol"])
        else:
            rows.append(row)
    frame = pl.DataFrame(rows, schema=polars_schema(TokenPricesModel))
    return conform(frame, TokenPricesModel), missing


@dg.asset(
    key=KEY,
    deps=[
        dg.AssetKey(["raw", "logs"]),
        dg.AssetKey(["raw", "blocks"]),
        dg.AssetKey(["core", "tokens"]),
    ],
    partitions_def=chain_day_partitions,
    backfill_policy=PER_CHAIN_DAYS,
    retry_policy=TRANSIENT_RETRY,
    group_name="core",
    kinds={"delta", "polars"},
    check_specs=[dg.AssetCheckSpec("schema", asset=KEY, blocking=True)],
    description="One row per priced token and day: USD close from its on-chain price feed.",
    metadata={"table": TABLE, **schema_metadata(TokenPricesModel)},
)
def token_prices(
    context: dg.AssetExecutionContext, delta: dg.ResourceParam[DeltaStore], rpc: RpcResource
):
    """Write each chain-day's token prices of the run: from the feeds' update logs, or for a
    feed quiet that day, its latest round read from the node at the day's last block.
    """
    yield from each_day(
        context, run_chain_days(context), lambda chain, day: _one_day(delta, rpc, chain, day)
    )


def _one_day(delta: DeltaStore, rpc: RpcResource, chain, day):
    started = time.monotonic()
    labels = delta.read_day(
        chain,
        TOKENS_TABLE,
        day,
        columns=["token_address", "symbol"],
        schema=polars_schema(TokensModel),
    )
    feeds = feeds_frame(
        chain, dict(zip(labels["token_address"].to_list(), labels["symbol"].to_list(), strict=True))
    )
    df = empty(TokenPricesModel)
    missing: list[str] = []
    blocks = day_blocks(delta, chain, day) if feeds.height else None
    if blocks is not None:
        logs = delta.read_day(chain, "logs", day, schema=polars_schema(LogsModel))
        from_events = prices_from_events(logs, feeds)
        quiet = feeds.join(from_events.select("token_address"), on="token_address", how="anti")
        try:
            from_calls, missing = read_round_data(
                rpc.client(chain), quiet, chain_id=chain.chain_id, day=day, block=blocks[1]
            )
        except NodeError as e:  # another chain, a garbage or oversized answer: not retried
            raise dg.Failure(description=f"{chain.name} {day}: {e}", allow_retries=False) from e
        df = pl.concat([from_events, from_calls]).sort("token_symbol")
    schema = yield from require_schema(
        TokenPricesModel,
        df,
        f"{chain.name} {day}: token prices",
        hint="a feed answering zero or less?",
    )
    version = delta.replace_day(chain, TABLE, day, df)
    yield dg.MaterializeResult(
        metadata=table_metadata(
            rows_written=df.height,
            seconds=time.monotonic() - started,
            preview_frame=df.head(10),
            version=version,
            feeds=feeds.height,
            from_events=df.filter(pl.col("source") == "event").height,
            unpriced=", ".join(missing) or None,
        )
    )
    yield schema
