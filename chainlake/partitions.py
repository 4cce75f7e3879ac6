"""The unit of work: one UTC day of one chain."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from chainlake.config import ChainConfig, chains_config_path, get_chain, load_chains

CHAIN_DIM = "chain"
DATE_DIM = "date"


def _build() -> tuple[dict[str, ChainConfig], dg.MultiPartitionsDefinition]:
    chains = load_chains()
    start = min(c.start_date for c in chains.values())
    return chains, dg.MultiPartitionsDefinition(
        {
            CHAIN_DIM: dg.StaticPartitionsDefinition(sorted(chains)),
            # end_offset=1 includes today, which is brought up to the confirmed head.
            DATE_DIM: dg.DailyPartitionsDefinition(start_date=start.isoformat(), end_offset=1),
        }
    )


CHAINS, chain_day_partitions = _build()


def partition_chain_day(
    partition_key: str | dg.MultiPartitionKey,
) -> tuple[ChainConfig, dt.date]:
    """(chain, day) of a partition key; an unknown chain gets an error naming the config file.

    The config is read again here, at run time, so a run sees the current RPC URLs and
    tokens; only the chain names and the earliest start date are fixed when the code loads."""
    key = (
        partition_key
        if isinstance(partition_key, dg.MultiPartitionKey)
        else dg.MultiPartitionKey(_parse(partition_key))
    )
    chain = get_chain(
        load_chains(), key.keys_by_dimension[CHAIN_DIM], source=str(chains_config_path())
    )
    day = dt.date.fromisoformat(key.keys_by_dimension[DATE_DIM])
    return chain, day


def _parse(partition_key: str) -> dict[str, str]:
    # MultiPartitionKey strings join the dimension keys with "|" in dimension-name order
    # (chain, date).
    parts = partition_key.split("|")
    if len(parts) != 2:
        raise ValueError(f"partition key {partition_key!r} is not '<chain>|<YYYY-MM-DD>'")
    return {CHAIN_DIM: parts[0], DATE_DIM: parts[1]}


def chain_day_key(chain: str, day: dt.date) -> dg.MultiPartitionKey:
    """The partition key of `chain` on `day`."""
    return dg.MultiPartitionKey({CHAIN_DIM: chain, DATE_DIM: day.isoformat()})


def window(start_offset: int, end_offset: int = 0) -> dg.MultiPartitionMapping:
    """The same chain over the days [day + start_offset, day + end_offset] (offsets ≤ 0):
    `window(-29)` is a 30-day window ending at the day, `window(-1, -1)` the day before."""
    return dg.MultiPartitionMapping(
        {
            CHAIN_DIM: dg.DimensionPartitionMapping(CHAIN_DIM, dg.IdentityPartitionMapping()),
            DATE_DIM: dg.DimensionPartitionMapping(
                DATE_DIM,
                dg.TimeWindowPartitionMapping(start_offset=start_offset, end_offset=end_offset),
            ),
        }
    )


def previous_day() -> dg.MultiPartitionMapping:
    """The same chain, the day before: a closing balance starts from the previous close."""
    return window(-1, -1)


def _linked_chains() -> dict[str, list[str]]:
    """Home chain -> the other chains its portfolios hold wallets on, from portfolios.yaml as
    the code location loads it (a change there takes a reload, like a new chain). Without a
    readable portfolios file, no links: each chain's snapshots depend on that chain alone."""
    from chainlake.portfolios import load_portfolios

    try:
        book = load_portfolios(CHAINS)
    except Exception:
        return {}
    return {home: book.linked_chains(home) for home in CHAINS if book.linked_chains(home)}


LINKED_CHAINS = _linked_chains()


def portfolio_window(start_offset: int, end_offset: int = 0) -> dg.MultiPartitionMapping:
    """Like `window`, but a home chain's day also maps to the same days of the other chains
    its portfolios hold wallets on (`LINKED_CHAINS`): a multi-chain portfolio's snapshot of a
    day waits for every one of its chains' balances and prices of that day."""
    if not LINKED_CHAINS:
        return window(start_offset, end_offset)
    # upstream chain -> the downstream chains that read it: itself and the homes linking it
    chain_map = dg.StaticPartitionMapping(
        {
            chain: sorted({chain, *(h for h, linked in LINKED_CHAINS.items() if chain in linked)})
            for chain in sorted(CHAINS)
        }
    )
    return dg.MultiPartitionMapping(
        {
            CHAIN_DIM: dg.DimensionPartitionMapping(CHAIN_DIM, chain_map),
            DATE_DIM: dg.DimensionPartitionMapping(
                DATE_DIM,
                dg.TimeWindowPartitionMapping(start_offset=start_offset, end_offset=end_offset),
            ),
        }
    )
