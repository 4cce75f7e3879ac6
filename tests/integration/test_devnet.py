"""The local chain: anvil lifecycle, the committed contract artifacts, the activity generator
(days, failed transactions, events, determinism), the fast fill and the config writers."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_abi import decode
from eth_utils import keccak

from tools.devnet.anvil import (
    Anvil,
    AnvilError,
    detached_status,
    start_detached,
    stop_detached,
)
from tools.devnet.artifacts import load_artifact
from tools.devnet.compile import compile_contracts, stale_artifacts
from tools.devnet.generator import (
    DevnetManifest,
    Rpc,
    fill,
    generate,
    read_manifest,
    write_chains_yaml,
    write_manifest,
    write_portfolios_yaml,
    write_registry_addresses,
)

pytestmark = pytest.mark.integration

# `devnet` and `anvil` are the session fixtures of tests/conftest.py; `Devnet` there has
# `.node`, `.rpc_url` and `.manifest`.
Devnet = Any
START = dt.date(2025, 1, 1)

# The event signatures other code (decoders, triggers) relies on; a change here is a change of
# the chain's interface.
EVENTS = {
    ("Token", "Transfer"): "Transfer(address,address,uint256)",
    ("Token", "Approval"): "Approval(address,address,uint256)",
    ("PriceFeed", "AnswerUpdated"): "AnswerUpdated(int256,uint256,uint256)",
    ("PriceFeed", "NewRound"): "NewRound(uint256,address,uint256)",
    ("IdentityRegistry", "Registered"): "Registered(uint256,string,address)",
    ("IdentityRegistry", "MetadataSet"): "MetadataSet(uint256,string,string,bytes)",
    ("ReputationRegistry", "NewFeedback"): (
        "NewFeedback(uint256,address,uint8,bytes32,bytes32,string,bytes32)"
    ),
    ("ReputationRegistry", "FeedbackRevoked"): "FeedbackRevoked(uint256,address,uint64)",
    ("ValidationRegistry", "ValidationRequest"): (
        "ValidationRequest(address,uint256,string,bytes32)"
    ),
    ("ValidationRegistry", "ValidationResponse"): (
        "ValidationResponse(address,uint256,bytes32,uint8,string,bytes32,bytes32)"
    ),
    ("VaultFactory", "VaultCreated"): "VaultCreated(address,address,uint256,bool)",
    ("Collectible", "Transfer"): "Transfer(address,address,uint256)",
    ("MultiToken", "TransferSingle"): "TransferSingle(address,address,address,uint256,uint256)",
    ("MultiToken", "TransferBatch"): ("TransferBatch(address,address,address,uint256[],uint256[])"),
}


def topic(signature: str) -> str:
    return "0x" + keccak(text=signature).hex()


def day_bounds(day: dt.date) -> tuple[int, int]:
    start = int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp())
    return start, start + 86_400


def get_logs(rpc: Rpc, address: str | list[str], topic0: str, head: int) -> list[dict]:
    return rpc.call(
        "eth_getLogs",
        {"fromBlock": "0x0", "toBlock": hex(head), "address": address, "topics": [topic0]},
    )


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still "exists"; it must not be running any more.
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "State:\tZ" in status.read_text())


# --------------------------------------------------------------------------------------------
# contracts


def test_committed_artifacts_equal_a_fresh_compile() -> None:
    fresh = compile_contracts()
    assert sorted(fresh) == [
        "Bytes32Token",
        "Collectible",
        "Doomed",
        "Faulty",
        "Forwarder",
        "IdentityRegistry",
        "MultiToken",
        "NamelessToken",
        "PriceFeed",
        "ReputationRegistry",
        "Token",
        "ValidationRegistry",
        "Vault",
        "VaultFactory",
        "WrappedEther",
    ]
    assert stale_artifacts(fresh) == [], "run: python -m tools.devnet.compile"


def test_event_signatures_are_the_documented_ones() -> None:
    for (contract, event), signature in EVENTS.items():
        artifact = load_artifact(contract)
        assert artifact.event_signature(event) == signature
        assert artifact.event_topic(event) == topic(signature)


# --------------------------------------------------------------------------------------------
# anvil lifecycle


def test_anvil_starts_answers_and_stops_without_leftovers() -> None:
    node = Anvil(genesis=START, accounts=3)
    with node:
        pid, url, cache = node.pid, node.rpc_url, node.log_path.parent
        assert pid is not None and pid_exists(pid)
        with Rpc(url) as rpc:
            assert int(rpc.call("eth_chainId"), 16) == 31337
            assert len(rpc.call("eth_accounts")) == 3
            genesis = rpc.call("eth_getBlockByNumber", "0x0", False)
            assert int(genesis["timestamp"], 16) == day_bounds(START)[0]
            assert rpc.call("anvil_getAutomine") is False
        assert "--prune-history" in node.command(node.port) and cache.exists()
    assert not node.is_running()
    assert not pid_exists(pid)
    assert not cache.exists()
    with pytest.raises(httpx.HTTPError):
        httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}, timeout=1)


def test_anvil_that_dies_at_start_reports_its_output() -> None:
    with pytest.raises(AnvilError, match=r"exited with code .*unexpected argument"):
        Anvil(extra_args=("--no-such-flag",)).start()


def test_missing_binary_says_to_run_npm_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("tools.devnet.anvil.project_root", lambda: tmp_path)
    with pytest.raises(AnvilError, match="npm ci"):
        Anvil().start()


def test_detached_anvil_outlives_its_handle_and_stops_by_pid_file(tmp_path: Path) -> None:
    info = start_detached(tmp_path, genesis=START)
    try:
        assert (tmp_path / "anvil.pid").read_text().strip() == str(info.pid)
        assert detached_status(tmp_path) == info
        assert start_detached(tmp_path) == info  # idempotent while running
        with Rpc(info.rpc_url) as rpc:
            assert int(rpc.call("eth_chainId"), 16) == info.chain_id
    finally:
        assert stop_detached(tmp_path) is True
    assert not pid_exists(info.pid)
    assert detached_status(tmp_path) is None
    assert not (tmp_path / "anvil.pid").exists()
    assert stop_detached(tmp_path) is False


# --------------------------------------------------------------------------------------------
# the generated chain


def test_every_day_has_its_blocks_and_only_its_blocks(devnet: Devnet) -> None:
    m = devnet.manifest
    assert m.start_date == START and m.days == 3
    assert [d.date for d in m.day_blocks] == [START + dt.timedelta(days=i) for i in range(3)]
    assert m.day_blocks[0].first_block == 0
    for prev, cur in zip(m.day_blocks, m.day_blocks[1:], strict=False):
        assert cur.first_block == prev.last_block + 1
    assert m.day_blocks[-1].last_block == m.head_block
    with Rpc(devnet.rpc_url) as rpc:
        assert int(rpc.call("eth_blockNumber"), 16) == m.head_block
        blocks = rpc.batch(
            [("eth_getBlockByNumber", [hex(n), False]) for n in range(m.head_block + 1)]
        )
    timestamps = [int(b["timestamp"], 16) for b in blocks]
    assert timestamps == sorted(timestamps) and len(set(timestamps)) == len(timestamps)
    for d in m.day_blocks:
        lo, hi = day_bounds(d.date)
        assert all(lo <= timestamps[n] < hi for n in range(d.first_block, d.last_block + 1))
        assert d.count >= m.blocks_per_day
        # spread over the day, not bunched at its start
        assert timestamps[d.last_block] - lo > 86_400 * 0.9


def test_failed_transactions_are_included_with_status_zero(devnet: Devnet) -> None:
    m = devnet.manifest
    with Rpc(devnet.rpc_url) as rpc:
        receipts = [
            r
            for block in rpc.batch(
                [("eth_getBlockReceipts", [hex(n)]) for n in range(m.head_block + 1)]
            )
            for r in block
        ]
    failed = [r for r in receipts if r["status"] == "0x0"]
    assert len(failed) == m.stats["failed"] > 0
    assert all(r["blockNumber"] is not None for r in failed)
    assert len(receipts) == sum(v for k, v in m.stats.items() if k != "failed")
    # direct contract creations show as contractAddress; factory ones only in logs
    created = [r["contractAddress"] for r in receipts if r["contractAddress"]]
    assert len(created) >= 10 + m.stats["deploy_vault"]
    per_day = {d.date: 0 for d in m.day_blocks}
    for r in failed:
        n = int(r["blockNumber"], 16)
        day = next(d.date for d in m.day_blocks if d.first_block <= n <= d.last_block)
        per_day[day] += 1
    assert all(count > 0 for count in per_day.values()), per_day


def test_the_expected_events_exist(devnet: Devnet) -> None:
    m = devnet.manifest
    feeds = list(m.price_feeds.values())
    tokens = [t.address for t in m.tokens]
    reg = m.registries
    with Rpc(devnet.rpc_url) as rpc:

        def logs(address: str | list[str], key: tuple[str, str]) -> list[dict]:
            return get_logs(rpc, address, topic(EVENTS[key]), m.head_block)

        for t in tokens:
            assert len(logs(t, ("Token", "Transfer"))) > 20
        assert logs(tokens, ("Token", "Approval"))
        answers = logs(feeds, ("PriceFeed", "AnswerUpdated"))
        for feed in feeds:
            mine = [lg for lg in answers if lg["address"] == feed]
            # round 1 at deployment, then several rounds a day
            assert len(mine) >= 1 + 3 * m.days
            prices = [int.from_bytes(bytes.fromhex(lg["topics"][1][2:]), "big") for lg in mine]
            assert all(p > 0 for p in prices)
        eth_usd = [lg for lg in answers if lg["address"] == m.native_price_feed]
        assert 1_000 * 10**8 < int(eth_usd[-1]["topics"][1], 16) < 10_000 * 10**8
        assert len(logs(feeds, ("PriceFeed", "NewRound"))) == len(answers)

        registered = logs(reg["identity"], ("IdentityRegistry", "Registered"))
        assert [int(lg["topics"][1], 16) for lg in registered] == list(
            range(1, len(registered) + 1)
        )
        assert logs(reg["identity"], ("IdentityRegistry", "MetadataSet"))

        feedback = logs(reg["reputation"], ("ReputationRegistry", "NewFeedback"))
        decoded = [
            decode(["uint8", "bytes32", "string", "bytes32"], bytes.fromhex(lg["data"][2:]))
            for lg in feedback
        ]
        scores = [d[0] for d in decoded]
        assert all(0 <= s <= 100 for s in scores) and len(set(scores)) > 5
        uris = [d[2] for d in decoded]
        assert "" in uris and any(u.startswith(("ipfs://", "https://")) for u in uris)
        assert all(d[3] == b"\0" * 32 for d in decoded if d[2] == "")
        tag1 = {bytes.fromhex(lg["topics"][3][2:]).rstrip(b"\0").decode() for lg in feedback}
        assert tag1 <= {"quality", "speed", "accuracy", "reliability", "cost"} and len(tag1) > 1
        assert logs(reg["reputation"], ("ReputationRegistry", "FeedbackRevoked"))

        requests = logs(reg["validation"], ("ValidationRegistry", "ValidationRequest"))
        responses = logs(reg["validation"], ("ValidationRegistry", "ValidationResponse"))
        assert requests and responses
        validators = {w.address for w in m.wallets if w.role == "validator"}
        requested = {lg["topics"][3] for lg in requests}
        for lg in responses:
            assert "0x" + lg["topics"][1][-40:] in validators
            assert lg["topics"][3] in requested
            response = decode(["uint8"], bytes.fromhex(lg["data"][2:66]))[0]
            assert 0 <= response <= 100

        created = logs(m.contracts["factory"], ("VaultFactory", "VaultCreated"))
        assert len(created) == m.stats["factory_create"] + m.stats["factory_create2"] > 0


def test_hot_wallet_runs_low_and_history_is_queryable(devnet: Devnet) -> None:
    m = devnet.manifest
    hot = m.wallet("ops-hot").address
    with Rpc(devnet.rpc_url) as rpc:
        closing = [
            int(rpc.call("eth_getBalance", hot, hex(d.last_block)), 16) / 1e18 for d in m.day_blocks
        ]
    assert closing[0] > 10 and closing[2] < 10
    assert closing == sorted(closing, reverse=True)


def test_same_seed_same_chain_other_seed_other_chain(devnet: Devnet) -> None:
    def hashes(url: str, head: int) -> list[str]:
        with Rpc(url) as rpc:
            blocks = rpc.batch([("eth_getBlockByNumber", [hex(n), False]) for n in range(head + 1)])
        return [b["hash"] for b in blocks]

    m = devnet.manifest
    expected = hashes(devnet.rpc_url, m.head_block)
    with Anvil(genesis=START) as node:
        again = generate(
            node.rpc_url,
            start=START,
            days=m.days,
            blocks_per_day=m.blocks_per_day,
            txs_per_block=m.txs_per_block,
            seed=m.seed,
        )
        assert hashes(node.rpc_url, again.head_block) == expected
    assert dataclass_without_url(again) == dataclass_without_url(m)
    with Anvil(genesis=START) as node:
        other = generate(
            node.rpc_url,
            start=START,
            days=1,
            blocks_per_day=m.blocks_per_day,
            txs_per_block=m.txs_per_block,
            seed=m.seed + 1,
        )
        other_hashes = hashes(node.rpc_url, other.head_block)
    assert other_hashes[0] == expected[0]  # same genesis
    assert other_hashes[-1] != expected[other.head_block]


def dataclass_without_url(m: DevnetManifest) -> dict:
    d = m.to_dict()
    d.pop("rpc_url")
    return d


def test_generate_refuses_a_chain_already_past_the_start(anvil: Anvil) -> None:
    with pytest.raises(Exception, match="fresh anvil"):
        generate(
            anvil.rpc_url,
            start=START - dt.timedelta(days=1),
            days=1,
            blocks_per_day=2,
            txs_per_block=1,
        )


def test_fill_appends_blocks_of_transfers_at_the_given_pace(anvil: Anvil) -> None:
    with Rpc(anvil.rpc_url) as rpc:
        head = rpc.call("eth_getBlockByNumber", "latest", False)
        start_ts = int(head["timestamp"], 16) + 100
        result = fill(
            anvil.rpc_url,
            blocks=30,
            txs_per_block=12,
            start_timestamp=start_ts,
            seconds_per_block=12,
        )
        assert result.first_block == int(head["number"], 16) + 1
        assert result.last_block - result.first_block + 1 == 30
        assert result.transactions == 360
        blocks = rpc.batch(
            [
                ("eth_getBlockByNumber", [hex(n), False])
                for n in range(result.first_block, result.last_block + 1)
            ]
        )
    assert [len(b["transactions"]) for b in blocks] == [12] * 30
    assert [int(b["timestamp"], 16) for b in blocks] == [start_ts + 12 * i for i in range(30)]


# --------------------------------------------------------------------------------------------
# manifest and config files


def test_manifest_and_config_files_load_with_the_project_loaders(
    devnet: Devnet, tmp_path: Path
) -> None:
    from chainlake.config import load_chains
    from chainlake.events.alerts import check_alert
    from chainlake.portfolios import load_portfolios

    m = devnet.manifest
    manifest_path = write_manifest(tmp_path / "devnet" / "manifest.json", m)
    assert read_manifest(manifest_path) == m

    chains_path = tmp_path / "chains.yaml"
    chains_path.write_text(
        "chains:\n  - {name: other, network: ethereum, subnet: mainnet, chain_id: 1,"
        " rpc_urls: ['http://127.0.0.1:1'], start_date: 2025-01-01}\n"
    )
    write_chains_yaml(chains_path, m, rpc_urls=["http://127.0.0.1:8545", m.rpc_url])
    chains = load_chains(chains_path)
    assert sorted(chains) == ["devnet", "other"]
    chain = chains["devnet"]
    assert (chain.network, chain.subnet, chain.chain_id) == ("devnet", "local", m.chain_id)
    assert chain.rpc_urls == ("http://127.0.0.1:8545", m.rpc_url)
    assert chain.start_date == START
    # no hand-typed decimals: core/tokens reads them from the chain (tests/integration/
    # test_token_metadata.py checks what it reads for these tokens: 6 and 18)
    assert chain.token("USDC").decimals is None and chain.token("LINK").decimals is None
    assert chain.token("USDC").symbol == "USDC"
    assert chain.token("ETH").price_feed == m.native_price_feed
    assert chain.token("USDC").price_feed == m.price_feeds["USDC"]
    # the deployed registries are the chain's contracts, from the first generated block
    assert {c.name: (c.address, c.abi) for c in chain.contracts} == {
        r: (a, f"{r}_registry") for r, a in m.registries.items()
    }
    assert {c.start_block for c in chain.contracts} == {m.day_blocks[0].first_block}

    portfolios_path = write_portfolios_yaml(tmp_path / "portfolios.yaml", m)
    book = load_portfolios(chains, portfolios_path)
    assert {w.address for w in book.wallets} == {w.address for w in m.tracked_wallets}
    assert [p.id for p in book.portfolios] == ["treasury", "trading", "operations"]
    assert {a for p in book.portfolios for a in p.wallets} == {w.address for w in m.tracked_wallets}
    assert len(book.alerts) == 3
    for alert in book.alerts:
        check_alert(alert.expression)

    registries_path = tmp_path / "registries.json"
    registries_path.write_text('{"note": "kept"}')
    write_registry_addresses(registries_path, m)
    doc = read_json(registries_path)
    assert doc["note"] == "kept" and doc["chain_id"] == m.chain_id
    assert doc["registries"] == dict(m.registries)
    assert set(doc["registries"]) == {"identity", "reputation", "validation"}


def read_json(path: Path) -> dict:
    import json

    return json.loads(path.read_text())
