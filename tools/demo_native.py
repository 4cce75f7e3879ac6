"""The demo summary's native-balance section: per portfolio, every tracked wallet's native
balance at each demo day's close, as `core/balances` computed it from
`core/native_balance_movements` (internal transfers included), compared with `eth_getBalance`
on the devnet node."""

from __future__ import annotations

import datetime as dt
import os

import polars as pl

NATIVE = "0xeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"
INTERNAL = ("internal_call", "internal_create", "selfdestruct")


def summary(days: list[dt.date], chain_name: str = "devnet") -> list[str]:
    """One line per portfolio (wallet-days matching the chain) and one with the internal
    movements those balances include."""
    from chainlake.config import load_chains
    from chainlake.lake import DeltaStore
    from chainlake.portfolios import load_portfolios
    from chainlake.rpc import RpcClient

    chains = load_chains()
    chain = chains[chain_name]
    root = os.environ.get("DELTA_ROOT", "")
    if not root or "://" in root:
        return [
            f"{'':<16}native balances: not compared (DELTA_ROOT {root or 'unset'} is not local)"
        ]
    store = DeltaStore(root=root)
    balances = store.read_days(chain, "balances", days).filter(pl.col("token_address") == NATIVE)
    moves = store.read_days(chain, "native_balance_movements", days)
    calls = [
        ("eth_getBalance", [r["address"], hex(r["block_number"])])
        for r in balances.iter_rows(named=True)
    ]
    with RpcClient(list(chain.rpc_urls)) as client:
        answers = [a for batch in client.batches(calls) for a in batch]
    compared = balances.with_columns(
        pl.Series("on_chain", [int(a, 16) for a in answers], dtype=pl.Int128).cast(
            pl.Decimal(38, 0)
        )
    ).with_columns((pl.col("balance") == pl.col("on_chain")).alias("ok"))
    lines = [f"{'':<16}{'portfolio':<12}native balance = eth_getBalance (wallet-days)"]
    for p in load_portfolios(chains).portfolios_on(chain_name):
        mine = compared.filter(pl.col("address").is_in(list(p.wallets)))
        ok, n = int(mine["ok"].sum()), mine.height
        status = "OK" if n and ok == n else "FAIL"
        lines.append(f"{status:<16}{p.id:<12}{ok}/{n}")
    counts = moves.group_by("kind").len()
    seen = dict(zip(counts["kind"].to_list(), counts["len"].to_list(), strict=True))
    lines.append(
        f"{'':<16}internal movements included: "
        + ", ".join(f"{k} {seen.get(k, 0)}" for k in INTERNAL)
    )
    return lines
