"""Reorg safety: find where the node's chain left the one we stored, and rewrite every table
that holds the abandoned blocks.

A run compares the checkpoint (last block written, with its hash) with the node. When the
node no longer has that block, the stored hashes are walked back until one matches the node's:
the common ancestor. Every block after it is replaced:

1. The abandoned blocks (number, old hash, new hash) go to the audit table `_state/reorgs`,
   and the days holding them, with the tables to rebuild for them, to
   `_state/reorg_pending`, before anything changes: a run killed half-way leaves the rest to
   the next run.
2. Tables keyed by block other than the raw ones (found in storage, whoever wrote them:
   core/token_transfers, core/native_transfers, ...) lose their rows past the ancestor.
3. For each affected day, the raw tables are rewritten from the node past the ancestor, one
   commit per table and day, raw/blocks last: raw/blocks is what the walk-back compares, so
   a day whose blocks row is new has its transactions and logs rewritten already.
4. The checkpoint moves to the last block rewritten.
5. After the run has extracted its own partition, `finish_pending` rebuilds the derived
   tables of every affected day (a registered rebuild function, else the table's Dagster
   asset run for that partition) and retracts the abandoned blocks' events through
   `chainlake.events.retract_blocks`.
"""

from __future__ import annotations

import datetime as dt
import graphlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
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
from chainlake.rpc import RpcClient
from chainlake.state import (
    Checkpoint,
    forget_day_ranges,
    read_checkpoint,
    write_checkpoint,
)
from resources.delta import DeltaStore, day_predicate

log = logging.getLogger(__name__)

PENDING_TABLE = "_state/reorg_pending"
AUDIT_TABLE = "_state/reorgs"
EVENTS = "<events>"  # pending marker: the abandoned blocks' events still to retract
# raw/blocks last: the walk-back trusts it, so it must never be ahead of the other two.
RAW_WRITE_ORDER = ("transactions", "logs", "blocks")
MAX_DEPTH = 100_000

_PENDING_SCHEMA = pl.Schema(
    {"chain_id": pl.Int64, "date": pl.Date, "table": pl.String, "block_number": pl.Int64}
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

# -- the registry of tables keyed by block -------------------------------------------------

Rebuild = Callable[[DeltaStore, ChainConfig, dt.date], pl.DataFrame]
_REBUILDERS: dict[str, Rebuild] = {}


def register_block_table(table: str, rebuild: Rebuild) -> None:
    """Declare how to recompute one day of `table` (a Delta table with a `block_number`
    column) from the raw tables, for a reorg repair. Tables not registered are still found in
    storage and cleaned; they are rebuilt by running the Dagster asset that writes them
    (asset metadata `table`, or the last part of its key) when its resources are at hand."""
    _REBUILDERS[table] = rebuild


def _token_transfers(store: DeltaStore, chain: ChainConfig, day: dt.date) -> pl.DataFrame:
    from assets.logs import LogsModel
    from assets.token_transfers import token_transfers_frame
    from chainlake.schema import polars_schema

    return token_transfers_frame(
        store.read_day(chain, "logs", day, schema=polars_schema(LogsModel))
    )


register_block_table("token_transfers", _token_transfers)


# -- results -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplacedBlock:
    number: int
    old_hash: str
    new_hash: str | None  # None: the node's chain does not reach this height (yet)


@dataclass
class ReorgReport:
    chain: str
    ancestor: int
    old_tip: int
    replaced: list[ReplacedBlock]
    days: list[dt.date]
    rows_written: dict[str, int] = field(default_factory=dict)
    rows_deleted: dict[str, int] = field(default_factory=dict)
    new_tip: int | None = None

    def summary(self) -> str:
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
                out[n] = (str(block["hash"]).lower(), int(block["timestamp"], 16))
    return out


def node_hashes(client: RpcClient, numbers: Iterable[int]) -> dict[int, str | None]:
    return {n: h for n, (h, _) in node_headers(client, numbers).items()}


def stored_hashes(store: DeltaStore, chain: ChainConfig, lo: int, hi: int) -> pl.DataFrame:
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


def diverged(client: RpcClient, cp: Checkpoint) -> bool:
    block = client.call("eth_getBlockByNumber", [hex(cp.block_number), False])
    return block is None or str(block["hash"]).lower() != cp.block_hash.lower()


def common_ancestor(client: RpcClient, store: DeltaStore, chain: ChainConfig, tip: int) -> int:
    """The highest stored block the node still has with the same hash (-1 if none): the
    stored hashes are compared with the node's in windows that double going down."""
    lf = store.scan(chain, "blocks")
    earliest = None if lf is None else lf.select(pl.col("block_number").min()).collect().item()
    if earliest is None:
        return -1
    hi, window = tip, 32
    while hi >= earliest:
        if tip - hi > MAX_DEPTH:
            raise RuntimeError(
                f"{chain.name}: no common ancestor within {MAX_DEPTH} blocks of {tip}; "
                "re-materialise the affected days instead"
            )
        lo = max(earliest, hi - window + 1)
        stored = dict(
            stored_hashes(store, chain, lo, hi).select("block_number", "block_hash").iter_rows()
        )
        node = node_hashes(client, range(lo, hi + 1))
        for n in range(hi, lo - 1, -1):
            if n in stored and node.get(n) == stored[n]:
                return n
        hi, window = lo - 1, min(window * 2, 4096)
    return earliest - 1


# -- repair ----------------------------------------------------------------------------------


def check_and_repair(
    client: RpcClient,
    store: DeltaStore,
    chain: ChainConfig,
    *,
    confirmations: int | None = None,
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
) -> ReorgReport | None:
    """Repair a reorg if the node no longer has the checkpoint block; None if it does."""
    cp = read_checkpoint(store, chain)
    if cp is None or not diverged(client, cp):
        return None
    ancestor = common_ancestor(client, store, chain, cp.block_number)
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
    _audit(store, chain, report, orphans, now())
    _add_pending(store, chain, days, derived, ancestor)

    # 2. derived tables: nothing past the ancestor survives; rebuilt in finish_pending()
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
            staged = stage_range(client, chain.chain_id, lo, hi, Path(tmp)) if hi >= lo else None
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


# -- pending work: derived tables and events --------------------------------------------------


def block_tables(store: DeltaStore, chain: ChainConfig) -> list[str]:
    """Every Delta table of the chain, in storage, that has a block_number column."""
    return [t for t in store.list_tables(chain) if "block_number" in store.columns(chain, t)]


def _read_pending(store: DeltaStore, chain: ChainConfig) -> pl.DataFrame:
    lf = store.scan(chain, PENDING_TABLE)
    if lf is None:
        return pl.DataFrame(schema=_PENDING_SCHEMA)
    return lf.filter(pl.col("chain_id") == chain.chain_id).select(list(_PENDING_SCHEMA)).collect()


def _write_pending(store: DeltaStore, chain: ChainConfig, df: pl.DataFrame) -> None:
    from deltalake import write_deltalake

    write_deltalake(
        store.table_uri(chain, PENDING_TABLE),
        df.select(list(_PENDING_SCHEMA)).cast(dict(_PENDING_SCHEMA)).to_arrow(),  # type: ignore[arg-type]
        mode="overwrite",
        schema_mode="overwrite",
        storage_options=store.storage_options() or None,
    )


def _add_pending(
    store: DeltaStore, chain: ChainConfig, days: list[dt.date], tables: list[str], ancestor: int
) -> None:
    rows = [
        {"chain_id": chain.chain_id, "date": d, "table": t, "block_number": ancestor}
        for d in days
        for t in [*tables, EVENTS]
    ]
    new = pl.DataFrame(rows, schema=_PENDING_SCHEMA)
    merged = pl.concat([_read_pending(store, chain), new]).unique(
        ["date", "table"], keep="first", maintain_order=True
    )
    _write_pending(store, chain, merged)


def pending_days(store: DeltaStore, chain: ChainConfig) -> list[dt.date]:
    return sorted(set(_read_pending(store, chain)["date"].to_list()))


def finish_pending(
    store: DeltaStore,
    chain: ChainConfig,
    *,
    resources: Mapping[str, Any],
    warn: Callable[[str], None] = log.warning,
) -> dict[str, list[dt.date]]:
    """Rebuild the derived tables of the days a reorg rewrote, and retract the abandoned
    blocks' events. A rebuild that fails stays pending for the next run. A table nobody
    can rebuild here (its asset needs resources this run lacks) has already lost its
    abandoned rows; it is reported once, to be re-materialised for those days. Returns
    {table: days} of both kinds."""
    pending = _read_pending(store, chain)
    if pending.height == 0:
        return {}
    left: list[dict[str, Any]] = []
    undone: dict[str, list[dt.date]] = {}
    no_rebuild: dict[str, list[dt.date]] = {}
    runners = _rebuilders(resources)
    order = _order([t for t in pending["table"].unique().to_list() if t != EVENTS], runners)
    for table in [*order, EVENTS]:
        rows = pending.filter(pl.col("table") == table).sort("date")
        for row in rows.iter_rows(named=True):
            day = row["date"]
            if table != EVENTS and table not in runners:
                no_rebuild.setdefault(table, []).append(day)
                continue
            try:
                if table == EVENTS:
                    done = retract_events(store, chain, row["block_number"], day)
                else:
                    runners[table](store, chain, day)
                    done = True
            except Exception as e:  # noqa: BLE001 - reported, kept pending, retried next run
                warn(f"{chain.name} {day}: rebuilding {table} after a reorg failed: {e!r}")
                done = False
            if not done:
                left.append(row)
                undone.setdefault(table, []).append(day)
    _write_pending(store, chain, pl.DataFrame(left, schema=_PENDING_SCHEMA))
    for table, days in no_rebuild.items():
        warn(
            f"{chain.name}: table {table} lost its rows past a reorg on "
            f"{', '.join(map(str, days))} and cannot be rebuilt from this run: "
            "re-materialise it for those days"
        )
    return {**no_rebuild, **undone}


def _rebuilders(resources: Mapping[str, Any]) -> dict[str, Callable[..., None]]:
    """table → how to rebuild one day of it: registered functions first, then the Dagster
    asset that writes the table, run for that partition with the resources at hand."""
    runners: dict[str, Callable[..., None]] = {}
    for table, fn in _REBUILDERS.items():
        runners[table] = _function_runner(table, fn)
    for table, asset in _assets_by_table().items():
        if table in runners or table in RAW_TABLES:
            continue
        if _needs(asset) <= set(resources):
            runners[table] = _asset_runner(asset, resources)
    return runners


def _function_runner(table: str, fn: Rebuild) -> Callable[..., None]:
    def run(store: DeltaStore, chain: ChainConfig, day: dt.date) -> None:
        store.replace_day(chain, table, day, fn(store, chain, day))

    return run


def _asset_runner(asset: Any, resources: Mapping[str, Any]) -> Callable[..., None]:
    import dagster as dg

    from pipelines.partitions import chain_day_key

    def run(store: DeltaStore, chain: ChainConfig, day: dt.date) -> None:
        res = {k: v for k, v in resources.items() if k in _needs(asset)}
        res["delta"] = store
        ctx = dg.build_asset_context(partition_key=chain_day_key(chain.name, day), resources=res)
        out = asset(ctx)
        for _ in out or ():
            pass

    return run


def _needs(asset: Any) -> set[str]:
    # called directly, an asset that yields MaterializeResults needs no IO manager
    return set(asset.required_resource_keys) - {"io_manager"}


def _assets_by_table() -> dict[str, Any]:
    """Partitioned assets defined in the `assets` package, by the Delta table they write
    (asset metadata `table`, else the last part of the key). Each module is imported on its
    own, so one that fails to import costs only its own tables."""
    import importlib
    import pkgutil

    import dagster as dg

    import assets as package

    out: dict[str, Any] = {}
    for info in pkgutil.iter_modules(package.__path__, f"{package.__name__}."):
        try:
            module = importlib.import_module(info.name)
        except Exception as e:  # noqa: BLE001
            log.warning("cannot import %s to rebuild its tables after a reorg: %r", info.name, e)
            continue
        for value in vars(module).values():
            if not isinstance(value, dg.AssetsDefinition):
                continue
            if value.partitions_def is None or len(value.keys) != 1:
                continue
            key = next(iter(value.keys))
            table = value.metadata_by_key.get(key, {}).get("table")
            name = str(getattr(table, "value", table)) if table is not None else key.path[-1]
            out.setdefault(name, value)
    return out


def _order(tables: list[str], runners: Mapping[str, Any]) -> list[str]:
    """Tables in dependency order of their assets (token transfers before balances)."""
    assets = _assets_by_table()
    key_to_table = {next(iter(a.keys)): t for t, a in assets.items() if t in tables}
    graph: dict[str, set[str]] = {t: set() for t in tables}
    for key, table in key_to_table.items():
        for dep in assets[table].asset_deps.get(key, ()):
            if dep in key_to_table:
                graph[table].add(key_to_table[dep])
    return list(graphlib.TopologicalSorter(graph).static_order())


def retract_events(store: DeltaStore, chain: ChainConfig, ancestor: int, day: dt.date) -> bool:
    """Retract the trigger engine's events of blocks past `ancestor` (on `day`) through
    `chainlake.events.retract_blocks`. True when done or when there is nothing to do."""
    audit = store.scan(chain, AUDIT_TABLE)
    if audit is None:
        return True
    numbers = (
        audit.filter(
            (pl.col("chain_id") == chain.chain_id)
            & (pl.col("ancestor") == ancestor)
            & (pl.col("date") == day)
        )
        .select("block_number")
        .collect()["block_number"]
        .to_list()
    )
    if not numbers:
        return True
    hook = RETRACTION_HOOK or _events_hook
    return hook(chain, numbers)


RetractionHook = Callable[[ChainConfig, list[int]], bool]
# Extension point for tests or another event store; None means chainlake.events' Postgres.
RETRACTION_HOOK: RetractionHook | None = None


def _events_hook(chain: ChainConfig, numbers: list[int]) -> bool:
    try:
        from chainlake.events import db, retract_blocks
    except ImportError:
        return True  # no trigger engine installed: nothing to retract
    url = os.environ.get("POSTGRES_URL") or db.DEFAULT_POSTGRES_URL
    try:
        with db.connection(url) as conn:
            ids = retract_blocks(conn, chain.chain_id, numbers)
    except Exception as e:  # noqa: BLE001 - kept pending and retried by the next run
        msg = str(e)
        if "does not exist" in msg and ("relation" in msg or "database" in msg):
            log.info("no events database at %s: nothing to retract (%s)", url, msg)
            return True
        log.warning("could not retract events of blocks %s..%s: %r", numbers[0], numbers[-1], e)
        return False
    log.warning(
        "%s: retracted %d event(s) of reorged blocks %s..%s",
        chain.name,
        len(ids),
        numbers[0],
        numbers[-1],
    )
    return True


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
