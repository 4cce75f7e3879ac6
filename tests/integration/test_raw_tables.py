"""The raw and core Delta tables against a real anvil node filled by the devnet generator:
every block, transaction, log and transfer exactly once, with the values the node reports."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml

from chainlake.rpc import RpcClient
from tools.devnet.anvil import Anvil
from tools.devnet.generator import DevnetManifest, generate

pytestmark = pytest.mark.integration

START = dt.date(2026, 11, 2)
DAYS = 3
TRANSFER = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"


def write_chains_yaml(path: Path, url: str, manifest: DevnetManifest) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "chains": [
                    {
                        "name": "devnet",
                        "network": "devnet",
                        "subnet": "local",
                        "chain_id": manifest.chain_id,
                        "rpc_urls": [url],
                        "confirmations": 0,
                        "start_date": START.isoformat(),
                        "tokens": [
                            {"symbol": t.symbol, "address": t.address, "decimals": t.decimals}
                            for t in manifest.tokens
                        ],
                    }
                ]
            }
        )
    )
    return path


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, DevnetManifest, Path]]:
    with Anvil(genesis=START) as node:
        manifest = generate(
            node.rpc_url, start=START, days=DAYS, blocks_per_day=24, txs_per_block=8, seed=11
        )
        cfg = write_chains_yaml(
            tmp_path_factory.mktemp("cfg") / "chains.yaml", node.rpc_url, manifest
        )
        yield node.rpc_url, manifest, cfg


@pytest.fixture()
def env(chain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CHAINS_CONFIG", str(chain[2]))
    return tmp_path / "delta"


def materialize_day(root: Path, day: dt.date) -> dg.ExecuteInProcessResult:
    from assets.core.token_transfers import token_transfers
    from assets.raw.chain_tables import raw_chain_tables
    from chainlake.lake import DeltaStore
    from resources.rpc import RpcResource

    result = dg.materialize(
        [raw_chain_tables, token_transfers],
        partition_key=f"devnet|{day.isoformat()}",
        resources={"delta": DeltaStore(root=str(root)), "rpc": RpcResource()},
    )
    assert result.success
    failed = [e.check_name for e in result.get_asset_check_evaluations() if not e.passed]
    assert failed == []
    return result


def table(root: Path, name: str) -> pl.DataFrame:
    return pl.read_delta(str(root / "devnet" / "local" / name))


def node_blocks(url: str, head: int) -> tuple[list[dict], list[list[dict]]]:
    with RpcClient([url]) as c:
        blocks = c.batch([("eth_getBlockByNumber", [hex(n), True]) for n in range(head + 1)])
        receipts = c.batch([("eth_getBlockReceipts", [hex(n)]) for n in range(head + 1)])
    return blocks, receipts


def test_every_row_exactly_once_with_node_values(chain, env: Path) -> None:
    url, manifest, _ = chain
    for i in range(DAYS):
        materialize_day(env, START + dt.timedelta(days=i))
    blocks, receipts = node_blocks(url, manifest.head_block)

    b = table(env, "blocks").sort("block_number")
    assert b["block_number"].to_list() == list(range(manifest.head_block + 1))
    assert b["block_hash"].to_list() == [blk["hash"] for blk in blocks]
    assert b["parent_hash"].to_list() == [blk["parentHash"] for blk in blocks]
    assert b["gas_used"].to_list() == [int(blk["gasUsed"], 16) for blk in blocks]
    assert b["base_fee_per_gas"].cast(pl.Int128).to_list() == [
        int(blk["baseFeePerGas"], 16) for blk in blocks
    ]
    dates = [dt.datetime.fromtimestamp(int(blk["timestamp"], 16), dt.UTC).date() for blk in blocks]
    assert b["date"].to_list() == dates

    node_txs = {tx["hash"]: tx for blk in blocks for tx in blk["transactions"]}
    node_rcs = {rc["transactionHash"]: rc for rcs in receipts for rc in rcs}
    t = table(env, "transactions")
    assert t.height == len(node_txs) == t["transaction_hash"].n_unique()
    assert t["status"].to_list().count(0) == sum(
        1 for rc in node_rcs.values() if rc["status"] == "0x0"
    )
    assert manifest.stats.get("failed", 1) > 0 and 0 in t["status"].to_list()
    for row in t.iter_rows(named=True):
        tx, rc = node_txs[row["transaction_hash"]], node_rcs[row["transaction_hash"]]
        assert row["from_address"] == tx["from"]
        assert row["to_address"] == tx.get("to")
        assert int(row["value"]) == int(tx["value"], 16)
        assert row["nonce"] == int(tx["nonce"], 16)
        assert row["gas_used"] == int(rc["gasUsed"], 16)
        assert int(row["effective_gas_price"]) == int(rc["effectiveGasPrice"], 16)
        assert row["status"] == int(rc["status"], 16)
        assert row["contract_address"] == rc.get("contractAddress")
        assert row["type"] == int(tx["type"], 16)
    assert t.filter(pl.col("contract_address").is_not_null()).height > 0

    node_logs = {
        (int(lg["blockNumber"], 16), int(lg["logIndex"], 16)): lg
        for rcs in receipts
        for rc in rcs
        for lg in rc["logs"]
    }
    lg = table(env, "logs")
    assert lg.height == len(node_logs)
    for row in lg.iter_rows(named=True):
        expected = node_logs[(row["block_number"], row["log_index"])]
        assert row["address"] == expected["address"]
        assert [row[f"topic{i}"] for i in range(len(expected["topics"]))] == expected["topics"]
        assert row["data"] == expected["data"]

    erc20 = {
        k: v
        for k, v in node_logs.items()
        if v["topics"] and v["topics"][0] == TRANSFER and len(v["topics"]) == 3
    }
    tt = table(env, "token_transfers")
    assert tt.height == len(erc20) > 0
    for row in tt.iter_rows(named=True):
        expected = erc20[(row["block_number"], row["log_index"])]
        assert row["token_address"] == expected["address"]
        assert row["from_address"] == "0x" + expected["topics"][1][26:]
        assert row["to_address"] == "0x" + expected["topics"][2][26:]
        assert int(row["value"]) == int(expected["data"], 16) == int(row["value_raw"])


def test_rematerialising_a_day_is_idempotent_and_isolated(chain, env: Path) -> None:
    day1, day2 = START, START + dt.timedelta(days=1)
    materialize_day(env, day1)
    first = {n: table(env, n).sort("block_number") for n in ("blocks", "transactions", "logs")}
    materialize_day(env, day1)
    for name, before in first.items():
        assert table(env, name).sort("block_number").equals(before), name
    materialize_day(env, day2)
    for name, before in first.items():
        after = table(env, name).filter(pl.col("date") == day1).sort("block_number")
        assert after.equals(before), f"{name}: day 1 changed when day 2 was written"
    both = table(env, "blocks")
    assert set(both["date"].unique().to_list()) == {day1, day2}
