"""A 30-day × 2-chain backfill through the real daemon and run queue.

Two anvil chains with blocks on each of 30 days and a tracked wallet each; a Postgres-backed
instance configured by the repository's dagster.yaml; the code location as its own server
(`dagster code-server start`, as deployed) and `dagster-daemon run` on it; the backfill of
raw and core launched with the README's `chainlake backfill` command (an asset backfill, so
the daemon plans runs of up to `CHAIN_DAYS_PER_RUN` days of one chain from the backfill
policies, balances after the day before's). While it runs, the DuckDB serving
layer is rewritten by `serving_job` runs (catalog + views over the Delta tables being written)
and read by this process in a loop, the way an analyst's notebook would.

It must finish with every run successful, no DuckDB lock error (in runs or for the reader), no
Delta commit conflict, every chain-day in the tables exactly once and materialised exactly once
per asset, far fewer runs than chain-days (multi-day runs), closed days of one chain in
parallel (runs tagged `chainlake/chain-history`, at most three of a chain at once) with both
chains progressing in parallel, and the processes of the daemon and the code server (its run
workers) holding no file of an embedded store afterwards.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import re
import subprocess
import threading
import time
from pathlib import Path

import polars as pl
import pytest
from dagster_stack import (
    ROOT,
    VENV_BIN,
    Chain,
    chains_yaml,
    code_server,
    open_files_under,
    process,
    process_tree,
    scratch_database,
    stack_env,
    start_chain,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(10800)]

DAYS = 30
# Closed days well before today (the partitions end at today).
FIRST_DAY = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=DAYS + 10)
SERVING_RUNS = 3
# raw, token/native transfers and prices share runs of up to 10 days of one chain (3 per chain
# and month); balances read their own day before, so Dagster gives them runs of their own: one
# per backfill tick that finds chain-days whose sources are done, at most one per such run.
# One run per chain-day was 60 runs; this test saw 10.
MAX_RUNS = 12
RAW_CORE = (
    ("raw", "blocks"),
    ("raw", "transactions"),
    ("raw", "logs"),
    ("raw", "traces"),
    ("core", "token_transfers"),
    ("core", "native_transfers"),
    ("core", "native_balance_movements"),
    ("core", "token_prices"),
    ("core", "balances"),
)
# What a DuckDB lock or a lost Delta commit race looks like in a run's logs.
LOCK_OR_CONFLICT = re.compile(
    r"Could not set lock on file|Conflicting lock|database is locked|IO Error: .*lock"
    r"|CommitFailedError|concurrent transaction|Commit failed|ConcurrentAppend|ConcurrentDelete",
    re.IGNORECASE,
)


def _most_at_once(spans: list[tuple[float, float]]) -> int:
    """The most of these (start, end) intervals that were open at one moment."""
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    return max(itertools.accumulate(step for _, step in edges), default=0)


def _portfolios_yaml(path: Path, chains: list[Chain]) -> None:
    lines = ["wallets:"]
    for c in chains:
        address = c.rpc("eth_accounts")[1]
        lines.append(f'  - {{name: {c.name}-payee, address: "{address}", chain: {c.name}}}')
    lines.append("portfolios:")
    for c in chains:
        lines += [
            f"  - id: {c.name}-book",
            f"    name: {c.name} book",
            f"    chain: {c.name}",
            f"    wallets: [{c.name}-payee]",
        ]
    path.write_text("\n".join(lines) + "\n")


class DuckDBReader(threading.Thread):
    """Reads the serving file read-only every 5 seconds, as an analyst would, and keeps every
    error except "not created yet"."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.stop = threading.Event()
        self.reads = 0
        self.errors: list[str] = []

    def run(self) -> None:
        from resources.duckdb import ServingDuckDB

        db = ServingDuckDB(database=str(self.path))
        while not self.stop.wait(5.0):
            if not self.path.exists():
                continue
            try:
                # the views resolve against the lake of the stack (tmp/delta beside the file)
                with db.reader(delta_root=str(self.path.with_name("delta"))) as conn:
                    conn.execute("SELECT count(*) FROM wallets").fetchone()
                    views = {
                        r[0]
                        for r in conn.execute("SELECT view_name FROM duckdb_views()").fetchall()
                    }
                    if "recent_transactions_view" in views:
                        conn.execute("SELECT count(*) FROM recent_transactions_view").fetchone()
                self.reads += 1
            except Exception as e:  # every failure is a finding
                self.errors.append(f"{type(e).__name__}: {e}"[:300])


def test_thirty_days_two_chains_backfill(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter
    from dagster._core.execution.backfill import BulkActionStatus
    from dagster._core.instance.ref import InstanceRef

    from chainlake.instance import ensure_instance

    chains = [
        start_chain("chain-a", 4_201, FIRST_DAY, DAYS),
        start_chain("chain-b", 4_202, FIRST_DAY, DAYS),
    ]
    reader = DuckDBReader(tmp_path / "chainlake.duckdb")
    try:
        with scratch_database("chainlake_test_backfill") as pg_url:
            home = tmp_path / "dagster_home"
            config = chains_yaml(tmp_path / "chains.yaml", chains, FIRST_DAY)
            _portfolios_yaml(tmp_path / "portfolios.yaml", chains)
            env = stack_env(tmp_path, home, pg_url, config)
            monkeypatch.setenv("DAGSTER_POSTGRES_URL", pg_url)
            ensure_instance(home, pg_url)

            def dagster(*args: str) -> subprocess.CompletedProcess[str]:
                out = subprocess.run(
                    [str(VENV_BIN / "dagster"), *args],
                    cwd=ROOT,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=600,
                )
                assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
                return out

            keys = [
                f"{c.name}|{FIRST_DAY + dt.timedelta(days=d)}" for c in chains for d in range(DAYS)
            ]
            with (
                code_server(env, tmp_path) as server,
                process(
                    [str(VENV_BIN / "dagster-daemon"), "run", "-w", str(server.workspace)],
                    env,
                    tmp_path / "daemon.log",
                ) as daemon,
            ):
                started = time.monotonic()
                submitted = time.time()
                last_day = FIRST_DAY + dt.timedelta(days=DAYS - 1)
                launched = _chainlake(
                    env, "backfill", "--from", str(FIRST_DAY), "--to", str(last_day)
                )
                backfill_id = re.search(r"Launched asset backfill `([^`]+)`", launched.stdout)
                assert backfill_id, launched.stdout[-2000:]
                reader.start()
                for _ in range(SERVING_RUNS):
                    dagster("job", "launch", "-w", str(server.workspace), "-j", "serving_job")

                instance = DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))
                runs_filter = RunsFilter(tags={"dagster/backfill": backfill_id.group(1)})
                serving_filter = RunsFilter(job_name="serving_job")

                def finished():
                    backfill = instance.get_backfill(backfill_id.group(1))
                    assert backfill is not None
                    if backfill.status == BulkActionStatus.REQUESTED:
                        return None
                    runs = instance.get_runs(runs_filter)
                    serving = instance.get_runs(serving_filter)
                    if len(serving) < SERVING_RUNS:
                        return None
                    done = all(r.is_finished for r in [*runs, *serving])
                    return (runs, serving, backfill.status) if done else None

                runs, serving, status = wait_for(
                    finished, timeout=1800, interval=5, what="the backfill's runs"
                )
                elapsed = time.monotonic() - started
                reader.stop.set()
                reader.join(30)
                held = open_files_under(
                    [*process_tree(daemon.pid), *process_tree(server.pid)],
                    [tmp_path / "delta", tmp_path / "chainlake.duckdb", tmp_path / "clickhouse"],
                )

            log = logging.getLogger(__name__)
            log.info(
                f"backfill of {len(keys)} chain-days: {elapsed:.1f}s, {len(runs)} runs, "
                f"{len(serving)} serving runs, {reader.reads} DuckDB reads"
            )
            log.info("runs, seconds from the submission (created → started → ended):")
            records = sorted(
                instance.get_run_records(runs_filter), key=lambda r: r.create_timestamp
            )
            for rec in records:
                run = rec.dagster_run
                span = [
                    f"{t - submitted:6.1f}" if t else "     -"
                    for t in (rec.create_timestamp.timestamp(), rec.start_time, rec.end_time)
                ]
                keys_of_run = (
                    f"{run.tags.get('dagster/asset_partition_range_start')} → "
                    f"{run.tags.get('dagster/asset_partition_range_end')}"
                    if run.tags.get("dagster/asset_partition_range_start")
                    else run.tags.get("dagster/partition")
                )
                assets_of_run = sorted(k.to_user_string() for k in run.asset_selection or ())
                log.info(f"  {' → '.join(span)}  {keys_of_run}  {len(assets_of_run)} assets")

            # every run succeeded, with steps in worker processes (the multiprocess executor)
            failed = [r for r in [*runs, *serving] if r.status != DagsterRunStatus.SUCCESS]
            assert not failed, _failure_summary(instance, failed)
            assert status == BulkActionStatus.COMPLETED_SUCCESS, status

            # multi-day runs: a few runs per chain, not one per chain-day
            assert len(runs) <= MAX_RUNS, f"{len(runs)} runs for {len(keys)} chain-days"
            ranged = [r for r in runs if r.tags.get("dagster/asset_partition_range_start")]
            assert ranged, "no run covered a range of days"

            # every asset of every chain-day materialised exactly once (the new-block sensor's
            # run of the day holding the head, after the last backfilled day, is not counted)
            for path in RAW_CORE:
                records = instance.fetch_materializations(AssetKey(list(path)), limit=1000).records
                counts: dict[str, int] = {}
                for mat in records:
                    key = str(mat.partition_key)
                    if key in keys:
                        counts[key] = counts.get(key, 0) + 1
                assert counts == dict.fromkeys(keys, 1), (
                    f"{'/'.join(path)}: {len(counts)} partitions, "
                    f"{sorted(k for k, n in counts.items() if n != 1)[:5]} more than once"
                )
            # the backfill's runs (ranges of days) ran their steps in their own process; the
            # serving runs (no range) forked a process per step (pipelines/executors.py)
            for run in ranged:
                workers = instance.get_records_for_run(
                    run.run_id, of_type=DagsterEventType.STEP_WORKER_STARTED
                ).records
                assert not workers, f"range run {run.run_id} forked step processes"
                engine = instance.get_records_for_run(
                    run.run_id, of_type=DagsterEventType.ENGINE_EVENT
                ).records
                assert any(
                    "Executing steps in process" in (r.event_log_entry.user_message or "")
                    for r in engine
                ), f"range run {run.run_id} did not run its steps in its own process"
            for run in serving:
                workers = instance.get_records_for_run(
                    run.run_id, of_type=DagsterEventType.STEP_WORKER_STARTED
                ).records
                assert workers, f"serving run {run.run_id} did not use the multiprocess executor"

            # nothing in any run's logs looks like a lock error or a Delta commit conflict
            problems = []
            for run in [*runs, *serving]:
                for rec in instance.all_logs(run.run_id):
                    text = rec.user_message or ""
                    event = rec.dagster_event
                    if event is not None:
                        text += " " + (event.message or "")
                        if event.is_step_failure:
                            text += " " + str(event.step_failure_data.error)
                    if LOCK_OR_CONFLICT.search(text):
                        problems.append(f"{run.tags.get('dagster/partition')}: {text[:300]}")
            assert not problems, "\n".join(problems[:10])
            retried = [r for r in runs if r.tags.get("dagster/retry_number")]
            assert not retried, f"{len(retried)} runs needed a retry"
            assert not reader.errors, reader.errors[:5]
            assert reader.reads > 0, "the serving file was never readable during the backfill"

            # the run queue's per-chain limits: every day is closed, so every run of one chain is
            # tagged as history (none as the open edge), up to three of a chain ran at once, and
            # at least two did
            by_chain: dict[str, list[tuple[float, float]]] = {}
            for rec in instance.get_run_records(runs_filter):
                assert "chainlake/chain" not in rec.dagster_run.tags, rec.dagster_run.tags
                chain = rec.dagster_run.tags.get("chainlake/chain-history")
                if chain is None:
                    # Dagster takes a self-dependent asset's first partitions across chains
                    # (a rectangle: days of both); such a run writes only that asset's table
                    selection = rec.dagster_run.asset_selection or set()
                    assert selection == {AssetKey(["core", "balances"])}, rec.dagster_run.tags
                    continue
                assert chain in {"chain-a", "chain-b"}, rec.dagster_run.tags
                assert rec.start_time and rec.end_time
                by_chain.setdefault(chain, []).append((rec.start_time, rec.end_time))
            most = {chain: _most_at_once(spans) for chain, spans in by_chain.items()}
            assert all(n <= 3 for n in most.values()), most
            assert max(most.values()) >= 2, f"no two runs of one chain ran at once: {most}"
            a, b = by_chain["chain-a"], by_chain["chain-b"]
            parallel = sum(1 for x in a for y in b if x[0] < y[1] and y[0] < x[1])
            assert parallel, "the two chains never ran at the same time"

            # every chain-day exactly once in Delta, with the blocks the node has
            for chain in chains:
                root = tmp_path / "delta" / chain.name / "local"
                blocks = pl.read_delta(str(root / "blocks"))
                assert blocks["block_number"].n_unique() == blocks.height
                per_day = dict(blocks.group_by("date").len().iter_rows())
                # besides the backfilled days, only the day holding the head block, which the
                # new-block sensor (running by default) brings up to the confirmed head
                head_day = FIRST_DAY + dt.timedelta(days=DAYS)
                assert per_day.pop(head_day, 1) == 1, chain.name
                assert per_day == chain.blocks_per_day, chain.name
                txs = pl.read_delta(str(root / "transactions"))
                assert txs.height == 2 * blocks.height
                assert txs.select("transaction_hash").n_unique() == txs.height

            # the daemon and its code server never hold an embedded store
            assert not held, f"daemon processes hold store files: {held}"
    finally:
        reader.stop.set()
        for c in chains:
            c.stop()


def _chainlake(env: dict, *args: str) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(
        [str(VENV_BIN / "chainlake"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    return out


def _failure_summary(instance, failed) -> str:
    from dagster import DagsterEventType

    lines = [f"{len(failed)} runs did not succeed"]
    for run in failed[:5]:
        recs = instance.get_records_for_run(
            run.run_id, of_type=DagsterEventType.STEP_FAILURE
        ).records
        for r in recs[:1]:
            err = r.event_log_entry.dagster_event.step_failure_data.error
            lines.append(f"{run.tags.get('dagster/partition')}: {err.message.strip()[:500]}")
        if not recs:
            lines.append(f"{run.job_name} {run.tags.get('dagster/partition')}: {run.status}")
    return "\n".join(lines)
