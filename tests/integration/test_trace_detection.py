"""Which trace API a node serves, found once per URL: anvil behind a real local HTTP proxy
that answers "method not found" for the methods a node lacks."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from chainlake import extract
from chainlake.extract import stage_range
from chainlake.rpc import RpcClient
from tests.chain_helpers import anvil_node
from tests.fault_proxy import FaultProxy
from tools.devnet.artifacts import load_artifact

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def node():  # type: ignore[no-untyped-def]
    """anvil with one forward of ether through a contract (block 2) and its state kept, so
    that debug_traceBlockByNumber can replay it."""
    forwarder = load_artifact("Forwarder")
    with anvil_node(keep_states=64) as n:
        a = n.rpc("eth_accounts", [])
        n.rpc(
            "eth_sendTransaction",
            [{"from": a[0], "data": forwarder.deploy_data(), "gas": hex(2_000_000)}],
        )
        n.rpc("evm_mine", [])
        contract = n.rpc(
            "eth_getTransactionReceipt",
            [n.rpc("eth_getBlockByNumber", ["0x1", False])["transactions"][0]],
        )["contractAddress"]
        n.rpc("eth_sendTransaction", [{"from": a[1], "to": contract, "value": hex(10**18),
                                       "data": forwarder.call_data("forward", a[2]), "gas": hex(200_000)}])  # fmt: skip
        n.rpc("evm_mine", [])
        yield n, a[2]


def _stage(url: str, tmp: Path, method: str) -> extract.StagedExtract:
    extract._DETECTED.clear()
    with RpcClient([url]) as client:
        return stage_range(client, 31337, 0, 2, tmp, trace_method=method)


def test_auto_takes_debug_trace_when_trace_block_is_missing(node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    anvil, receiver = node
    direct = _stage(anvil.url, tmp_path / "direct", "trace_block")
    assert direct.trace_source == "trace_block"
    with FaultProxy(anvil.url, faults=(), refuse_methods=["trace_block"]) as proxy:
        staged = _stage(proxy.url, tmp_path / "proxy", "auto")
        assert proxy.injected["method_not_found"] == 1  # tried once for the URL, then remembered
        assert extract._DETECTED == {proxy.url: "debug_trace"}
    assert staged.trace_source == "debug_trace"
    cols = ["transaction_hash", "trace_address", "from_address", "to_address", "value", "reverted"]
    got, want = staged.frame("traces", cols), direct.frame("traces", cols)
    assert got.equals(want)
    paid = got.filter(pl.col("trace_address") == "0")
    assert paid["to_address"].to_list() == [receiver] and paid["value"].cast(
        pl.Int64
    ).to_list() == [10**18]


def test_auto_reads_no_traces_from_a_node_without_either(node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    anvil, _ = node
    refuse = ["trace_block", "debug_traceBlockByNumber"]
    with FaultProxy(anvil.url, faults=(), refuse_methods=refuse) as proxy:
        staged = _stage(proxy.url, tmp_path, "auto")
        assert proxy.injected["method_not_found"] == 2
    assert staged.trace_source is None and staged.rows["traces"] == 0
    assert staged.rows["transactions"] == 2  # everything else is read as before


def test_an_explicit_method_the_node_lacks_fails_naming_it(node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    anvil, _ = node
    with FaultProxy(anvil.url, faults=(), refuse_methods=["trace_block"]) as proxy:
        with pytest.raises(Exception, match="trace_block"):
            _stage(proxy.url, tmp_path, "trace_block")
