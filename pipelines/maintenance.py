"""Delta table maintenance: compaction of closed chain-days, and a daily vacuum. Wiring only:
the logic and its tests are in `chainlake.maintenance` and `chainlake.lake.DeltaStore`.

    raw/blocks of a past day materialised after its midnight
        --delta_compaction_schedule (hourly)--> delta_maintenance_job (one run per chain-day)
    03:30 UTC --delta_vacuum_schedule (daily)--> delta_vacuum_job (every chain, every table)

A compaction run is partitioned like the assets (`<chain>|<day>`), so the run queue gives it
the chain's single slot: it never races that chain's writers for a commit. Vacuum runs beside
them: it deletes only files removed more than the retention window ago, or never committed
and as old.
"""

# No `from __future__ import annotations`: Dagster reads the ops' config and resource
# annotations as types.
import datetime as dt

import dagster as dg
from pydantic import Field

from assets.policies import TRANSIENT_RETRY
from chainlake import maintenance
from chainlake.config import ChainConfig, chains_config_path, get_chain, load_chains
from chainlake.lake import DEFAULT_RETENTION_HOURS, DeltaStore
from chainlake.partitions import CHAINS, chain_day_key, chain_day_partitions, partition_chain_day
from chainlake.run_coordinator import CHAIN_TAG
from pipelines.schedules import DONE_ASSET

TAGS = {"chainlake/engine": "maintenance"}


class CompactConfig(dg.Config):
    """The compaction op's configuration (launchpad); the schedule leaves the defaults."""

    tables: list[str] = Field(
        default_factory=list,
        description="Only these tables (as under the chain's folder, e.g. `blocks`, "
        "`token_transfers`); default: every date-partitioned table of the chain.",
    )
    target_file_mb: int | None = Field(
        default=None,
        description="Size of a compacted file in MiB; default: the table's "
        "delta.targetFileSize, else 100 MiB.",
    )


@dg.op(
    description="Compact the chain-day's partition of every Delta table of the chain into a "
    "few files (OPTIMIZE; no row changes). Metadata: files, bytes and rows before and after, "
    "table version and duration, per table.",
    retry_policy=TRANSIENT_RETRY,
)
def compact_chain_day(
    context: dg.OpExecutionContext, config: CompactConfig, delta: dg.ResourceParam[DeltaStore]
) -> dg.Output[dict]:
    """Compact the run's chain-day (its partition key) in every table of the chain.

    Args:
        context: The op's context; its partition key names the chain and the day.
        config: Which tables, and the target file size.
        delta: The Delta store.

    Returns:
        Tables compacted and files before and after; per-table figures in the metadata.
    """
    chain, day = partition_chain_day(context.partition_key)
    results = maintenance.compact_chain_day(
        delta,
        chain,
        day,
        tables=config.tables or None,
        target_size=config.target_file_mb * 2**20 if config.target_file_mb else None,
    )
    for r in results:
        context.log.info(
            f"{chain.name} {day} {r.table}: {r.files_before} → {r.files_after} files, "
            f"{r.bytes_before} → {r.bytes_after} bytes, version {r.version_after} "
            f"({r.seconds:.2f}s)"
        )
    metadata = maintenance.compaction_metadata(results)
    summary = {k: metadata[k] for k in ("tables_compacted", "files_before", "files_after")}
    return dg.Output(summary, metadata=metadata)


class VacuumConfig(dg.Config):
    """The vacuum op's configuration (launchpad); the schedule leaves the defaults."""

    retention_hours: int = Field(
        default=DEFAULT_RETENTION_HOURS,
        description="Time-travel window kept readable: a version current at some moment in the "
        "last retention_hours can still be read, an older one cannot. Never below a table's "
        "delta.deletedFileRetentionDuration (168 h unless set): the run fails instead.",
    )
    chains: list[str] = Field(
        default_factory=list, description="Only these chains; default: every chain."
    )
    full: bool = Field(
        default=True,
        description="Also delete files no version references and older than the window "
        "(a write killed before its commit).",
    )
    dry_run: bool = Field(default=False, description="Only report what would be deleted.")


@dg.op(
    description="Vacuum every Delta table of every chain (`_state` included): delete the files "
    "no version of the retention window needs. Metadata: files and bytes deleted, table "
    "version and duration, per table.",
    retry_policy=TRANSIENT_RETRY,
)
def vacuum_delta_tables(
    context: dg.OpExecutionContext, config: VacuumConfig, delta: dg.ResourceParam[DeltaStore]
) -> dg.Output[dict]:
    """Vacuum every table of the configured chains.

    Args:
        context: The op's context.
        config: Retention window, chains, full or lite, dry run.
        delta: The Delta store.

    Returns:
        Tables, files and bytes deleted; per-table figures in the metadata.
    """
    # read at run time, as the assets do: the chains of the file now, not at code load
    chains = load_chains()
    source = str(chains_config_path())
    picked: list[ChainConfig] = [
        get_chain(chains, name, source=source) for name in (config.chains or sorted(chains))
    ]
    results = {}
    for chain in picked:
        results[chain.name] = maintenance.vacuum_chain(
            delta,
            chain,
            retention_hours=config.retention_hours,
            full=config.full,
            dry_run=config.dry_run,
        )
        for r in results[chain.name]:
            context.log.info(
                f"{chain.name} {r.table}: {r.files_deleted} files deleted"
                f"{' (dry run)' if r.dry_run else ''}, version {r.version_after} "
                f"({r.seconds:.2f}s)"
            )
    metadata = maintenance.vacuum_metadata(results, retention_hours=config.retention_hours)
    summary = {k: metadata[k] for k in ("tables", "files_deleted", "bytes_deleted")}
    return dg.Output(summary, metadata=metadata)


@dg.job(
    partitions_def=chain_day_partitions,
    description="Compact one closed chain-day of every Delta table of the chain (launched by "
    "delta_compaction_schedule; any chain-day can be launched from the UI).",
    tags=TAGS,
    # one op per job: a step subprocess would only add an interpreter start to every run
    executor_def=dg.in_process_executor,
)
def delta_maintenance_job() -> None:
    """One op: compact the partition's chain-day."""
    compact_chain_day()


@dg.job(
    description="Vacuum every Delta table of every chain, keeping the retention window "
    "readable (launched daily by delta_vacuum_schedule).",
    tags=TAGS,
    executor_def=dg.in_process_executor,
)
def delta_vacuum_job() -> None:
    """One op: vacuum every table."""
    vacuum_delta_tables()


def _latest_materialisation(
    instance: dg.DagsterInstance, chain: str, day: dt.date
) -> maintenance.DayMaterialisation | None:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=DONE_ASSET, asset_partitions=[str(chain_day_key(chain, day))]
        ),
        limit=1,
    ).records
    if not records:
        return None
    return maintenance.DayMaterialisation(day, records[0].timestamp, records[0].storage_id)


@dg.schedule(
    name="delta_compaction_schedule",
    job=delta_maintenance_job,
    cron_schedule="45 * * * *",
    execution_timezone="UTC",
)
def delta_compaction_schedule(context: dg.ScheduleEvaluationContext):
    """Hourly: compact each chain-day of the last week that is closed (before the tick's UTC
    date, raw/blocks materialised after its midnight), once per materialisation of it."""
    tick = context.scheduled_execution_time or dt.datetime.now(dt.UTC)
    tick_day = tick.astimezone(dt.UTC).date()
    requests = []
    for chain in CHAINS.values():
        days = [
            tick_day - dt.timedelta(days=n)
            for n in range(1, maintenance.COMPACTION_LOOKBACK_DAYS + 1)
        ]
        latest = [
            m
            for d in days
            if d >= chain.start_date
            and (m := _latest_materialisation(context.instance, chain.name, d)) is not None
        ]
        for m in maintenance.days_to_compact(tick_day, latest, start_date=chain.start_date):
            requests.append(
                dg.RunRequest(
                    run_key=maintenance.compaction_run_key(chain.name, m),
                    partition_key=chain_day_key(chain.name, m.day),
                    tags={CHAIN_TAG: chain.name, "chainlake/trigger": "schedule"},
                )
            )
    if not requests:
        return dg.SkipReason(f"no closed chain-day of the week before {tick_day} to compact")
    return requests


@dg.schedule(
    name="delta_vacuum_schedule",
    job=delta_vacuum_job,
    cron_schedule="30 3 * * *",
    execution_timezone="UTC",
)
def delta_vacuum_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """Daily: vacuum every Delta table with the default retention (change it for one run in
    the launchpad: `ops: {vacuum_delta_tables: {config: {retention_hours: ...}}}`)."""
    tick = context.scheduled_execution_time or dt.datetime.now(dt.UTC)
    return dg.RunRequest(run_key=f"vacuum|{tick.astimezone(dt.UTC).date().isoformat()}")


MAINTENANCE_JOBS = [delta_maintenance_job, delta_vacuum_job]
MAINTENANCE_SCHEDULES = [delta_compaction_schedule, delta_vacuum_schedule]
