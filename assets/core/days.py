"""The blocks that open and close a chain-day, read from raw/blocks (shared by the core assets
that read the node at a day's close: balances, token prices, token metadata)."""

import datetime as dt

import polars as pl

from chainlake.config import ChainConfig
from chainlake.lake import DeltaStore


def day_blocks(delta: DeltaStore, chain: ChainConfig, day: dt.date) -> tuple[int, int] | None:
    """(opening block, closing block) of a day: the block before its first block and its last
    block; for a day without blocks, the last block before it, twice. None before the chain's
    first block."""
    lf = delta.scan(chain, "blocks")
    if lf is None:
        return None
    today = (
        lf.filter(pl.col("date") == day)
        .select(pl.col("block_number").min().alias("lo"), pl.col("block_number").max().alias("hi"))
        .collect()
        .row(0)
    )
    if today[0] is not None:
        return max(today[0] - 1, 0), today[1]
    before = lf.filter(pl.col("date") < day).select(pl.col("block_number").max()).collect().item()
    return None if before is None else (before, before)
