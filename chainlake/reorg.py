"""Reorg safety: find where the node's chain left the one we stored, and repair the raw tables.

A run compares the checkpoint (last block written, with its hash) with the node. When the
node has a different block at that height, the stored hashes are walked back until one
matches the node's: the common ancestor. Every block after it is replaced:

1. The abandoned blocks (number, old hash, new hash) go to the audit table `_state/reorgs`,
   and the chain-days they touch to `_state/reorg_stale`, before anything changes.
2. Tables keyed by block other than the raw ones (found in storage, whoever wrote them:
   core/token_transfers, core/native_transfers, ...) lose their rows past the ancestor, so
   no reader sees an abandoned block while they wait to be rebuilt.
3. For each affected day, the raw tables are rewritten from the node past the ancestor, one
   commit per table and day, raw/blocks last: raw/blocks is what the walk-back compares, so
   a day whose blocks row is new has its transactions and logs rewritten already.
4. The checkpoint moves to the last block rewritten.

A reorg is a different hash at a height the node has. A node that lacks the checkpoint
block, and whose own head block is the one stored at that height, is behind, not on another
chain: that URL is taken out of rotation and the next one of the chain is asked; with none
left the run fails (`NoUsableUrl`, naming each node, its head and the checkpoint), and
nothing is deleted. A repair that would replace more than the chain's `max_reorg_depth`
blocks is refused (`DeepReorg`) without changing anything, unless the run carries the tag
`chainlake/allow_deep_reorg=true`.

Rebuilding the derived tables is not done here: `sensors/reorg_repairs.py` reads
`_state/reorg_stale` and launches ordinary runs of the derived assets for those chain-days,
so every rebuild is a materialisation with its checks, visible in the UI. The trigger
engine's events of abandoned blocks are retracted when `events/chain_events` runs for the day.
"""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import polars as pl

from chainlake.config import ChainConfig
from chainlake.extract import (
    RAW_TABLES,
    BlockTimestamps,
    StagedExtract,
    find_day_range,
    stage_range,
)
from chainlake.lake import DeltaStore, day_predicate
from chainlake.rpc import NodeError, RpcClient, is_quantity, parse_quantity
from chainlake.state import (
    Checkpoint,
    forget_day_ranges,
    read_checkpoint,
    write_checkpoint,
)

log = logging.getLogger(__name__)

STALE_TABLE = "_state/reorg_stale"
AUDIT_TABLE = "_state/reorgs"
# raw/blocks last: the walk-back trusts it, so it must never be ahead of the others.
RAW_WRITE_ORDER = ("transactions", "logs", "traces", "blocks")
MAX_DEPTH = 100_000
# The run tag with which an operator lets a repair go deeper than the chain's max_reorg_depth.
ALLOW_DEEP_REORG_TAG = "chainlake/allow_deep_reorg"


class DeepReorg(NodeError):
    """The node's chain leaves the stored one deeper than the chain's `max_reorg_depth`:
    nothing was changed; the operator decides (see the message)."""


_STALE_SCHEMA = pl.Schema(
    {  # type: ignore[arg-type]
        "chain_id": pl.Int64,
        "date": pl.Date,
        "ancestor": pl.Int64,
        "detected_at": pl.Datetime("us", "UTC"),
    }
)
_AUDIT_SCHEMA = pl.Schema(
    {  # type: ignore[arg-type]
        "chain_id": pl.Int64,
        "date": pl.Date,
        "detected_at": pl.Datetime("us", "UTC"),
        "ancestor": pl.Int64,
        "block_number": pl.Int64,
        "old_hash": pl.String,
        "new_hash": pl.String,
    }
)

# -- results -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplacedBlock:
    """A stored block that the reorg replaced."""

    number: int
    old_hash: str
    new_hash: str | None  # None: the node's chain does not reach this height (yet)


@dataclass
class ReorgReport:
    """What a reorg repair found and rewrote, for the run's log and metadata."""

    chain: str
    ancestor: int
    old_tip: int
    replaced: list[ReplacedBlock]
    days: list[dt.date]
    rows_written: dict[str, int] = field(default_factory=dict)
    rows_deleted: dict[str, int] = field(default_factory=dict)
    new_tip: int | None = None

    def summary(self) -> str:
        """The report as text: the ancestor, the days rewritten and (up to 50) replaced blocks."""
        lines = [
            f"{self.chain}: reorg after block {self.ancestor} (checkpoint was {self.old_tip}); "
            f"{len(self.replaced)} block(s) replaced, days "
            f"{', '.join(d.isoformat() for d in self.days)} rewritten"
        ]
        for b in self.replaced[:50]:
            lines.append(f"  block {b.number}: {b.old_hash} -> {b.new_hash or '(gone)'}")
        if len(self.replaced) > 50:
            lines.append(f"  ... and {len(self.replaced) - 50} more")
        return "\n".join(lines)


# -- detection -------------------------------------------------------------------------------


def node_headers(
    client: RpcClient, numbers: Iterable[int]
) -> dict[int, tuple[str | None, int | None]]:
    """{number: (hash, timestamp)} as the node has them now; (None, None) past its head."""
    numbers = list(numbers)
    out: dict[int, tuple[str | None, int | None]] = {}
    calls = (("eth_getBlockByNumber", [hex(n), False]) for n in numbers)
    it = iter(numbers)
    for results in client.batches(calls):
        for block in results:
            n = next(it)
            if block is None:
                out[n] = (None, None)
            else:
                ts = parse_quantity(
                    block.get("timestamp"),
                    f"{client.last_url} answered eth_getBlockByNumber {hex(n)} with timestamp",
                )
                out[n] = (str(block["hash"]).lower(), ts)
    return out


def node_hashes(client: RpcClient, numbers: Iterable[int]) -> dict[int, str | None]:
    """The node's hash of each block number (None where the node has no such block)."""
    return {n: h for n, (h, _) in node_headers(client, numbers).items()}


def stored_hashes(store: DeltaStore, chain: ChainConfig, lo: int, hi: int) -> pl.DataFrame:
    """The stored blocks between `lo` and `hi` (inclusive): number, hash and day."""
    lf = store.scan(chain, "blocks")
    if lf is None:
        return pl.DataFrame(
            schema={"block_number": pl.Int64, "block_hash": pl.String, "date": pl.Date}
        )
    return (
        lf.filter(pl.col("block_number").is_between(lo, hi))
        .select("block_number", "block_hash", "date")
        .collect()
    )


def divergence(
    client: RpcClient, store: DeltaStore, chain: ChainConfig, cp: Checkpoint
) -> int | None:
    """Where the node's chain differs from the stored one: None when the node has the
    checkpoint block, else the highest height the node has with another hash than stored
    (the checkpoint's, or its head's when its chain is shorter: a reorg to a shorter chain).

    A node that lacks the checkpoint block while its head block is the stored one is behind,
    not on another chain: that URL is refused and the next one asked (`RpcClient.batch`'s
    `accept`); with none left, `NoUsableUrl` says so, and nothing is deleted.
    """
    at: list[int | None] = [None]

    def judge(results: list[Any]) -> str | None:
        block, latest = results
        if isinstance(block, dict):  # the node has the checkpoint's height: compare hashes
            same = str(block.get("hash", "")).lower() == cp.block_hash.lower()
            at[0] = None if same else cp.block_number
            return None
        if not isinstance(latest, dict) or not is_quantity(latest.get("number")):
            return f"answered its latest block with {str(latest)[:80]!r}, not a block"
        head = int(latest["number"], 16)
        if head >= cp.block_number:
            return f"has no block {cp.block_number} though its head is block {head}"
        stored = stored_hashes(store, chain, head, head)["block_hash"].to_list()
        if not stored or stored[0] == str(latest.get("hash", "")).lower():
            return (
                f"is behind: its head is block {head}, below the checkpoint block "
                f"{cp.block_number} ({cp.day}) of {chain.name}; nothing was deleted"
            )
        at[0] = head  # another block at a height the node has: a reorg
        return None

    calls = [
        ("eth_getBlockByNumber", [hex(cp.block_number), False]),
        ("eth_getBlockByNumber", ["latest", False]),
    ]
    client.batch(calls, accept=judge)
    return at[0]


def common_ancestor(
    client: RpcClient, store: DeltaStore, chain: ChainConfig, tip: int, *, lowest: int | None = None
) -> int:
    """The highest stored block the node still has with the same hash (-1 if none): the
    stored hashes are compared with the node's in windows that double going down.

    Args:
        lowest: The lowest ancestor accepted: when no stored block from there up to `tip`
            is the node's, `DeepReorg` is raised (no search below it).
    """
    lf = store.scan(chain, "blocks")
    earliest = None if lf is None else lf.select(pl.col("block_number").min()).collect().item()
    if earliest is None:
        return -1
    floor = earliest if lowest is None else max(earliest, lowest)
    hi, window = tip, 32
    while hi >= floor:
        if tip - hi > MAX_DEPTH:
            raise RuntimeError(
                f"{chain.name}: no common ancestor within {MAX_DEPTH} blocks of {tip}; "
                "re-materialise the affected days instead"
            )
        lo = max(floor, hi - window + 1)
        stored = dict(
            stored_hashes(store, chain, lo, hi).select("block_number", "block_hash").iter_rows()
        )
        node = node_hashes(client, range(lo, hi + 1))
        for n in range(hi, lo - 1, -1):
            if n in stored and node.get(n) == stored[n]:
                return n
        hi, window = lo - 1, min(window * 2, 4096)
    if lowest is not None and earliest - 1 < lowest:
        raise DeepReorg(f"no stored block in {floor}..{tip} is on the chain of {client.last_url}")
    return earliest - 1


# -- repair ----------------------------------------------------------------------------------


def check_and_repair(
    client: RpcClient,
    store: DeltaStore,
    chain: ChainConfig,
    *,
    confirmations: int | None = None,
    allow_deep: bool = False,
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
) -> ReorgReport | None:
    """Repair a reorg if the node's chain no longer has the checkpoint block; None if it does.

    Args:
        allow_deep: Repair however deep the reorg is; otherwise a repair replacing more than
            the chain's `max_reorg_depth` blocks raises `DeepReorg` and changes nothing.

    Raises:
        NoUsableUrl: Every URL of the chain is behind the checkpoint (or unusable).
        DeepReorg: The reorg is deeper than `max_reorg_depth` and `allow_deep` is False.
    """
    cp = read_checkpoint(store, chain)
    if cp is None:
        return None
    tip = divergence(client, store, chain, cp)
    if tip is None:
        return None
    lowest = None if allow_deep else cp.block_number - chain.max_reorg_depth
    try:
        ancestor = common_ancestor(client, store, chain, tip, lowest=lowest)
    except DeepReorg as e:
        raise DeepReorg(
            f"{chain.name}: reorg deeper than max_reorg_depth ({chain.max_reorg_depth} blocks "
            f"below the checkpoint block {cp.block_number} of {cp.day}): {e}; nothing was "
            "changed. If that node is right, repair deliberately with the run tag "
            f"{ALLOW_DEEP_REORG_TAG}=true: dagster job backfill -w workspace.yaml -j "
            f"chain_day_job --partitions '{chain.name}|{cp.day}' --tags "
            f'\'{{"{ALLOW_DEEP_REORG_TAG}": "true"}}\' --noprompt (or raise '
            f"max_reorg_depth in chains.yaml); if it is wrong, fix rpc_urls"
        ) from None
    return repair(
        client,
        store,
        chain,
        ancestor,
        cp,
        confirmations=chain.confirmations if confirmations is None else confirmations,
        now=now,
    )


def repair(
    client: RpcClient,
    store: DeltaStore,
    chain: ChainConfig,
    ancestor: int,
    cp: Checkpoint,
    *,
    confirmations: int,
    now: Callable[[], dt.datetime],
) -> ReorgReport:
    """Replace every stored block after `ancestor` with the node's, in the steps of this module.

    Returns:
        The blocks replaced, the days rewritten and the rows written and deleted per table.
    """
    orphans = (
        store.scan(chain, "blocks")
        .filter(pl.col("block_number") > ancestor)  # type: ignore[union-attr]
        .select("block_number", "block_hash", "date")
        .sort("block_number")
        .collect()
    )
    old_tip = max([cp.block_number, *orphans["block_number"].to_list()])
    # the node's blocks at those heights: their hashes for the log, and their days, which
    # may differ from the abandoned ones' (a block of the new chain can fall on the day of
    # the ancestor, or on a day the old chain had not reached)
    new = node_headers(client, range(ancestor + 1, old_tip + 1))
    new_days = {
        dt.datetime.fromtimestamp(ts, dt.UTC).date() for _, ts in new.values() if ts is not None
    }
    days = sorted(set(orphans["date"].to_list()) | new_days)
    derived = [t for t in block_tables(store, chain) if t not in RAW_TABLES]

    # 1. what was replaced, and what is left to do, durably, before anything is changed
    report = ReorgReport(chain.name, ancestor, old_tip, [], days)
    report.replaced = [
        ReplacedBlock(n, h, new.get(n, (None, None))[0])
        for n, h in zip(orphans["block_number"], orphans["block_hash"], strict=True)
    ]
    at = now()
    _audit(store, chain, report, orphans, at)
    _mark_stale(store, chain, days, ancestor, at)

    # 2. derived tables: nothing past the ancestor survives; rebuilt by the runs the reorg sensor launches
    for table in derived:
        report.rows_deleted[table] = store.delete(chain, table, f"block_number > {ancestor}")

    # 3. raw tables, day by day, from the node's chain
    forget_day_ranges(store, chain, days)
    timestamps = BlockTimestamps(client)
    last: tuple[int, str, dt.date] | None = None
    for day in days:
        rng = find_day_range(client, day, confirmations=confirmations, timestamps=timestamps)
        lo, hi = max(ancestor + 1, rng.first_block), rng.last_block
        with tempfile.TemporaryDirectory(prefix=f"chainlake-reorg-{chain.name}-") as tmp:
            staged = (
                stage_range(
                    client,
                    chain.chain_id,
                    lo,
                    hi,
                    Path(tmp),
                    trace_method=chain.trace_method,
                    uncles=chain.block_rewards == "ethereum",
                )
                if hi >= lo
                else None
            )
            _rewrite_raw(store, chain, day, ancestor, staged, report)
        if staged is not None and staged.last_block is not None:
            last = (staged.last_block, staged.last_hash or "", day)
    forget_day_ranges(store, chain, days)  # their ranges were looked up on the moving tip

    # 4. checkpoint
    if last is None:
        row = stored_hashes(store, chain, ancestor, ancestor)
        last = (ancestor, row["block_hash"][0], row["date"][0]) if row.height else None
    if last is not None:
        write_checkpoint(store, chain, Checkpoint(last[0], last[1], last[2]))
        report.new_tip = last[0]
    log.warning(report.summary())
    return report


def _rewrite_raw(
    store: DeltaStore,
    chain: ChainConfig,
    day: dt.date,
    ancestor: int,
    staged: StagedExtract | None,
    report: ReorgReport,
) -> None:
    predicate = f"block_number > {ancestor}"
    for table in RAW_WRITE_ORDER:
        if staged is None or not staged.rows[table]:
            # nothing of the new chain in this day (yet): just drop the abandoned rows
            if store.exists(chain, table):
                store.delete(chain, table, f"{day_predicate(day)} AND {predicate}")
            continue
        store.replace_day(chain, table, day, partial(staged.reader, table), where=predicate)
        report.rows_written[table] = report.rows_written.get(table, 0) + staged.rows[table]


# -- what is left for the derived tables -----------------------------------------------------


def block_tables(store: DeltaStore, chain: ChainConfig) -> list[str]:
    """Every Delta table of the chain, in storage, that has a block_number column."""
    return [t for t in store.list_tables(chain) if "block_number" in store.columns(chain, t)]


@dataclass(frozen=True)
class StaleDay:
    """A chain-day whose derived tables were built from blocks a reorg abandoned."""

    day: dt.date
    ancestor: int
    detected_at: dt.datetime


def _mark_stale(
    store: DeltaStore, chain: ChainConfig, days: list[dt.date], ancestor: int, at: dt.datetime
) -> None:
    rows = [
        {"chain_id": chain.chain_id, "date": d, "ancestor": ancestor, "detected_at": at}
        for d in days
    ]
    if rows:
        store.append(chain, STALE_TABLE, pl.DataFrame(rows, schema=_STALE_SCHEMA))


def stale_days(
    store: DeltaStore, chain: ChainConfig, *, after: dt.datetime | None = None
) -> list[StaleDay]:
    """The chain-days repaired after `after` (all when None), oldest repair first."""
    lf = store.scan(chain, STALE_TABLE)
    if lf is None:
        return []
    lf = lf.filter(pl.col("chain_id") == chain.chain_id)
    if after is not None:
        lf = lf.filter(pl.col("detected_at") > after)
    df = lf.select(list(_STALE_SCHEMA)).sort("detected_at", "date").collect()
    return [StaleDay(r["date"], r["ancestor"], r["detected_at"]) for r in df.iter_rows(named=True)]


def _audit(
    store: DeltaStore,
    chain: ChainConfig,
    report: ReorgReport,
    orphans: pl.DataFrame,
    at: dt.datetime,
) -> None:
    new = {b.number: b.new_hash for b in report.replaced}
    df = pl.DataFrame(
        {
            "chain_id": chain.chain_id,
            "date": orphans["date"],
            "detected_at": at,
            "ancestor": report.ancestor,
            "block_number": orphans["block_number"],
            "old_hash": orphans["block_hash"],
            "new_hash": [new.get(n) for n in orphans["block_number"]],
        },
        schema=_AUDIT_SCHEMA,
    )
    if df.height:
        store.append(chain, AUDIT_TABLE, df)
