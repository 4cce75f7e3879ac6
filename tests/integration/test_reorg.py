"""Reorgs made on a real anvil (snapshot, revert, different blocks), across a day boundary:
the next raw run repairs the raw tables in every partition and logs what it replaced; the reorg
sensor then launches one run per stale chain-day that rebuilds every derived asset with its
checks, and the events of abandoned blocks are retracted."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from tests.chain_helpers import Anvil, Filler, anvil_node, day_ts, write_chains_yaml

pytestmark = pytest.mark.integration

D1 = dt.date(2026, 11, 3)
D2 = D1 + dt.timedelta(days=1)
TABLES = ["blocks", "transactions", "logs", "token_transfers", "native_transfers"]


def _materialize(store_root: Path, *days: dt.date) -> list[dg.ExecuteInProcessResult]:
    from assets.core.native_transfers import native_transfers
    from assets.core.token_transfers import token_transfers
    from assets.raw.chain_tables import raw_chain_tables
    from chainlake.lake import DeltaStore
    from resources.rpc import RpcResource

    out = []
    for day in days:
        result = dg.materialize(
            [raw_chain_tables, token_transfers, native_transfers],
            partition_key=f"devnet|{day.isoformat()}",
            resources={"delta": DeltaStore(root=str(store_root)), "rpc": RpcResource()},
        )
        assert result.success
        checks = result.get_asset_check_evaluations()
        assert checks and all(c.passed for c in checks), [c for c in checks if not c.passed]
        out.append(result)
    return out


def _raw_run(store_root: Path, day: dt.date) -> dg.ExecuteInProcessResult:
    """The run that finds the reorg: raw tables only, as a new-block run starts."""
    from assets.raw.chain_tables import raw_chain_tables
    from chainlake.lake import DeltaStore
    from resources.rpc import RpcResource

    result = dg.materialize(
        [raw_chain_tables],
        partition_key=f"devnet|{day.isoformat()}",
        resources={"delta": DeltaStore(root=str(store_root)), "rpc": RpcResource()},
    )
    assert result.success
    return result


def _rebuild_defs(store_root: Path, tmp: Path, events_url: str) -> dg.Definitions:
    """The code location's assets, rebuild job and reorg sensor on this test's stores."""
    from chainlake.lake import DeltaStore
    from pipelines.definitions import ASSETS
    from pipelines.jobs import reorg_rebuild_job
    from resources.clickhouse import ClickHouseResource, EmbeddedClickHouse
    from resources.duckdb import ServingDuckDB
    from resources.notifiers import NotifiersResource
    from resources.postgres import PostgresResource
    from resources.rpc import RpcResource
    from sensors.reorg_repairs import reorg_repairs_sensor

    return dg.Definitions(
        assets=ASSETS,
        jobs=[reorg_rebuild_job],
        sensors=[reorg_repairs_sensor],
        resources={
            "delta": DeltaStore(root=str(store_root)),
            "rpc": RpcResource(),
            "clickhouse": ClickHouseResource(
                engine=EmbeddedClickHouse(path=str(tmp / "clickhouse"))
            ),
            "duckdb": ServingDuckDB(database=str(tmp / "serving.duckdb")),
            "postgres": PostgresResource(url=events_url),
            "notifiers": NotifiersResource(),
        },
    )


def _sensor_tick(
    defs: dg.Definitions, instance: dg.DagsterInstance, store_root: Path, cursor: str | None
) -> dg.SensorResult:
    from chainlake.lake import DeltaStore

    sensor = defs.get_sensor_def("reorg_repairs_sensor")
    ctx = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={"delta": DeltaStore(root=str(store_root))},
        definitions=defs,
    )
    result = sensor(ctx)
    assert isinstance(result, dg.SensorResult)
    return result


def _run_rebuilds(
    defs: dg.Definitions, instance: dg.DagsterInstance, requests: list[dg.RunRequest]
) -> list[dg.ExecuteInProcessResult]:
    """Each requested run, as the daemon would launch it: the job for that partition."""
    job = defs.resolve_job_def("reorg_rebuild_job")
    out = []
    for req in requests:
        result = job.execute_in_process(
            partition_key=req.partition_key,
            instance=instance,
            tags={**req.tags, "dagster/run_key": req.run_key or ""},
            raise_on_error=False,
        )
        out.append(result)
    return out


DERIVED = {
    ("core", "token_transfers"),
    ("core", "tokens"),
    ("core", "nft_transfers"),
    ("core", "contracts"),
    ("core", "native_transfers"),
    ("core", "native_balance_movements"),
    ("core", "balances"),
    ("core", "token_prices"),
    ("analytics", "portfolio_snapshots"),
    ("analytics", "risk_metrics"),
    ("events", "chain_events"),
    ("events", "analytics_alerts"),
}


def _assert_rebuilt_once(
    runs: list[dg.ExecuteInProcessResult], instance: dg.DagsterInstance, days: list[dt.date]
) -> None:
    """Every derived asset of every repaired day was materialised by exactly one successful
    run, with its checks evaluated in that run and none failed at ERROR severity."""
    failures = [
        f"{e.step_key}: {e.step_failure_data.error.message.strip()[:300]}"
        for r in runs
        for e in r.all_events
        if e.is_step_failure and e.step_failure_data.error
    ]
    assert all(r.success for r in runs), failures
    partitions = {f"devnet|{d.isoformat()}" for d in days}
    seen: dict[tuple[tuple[str, ...], str], int] = {}
    for r in runs:
        for m in r.get_asset_materialization_events():
            key = (tuple(m.asset_key.path), m.partition or "")
            seen[key] = seen.get(key, 0) + 1
        checks = r.get_asset_check_evaluations()
        assert {tuple(c.asset_key.path) for c in checks} >= {
            ("core", "token_transfers"),
            ("core", "native_transfers"),
            ("core", "balances"),
        }
        bad = [c for c in checks if not c.passed and c.severity == dg.AssetCheckSeverity.ERROR]
        assert not bad, bad
    assert set(seen) == {(k, p) for k in DERIVED for p in partitions}, sorted(seen)
    assert set(seen.values()) == {1}, "a chain-day was rebuilt more than once"
    runs_in_instance = instance.get_runs(
        filters=dg.RunsFilter(job_name="reorg_rebuild_job", statuses=[dg.DagsterRunStatus.SUCCESS])
    )
    assert len(runs_in_instance) == len(days)


def _table(root: Path, name: str) -> pl.DataFrame:
    df = pl.read_delta(str(root / "devnet" / "local" / name))
    keys = [c for c in ("block_number", "transaction_index", "log_index") if c in df.columns]
    return df.sort(keys)


def _first_chain(node: Anvil, f: Filler) -> str:
    """Blocks late on D1, a snapshot two blocks before midnight, then blocks into D2."""
    f.deploy_emitter(day_ts(D1, 3_600))
    for i in range(4):
        f.block(day_ts(D1, 86_000 + i * 60))
    snap = node.rpc("evm_snapshot")
    for i in range(2):  # abandoned: the last two blocks of D1 ...
        f.block(day_ts(D1, 86_300 + i * 30))
    for i in range(3):  # ... and the first three of D2
        f.block(day_ts(D2, 20 + i * 12))
    return snap


@pytest.fixture
def events_db():
    """A fresh events database (the trigger engine's schema) for this test only."""
    import uuid

    from chainlake.events import db

    url = f"postgresql://postgres@127.0.0.1:5432/chainlake_test_reorg_{uuid.uuid4().hex[:8]}"
    db.migrate(url)
    try:
        yield url
    finally:
        db.drop_database(url)


@pytest.fixture
def chain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with anvil_node(genesis_ts=day_ts(D1), keep_states=1_000) as node:
        monkeypatch.setenv("CHAINS_CONFIG", str(write_chains_yaml(tmp_path / "c.yaml", [node.url])))
        yield node


def _canonical(node: Anvil, tables: dict[str, pl.DataFrame]) -> None:
    """Every block, transaction and log in the tables is on the node's chain now."""
    numbers = tables["blocks"]["block_number"].to_list()
    hashes = {n: node.rpc("eth_getBlockByNumber", [hex(n), False])["hash"] for n in numbers}
    for name, df in tables.items():
        if "block_hash" not in df.columns:  # core/native_transfers: compared with a clean run
            continue
        for n, h in df.select("block_number", "block_hash").unique().iter_rows():
            assert hashes.get(n) == h, f"{name}: block {n} {h} is not on the chain"
    head = int(node.rpc("eth_blockNumber"), 16)
    assert sorted(numbers) == list(range(head + 1))  # genesis is at D1 00:00


def _events_at(events_db: str, blocks: pl.DataFrame, numbers: list[int]) -> None:
    """The trigger engine holds an event of each of these blocks, as decoded earlier."""
    from chainlake.events import db
    from chainlake.events import store as events

    rows = blocks.filter(pl.col("block_number").is_in(numbers))
    with db.connection(events_db) as conn:
        events.insert_events(
            conn,
            [
                {"chain_id": 31337, "block_number": n, "block_hash": h, "log_index": 0,
                 "transaction_hash": "0x" + "ab" * 32, "registry": "erc20",
                 "event_type": "transfer", "timestamp": int(ts.timestamp())}
                for n, h, ts in rows.select("block_number", "block_hash", "timestamp").iter_rows()
            ],
        )  # fmt: skip


def _event_rows(events_db: str) -> dict[str, dict]:
    from chainlake.events import db

    with db.connection(events_db) as conn:
        rows = conn.execute(
            "SELECT id, block_number, retracted_at, event_type, retracts FROM events ORDER BY seq"
        ).fetchall()
    return {r["id"]: r for r in rows}


def test_reorg_across_midnight_repairs_every_table(
    chain: Anvil, tmp_path: Path, events_db: str
) -> None:
    from chainlake.reorg import AUDIT_TABLE

    node, f = chain, Filler(chain)
    snap = _first_chain(node, f)
    store = tmp_path / "delta"
    _materialize(store, D1, D2)
    before = {t: _table(store, t) for t in TABLES}
    old = dict(before["blocks"].select("block_number", "block_hash").iter_rows())
    # the trigger engine holds events of a block that stays (3) and of one that goes (7)
    _events_at(events_db, before["blocks"], [3, 7])
    # a table keyed by block that no asset of the code location writes
    probe = before["blocks"].select("date", "block_number", "block_hash")
    probe.write_delta(
        str(store / "devnet" / "local" / "probe_by_block"),
        delta_write_options={"partition_by": ["date"]},
    )

    # the node switches to another chain from the snapshot: one D1 block, then four in D2
    assert node.rpc("evm_revert", [snap]) is True
    f.nonce = int(node.rpc("eth_getTransactionCount", [f.sender, "pending"]), 16)
    f.block(day_ts(D1, 86_350), transfers=3, logs=1, salt=1)
    for i in range(4):
        f.block(day_ts(D2, 40 + i * 12), transfers=1, logs=3, salt=2 + i)

    result = _raw_run(store, D2)  # the next run, today's partition
    # right after the repair no table holds an abandoned block, derived ones included
    for t in ("token_transfers", "native_transfers", "probe_by_block"):
        assert _table(store, t)["block_number"].max() <= 5, t
    kept = _table(store, "probe_by_block")
    assert kept.equals(probe.filter(pl.col("block_number") <= 5).sort("block_number"))

    # the sensor launches one rebuild run per repaired chain-day; a second tick launches none
    with dg.instance_for_test() as instance:
        defs = _rebuild_defs(store, tmp_path, events_db)
        tick = _sensor_tick(defs, instance, store, None)
        assert sorted(r.partition_key for r in tick.run_requests) == [
            f"devnet|{D1}",
            f"devnet|{D2}",
        ]
        assert len({r.run_key for r in tick.run_requests}) == 2
        runs = _run_rebuilds(defs, instance, tick.run_requests)
        _assert_rebuilt_once(runs, instance, [D1, D2])
        assert _sensor_tick(defs, instance, store, tick.cursor).run_requests == []

    after = {t: _table(store, t) for t in TABLES}
    _canonical(node, after)

    # identical to a clean extraction of the new chain
    clean = tmp_path / "clean"
    _materialize(clean, D1, D2)
    for t in TABLES:
        assert after[t].equals(_table(clean, t)), t
    assert set(after["blocks"]["date"].to_list()) == {D1, D2}

    # what was replaced is logged, with old and new hashes
    audit = _table(store, AUDIT_TABLE).sort("block_number")
    replaced = audit["block_number"].to_list()
    assert replaced == [6, 7, 8, 9, 10]
    new = dict(after["blocks"].select("block_number", "block_hash").iter_rows())
    for row in audit.iter_rows(named=True):
        assert row["old_hash"] == old[row["block_number"]]
        assert row["new_hash"] == new.get(row["block_number"])
        assert row["old_hash"] != row["new_hash"]
    (mat,) = [
        m.materialization
        for m in result.get_asset_materialization_events()
        if m.asset_key == dg.AssetKey(["raw", "blocks"]) and m.partition == f"devnet|{D2}"
    ]
    text = mat.metadata["reorg"].value
    assert "reorg after block 5 (checkpoint was 10)" in text
    assert f"block 6: {old[6]} -> {new[6]}" in text
    # the abandoned block's event is retracted, the other one is left alone
    by_id = _event_rows(events_db)
    assert by_id["31337-3-0"]["retracted_at"] is None
    assert by_id[f"31337-7-0@{old[7]}"]["retracted_at"] is not None
    assert by_id[f"31337-7-0@{old[7]}/retracted"]["retracts"] == f"31337-7-0@{old[7]}"

    # D1's raw partition, rewritten by a D2 run, is recorded as materialised again
    other = [
        m
        for m in result.get_asset_materialization_events()
        if m.partition == f"devnet|{D1.isoformat()}"
    ]
    assert {tuple(m.asset_key.path) for m in other} >= {("raw", "blocks"), ("raw", "logs")}


def test_shorter_chain_then_closed_day_rerun(chain: Anvil, tmp_path: Path, events_db: str) -> None:
    """The new chain is shorter and lands in D1 only; the run that finds it is a re-run of
    the closed day D1: D2 loses every row, in every table, and every abandoned block's event
    is retracted by the rebuild."""
    node, f = chain, Filler(chain)
    snap = _first_chain(node, f)
    store = tmp_path / "delta"
    _materialize(store, D1, D2)
    blocks = _table(store, "blocks")
    old = dict(blocks.select("block_number", "block_hash").iter_rows())
    _events_at(events_db, blocks, [3, 6, 7, 8, 9, 10])
    assert node.rpc("evm_revert", [snap]) is True
    f.nonce = int(node.rpc("eth_getTransactionCount", [f.sender, "pending"]), 16)
    f.block(day_ts(D1, 86_390), transfers=1, logs=2, salt=9)

    _raw_run(store, D1)
    with dg.instance_for_test() as instance:
        defs = _rebuild_defs(store, tmp_path, events_db)
        tick = _sensor_tick(defs, instance, store, None)
        runs = _run_rebuilds(defs, instance, tick.run_requests)
        _assert_rebuilt_once(runs, instance, [D1, D2])
    after = {t: _table(store, t) for t in TABLES}
    _canonical(node, after)
    for t in TABLES:
        assert D2 not in after[t]["date"].to_list(), t
    # blocks 6..10 abandoned (6 is replaced by another block, 7..10 are gone)
    by_id = _event_rows(events_db)
    retracted = sorted(r["block_number"] for r in by_id.values() if r["retracted_at"] is not None)
    assert retracted == [6, 7, 8, 9, 10]
    assert by_id["31337-3-0"]["retracted_at"] is None
    assert all(f"31337-{n}-0@{old[n]}/retracted" in by_id for n in range(6, 11))
    clean = tmp_path / "clean"
    _materialize(clean, D1)
    for t in TABLES:
        assert after[t].equals(_table(clean, t)), t


def test_a_failed_rebuild_leaves_no_orphan_and_is_finished_by_re_execution(
    chain: Anvil, tmp_path: Path, events_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rebuild run that fails is a failed run in the instance; meanwhile the derived table
    holds no abandoned block, the sensor does not launch the same repair twice, and running
    that partition again (as from the UI) finishes the repair."""
    import assets.core.token_transfers as token_transfers_module

    node, f = chain, Filler(chain)
    snap = _first_chain(node, f)
    store = tmp_path / "delta"
    _materialize(store, D1, D2)
    node.rpc("evm_revert", [snap])
    f.nonce = int(node.rpc("eth_getTransactionCount", [f.sender, "pending"]), 16)
    for i in range(3):
        f.block(day_ts(D2, 30 + i * 12), transfers=1, logs=2, salt=5 + i)

    _raw_run(store, D2)
    original = token_transfers_module.token_transfers_frame

    def broken(*a: object) -> pl.DataFrame:
        # not retried: the step's transient retries would only add their delays here
        raise dg.Failure("disk full", allow_retries=False)

    monkeypatch.setattr(token_transfers_module, "token_transfers_frame", broken)
    with dg.instance_for_test() as instance:
        defs = _rebuild_defs(store, tmp_path, events_db)
        tick = _sensor_tick(defs, instance, store, None)
        failed = _run_rebuilds(defs, instance, tick.run_requests)
        assert not any(r.success for r in failed)
        assert _table(store, "token_transfers")["block_number"].max() <= 5  # no orphan
        assert _sensor_tick(defs, instance, store, tick.cursor).run_requests == []
        assert len(instance.get_runs(
            filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE])
        )) == len(tick.run_requests)  # fmt: skip

        monkeypatch.setattr(token_transfers_module, "token_transfers_frame", original)
        again = _run_rebuilds(defs, instance, tick.run_requests)
        assert all(r.success for r in again)
    clean = tmp_path / "clean"
    _materialize(clean, D1, D2)
    for t in TABLES:
        assert _table(store, t).equals(_table(clean, t)), t
