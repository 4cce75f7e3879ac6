"""Benchmark: balances → portfolio snapshots → rolling risk, the project's transforms against
the most direct hand-written DuckDB SQL, on the same synthetic history in the same run.

    .venv/bin/python bench/transform.py                 # 10M transfers, 100k wallets, 50 tokens,
                                                        # 365 days, 1,000 portfolios
    .venv/bin/python bench/transform.py --transfers 200000 --wallets 5000 --portfolios 50  # quick

The history is generated once (deterministic for a seed) into `data/bench/transform/<params>`:
ERC-20 transfers in a Delta table partitioned by day (the layout of `core/token_transfers`),
daily USD prices of every token (as `core/token_prices`), the opening balances of the tracked
wallets and the portfolios' wallets. Transfers follow a Zipf token popularity; 30 % of them
touch one of the ~3,000 tracked wallets (the 1,000 portfolios hold 1-5 wallets each; the other
~97,000 wallets are the rest of the chain), each tracked wallet trading its own few tokens.

Each side runs in its own child process (so each peak memory is its own), reads the same
files and writes its three results as Parquet:

- project: `assets.core.balances.balance_movements` + `closing_balances` over month-long ranges
  of days (what a backfill run does; the daily asset is the same call with one day),
  `assets.analytics.portfolio_snapshots.portfolio_snapshots_frame` on the same ranges, then
  `assets.analytics.risk_metrics.risk_metrics_frame` over all days (30- and 90-day windows);
- baseline: DuckDB SQL over `delta_scan` and Parquet, one statement per table, no Python
  in the loop.

The parent then checks that both computed the same thing (balances and values exactly,
returns and risk figures to 1e-9) and reports wall time and peak RSS. Results go to
`bench/results/transform-<time>.json`; `bench/README.md` records them.
"""

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NATIVE_TOKEN = "0x" + "e" * 40
START = dt.date(2025, 1, 1)
FEED_DECIMALS = 8
TRACKED_SHARE = 0.3
FAVOURITES = 8
CHAIN_ID = 1


# -- synthetic history ----------------------------------------------------------------------


def _addresses(rng: np.random.Generator, n: int) -> list[str]:
    raw = rng.integers(0, 256, size=(n, 20), dtype=np.uint8)
    return ["0x" + row.tobytes().hex() for row in raw]


def generate(args: argparse.Namespace, out: Path) -> None:
    """Write the synthetic history into `out` (skipped when already there)."""
    done = out / "DONE"
    if done.exists():
        return
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    rng = np.random.default_rng(args.seed)
    days = [START + dt.timedelta(days=i) for i in range(args.days)]

    # Tokens: decimals 18, 6 or 8; three stablecoins; the rest follow a market factor.
    tokens = _addresses(rng, args.tokens)
    decimals = rng.choice([18, 18, 18, 6, 8], size=args.tokens)
    decimals[:3] = 6
    symbols = [f"T{i:02d}" for i in range(args.tokens)]
    symbols[:3] = ["USDC", "USDT", "DAI"]
    market = rng.normal(0.0005, 0.035, args.days)
    prices: list[dict[str, Any]] = []
    all_tokens = [(NATIVE_TOKEN, "ETH", 18, 3000.0, 1.0)] + [
        (
            tokens[i],
            symbols[i],
            int(decimals[i]),
            1.0 if i < 3 else float(np.exp(rng.normal(1.5, 2.0))),
            0.0 if i < 3 else float(rng.uniform(0.5, 1.5)),
        )
        for i in range(args.tokens)
    ]
    for address, symbol, _, base, beta in all_tokens:
        noise = rng.normal(0, 0.0004 if beta == 0 else 0.03, args.days)
        path = base * np.exp(np.cumsum(beta * market + noise))
        answers = np.maximum(np.round(path * 10**FEED_DECIMALS), 1).astype(np.int64)
        for d, answer in zip(days, answers, strict=True):
            prices.append({"date": d, "token_address": address, "token_symbol": symbol,
                           "answer": int(answer)})  # fmt: skip
    price_frame = pl.DataFrame(prices).with_columns(
        pl.col("answer").cast(pl.Decimal(38, 0)),
        (pl.col("answer").cast(pl.Decimal(38, 18)) * pl.lit(Decimal("1e-8"), pl.Decimal(38, 18)))
        .cast(pl.Decimal(38, 18))
        .alias("price"),
        pl.lit(FEED_DECIMALS, pl.Int32).alias("feed_decimals"),
    )
    price_frame.write_parquet(out / "prices.parquet")
    pl.DataFrame(
        {
            "token_address": [t[0] for t in all_tokens],
            "token_symbol": [t[1] for t in all_tokens],
            "decimals": [t[2] for t in all_tokens],
        },
        schema={"token_address": pl.String, "token_symbol": pl.String, "decimals": pl.Int32},
    ).write_parquet(out / "tokens.parquet")

    # Wallets and portfolios: 1-5 wallets per portfolio, drawn from the population.
    wallets = _addresses(rng, args.wallets)
    sizes = rng.integers(1, 6, size=args.portfolios)
    chosen = rng.choice(args.wallets, size=int(sizes.sum()), replace=False)
    members = pl.DataFrame(
        {
            "portfolio_id": np.repeat([f"p{i:04d}" for i in range(args.portfolios)], sizes),
            "address": [wallets[i] for i in chosen],
        }
    )
    members.write_parquet(out / "members.parquet")
    n_tracked = len(chosen)

    # Each tracked wallet trades a few favourite tokens and opens with a large balance of each
    # (and 10 of the native coin), so no externally owned account goes negative.
    popularity = 1.0 / np.arange(1, args.tokens + 1) ** 1.1
    popularity /= popularity.sum()
    favourites = np.stack(
        [rng.choice(args.tokens, size=FAVOURITES, replace=False, p=popularity)
         for _ in range(n_tracked)]
    )  # fmt: skip
    opening_rows = []
    for w in range(n_tracked):
        address = wallets[chosen[w]]
        opening_rows.append((address, NATIVE_TOKEN, 10 * 10**18))
        for t in favourites[w]:
            units = int(rng.integers(1_000_000, 10_000_000))
            opening_rows.append((address, tokens[t], units * 10 ** int(decimals[t])))
    pl.DataFrame(
        {
            "address": [r[0] for r in opening_rows],
            "token_address": [r[1] for r in opening_rows],
            "balance": pl.Series([r[2] for r in opening_rows], dtype=pl.Int128).cast(
                pl.Decimal(38, 0)
            ),
        }
    ).write_parquet(out / "opening.parquet")

    # Transfers.
    n = args.transfers
    day_idx = np.sort(rng.integers(0, args.days, size=n))
    token_idx = rng.choice(args.tokens, size=n, p=popularity)
    # The rest of the chain trades among itself; tracked wallets move only through their own
    # transfers (below), in tokens they hold.
    untracked = np.setdiff1d(np.arange(args.wallets), chosen)
    frm = untracked[rng.integers(0, len(untracked), size=n)]
    to = untracked[rng.integers(0, len(untracked), size=n)]
    touches = rng.random(n) < TRACKED_SHARE
    k = int(touches.sum())
    who = rng.integers(0, n_tracked, size=k)
    token_idx[touches] = favourites[who, rng.integers(0, FAVOURITES, size=k)]
    outgoing = rng.random(k) < 0.5
    tracked_global = chosen[who]
    f_t, t_t = frm[touches], to[touches]
    f_t[outgoing] = tracked_global[outgoing]
    t_t[~outgoing] = tracked_global[~outgoing]
    frm[touches], to[touches] = f_t, t_t
    micro = np.maximum(np.exp(rng.normal(np.log(100.0), 1.5, size=n)) * 1e6, 1).astype(np.int64)
    exponent = decimals[token_idx] - 6
    wallet_series = pl.Series(wallets, dtype=pl.String)
    token_series = pl.Series(tokens, dtype=pl.String)
    transfers = pl.DataFrame(
        {
            "date": pl.Series(day_idx + (START - dt.date(1970, 1, 1)).days, dtype=pl.Int32).cast(
                pl.Date
            ),
            "block_number": (day_idx.astype(np.int64) * 7200 + rng.integers(0, 7200, size=n)),
            "token_address": token_series.gather(token_idx),
            "from_address": wallet_series.gather(frm),
            "to_address": wallet_series.gather(to),
            "micro": micro,
            "exponent": exponent.astype(np.int32),
        }
    )
    factor = pl.DataFrame(
        {"exponent": sorted(set(exponent.tolist()))}, schema={"exponent": pl.Int32}
    )
    factor = factor.with_columns(
        pl.col("exponent").map_elements(lambda e: Decimal(10) ** e, return_dtype=pl.Decimal(38, 0))
        .alias("factor")
    )  # fmt: skip
    transfers = (
        transfers.join(factor, on="exponent", how="left")
        .with_columns((pl.col("micro").cast(pl.Decimal(38, 0)) * pl.col("factor")).alias("value"))
        .drop("micro", "exponent", "factor")
        .sort("date", "block_number")
    )
    from deltalake import write_deltalake

    write_deltalake(
        str(out / "delta" / "bench" / "synthetic" / "token_transfers"),
        transfers.to_arrow(),
        partition_by=["date"],
        mode="overwrite",
    )
    meta = {"tracked_wallets": n_tracked, "transfers_touching_tracked": k,
            "seconds": round(time.monotonic() - t0, 1)}  # fmt: skip
    (out / "meta.json").write_text(json.dumps(meta))
    done.write_text("ok")


# -- the project's transforms ---------------------------------------------------------------


def run_project(data: Path, out: Path, chunk_days: int) -> dict[str, float]:
    from assets.analytics.portfolio_snapshots import portfolio_snapshots_frame
    from assets.analytics.risk_metrics import risk_metrics_frame
    from assets.core.balances import balance_movements, closing_balances
    from assets.core.native_transfers import NativeTransfersModel
    from chainlake.config import ChainConfig
    from chainlake.lake import DeltaStore
    from chainlake.schema import empty

    timings: dict[str, float] = {}
    t_start = time.monotonic()
    chain = ChainConfig(name="bench", network="bench", subnet="synthetic", chain_id=CHAIN_ID,
                        rpc_urls=("http://127.0.0.1:1",), start_date=START)  # fmt: skip
    store = DeltaStore(root=str(data / "delta"))
    tokens = pl.read_parquet(data / "tokens.parquet")
    members = pl.read_parquet(data / "members.parquet")
    prices = pl.read_parquet(data / "prices.parquet")
    wallets = members.select("address").unique().with_columns(pl.lit("eoa").alias("account_type"))
    opening = pl.read_parquet(data / "opening.parquet").with_columns(
        pl.lit("chain").alias("source")
    )
    native = empty(NativeTransfersModel)
    all_days = sorted(prices["date"].unique().to_list())
    blocks = pl.DataFrame({"date": all_days,
                           "block_number": [(i + 1) * 7200 - 1 for i in range(len(all_days))]})  # fmt: skip
    wallet_list = wallets["address"].to_list()
    token_list = tokens["token_address"].to_list()
    (out / "balances").mkdir(parents=True, exist_ok=True)
    snapshot_parts: list[pl.DataFrame] = []
    state: pl.DataFrame | None = None  # the since-inception state of the chunk's day before
    previous_close = None
    t_bal = t_snap = 0.0
    for i in range(0, len(all_days), chunk_days):
        days = all_days[i : i + chunk_days]
        t0 = time.monotonic()
        transfers = store.read_days(
            chain, "token_transfers", days,
            columns=["date", "token_address", "from_address", "to_address", "value"],
        )  # fmt: skip
        moves = balance_movements(native, transfers, wallet_list, token_list)
        del transfers
        bal = closing_balances(opening, moves, wallets=wallets, tokens=tokens, days=days,
                               chain_id=CHAIN_ID, block_numbers=blocks)  # fmt: skip
        t1 = time.monotonic()
        t_bal += t1 - t0
        day_prices = prices.filter(
            pl.col("date").is_between(days[0] - dt.timedelta(days=1), days[-1])
        )
        inputs = bal if previous_close is None else pl.concat([previous_close, bal])
        snaps = portfolio_snapshots_frame(inputs, day_prices, members, days=days,
                                          chain_id=CHAIN_ID, state=state)  # fmt: skip
        state = snaps.filter(pl.col("date") == days[-1])
        t_snap += time.monotonic() - t1
        last = bal.filter(pl.col("date") == days[-1])
        opening = last.select(
            "address", "token_address", "balance", pl.lit("carried").alias("source")
        )
        previous_close = last
        # Written as they come, as the assets write each day to Delta: memory stays flat.
        bal.select("date", "address", "token_address", "balance").write_parquet(
            out / "balances" / f"part-{i:04d}.parquet"
        )
        snapshot_parts.append(snaps)
    timings["balances_s"] = t_bal
    timings["snapshots_s"] = t_snap
    t0 = time.monotonic()
    snapshots = pl.concat(snapshot_parts)
    risk = risk_metrics_frame(
        snapshots.select("portfolio_id", "date",
                         "daily_return", "asset_allocation"),
        prices, days=all_days, chain_id=CHAIN_ID,
    )  # fmt: skip
    timings["risk_s"] = time.monotonic() - t0
    t0 = time.monotonic()
    snapshots.write_parquet(out / "snapshots.parquet")
    risk.write_parquet(out / "risk.parquet")
    timings["write_s"] = time.monotonic() - t0
    timings["total_s"] = time.monotonic() - t_start
    return timings


def run_daily(data: Path, project_out: Path, day_numbers: list[int], reps: int) -> dict[str, Any]:
    """One day's balances → snapshots → risk, as the daily assets compute them, at each of
    `day_numbers` (1-based days of the history), over the project side's stored results.

    What each asset reads, from stores laid out like the real ones: the day before's close
    from the stored balances (Delta: one partition a day; here the range run's Parquet files,
    pruned by date), the day's transfers from Delta; the day before's snapshots (the asset's
    `read_state`: the since-inception state) and the 89 earlier snapshots (the risk windows)
    from the stored snapshots, rewritten first (untimed) one Parquet file a month as the
    ClickHouse table is partitioned (`toYYYYMM(date)`). Reads and transforms are timed
    apart. The days are timed in turn, `reps` times (alternating order) after one untimed
    round, so machine load falls on all of them alike; the median is kept."""
    from assets.analytics.portfolio_snapshots import STATE_COLUMNS, portfolio_snapshots_frame
    from assets.analytics.risk_metrics import WINDOWS, risk_metrics_frame
    from assets.core.balances import balance_movements, closing_balances
    from assets.core.native_transfers import NativeTransfersModel
    from chainlake.config import ChainConfig
    from chainlake.lake import DeltaStore
    from chainlake.schema import empty

    chain = ChainConfig(name="bench", network="bench", subnet="synthetic", chain_id=CHAIN_ID,
                        rpc_urls=("http://127.0.0.1:1",), start_date=START)  # fmt: skip
    store = DeltaStore(root=str(data / "delta"))
    tokens = pl.read_parquet(data / "tokens.parquet")
    members = pl.read_parquet(data / "members.parquet")
    prices = pl.read_parquet(data / "prices.parquet")
    wallets = members.select("address").unique().with_columns(pl.lit("eoa").alias("account_type"))
    wallet_list, token_list = wallets["address"].to_list(), tokens["token_address"].to_list()
    native = empty(NativeTransfersModel)
    all_days = sorted(prices["date"].unique().to_list())
    stored_balances = str(project_out / "balances" / "*.parquet")
    one = dt.timedelta(days=1)

    # the snapshots as the ClickHouse table holds them: a partition a month
    by_month = project_out / "snapshots-by-month"
    shutil.rmtree(by_month, ignore_errors=True)
    by_month.mkdir(parents=True)
    stored = pl.read_parquet(project_out / "snapshots.parquet").select(
        "date", "daily_return", "asset_allocation", *STATE_COLUMNS,
    )  # fmt: skip
    months = stored.with_columns(pl.col("date").dt.strftime("%Y%m").alias("month"))
    for (month,), part in months.partition_by("month", as_dict=True, include_key=False).items():
        part.sort("portfolio_id", "date").write_parquet(by_month / f"{month}.parquet")
    del stored, months

    def snapshots_between(first: dt.date, last: dt.date, columns: list[str]) -> pl.DataFrame:
        months = sorted({(first + dt.timedelta(days=i)).strftime("%Y%m")
                         for i in range((last - first).days + 1)})  # fmt: skip
        files = [
            str(by_month / f"{m}.parquet") for m in months if (by_month / f"{m}.parquet").exists()
        ]
        if not files:
            return pl.DataFrame(schema={c: t for c, t in [("portfolio_id", pl.String),
                                ("date", pl.Date), ("daily_return", pl.Float64)] if c in columns})  # fmt: skip
        return (
            pl.scan_parquet(files)
            .filter(pl.col("date").is_between(first, last))
            .select(columns)
            .collect()
        )

    def day_once(day: dt.date) -> tuple[dict[str, float], pl.DataFrame]:
        t: dict[str, float] = {}
        t0 = time.monotonic()
        # balances: the day before's close (the asset's read_day), the day's transfers
        previous = pl.scan_parquet(stored_balances).filter(pl.col("date") == day - one).collect()
        transfers = store.read_days(
            chain, "token_transfers", [day],
            columns=["date", "token_address", "from_address", "to_address", "value"],
        )  # fmt: skip
        t1 = time.monotonic()
        moves = balance_movements(native, transfers, wallet_list, token_list)
        opening = previous.select(
            "address", "token_address", "balance", pl.lit("carried").alias("source")
        )
        block = pl.DataFrame({"date": [day], "block_number": [(day - START).days * 7200 + 7199]})
        bal = closing_balances(opening, moves, wallets=wallets, tokens=tokens, days=[day],
                               chain_id=CHAIN_ID, block_numbers=block)  # fmt: skip
        t2 = time.monotonic()
        t["balances_read_s"], t["balances_compute_s"] = t1 - t0, t2 - t1
        # snapshots: the day before's rows (read_state), both days' balances and prices
        history = snapshots_between(day - one, day - one, list(STATE_COLUMNS))
        t3 = time.monotonic()
        cols = ["date", "address", "token_address", "token_symbol", "decimals", "balance"]
        both = pl.concat(
            [previous.join(tokens, on="token_address", how="left").select(cols), bal.select(cols)],
            how="vertical_relaxed",
        )
        snaps = portfolio_snapshots_frame(
            both, prices.filter(pl.col("date").is_between(day - one, day)), members,
            days=[day], chain_id=CHAIN_ID, state=history,
        )  # fmt: skip
        t4 = time.monotonic()
        t["snapshots_read_s"], t["snapshots_compute_s"] = t3 - t2, t4 - t3
        # risk: the 89 snapshots before the day and this one, prices from the day before them
        start = day - dt.timedelta(days=max(WINDOWS) - 1)
        window = snapshots_between(
            start, day - one, ["portfolio_id", "date", "daily_return", "asset_allocation"]
        )
        t5 = time.monotonic()
        today = snaps.select("portfolio_id", "date",
                             "daily_return", "asset_allocation")  # fmt: skip
        risk = risk_metrics_frame(
            pl.concat([window, today], how="vertical_relaxed"),
            prices.filter(pl.col("date").is_between(start - one, day)),
            days=[day], chain_id=CHAIN_ID,
        )  # fmt: skip
        t6 = time.monotonic()
        t["risk_read_s"], t["risk_compute_s"] = t5 - t4, t6 - t5
        t["total_s"] = t6 - t0
        t["state_rows"], t["window_rows"], t["risk_rows"] = (
            history.height, window.height, risk.height,
        )  # fmt: skip
        return t, bal

    runs: dict[int, list[dict[str, float]]] = {n: [] for n in day_numbers}
    checked: dict[int, bool] = {}
    for n in day_numbers:
        if not 3 <= n <= len(all_days):
            raise ValueError(f"day {n} is outside 3..{len(all_days)}")
    for rep in range(reps + 1):  # the first round warms caches and imports and is not kept
        for n in day_numbers if rep % 2 == 0 else day_numbers[::-1]:
            day = all_days[n - 1]
            figures, bal = day_once(day)
            if rep == 0:
                # the day's close is the one the range run stored
                stored_day = pl.scan_parquet(stored_balances).filter(pl.col("date") == day)
                stored_day = stored_day.collect()
                key = ["address", "token_address"]
                joined = bal.select(*key, "balance").join(
                    stored_day.select(*key, "balance"), on=key, how="full", coalesce=True
                )
                checked[n] = bool(
                    joined.height == stored_day.height
                    and (joined["balance"] == joined["balance_right"]).all()
                )
            else:
                runs[n].append(figures)
    median = {n: {k: float(np.median([r[k] for r in rs])) for k in rs[0]} for n, rs in runs.items()}
    first, last = day_numbers[0], day_numbers[-1]
    ratios = {
        f"{n}/{first}": round(median[n]["total_s"] / median[first]["total_s"], 3)
        for n in day_numbers[1:]
    }
    return {
        "days": {n: all_days[n - 1].isoformat() for n in day_numbers},
        "runs": {str(n): rs for n, rs in runs.items()},
        "median": {str(n): m for n, m in median.items()},
        "median_s": {str(n): round(m["total_s"], 3) for n, m in median.items()},
        "ratios": ratios,
        "ratio_last_over_first": ratios[f"{last}/{first}"],
        "closes_match_range_run": {str(n): ok for n, ok in checked.items()},
    }


# -- the baseline: hand-written DuckDB SQL ---------------------------------------------------

BASELINE_SQL = """
-- x / div rounded half away from zero (div = 1: x * mul), in integers.
CREATE MACRO rdiv(x, mul, div) AS CASE WHEN div = 1 THEN x * mul
    ELSE (x + sign(x) * (div // 2)) // div END;
CREATE MACRO e18(x) AS CAST(x AS DECIMAL(38, 0)) * CAST('1e-18' AS DECIMAL(38, 18));

CREATE TABLE tokens AS SELECT * FROM read_parquet('{data}/tokens.parquet');
CREATE TABLE prices AS SELECT * FROM read_parquet('{data}/prices.parquet');
CREATE TABLE members AS SELECT * FROM read_parquet('{data}/members.parquet');
CREATE TABLE opening AS SELECT * FROM read_parquet('{data}/opening.parquet');
CREATE TABLE wallets AS SELECT DISTINCT address FROM members;
CREATE TABLE days AS SELECT DISTINCT date FROM prices;
-- USD value in 1e-18 units = raw balance * feed answer * 10^(18 - decimals - feed decimals).
CREATE TABLE scale AS
SELECT t.token_address, t.decimals, p.feed_decimals,
       CAST(10 ** greatest(18 - t.decimals - p.feed_decimals, 0) AS HUGEINT) AS mul,
       CAST(10 ** greatest(t.decimals + p.feed_decimals - 18, 0) AS HUGEINT) AS div
FROM tokens t JOIN (SELECT DISTINCT token_address, feed_decimals FROM prices) p
    USING (token_address);

-- Closing balances: opening + running sum of the tracked wallets' daily movements.
CREATE TABLE balances AS
WITH t AS (
    SELECT date, token_address, from_address, to_address, value
    FROM delta_scan('{data}/delta/bench/synthetic/token_transfers')
    WHERE token_address IN (SELECT token_address FROM tokens)
), moves AS (
    SELECT date, to_address AS address, token_address, value AS amount
    FROM t WHERE to_address IN (SELECT address FROM wallets)
    UNION ALL
    SELECT date, from_address, token_address, -value
    FROM t WHERE from_address IN (SELECT address FROM wallets)
), daily AS (
    SELECT address, token_address, date, sum(amount) AS amount FROM moves GROUP BY ALL
), pairs AS (
    SELECT address, token_address FROM opening
    UNION SELECT address, token_address FROM daily
    UNION SELECT address, '{native}' FROM wallets
), grid AS (
    SELECT p.address, p.token_address, d.date, coalesce(dl.amount, 0) AS amount
    FROM pairs p CROSS JOIN days d
    LEFT JOIN daily dl ON dl.address = p.address AND dl.token_address = p.token_address
        AND dl.date = d.date
), running AS (
    SELECT g.address, g.token_address, g.date, g.amount,
           CAST(coalesce(o.balance, 0) + sum(g.amount) OVER (
               PARTITION BY g.address, g.token_address ORDER BY g.date
               ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS DECIMAL(38, 0)) AS balance
    FROM grid g LEFT JOIN opening o ON o.address = g.address AND o.token_address = g.token_address
)
SELECT date, address, token_address, balance FROM running
WHERE balance <> 0 OR amount <> 0 OR token_address = '{native}';

-- Each holding valued at the close, rounded once to 18 places like the project.
CREATE TABLE holdings AS
SELECT portfolio_id, date, token_address, token_symbol, CAST(raw AS HUGEINT) AS raw
FROM (
    SELECT m.portfolio_id, b.date, b.token_address, t.token_symbol, sum(b.balance) AS raw
    FROM balances b JOIN members m ON m.address = b.address
    JOIN tokens t ON t.token_address = b.token_address
    GROUP BY ALL
);

CREATE TABLE snapshots AS
WITH valued AS (
    SELECT h.portfolio_id, h.date, h.token_symbol,
           rdiv(h.raw * CAST(p.answer AS HUGEINT), s.mul, s.div) AS value
    FROM holdings h JOIN scale s USING (token_address)
    LEFT JOIN prices p ON p.token_address = h.token_address AND p.date = h.date
), totals AS (
    SELECT portfolio_id, date, sum(value) AS total FROM valued GROUP BY ALL
), alloc AS (
    SELECT v.portfolio_id, v.date,
           map_from_entries(list({{'key': v.token_symbol,
               'value': CAST(v.value AS DOUBLE) / CAST(t.total AS DOUBLE)}}))
               AS asset_allocation
    FROM valued v JOIN totals t USING (portfolio_id, date)
    WHERE v.value <> 0 AND t.total <> 0 GROUP BY ALL
), returns AS (
    SELECT h.portfolio_id, h.date + INTERVAL 1 DAY AS date,
           sum(rdiv(h.raw * CAST(now.answer AS HUGEINT), s.mul, s.div)) AS now,
           sum(rdiv(h.raw * CAST(was.answer AS HUGEINT), s.mul, s.div)) AS before
    FROM holdings h JOIN scale s USING (token_address)
    JOIN prices was ON was.token_address = h.token_address AND was.date = h.date
    JOIN prices now ON now.token_address = h.token_address AND now.date = h.date + INTERVAL 1 DAY
    GROUP BY ALL
), daily AS (
    SELECT t.portfolio_id, t.date, e18(t.total) AS total_value, a.asset_allocation,
           CASE WHEN r.before > 0 THEN CAST(r.now AS DOUBLE) / CAST(r.before AS DOUBLE) - 1 END
               AS daily_return
    FROM totals t LEFT JOIN alloc a USING (portfolio_id, date)
    LEFT JOIN returns r ON r.portfolio_id = t.portfolio_id AND r.date = t.date
), wealth AS (
    SELECT *,
        coalesce(product(1 + daily_return) OVER upto, 1) AS w,
        count(daily_return) OVER upto AS n,
        avg(daily_return) OVER upto AS mean,
        stddev_samp(daily_return) OVER upto AS sd,
        max(daily_return) OVER upto - min(daily_return) OVER upto AS spread
    FROM daily WINDOW upto AS (PARTITION BY portfolio_id ORDER BY date
                               ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
), peaks AS (
    SELECT *, w / greatest(1, max(w) OVER upto) - 1 AS drawdown
    FROM wealth WINDOW upto AS (PARTITION BY portfolio_id ORDER BY date
                                ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
)
SELECT portfolio_id, date, total_value, daily_return, asset_allocation,
       w - 1 AS total_return,
       CASE WHEN n >= 2 AND spread > 0 THEN mean / sd * sqrt(365) END AS sharpe_ratio,
       CASE WHEN n >= 1 THEN min(drawdown) OVER upto END AS max_drawdown,
       CASE WHEN n >= 2 THEN sd * sqrt(365) END AS volatility, w
FROM peaks WINDOW upto AS (PARTITION BY portfolio_id ORDER BY date
                           ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW);

CREATE TABLE asset_returns AS
SELECT token_symbol AS asset, date,
       CAST(answer AS DOUBLE) / CAST(lag(answer) OVER (PARTITION BY token_symbol ORDER BY date)
           AS DOUBLE) - 1 AS r
FROM prices;

CREATE TABLE risk AS
WITH windows(window_days) AS (VALUES (30), (90)),
per_window AS (
    SELECT s.*, w.window_days FROM snapshots s CROSS JOIN windows w
), figures AS (
    SELECT portfolio_id, date, window_days,
        count(daily_return) OVER win AS observations,
        quantile_cont(daily_return, 0.05) OVER win AS var_95,
        list(daily_return) FILTER (WHERE daily_return IS NOT NULL) OVER win AS rs,
        avg(daily_return) OVER win AS mean,
        stddev_samp(daily_return) OVER win AS sd,
        max(daily_return) OVER win - min(daily_return) OVER win AS spread,
        sqrt(avg(CASE WHEN daily_return IS NOT NULL THEN least(daily_return, 0) ** 2 END)
             OVER win) AS downside,
        list(w ORDER BY date) OVER win AS ws,
        coalesce(first_value(w) OVER before_win, 1) AS anchor
    FROM per_window
    WINDOW win AS (PARTITION BY portfolio_id, window_days ORDER BY date
                   RANGE BETWEEN (window_days - 1) * INTERVAL 1 DAY PRECEDING AND CURRENT ROW),
           before_win AS (PARTITION BY portfolio_id, window_days ORDER BY date
                   RANGE BETWEEN window_days * INTERVAL 1 DAY PRECEDING
                             AND window_days * INTERVAL 1 DAY PRECEDING)
), pair_corr AS (
    SELECT a.asset AS a, b.asset AS b, a.date, w.window_days,
        corr(a.r, b.r) OVER (PARTITION BY a.asset, b.asset, w.window_days ORDER BY a.date
            RANGE BETWEEN (w.window_days - 1) * INTERVAL 1 DAY PRECEDING AND CURRENT ROW) AS c,
        count(a.r) OVER (PARTITION BY a.asset, b.asset, w.window_days ORDER BY a.date
            RANGE BETWEEN (w.window_days - 1) * INTERVAL 1 DAY PRECEDING AND CURRENT ROW) AS n
    FROM asset_returns a JOIN asset_returns b ON a.date = b.date AND a.asset < b.asset
    CROSS JOIN windows w
    WHERE a.r IS NOT NULL AND b.r IS NOT NULL
), held AS (
    SELECT portfolio_id, date, e.key AS asset
    FROM (SELECT portfolio_id, date, unnest(map_entries(asset_allocation)) AS e
          FROM snapshots WHERE asset_allocation IS NOT NULL)
    WHERE e.value > 0
), held_pairs AS (
    SELECT x.portfolio_id, x.date, x.asset AS a, y.asset AS b
    FROM held x JOIN held y ON x.portfolio_id = y.portfolio_id AND x.date = y.date
        AND x.asset < y.asset
), correlation AS (
    SELECT h.portfolio_id, h.date, pc.window_days, avg(pc.c) AS correlation_score
    FROM held_pairs h JOIN pair_corr pc ON pc.a = h.a AND pc.b = h.b AND pc.date = h.date
    WHERE pc.n >= 2 AND isfinite(pc.c)
    GROUP BY ALL
)
SELECT f.portfolio_id, f.date, f.window_days, f.observations, f.var_95,
    CASE WHEN f.observations > 0 THEN list_avg(list_slice(list_sort(f.rs), 1,
        CAST(floor((f.observations - 1) * 0.05) + 1 AS BIGINT))) END AS cvar_95,
    CASE WHEN f.observations >= 2 AND f.spread > 0 THEN f.mean / f.sd * sqrt(365) END
        AS sharpe_ratio,
    CASE WHEN f.observations >= 2 AND f.downside > 0
        THEN f.mean * 365 / (f.downside * sqrt(365)) END AS sortino_ratio,
    CASE WHEN f.observations >= 1 THEN list_reduce(
        list_transform(f.ws, lambda x: {{'peak': x, 'mdd': 0.0::DOUBLE}}),
        lambda acc, x: {{'peak': greatest(acc.peak, x.peak),
                        'mdd': least(acc.mdd, x.peak / greatest(acc.peak, x.peak) - 1)}},
        {{'peak': f.anchor, 'mdd': 0.0::DOUBLE}}).mdd END AS max_drawdown,
    CASE WHEN f.observations >= 2 THEN f.sd * sqrt(365) END AS volatility,
    c.correlation_score
FROM figures f LEFT JOIN correlation c
    ON c.portfolio_id = f.portfolio_id AND c.date = f.date AND c.window_days = f.window_days;

COPY (SELECT * FROM balances) TO '{out}/balances.parquet' (FORMAT parquet);
COPY (SELECT * EXCLUDE (w) FROM snapshots) TO '{out}/snapshots.parquet' (FORMAT parquet);
COPY (SELECT * FROM risk) TO '{out}/risk.parquet' (FORMAT parquet);
"""


def run_baseline(data: Path, out: Path) -> dict[str, float]:
    import duckdb

    from resources.duckdb import extension_file

    out.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()
    conn = duckdb.connect(config={"autoinstall_known_extensions": False,
                                  "autoload_known_extensions": False})  # fmt: skip
    conn.execute(f"LOAD '{extension_file('delta')}'")
    sql = BASELINE_SQL.format(data=data.resolve(), out=out.resolve(), native=NATIVE_TOKEN)
    timings: dict[str, float] = {}
    for statement in [s.strip() for s in sql.split(";\n") if s.strip()]:
        t0 = time.monotonic()
        conn.execute(statement)
        code = " ".join(line for line in statement.splitlines() if not line.startswith("--"))
        label = " ".join(code.split()[:3])
        if label.startswith(("CREATE TABLE", "COPY")):
            timings[label + ("" if label.startswith("CREATE") else f" {len(timings)}")] = (
                time.monotonic() - t0
            )
    conn.close()
    timings["total_s"] = time.monotonic() - t_start
    return timings


# -- comparison -----------------------------------------------------------------------------


def compare(project: Path, baseline: Path) -> dict[str, Any]:
    report: dict[str, Any] = {}
    pb = pl.scan_parquet(project / "balances" / "*.parquet")
    bb = pl.scan_parquet(baseline / "balances.parquet")
    key = ["date", "address", "token_address"]
    joined = pb.join(bb, on=key, how="full", suffix="_sql", coalesce=True)
    mismatch = joined.filter(pl.col("balance").is_null() | pl.col("balance_sql").is_null()
                             | (pl.col("balance") != pl.col("balance_sql"))).select(pl.len()).collect().item()  # fmt: skip
    report["balance_rows"] = pb.select(pl.len()).collect().item()
    report["balance_rows_differing"] = mismatch

    ps = pl.read_parquet(project / "snapshots.parquet")
    bs = pl.read_parquet(baseline / "snapshots.parquet")
    s = ps.join(bs, on=["portfolio_id", "date"], how="full", suffix="_sql", coalesce=True)
    report["snapshot_rows"] = ps.height
    report["snapshot_rows_sql"] = bs.height
    report["total_value_differing"] = s.filter(
        pl.col("total_value").is_null() | pl.col("total_value_sql").is_null()
        | (pl.col("total_value") != pl.col("total_value_sql").cast(pl.Decimal(38, 18)))
    ).height  # fmt: skip
    for col in ("daily_return", "total_return", "sharpe_ratio", "max_drawdown", "volatility"):
        report[f"{col}_max_rel_diff"] = _max_rel(s[col], s[f"{col}_sql"])
        report[f"{col}_max_abs_diff"] = _max_abs(s[col], s[f"{col}_sql"])
    pa = ps.select("portfolio_id", "date", "asset_allocation").explode("asset_allocation")
    pa = pa.select("portfolio_id", "date", pl.col("asset_allocation").struct.field("key"),
                   pl.col("asset_allocation").struct.field("value"))  # fmt: skip
    ba = bs.select(
        "portfolio_id",
        "date",
        pl.col("asset_allocation").cast(
            pl.List(pl.Struct({"key": pl.String, "value": pl.Float64}))
        ),
    )
    ba = ba.explode("asset_allocation").select(
        "portfolio_id", "date", pl.col("asset_allocation").struct.field("key"),
        pl.col("asset_allocation").struct.field("value"))  # fmt: skip
    alloc = pa.drop_nulls("key").join(ba.drop_nulls("key"), on=["portfolio_id", "date", "key"],
                                      how="full", suffix="_sql", coalesce=True)  # fmt: skip
    report["allocation_max_abs_diff"] = float(
        (alloc["value"] - alloc["value_sql"]).abs().max() or 0.0)  # fmt: skip
    report["allocation_entries_unmatched"] = alloc.filter(
        pl.col("value").is_null() | pl.col("value_sql").is_null()).height  # fmt: skip

    pr = pl.read_parquet(project / "risk.parquet")
    br = pl.read_parquet(baseline / "risk.parquet")
    r = pr.join(br, on=["portfolio_id", "date", "window_days"], how="full", suffix="_sql",
                coalesce=True)  # fmt: skip
    report["risk_rows"] = pr.height
    report["risk_rows_sql"] = br.height
    report["observations_differing"] = r.filter(
        pl.col("observations") != pl.col("observations_sql")).height  # fmt: skip
    for col in ("var_95", "cvar_95", "sharpe_ratio", "sortino_ratio", "max_drawdown",
                "volatility", "correlation_score"):  # fmt: skip
        report[f"risk_{col}_max_rel_diff"] = _max_rel(r[col], r[f"{col}_sql"])
        report[f"risk_{col}_max_abs_diff"] = _max_abs(r[col], r[f"{col}_sql"])
    return report


def _max_abs(a: pl.Series, b: pl.Series) -> float:
    return float((a.cast(pl.Float64) - b.cast(pl.Float64)).abs().max() or 0.0)  # type: ignore[arg-type]


def _max_rel(a: pl.Series, b: pl.Series) -> float | str:
    """Largest relative difference (absolute below 1e-12); 'null mismatch' when one side has
    a value the other lacks."""
    a, b = a.cast(pl.Float64), b.cast(pl.Float64)
    if (a.is_null() != b.is_null()).any():
        return f"null mismatch in {int((a.is_null() != b.is_null()).sum())} rows"
    both = pl.DataFrame({"a": a, "b": b}).drop_nulls()
    if both.height == 0:
        return 0.0
    diff = (both["a"] - both["b"]).abs()
    scale = pl.max_horizontal(both["a"].abs(), both["b"].abs(), pl.lit(1e-12))
    return float((diff / pl.select(scale).to_series()).max() or 0.0)


# -- driver ---------------------------------------------------------------------------------


def peak_rss_kib() -> int:
    """This process's own peak resident set (VmHWM, KiB).

    Not `getrusage(...).ru_maxrss`: Linux carries the largest RSS of the memory a process
    replaced at exec into its ru_maxrss, and Python starts children with vfork, whose borrowed
    memory is the parent's. A child of a parent that peaked at 5 GiB (generating the history)
    then reports 5 GiB whatever it used itself; `os.wait4` returns the same figure. VmHWM
    belongs to the address space the child's exec made, so it is the child's own."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def _child(role: str, data: Path, out: Path, chunk_days: int, daily: str, reps: int) -> None:
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    if role == "project":
        timings: dict[str, Any] = run_project(data, out, chunk_days)
    elif role == "daily":
        timings = run_daily(data, out, [int(n) for n in daily.split(",")], reps)
    else:
        timings = run_baseline(data, out)
    timings["wall_s"] = time.monotonic() - started
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"timings": timings, "peak_rss_mib": round(peak_rss_kib() / 1024, 1),
                      "cpu_s": round(cpu.ru_utime + cpu.ru_stime, 1),
                      "load_avg_1m": [round(load_before, 1), round(os.getloadavg()[0], 1)]}))  # fmt: skip


def _spawn(
    role: str, data: Path, out: Path, chunk_days: int, daily: str = "30,90,365", reps: int = 5
) -> dict[str, Any]:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, __file__, "--role", role, "--data", str(data), "--out", str(out),
         "--chunk-days", str(chunk_days), "--daily-days", daily, "--daily-reps", str(reps)],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"{role} failed:\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = time.monotonic() - started
    return result


def machine() -> dict[str, Any]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    import deltalake
    import duckdb

    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem, 1),
            "python": platform.python_version(), "polars": pl.__version__,
            "duckdb": duckdb.__version__, "deltalake": deltalake.__version__,
            "os": platform.platform()}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--transfers", type=int, default=10_000_000)
    p.add_argument("--wallets", type=int, default=100_000)
    p.add_argument("--tokens", type=int, default=50)
    p.add_argument("--days", type=int, default=365)
    p.add_argument("--portfolios", type=int, default=1000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument(
        "--chunk-days",
        type=int,
        default=31,
        help="days per call of the project's range transforms (a backfill run)",
    )
    p.add_argument("--data-root", type=Path, default=ROOT / "data" / "bench" / "transform")
    p.add_argument(
        "--only",
        choices=["project", "baseline", "daily"],
        default=None,
        help="one side; 'daily': only the daily runs, over the project side's last results",
    )
    p.add_argument(
        "--daily-days",
        default="30,90,365",
        help="days of the history (1-based, >= 3) whose daily run is timed after the project "
        "side ('' to skip): the cost of one day should not grow with the history before it",
    )
    p.add_argument("--daily-reps", type=int, default=5, help="times each daily run is repeated")
    p.add_argument("--role", choices=["project", "baseline", "daily"], help=argparse.SUPPRESS)
    p.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.role:
        _child(args.role, args.data, args.out, args.chunk_days, args.daily_days, args.daily_reps)
        return

    params = {k: getattr(args, k) for k in ("transfers", "wallets", "tokens", "days",
                                            "portfolios", "seed")}  # fmt: skip
    tag = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]
    data = args.data_root / tag
    print(f"history {params} in {data}", flush=True)
    generate(args, data)
    meta = json.loads((data / "meta.json").read_text())
    print(f"  tracked wallets {meta['tracked_wallets']}, transfers touching them "
          f"{meta['transfers_touching_tracked']}", flush=True)  # fmt: skip
    runs: dict[str, Any] = {}
    for role in ("baseline", "project"):
        if args.only and role != args.only:
            continue
        out = data / f"out-{role}"
        runs[role] = _spawn(role, data, out, args.chunk_days)
        print(f"{role:9s} {runs[role]['timings']['wall_s']:8.1f} s  "
              f"peak RSS {runs[role]['peak_rss_mib']:8.1f} MiB  cpu {runs[role]['cpu_s']:7.1f} s  "
              f"load {runs[role]['load_avg_1m']}", flush=True)  # fmt: skip
    if args.daily_days and (data / "out-project" / "snapshots.parquet").exists():
        runs["daily"] = _spawn("daily", data, data / "out-project", args.chunk_days,
                               args.daily_days, args.daily_reps)  # fmt: skip
        daily = runs["daily"]["timings"]
        print(f"daily run  median seconds by day {daily['median_s']}; ratio "
              f"{daily['ratio_last_over_first']} (target <= 1.2); peak RSS "
              f"{runs['daily']['peak_rss_mib']:.0f} MiB", flush=True)  # fmt: skip
    result: dict[str, Any] = {"params": params, "chunk_days": args.chunk_days, "history": meta,
                              "machine": machine(), "runs": runs}  # fmt: skip
    if args.only == "daily" and all((data / f"out-{r}").exists() for r in ("project", "baseline")):
        # the last full run's outputs: the comparison of the figures recorded from it
        result["comparison_of_last_outputs"] = compare(data / "out-project", data / "out-baseline")
    if "project" in runs and "baseline" in runs:
        ratio = runs["project"]["timings"]["wall_s"] / runs["baseline"]["timings"]["wall_s"]
        result["time_ratio"] = round(ratio, 3)
        result["comparison"] = compare(data / "out-project", data / "out-baseline")
        print(
            f"project / baseline time: {ratio:.2f}  (target <= 1.5); "
            f"project peak {runs['project']['peak_rss_mib']:.0f} MiB (target <= 2048)"
        )
        print(json.dumps(result["comparison"], indent=2))
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / f"transform-{stamp}.json").write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
