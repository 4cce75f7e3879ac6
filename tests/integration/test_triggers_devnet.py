"""On the local chain (tools.devnet): a generated day extracted into Delta, its registry
events and tracked-wallet transfers decoded into PostgreSQL by events/chain_events, the example
triggers.yaml applied and fired to a receiver; and new_block_sensor against the live node."""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from triggers_helpers import database, receiver

from chainlake.events import db
from chainlake.events.decode import abi_events
from chainlake.events.evaluate import evaluate_batch
from chainlake.events.spec import apply_spec, default_resolver, load_spec
from tools.devnet.anvil import Anvil
from tools.devnet.configs import REGISTRY_ABIS, write_chains_yaml, write_portfolios_yaml
from tools.devnet.generator import generate

pytestmark = pytest.mark.integration

START = dt.date(2026, 11, 3)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    cfg = tmp_path_factory.mktemp("devnet-cfg")
    with Anvil(genesis=START) as node:
        manifest = generate(
            node.rpc_url, start=START, days=1, blocks_per_day=16, txs_per_block=6, seed=5
        )
        yield {
            "node": node,
            "manifest": manifest,
            "chains": write_chains_yaml(cfg / "chains.yaml", manifest, rpc_urls=[node.rpc_url]),
            "portfolios": write_portfolios_yaml(cfg / "portfolios.yaml", manifest),
        }


@pytest.fixture
def env(chain: dict, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("CHAINS_CONFIG", str(chain["chains"]))
    monkeypatch.setenv("PORTFOLIOS_CONFIG", str(chain["portfolios"]))
    return tmp_path / "delta"


def test_local_chain_events_fire_the_example_triggers(
    chain: dict, env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from assets.core.token_transfers import token_transfers
    from assets.events.chain_events import chain_events
    from assets.raw.chain_tables import raw_chain_tables
    from chainlake.actions.base import Secrets
    from chainlake.actions.deliver import Deliverer, default_senders
    from chainlake.lake import DeltaStore
    from resources.postgres import PostgresResource
    from resources.rpc import RpcResource

    manifest = chain["manifest"]
    with database() as url, receiver() as rec:
        result = dg.materialize(
            [raw_chain_tables, token_transfers, chain_events],
            partition_key=f"devnet|{START.isoformat()}",
            resources={
                "delta": DeltaStore(root=str(env)),
                "rpc": RpcResource(),
                "postgres": PostgresResource(url=url),
            },
        )
        assert result.success
        assert all(e.passed for e in result.get_asset_check_evaluations())

        # every log of a registry contract whose topic the ABI knows became an event
        logs = pl.read_delta(str(env / "devnet" / "local" / "logs"))
        registries = {a.lower(): r for r, a in manifest.registries.items()}
        topics = {e.topic0 for evs in abi_events(REGISTRY_ABIS.values()).values() for e in evs}
        expected = logs.filter(
            pl.col("address").is_in(list(registries)) & pl.col("topic0").is_in(list(topics))
        )
        with db.connection(url) as c:
            rows = c.execute(
                "SELECT registry, event_type, count(*) AS n FROM events GROUP BY 1, 2"
            ).fetchall()
            counts = {(r["registry"], r["event_type"]): r["n"] for r in rows}
            sample = c.execute(
                "SELECT * FROM events WHERE registry = 'reputation' AND event_type = 'NewFeedback' LIMIT 1"
            ).fetchone()
        decoded = sum(n for (reg, _), n in counts.items() if reg != "erc20")
        assert decoded == expected.height > 0
        assert (
            counts.get(("identity", "Registered"), 0) > 0
            and counts.get(("reputation", "NewFeedback"), 0) > 0
        )
        assert counts.get(("erc20", "Transfer"), 0) > 0
        assert (
            sample["agent_id"] is not None
            and 0 <= sample["score"] <= 100
            and sample["client_address"].startswith("0x")
        )

        monkeypatch.setenv("CHAINLAKE_ACTION_SECRET_WEBHOOK_URL", rec.url)
        with db.connection(url) as c:
            apply_spec(c, load_spec(ROOT / "config" / "triggers.yaml", resolver=default_resolver()))
            report = evaluate_batch(c)
        assert report.fired > 0
        delivered = Deliverer(
            url=url,
            senders=default_senders(),
            # the operator's settings (the receiver's 127.0.0.1 allowed: tests/conftest.py)
            secrets=Secrets(getenv={**os.environ}.get),
        ).run()
        assert delivered.succeeded == report.deliveries_added and delivered.failed == 0
        fired = {r.headers["idempotency-key"].split(":")[0] for r in rec.requests}
        assert "new-agent" in fired
        assert set(rec.by_key().values()) == {1}


def test_new_block_sensor_requests_the_heads_day_up_to_the_head(chain: dict, env: Path) -> None:
    """The partition is the day of the confirmed head block (not the wall clock's day: the
    node may not have reached today yet)."""
    from chainlake.lake import DeltaStore
    from chainlake.rpc import RpcClient
    from sensors.new_blocks import new_block_sensor

    resources = {"delta": DeltaStore(root=str(env))}
    ctx = dg.build_sensor_context(resources=resources)
    first = new_block_sensor(ctx)
    head = chain["manifest"].head_block
    with RpcClient([chain["node"].rpc_url]) as client:
        block = client.call("eth_getBlockByNumber", [hex(head), False])
    day = dt.datetime.fromtimestamp(int(block["timestamp"], 16), dt.UTC).date().isoformat()
    assert [(r.run_key, r.partition_key) for r in first.run_requests] == [
        (f"devnet-head-{head}", f"devnet|{day}")
    ]
    assert json.loads(first.cursor) == {"devnet": head}
    # same head: nothing to do; one more block: one more run
    second = new_block_sensor(dg.build_sensor_context(cursor=first.cursor, resources=resources))
    assert second.run_requests == [] and "up to date" in (second.skip_reason.skip_message or "")
    with RpcClient([chain["node"].rpc_url]) as client:
        client.call("evm_mine")
    third = new_block_sensor(dg.build_sensor_context(cursor=first.cursor, resources=resources))
    assert [r.run_key for r in third.run_requests] == [f"devnet-head-{head + 1}"]
