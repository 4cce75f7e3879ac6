"""Extraction state kept beside the tables: the per-chain checkpoint (last block number and
hash written) and the remembered block range of every closed day."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import polars as pl

from chainlake.config import ChainConfig
from chainlake.extract import DayRange
from chainlake.lake import DeltaStore, retrying_commit

CHECKPOINT_TABLE = "_state/checkpoint"
DAY_RANGE_TABLE = "_state/day_ranges"

_CHECKPOINT_SCHEMA = pl.Schema(
    {"chain_id": pl.Int64, "date": pl.Date, "block_number": pl.Int64, "block_hash": pl.String}
)
_DAY_RANGE_SCHEMA = pl.Schema(
    {"chain_id": pl.Int64, "date": pl.Date, "first_block": pl.Int64, "last_block": pl.Int64}
)


@dataclass(frozen=True)
class Checkpoint:
    """The last block written to the lake, with its hash and day."""

    block_number: int
    block_hash: str
    day: dt.date


def read_checkpoint(store: DeltaStore, chain: ChainConfig) -> Checkpoint | None:
    """The chain's checkpoint, or None before the first write."""
    lf = store.scan(chain, CHECKPOINT_TABLE)
    if lf is None:
        return None
    df = lf.collect()
    if df.height == 0:
        return None
    row = df.sort("block_number").row(-1, named=True)
    return Checkpoint(row["block_number"], row["block_hash"], row["date"])


def write_checkpoint(store: DeltaStore, chain: ChainConfig, cp: Checkpoint) -> None:
    """Record `cp` as the chain's checkpoint."""
    df = pl.DataFrame(
        [
            {
                "chain_id": chain.chain_id,
                "date": cp.day,
                "block_number": cp.block_number,
                "block_hash": cp.block_hash,
            }
        ],
        schema=_CHECKPOINT_SCHEMA,
    )
    # One row per chain: the whole (tiny) table is replaced in one commit. Runs of closed days
    # may write it at the same time as the open day's run (a fresh chain's backfill): the
    # commit that loses the race is made again.
    uri = store.table_uri(chain, CHECKPOINT_TABLE)
    from deltalake import write_deltalake

    retrying_commit(
        uri,
        lambda: write_deltalake(
            uri, df.to_arrow(), mode="overwrite", storage_options=store.storage_options() or None
        ),
    )


def cached_day_range(store: DeltaStore, chain: ChainConfig, day: dt.date) -> DayRange | None:
    """The remembered block range of a closed `day`, or None."""
    lf = store.scan(chain, DAY_RANGE_TABLE)
    if lf is None:
        return None
    df = lf.filter(pl.col("date") == day).collect()
    if df.height == 0:
        return None
    row = df.row(0, named=True)
    return DayRange(day, row["first_block"], row["last_block"], True, row["last_block"])


def remember_day_range(store: DeltaStore, chain: ChainConfig, rng: DayRange) -> None:
    """Remember the block range of a closed day (an open one may still grow: not kept)."""
    if not rng.closed:
        return
    df = pl.DataFrame(
        [
            {
                "chain_id": chain.chain_id,
                "date": rng.day,
                "first_block": rng.first_block,
                "last_block": rng.last_block,
            }
        ],
        schema=_DAY_RANGE_SCHEMA,
    )
    store.replace_day(chain, DAY_RANGE_TABLE, rng.day, df)


def forget_day_ranges(store: DeltaStore, chain: ChainConfig, days: list[dt.date]) -> None:
    """After a reorg changed which blocks fall in these days."""
    for day in days:
        store.replace_day(chain, DAY_RANGE_TABLE, day, pl.DataFrame(schema=_DAY_RANGE_SCHEMA))
