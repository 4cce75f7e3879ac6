"""Delta maintenance on real tables: a day of many small commits (as the open day gets them)
compacts to one file per table with the same rows for every reader (Polars, DuckDB's
delta_scan as the serving views use it, ClickHouse's deltaLakeLocal through chdb), other days
untouched; vacuum keeps the retention window readable by time travel and nothing older; the
Dagster jobs report what they did. Local disk, and once on an S3 test server (moto)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError

from chainlake.config import ChainConfig, load_chains
from chainlake.lake import DeltaStore
from chainlake.maintenance import compact_chain_day, vacuum_chain
from tests.chain_helpers import ROOT, free_port, write_chains_yaml

pytestmark = pytest.mark.integration
# The figures measured (files, bytes, versions): `-o log_cli=true --log-cli-level=INFO` shows them.
log = logging.getLogger(__name__)

OTHER_DAY = dt.date(2026, 11, 1)
DAY = dt.date(2026, 11, 2)
COMMITS = 200
MAX_FILES_PER_TABLE_DAY = 3
S3_COMMITS = 15  # each commit is several requests to the test server

SCHEMA = pl.Schema(
    {
        "block_number": pl.Int64,
        "log_index": pl.Int64,
        "block_hash": pl.String,
        "timestamp": pl.Datetime("us", "UTC"),
        "value": pl.Decimal(38, 0),
        "date": pl.Date,
    }
)


def _frame(day: dt.date, block: int, rows: int = 3) -> pl.DataFrame:
    """A few rows of one block, with the column types of the chain tables (wide decimals,
    hashes, UTC timestamps)."""
    start = dt.datetime.combine(day, dt.time(), dt.UTC) + dt.timedelta(seconds=12 * block)
    return pl.DataFrame(
        {
            "block_number": [block] * rows,
            "log_index": list(range(rows)),
            "block_hash": [f"0x{block:064x}"] * rows,
            "timestamp": [start] * rows,
            "value": [Decimal(10**30 + block * 1000 + i) for i in range(rows)],
            "date": [day] * rows,
        },
        schema=SCHEMA,
    )


def _chain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ChainConfig:
    path = write_chains_yaml(tmp_path / "chains.yaml", ["http://127.0.0.1:1"])
    monkeypatch.setenv("CHAINS_CONFIG", str(path))
    return load_chains()["devnet"]


def _fill(store: DeltaStore, chain: ChainConfig, commits: int = COMMITS) -> None:
    """The other day closed in one commit per table; `DAY` open, `commits` small commits per
    table, the way new-block runs write: the raw tables replace the day's rows from the new
    blocks on (`replace_day(where=...)`), logs are appended, a core table replaces its day."""
    for table in ("blocks", "logs", "token_transfers"):
        store.replace_day(
            chain, table, OTHER_DAY, pl.concat([_frame(OTHER_DAY, b) for b in range(5)])
        )
    core: list[pl.DataFrame] = []
    for b in range(100, 100 + commits):
        store.replace_day(chain, "blocks", DAY, _frame(DAY, b), where=f"block_number >= {b}")
        store.append(chain, "logs", _frame(DAY, b, rows=2))
        core.append(_frame(DAY, b, rows=1))
        store.replace_day(chain, "token_transfers", DAY, pl.concat(core))


def _day_files(store: DeltaStore, chain: ChainConfig, table: str, day: dt.date) -> set[str]:
    t = DeltaTable(store.table_uri(chain, table), storage_options=store.storage_options() or None)
    return {p for p in t.file_uris() if f"date={day.isoformat()}/" in p}


def _digest(rows: object) -> str:
    return hashlib.sha256(repr(rows).encode()).hexdigest()


def polars_hashes(store: DeltaStore, uris: dict[str, str]) -> dict[str, str]:
    """Per table, the hash of its rows sorted, as Polars reads them."""
    opts = store.storage_options() or None
    return {
        t: _digest(pl.read_delta(u, storage_options=opts).sort(pl.all()).rows())
        for t, u in uris.items()
    }


def duckdb_hashes(store: DeltaStore, uris: dict[str, str]) -> dict[str, str]:
    """Per table, the hash of its rows sorted, through a view over `delta_scan` (as the
    serving views are built: DuckDB with the bundled delta extension)."""
    import duckdb

    from resources.duckdb import load_delta

    conn = duckdb.connect()
    try:
        load_delta(conn, store.storage_options())
        out = {}
        for t, u in uris.items():
            # the URIs are the test's own paths; delta_scan takes no bound parameter
            conn.execute(f"CREATE OR REPLACE VIEW v AS SELECT * FROM delta_scan('{u}')")  # noqa: S608
            out[t] = _digest(conn.execute("SELECT * FROM v ORDER BY ALL").fetchall())
        return out
    finally:
        conn.close()


_CHDB = """
import hashlib, json, sys
import chdb
out = {}
for table, uri in json.loads(sys.argv[1]).items():
    csv = chdb.query(f"SELECT * FROM deltaLakeLocal('{uri}') ORDER BY ALL", "CSV").bytes()
    out[table] = [hashlib.sha256(csv).hexdigest(), csv.count(b"\\n")]
print(json.dumps(out))
"""


def chdb_hashes(uris: dict[str, str], cwd: Path) -> dict[str, list]:
    """Per table, the hash and count of its rows sorted, as ClickHouse (chdb, in a process of
    its own: chdb reads files only under its working directory) reads them."""
    out = subprocess.run(
        [sys.executable, "-c", _CHDB, json.dumps(uris)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


def test_a_day_of_200_small_commits_compacts_to_one_file_per_table_with_the_same_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain = _chain(tmp_path, monkeypatch)
    store = DeltaStore(root=str(tmp_path / "delta"))
    _fill(store, chain)
    tables = store.list_tables(chain)
    assert tables == ["blocks", "logs", "token_transfers"]
    uris = {t: store.table_uri(chain, t) for t in tables}
    other_before = {t: _day_files(store, chain, t, OTHER_DAY) for t in tables}
    before = (polars_hashes(store, uris), duckdb_hashes(store, uris), chdb_hashes(uris, tmp_path))

    results = {r.table: r for r in compact_chain_day(store, chain, DAY)}

    for r in results.values():
        log.info(
            "%s %s: %d -> %d files, %d -> %d bytes, rows %s -> %s, version %d -> %d, %.2fs",
            r.table, r.day, r.files_before, r.files_after, r.bytes_before, r.bytes_after,
            r.rows_before, r.rows_after, r.version_before, r.version_after, r.seconds,
        )  # fmt: skip
    # blocks and logs gathered a file per commit; the core table, replaced whole, kept one
    assert results["blocks"].files_before == COMMITS
    assert results["logs"].files_before == COMMITS
    assert results["token_transfers"].files_before == 1
    for r in results.values():
        assert r.files_after <= MAX_FILES_PER_TABLE_DAY, r
        assert r.rows_after == r.rows_before
        assert len(_day_files(store, chain, r.table, DAY)) == r.files_after
    assert results["blocks"].files_after == results["logs"].files_after == 1
    assert results["blocks"].compacted and results["logs"].compacted
    # a day already in one file gets no commit
    assert not results["token_transfers"].compacted
    assert results["token_transfers"].version_after == results["token_transfers"].version_before

    after = (polars_hashes(store, uris), duckdb_hashes(store, uris), chdb_hashes(uris, tmp_path))
    assert after == before
    rows = {t: n for t, (_, n) in after[2].items()}
    assert rows == {
        "blocks": 15 + 3 * COMMITS,
        "logs": 15 + 2 * COMMITS,
        "token_transfers": 15 + COMMITS,
    }
    # the other day's files are the very same
    assert {t: _day_files(store, chain, t, OTHER_DAY) for t in tables} == other_before
    # compacting again changes nothing
    again = compact_chain_day(store, chain, DAY)
    assert all(not r.compacted and r.files_after == r.files_before for r in again)


def _age_commits(uri: str, versions: range, seconds: float) -> None:
    """Move commits `versions` (and the files they added) `seconds` into the past, as if they
    had been written then: vacuum judges a removed file by the removal's timestamp in the log
    and an unreferenced one by its modification time, and neither can be set when writing."""
    log_dir = Path(uri) / "_delta_log"
    for v in versions:
        path = log_dir / f"{v:020d}.json"
        actions = [json.loads(line) for line in path.read_text().splitlines() if line]
        for a in actions:
            if "commitInfo" in a:
                a["commitInfo"]["timestamp"] -= int(seconds * 1000)
            if "add" in a:
                a["add"]["modificationTime"] -= int(seconds * 1000)
                f = Path(uri) / a["add"]["path"]
                os.utime(f, (f.stat().st_atime - seconds, f.stat().st_mtime - seconds))
            if "remove" in a:
                a["remove"]["deletionTimestamp"] -= int(seconds * 1000)
        path.write_text("".join(json.dumps(a) + "\n" for a in actions))


def test_vacuum_keeps_the_retention_window_readable_and_nothing_older(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain = _chain(tmp_path, monkeypatch)
    store = DeltaStore(root=str(tmp_path / "delta"))
    uri = store.table_uri(chain, "blocks")
    # Ten days ago: the day was replaced three times (versions 0, 1, 2), each replacing the
    # previous version's file.
    for v in range(3):
        store.replace_day(chain, "blocks", DAY, _frame(DAY, v, rows=1 + v))
    _age_commits(uri, range(3), seconds=10 * 86_400)
    # Now: the open day's 200 small commits (versions 3..202), then compaction (203).
    for b in range(100, 100 + COMMITS):
        store.replace_day(chain, "blocks", DAY, _frame(DAY, b), where=f"block_number >= {b}")
    compacted = store.compact_day(chain, "blocks", DAY)
    assert (compacted.files_before, compacted.files_after) == (COMMITS + 1, 1)
    assert compacted.version_after == 3 + COMMITS

    def rows(version: int) -> list[tuple]:
        t = DeltaTable(uri, version=version)
        return pl.from_arrow(t.to_pyarrow_table()).sort(pl.all()).rows()  # type: ignore[union-attr]

    inside = [2, 3, 100, 150, 3 + COMMITS - 1, 3 + COMMITS]
    expected = {v: rows(v) for v in inside}
    assert [len(expected[v]) for v in (2, 3, 3 + COMMITS)] == [3, 6, 3 + 3 * COMMITS]
    assert len(rows(0)) == 1 and len(rows(1)) == 2  # readable before the vacuum

    # A window shorter than the table's deletedFileRetentionDuration (168 h) is refused.
    with pytest.raises(DeltaError, match="retention"):
        store.vacuum(chain, "blocks", retention_hours=24)

    results = vacuum_chain(store, chain, retention_hours=168)
    vac = {r.table: r for r in results}["blocks"]
    log.info("vacuum: %s", vac)
    # the files of versions 0 and 1 were replaced ten days ago: outside the window, deleted
    assert vac.files_deleted == 2
    assert vac.bytes_deleted and vac.bytes_deleted > 0
    # Inside the window: version 2 (current until the first small commit, i.e. at the
    # window's start), every small commit and the compaction still read the same rows.
    for v in inside:
        assert rows(v) == expected[v], v
    # Outside the window: versions 0 and 1 are gone for time travel. Their log entries
    # remain (the table loads at that version), their data files do not.
    for v in (0, 1):
        with pytest.raises(OSError, match="not found"):
            rows(v)
    # Nothing more to delete on a second run: no commit either.
    again = store.vacuum(chain, "blocks")
    assert again.files_deleted == 0 and again.version_after == again.version_before


def _output_metadata(result: object, node: str) -> dict:
    events = [
        e
        for e in result.all_node_events  # type: ignore[attr-defined]
        if e.event_type_value == "STEP_OUTPUT" and e.node_name == node
    ]
    assert len(events) == 1
    return {k: v.value for k, v in events[0].event_specific_data.metadata.items()}


def test_the_maintenance_jobs_run_in_process_and_report_per_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipelines.maintenance import delta_maintenance_job, delta_vacuum_job

    chain = _chain(tmp_path, monkeypatch)
    store = DeltaStore(root=str(tmp_path / "delta"))
    _fill(store, chain, commits=30)
    # a _state table, as the extraction keeps one: vacuumed, never compacted
    store.replace_day(chain, "_state/checkpoint", DAY, _frame(DAY, 1, rows=1))

    result = delta_maintenance_job.execute_in_process(
        partition_key=f"devnet|{DAY.isoformat()}", resources={"delta": store}
    )
    assert result.success
    md = _output_metadata(result, "compact_chain_day")
    log.info(
        "job metadata: %s\n%s", {k: v for k, v in md.items() if k != "per_table"}, md["per_table"]
    )
    assert md["tables"] == 3 and md["tables_compacted"] == 2
    assert md["files_before"] == 30 + 30 + 1 and md["files_after"] == 3
    assert md["bytes_after"] < md["bytes_before"]
    per_table = md["per_table_json"]
    assert set(per_table) == {"blocks", "logs", "token_transfers"}
    assert per_table["blocks"]["files_before"] == 30 and per_table["blocks"]["files_after"] == 1
    assert per_table["blocks"]["version_after"] == per_table["blocks"]["version_before"] + 1
    assert all(p["rows_before"] == p["rows_after"] for p in per_table.values())
    assert "| blocks | 30 → 1 |" in md["per_table"]

    result = delta_vacuum_job.execute_in_process(
        resources={"delta": store},
        run_config={"ops": {"vacuum_delta_tables": {"config": {"retention_hours": 168}}}},
    )
    assert result.success
    md = _output_metadata(result, "vacuum_delta_tables")
    assert md["retention_hours"] == 168
    # every table, _state included; everything was removed just now: nothing deleted
    assert md["tables"] == 4 and md["files_deleted"] == 0
    assert "| devnet | _state/checkpoint | 0 |" in md["per_table"]


# -- S3 ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 (no IAM: any key is accepted)."""
    import httpx

    port = free_port()
    proc = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{url}/moto-api/", timeout=1)
                break
            except httpx.HTTPError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def test_compaction_and_vacuum_on_s3(
    s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain = _chain(tmp_path, monkeypatch)
    store = DeltaStore(
        root="s3://maintenance/delta",
        s3_endpoint_url=s3_endpoint,
        s3_access_key_id="test",
        s3_secret_access_key="test",
        s3_create_bucket=True,
    )
    store.check_bucket()
    _fill(store, chain, commits=S3_COMMITS)
    tables = store.list_tables(chain)
    uris = {t: store.table_uri(chain, t) for t in tables}
    other_before = {t: _day_files(store, chain, t, OTHER_DAY) for t in tables}
    before = (polars_hashes(store, uris), duckdb_hashes(store, uris))

    results = {r.table: r for r in compact_chain_day(store, chain, DAY)}
    log.info("s3: %s", {t: (r.files_before, r.files_after) for t, r in results.items()})
    assert (results["blocks"].files_before, results["blocks"].files_after) == (S3_COMMITS, 1)
    assert (results["logs"].files_before, results["logs"].files_after) == (S3_COMMITS, 1)
    assert (polars_hashes(store, uris), duckdb_hashes(store, uris)) == before
    assert {t: _day_files(store, chain, t, OTHER_DAY) for t in tables} == other_before

    # full vacuum lists the bucket: everything removed is recent, nothing goes
    vac = vacuum_chain(store, chain)
    assert [r.files_deleted for r in vac] == [0, 0, 0]
    assert polars_hashes(store, uris) == before[0]
    # the version before the compaction is still there to time-travel to
    blocks = results["blocks"]
    old = DeltaTable(
        uris["blocks"], version=blocks.version_before, storage_options=store.storage_options()
    )
    assert old.to_pyarrow_table().num_rows == 15 + 3 * S3_COMMITS


# -- a real chain --------------------------------------------------------------------------

OPEN_DAY_RUNS = 8


def test_the_open_day_of_a_real_chain_compacts_with_the_same_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The raw and core assets write a day as new-block runs do (one small commit per run per
    raw table, the core table replaced), then the compaction job runs on their real schemas."""
    import dagster as dg

    from assets.core.token_transfers import token_transfers
    from assets.raw.chain_tables import raw_chain_tables
    from pipelines.maintenance import delta_maintenance_job
    from resources.rpc import RpcResource
    from tests.chain_helpers import Filler, anvil_node, day_ts

    day = dt.date(2026, 11, 6)
    store = DeltaStore(root=str(tmp_path / "delta"))
    with anvil_node(genesis_ts=day_ts(day)) as node:
        monkeypatch.setenv("CHAINS_CONFIG", str(write_chains_yaml(tmp_path / "c.yaml", [node.url])))
        chain = load_chains()["devnet"]
        filler = Filler(node)
        filler.deploy_emitter(day_ts(day, 60))
        # the head stays inside the day: every run after the first reads only the new blocks
        for run in range(OPEN_DAY_RUNS):
            filler.block(day_ts(day, 3_600 + 600 * run), transfers=2, logs=2, salt=run)
            result = dg.materialize(
                [raw_chain_tables, token_transfers],
                partition_key=f"devnet|{day}",
                resources={"delta": store, "rpc": RpcResource()},
            )
            assert result.success
    tables = store.list_tables(chain)
    assert tables == ["blocks", "logs", "token_transfers", "traces", "transactions"]
    uris = {t: store.table_uri(chain, t) for t in tables}
    before = (polars_hashes(store, uris), duckdb_hashes(store, uris), chdb_hashes(uris, tmp_path))

    result = delta_maintenance_job.execute_in_process(
        partition_key=f"devnet|{day}", resources={"delta": store}
    )
    assert result.success
    per_table = _output_metadata(result, "compact_chain_day")["per_table_json"]
    log.info("real chain, %d runs: %s", OPEN_DAY_RUNS, per_table)
    for t in ("blocks", "logs", "transactions"):
        # the first run replaced the day, each later one appended its blocks in a file
        assert per_table[t]["files_before"] >= OPEN_DAY_RUNS - 1, (t, per_table[t])
        assert per_table[t]["files_after"] == 1, (t, per_table[t])
    assert all(p["rows_before"] == p["rows_after"] for p in per_table.values())
    after = (polars_hashes(store, uris), duckdb_hashes(store, uris), chdb_hashes(uris, tmp_path))
    assert after == before


def test_a_compaction_that_loses_a_commit_race_is_tried_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deltalake.exceptions import CommitFailedError
    from deltalake.table import TableOptimizer

    chain = _chain(tmp_path, monkeypatch)
    store = DeltaStore(root=str(tmp_path / "delta"))
    for b in range(10):
        store.append(chain, "logs", _frame(DAY, b))
    real = TableOptimizer.compact
    calls: list[int] = []

    def racing(self: TableOptimizer, *args: object, **kwargs: object) -> dict:
        calls.append(1)
        if len(calls) == 1:
            # another writer commits to the day first, and this commit fails as delta-rs
            # reports a conflict
            for b in (10, 11):
                store.append(chain, "logs", _frame(DAY, b))
            raise CommitFailedError("Commit failed: a concurrent transaction deleted data")
        return real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(TableOptimizer, "compact", racing)
    result = store.compact_day(chain, "logs", DAY)
    assert len(calls) == 2
    # the second attempt started from the table as the other writer left it
    assert (result.files_before, result.files_after) == (12, 1)
    assert result.rows_before == result.rows_after == 36
    assert store.read_day(chain, "logs", DAY).height == 36
