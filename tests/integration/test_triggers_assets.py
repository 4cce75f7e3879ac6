"""events/chain_events and events/analytics_alerts materialised from Delta tables into a real
PostgreSQL: the contracts of chains.yaml decoded by their shipped ABI (only at their address,
from their start block), idempotent on a second run, checkpoint moved."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml
from eth_abi import encode
from triggers_helpers import database

from assets.core.balances import BalancesModel
from assets.core.token_transfers import TokenTransfersModel
from assets.events.chain_events import analytics_alerts, chain_events
from chainlake.config import load_chains
from chainlake.events import db, store
from chainlake.events.decode import abi_events
from chainlake.lake import DeltaStore
from chainlake.raw.blocks import BlocksModel
from chainlake.raw.logs import LogsModel
from chainlake.schema import conform, empty
from resources.clickhouse import ClickHouseResource, EmbeddedClickHouse
from resources.postgres import PostgresResource

pytestmark = pytest.mark.integration

DAY = dt.date(2026, 11, 2)
TS = dt.datetime(2026, 11, 2, 8, 0, tzinfo=dt.UTC)
TREASURY = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"
HOT = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8"
REPUTATION = "0x" + "5e" * 20
START_BLOCK = 5
TOKEN = "0x" + "aa" * 20


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict]:
    chains = tmp_path / "chains.yaml"
    chains.write_text(yaml.safe_dump({"chains": [{
        "name": "devnet", "network": "devnet", "subnet": "local", "chain_id": 31337,
        "rpc_urls": ["http://127.0.0.1:9"], "confirmations": 0, "start_date": "2026-11-01",
        "contracts": [{"name": "reputation", "address": REPUTATION.upper().replace("0X", "0x"),
                       "abi": "reputation_registry", "start_block": START_BLOCK}],
    }]}))  # fmt: skip
    portfolios = tmp_path / "portfolios.yaml"
    portfolios.write_text(yaml.safe_dump({
        "wallets": [{"name": "treasury", "address": TREASURY, "chain": "devnet"},
                    {"name": "hot", "address": HOT, "chain": "devnet"}],
        "alerts": [
            {"name": "Low treasury", "query": "treasury below 10 ETH",
             "expression": 'wallet_balances.filter((pl.col("wallet_name") == "treasury") & (pl.col("balance") < 10))'},
            # an expression outside the safe grammar never gets this far: loading
            # portfolios.yaml refuses it (tests/unit/test_portfolios.py)
        ],
    }))  # fmt: skip
    monkeypatch.setenv("CHAINS_CONFIG", str(chains))
    monkeypatch.setenv("PORTFOLIOS_CONFIG", str(portfolios))
    chain = load_chains()["devnet"]
    delta = DeltaStore(root=str(tmp_path / "delta"))
    write_day(delta, chain)
    with database() as url:
        yield {
            "url": url,
            "resources": {
                "delta": delta,
                "postgres": PostgresResource(url=url),
                "clickhouse": ClickHouseResource(
                    engine=EmbeddedClickHouse(path=str(tmp_path / "clickhouse"))
                ),
            },
        }


def write_day(delta: DeltaStore, chain) -> None:
    abi = {e.name: e for e in abi_events(["reputation_registry"])["reputation_registry"]}
    fb = abi["NewFeedback"]
    base = {"chain_id": 31337, "date": DAY, "block_hash": "0x" + "ab" * 32, "block_timestamp": TS,
            "transaction_index": 0}  # fmt: skip
    feedback = {
        "topic0": fb.topic0, "topic1": "0x" + encode(["uint256"], [3]).hex(),
        "topic2": "0x" + encode(["address"], [HOT]).hex(), "topic3": "0x" + b"quality".ljust(32, b"\0").hex(),
        "data": "0x" + encode(["uint8", "bytes32", "string", "bytes32"], [12, b"\0" * 32, "", b"\0" * 32]).hex(),
    }  # fmt: skip
    logs = [
        # before the contract's start_block: not decoded
        {**base, **feedback, "block_number": START_BLOCK - 1, "transaction_hash": "0x" + "04" * 32,
         "log_index": 0, "address": REPUTATION},
        {**base, **feedback, "block_number": START_BLOCK, "transaction_hash": "0x" + "01" * 32,
         "log_index": 0, "address": REPUTATION},
        # the same event from an address chains.yaml does not list: not decoded
        {**base, **feedback, "block_number": START_BLOCK, "transaction_hash": "0x" + "05" * 32,
         "log_index": 1, "address": "0x" + "5f" * 20},
    ]  # fmt: skip
    delta.replace_day(chain, "logs", DAY, conform(pl.DataFrame(logs), LogsModel))
    transfers = [
        {**base, "block_number": 6, "transaction_hash": "0x" + "02" * 32, "log_index": 1, "token_address": TOKEN,
         "from_address": HOT, "to_address": TREASURY, "value": Decimal(5 * 10**18), "value_raw": str(5 * 10**18)},
        {**base, "block_number": 6, "transaction_hash": "0x" + "03" * 32, "log_index": 2, "token_address": TOKEN,
         "from_address": "0x" + "01" * 20, "to_address": "0x" + "02" * 20, "value": Decimal(1), "value_raw": "1"},
    ]  # fmt: skip
    delta.replace_day(
        chain, "token_transfers", DAY,
        conform(pl.DataFrame(transfers, schema_overrides={"value": pl.Decimal(38, 0)}), TokenTransfersModel),
    )  # fmt: skip
    blocks = empty(BlocksModel)
    # raw/blocks holds the blocks the logs and transfers are in (with their hash): events of a
    # block missing from it are off-chain, and the second run would retract and re-add them
    hashes = {n: base["block_hash"] for n in (START_BLOCK - 1, START_BLOCK, 6)} | {
        7: "0x" + "77" * 32
    }
    rows = [
        {c: None for c in blocks.columns}
        | {"chain_id": 31337, "date": DAY, "block_number": n, "block_hash": h, "timestamp": TS}
        for n, h in hashes.items()
    ]
    blocks = pl.DataFrame(rows, schema=blocks.schema)
    delta.replace_day(chain, "blocks", DAY, blocks)
    balances = [
        {"chain_id": 31337, "date": DAY, "address": TREASURY, "token_address": "0x" + "e" * 40, "token_symbol": "ETH",
         "decimals": 18, "balance": Decimal(4 * 10**18), "net_change": Decimal(0), "block_number": 7,
         "account_type": "eoa", "source": "chain"},
        {"chain_id": 31337, "date": DAY, "address": HOT, "token_address": "0x" + "e" * 40, "token_symbol": "ETH",
         "decimals": 18, "balance": Decimal(1 * 10**18), "net_change": Decimal(0), "block_number": 7,
         "account_type": "eoa", "source": "chain"},
    ]  # fmt: skip
    frame = pl.DataFrame(
        balances, schema_overrides={"balance": pl.Decimal(38, 0), "net_change": pl.Decimal(38, 0)}
    )
    delta.replace_day(chain, "balances", DAY, conform(frame, BalancesModel))


def test_chain_events_and_alerts_into_postgres(setup: dict) -> None:
    url, resources = setup["url"], setup["resources"]
    key = f"devnet|{DAY.isoformat()}"
    result = dg.materialize(
        [chain_events, analytics_alerts], partition_key=key, resources=resources
    )
    assert result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"schema": True, "all_in_postgres": True, "expressions_valid": True}
    with db.connection(url) as c:
        rows = c.execute(
            "SELECT id, registry, event_type, agent_id, score, tag1, amount, data FROM events ORDER BY seq"
        ).fetchall()
        cp = store.get_checkpoint(c, 31337)
    chain_rows = [r for r in rows if r["registry"] != "analytics"]
    assert [(r["id"], r["registry"], r["event_type"]) for r in chain_rows] == [
        ("31337-5-0", "reputation", "NewFeedback"),
        ("31337-6-1", "erc20", "Transfer"),  # the other transfer touches no tracked wallet
    ]
    assert (chain_rows[0]["agent_id"], chain_rows[0]["score"], chain_rows[0]["tag1"]) == (
        3,
        12,
        "quality",
    )
    assert chain_rows[1]["amount"] == 5 * 10**18
    alerts = [r for r in rows if r["registry"] == "analytics"]
    assert len(alerts) == 1 and alerts[0]["data"]["alert_name"] == "Low treasury"
    assert alerts[0]["data"]["subject"]["wallet_name"] == "treasury"
    assert (cp["last_block_number"], cp["last_block_hash"]) == (7, "0x" + "77" * 32)

    again = dg.materialize([chain_events, analytics_alerts], partition_key=key, resources=resources)
    assert again.success
    mats = {
        e.asset_key.to_user_string(): e.materialization.metadata["rows_written"].value
        for e in again.get_asset_materialization_events()
    }
    assert mats == {"events/chain_events": 0, "events/analytics_alerts": 0}
    meta = next(
        e.materialization.metadata
        for e in again.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey(["events", "chain_events"])
    )
    assert meta["registries"].value == (
        f"reputation (reputation_registry) {REPUTATION} from block {START_BLOCK}"
    )
    with db.connection(url) as c:
        assert c.execute("SELECT count(*) AS n FROM events").fetchone()["n"] == len(rows)
