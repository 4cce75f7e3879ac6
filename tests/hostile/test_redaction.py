"""Credentials in RPC URLs (userinfo, an API key in the path, a query parameter) never show
in an error, a retry or failover warning, or the run's events."""

from __future__ import annotations

import logging
from pathlib import Path

import dagster as dg
import httpx
import pytest

from chainlake.rpc import RpcClient, RpcUnavailable
from chainlake.uri import redact_uri
from tests.chain_helpers import Anvil
from tests.fault_proxy import FaultProxy
from tests.hostile.helpers import (
    D1,
    assert_no_secret,
    event_text,
    redacted_url,
    retried,
    run_raw,
    secret_url,
    step_failure,
    write_chain,
)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://mainnet.infura.io/v3/0123456789abcdef0123456789abcdef", "https://mainnet.infura.io/v3/<redacted>"),
        ("https://eth-mainnet.g.alchemy.com/v2/Ab3dE_fGh1jK-LmN0pQrS2tUv4wXyZ56", "https://eth-mainnet.g.alchemy.com/v2/<redacted>"),
        ("https://rpc.ankr.com/eth/" + "ab" * 32, "https://rpc.ankr.com/eth/<redacted>"),
        ("https://x.quiknode.pro/" + "c0ffee" * 7 + "/", "https://x.quiknode.pro/<redacted>/"),
        ("https://user:pw@node.example/rpc?key=abc#frag", "https://node.example/rpc"),
        ("http://127.0.0.1:8545", "http://127.0.0.1:8545"),
        ("https://api.avax.network/ext/bc/C/rpc", "https://api.avax.network/ext/bc/C/rpc"),
        ("https://arbitrum-mainnet.example.org/rpc", "https://arbitrum-mainnet.example.org/rpc"),
    ],
)  # fmt: skip
def test_rpc_url_redaction(url: str, shown: str) -> None:
    assert redact_uri(url) == shown


def test_client_errors_and_logs_name_the_url_redacted(caplog: pytest.LogCaptureFixture) -> None:
    """httpx errors may quote the URL; the client's errors and warnings must not."""
    url = secret_url(1)

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot reach {request.url}", request=request)

    caplog.set_level(logging.DEBUG)
    client = RpcClient(
        [url, url.replace(":1/", ":2/")],
        transport=httpx.MockTransport(handler),
        max_retries=3,
        sleep=lambda s: None,
    )
    with pytest.raises(RpcUnavailable) as err:
        client.call("eth_blockNumber")
    assert "127.0.0.1:2/v3/<redacted>" in str(err.value)
    assert_no_secret(str(err.value), repr(err.value.__cause__), caplog.text)
    assert_no_secret(*client.stats.by_url)


@pytest.mark.integration
def test_failing_node_behind_a_secret_url(
    node: Anvil, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # the step's own retries (transient errors) run as in production; only their waits (15 s,
    # then 30 s) are cut short here
    monkeypatch.setattr(dg.RetryPolicy, "calculate_delay", lambda self, attempt_num: 0.1)
    with FaultProxy(node.url, faults=["500", "drop"], every=1, times=50) as proxy:
        port = int(proxy.url.rsplit(":", 1)[1])
        cfg = write_chain(tmp_path / "c.yaml", [secret_url(port)])
        monkeypatch.setenv("CHAINS_CONFIG", str(cfg))
        result = run_raw(tmp_path / "delta", D1, rpc={"max_retries": 2})
    assert not result.success
    assert retried(result)
    _, message, text = step_failure(result)
    assert redacted_url(port) in text
    assert_no_secret(message, text, event_text(result), caplog.text)
