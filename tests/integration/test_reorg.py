"""Reorgs made on a real anvil (snapshot, revert, different blocks), across a day boundary:
the next run repairs every table, in every partition, and logs what it replaced."""

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


@pytest.fixture(autouse=True)
def retractions(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, list[int]]]:
    """Retractions go to this list, never to a shared events database."""
    from chainlake import reorg

    calls: list[tuple[int, list[int]]] = []

    def record(chain, numbers: list[int]) -> bool:
        calls.append((chain.chain_id, list(numbers)))
        return True

    monkeypatch.setattr(reorg, "RETRACTION_HOOK", record)
    return calls


@pytest.fixture
def events_db(monkeypatch: pytest.MonkeyPatch):
    """A fresh events database (the trigger engine's schema) for this test only."""
    import uuid

    from chainlake import reorg
    from chainlake.events import db

    url = f"postgresql://postgres@127.0.0.1:5432/chainlake_test_reorg_{uuid.uuid4().hex[:8]}"
    db.migrate(url)
    monkeypatch.setenv("POSTGRES_URL", url)
    monkeypatch.setattr(reorg, "RETRACTION_HOOK", None)
    try:
        yield url
    finally:
        db.drop_database(url)


@pytest.fixture
def chain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with anvil_node(genesis_ts=day_ts(D1)) as node:
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


def test_reorg_across_midnight_repairs_every_table(
    chain: Anvil, tmp_path: Path, events_db: str
) -> None:
    from chainlake.events import db
    from chainlake.events import store as events
    from chainlake.reorg import AUDIT_TABLE

    node, f = chain, Filler(chain)
    snap = _first_chain(node, f)
    store = tmp_path / "delta"
    _materialize(store, D1, D2)
    before = {t: _table(store, t) for t in TABLES}
    old = dict(before["blocks"].select("block_number", "block_hash").iter_rows())
    # the trigger engine holds events of a block that stays (3) and of one that goes (7)
    with db.connection(events_db) as conn:
        events.insert_events(
            conn,
            [
                {"chain_id": 31337, "block_number": n, "block_hash": old[n], "log_index": 0,
                 "transaction_hash": "0x" + "ab" * 32, "registry": "erc20",
                 "event_type": "transfer", "timestamp": 1}
                for n in (3, 7)
            ],
        )  # fmt: skip
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

    (result,) = _materialize(store, D2)  # the next run, today's partition
    after = {t: _table(store, t) for t in TABLES}
    _canonical(node, after)

    # the probe lost every row past the common ancestor, in both days, and nothing else
    kept = _table(store, "probe_by_block")
    assert kept.equals(probe.filter(pl.col("block_number") <= 5).sort("block_number"))

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
    with db.connection(events_db) as conn:
        rows = conn.execute(
            "SELECT id, block_number, retracted_at, event_type, retracts FROM events ORDER BY seq"
        ).fetchall()
    by_id = {r["id"]: r for r in rows}
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


def test_shorter_chain_then_closed_day_rerun(
    chain: Anvil, tmp_path: Path, retractions: list[tuple[int, list[int]]]
) -> None:
    """The new chain is shorter and lands in D1 only; the run that finds it is a re-run of
    the closed day D1: D2 loses every row, in every table."""
    node, f = chain, Filler(chain)
    snap = _first_chain(node, f)
    store = tmp_path / "delta"
    _materialize(store, D1, D2)
    assert node.rpc("evm_revert", [snap]) is True
    f.nonce = int(node.rpc("eth_getTransactionCount", [f.sender, "pending"]), 16)
    f.block(day_ts(D1, 86_390), transfers=1, logs=2, salt=9)

    _materialize(store, D1)
    after = {t: _table(store, t) for t in TABLES}
    _canonical(node, after)
    for t in TABLES:
        assert D2 not in after[t]["date"].to_list(), t
    # blocks 6..10 abandoned (6 is replaced by another block, 7..10 are gone)
    assert sorted(n for _, ns in retractions for n in ns) == [6, 7, 8, 9, 10]
    clean = tmp_path / "clean"
    _materialize(clean, D1)
    for t in TABLES:
        assert after[t].equals(_table(clean, t)), t


def test_interrupted_repair_is_finished_by_the_next_run(
    chain: Anvil, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A derived table whose rebuild fails stays pending (no orphan left in it meanwhile),
    and the next run rebuilds it."""
    from chainlake import reorg

    node, f = chain, Filler(chain)
    snap = _first_chain(node, f)
    store = tmp_path / "delta"
    _materialize(store, D1, D2)
    node.rpc("evm_revert", [snap])
    f.nonce = int(node.rpc("eth_getTransactionCount", [f.sender, "pending"]), 16)
    for i in range(3):
        f.block(day_ts(D2, 30 + i * 12), transfers=1, logs=2, salt=5 + i)

    original = reorg._REBUILDERS["token_transfers"]

    def broken(*a: object) -> pl.DataFrame:
        raise RuntimeError("disk full")

    monkeypatch.setitem(reorg._REBUILDERS, "token_transfers", broken)
    from assets.raw.chain_tables import raw_chain_tables
    from chainlake.lake import DeltaStore
    from resources.rpc import RpcResource

    delta = DeltaStore(root=str(store))
    assert dg.materialize(
        [raw_chain_tables],
        partition_key=f"devnet|{D2}",
        resources={"delta": delta, "rpc": RpcResource()},
    ).success
    transfers = _table(store, "token_transfers")
    assert transfers["block_number"].max() <= 5  # orphans gone, D1 not rebuilt yet
    assert reorg.pending_days(delta, delta_chain()) == [D1, D2]

    monkeypatch.setitem(reorg._REBUILDERS, "token_transfers", original)
    assert dg.materialize(
        [raw_chain_tables],
        partition_key=f"devnet|{D2}",
        resources={"delta": delta, "rpc": RpcResource()},
    ).success
    assert reorg.pending_days(delta, delta_chain()) == []
    clean = tmp_path / "clean"
    _materialize(clean, D1, D2)
    for t in TABLES:
        assert _table(store, t).equals(_table(clean, t)), t


def delta_chain():
    from chainlake.config import load_chains

    return load_chains()["devnet"]
