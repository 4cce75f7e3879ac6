"""A run killed with SIGKILL in the middle of a Delta write leaves no partial partition
visible, and the next run completes the day.

The run is a spawned child process (deltalake is not fork-safe). The record-batch stream the
child hands to one table's write is slowed down and marks the moment it is half consumed;
the parent kills the child right then, so the kill lands inside `write_deltalake` every time.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing as mp
import os
import signal
import time
from pathlib import Path

import polars as pl
import pytest

from tests.chain_helpers import Anvil, Filler, anvil_node, day_ts, write_chains_yaml

pytestmark = pytest.mark.integration

DAY = dt.date(2026, 11, 8)
TABLES = ["blocks", "transactions", "logs"]


def _child(chains_yaml: str, root: str, slow_table: str, marker: str) -> None:
    """Materialise DAY, stalling inside the write of `slow_table` once it is under way:
    after its first data file is in the table's folder (a whole day, whose staged files
    become the table's files) or once part of its rows went to delta-rs' writer (the open
    day's newest blocks)."""
    os.environ["CHAINS_CONFIG"] = chains_yaml
    import dagster as dg
    import pyarrow as pa

    from assets.raw.chain_tables import raw_chain_tables
    from chainlake.extract import StagedExtract
    from chainlake.lake import DeltaStore
    from resources.rpc import RpcResource

    def stall() -> None:
        Path(marker).write_text(str(os.getpid()))
        time.sleep(120)

    original_reader = StagedExtract.reader
    original_place = DeltaStore._place

    def reader(self: StagedExtract, table: str) -> pa.RecordBatchReader:
        stream = original_reader(self, table)
        if table != slow_table:
            return stream

        def batches():
            sent = 0
            for batch in stream:
                for i in range(batch.num_rows):
                    yield batch.slice(i, 1)
                    sent += 1
                    if sent == 3:  # the writer holds part of the rows
                        stall()

        return pa.RecordBatchReader.from_batches(stream.schema, batches())

    def place(self: DeltaStore, uri: str, day: dt.date, source: Path):  # type: ignore[no-untyped-def]
        action = original_place(self, uri, day, source)
        if uri.endswith(f"/{slow_table}"):
            stall()  # a data file is in the table's folder, not yet committed
        return action

    StagedExtract.reader = reader  # type: ignore[method-assign]
    DeltaStore._place = place  # type: ignore[method-assign]
    dg.materialize(
        [raw_chain_tables],
        partition_key=f"devnet|{DAY}",
        resources={"delta": DeltaStore(root=root), "rpc": RpcResource()},
    )


def _kill_mid_write(chains_yaml: Path, root: Path, table: str, tmp: Path) -> None:
    marker = tmp / f"marker-{table}-{time.monotonic_ns()}"
    proc = mp.get_context("spawn").Process(
        target=_child, args=(str(chains_yaml), str(root), table, str(marker))
    )
    proc.start()
    deadline = time.monotonic() + 180
    while not marker.exists():
        assert proc.is_alive(), "the run ended before reaching the write"
        assert time.monotonic() < deadline, "the run never reached the write"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(30)
    assert proc.exitcode == -signal.SIGKILL


def _day(root: Path, table: str) -> pl.DataFrame | None:
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        DeltaTable(str(root / "devnet" / "local" / table))
    except TableNotFoundError:
        return None
    df = pl.read_delta(str(root / "devnet" / "local" / table)).filter(pl.col("date") == DAY)
    keys = [c for c in ("block_number", "transaction_index", "log_index") if c in df.columns]
    return df.sort(keys)


def _same(a: pl.DataFrame | None, b: pl.DataFrame | None) -> bool:
    if a is None or b is None:
        return (a is None or a.height == 0) and (b is None or b.height == 0)
    return a.equals(b)


def _run(root: Path) -> None:
    import dagster as dg

    from assets.raw.chain_tables import raw_chain_tables
    from chainlake.lake import DeltaStore
    from resources.rpc import RpcResource

    result = dg.materialize(
        [raw_chain_tables],
        partition_key=f"devnet|{DAY}",
        resources={"delta": DeltaStore(root=str(root)), "rpc": RpcResource()},
    )
    assert result.success and all(c.passed for c in result.get_asset_check_evaluations())


def _mine(f: Filler, start: int, n: int) -> None:
    for i in range(n):
        f.block(day_ts(DAY, start + i * 60), transfers=6, logs=4, salt=start + i)


@pytest.fixture
def chain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with anvil_node(genesis_ts=day_ts(DAY)) as node:
        cfg = write_chains_yaml(tmp_path / "c.yaml", [node.url])
        monkeypatch.setenv("CHAINS_CONFIG", str(cfg))
        f = Filler(node)
        f.deploy_emitter(day_ts(DAY, 30))
        yield node, f, cfg


def test_killed_in_the_first_write_leaves_nothing_visible(
    chain: tuple[Anvil, Filler, Path], tmp_path: Path
) -> None:
    _, f, cfg = chain
    _mine(f, 600, 12)
    root = tmp_path / "delta"
    _kill_mid_write(cfg, root, "transactions", tmp_path)
    # a data file of the day is in the table's folder; none of its rows is visible
    assert list((root / "devnet" / "local" / "transactions").rglob("*.parquet"))
    for t in TABLES:
        day = _day(root, t)
        assert day is None or day.height == 0, t

    _run(root)  # the next run completes the day
    clean = tmp_path / "clean"
    _run(clean)
    for t in TABLES:
        assert _same(_day(root, t), _day(clean, t)), t


@pytest.mark.parametrize("killed", ["transactions", "blocks"])
def test_killed_while_bringing_the_open_day_up_to_date(
    chain: tuple[Anvil, Filler, Path], tmp_path: Path, killed: str
) -> None:
    """The open day grows; the run that appends its new blocks is killed inside the write
    of raw/transactions (the first table) or raw/blocks (the last one). Each table shows the
    day as it was before or as it is after, never a part; the next run leaves no duplicate."""
    _, f, cfg = chain
    _mine(f, 600, 6)
    root = tmp_path / "delta"
    _run(root)
    before = {t: _day(root, t) for t in TABLES}
    _mine(f, 1_200, 8)
    clean = tmp_path / "clean"
    _run(clean)
    after = {t: _day(clean, t) for t in TABLES}

    _kill_mid_write(cfg, root, killed, tmp_path)
    for t in TABLES:
        now = _day(root, t)
        assert _same(now, before[t]) or _same(now, after[t]), t
    assert _same(_day(root, killed), before[killed])  # the killed write left no trace

    _run(root)
    for t in TABLES:
        assert _same(_day(root, t), after[t]), t
