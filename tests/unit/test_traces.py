"""raw/traces from recorded mainnet answers: ethereum-etl's recordings of `trace_block` and of
`debug_traceBlockByNumber` + callTracer for the same four blocks (tests/fixtures/traces),
checked field by field against ethereum-etl's own expected rows (its `expected_traces.csv`,
written by another implementation)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import polars as pl
import pytest

from chainlake.raw.shapes import rpc_block_frame
from chainlake.raw.traces import (
    DEBUG_TRACE,
    TRACE_BLOCK,
    TracesModel,
    call_tracer_rows,
    frame_rows,
    trace_block_rows,
    traces_from_rpc,
)
from chainlake.rpc import BadAnswer
from chainlake.schema import schema_failures

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "traces" / "ethereum-etl"
CASES = ["block_with_create", "block_with_error", "block_with_subtraces", "block_with_suicide"]


def _load(case: str, prefix: str) -> list:
    (path,) = (FIXTURES / case).glob(f"web3_response.{prefix}_*.json")
    return json.loads(path.read_text())["result"]


def _expected(case: str, name: str = "expected_traces.csv") -> list[dict[str, str]]:
    with open(FIXTURES / case / name) as f:
        return list(csv.DictReader(f))


def _block(number: int, tx_hashes: list[str]) -> dict:
    # the recordings hold no block: a stand-in with the recorded number and transactions
    # (its hash and time are not part of what is checked)
    return {
        "number": hex(number),
        "hash": "0x" + "ab" * 32,
        "timestamp": "0x55ba4224",
        "transactions": [{"hash": h} for h in tx_hashes],
    }


def _trace_block_rows(case: str) -> tuple[pl.DataFrame, list[dict[str, str]]]:
    answer = _load(case, "trace_block")
    expected = _expected(case)
    number = int(expected[0]["block_number"])
    positions = {
        t["transactionPosition"]: t["transactionHash"] for t in answer if t.get("transactionHash")
    }
    hashes = [positions[i] for i in range(len(positions))]
    block = _block(number, hashes)
    rows = trace_block_rows(0, hashes, answer, f"block {number}")
    return traces_from_rpc(rpc_block_frame([block]), frame_rows(rows), 1, TRACE_BLOCK), expected


def _opt_int(s: str) -> int | None:
    return None if s == "" else int(s)


@pytest.mark.parametrize("case", CASES)
def test_trace_block_matches_ethereum_etl(case: str) -> None:
    df, expected = _trace_block_rows(case)
    assert schema_failures(TracesModel, df) is None
    assert df.height == len(expected)
    for got, want in zip(df.iter_rows(named=True), expected, strict=True):
        assert got["block_number"] == int(want["block_number"])
        assert got["transaction_hash"] == (want["transaction_hash"] or None)
        assert got["transaction_index"] == _opt_int(want["transaction_index"])
        assert got["from_address"] == (want["from_address"] or None)
        assert got["to_address"] == (want["to_address"] or None)
        assert int(got["value"]) == int(want["value"] or 0)
        assert got["trace_type"] == want["trace_type"]
        assert got["call_type"] == (want["call_type"] or None)
        assert got["reward_type"] == (want["reward_type"] or None)
        assert got["gas"] == _opt_int(want["gas"])
        assert got["gas_used"] == _opt_int(want["gas_used"])
        assert got["subtraces"] == int(want["subtraces"])
        assert got["trace_address"] == want["trace_address"]
        assert got["depth"] == (
            len(want["trace_address"].split(",")) if want["trace_address"] else 0
        )
        assert got["error"] == (want["error"] or None)
        # ethereum-etl's status is 0 for a failed frame and everything under it
        assert got["reverted"] == (want["status"] == "0")
        data = want["input"]
        assert got["input_selector"] == (data[:10] if len(data) >= 10 else None)
        assert got["input_length"] == ((len(data) - 2) // 2 if data else None)
        out = want["output"]
        assert got["output_length"] == ((len(out) - 2) // 2 if out else None)
        assert got["trace_source"] == TRACE_BLOCK
    assert df["trace_index"].to_list() == list(range(df.height))


@pytest.mark.parametrize("case", CASES)
def test_call_tracer_matches_ethereum_etl(case: str) -> None:
    answer = _load(case, "debug_traceBlockByNumber")
    expected = _expected(case, "geth_expected_traces.csv")
    # the transactions' hashes, from the same block's trace_block recording
    tb = _load(case, "trace_block")
    positions = {
        t["transactionPosition"]: t["transactionHash"] for t in tb if t.get("transactionHash")
    }
    hashes = [positions[i] for i in range(len(positions))]
    number = int(_expected(case)[0]["block_number"])
    rows = call_tracer_rows(0, hashes, answer, f"block {number}")
    df = traces_from_rpc(
        rpc_block_frame([_block(number, hashes)]), frame_rows(rows), 1, DEBUG_TRACE
    )
    assert schema_failures(TracesModel, df) is None
    assert df.height == len(expected)
    for got, want in zip(df.iter_rows(named=True), expected, strict=True):
        assert got["transaction_index"] == int(want["transaction_index"])
        assert got["transaction_hash"] == hashes[int(want["transaction_index"])]
        assert got["from_address"] == (want["from_address"] or None)
        assert got["to_address"] == (want["to_address"] or None)
        assert int(got["value"]) == int(want["value"] or 0)
        assert got["trace_type"] == want["trace_type"]
        # callTracer says which creation opcode ran; ethereum-etl drops it
        want_call = want["call_type"] or ("create" if want["trace_type"] == "create" else None)
        assert got["call_type"] == want_call
        assert got["gas"] == _opt_int(want["gas"])
        assert got["gas_used"] == _opt_int(want["gas_used"])
        assert got["subtraces"] == int(want["subtraces"])
        assert got["trace_address"] == want["trace_address"]
        assert got["error"] == (want["error"] or None)


def test_both_tracers_agree_on_value_moved() -> None:
    """The two recordings of block 1,000,000 move the same value between the same addresses
    in their successful frames (Geth's callTracer names a CALLCODE's target by its code's
    address, Parity by the caller's: the one field where they differ)."""
    tb, _ = _trace_block_rows("block_with_subtraces")
    answer = _load("block_with_subtraces", "debug_traceBlockByNumber")
    hashes = tb["transaction_hash"].drop_nulls().unique(maintain_order=True).to_list()
    rows = call_tracer_rows(0, hashes, answer, "block 1000000")
    ct = traces_from_rpc(
        rpc_block_frame([_block(1_000_000, hashes)]), frame_rows(rows), 1, DEBUG_TRACE
    )
    key = ["transaction_hash", "trace_address", "from_address", "value", "trace_type", "call_type"]
    calls = tb.filter(pl.col("trace_type") != "reward")
    assert calls.select(key[:2] + key[3:]).equals(ct.select(key[:2] + key[3:]))


def test_reverted_subtree_is_flagged() -> None:
    """A frame under a failed frame is reverted even when it has no error of its own."""
    answer = [
        {
            "type": "CALL",
            "from": "0x" + "01" * 20,
            "to": "0x" + "02" * 20,
            "value": "0x5",
            "gas": "0x10",
            "gasUsed": "0x8",
            "input": "0x",
            "calls": [
                {
                    "type": "CALL",
                    "from": "0x" + "02" * 20,
                    "to": "0x" + "03" * 20,
                    "value": "0x2",
                    "error": "execution reverted",
                    "input": "0x",
                    "calls": [
                        {
                            "type": "CALL",
                            "from": "0x" + "03" * 20,
                            "to": "0x" + "04" * 20,
                            "value": "0x1",
                            "input": "0x",
                        }
                    ],
                },
                {
                    "type": "SELFDESTRUCT",
                    "from": "0x" + "02" * 20,
                    "to": "0x" + "05" * 20,
                    "value": "0x3",
                },
            ],
        }
    ]
    tx = "0x" + "cd" * 32
    rows = call_tracer_rows(0, [tx], [{"txHash": tx, "result": answer[0]}], "block 1")
    df = traces_from_rpc(rpc_block_frame([_block(1, [tx])]), frame_rows(rows), 1, DEBUG_TRACE)
    assert df["trace_address"].to_list() == ["", "0", "0,0", "1"]
    assert df["reverted"].to_list() == [False, True, True, False]
    assert df["trace_type"].to_list() == ["call", "call", "call", "suicide"]
    assert df["depth"].to_list() == [0, 1, 2, 1]
    assert df["subtraces"].to_list() == [2, 1, 0, 0]


def test_bad_answers_name_the_block() -> None:
    tx = "0x" + "cd" * 32
    with pytest.raises(BadAnswer, match="block 7: 0 transaction traces for 1 transactions"):
        call_tracer_rows(0, [tx], [], "block 7")
    with pytest.raises(BadAnswer, match=r"block 7: transaction 0x.*the tracer failed: Resource"):
        call_tracer_rows(0, [tx], [{"txHash": tx, "error": "Resource not found"}], "block 7")
    with pytest.raises(BadAnswer, match=r"block 7: a trace of 0x.*not in the block"):
        trace_block_rows(0, [], [{"action": {}, "type": "call", "transactionHash": tx}], "block 7")
