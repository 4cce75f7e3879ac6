"""The extraction over a scripted node (httpx mock transport): the chain must hold together
while it is read, receipts must be the block's, and a node that answers null receipts for
a block is read one receipt per transaction."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from chainlake.extract import ReorgDuringRead, stage_range
from chainlake.raw.transactions import ReceiptMismatch
from chainlake.rpc import RpcClient


def h(*parts: object) -> str:
    return "0x" + "".join(f"{p}" for p in parts).encode().hex().ljust(64, "0")[:64]


def block(n: int, *, fork: str = "", txs: int = 2) -> dict[str, Any]:
    return {
        "number": hex(n), "hash": h("b", fork, n), "parentHash": h("b", fork, n - 1),
        "timestamp": hex(1_790_000_000 + 12 * n), "miner": "0x" + "11" * 20, "nonce": "0x0",
        "sha3Uncles": h("u"), "logsBloom": "0x00", "transactionsRoot": h("t"),
        "stateRoot": h("s"), "receiptsRoot": h("r"), "difficulty": "0x0", "extraData": "0x",
        "gasLimit": hex(30_000_000), "gasUsed": hex(21_000 * txs), "uncles": [],
        "transactions": [
            {"hash": h("x", fork, n, "-", i), "transactionIndex": hex(i), "from": "0x" + "22" * 20,
             "to": "0x" + "33" * 20, "value": hex(10**18), "gas": hex(21_000), "nonce": hex(i),
             "input": "0x", "gasPrice": hex(10**9), "type": "0x0", "blockHash": h("b", fork, n),
             "blockNumber": hex(n)}
            for i in range(txs)
        ],
    }  # fmt: skip


def receipts(b: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"transactionHash": t["hash"], "transactionIndex": t["transactionIndex"],
         "blockHash": b["hash"], "blockNumber": b["number"], "from": t["from"], "to": t["to"],
         "gasUsed": hex(21_000), "cumulativeGasUsed": hex(21_000 * (i + 1)), "status": "0x1",
         "effectiveGasPrice": hex(10**9), "type": "0x0", "logs": [], "contractAddress": None}
        for i, t in enumerate(b["transactions"])
    ]  # fmt: skip


class Node:
    def __init__(self, blocks: dict[int, dict[str, Any]]) -> None:
        self.blocks = blocks
        self.block_receipts: dict[int, list[dict[str, Any]] | None] = {
            n: receipts(b) for n, b in blocks.items()
        }
        self.methods: list[str] = []

    def answer(self, method: str, params: list[Any]) -> Any:
        self.methods.append(method)
        if method == "eth_getBlockByNumber":
            return self.blocks.get(int(params[0], 16))
        if method == "eth_getBlockReceipts":
            return self.block_receipts.get(int(params[0], 16))
        if method == "eth_getTransactionReceipt":
            for b in self.blocks.values():
                for rc in receipts(b):
                    if rc["transactionHash"] == params[0]:
                        return rc
            return None
        raise AssertionError(method)

    def client(self) -> RpcClient:
        def handle(request: httpx.Request) -> httpx.Response:
            body = orjson.loads(request.content)
            out = [
                {"jsonrpc": "2.0", "id": c["id"], "result": self.answer(c["method"], c["params"])}
                for c in body
            ]
            return httpx.Response(200, content=orjson.dumps(out))

        return RpcClient(["http://node"], transport=httpx.MockTransport(handle), batch_size=4)


def test_a_chain_that_changes_while_read_is_refused(tmp_path: Path) -> None:
    blocks = {n: block(n) for n in range(1, 11)}
    blocks[7] = {**block(7, fork="x")}  # block 7 no longer follows 6: another chain
    with pytest.raises(ReorgDuringRead) as e:
        stage_range(Node(blocks).client(), 1, 1, 10, tmp_path)
    assert e.value.number == 7


def test_receipts_of_another_block_are_refused(tmp_path: Path) -> None:
    node = Node({n: block(n) for n in range(1, 5)})
    node.block_receipts[3] = receipts(block(3, fork="x"))  # read after a reorg of block 3
    with pytest.raises(ReceiptMismatch, match="block 3"):
        stage_range(node.client(), 1, 1, 4, tmp_path)


def test_null_block_receipts_are_read_per_transaction(tmp_path: Path) -> None:
    node = Node({n: block(n) for n in range(1, 9)})
    node.block_receipts[6] = None  # a node that does not have them (pruned, lagging replica)
    staged = stage_range(node.client(), 1, 1, 8, tmp_path)
    assert staged.rows == {"blocks": 8, "transactions": 16, "logs": 0, "traces": 0}
    assert node.methods.count("eth_getTransactionReceipt") == 8  # the chunk of blocks 5..8
    tx = staged.frame("transactions")
    assert tx["cumulative_gas_used"].to_list()[-2:] == [21_000, 42_000]
