"""A portfolio's day explained down to its blocks, from the lineage its rows recorded.

Given a row's lineage (`chainlake.lineage.Lineage`: the Delta versions the row read and the
chain-day's blocks) and the portfolio's wallets, `explain_day` reads by Delta time travel, at
exactly those versions:

- the holdings: per wallet and token, the closing balance (`balances`), the day's price
  (`token_prices`) and the value;
- the price feed answers behind the prices: feed, round id, answer, block, event or call;
- the transfers that moved each balance that day: the wallets' ERC-20 transfers of the tokens
  they hold (`token_transfers`) and their native transactions (`native_transfers`: value and
  the fee the sender paid), signed as they move the balance.

A later re-materialisation writes new versions and leaves these readable (until a vacuum
removes the files older versions need: then the error names the version and the vacuum).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Context, Decimal

import polars as pl
from deltalake.exceptions import DeltaError

from chainlake.config import ChainConfig
from chainlake.lake import DeltaStore
from chainlake.lineage import Lineage

UNITS = pl.Decimal(38, 0)
USD = pl.Decimal(38, 18)
_QUANTUM = Decimal(1).scaleb(-18)
# Amounts have up to 38 digits and a product of two Decimal(38,18) up to 76: the default
# context's 28 significant digits would round them (or refuse to quantize them) silently.
EXACT = Context(prec=100)


def _round(value: Decimal) -> Decimal:
    """To 18 places, half to even, as Polars rounds a product cast to Decimal(38,18)."""
    return value.quantize(_QUANTUM, rounding=ROUND_HALF_EVEN, context=EXACT)


def combined_value(explanations: Iterable[Explanation]) -> Decimal:
    """The holdings' value over several chain-days (a multi-chain portfolio's chains), exact."""
    total = Decimal(0)
    for e in explanations:
        total = EXACT.add(total, e.total_value)
    return total


class ExplainError(RuntimeError):
    """What the explanation needs cannot be read; the message says what and why in a line."""


@dataclass(frozen=True)
class Explanation:
    """A portfolio's chain-day as its inputs were, at the versions of `lineage`."""

    portfolio_id: str
    chain: str
    chain_id: int
    day: dt.date
    lineage: Lineage
    holdings: pl.DataFrame  # see HOLDINGS
    prices: pl.DataFrame  # see PRICES
    transfers: pl.DataFrame  # see TRANSFERS

    @property
    def total_value(self) -> Decimal:
        """The holdings' priced value, as the snapshot's `total_value` is computed: per token,
        the wallets' quantities summed, times the price, rounded to 18 places; then summed."""
        per_token: dict[str, tuple[Decimal, Decimal]] = {}
        for r in self.holdings.iter_rows(named=True):
            if r["price"] is not None:
                quantity, _ = per_token.get(r["token_address"], (Decimal(0), r["price"]))
                per_token[r["token_address"]] = (EXACT.add(quantity, r["quantity"]), r["price"])
        total = Decimal(0)
        for q, p in per_token.values():
            total = EXACT.add(total, _round(EXACT.multiply(q, p)))
        return total


HOLDINGS = pl.Schema(
    {
        "wallet": pl.String(),
        "address": pl.String(),
        "token_symbol": pl.String(),
        "token_address": pl.String(),
        "decimals": pl.Int32(),
        "balance": UNITS,  # closing balance, smallest units
        "net_change": UNITS,  # the day's movements as core/balances summed them
        "moved": UNITS,  # the sum of the transfers listed for this wallet and token
        "transfers": pl.UInt32(),
        "quantity": USD,
        "price": USD,
        "value": USD,
        "block_number": pl.Int64(),
    }
)
PRICES = pl.Schema(
    {
        "token_symbol": pl.String(),
        "token_address": pl.String(),
        "price_feed": pl.String(),
        "round_id": UNITS,
        "answer": UNITS,
        "feed_decimals": pl.Int32(),
        "price": USD,
        "block_number": pl.Int64(),
        "source": pl.String(),
        "updated_at": pl.Datetime("us", "UTC"),
    }
)
TRANSFERS = pl.Schema(
    {
        "block_number": pl.Int64(),
        "transaction_hash": pl.String(),
        "log_index": pl.Int32(),  # null for a native transfer
        "wallet": pl.String(),
        "address": pl.String(),
        "token_symbol": pl.String(),
        "token_address": pl.String(),
        "direction": pl.String(),  # in / out
        "counterparty": pl.String(),
        "amount": UNITS,  # signed, as it moves the wallet's balance (fee included)
        "fee": UNITS,  # native: the fee the wallet paid as sender; else null
    }
)


def _gone(store: DeltaStore, chain: ChainConfig, table: str, version: int, e: Exception) -> str:
    """Why `version` of `table` cannot be read, in one line: a later vacuum removed its
    files, the log no longer has it, or the store's own error."""
    current = store.current_version(chain, table)
    where = f"{chain.name} {table} version {version}"
    if current is None:
        return (
            f"{where} cannot be read: the table no longer exists at {store.table_uri(chain, table)}"
        )
    if version > current:
        return f"{where} does not exist: the table is at version {current}"
    vacuums = [
        c
        for c in store.history(chain, table, limit=max(current - version, 1))
        if c.get("operation") == "VACUUM START" and int(c.get("version", -1)) > version
    ]
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    if vacuums:
        vacuum = vacuums[-1]  # the first vacuum after the version
        params = vacuum.get("operationParameters") or {}
        millis = params.get("specifiedRetentionMillis") or params.get("defaultRetentionMillis")
        retention = f"{int(millis) / 3_600_000:g} h" if millis is not None else "its"
        when = dt.datetime.fromtimestamp(int(vacuum["timestamp"]) / 1000, dt.UTC)
        return (
            f"{where} can no longer be read: the vacuum at version {vacuum['version']} "
            f"({when:%Y-%m-%d %H:%M} UTC) with a retention of {retention} removed its files"
        )
    return f"{where} cannot be read (the table is at version {current}): {first}"


def read_at(
    store: DeltaStore, chain: ChainConfig, table: str, day: dt.date, version: int | None
) -> pl.DataFrame | None:
    """The rows of `day` of `table` at `version` (time travel); None when the lineage records
    no version (the table did not exist when the row was computed).

    Raises:
        ExplainError: That version cannot be read (vacuumed, or not in the table's log).
    """
    if version is None:
        return None
    try:
        frame = store.read_day(chain, table, day, version=version)
    except (OSError, DeltaError, pl.exceptions.ComputeError) as e:
        raise ExplainError(_gone(store, chain, table, version, e)) from e
    return frame


def holdings_frame(
    balances: pl.DataFrame,
    prices: pl.DataFrame,
    transfers: pl.DataFrame,
    wallets: Mapping[str, str],
) -> pl.DataFrame:
    """Pure: the wallets' closing balances of the day, each with its price, value and the
    transfers listed for it. `wallets`: address -> name."""
    held = balances.filter(pl.col("address").is_in(list(wallets)))
    if held.height == 0:
        return pl.DataFrame(schema=HOLDINGS)
    price_of = {r["token_address"]: r["price"] for r in prices.iter_rows(named=True)}
    moved: dict[tuple[str, str], tuple[Decimal, int]] = {}
    for r in transfers.iter_rows(named=True):
        key = (r["address"], r["token_address"])
        total, n = moved.get(key, (Decimal(0), 0))
        moved[key] = (EXACT.add(total, r["amount"]), n + 1)
    rows = []
    for r in held.sort("address", "token_symbol").iter_rows(named=True):
        quantity = Decimal(int(r["balance"])).scaleb(-int(r["decimals"]), EXACT)
        quantity = quantity.quantize(_QUANTUM, context=EXACT)
        price = price_of.get(r["token_address"])
        total, n = moved.get((r["address"], r["token_address"]), (Decimal(0), 0))
        rows.append(
            {
                "wallet": wallets[r["address"]],
                "address": r["address"],
                "token_symbol": r["token_symbol"],
                "token_address": r["token_address"],
                "decimals": r["decimals"],
                "balance": r["balance"],
                "net_change": r["net_change"],
                "moved": total,
                "transfers": n,
                "quantity": quantity,
                "price": price,
                "value": None if price is None else _round(EXACT.multiply(quantity, price)),
                "block_number": r["block_number"],
            }
        )
    return pl.DataFrame(rows, schema=HOLDINGS, orient="row")


def transfers_frame(
    token_transfers: pl.DataFrame,
    native_transfers: pl.DataFrame,
    wallets: Mapping[str, str],
    tokens: Mapping[str, str],
) -> pl.DataFrame:
    """Pure: every movement of the wallets' balances in the day's transfers, one row per
    wallet and side (a transfer between two of the wallets is listed for both), signed as it
    moves the balance. ERC-20 transfers count only for `tokens` (address -> symbol: what the
    wallets' balances hold); a native transfer moves `value` in, and `value + fee` out of the
    sender (the fee even when it reverted, `value` 0 then)."""
    addresses = list(wallets)
    native_symbol = tokens.get(NATIVE_TOKEN, "native")
    rows: list[dict[str, object]] = []
    erc20 = token_transfers.filter(
        pl.col("token_address").is_in([t for t in tokens if t != NATIVE_TOKEN])
        & (pl.col("from_address").is_in(addresses) | pl.col("to_address").is_in(addresses))
    )
    for r in erc20.iter_rows(named=True):
        value = r["value"]
        if value is None:  # wider than Decimal(38,0): balances refuse those for tracked wallets
            continue
        common = {
            "block_number": r["block_number"],
            "transaction_hash": r["transaction_hash"],
            "log_index": r["log_index"],
            "token_symbol": tokens[r["token_address"]],
            "token_address": r["token_address"],
            "fee": None,
        }
        if r["from_address"] in wallets:
            rows.append({**common, "wallet": wallets[r["from_address"]],
                         "address": r["from_address"], "direction": "out",
                         "counterparty": r["to_address"], "amount": -value})  # fmt: skip
        if r["to_address"] in wallets:
            rows.append({**common, "wallet": wallets[r["to_address"]],
                         "address": r["to_address"], "direction": "in",
                         "counterparty": r["from_address"], "amount": value})  # fmt: skip
    native = native_transfers.filter(
        pl.col("from_address").is_in(addresses)
        | (pl.col("to_address").is_in(addresses) & (pl.col("value") > 0))
    )
    for r in native.iter_rows(named=True):
        common = {
            "block_number": r["block_number"],
            "transaction_hash": r["transaction_hash"],
            "log_index": None,
            "token_symbol": native_symbol,
            "token_address": NATIVE_TOKEN,
        }
        if r["from_address"] in wallets:
            rows.append({**common, "wallet": wallets[r["from_address"]],
                         "address": r["from_address"], "direction": "out",
                         "counterparty": r["to_address"], "amount": -EXACT.add(r["value"], r["fee"]),
                         "fee": r["fee"]})  # fmt: skip
        if r["to_address"] in wallets and r["value"] > 0:
            rows.append({**common, "wallet": wallets[r["to_address"]],
                         "address": r["to_address"], "direction": "in",
                         "counterparty": r["from_address"], "amount": r["value"],
                         "fee": None})  # fmt: skip
    if not rows:
        return pl.DataFrame(schema=TRANSFERS)
    frame = pl.DataFrame(rows, schema=TRANSFERS, orient="row")
    return frame.sort("block_number", "transaction_hash", "log_index", "address", nulls_last=True)


NATIVE_TOKEN = "0x" + "e" * 40  # the native coin's token address (as core/balances has it)


def explain_day(
    store: DeltaStore,
    chain: ChainConfig,
    day: dt.date,
    *,
    portfolio_id: str,
    wallets: Mapping[str, str],
    lineage: Lineage,
) -> Explanation:
    """The portfolio's holdings, prices and transfers of `day`, read at the versions of
    `lineage`. `wallets`: the portfolio's wallets, address -> name.

    Raises:
        ExplainError: A recorded version cannot be read (see `read_at`).
    """
    balances = read_at(store, chain, "balances", day, lineage.balances_version)
    prices = read_at(store, chain, "token_prices", day, lineage.prices_version)
    token_transfers = read_at(store, chain, "token_transfers", day, lineage.token_transfers_version)
    native = read_at(store, chain, "native_transfers", day, lineage.native_transfers_version)
    if balances is None or balances.height == 0:
        balances = pl.DataFrame(
            schema={
                "address": pl.String,
                "token_address": pl.String,
                "token_symbol": pl.String,
                "decimals": pl.Int32,
                "balance": UNITS,
                "net_change": UNITS,
                "block_number": pl.Int64,
            }
        )
    held = balances.filter(pl.col("address").is_in(list(wallets)))
    tokens = dict(zip(held["token_address"], held["token_symbol"], strict=True))
    empty_transfers = pl.DataFrame(
        schema={
            "block_number": pl.Int64,
            "transaction_hash": pl.String,
            "log_index": pl.Int32,
            "token_address": pl.String,
            "from_address": pl.String,
            "to_address": pl.String,
            "value": UNITS,
            "fee": UNITS,
        }
    )
    transfers = transfers_frame(
        token_transfers if token_transfers is not None else empty_transfers.drop("fee"),
        native if native is not None else empty_transfers.drop("log_index", "token_address"),
        wallets,
        tokens,
    )
    price_rows = (
        prices.select(*PRICES.names()).cast(PRICES).sort("token_symbol")
        if prices is not None and prices.height
        else pl.DataFrame(schema=PRICES)
    )
    return Explanation(
        portfolio_id=portfolio_id,
        chain=chain.name,
        chain_id=chain.chain_id,
        day=day,
        lineage=lineage,
        holdings=holdings_frame(held, price_rows, transfers, wallets),
        prices=price_rows,
        transfers=transfers,
    )
