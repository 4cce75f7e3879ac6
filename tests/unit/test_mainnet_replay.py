"""Recorded Ethereum mainnet JSON-RPC responses (Frontier to Cancun) replayed through the
extraction: a replaying provider answers RpcClient's requests from the recordings, the way
ethereum-etl's own tests replay `web3_response.*` files. Every column of every row is checked
against the recorded response it came from and, where ethereum-etl's expected rows exist,
against those too. The fixtures and where they come from: tests/fixtures/mainnet-rpc/README.md.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import orjson
import polars as pl
import pytest
from eth_utils import keccak

from assets.core.token_transfers import token_transfers_frame
from chainlake.extract import stage_range
from chainlake.raw.blocks import BlocksModel, blocks_from_rpc
from chainlake.raw.logs import LogsModel, logs_from_rpc
from chainlake.raw.shapes import RPC_BLOCK, RPC_RECEIPT
from chainlake.raw.transactions import (
    ReceiptMismatch,
    TransactionsModel,
    transactions_frame,
    transactions_from_rpc,
)
from chainlake.rpc import RpcClient

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(os.environ.get("MAINNET_RPC_FIXTURES", ROOT / "tests" / "fixtures" / "mainnet-rpc"))
ETL = FIXTURES / "ethereum-etl"
ERIGON = FIXTURES / "erigon-rpc-tests"
TESTCHAIN = FIXTURES / "execution-apis-TESTCHAIN"


@pytest.fixture(scope="module", autouse=True)
def _fixtures_present() -> None:
    if not (FIXTURES / "README.md").exists():
        pytest.fail(f"mainnet fixtures not found at {FIXTURES} (set MAINNET_RPC_FIXTURES)")


# -- the replaying provider ----------------------------------------------------------------


class Recorded:
    """A node that knows only what was recorded: full blocks by number, receipts by block
    and by transaction. Without block receipts it answers eth_getBlockReceipts with "method
    not found", as pre-2023 nodes do, so the extraction reads one receipt per transaction."""

    def __init__(self) -> None:
        self.blocks: dict[int, dict[str, Any]] = {}
        self.block_receipts: dict[int, list[dict[str, Any]]] = {}
        self.receipts: dict[str, dict[str, Any]] = {}
        self.calls: list[str] = []

    def add_block(self, block: dict[str, Any]) -> Recorded:
        self.blocks[int(block["number"], 16)] = block
        return self

    def add_receipts(self, receipts: Iterable[dict[str, Any]], *, per_block: bool) -> Recorded:
        for rc in receipts:
            self.receipts[rc["transactionHash"].lower()] = rc
            if per_block:
                self.block_receipts.setdefault(int(rc["blockNumber"], 16), []).append(rc)
        return self

    def answer(self, method: str, params: list[Any]) -> dict[str, Any]:
        self.calls.append(method)
        if method == "eth_getBlockByNumber":
            block = self.blocks.get(int(params[0], 16))
            if block is not None and not params[1]:
                block = {**block, "transactions": [t["hash"] for t in block["transactions"]]}
            return {"result": block}
        if method == "eth_getBlockReceipts":
            n = int(params[0], 16)
            if n not in self.block_receipts:
                return {
                    "error": {
                        "code": -32601,
                        "message": "the method eth_getBlockReceipts does not exist/is not available",
                    }
                }
            return {"result": self.block_receipts[n]}
        if method == "eth_getTransactionReceipt":
            return {"result": self.receipts.get(params[0].lower())}
        return {"error": {"code": -32601, "message": f"{method} not recorded"}}

    def transport(self) -> httpx.MockTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            body = orjson.loads(request.content)
            calls = body if isinstance(body, list) else [body]
            out = [
                {"jsonrpc": "2.0", "id": c["id"], **self.answer(c["method"], c["params"])}
                for c in calls
            ]
            return httpx.Response(
                200, content=orjson.dumps(out if isinstance(body, list) else out[0])
            )

        return httpx.MockTransport(handle)

    def client(self) -> RpcClient:
        return RpcClient(["http://recorded"], transport=self.transport(), max_in_flight=2)


def result(path: Path, index: int = 0) -> Any:
    """The `result` of a recorded response: a web3_response envelope, or the response of an
    erigon rpc-tests file (a list of request/response pairs; a batch answers a list)."""
    data = json.loads(path.read_text())
    if isinstance(data, dict):
        return data["result"]
    response = data[0]["response"]
    return response[index]["result"] if isinstance(response, list) else response["result"]


def io_result(path: Path) -> Any:
    """The response of an execution-apis `.io` file (`>> request`, `<< response`)."""
    line = next(x for x in path.read_text().splitlines() if x.startswith("<< "))
    return json.loads(line[3:])["result"]


def etl_rows(path: Path) -> list[dict[str, str]]:
    if path.suffix == ".csv":
        with path.open() as f:
            return list(csv.DictReader(f))
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def staged(provider: Recorded, first: int, last: int, tmp: Path) -> dict[str, pl.DataFrame]:
    s = stage_range(provider.client(), 1, first, last, tmp)  # validates every chunk too
    return {t: s.frame(t) for t in ("blocks", "transactions", "logs")}


# -- expected values, computed independently of the transforms --------------------------------


def q(v: str | None) -> int | None:
    return None if v is None else int(v, 16)


def low(v: str | None) -> str | None:
    return None if v is None else v.lower()


def ts(v: str) -> dt.datetime:
    return dt.datetime.fromtimestamp(int(v, 16), dt.UTC)


BLOCK_FIELDS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "block_number": lambda b: q(b["number"]),
    "block_hash": lambda b: b["hash"].lower(),
    "parent_hash": lambda b: b["parentHash"].lower(),
    "timestamp": lambda b: ts(b["timestamp"]),
    "date": lambda b: ts(b["timestamp"]).date(),
    "miner": lambda b: b["miner"].lower(),
    "nonce": lambda b: b.get("nonce"),
    "sha3_uncles": lambda b: b["sha3Uncles"],
    "logs_bloom": lambda b: b["logsBloom"],
    "transactions_root": lambda b: b["transactionsRoot"],
    "state_root": lambda b: b["stateRoot"],
    "receipts_root": lambda b: b["receiptsRoot"],
    "difficulty": lambda b: q(b.get("difficulty")) or 0,
    "total_difficulty": lambda b: q(b.get("totalDifficulty")),
    "size": lambda b: q(b.get("size")),
    "extra_data": lambda b: b["extraData"],
    "mix_hash": lambda b: low(b.get("mixHash")),
    "gas_limit": lambda b: q(b["gasLimit"]),
    "gas_used": lambda b: q(b["gasUsed"]),
    "base_fee_per_gas": lambda b: q(b.get("baseFeePerGas")),
    "transaction_count": lambda b: len(b["transactions"]),
    "uncle_count": lambda b: len(b.get("uncles") or []),
    # uncle headers are read only for chains with proof-of-work rewards (`uncles=True`): a
    # block without uncles has an empty list, one with uncles not read a null
    "uncles": lambda b: b.get("_uncle_headers", [] if not b.get("uncles") else None),
    "withdrawals_root": lambda b: low(b.get("withdrawalsRoot")),
    "withdrawal_count": lambda b: None if b.get("withdrawals") is None else len(b["withdrawals"]),
    "withdrawals": lambda b: (
        None
        if b.get("withdrawals") is None
        else [
            {
                "index": q(w["index"]),
                "validator_index": q(w["validatorIndex"]),
                "address": w["address"].lower(),
                "amount_gwei": q(w["amount"]),
            }
            for w in b["withdrawals"]
        ]
    ),
    "blob_gas_used": lambda b: q(b.get("blobGasUsed")),
    "excess_blob_gas": lambda b: q(b.get("excessBlobGas")),
    "parent_beacon_block_root": lambda b: low(b.get("parentBeaconBlockRoot")),
    "requests_hash": lambda b: low(b.get("requestsHash")),
}

TX_FIELDS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "transaction_hash": lambda t: t["hash"].lower(),
    "transaction_index": lambda t: q(t["transactionIndex"]),
    "from_address": lambda t: t["from"].lower(),
    "to_address": lambda t: low(t.get("to")),
    "value": lambda t: q(t["value"]),
    "gas": lambda t: q(t["gas"]),
    "gas_price": lambda t: q(t.get("gasPrice")),
    "max_fee_per_gas": lambda t: q(t.get("maxFeePerGas")),
    "max_priority_fee_per_gas": lambda t: q(t.get("maxPriorityFeePerGas")),
    "max_fee_per_blob_gas": lambda t: q(t.get("maxFeePerBlobGas")),
    "blob_versioned_hashes": lambda t: t.get("blobVersionedHashes"),
    "nonce": lambda t: q(t["nonce"]),
    "input": lambda t: t["input"],
    "type": lambda t: q(t.get("type")) or 0,
    "tx_chain_id": lambda t: q(t.get("chainId")),
    "access_list": lambda t: t.get("accessList"),  # compared as parsed JSON
    "authorization_list": lambda t: t.get("authorizationList"),
    "v": lambda t: t.get("v"),
    "r": lambda t: t.get("r"),
    "s": lambda t: t.get("s"),
    "y_parity": lambda t: q(t.get("yParity")),
    "mint": lambda t: q(t.get("mint")),
}

RECEIPT_FIELDS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "status": lambda r: q(r.get("status")),
    "root": lambda r: r.get("root"),
    "gas_used": lambda r: q(r["gasUsed"]),
    "cumulative_gas_used": lambda r: q(r["cumulativeGasUsed"]),
    "effective_gas_price": lambda r: q(r.get("effectiveGasPrice")),
    "contract_address": lambda r: low(r.get("contractAddress")),
    "logs_count": lambda r: len(r["logs"]),
    "blob_gas_used": lambda r: q(r.get("blobGasUsed")),
    "blob_gas_price": lambda r: q(r.get("blobGasPrice")),
    "l1_fee": lambda r: q(r.get("l1Fee")),
    "operator_fee_scalar": lambda r: q(r.get("operatorFeeScalar")),
    "operator_fee_constant": lambda r: q(r.get("operatorFeeConstant")),
    "da_footprint_gas_scalar": lambda r: q(r.get("daFootprintGasScalar")),
}

LOG_FIELDS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "transaction_hash": lambda g: g["transactionHash"].lower(),
    "transaction_index": lambda g: q(g["transactionIndex"]),
    "log_index": lambda g: q(g["logIndex"]),
    "address": lambda g: g["address"].lower(),
    **{
        f"topic{i}": (lambda g, i=i: g["topics"][i].lower() if i < len(g["topics"]) else None)
        for i in range(4)
    },
    "data": lambda g: g["data"],
}


def _value(column: str, v: Any) -> Any:
    if column in ("access_list", "authorization_list") and v is not None:
        return json.loads(v)
    if hasattr(v, "as_tuple"):  # Decimal(38,0)
        return int(v)
    return v


def assert_rows(
    df: pl.DataFrame, sources: list[dict[str, Any]], fields: dict[str, Callable]
) -> int:
    """Row i of `df` equals the fields computed from source i; returns the values checked."""
    assert df.height == len(sources)
    checked = 0
    for row, src in zip(df.iter_rows(named=True), sources, strict=True):
        for column, expected in fields.items():
            assert _value(column, row[column]) == expected(src), (column, row, src)
            checked += 1
    return checked


def assert_blocks(
    frames: dict[str, pl.DataFrame],
    blocks: list[dict[str, Any]],
    uncles: dict[int, list[dict[str, Any]]] | None = None,
) -> None:
    """Row by row, field by field; `uncles`: the recorded uncle headers of the blocks read
    with them, by block number (raw/blocks keeps index, hash, number and miner)."""
    assert set(frames["blocks"].columns) == set(BLOCK_FIELDS) | {"chain_id"}
    if uncles:
        blocks = [
            {
                **b,
                "_uncle_headers": [
                    {"index": i, "hash": u["hash"].lower(), "number": q(u["number"]),
                     "miner": u["miner"].lower()}
                    for i, u in enumerate(uncles[q(b["number"])])
                ],
            }
            if q(b["number"]) in uncles
            else b
            for b in blocks
        ]  # fmt: skip
    assert_rows(
        frames["blocks"].sort("block_number"),
        sorted(blocks, key=lambda b: q(b["number"])),
        BLOCK_FIELDS,
    )


def assert_transactions(
    frames: dict[str, pl.DataFrame], blocks: list[dict[str, Any]], receipts: dict[str, dict]
) -> None:
    txs = frames["transactions"].sort("block_number", "transaction_index")
    sources = [
        (b, t) for b in sorted(blocks, key=lambda b: q(b["number"])) for t in b["transactions"]
    ]
    assert set(txs.columns) == set(TX_FIELDS) | set(RECEIPT_FIELDS) | {
        "chain_id", "date", "block_number", "block_hash", "block_timestamp",
    }  # fmt: skip
    assert_rows(txs, [t for _, t in sources], TX_FIELDS)
    assert_rows(txs, [receipts[t["hash"].lower()] for _, t in sources], RECEIPT_FIELDS)
    assert_rows(
        txs,
        [b for b, _ in sources],
        {
            "block_number": lambda b: q(b["number"]),
            "block_hash": lambda b: b["hash"].lower(),
            "block_timestamp": lambda b: ts(b["timestamp"]),
            "date": lambda b: ts(b["timestamp"]).date(),
        },
    )


def assert_logs(
    frames: dict[str, pl.DataFrame], blocks: list[dict], receipts: dict[str, dict]
) -> None:
    logs = frames["logs"].sort("block_number", "log_index")
    by_number = {q(b["number"]): b for b in blocks}
    sources = sorted(
        (g for rc in receipts.values() for g in rc["logs"] if q(rc["blockNumber"]) in by_number),
        key=lambda g: (q(g["blockNumber"]), q(g["logIndex"])),
    )
    assert_rows(logs, sources, LOG_FIELDS)
    assert_rows(
        logs,
        [by_number[q(g["blockNumber"])] for g in sources],
        {
            "block_hash": lambda b: b["hash"].lower(),
            "block_timestamp": lambda b: ts(b["timestamp"]),
        },
    )


# -- ethereum-etl's expected rows --------------------------------------------------------------

ETL_BLOCKS = {
    "number": "block_number", "hash": "block_hash", "parent_hash": "parent_hash",
    "nonce": "nonce", "sha3_uncles": "sha3_uncles", "logs_bloom": "logs_bloom",
    "transactions_root": "transactions_root", "state_root": "state_root",
    "receipts_root": "receipts_root", "miner": "miner", "difficulty": "difficulty",
    "total_difficulty": "total_difficulty", "size": "size", "extra_data": "extra_data",
    "gas_limit": "gas_limit", "gas_used": "gas_used", "timestamp": "timestamp",
    "transaction_count": "transaction_count", "base_fee_per_gas": "base_fee_per_gas",
}  # fmt: skip
ETL_TRANSACTIONS = {
    "hash": "transaction_hash", "nonce": "nonce", "block_hash": "block_hash",
    "block_number": "block_number", "transaction_index": "transaction_index",
    "from_address": "from_address", "to_address": "to_address", "value": "value", "gas": "gas",
    "gas_price": "gas_price", "input": "input", "block_timestamp": "block_timestamp",
    "max_fee_per_gas": "max_fee_per_gas", "max_priority_fee_per_gas": "max_priority_fee_per_gas",
    "transaction_type": "type",
    # receipt columns of ethereum-etl's transactions rows (stream exporter)
    "receipt_cumulative_gas_used": "cumulative_gas_used", "receipt_gas_used": "gas_used",
    "receipt_contract_address": "contract_address", "receipt_root": "root",
    "receipt_status": "status", "receipt_effective_gas_price": "effective_gas_price",
}  # fmt: skip
ETL_RECEIPTS = {
    "transaction_hash": "transaction_hash", "transaction_index": "transaction_index",
    "block_hash": "block_hash", "block_number": "block_number",
    "cumulative_gas_used": "cumulative_gas_used", "gas_used": "gas_used",
    "contract_address": "contract_address", "root": "root", "status": "status",
    "effective_gas_price": "effective_gas_price",
}  # fmt: skip
ETL_LOGS = {
    "log_index": "log_index", "transaction_hash": "transaction_hash",
    "transaction_index": "transaction_index", "block_hash": "block_hash",
    "block_number": "block_number", "address": "address", "data": "data",
}  # fmt: skip
ETL_TRANSFERS = {
    "token_address": "token_address", "from_address": "from_address",
    "to_address": "to_address", "value": "value_raw", "transaction_hash": "transaction_hash",
    "log_index": "log_index", "block_number": "block_number",
}  # fmt: skip


def _etl_norm(v: Any) -> str:
    if v is None or v == "":
        return ""
    if isinstance(v, dt.datetime):
        return str(int(v.timestamp()))
    if hasattr(v, "as_tuple"):
        return str(int(v))
    return str(v)


def assert_etl(
    df: pl.DataFrame, expected: list[dict[str, Any]], mapping: dict[str, str], key: str
) -> int:
    """Each expected row matches ours on every column both have; returns the values compared."""
    ours = {str(r[mapping[key]]): r for r in df.iter_rows(named=True)}
    assert len(ours) == len(expected)
    compared = 0
    for exp in expected:
        row = ours[str(exp[key])]
        for etl_col, col in mapping.items():
            if etl_col not in exp:
                continue
            assert _etl_norm(row[col]) == _etl_norm(exp[etl_col]), (etl_col, row[col], exp[etl_col])
            compared += 1
        if "topics" in exp:
            topics = exp["topics"] if isinstance(exp["topics"], list) else exp["topics"].split(",")
            assert [row[f"topic{i}"] for i in range(len(topics))] == topics
    return compared


# -- the cases ---------------------------------------------------------------------------------


def test_frontier_block_483920_with_logs_and_transfers(tmp_path: Path) -> None:
    """Frontier (2015): per-transaction receipts with a state `root`, no status; ERC-20
    Transfer logs; Parity's `author` and `sealFields` in the block (ignored)."""
    block = result(
        ETL
        / "test_export_blocks_job/block_with_logs/web3_response.eth_getBlockByNumber_0x76250_true.json"
    )
    receipts = [
        result(p)
        for p in sorted(
            (ETL / "test_export_receipts_job/receipts_with_logs").glob("web3_response.*")
        )
    ]
    provider = Recorded().add_block(block).add_receipts(receipts, per_block=False)
    frames = staged(provider, 483920, 483920, tmp_path)
    assert provider.calls.count("eth_getTransactionReceipt") == 4  # the fallback path

    by_hash = {r["transactionHash"]: r for r in receipts}
    assert_blocks(frames, [block])
    assert_transactions(frames, [block], by_hash)
    assert_logs(frames, [block], by_hash)
    tx = frames["transactions"]
    assert tx["status"].null_count() == 4 and tx["root"].null_count() == 0

    d = ETL / "test_export_blocks_job/block_with_logs"
    assert (
        assert_etl(frames["blocks"], etl_rows(d / "expected_blocks.csv"), ETL_BLOCKS, "number")
        == 19
    )
    assert (
        assert_etl(
            frames["transactions"],
            etl_rows(d / "expected_transactions.csv"),
            ETL_TRANSACTIONS,
            "hash",
        )
        == 60
    )
    d = ETL / "test_export_receipts_job/receipts_with_logs"
    assert (
        assert_etl(
            frames["transactions"],
            etl_rows(d / "expected_receipts.csv"),
            ETL_RECEIPTS,
            "transaction_hash",
        )
        == 40
    )
    assert (
        assert_etl(frames["logs"], etl_rows(d / "expected_logs.csv"), ETL_LOGS, "log_index") == 14
    )
    assert (
        assert_etl(frames["logs"], etl_rows(d / "expected_logs.json"), ETL_LOGS, "log_index") == 14
    )
    transfers = token_transfers_frame(frames["logs"])
    expected = etl_rows(
        ETL / "test_export_token_transfers_job/block_with_transfers/expected_token_transfers.csv"
    )
    assert assert_etl(transfers, expected, ETL_TRANSFERS, "log_index") == 14
    # the filter logs recorded for that export are the Transfer logs of the receipts
    filter_logs = result(
        ETL
        / "test_export_token_transfers_job/block_with_transfers/web3_response.eth_getFilterLogs_0x0.json"
    )
    assert sorted(g["transactionHash"] for g in filter_logs) == sorted(
        transfers["transaction_hash"].to_list()
    )


def test_block_receipts_out_of_order_are_lined_up(tmp_path: Path) -> None:
    """ethereum-etl's hand-made eth_getBlockReceipts answer for 483,920 lists receipts in
    the order 0, 2, 3, 1: they still line up with their transactions."""
    block = result(
        ETL
        / "test_export_blocks_job/block_with_logs/web3_response.eth_getBlockByNumber_0x76250_true.json"
    )
    d = ETL / "historical_b6b82b1_test_export_block_receipts_job/receipts_with_logs"
    receipts = result(d / "web3_response.eth_getBlockReceipts_483920.json")
    assert [q(r["transactionIndex"]) for r in receipts] == [0, 2, 3, 1]
    provider = Recorded().add_block(block).add_receipts(receipts, per_block=True)
    frames = staged(provider, 483920, 483920, tmp_path)
    assert "eth_getTransactionReceipt" not in provider.calls
    assert_transactions(frames, [block], {r["transactionHash"]: r for r in receipts})
    assert (
        assert_etl(
            frames["transactions"],
            etl_rows(d / "expected_receipts.csv"),
            ETL_RECEIPTS,
            "transaction_hash",
        )
        == 40
    )
    assert (
        assert_etl(frames["logs"], etl_rows(d / "expected_logs.csv"), ETL_LOGS, "log_index") == 14
    )


def test_frontier_blocks_47218_47219_and_genesis(tmp_path: Path) -> None:
    d = ETL / "test_export_blocks_job/blocks_with_transactions"
    blocks = [
        result(d / f"web3_response.eth_getBlockByNumber_{n}_true.json")
        for n in ("0xb872", "0xb873")
    ]
    receipts = [
        result(p) for p in (ETL / "historical_5a40046_receipts_blocks_47218_47219").glob("*.json")
    ]
    provider = Recorded().add_receipts(receipts, per_block=False)
    for b in blocks:
        provider.add_block(b)
    frames = staged(provider, 47218, 47219, tmp_path / "a")
    by_hash = {r["transactionHash"]: r for r in receipts}
    assert_blocks(frames, blocks)
    assert_transactions(frames, blocks, by_hash)
    assert (
        assert_etl(frames["blocks"], etl_rows(d / "expected_blocks.csv"), ETL_BLOCKS, "number")
        == 38
    )
    assert (
        assert_etl(
            frames["transactions"],
            etl_rows(d / "expected_transactions.csv"),
            ETL_TRANSACTIONS,
            "hash",
        )
        == 60
    )

    g = ETL / "test_export_blocks_job/block_without_transactions"
    genesis = result(g / "web3_response.eth_getBlockByNumber_0x0_true.json")
    frames = staged(Recorded().add_block(genesis), 0, 0, tmp_path / "b")
    assert_blocks(frames, [genesis])
    assert frames["transactions"].height == 0
    assert (
        assert_etl(frames["blocks"], etl_rows(g / "expected_blocks.csv"), ETL_BLOCKS, "number")
        == 19
    )


def test_homestead_stream_1755634_1755635(tmp_path: Path) -> None:
    d = ETL / "test_stream/blocks_1755634_1755635"
    blocks = [
        result(d / f"web3_response.eth_getBlockByNumber_{n}_true.json")
        for n in ("0x1ac9f2", "0x1ac9f3")
    ]
    receipts = [result(p) for p in d.glob("web3_response.eth_getTransactionReceipt_*.json")]
    provider = Recorded().add_receipts(receipts, per_block=False)
    for b in blocks:
        provider.add_block(b)
    frames = staged(provider, 1755634, 1755635, tmp_path)
    by_hash = {r["transactionHash"]: r for r in receipts}
    assert_blocks(frames, blocks)
    assert_transactions(frames, blocks, by_hash)
    assert_logs(frames, blocks, by_hash)
    assert (
        assert_etl(frames["blocks"], etl_rows(d / "expected_blocks.json"), ETL_BLOCKS, "number")
        == 38
    )
    assert (
        assert_etl(
            frames["transactions"],
            etl_rows(d / "expected_transactions.json"),
            ETL_TRANSACTIONS,
            "hash",
        )
        > 40
    )
    assert assert_etl(frames["logs"], etl_rows(d / "expected_logs.json"), ETL_LOGS, "log_index") > 0
    transfers = token_transfers_frame(frames["logs"])
    assert (
        assert_etl(
            transfers, etl_rows(d / "expected_token_transfers.json"), ETL_TRANSFERS, "log_index"
        )
        > 0
    )


def test_london_block_17000000_complete(tmp_path: Path) -> None:
    """Erigon's answers for 17,000,000 (post-merge, pre-Shanghai): 102 transactions of types
    0 and 2 with all their receipts, served as eth_getBlockReceipts."""
    d = ERIGON / "block_17000000_london"
    block = result(d / "eth_getBlockByHash__test_04.json", 0)
    receipts = result(d / "erigon_getBlockReceiptsByBlockHash__test_01.json")
    provider = Recorded().add_block(block).add_receipts(receipts, per_block=True)
    frames = staged(provider, 17_000_000, 17_000_000, tmp_path)
    by_hash = {r["transactionHash"]: r for r in receipts}
    assert_blocks(frames, [block])
    assert_transactions(frames, [block], by_hash)
    assert_logs(frames, [block], by_hash)
    assert set(frames["transactions"]["type"].to_list()) == {0, 2}
    single = result(d / "eth_getTransactionReceipt__test_04.json")
    assert by_hash[single["transactionHash"]] == single

    nxt = result(d / "eth_getBlockByHash__test_04.json", 1)  # 17,000,001: block only
    parsed = _parse_blocks([nxt])
    assert_blocks({"blocks": blocks_from_rpc(parsed, 1)}, [nxt])


def _parse_blocks(blocks: list[dict[str, Any]]) -> pl.DataFrame:
    """Recorded blocks through RpcClient.batch_frame (the Polars parse of the response)."""
    provider = Recorded()
    for b in blocks:
        provider.add_block(b)
    series = provider.client().batch_frame(
        [("eth_getBlockByNumber", [b["number"], True]) for b in blocks], RPC_BLOCK
    )
    return series.struct.unnest().with_row_index("_bi")


def _parse_receipts(receipts: list[dict[str, Any]]) -> pl.DataFrame:
    provider = Recorded().add_receipts(receipts, per_block=False)
    series = provider.client().batch_frame(
        [("eth_getTransactionReceipt", [r["transactionHash"]]) for r in receipts], RPC_RECEIPT
    )
    return pl.DataFrame({"_bi": [0] * series.len(), "r": series}).unnest("r")


def _stand_in_receipts(block: dict[str, Any]) -> list[dict[str, Any]]:
    """Receipts made up for a block recorded without them: only their transaction's fields
    are checked then."""
    return [
        {
            "transactionHash": t["hash"], "transactionIndex": t["transactionIndex"],
            "blockHash": block["hash"], "blockNumber": block["number"], "gasUsed": "0x0",
            "cumulativeGasUsed": "0x0", "status": "0x1", "logs": [],
        }
        for t in block["transactions"]
    ]  # fmt: skip


def _stand_in_block(receipts: list[dict[str, Any]]) -> dict[str, Any]:
    """A block made up around receipts recorded without it: only receipt fields are checked."""
    first = receipts[0]
    return {
        "number": first["blockNumber"], "hash": first["blockHash"], "parentHash": "0x" + "0" * 64,
        "timestamp": "0x66000000", "miner": "0x" + "0" * 40, "sha3Uncles": "0x", "logsBloom": "0x",
        "transactionsRoot": "0x", "stateRoot": "0x", "receiptsRoot": "0x", "extraData": "0x",
        "gasLimit": "0x1c9c380", "gasUsed": "0x0", "uncles": [],
        "transactions": [
            {
                "hash": r["transactionHash"], "transactionIndex": r["transactionIndex"],
                "from": r["from"], "to": r.get("to"), "value": "0x0", "gas": r["gasUsed"],
                "nonce": "0x0", "input": "0x", "type": r.get("type"),
            }
            for r in receipts
        ],
    }  # fmt: skip


def test_cancun_block_19900000_all_transaction_types() -> None:
    """Cancun block with types 0-3 (blob transactions), withdrawals, blob gas fields and the
    parent beacon root, recorded without receipts: header and transaction fields."""
    d = ERIGON / "block_19900000_cancun_block_only"
    block = result(d / "eth_getBlockByNumber__test_14.json")
    assert result(d / "eth_getBlockByHash__test_09.json") == block
    raw = _parse_blocks([block])
    blocks = blocks_from_rpc(raw, 1)
    BlocksModel.validate(blocks)
    assert_blocks({"blocks": blocks}, [block])
    receipts = _stand_in_receipts(block)
    txs = transactions_from_rpc(raw, _parse_receipts(receipts), 1)
    TransactionsModel.validate(txs)
    assert_rows(txs, block["transactions"], TX_FIELDS)
    assert set(txs["type"].to_list()) == {0, 1, 2, 3}
    blob = txs.filter(pl.col("type") == 3)
    assert blob.height and blob["blob_versioned_hashes"].list.len().min() >= 1
    assert blob["max_fee_per_blob_gas"].null_count() == 0
    assert txs.filter(pl.col("type") == 1)["access_list"].null_count() == 0


@pytest.mark.parametrize(
    "path",
    [
        "block_19999999_cancun_receipts_only/erigon_getBlockReceiptsByBlockHash__test_07.json",
        "block_20000010_cancun_receipts_only/eth_getBlockReceipts__test_10.json",
    ],
)
def test_cancun_receipts_with_blob_gas(path: str, tmp_path: Path) -> None:
    """Receipts recorded without their block (type 3 with blobGasUsed and blobGasPrice):
    through the whole extraction with a stand-in block; receipt and log fields checked."""
    receipts = result(ERIGON / path)
    block = _stand_in_block(receipts)
    provider = Recorded().add_block(block).add_receipts(receipts, per_block=True)
    n = q(block["number"])
    frames = staged(provider, n, n, tmp_path)
    by_hash = {r["transactionHash"]: r for r in receipts}
    txs = frames["transactions"].sort("transaction_index")
    assert_rows(txs, [by_hash[t["hash"]] for t in block["transactions"]], RECEIPT_FIELDS)
    assert_logs(frames, [block], by_hash)
    blob = txs.filter(pl.col("type") == 3)
    assert blob.height and blob["blob_gas_used"].min() > 0 and blob["blob_gas_price"].min() > 0


def test_cancun_block_21925176_helios() -> None:
    """helios: a hash-only block (16 withdrawals, zero blob gas) and its 202 receipts."""
    d = FIXTURES / "helios/block_21925176_cancun"
    block = json.loads((d / "block.json").read_text())
    receipts = json.loads((d / "receipts.json").read_text())
    assert [r["transactionHash"] for r in receipts] == block["transactions"]
    full = {**block, "transactions": [{"hash": h} for h in block["transactions"]]}
    blocks = blocks_from_rpc(_parse_blocks([full]), 1)
    BlocksModel.validate(blocks)
    assert_blocks({"blocks": blocks}, [full])
    assert blocks["withdrawal_count"].item() == 16
    stand_in = _stand_in_block(receipts)
    txs = transactions_from_rpc(_parse_blocks([stand_in]), _parse_receipts(receipts), 1)
    assert_rows(txs, receipts, RECEIPT_FIELDS)
    logs = logs_from_rpc(_parse_blocks([stand_in]), _parse_receipts(receipts), 1)
    LogsModel.validate(logs)
    assert logs.height == sum(len(r["logs"]) for r in receipts)


def test_testchain_complete_blocks_and_header_fields_of_every_fork(tmp_path: Path) -> None:
    """The execution-apis hive chain (not mainnet): blocks 1 and 54 with their receipts
    through the extraction; the fork blocks' headers (London, merge, Shanghai, Cancun,
    Prague with requestsHash)."""
    b1 = io_result(TESTCHAIN / "eth_getBlockByHash/get-block-by-hash.io")
    r1 = io_result(TESTCHAIN / "eth_getBlockReceipts/get-block-receipts-by-hash.io")
    assert io_result(TESTCHAIN / "eth_getBlockReceipts/get-block-receipts-n.io") == r1
    b54 = io_result(TESTCHAIN / "eth_getBlockByNumber/get-latest.io")
    r54 = io_result(TESTCHAIN / "eth_getBlockReceipts/get-block-receipts-latest.io")
    for block, receipts in ((b1, r1), (b54, r54)):
        provider = Recorded().add_block(block).add_receipts(receipts, per_block=True)
        n = q(block["number"])
        frames = staged(provider, n, n, tmp_path / str(n))
        by_hash = {r["transactionHash"]: r for r in receipts}
        assert_blocks(frames, [block])
        assert_transactions(frames, [block], by_hash)
        assert_logs(frames, [block], by_hash)
    assert b54["requestsHash"]

    forks = [
        io_result(TESTCHAIN / f"eth_getBlockByNumber/get-block-{f}-fork.io")
        for f in ("london", "merge", "shanghai", "cancun", "prague")
    ]
    headers = [{**b, "transactions": [{"hash": h} for h in b["transactions"]]} for b in forks]
    frame = blocks_from_rpc(_parse_blocks(headers), 3503995874084926)
    BlocksModel.validate(frame)
    assert_blocks({"blocks": frame}, headers)
    assert frame["requests_hash"].null_count() == 4  # Prague's only
    assert frame["base_fee_per_gas"].null_count() == 0


def test_testchain_receipts_of_every_type_including_set_code() -> None:
    """Single receipts of the hive chain: legacy, contract creation, access list, dynamic
    fee, blob (type 3) and set-code (type 4, EIP-7702). The set-code transaction itself is
    not recorded anywhere; its authorization list shape comes from the EIP."""
    names = [
        "legacy-receipt",
        "legacy-contract",
        "access-list",
        "dynamic-fee",
        "blob-tx",
        "setcode-tx",
    ]
    receipts = [io_result(TESTCHAIN / f"eth_getTransactionReceipt/get-{n}.io") for n in names]
    for rc in receipts:
        block = _stand_in_block([rc])
        tx = block["transactions"][0]
        if rc["type"] == "0x4":
            tx["authorizationList"] = [
                {"chainId": "0xc72dd9d5e883e", "address": "0x" + "aa" * 20, "nonce": "0x1",
                 "yParity": "0x0", "r": "0x" + "11" * 32, "s": "0x" + "22" * 32},
            ]  # fmt: skip
        txs = transactions_frame([block], [[rc]], 3503995874084926)
        TransactionsModel.validate(txs)
        assert_rows(txs, [rc], RECEIPT_FIELDS)
        assert_rows(txs, [tx], {k: TX_FIELDS[k] for k in ("type", "authorization_list")})
    assert {q(r["type"]) for r in receipts} == {0, 1, 2, 3, 4}


@pytest.mark.parametrize(
    ("case", "test", "types"),
    [
        ("raw_rlp_20000000_cancun", "02", {0, 1, 2, 3}),
        ("raw_rlp_20066032_cancun", "05", {0, 2, 3}),
        ("raw_rlp_4662649_byzantium", "01", {0}),
    ],
)
def test_complete_blocks_from_their_consensus_encoding(
    case: str, test: str, types: set[int], tmp_path: Path
) -> None:
    """The only complete Cancun sets with blob transactions are in RLP (debug_getRawBlock,
    debug_getRawReceipts): turned into the JSON-RPC answers a node gives (tests/rlp_blocks.py,
    checked here against the JSON receipts Erigon recorded for the same block), they go
    through the whole extraction, every field checked."""
    from tests.rlp_blocks import block_json, receipts_json

    d = ERIGON / case
    raw_block = bytes.fromhex(result(d / f"debug_getRawBlock__test_{test}.json")[2:])
    raw_header = bytes.fromhex(result(d / f"debug_getRawHeader__test_{test}.json")[2:])
    block = block_json(raw_block)
    assert raw_header in raw_block and block["hash"] == "0x" + keccak(raw_header).hex()
    receipts = receipts_json(
        [bytes.fromhex(r[2:]) for r in result(d / f"debug_getRawReceipts__test_{test}.json")], block
    )
    by_hash = {r["transactionHash"]: r for r in receipts}
    for recorded in sorted(d.glob("eth_getTransactionReceipt__*.json")):
        rc = result(recorded)
        assert by_hash[rc["transactionHash"]] == rc  # the derivation is what Erigon serves

    provider = Recorded().add_block(block).add_receipts(receipts, per_block=True)
    n = q(block["number"])
    frames = staged(provider, n, n, tmp_path)
    assert_blocks(frames, [block])
    assert_transactions(frames, [block], by_hash)
    assert_logs(frames, [block], by_hash)
    assert set(frames["transactions"]["type"].to_list()) == types


def test_mismatched_receipts_are_refused() -> None:
    block = result(
        ETL
        / "test_export_blocks_job/block_with_logs/web3_response.eth_getBlockByNumber_0x76250_true.json"
    )
    receipts = [
        result(p)
        for p in sorted(
            (ETL / "test_export_receipts_job/receipts_with_logs").glob("web3_response.*")
        )
    ]
    with pytest.raises(ReceiptMismatch, match=r"4 transactions but 3 receipts|receipts"):
        transactions_frame([block], [receipts[:3]], 1)
    other = {**receipts[0], "transactionHash": "0x" + "ab" * 32}
    with pytest.raises(ReceiptMismatch, match="does not match"):
        transactions_frame([block], [[other, *receipts[1:]]], 1)


def test_staged_rows_survive_delta(tmp_path: Path) -> None:
    """The London block's rows, written to Delta and read back, are unchanged."""
    from chainlake.config import ChainConfig
    from chainlake.lake import DeltaStore

    d = ERIGON / "block_17000000_london"
    block = result(d / "eth_getBlockByHash__test_04.json", 0)
    receipts = result(d / "erigon_getBlockReceiptsByBlockHash__test_01.json")
    provider = Recorded().add_block(block).add_receipts(receipts, per_block=True)
    s = stage_range(provider.client(), 1, 17_000_000, 17_000_000, tmp_path / "stage")
    store = DeltaStore(root=str(tmp_path / "delta"))
    chain = ChainConfig(
        name="ethereum-mainnet", network="ethereum", subnet="mainnet", chain_id=1,
        rpc_urls=("http://recorded",), start_date=dt.date(2015, 7, 30),
    )  # fmt: skip
    day = ts(block["timestamp"]).date()
    for table in ("blocks", "transactions", "logs"):
        store.replace_day(chain, table, day, s.reader(table))
        back = store.read_day(chain, table, day)
        keys = [c for c in ("block_number", "transaction_index", "log_index") if c in back.columns]
        assert back.sort(keys).equals(s.frame(table).sort(keys)), table
