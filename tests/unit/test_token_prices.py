"""core/token_prices: AnswerUpdated decoding, the day's last answer, latestRoundData."""

import datetime as dt
from decimal import Decimal

import pandera.errors
import polars as pl
import pytest

from assets.core.token_prices import (
    ANSWER_UPDATED,
    TokenPricesModel,
    price_from_round_data,
    prices_from_events,
)
from chainlake.schema import conform, polars_schema

FEED_A = "0x" + "0a" * 20
FEED_B = "0x" + "0b" * 20
TOKEN_A = "0x" + "aa" * 20
TOKEN_B = "0x" + "bb" * 20
DAY = dt.date(2026, 11, 5)
FEEDS = pl.DataFrame(
    {
        "token_address": [TOKEN_A, TOKEN_B],
        "token_symbol": ["AAA", "BBB"],
        "price_feed": [FEED_A, FEED_B],
        "feed_decimals": [8, 8],
    },
    schema_overrides={"feed_decimals": pl.Int32},
)


def _word(v: int) -> str:
    return "0x" + f"{v % (1 << 256):064x}"


def _log(block: int, index: int, feed: str, answer: int, round_id: int, ts: int) -> dict:
    return {
        "chain_id": 31337,
        "date": DAY,
        "block_number": block,
        "block_hash": "0x" + "00" * 32,
        "block_timestamp": dt.datetime(2026, 11, 5, tzinfo=dt.UTC),
        "transaction_hash": "0x" + f"{block:064x}",
        "transaction_index": 0,
        "log_index": index,
        "address": feed,
        "topic0": ANSWER_UPDATED,
        "topic1": _word(answer),
        "topic2": _word(round_id),
        "topic3": None,
        "data": _word(ts),
    }


def test_last_answer_of_the_day_wins() -> None:
    from chainlake.raw.logs import LogsModel

    logs = conform(
        pl.DataFrame(
            [
                _log(10, 0, FEED_A, 3_000_12345678, 1, 1_793_000_000),
                _log(12, 3, FEED_A, 3_100_00000000, 2, 1_793_000_100),
                _log(12, 1, FEED_A, 2_900_00000000, 2, 1_793_000_050),
                _log(11, 0, "0x" + "cc" * 20, 1, 1, 1),  # not a configured feed
            ],
            schema=polars_schema(LogsModel),
        ),
        LogsModel,
    )
    out = prices_from_events(logs, FEEDS)
    TokenPricesModel.validate(out)
    assert out.height == 1
    row = out.row(0, named=True)
    assert row["price"] == Decimal("3100.000000000000000000")
    assert row["round_id"] == Decimal(2) and row["source"] == "event"
    assert row["updated_at"] == dt.datetime.fromtimestamp(1_793_000_100, dt.UTC)


def test_round_data_decoding_and_negative_answers_fail_the_schema() -> None:
    feed = FEEDS.row(1, named=True)
    result = "0x" + "".join(
        f"{v % (1 << 256):064x}" for v in (7, 99_995_000, 1_793_000_000, 1_793_000_000, 7)
    )
    row = price_from_round_data(result, feed, chain_id=1, day=DAY, block=50)
    assert row is not None
    assert row["price"] == Decimal("0.99995") and row["block_number"] == 50
    assert price_from_round_data("0x", feed, chain_id=1, day=DAY, block=50) is None
    negative = "0x" + "".join(f"{v % (1 << 256):064x}" for v in (7, -5, 1, 1, 7))
    bad = price_from_round_data(negative, feed, chain_id=1, day=DAY, block=50)
    assert bad is not None and bad["answer"] == Decimal(-5)
    frame = conform(pl.DataFrame([bad], schema=polars_schema(TokenPricesModel)), TokenPricesModel)
    with pytest.raises(pandera.errors.SchemaError, match=r"price|answer"):
        TokenPricesModel.validate(frame)
