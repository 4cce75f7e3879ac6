"""core/balances: the closing balance of every tracked wallet, per token and day, exact.

A day's closing balance is the previous day's closing balance plus the day's movements:
native value in and out and fees (`core/native_transfers`), ERC-20 transfers of the chain's
configured tokens (`core/token_transfers`). On a wallet's first day (no row the day before:
the wallet was just added, or the previous day was never materialised) the opening balance is
read from the node at the block before the day's first block, and the day's movements are
added to it the same way.

Blocking check `matches_chain`: every tracked wallet's computed closing balance, for the
native coin and every configured token, equals what the node reports at the day's last block
(`eth_getBalance`, `balanceOf`). A difference fails the check and names the wallet, the token
and the amounts.

Tracked wallets and tokens come from `config/portfolios.yaml` and `config/chains.yaml`. A
token listed in chains.yaml with the address `0xeeee…eeee` stands for the native coin (it
carries the native coin's price feed) and is not an ERC-20.
"""

import datetime as dt
import time
from collections.abc import Iterable, Sequence
from typing import Annotated, ClassVar

import dagster as dg
import numpy as np
import pandera.polars as pa
import polars as pl

from assets.checks import require_schema
from assets.core.days import day_blocks
from assets.core.native_balance_movements import (
    TABLE as MOVEMENTS_TABLE,
)
from assets.core.native_balance_movements import (
    NativeBalanceMovementsModel,
    missing_kinds,
)
from assets.core.token_transfers import TokenTransfersModel
from assets.core.tokens import TABLE as TOKENS_TABLE
from assets.core.tokens import TokensModel
from assets.policies import FROM_DAY_BEFORE, TRANSIENT_RETRY
from assets.ranges import each_day, run_chain_days
from chainlake.config import ChainConfig, load_chains
from chainlake.lake import DeltaStore
from chainlake.metadata import preview, table_metadata
from chainlake.partitions import (
    chain_day_partitions,
    previous_day,
)
from chainlake.portfolios import WalletConfig, load_portfolios
from chainlake.rpc import NodeError, RpcClient, RpcError
from chainlake.schema import conform, empty, polars_schema, schema_metadata
from resources.rpc import RpcResource

KEY = dg.AssetKey(["core", "balances"])
TABLE = "balances"
NATIVE_TOKEN = "0xeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"
ADDRESS = r"^0x[0-9a-f]{40}$"
UNITS = pl.Decimal(38, 0)
MAX_UNITS = 10**38 - 1
BALANCE_OF = "0x70a08231"


class BalancesModel(pa.DataFrameModel):
    """One row per (address, token, day): the closing balance of a tracked wallet at the day's
    last block, in the token's smallest unit (wei for the native coin), exact Decimal(38,0).

    Rows whose closing balance is zero and that did not move that day are left out, except the
    native coin's, which every tracked wallet has every day: a missing row is a zero balance."""

    chain_id: pl.Int64 = pa.Field(description="EIP-155 chain id of the chain the row belongs to")
    date: pl.Date = pa.Field(description="UTC day whose closing balance the row holds")
    address: pl.String = pa.Field(str_matches=ADDRESS, description="the tracked wallet")
    token_address: pl.String = pa.Field(
        str_matches=ADDRESS, description="ERC-20 contract; 0xeeee…eeee for the native coin"
    )
    token_symbol: pl.String = pa.Field(
        description="token symbol from core/tokens (the chain's, or a chains.yaml override)"
    )
    decimals: pl.Int32 = pa.Field(
        ge=0, le=77, description="token decimals from core/tokens (18 for the native coin)"
    )
    balance: Annotated[pl.Decimal, 38, 0] = pa.Field(
        description="closing balance in the token's smallest unit"
    )
    net_change: Annotated[pl.Decimal, 38, 0] = pa.Field(
        description="the day's movements: closing minus opening balance"
    )
    block_number: pl.Int64 = pa.Field(ge=0, description="the day's last block (the close)")
    account_type: pl.String = pa.Field(
        isin=["eoa", "contract"], description="eoa or contract, from portfolios.yaml"
    )
    source: pl.String = pa.Field(
        isin=["carried", "chain"],
        description="carried: opening is the previous day's close; chain: opening read from "
        "the node (the wallet's first day)",
    )

    class Config:
        strict = True
        unique: ClassVar[list[str]] = ["address", "token_address", "date"]

    @pa.dataframe_check
    def eoa_never_negative(cls, data: pa.PolarsData) -> pl.LazyFrame:  # type: ignore[misc]
        """An externally owned account's balance is never negative."""
        # A contract can look negative when it receives native value through internal calls
        # (not transactions); an externally owned account never can.
        return data.lazyframe.select((pl.col("account_type") != "eoa") | (pl.col("balance") >= 0))


# -- pure transforms ------------------------------------------------------------------------


def tracked_tokens(chain: ChainConfig, metadata: pl.DataFrame) -> pl.DataFrame:
    """The native coin and the tracked ERC-20 tokens: (token_address, token_symbol, decimals).

    metadata: the day's `core/tokens` rows, whose symbol and decimals are the chain's (or a
    chains.yaml override). A token without code at the day's close (not deployed yet) is left
    out: no wallet holds it. A configured token without a row raises ValueError (core/tokens
    of the day was not materialised, or before the token was added to chains.yaml)."""
    rows = [(NATIVE_TOKEN, chain.native_symbol, chain.native_decimals)]
    configured = [t.address for t in chain.tokens if t.address != NATIVE_TOKEN]
    missing = sorted(set(configured) - set(metadata["token_address"].to_list()))
    if missing:
        raise ValueError(
            f"core/tokens has no row for token(s) {', '.join(missing)} that day: materialise "
            "core/tokens for it first"
        )
    rows += [
        (r["token_address"], r["symbol"], r["decimals"])
        for r in metadata.sort("token_address").iter_rows(named=True)
        if r["token_address"] in configured and r["has_code"]
    ]
    return pl.DataFrame(
        rows,
        schema={"token_address": pl.String, "token_symbol": pl.String, "decimals": pl.Int32},
        orient="row",
    )


def wallets_frame(wallets: Iterable[WalletConfig]) -> pl.DataFrame:
    """The wallets as a frame of (address, account_type)."""
    return pl.DataFrame(
        [(w.address, w.kind) for w in wallets],
        schema={"address": pl.String, "account_type": pl.String},
        orient="row",
    )


MOVEMENTS_SCHEMA = pl.Schema(
    {"date": pl.Date(), "address": pl.String(), "token_address": pl.String(), "amount": UNITS}
)


def balance_movements(
    native: pl.DataFrame | pl.LazyFrame,
    token_transfers: pl.DataFrame | pl.LazyFrame,
    wallets: Sequence[str],
    tokens: Sequence[str],
) -> pl.DataFrame:
    """Signed movements of the tracked wallets: (date, address, token_address, amount).

    Native, from `core/native_balance_movements` rows (with `kind` and `amount`): +amount to
    `to_address`, -amount from `from_address`. From `core/native_transfers` rows (`value` and
    `fee`, top-level transactions only): +value to the recipient, -value and -fee from the
    sender.
    ERC-20 (only `tokens`): +value to the recipient, -value from the sender. A transfer that
    touches a tracked wallet with a value too wide for Decimal(38,0) raises: an exact balance
    cannot be kept for it."""
    wallets = list(wallets)
    native = native.lazy()
    transfers = token_transfers.lazy().filter(pl.col("token_address").is_in(list(tokens)))
    if "kind" in native.collect_schema().names():
        received, sent = pl.col("amount"), pl.col("amount")
    else:
        received, sent = pl.col("value"), pl.col("value") + pl.col("fee")
    native_in = native.filter(pl.col("to_address").is_in(wallets) & (received > 0)).select(
        "date",
        pl.col("to_address").alias("address"),
        pl.lit(NATIVE_TOKEN).alias("token_address"),
        received.cast(UNITS).alias("amount"),
    )
    native_out = native.filter(pl.col("from_address").is_in(wallets)).select(
        "date",
        pl.col("from_address").alias("address"),
        pl.lit(NATIVE_TOKEN).alias("token_address"),
        (-sent).cast(UNITS).alias("amount"),
    )
    token_in = transfers.filter(pl.col("to_address").is_in(wallets)).select(
        "date",
        pl.col("to_address").alias("address"),
        "token_address",
        pl.col("value").cast(UNITS).alias("amount"),
    )
    token_out = transfers.filter(pl.col("from_address").is_in(wallets)).select(
        "date",
        pl.col("from_address").alias("address"),
        "token_address",
        (-pl.col("value")).cast(UNITS).alias("amount"),
    )
    moves = pl.concat([native_in, native_out, token_in, token_out]).collect()
    if moves["amount"].null_count():
        bad = moves.filter(pl.col("amount").is_null()).head(5)
        raise ValueError(
            "token transfers too wide for Decimal(38,0) touch tracked wallets: "
            + ", ".join(f"{r['address']} {r['token_address']}" for r in bad.iter_rows(named=True))
        )
    return moves.cast(MOVEMENTS_SCHEMA)


def closing_balances(
    opening: pl.DataFrame,
    movements: pl.DataFrame,
    *,
    wallets: pl.DataFrame,
    tokens: pl.DataFrame,
    days: Sequence[dt.date],
    chain_id: int,
    block_numbers: pl.DataFrame,
) -> pl.DataFrame:
    """Pure transform: opening balances + daily movements → closing balance rows for `days`.

    opening: (address, token_address, balance, source): balances before the first day, with
      `source` "carried" or "chain"; tracked wallets without a row open at zero.
    movements: from `balance_movements`, rows of `days` only.
    wallets: (address, account_type) of the tracked wallets; tokens: `tracked_tokens`.
    block_numbers: (date, block_number), the closing block of each day.
    One day is the asset's case; many consecutive days give the same rows as running the
    days one after another (a backfill in one pass)."""
    days = sorted(days)
    if not days:
        return empty(BalancesModel)
    opening = opening.join(wallets.select("address"), on="address", how="semi")
    # A wallet whose opening was read from the node is a first-day wallet for all its tokens.
    wallet_source = (
        opening.group_by("address")
        .agg((pl.col("source") == "chain").any().alias("first_day"))
        .select("address", pl.when("first_day").then(pl.lit("chain")).alias("first_source"))
    )
    moves = movements.join(wallets.select("address"), on="address", how="semi").join(
        tokens.select("token_address"), on="token_address", how="semi"
    )
    # Every (wallet, token) pair gets a small integer id, so the per-day grid below is joined,
    # accumulated and ordered on integers rather than on 42-character strings.
    pairs = (
        pl.concat(
            [
                wallets.select("address", pl.lit(NATIVE_TOKEN).alias("token_address")),
                opening.select("address", "token_address"),
                moves.select("address", "token_address"),
            ]
        )
        .unique()
        .sort("address", "token_address")
        .with_row_index("pair")
        .join(
            opening.select("address", "token_address", "balance"),
            on=["address", "token_address"],
            how="left",
            maintain_order="left",
        )
        .join(wallet_source, on="address", how="left", maintain_order="left")
        .join(tokens, on="token_address", how="inner", maintain_order="left")
        .join(wallets, on="address", how="inner", maintain_order="left")
        .with_columns(pl.col("balance").fill_null(pl.lit(0, UNITS)).cast(UNITS))
    )
    daily = (
        moves.join(
            pairs.select("address", "token_address", "pair"),
            on=["address", "token_address"],
            how="inner",
        )
        .group_by("pair", "date")
        .agg(pl.col("amount").sum())
    )
    n_days = len(days)
    grid = pl.DataFrame(
        {
            "pair": np.repeat(pairs["pair"].to_numpy(), n_days),
            "date": pl.Series(days * pairs.height, dtype=pl.Date),
        },
        schema={"pair": pl.UInt32, "date": pl.Date},
    )  # pair-major, days in order within each pair
    grid = (
        grid.join(daily, on=["pair", "date"], how="left", maintain_order="left")
        .with_columns(pl.col("amount").fill_null(pl.lit(0, UNITS)).cast(UNITS))
        .with_columns(pl.col("amount").cum_sum().over("pair").alias("moved"))
        .join(pairs.select("pair", "balance"), on="pair", how="left", maintain_order="left")
        .with_columns((pl.col("balance") + pl.col("moved")).alias("closing"))
    )
    native = pairs.filter(pl.col("token_address") == NATIVE_TOKEN)["pair"]
    kept = grid.filter(
        (pl.col("closing") != 0) | (pl.col("amount") != 0) | pl.col("pair").is_in(native)
    ).sort("date", "pair")
    out = (
        kept.select("pair", "date", "closing", "amount")
        .join(pairs.drop("balance"), on="pair", how="left", maintain_order="left")
        .join(block_numbers.cast({"date": pl.Date}), on="date", how="left", maintain_order="left")
        .select(
            pl.lit(chain_id, pl.Int64).alias("chain_id"),
            "date",
            "address",
            "token_address",
            "token_symbol",
            "decimals",
            pl.col("closing").alias("balance"),
            pl.col("amount").alias("net_change"),
            "block_number",
            "account_type",
            pl.when((pl.col("date") == days[0]) & (pl.col("first_source") == "chain"))
            .then(pl.lit("chain"))
            .otherwise(pl.lit("carried"))
            .alias("source"),
        )
    )
    return conform(out, BalancesModel)


def chain_mismatches(computed: pl.DataFrame, on_chain: pl.DataFrame) -> pl.DataFrame:
    """Every (address, token) where the computed closing balance differs from the node's.

    on_chain: (address, token_address, chain_balance) for every tracked wallet and token; a
    pair missing from `computed` is a computed zero."""
    return (
        on_chain.join(
            computed.select("address", "token_address", "balance"),
            on=["address", "token_address"],
            how="left",
        )
        .with_columns(pl.col("balance").fill_null(pl.lit(0, UNITS)).cast(UNITS))
        .filter(pl.col("balance") != pl.col("chain_balance").cast(UNITS))
        .select(
            "address",
            "token_address",
            pl.col("balance").alias("computed"),
            pl.col("chain_balance").cast(UNITS),
            (pl.col("balance") - pl.col("chain_balance").cast(UNITS)).alias("difference"),
        )
        .sort("address", "token_address")
    )


# -- reading the chain ----------------------------------------------------------------------


def read_chain_balances(
    client: RpcClient,
    addresses: Sequence[str],
    token_addresses: Sequence[str],
    block: int,
) -> pl.DataFrame:
    """(address, token_address, chain_balance) at `block` for every pair: `eth_getBalance`
    for the native coin, `balanceOf` for tokens. A token without code at that block (not yet
    deployed) reads as zero."""
    tag = hex(block)
    pairs = [(a, t) for a in addresses for t in token_addresses]
    calls = [
        ("eth_getBalance", [a, tag])
        if t == NATIVE_TOKEN
        else ("eth_call", [{"to": t, "data": BALANCE_OF + a[2:].rjust(64, "0")}, tag])
        for a, t in pairs
    ]
    values: list[int] = []
    for results in client.batches(calls):
        for raw in results:
            value = 0 if raw in (None, "0x") else int(raw, 16)
            if value > MAX_UNITS:
                raise ValueError(f"balance {value} is too wide for Decimal(38,0)")
            values.append(value)
    return pl.DataFrame(
        {
            "address": [a for a, _ in pairs],
            "token_address": [t for _, t in pairs],
            "chain_balance": pl.Series(values, dtype=pl.Int128).cast(UNITS),
        },
        schema={"address": pl.String, "token_address": pl.String, "chain_balance": UNITS},
    )


# -- the asset ------------------------------------------------------------------------------


@dg.asset(
    key=KEY,
    deps=[
        dg.AssetKey(["core", "native_balance_movements"]),
        dg.AssetKey(["core", "token_transfers"]),
        dg.AssetKey(["core", "tokens"]),
        dg.AssetKey(["raw", "blocks"]),
        dg.AssetDep(KEY, partition_mapping=previous_day()),
    ],
    partitions_def=chain_day_partitions,
    # it starts from its own day before: see FROM_DAY_BEFORE
    backfill_policy=FROM_DAY_BEFORE,
    retry_policy=TRANSIENT_RETRY,
    group_name="core",
    kinds={"delta", "polars"},
    check_specs=[
        dg.AssetCheckSpec("schema", asset=KEY, blocking=True),
        dg.AssetCheckSpec(
            "matches_chain",
            asset=KEY,
            blocking=True,
            description="Every tracked wallet's closing balance, native and per token, equals "
            "eth_getBalance / balanceOf at the day's last block.",
        ),
    ],
    description="One row per (tracked wallet, token, day): closing balance, exact.",
    metadata={"table": TABLE, **schema_metadata(BalancesModel)},
)
def balances(
    context: dg.AssetExecutionContext, delta: dg.ResourceParam[DeltaStore], rpc: RpcResource
):
    """Write each chain-day's closing balances of the tracked wallets, carried from the day
    before plus the day's movements, and check them against the node; a run's days in date
    order, each committed before the next starts from it.
    """
    yield from each_day(
        context,
        run_chain_days(context),
        lambda chain, day: _one_day(context, delta, rpc, chain, day),
    )


def _one_day(context: dg.AssetExecutionContext, delta: DeltaStore, rpc: RpcResource, chain, day):
    started = time.monotonic()
    wallets = load_portfolios(load_chains()).tracked_wallets(chain.name)
    wallet_frame = wallets_frame(wallets)
    blocks = day_blocks(delta, chain, day)
    if blocks is None or not wallets:
        reason = "no tracked wallets" if not wallets else "no block on or before this day"
        version = delta.replace_day(chain, TABLE, day, empty(BalancesModel))
        yield dg.MaterializeResult(
            metadata=table_metadata(
                rows_written=0,
                seconds=time.monotonic() - started,
                version=version,
                note=reason,
            )
        )
        yield (yield from require_schema(BalancesModel, empty(BalancesModel), "balances"))
        yield dg.AssetCheckResult(
            check_name="matches_chain",
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            description="nothing compared",
            metadata={"reason": reason, "compared": 0},
        )
        return
    open_block, close_block = blocks
    client = rpc.client(chain)
    try:
        tokens = tracked_tokens(
            chain, delta.read_day(chain, TOKENS_TABLE, day, schema=polars_schema(TokensModel))
        )
    except ValueError as e:
        raise dg.Failure(description=f"{chain.name} {day}: {e}", allow_retries=False) from e

    previous = delta.read_day(
        chain, TABLE, day - dt.timedelta(days=1), schema=polars_schema(BalancesModel)
    )
    known = set(previous["address"].to_list())
    new = [w.address for w in wallets if w.address not in known]
    opening = previous.select(
        "address", "token_address", "balance", pl.lit("carried").alias("source")
    )
    if new:
        context.log.info(
            f"{chain.name} {day}: reading the opening balance of {len(new)} wallet(s) "
            f"at block {open_block}"
        )
        try:
            from_chain = read_chain_balances(
                client, new, tokens["token_address"].to_list(), open_block
            )
        except RpcError as e:
            raise dg.Failure(
                description=f"{chain.name} {day}: the node cannot report the opening balances "
                f"of {len(new)} first-day wallet(s) at block {open_block} ({e}). A node that "
                "prunes old state (anvil --prune-history, a non-archive node) must keep it "
                "for the days being materialised.",
                allow_retries=False,
            ) from e
        except NodeError as e:  # another chain, a garbage or oversized answer: not retried
            raise dg.Failure(description=f"{chain.name} {day}: {e}", allow_retries=False) from e
        opening = pl.concat(
            [
                opening,
                from_chain.select(
                    "address",
                    "token_address",
                    pl.col("chain_balance").alias("balance"),
                    pl.lit("chain").alias("source"),
                ),
            ]
        )
    native = delta.read_day(
        chain, MOVEMENTS_TABLE, day, schema=polars_schema(NativeBalanceMovementsModel)
    )
    transfers = delta.read_day(
        chain, "token_transfers", day, schema=polars_schema(TokenTransfersModel)
    )
    try:
        moves = balance_movements(
            native, transfers, wallet_frame["address"].to_list(), tokens["token_address"].to_list()
        )
    except ValueError as e:
        raise dg.Failure(description=f"{chain.name} {day}: {e}", allow_retries=False) from e
    df = closing_balances(
        opening,
        moves,
        wallets=wallet_frame,
        tokens=tokens,
        days=[day],
        chain_id=chain.chain_id,
        block_numbers=pl.DataFrame({"date": [day], "block_number": [close_block]}),
    )
    schema = yield from require_schema(BalancesModel, df, f"{chain.name} {day}: balances")
    version = delta.replace_day(chain, TABLE, day, df)
    yield dg.MaterializeResult(
        metadata=table_metadata(
            rows_written=df.height,
            seconds=time.monotonic() - started,
            preview_frame=df.head(5),
            version=version,
            wallets=len(wallets),
            tokens=tokens.height,
            first_day_wallets=len(new),
            opening_block=open_block,
            closing_block=close_block,
        )
    )
    yield schema
    yield _chain_check(
        client,
        df,
        wallets,
        tokens,
        close_block,
        _not_covered(delta, chain, day),
        chain.trace_method,
    )


def _not_covered(delta: DeltaStore, chain, day) -> tuple[str, ...]:
    """The native movement kinds the day's rows cannot hold (its materialisation's
    `kinds_not_covered`): the internal ones when the day has no traces."""
    from assets.core.native_balance_movements import day_has_traces

    if not delta.exists(chain, "transactions"):
        return ()
    txs = delta.read_day(chain, "transactions", day, columns=["transaction_hash"])
    return missing_kinds(day_has_traces(delta, chain, day, txs.height) is not None)


def _chain_check(
    client: RpcClient,
    df: pl.DataFrame,
    wallets: Sequence[WalletConfig],
    tokens: pl.DataFrame,
    block: int,
    not_covered: Sequence[str] = (),
    trace_method: str = "auto",
) -> dg.AssetCheckResult:
    try:
        on_chain = read_chain_balances(
            client, [w.address for w in wallets], tokens["token_address"].to_list(), block
        )
    except RpcError as e:
        # The node answered but cannot serve that block's state (a pruned node): the check
        # cannot run, which is reported without blocking (a warning, not an error).
        return dg.AssetCheckResult(
            check_name="matches_chain",
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            description=f"the node cannot report balances at block {block}: {e}",
        )
    bad = chain_mismatches(df, on_chain)
    names = {w.address: w.name for w in wallets}
    symbols = dict(zip(tokens["token_address"], tokens["token_symbol"], strict=True))
    named = bad.select(
        pl.col("address").replace_strict(names, default=pl.col("address")).alias("wallet"),
        "address",
        "token_address",
        pl.col("token_address").replace_strict(symbols, default="?").alias("token"),
        pl.col("computed").cast(pl.String),
        pl.col("chain_balance").cast(pl.String).alias("on_chain"),
        pl.col("difference").cast(pl.String),
    )
    # what the computed native balance may lack: the kinds not covered on this chain-day
    missing = (
        f"; missing kind(s) {', '.join(not_covered)}: this chain-day has no traces "
        f"(the chain's trace_method is {trace_method}"
        + ("" if trace_method == "none" else " and its node served none")
        + "), so native value moved by internal calls is not counted"
        if not_covered
        else ""
    )

    def line(r: dict) -> str:
        text = (
            f"{r['wallet']} {r['token']}: computed {r['computed']}, chain "
            f"{r['on_chain']} (difference {r['difference']})"
        )
        return text + (missing if r["token_address"] == NATIVE_TOKEN else "")

    summary = "; ".join(line(r) for r in named.head(5).iter_rows(named=True))
    return dg.AssetCheckResult(
        check_name="matches_chain",
        passed=bad.height == 0,
        description=(
            f"{bad.height} balance(s) differ from the chain: {summary}"
            if bad.height
            else f"{on_chain.height} balances match the chain at block {block}"
        ),
        metadata={
            "block": block,
            "compared": on_chain.height,
            "mismatches": bad.height,
            "sample": preview(named.drop("token_address"), 10),
            "kinds_not_covered": ", ".join(not_covered) or "none",
        },
    )
