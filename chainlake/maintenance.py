"""Delta table maintenance of a chain: compaction of closed days, and vacuum.

The open day gets a small commit at every new-block run, so by its end each table holds many
small files for it; replaced days, reorg repairs and compactions leave files no current version
reads. Two jobs keep that in check (`pipelines/maintenance.py` wires them):

- once a day is closed, `compact_chain_day` rewrites that day of every date-partitioned table
  of the chain into a few large files (`DeltaStore.compact_day`); no row changes;
- daily, `vacuum_chain` deletes from every table, `_state` included, the files no version of
  the retention window needs (`DeltaStore.vacuum`): versions current at some moment inside the
  window stay readable (time travel), older ones are gone; no row of any version inside the
  window changes.

The functions here are plain: the Dagster wiring only passes them the store, the chain and
the day, and shows what they return.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg

from chainlake.config import ChainConfig
from chainlake.extract import day_bounds
from chainlake.lake import DEFAULT_RETENTION_HOURS, CompactResult, DeltaStore, VacuumResult

log = logging.getLogger(__name__)

# How far back a compaction tick looks for closed days: as long as the vacuum window, so a day
# missed while the daemon was down is still compacted before its small files would matter to
# time travel.
COMPACTION_LOOKBACK_DAYS = 7


def compact_chain_day(
    store: DeltaStore,
    chain: ChainConfig,
    day: dt.date,
    *,
    tables: Sequence[str] | None = None,
    target_size: int | None = None,
) -> list[CompactResult]:
    """Compact `day` in every date-partitioned Delta table of `chain`.

    Args:
        store: Where the tables live.
        chain: The chain.
        day: The day to compact; should be closed (compacting the open day is harmless but
            its next commits add small files again).
        tables: Only these tables; None: every table `store.list_tables` finds (`_state`
            left out: its tables are not partitioned by day and hold a few rows).
        target_size: Bytes per compacted file (None: the table's setting, else 100 MiB).

    Returns:
        One result per table compacted, in table order; a table not partitioned by `date` is
        skipped with a log line.
    """
    results = []
    for table in tables if tables is not None else store.list_tables(chain):
        try:
            results.append(store.compact_day(chain, table, day, target_size=target_size))
        except ValueError as e:  # not partitioned by date: no day of it to compact
            log.warning("%s: %s; skipped", chain.name, e)
    return results


def vacuum_chain(
    store: DeltaStore,
    chain: ChainConfig,
    *,
    retention_hours: int = DEFAULT_RETENTION_HOURS,
    full: bool = True,
    dry_run: bool = False,
    include_state: bool = True,
) -> list[VacuumResult]:
    """Vacuum every Delta table of `chain` (see `DeltaStore.vacuum`).

    Args:
        store: Where the tables live.
        chain: The chain.
        retention_hours: The time-travel window kept readable.
        full: Also delete unreferenced files older than the window (killed writes).
        dry_run: Only report what would be deleted.
        include_state: Vacuum the `_state/*` tables too: they are rewritten at every run
            (the checkpoint), so they gather the most stale files.

    Returns:
        One result per table, in table order.
    """
    return [
        store.vacuum(chain, t, retention_hours=retention_hours, full=full, dry_run=dry_run)
        for t in store.list_tables(chain, include_state=include_state)
    ]


@dataclass(frozen=True)
class DayMaterialisation:
    """The latest materialisation of a chain-day's raw/blocks: when, and its event's id."""

    day: dt.date
    timestamp: float  # unix seconds
    storage_id: int


def is_closed_for_compaction(day: dt.date, tick_day: dt.date, materialised_at: float) -> bool:
    """A day is closed, and worth compacting, when it is before the tick's UTC date and its
    raw/blocks partition was materialised after the day ended: that run read the day at a
    head past midnight, so the open day's small commits are over.

    Args:
        day: The day.
        tick_day: The UTC date of the schedule tick (never the wall clock).
        materialised_at: When raw/blocks of the day was last materialised (unix seconds).

    Returns:
        Whether to compact it now.
    """
    return day < tick_day and materialised_at >= day_bounds(day)[1]


def days_to_compact(
    tick_day: dt.date,
    latest: Iterable[DayMaterialisation],
    *,
    start_date: dt.date,
    lookback_days: int = COMPACTION_LOOKBACK_DAYS,
) -> list[DayMaterialisation]:
    """The days of the last `lookback_days` before `tick_day` that are closed, oldest first.

    Args:
        tick_day: The UTC date of the tick.
        latest: The latest raw/blocks materialisation of each day that has one.
        start_date: The chain's first day.
        lookback_days: How many days before `tick_day` to look at.

    Returns:
        The closed days' materialisations. A schedule keys each run on the materialisation
        (`compaction_run_key`), so a day is compacted once, and again after it is
        re-materialised (a backfill, a late run), which may add files.
    """
    first = max(start_date, tick_day - dt.timedelta(days=lookback_days))
    return sorted(
        (
            m
            for m in latest
            if first <= m.day and is_closed_for_compaction(m.day, tick_day, m.timestamp)
        ),
        key=lambda m: m.day,
    )


def compaction_run_key(chain: str, m: DayMaterialisation) -> str:
    """The run key of the compaction of `chain` on `m.day` after materialisation `m`."""
    return f"compact|{chain}|{m.day.isoformat()}|{m.storage_id}"


def _mib(n: int | None) -> str:
    return "" if n is None else f"{n / 2**20:.2f} MiB"


def compaction_metadata(results: Sequence[CompactResult]) -> dict[str, Any]:
    """What the Dagster UI shows for one chain-day's compaction: totals, and per table the
    files, bytes and rows before and after, the table version and the duration.

    Args:
        results: The tables' results.

    Returns:
        Metadata entries for an op's output.
    """
    lines = [
        "| table | files before → after | bytes before → after | rows | version | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        rows = (
            r.rows_after if r.rows_before == r.rows_after else f"{r.rows_before} → {r.rows_after}"
        )
        lines.append(
            f"| {r.table} | {r.files_before} → {r.files_after} | {_mib(r.bytes_before)} → "
            f"{_mib(r.bytes_after)} | {rows} | {r.version_before} → {r.version_after} | "
            f"{r.seconds:.2f} |"
        )
    per_table = {
        r.table: {
            "files_before": r.files_before,
            "files_after": r.files_after,
            "bytes_before": r.bytes_before,
            "bytes_after": r.bytes_after,
            "rows_before": r.rows_before,
            "rows_after": r.rows_after,
            "version_before": r.version_before,
            "version_after": r.version_after,
            "duration_s": round(r.seconds, 3),
        }
        for r in results
    }
    return {
        "tables": len(results),
        "tables_compacted": sum(r.compacted for r in results),
        "files_before": sum(r.files_before for r in results),
        "files_after": sum(r.files_after for r in results),
        "bytes_before": sum(r.bytes_before for r in results),
        "bytes_after": sum(r.bytes_after for r in results),
        "duration_s": round(sum(r.seconds for r in results), 3),
        "per_table": dg.MetadataValue.md("\n".join(lines)),
        "per_table_json": dg.MetadataValue.json(per_table),
    }


def vacuum_metadata(
    results: Mapping[str, Sequence[VacuumResult]], *, retention_hours: int
) -> dict[str, Any]:
    """What the Dagster UI shows for a vacuum: totals, and per chain and table the files and
    bytes deleted, the table version and the duration.

    Args:
        results: Each chain's tables' results.
        retention_hours: The window kept readable.

    Returns:
        Metadata entries for an op's output.
    """
    flat = [(chain, r) for chain, rs in results.items() for r in rs]
    lines = [
        "| chain | table | files deleted | bytes deleted | version | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for chain, r in flat:
        lines.append(
            f"| {chain} | {r.table} | {r.files_deleted} | {_mib(r.bytes_deleted)} | "
            f"{r.version_before} → {r.version_after} | {r.seconds:.2f} |"
        )
    return {
        "retention_hours": retention_hours,
        "tables": len(flat),
        "files_deleted": sum(r.files_deleted for _, r in flat),
        "bytes_deleted": sum(r.bytes_deleted or 0 for _, r in flat),
        "duration_s": round(sum(r.seconds for _, r in flat), 3),
        "per_table": dg.MetadataValue.md("\n".join(lines)),
    }
