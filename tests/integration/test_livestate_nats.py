"""Live state in NATS JetStream KV against the real server on 127.0.0.1:4222 (a read model of
the stores): buckets filled from the catalog, the events database and the RPC client's
measurements and kept current; a killed writer's leftovers undone by a rebuild; a node taken
down behind the fault proxy; two writers racing on one key. Each test has its own bucket
prefix and drops its buckets afterwards."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from triggers_helpers import database

from assets.serving.catalog import catalog_frames, write_catalog
from chainlake.config import load_chains
from chainlake.events import db, store
from chainlake.events.alerts import Alert, fire_alerts
from chainlake.nats_kv import (
    KvWriter,
    alert_entries,
    alert_stats,
    bucket_name,
    catalog_rows,
    drop_buckets,
    read_buckets,
    sync_state,
    wallet_entries,
)
from chainlake.portfolios import load_portfolios
from resources.duckdb import ServingDuckDB
from sensors.livestate import push_live_state
from tests.fault_proxy import FaultProxy

pytestmark = pytest.mark.integration

NATS = "nats://127.0.0.1:4222"
CHAINLAKE = str(Path(sys.executable).parent / "chainlake")
TREASURY = "0x" + "11" * 20
HOT = "0x" + "22" * 20
API_KEY = "AbCdEf1234567890XyZkey"
ALERT = 'wallet_balances.filter((pl.col("wallet_name") == "treasury") & (pl.col("balance") < 10))'


def _nats_answers() -> None:
    try:
        socket.create_connection(("127.0.0.1", 4222), timeout=3).close()
    except OSError as e:
        pytest.fail(f"NATS with JetStream must run on 127.0.0.1:4222 for these tests: {e}")


@pytest.fixture
def prefix() -> Iterator[str]:
    _nats_answers()
    name = f"test_{uuid.uuid4().hex[:12]}"
    yield name
    drop_buckets(NATS, name)


def _write_config(tmp: Path, rpc_urls: list[str], wallets: list[dict[str, Any]]) -> None:
    (tmp / "chains.yaml").write_text(yaml.safe_dump({"chains": [{
        "name": "devnet", "network": "devnet", "subnet": "local", "chain_id": 31337,
        "rpc_urls": rpc_urls, "confirmations": 0, "start_date": "2026-11-01",
    }]}))  # fmt: skip
    (tmp / "portfolios.yaml").write_text(yaml.safe_dump({
        "wallets": wallets,
        "alerts": [{"name": "Low treasury", "query": "treasury below 10 ETH", "expression": ALERT}],
    }))  # fmt: skip


def _import_catalog(tmp: Path, duckdb: ServingDuckDB) -> None:
    chains = load_chains(tmp / "chains.yaml")
    frames = catalog_frames(load_portfolios(chains, tmp / "portfolios.yaml"), chains)
    with duckdb.writer() as conn:
        write_catalog(conn, frames)


@pytest.fixture
def stores(tmp_path: Path, anvil: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict]:
    """Two URLs of the anvil node through fault proxies (the second with an API key in its
    path, as providers hand them out), a catalog and an events database."""
    p0, p1 = FaultProxy(anvil.rpc_url, faults=()).start(), FaultProxy(anvil.rpc_url, faults=())
    p1.start()
    urls = [p0.url, f"{p1.url}/v2/{API_KEY}"]
    wallets = [
        {"name": "treasury", "address": TREASURY, "chain": "devnet"},
        {"name": "hot", "address": HOT, "chain": "devnet"},
    ]
    _write_config(tmp_path, urls, wallets)
    monkeypatch.setenv("CHAINS_CONFIG", str(tmp_path / "chains.yaml"))
    monkeypatch.setenv("PORTFOLIOS_CONFIG", str(tmp_path / "portfolios.yaml"))
    duckdb = ServingDuckDB(database=str(tmp_path / "catalog.duckdb"))
    _import_catalog(tmp_path, duckdb)
    try:
        with database() as url:
            yield {"tmp": tmp_path, "urls": urls, "proxies": (p0, p1), "duckdb": duckdb,
                   "postgres": url, "clients": {}, "wallets": wallets}  # fmt: skip
    finally:
        for p in (p0, p1):
            try:
                p.stop()
            except OSError:
                pass


def _push(stores: dict, prefix: str, **kw: Any):
    return push_live_state(
        url=NATS,
        prefix=prefix,
        chains=load_chains(stores["tmp"] / "chains.yaml"),
        duckdb=stores["duckdb"],
        postgres_url=stores["postgres"],
        clients=stores["clients"],
        **kw,
    )


def _expected(stores: dict) -> dict[str, dict]:
    """wallets and alerts as the stores of record hold them now."""
    with stores["duckdb"].reader() as conn:
        wallets, alerts = catalog_rows(conn, "wallets"), catalog_rows(conn, "alerts")
    with db.connection(stores["postgres"]) as conn:
        stats = alert_stats(conn)
    return {"wallets": wallet_entries(wallets), "alerts": alert_entries(alerts, stats)}


def _fire(stores: dict, day: dt.date, balance: float) -> int:
    """The alert evaluated on a day's balances (as events/analytics_alerts does); returns the
    firings inserted."""
    with stores["duckdb"].reader() as conn:
        (alert,) = catalog_rows(conn, "alerts")
    frame = pl.DataFrame({"wallet_name": ["treasury"], "address": [TREASURY],
                          "token_symbol": ["ETH"], "balance": [balance]})  # fmt: skip
    events = fire_alerts([Alert(str(alert["id"]), alert["name"], alert["expression"])],
                         "wallet_balances", frame, chain_id=31337, day=day)  # fmt: skip
    with db.connection(stores["postgres"]) as conn:
        return len(store.insert_events(conn, events))


def _revisions(prefix: str, bucket: str) -> dict[str, int]:
    async def run() -> dict[str, int]:
        async with KvWriter(NATS, prefix) as w:
            kv = await w.bucket(bucket)
            return {k: (await kv.get(k)).revision for k in await w.keys(bucket)}

    return asyncio.run(run())


def test_buckets_follow_the_stores(stores: dict, prefix: str) -> None:
    first = _push(stores, prefix, strict=True)
    kv = read_buckets(NATS, prefix)
    assert {b: kv[b] for b in ("wallets", "alerts")} == _expected(stores)
    assert sorted(w["name"] for w in kv["wallets"].values()) == ["hot", "treasury"]
    (alert,) = kv["alerts"].values()
    assert (alert["trigger_count"], alert["last_triggered_at"]) == (0, None)
    assert kv["settings"]["livestate"]["buckets"]["nodes"] == bucket_name(prefix, "nodes")
    assert first.report.written["wallets"] == 2

    # nothing changed: nothing is written again (same revisions)
    before = _revisions(prefix, "wallets")
    again = _push(stores, prefix)
    assert again.report.written["wallets"] == 0 and again.report.unchanged["wallets"] == 2
    assert _revisions(prefix, "wallets") == before

    # the alert fires: its count and last firing change in the catalog and the bucket
    day = dt.date(2026, 11, 20)
    assert _fire(stores, day, 5.0) == 1
    pushed = _push(stores, prefix)
    assert pushed.alerts_changed == 1
    (alert,) = read_buckets(NATS, prefix, ["alerts"])["alerts"].values()
    with db.connection(stores["postgres"]) as conn:
        created = conn.execute(
            "SELECT created_at FROM events WHERE alert_id IS NOT NULL"
        ).fetchone()
    assert alert["trigger_count"] == 1
    assert dt.datetime.fromisoformat(alert["last_triggered_at"]) == created["created_at"]
    with stores["duckdb"].reader() as conn:
        (row,) = catalog_rows(conn, "alerts")
    assert (row["trigger_count"], row["last_triggered_at"]) == (1, created["created_at"])

    # the same day again fires nothing new; another day does
    assert _fire(stores, day, 5.0) == 0
    assert _fire(stores, day + dt.timedelta(days=1), 4.0) == 1
    _push(stores, prefix)
    (alert,) = read_buckets(NATS, prefix, ["alerts"])["alerts"].values()
    assert alert["trigger_count"] == 2

    # a wallet leaves portfolios.yaml: its key goes
    _write_config(stores["tmp"], stores["urls"], stores["wallets"][:1])
    _import_catalog(stores["tmp"], stores["duckdb"])
    gone = _push(stores, prefix)
    assert gone.report.deleted["wallets"] == 1
    assert read_buckets(NATS, prefix, ["wallets"])["wallets"] == _expected(stores)["wallets"]


def test_node_taken_down_shows_in_its_entry_and_the_catalog(
    stores: dict, prefix: str, anvil: Any
) -> None:
    _push(stores, prefix)
    nodes = read_buckets(NATS, prefix, ["nodes"])["nodes"]
    assert len(nodes) == 2
    assert API_KEY not in json.dumps(nodes) and all(API_KEY not in k for k in nodes)
    head = int(anvil.rpc("eth_blockNumber"), 16)
    assert {(n["priority"], n["head_block"], n["lag_blocks"], n["is_active"], n["error_count"])
            for n in nodes.values()} == {(0, head, 0, True, 0), (1, head, 0, True, 0)}  # fmt: skip

    stores["proxies"][1].stop()  # the second node goes down
    for _ in range(3):
        anvil.rpc("evm_mine")
    before_error = time.time()
    _push(stores, prefix)
    by_priority = {
        n["priority"]: n for n in read_buckets(NATS, prefix, ["nodes"])["nodes"].values()
    }
    up, down = by_priority[0], by_priority[1]
    assert (up["head_block"], up["lag_blocks"], up["is_active"]) == (head + 3, 0, True)
    assert (down["is_active"], down["error_count"], down["head_block"]) == (False, 1, head)
    assert down["lag_blocks"] == 3  # its last head against the best URL's
    assert dt.datetime.fromisoformat(down["last_error_at"]).timestamp() >= before_error - 1
    assert "connection error" in down["last_error"] and API_KEY not in down["last_error"]
    assert up["latency_p50_ms"] is not None and up["latency_p95_ms"] >= up["latency_p50_ms"]
    with stores["duckdb"].reader() as conn:
        active = {r["priority"]: r["is_active"] for r in catalog_rows(conn, "nodes")}
    assert active == {0: True, 1: False}
    # loading the catalog again keeps the measured health
    _import_catalog(stores["tmp"], stores["duckdb"])
    with stores["duckdb"].reader() as conn:
        active = {r["priority"]: r["is_active"] for r in catalog_rows(conn, "nodes")}
    assert active == {0: True, 1: False}


KILLED_WRITER = """
import sys
from chainlake.nats_kv import sync_state
prefix = sys.argv[1]
junk = {f"stale-{i}": {"n": i, "pad": "x" * 200} for i in range(20000)}
sync_state("nats://127.0.0.1:4222", prefix, {"wallets": junk, "alerts": {}})
"""


def test_a_killed_writer_loses_nothing_after_a_rebuild(stores: dict, prefix: str) -> None:
    _push(stores, prefix)
    expected = _expected(stores)
    # a writer (another process) dies half-way through writing keys the stores do not have
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, prefix], env=os.environ.copy())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if len(read_buckets(NATS, prefix, ["wallets"])["wallets"]) > 10:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    left = read_buckets(NATS, prefix, ["wallets"])["wallets"]
    assert proc.returncode == -signal.SIGKILL
    assert any(k.startswith("stale-") for k in left)
    assert len(left) < 20000 + 2  # it really died half-way

    # and keys were changed or added behind the stores' back
    wallet_id = next(iter(expected["wallets"]))
    sync_state(NATS, prefix, {"alerts": {**expected["alerts"], "ghost": {"name": "ghost"}}})

    async def tamper() -> None:
        async with KvWriter(NATS, prefix) as w:
            await w.put("wallets", wallet_id, b'{"name": "tampered"}')

    asyncio.run(tamper())
    assert read_buckets(NATS, prefix, ["wallets"])["wallets"][wallet_id] == {"name": "tampered"}

    env = {**os.environ, "NATS_URL": NATS, "NATS_KV_PREFIX": prefix}
    env.update(DUCKDB_PATH=str(stores["duckdb"].path), POSTGRES_URL=stores["postgres"])
    result = subprocess.run(
        [CHAINLAKE, "livestate", "rebuild"], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert f"rebuilt the live state of {prefix}" in result.stdout
    kv = read_buckets(NATS, prefix, ["wallets", "alerts"])
    assert kv == expected
    assert wallet_id in kv["wallets"] and "ghost" not in kv["alerts"]

    shown = subprocess.run(
        [CHAINLAKE, "livestate", "show", "alerts"], env=env, capture_output=True, text=True
    )
    assert shown.returncode == 0, shown.stderr
    lines = [json.loads(line) for line in shown.stdout.splitlines()]
    assert {line["key"]: line["value"] for line in lines} == expected["alerts"]


def test_the_sensor_pushes_only_when_nats_url_is_set(
    stores: dict, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dagster as dg

    from resources.postgres import PostgresResource
    from sensors.livestate import livestate_sensor

    resources = {"duckdb": stores["duckdb"], "postgres": PostgresResource(url=stores["postgres"])}
    monkeypatch.delenv("NATS_URL", raising=False)
    with dg.build_sensor_context(resources=resources) as context:
        off = livestate_sensor(context)
    assert isinstance(off, dg.SensorResult) and off.skip_reason is not None
    assert off.skip_reason.skip_message.startswith("NATS_URL is not set: node health only;")
    assert read_buckets(NATS, prefix, ["wallets"])["wallets"] == {}

    async def exists() -> bool:
        async with KvWriter(NATS, prefix) as w:
            return await w.bucket("wallets", create=False) is not None

    assert not asyncio.run(exists())  # neither the sensor nor reading created it

    monkeypatch.setenv("NATS_URL", NATS)
    monkeypatch.setenv("NATS_KV_PREFIX", prefix)
    with dg.build_sensor_context(resources=resources) as context:
        on = livestate_sensor(context)
    assert isinstance(on, dg.SensorResult) and on.skip_reason is not None
    assert on.skip_reason.skip_message.startswith("live state pushed:")
    assert read_buckets(NATS, prefix, ["wallets", "alerts"]) == _expected(stores)


def test_node_health_reaches_the_catalog_and_the_ui_without_nats(
    stores: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without NATS the sensor still probes every URL: the catalog's nodes.is_active and an
    observation of serving/rpc_nodes (the UI's view) follow a node going down, and an
    unchanged health records nothing new."""
    import dagster as dg

    from chainlake.node_health import RPC_NODES
    from pipelines.definitions import defs
    from resources.postgres import PostgresResource
    from sensors.livestate import livestate_sensor

    assert defs.resolve_asset_graph().has(RPC_NODES)  # the UI shows the asset
    resources = {"duckdb": stores["duckdb"], "postgres": PostgresResource(url=stores["postgres"])}
    monkeypatch.delenv("NATS_URL", raising=False)

    def tick(cursor: str | None) -> dg.SensorResult:
        with dg.build_sensor_context(resources=resources, cursor=cursor) as context:
            result = livestate_sensor(context)
        assert isinstance(result, dg.SensorResult)
        return result

    def active() -> dict[int, bool]:
        with stores["duckdb"].reader() as conn:
            return {r["priority"]: r["is_active"] for r in catalog_rows(conn, "nodes")}

    first = tick(None)
    (seen,) = first.asset_events
    assert isinstance(seen, dg.AssetObservation) and seen.asset_key == RPC_NODES
    md = seen.metadata
    assert (md["nodes_up"].value, md["nodes_down"].value, md["down"].value) == (2, 0, "none")
    rows = md["nodes"].value.records
    assert [(r.data["priority"], r.data["is_active"]) for r in rows] == [(0, True), (1, True)]
    assert all(API_KEY not in str(r.data) for r in rows)  # redacted, as in NATS
    assert active() == {0: True, 1: True}

    assert tick(first.cursor).asset_events == []  # the same health: nothing new recorded

    stores["proxies"][1].stop()  # the second node goes down
    down = tick(first.cursor)
    (seen,) = down.asset_events
    md = seen.metadata
    assert (md["nodes_up"].value, md["nodes_down"].value, md["down"].value) == (
        1,
        1,
        "devnet #1",
    )
    assert "RPC URLs up: 1/2" in (down.skip_reason.skip_message if down.skip_reason else "")
    assert active() == {0: True, 1: False}


def test_rebuild_without_nats_names_the_server(stores: dict) -> None:
    env = {**os.environ, "DUCKDB_PATH": str(stores["duckdb"].path)}
    env["POSTGRES_URL"] = stores["postgres"]
    result = subprocess.run(
        [CHAINLAKE, "livestate", "rebuild", "--nats-url", "nats://127.0.0.1:9"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach NATS at nats://127.0.0.1:9" in lines[0]


async def _history(kv: Any, key: str) -> list[bytes]:
    """The key's values, oldest first. nats-py's `history` watches the key and raises
    NoKeysError when its ordered consumer reports nothing pending at creation, which a loaded
    machine sometimes shows for a key just written (CI saw it once in 21 racing puts): asked
    again for up to 10 s; a key that really has no history still fails."""
    from nats.js.errors import NoKeysError

    deadline = time.monotonic() + 10
    while True:
        try:
            return [e.value for e in await kv.history(key)]
        except NoKeysError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


def test_two_writers_racing_on_one_key_lose_no_update(prefix: str) -> None:
    async def run() -> None:
        async with KvWriter(NATS, prefix, history=64) as a, KvWriter(NATS, prefix) as b:
            kv = await a.bucket("settings")
            await a.put("settings", "k", b"v0")

            # b reads the key, then a writes it before b's update: b's revision is stale, its
            # update is refused, b reads again and writes; the later value (b's) wins
            async def a_writes_first(bucket: str, key: str) -> None:
                if not b.conflicts:
                    await a.put(bucket, key, b"from-a")

            b._on_read = a_writes_first
            assert await b.put("settings", "k", b"from-b")
            assert b.conflicts == 1
            assert await _history(kv, "k") == [b"v0", b"from-a", b"from-b"]
            b._on_read = None

            # both at once, many times: every value lands, the last one stays
            for i in range(20):
                va, vb = f"a{i}".encode(), f"b{i}".encode()
                await asyncio.gather(a.put("settings", "k", va), b.put("settings", "k", vb))
                values = await _history(kv, "k")
                assert va in values[-2:] and vb in values[-2:]
                assert (await kv.get("k")).value == values[-1]

    asyncio.run(run())


def test_the_alerts_asset_firing_reaches_the_bucket(stores: dict, prefix: str) -> None:
    """events/analytics_alerts itself fires the alert on a day's balances; the next push
    shows the firing in the alerts bucket and the catalog."""
    from decimal import Decimal

    import dagster as dg

    from assets.core.balances import BalancesModel
    from assets.events.chain_events import analytics_alerts
    from chainlake.lake import DeltaStore
    from chainlake.schema import conform
    from resources.clickhouse import ClickHouseResource, EmbeddedClickHouse
    from resources.postgres import PostgresResource

    day = dt.date(2026, 11, 2)
    chain = load_chains(stores["tmp"] / "chains.yaml")["devnet"]
    delta = DeltaStore(root=str(stores["tmp"] / "delta"))
    row = {"chain_id": 31337, "date": day, "address": TREASURY, "token_address": "0x" + "e" * 40,
           "token_symbol": "ETH", "decimals": 18, "balance": Decimal(4 * 10**18),
           "net_change": Decimal(0), "block_number": 7, "account_type": "eoa", "source": "chain"}  # fmt: skip
    frame = pl.DataFrame(
        [row], schema_overrides={"balance": pl.Decimal(38, 0), "net_change": pl.Decimal(38, 0)}
    )
    delta.replace_day(chain, "balances", day, conform(frame, BalancesModel))
    _push(stores, prefix)
    (alert,) = read_buckets(NATS, prefix, ["alerts"])["alerts"].values()
    assert alert["trigger_count"] == 0

    resources = {
        "delta": delta,
        "postgres": PostgresResource(url=stores["postgres"]),
        "clickhouse": ClickHouseResource(
            engine=EmbeddedClickHouse(path=str(stores["tmp"] / "clickhouse"))
        ),
    }
    result = dg.materialize(
        [analytics_alerts], partition_key=f"devnet|{day.isoformat()}", resources=resources
    )
    assert result.success
    pushed = _push(stores, prefix)
    assert pushed.alerts_changed == 1
    (alert,) = read_buckets(NATS, prefix, ["alerts"])["alerts"].values()
    assert alert["trigger_count"] == 1 and alert["last_triggered_at"] is not None
    assert read_buckets(NATS, prefix, ["alerts"])["alerts"] == _expected(stores)["alerts"]
