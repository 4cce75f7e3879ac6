"""RpcClient against scripted nodes (httpx.MockTransport): the chain id checked once per URL
and again after a failover to it, a URL on another chain kept out of rotation, answers
capped in size."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from chainlake.rpc import AnswerTooLarge, NoUsableUrl, RpcClient


class Nodes:
    """URL host → chain id; records (host, method) of every call; `down` hosts refuse."""

    def __init__(self, chains: dict[str, int]) -> None:
        self.chains = chains
        self.down: set[str] = set()
        self.seen: list[tuple[str, str]] = []
        self.pad = 0  # bytes of padding in every eth_getBlockByNumber result
        self.now = 1000.0  # the client's clock: cool-downs end when the test moves it on

    def handle(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        body = orjson.loads(request.content)
        calls = body if isinstance(body, list) else [body]
        self.seen += [(host, c["method"]) for c in calls]
        if host in self.down:
            raise httpx.ConnectError("refused", request=request)
        out = [{"jsonrpc": "2.0", "id": c["id"], "result": self.result(host, c)} for c in calls]
        return httpx.Response(200, content=orjson.dumps(out if isinstance(body, list) else out[0]))

    def result(self, host: str, call: dict[str, Any]) -> Any:
        if call["method"] == "eth_chainId":
            return hex(self.chains[host])
        if call["method"] == "eth_getBlockByNumber":
            return {"number": call["params"][0], "extraData": "0x" + "00" * self.pad}
        return "0x10"

    def client(self, *hosts: str, **kw: Any) -> RpcClient:
        return RpcClient(
            [f"http://{h}" for h in hosts],
            transport=httpx.MockTransport(self.handle),
            chain_id=31337,
            sleep=lambda s: None,
            clock=lambda: self.now,
            **kw,
        )

    def chain_checks(self, host: str) -> int:
        return self.seen.count((host, "eth_chainId"))


def test_chain_id_checked_once_per_url_and_again_after_a_failover_to_it() -> None:
    nodes = Nodes({"a": 31337, "b": 31337})
    client = nodes.client("a", "b")
    for _ in range(3):
        client.block_number()
    assert nodes.chain_checks("a") == 1 and nodes.chain_checks("b") == 0
    nodes.down.add("a")
    client.block_number()  # a fails, b is checked before it serves
    assert nodes.chain_checks("b") == 1
    client.block_number()
    assert nodes.chain_checks("b") == 1  # b stays checked while it serves
    nodes.down.clear()
    nodes.now += 60  # a's cool-down is over
    client.block_number()  # back on a, which failed: checked again
    assert nodes.chain_checks("a") == 2
    assert nodes.seen[-2:] == [("a", "eth_chainId"), ("a", "eth_blockNumber")]


def test_url_on_another_chain_is_kept_out_of_rotation() -> None:
    nodes = Nodes({"wrong": 1, "right": 31337})
    client = nodes.client("wrong", "right")
    for _ in range(3):
        assert client.block_number() == 16
    assert [m for h, m in nodes.seen if h == "wrong"] == ["eth_chainId"]


def test_no_url_on_the_chain_names_each_with_its_chain_id() -> None:
    nodes = Nodes({"one": 1, "five": 5})
    client = nodes.client("one", "five")
    with pytest.raises(NoUsableUrl) as err:
        client.call("eth_getBlockByNumber", ["0x1", False])
    assert str(err.value) == (
        "no usable RPC URL: http://one serves chain id 1, chains.yaml says 31337; "
        "http://five serves chain id 5, chains.yaml says 31337"
    )
    assert {m for _, m in nodes.seen} == {"eth_chainId"}


def test_answers_over_the_cap_split_a_batch_and_fail_a_single_call() -> None:
    nodes = Nodes({"a": 31337})
    nodes.pad = 300  # each block result is about 700 bytes
    client = nodes.client("a", max_response_bytes=2_000)
    calls = [("eth_getBlockByNumber", [hex(n), False]) for n in range(8)]
    blocks = client.batch(calls)  # 8 x 700 bytes: split until each answer fits
    assert [b["number"] for b in blocks] == [hex(n) for n in range(8)]
    assert client.stats.splits >= 3
    nodes.pad = 2_000
    with pytest.raises(AnswerTooLarge, match=r"eth_getBlockByNumber: the answer of http://a is"):
        client.call("eth_getBlockByNumber", ["0x1", False])
