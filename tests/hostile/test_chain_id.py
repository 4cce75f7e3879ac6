"""Every URL's chain id is checked against chains.yaml before it serves a request: a URL on
another chain is refused and kept out of rotation; with no URL left, nothing is read or
written."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chain_helpers import Anvil, anvil_node
from tests.hostile.helpers import (
    D1,
    RAW,
    event_text,
    retried,
    run_raw,
    step_failure,
    write_chain,
)
from tests.hostile.proxy import HostileProxy

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def other_chain() -> Iterator[Anvil]:
    """A second node, on chain id 5."""
    with anvil_node(extra=["--chain-id", "5"]) as n:
        yield n


def test_chain_configured_as_mainnet_on_anvil_is_refused(
    node: Anvil, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with HostileProxy(node.url) as proxy:
        cfg = write_chain(tmp_path / "c.yaml", [proxy.url], chain_id=1)
        monkeypatch.setenv("CHAINS_CONFIG", str(cfg))
        result = run_raw(tmp_path / "delta", D1)
    assert not result.success
    cls, message, _ = step_failure(result)
    for fragment in (proxy.url, "chain id 31337", "chains.yaml says 1"):
        assert fragment in message, message
    assert cls == "Failure" and not retried(result)
    assert set(proxy.methods) == {"eth_chainId"}  # asked nothing else
    assert not (tmp_path / "delta").exists() or not any(
        (tmp_path / "delta" / "devnet" / "local" / t).exists() for t in RAW
    )


def test_first_url_on_another_chain_is_skipped_for_the_second(
    node: Anvil,
    other_chain: Anvil,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with HostileProxy(other_chain.url) as wrong:
        cfg = write_chain(tmp_path / "c.yaml", [wrong.url, node.url])
        monkeypatch.setenv("CHAINS_CONFIG", str(cfg))
        result = run_raw(tmp_path / "delta", D1)
    assert result.success, event_text(result)[-3000:]
    assert wrong.methods == ["eth_chainId"]  # checked once, then never used
    assert f"{wrong.url} serves chain id 5" in caplog.text  # the refusal is logged
