"""Live state in NATS KV, the parts that need no server: key encoding, redaction of node URLs
in keys and values, bucket names, node lag and health from the RPC client's measurements."""

from __future__ import annotations

import json
import re

import httpx
import orjson
import pytest
from click.testing import CliRunner

from chainlake.nats_kv import (
    AlertStats,
    ChainNodes,
    LiveStateError,
    alert_entries,
    bucket_name,
    bucket_prefix,
    decode_token,
    encode_token,
    node_activity_updates,
    node_entries,
    node_key,
)
from chainlake.rpc import NodeHealth, RpcClient
from cli.main import main

# NATS's own rule for a key (nats-py's _is_key_valid): these characters, no leading or
# trailing dot; a token between dots must not be empty.
NATS_KEY = re.compile(r"^[-/_=.a-zA-Z0-9]+$")
SECRET_URLS = {
    "https://eth-mainnet.g.alchemy.com/v2/AbCdEf1234567890XyZkey": ["AbCdEf1234567890XyZkey"],
    "https://mainnet.infura.io/v3/0123456789abcdef0123456789abcdef": [
        "0123456789abcdef0123456789abcdef"
    ],
    "https://alice:hunter2pass@node.example:8545/rpc?apikey=QUERYSECRET99": [
        "alice",
        "hunter2pass",
        "QUERYSECRET99",
    ],
}


@pytest.mark.parametrize(
    "text",
    ["devnet", "base-sepolia", "a.b", "http://127.0.0.1:8545/", "=", "", "é/ü?x=1&y", "a b"],
)
def test_tokens_round_trip_and_are_single_valid_key_tokens(text: str) -> None:
    token = encode_token(text)
    assert decode_token(token) == text
    assert NATS_KEY.match(token) and "." not in token


def test_decode_refuses_what_encode_never_writes() -> None:
    for bad in ("a.b", "=4", "=zz", "a b"):
        with pytest.raises(ValueError, match="not an encoded key token"):
            decode_token(bad)


@pytest.mark.parametrize("url", list(SECRET_URLS))
def test_node_keys_hold_the_redacted_url_and_no_credential(url: str) -> None:
    key = node_key("mainnet", 1, url)
    assert NATS_KEY.match(key) and not key.startswith(".") and not key.endswith(".")
    chain, priority, encoded = key.split(".")
    assert (decode_token(chain), priority) == ("mainnet", "1")
    shown = decode_token(encoded)
    for secret in SECRET_URLS[url]:
        assert secret not in key and secret not in shown
    assert shown.startswith(url.split("://")[0] + "://")


def _health(url: str, priority: int, head: int | None, **kw: object) -> NodeHealth:
    base: dict = dict(
        url=url, priority=priority, head=head, head_at=None, latency_p50_ms=1.0,
        latency_p95_ms=2.0, samples=3, errors=0, last_error=None, last_error_at=None,
        last_ok_at=100.0, refused=None,
    )  # fmt: skip
    base.update(kw)
    return NodeHealth(**base)


def test_node_values_carry_no_credential_even_in_errors() -> None:
    urls = list(SECRET_URLS)
    health = [
        _health(
            urls[i],
            i,
            10 + i,
            errors=2,
            last_error=f"connection error from {urls[i]}: refused",
            last_error_at=200.0,
        )
        for i in range(len(urls))
    ]
    entries = node_entries([ChainNodes("mainnet", 1, "ethereum", "mainnet", health)])
    text = json.dumps(entries)
    for secrets in SECRET_URLS.values():
        for secret in secrets:
            assert secret not in text
    assert len(entries) == len(urls)


def test_lag_is_measured_against_the_best_url_and_unknown_heads_have_none() -> None:
    health = [
        _health("http://a", 0, 95),
        _health("http://b", 1, 100),
        _health("http://c", 2, None, last_ok_at=None, errors=4, last_error_at=5.0),
    ]
    entries = node_entries([ChainNodes("devnet", 31337, "devnet", "local", health)])
    by_priority = {v["priority"]: v for v in entries.values()}
    assert [by_priority[p]["lag_blocks"] for p in range(3)] == [5, 0, None]
    assert {v["best_head_block"] for v in entries.values()} == {100}
    assert [by_priority[p]["is_active"] for p in range(3)] == [True, True, False]
    assert by_priority[2]["last_error_at"] == "1970-01-01T00:00:05+00:00"


def test_health_follows_the_latest_round_trip_and_rotation() -> None:
    assert _health("u", 0, 1, last_ok_at=10.0, last_error_at=9.0).healthy
    assert not _health("u", 0, 1, last_ok_at=10.0, last_error_at=11.0).healthy
    assert not _health("u", 0, 1, refused="serves chain id 5").healthy
    assert not _health("u", 0, None, last_ok_at=None).healthy


def test_probe_measures_each_url_on_its_own() -> None:
    """The client's own measurements: each URL asked once, the failing one counted with the
    time of its error, the other's head and latency recorded; no failover hides either."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "down":
            return httpx.Response(500, text="boom")
        body = orjson.loads(request.content)
        result = "0x7a69" if body["method"] == "eth_chainId" else "0x2a"
        return httpx.Response(200, json={"jsonrpc": "2.0", "id": body["id"], "result": result})

    client = RpcClient(
        ["http://up/key/AbCdEf1234567890XyZkey", "http://down"],
        transport=httpx.MockTransport(handler),
        chain_id=31337,
        wall=lambda: 1234.5,
    )
    up, down = client.probe()
    assert (up.head, up.samples, up.errors, up.healthy) == (42, 1, 0, True)
    assert up.latency_p50_ms is not None and up.latency_p95_ms is not None
    assert "AbCdEf1234567890XyZkey" not in up.url
    assert (down.head, down.errors, down.last_error_at, down.healthy) == (None, 1, 1234.5, False)
    assert "HTTP 500" in (down.last_error or "")
    again = client.probe()
    assert (again[0].samples, again[1].errors) == (2, 2)


def test_catalog_activity_changes_only_where_health_differs() -> None:
    health = [_health("http://a", 0, 1), _health("http://b", 1, None, last_ok_at=None)]
    rows = [
        {"chain": "devnet", "priority": 0, "is_active": True},
        {"chain": "devnet", "priority": 1, "is_active": True},
        {"chain": "other", "priority": 0, "is_active": False},
    ]
    chains = [ChainNodes("devnet", 31337, "devnet", "local", health)]
    assert node_activity_updates(rows, chains) == [("devnet", 1, False)]


def test_alert_entries_carry_the_firing_statistics() -> None:
    import datetime as dt

    rows = [
        {"id": "a1", "name": "low", "description": None, "expression": "x",
         "parameters": '{"t": 10}', "is_active": True},
        {"id": "a2", "name": "dd", "description": "d", "expression": "y", "parameters": "{}",
         "is_active": False},
    ]  # fmt: skip
    when = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)
    entries = alert_entries(rows, {"a1": AlertStats(3, when)})
    assert entries["a1"]["trigger_count"] == 3
    assert entries["a1"]["last_triggered_at"] == "2026-12-01T10:00:00+00:00"
    assert entries["a1"]["parameters"] == {"t": 10}
    assert (entries["a2"]["trigger_count"], entries["a2"]["last_triggered_at"]) == (0, None)


def test_bucket_names_are_per_instance() -> None:
    assert bucket_prefix({"NATS_KV_PREFIX": "t_1"}) == "t_1"
    assert bucket_prefix({"CHAINLAKE_INSTANCE": "alpha"}) == "alpha"
    assert bucket_prefix({"CHAINLAKE_INSTANCE": "alpha"}) != bucket_prefix(
        {"CHAINLAKE_INSTANCE": "beta"}
    )
    assert bucket_name("alpha", "nodes") == "alpha_nodes"
    with pytest.raises(LiveStateError, match=r"NATS_KV_PREFIX='a\.b' cannot prefix"):
        bucket_prefix({"NATS_KV_PREFIX": "a.b"})


def test_cli_without_nats_url_says_live_state_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NATS_URL", raising=False)
    result = CliRunner().invoke(main, ["livestate", "rebuild"])
    assert result.exit_code == 2
    assert "NATS_URL is not set" in result.output
