"""raw/blocks, raw/transactions and raw/logs of one chain-day, read from the node in one pass.

The three tables come from the same blocks and receipts, so one step reads them and writes
each table in one Delta commit, raw/blocks last (a block row present means its transactions
and logs are too). A closed day is replaced whole; the open day (today) is brought up to the
confirmed head from the checkpoint, by replacing the day's rows past it (so a run killed
half-way and run again never duplicates a row).

Every run first checks the checkpoint block against the node: after a reorg, the raw tables
are repaired in every partition (`chainlake.reorg`), the repair is logged and recorded in the
materialisation's metadata, and the chain-days it touched are marked stale; the reorg sensor
(`sensors/reorg_repairs.py`) then launches the runs that rebuild their derived tables.
"""

import time
from functools import partial
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from assets.checks import schema_failed, schema_failure
from assets.policies import PER_CHAIN_DAYS, TRANSIENT_RETRY
from assets.ranges import each_day, run_chain_days
from chainlake.extract import (
    RAW_TABLES,
    BlockTimestamps,
    DayRange,
    RawSchemaError,
    ReorgDuringRead,
    StagedExtract,
    find_day_range,
    stage_dir,
    stage_range,
)
from chainlake.lake import DeltaStore
from chainlake.metadata import preview, table_metadata
from chainlake.partitions import chain_day_key, chain_day_partitions
from chainlake.raw.transactions import ReceiptMismatch
from chainlake.reorg import ALLOW_DEEP_REORG_TAG, ReorgReport, check_and_repair
from chainlake.rpc import NodeError
from chainlake.schema import arrow_schema, schema_metadata
from chainlake.state import (
    Checkpoint,
    cached_day_range,
    read_checkpoint,
    remember_day_range,
    write_checkpoint,
)
from resources.rpc import RpcResource

BLOCKS = dg.AssetKey(["raw", "blocks"])
TRANSACTIONS = dg.AssetKey(["raw", "transactions"])
LOGS = dg.AssetKey(["raw", "logs"])
TRACES = dg.AssetKey(["raw", "traces"])
KEYS = {"blocks": BLOCKS, "transactions": TRANSACTIONS, "logs": LOGS, "traces": TRACES}
READ_ATTEMPTS = 3

_DOCS = {
    "blocks": "One row per block of the chain-day.",
    "transactions": "One row per transaction of the chain-day, with its receipt's fields.",
    "logs": "One row per log emitted in the chain-day.",
    "traces": "One row per call frame of the chain-day's transactions (trace_block or "
    "debug_traceBlockByNumber + callTracer, per the chain's trace_method); empty when the "
    "chain's traces are not read, and then internal transfers are not covered.",
}


def _spec(table: str) -> dg.AssetSpec:
    return dg.AssetSpec(
        KEYS[table],
        description=_DOCS[table],
        group_name="raw",
        kinds={"delta", "polars"},
        partitions_def=chain_day_partitions,
        metadata=schema_metadata(RAW_TABLES[table]),
    )


CHECKS = [
    *(
        dg.AssetCheckSpec(
            "schema", asset=key, blocking=True, description="Pandera model of the table"
        )
        for key in KEYS.values()
    ),
    dg.AssetCheckSpec(
        "no_missing_blocks",
        asset=BLOCKS,
        blocking=True,
        description="Every block of the day's range is present exactly once.",
    ),
    dg.AssetCheckSpec(
        "transaction_counts_match",
        asset=TRANSACTIONS,
        blocking=True,
        description="Each block's transaction_count equals its rows in raw/transactions.",
    ),
    dg.AssetCheckSpec(
        "one_root_frame_per_transaction",
        asset=TRACES,
        blocking=True,
        description="When the day's traces were read, every transaction has exactly one root "
        "frame (and no frame belongs to another transaction).",
    ),
]


def resolve_day_range(
    context: dg.AssetExecutionContext, client, store: DeltaStore, chain, day
) -> DayRange:
    """The day's block range: remembered if the day is closed, else searched on the node."""
    cached = cached_day_range(store, chain, day)
    if cached is not None:
        return cached
    rng = find_day_range(
        client,
        day,
        confirmations=chain.confirmations,
        timestamps=BlockTimestamps(client),
        require_reached=True,
    )
    remember_day_range(store, chain, rng)
    context.log.info(
        f"{chain.name} {day}: blocks {rng.first_block}..{rng.last_block} "
        f"({'closed' if rng.closed else 'open, up to confirmed head'} {rng.confirmed_head})"
    )
    return rng


def _incremental_start(
    client, store: DeltaStore, chain, rng: DayRange, cp: Checkpoint | None
) -> int:
    """Where to start reading: after the checkpoint when it lies inside this open day and the
    chain still has that block with that hash; otherwise the whole day is read again."""
    if rng.closed or cp is None or cp.day != rng.day or not store.exists(chain, "blocks"):
        return rng.first_block
    if not rng.first_block <= cp.block_number <= rng.last_block:
        return rng.first_block
    block = client.call("eth_getBlockByNumber", [hex(cp.block_number), False])
    if block is None or block["hash"].lower() != cp.block_hash:
        return rng.first_block
    return cp.block_number + 1


def check_day(store: DeltaStore, chain, rng: DayRange) -> list[dg.AssetCheckResult]:
    """Completeness checks on what landed in Delta for the day."""
    blocks = store.read_day(chain, "blocks", rng.day, ["block_number", "transaction_count"])
    numbers = blocks["block_number"]
    expected = rng.block_count
    dupes = blocks.height - numbers.n_unique()
    missing: list[int] = []
    if not rng.empty:
        present = set(numbers.to_list())
        missing = [n for n in range(rng.first_block, rng.last_block + 1) if n not in present]
    outside = numbers.filter((numbers < rng.first_block) | (numbers > rng.last_block)).to_list()
    blocks_ok = not missing and not dupes and not outside and blocks.height == expected

    tx = store.read_day(chain, "transactions", rng.day, ["block_number"])
    per_block = tx.group_by("block_number").len("rows")
    joined = blocks.join(per_block, on="block_number", how="full", coalesce=True).with_columns(
        pl.col("transaction_count").fill_null(-1), pl.col("rows").fill_null(0)
    )
    bad = joined.filter(pl.col("transaction_count").cast(pl.Int64) != pl.col("rows").cast(pl.Int64))
    return [
        *_check_traces(store, chain, rng.day),
        dg.AssetCheckResult(
            asset_key=BLOCKS,
            check_name="no_missing_blocks",
            passed=blocks_ok,
            metadata={
                "expected_blocks": expected,
                "rows": blocks.height,
                "missing": str(missing[:20]),
                "duplicates": dupes,
                "outside_range": str(outside[:20]),
            },
        ),
        dg.AssetCheckResult(
            asset_key=TRANSACTIONS,
            check_name="transaction_counts_match",
            passed=bad.height == 0,
            metadata={"mismatched_blocks": bad.height, "sample": preview(bad, 10)},
        ),
    ]


def _check_traces(store: DeltaStore, chain, day) -> list[dg.AssetCheckResult]:
    """Every transaction of the day has one root frame in raw/traces, and every frame's
    transaction is the day's; a day without traces (not read) passes, saying so."""
    txs = store.read_day(chain, "transactions", day, ["transaction_hash"])
    frames = (
        store.read_day(chain, "traces", day, ["transaction_hash", "depth", "trace_type"])
        if store.exists(chain, "traces")
        else pl.DataFrame(schema={"transaction_hash": pl.String, "depth": pl.Int32})
    )
    if frames.height == 0 and txs.height:
        return [
            dg.AssetCheckResult(
                asset_key=TRACES,
                check_name="one_root_frame_per_transaction",
                passed=True,
                description="traces not read for this chain-day: internal transfers not covered",
                metadata={"internal_transfers_covered": False, "transactions": txs.height},
            )
        ]
    roots = frames.filter(pl.col("depth") == 0).drop_nulls("transaction_hash")
    per_tx = roots.group_by("transaction_hash").len()
    known = set(txs["transaction_hash"].to_list())
    missing = sorted(known - set(per_tx["transaction_hash"].to_list()))
    doubled = per_tx.filter(pl.col("len") > 1)["transaction_hash"].to_list()
    foreign = sorted(set(frames["transaction_hash"].drop_nulls().to_list()) - known)
    return [
        dg.AssetCheckResult(
            asset_key=TRACES,
            check_name="one_root_frame_per_transaction",
            passed=not (missing or doubled or foreign),
            metadata={
                "internal_transfers_covered": True,
                "transactions": txs.height,
                "frames": frames.height,
                "without_root": str(missing[:10]),
                "several_roots": str(doubled[:10]),
                "not_in_raw_transactions": str(foreign[:10]),
            },
        )
    ]


def _raw_chain_tables(
    context: dg.AssetExecutionContext, rpc: RpcResource, delta: DeltaStore, chain, day
):
    client = rpc.client(chain)
    started = time.monotonic()
    last_logged = [0.0]
    reorgs: list[ReorgReport] = []

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last_logged[0] > 5 or done == total:
            last_logged[0] = now
            context.log.info(f"{chain.name} {day}: read {done}/{total} blocks")

    for attempt in range(READ_ATTEMPTS):
        # The checkpoint block must still be on the node's chain; if not, every table is
        # repaired back to the common ancestor before this day is read.
        allow_deep = context.run.tags.get(ALLOW_DEEP_REORG_TAG, "").lower() == "true"
        report = check_and_repair(client, delta, chain, allow_deep=allow_deep)
        if report is not None:
            reorgs.append(report)
            context.log.warning(report.summary())
        rng = resolve_day_range(context, client, delta, chain, day)
        cp = read_checkpoint(delta, chain)
        start = _incremental_start(client, delta, chain, rng, cp)
        incremental = start != rng.first_block
        with stage_dir(f"{chain.name}-{day}") as tmp:
            try:
                staged = stage_range(
                    client,
                    chain.chain_id,
                    start,
                    rng.last_block,
                    Path(tmp),
                    progress=progress,
                    trace_method=chain.trace_method,
                    uncles=chain.block_rewards == "ethereum",
                )
                if (
                    incremental
                    and cp is not None
                    and staged.first_parent_hash
                    not in (
                        None,
                        cp.block_hash,
                    )
                ):
                    raise ReorgDuringRead(start)
            except (ReorgDuringRead, ReceiptMismatch) as e:
                if attempt + 1 == READ_ATTEMPTS:
                    raise
                context.log.warning(f"{chain.name} {day}: {e}; reading again")
                time.sleep(1.0 + attempt)
                continue
            except RawSchemaError as e:
                failed = schema_failed(e.cases, e.frame, asset_key=KEYS[e.table])
                yield failed
                raise schema_failure(
                    f"{chain.name} {day}: raw/{e.table} rows from the node",
                    failed,
                    consequence="nothing written",
                ) from e
            previews = {t: staged.head(t) for t in RAW_TABLES if staged.files[t]}
            sizes = {t: sum(p.stat().st_size for p in staged.files[t]) for t in RAW_TABLES}
            written = _commit(delta, chain, day, staged, start if incremental else None)
        break
    if staged.last_block is not None and (cp is None or staged.last_block > cp.block_number):
        write_checkpoint(delta, chain, Checkpoint(staged.last_block, staged.last_hash or "", day))

    for report in reorgs:
        for other in report.days:
            if other == day:
                continue
            for key in KEYS.values():
                context.log_event(
                    dg.AssetMaterialization(
                        asset_key=key,
                        partition=chain_day_key(chain.name, other),
                        description=f"rewritten by a reorg repair after block {report.ancestor}",
                    )
                )

    elapsed = time.monotonic() - started
    for table, key in KEYS.items():
        extra: dict[str, Any] = {}
        if table == "traces":
            extra["trace_method"] = chain.trace_method
            extra["trace_source"] = staged.trace_source or "none"
            extra["internal_transfers_covered"] = staged.trace_source is not None or (
                staged.rows["transactions"] == 0 and chain.trace_method != "none"
            )
        if reorgs:
            extra["reorg"] = dg.MetadataValue.md(
                "```\n" + "\n".join(r.summary() for r in reorgs) + "\n```"
            )
        yield dg.MaterializeResult(
            asset_key=key,
            metadata={
                **table_metadata(
                    rows_written=staged.rows[table],
                    version=written[table],
                    first_block=rng.first_block,
                    last_block=rng.last_block,
                    read_from=start,
                    mode="append" if incremental else "replace day",
                    closed_day=rng.closed,
                    seconds=elapsed,
                    preview_frame=previews.get(table),
                    staged_bytes=sizes[table],
                ),
                **extra,
            },
        )
        # every flushed chunk passed its model in stage_range, or RawSchemaError stopped the run
        yield dg.AssetCheckResult(
            asset_key=key,
            check_name="schema",
            passed=True,
            metadata={"rows_checked": staged.rows[table], "model": RAW_TABLES[table].__name__},
        )
    yield from check_day(delta, chain, rng)


@dg.multi_asset(
    specs=[_spec(t) for t in RAW_TABLES],
    check_specs=CHECKS,
    partitions_def=chain_day_partitions,
    pool="rpc",
    can_subset=False,
    op_tags={"chainlake/layer": "raw"},
    backfill_policy=PER_CHAIN_DAYS,
    retry_policy=TRANSIENT_RETRY,
)
def raw_chain_tables(
    context: dg.AssetExecutionContext, rpc: RpcResource, delta: dg.ResourceParam[DeltaStore]
):
    """Read each chain-day of the run (oldest first) from the node into the raw tables.

    For each day, first repairs a reorg below the checkpoint, reads only past the checkpoint
    when it is inside the day (the open day only: a closed day is read whole), and reads again
    when the chain changes during the read. Each day is committed before the next is read.
    """
    yield from each_day(
        context,
        run_chain_days(context),
        lambda chain, day: _one_day(context, rpc, delta, chain, day),
    )


def _one_day(context: dg.AssetExecutionContext, rpc: RpcResource, delta: DeltaStore, chain, day):
    try:
        yield from _raw_chain_tables(context, rpc, delta, chain, day)
    except NodeError as e:
        # the node's answer is wrong (another chain, behind, garbage, too large): the same
        # step would get the same answer, so it is not retried
        raise dg.Failure(description=f"{chain.name} {day}: {e}", allow_retries=False) from e


# raw/blocks last: a block row present means its transactions and logs are too.
COMMIT_ORDER = ("transactions", "logs", "traces", "blocks")


def _commit(
    delta: DeltaStore, chain, day, staged: StagedExtract, incremental_from: int | None
) -> dict[str, int | None]:
    """One commit per table. A whole day's staged files become the table's files for the day
    as they are; the open day's newest blocks replace whatever rows an earlier, interrupted
    run left past the checkpoint, so running again never duplicates a row."""
    versions: dict[str, int | None] = {}
    for table in COMMIT_ORDER:
        reader = partial(staged.reader, table)
        if staged.days(table) not in ([], [day]):
            raise ValueError(f"{table}: staged rows of days {staged.days(table)}, not only {day}")
        if incremental_from is None:
            versions[table] = delta.replace_day_files(
                chain, table, day, staged.day_files(table, day), arrow_schema(RAW_TABLES[table])
            )
        elif staged.rows[table]:
            where = f"block_number >= {int(incremental_from)}"
            versions[table] = delta.replace_day(chain, table, day, reader, where=where)
        else:
            versions[table] = None
    return versions
