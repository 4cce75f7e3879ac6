"""RPC faults between chainlake and a real anvil, through a fault-injecting proxy on
127.0.0.1: the tables come out identical to a clean run."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from chainlake.rpc import RpcClient
from tests.chain_helpers import Anvil, Filler, anvil_node, day_ts, free_port, write_chains_yaml
from tests.fault_proxy import FAULTS, FaultProxy

pytestmark = pytest.mark.integration

DAY = dt.date(2026, 11, 5)
TABLES = ["blocks", "transactions", "logs", "token_transfers"]


@pytest.fixture(scope="module")
def node():
    with anvil_node(genesis_ts=day_ts(DAY)) as n:
        f = Filler(n)
        f.deploy_emitter(day_ts(DAY, 60))
        for i in range(40):
            f.block(day_ts(DAY, 3_600 + i * 600), transfers=2, logs=1 + i % 3, salt=i)
        f.block(day_ts(DAY + dt.timedelta(days=1), 5), transfers=1, logs=0)  # closes the day
        yield n


def _run(tmp: Path, name: str, urls: list[str], monkeypatch: pytest.MonkeyPatch, **rpc) -> Path:
    from assets.core.token_transfers import token_transfers
    from assets.raw.chain_tables import raw_chain_tables
    from chainlake.lake import DeltaStore
    from resources.rpc import RpcResource

    # small batches so the day takes many requests, and each fault hits a different step
    cfg = write_chains_yaml(tmp / f"{name}.yaml", urls, batch_size=4, max_in_flight=3)
    monkeypatch.setenv("CHAINS_CONFIG", str(cfg))
    root = tmp / name
    result = dg.materialize(
        [raw_chain_tables, token_transfers],
        partition_key=f"devnet|{DAY}",
        resources={"delta": DeltaStore(root=str(root)), "rpc": RpcResource(**rpc)},
    )
    assert result.success
    assert all(c.passed for c in result.get_asset_check_evaluations())
    return root


def _tables(root: Path) -> dict[str, pl.DataFrame]:
    out = {}
    for t in TABLES:
        df = pl.read_delta(str(root / "devnet" / "local" / t))
        keys = [c for c in ("block_number", "transaction_index", "log_index") if c in df.columns]
        out[t] = df.sort(keys)
    return out


@pytest.fixture(scope="module")
def clean(node: Anvil, tmp_path_factory: pytest.TempPathFactory) -> dict[str, pl.DataFrame]:
    mp = pytest.MonkeyPatch()
    try:
        return _tables(_run(tmp_path_factory.mktemp("clean"), "clean", [node.url], mp))
    finally:
        mp.undo()


def test_every_fault_kind_then_identical_tables(
    node: Anvil, clean: dict[str, pl.DataFrame], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert clean["blocks"].height == 42 and clean["logs"].height == 79
    with FaultProxy(node.url, every=2, stall_seconds=1.5) as proxy:
        root = _run(tmp_path, "faulty", [proxy.url], monkeypatch, timeout_seconds=0.5)
        assert proxy.done, proxy.injected
        assert set(proxy.injected) == set(FAULTS)
        # the chain's max_requests_in_flight (3) held, retries and all
        assert 2 <= proxy.max_concurrent <= 3
    got = _tables(root)
    for t in TABLES:
        assert got[t].equals(clean[t]), t


def test_dead_first_url_fails_over_to_the_second(
    node: Anvil, clean: dict[str, pl.DataFrame], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    got = _tables(_run(tmp_path, "failover", [dead, node.url], monkeypatch))
    for t in TABLES:
        assert got[t].equals(clean[t]), t


def test_first_url_used_again_once_it_recovers(node: Anvil) -> None:
    with FaultProxy(node.url, faults=["drop", "drop"], every=1) as proxy:
        client = RpcClient([proxy.url, node.url], cooldown=0.3, timeout=2)
        client.call("eth_blockNumber")  # dropped by the first URL, answered by the second
        client.call("eth_blockNumber")  # the first is cooling down
        assert (proxy.requests, client.stats.by_url[node.url]) == (1, 2)
        time.sleep(0.35)
        client.call("eth_blockNumber")  # tried again: still failing; cool-down doubles
        assert (proxy.requests, client.stats.by_url[node.url]) == (2, 3)
        time.sleep(0.65)
        for _ in range(5):
            client.call("eth_blockNumber")
        assert proxy.done
        assert (proxy.requests, client.stats.by_url[node.url]) == (7, 3)  # back on the first


def test_get_logs_splits_ranges_the_provider_refuses(node: Anvil) -> None:
    head = int(node.rpc("eth_blockNumber"), 16)
    everything = node.rpc("eth_getLogs", [{"fromBlock": "0x0", "toBlock": hex(head)}])
    assert len(everything) == 79
    with FaultProxy(node.url, faults=[], max_log_range=7) as proxy:
        client = RpcClient([proxy.url])
        logs = client.get_logs(from_block=0, to_block=head)
        assert proxy.injected["logs_range"] >= 3
        assert client.stats.splits == proxy.injected["logs_range"]
    assert logs == everything
