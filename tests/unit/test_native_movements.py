"""core/native_balance_movements: every kind of native movement from the raw tables, on
recorded mainnet data (traces of ethereum-etl's recordings, withdrawals of a Cancun block)
and on hand-made rows for the fee models."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest

from assets.core.native_balance_movements import (
    NativeBalanceMovementsModel,
    blocks_without_uncle_headers,
    native_balance_movements_frame,
)
from chainlake.presets import OP_BASE_FEE_VAULT, OP_L1_FEE_VAULT
from chainlake.raw.blocks import UNCLES, blocks_from_rpc
from chainlake.raw.shapes import rpc_block_frame
from chainlake.raw.traces import TRACE_BLOCK, frame_rows, trace_block_rows, traces_from_rpc
from chainlake.schema import schema_failures

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
DAY = dt.date(2026, 11, 2)
TS = dt.datetime(2026, 11, 2, 12, tzinfo=dt.UTC)
A, B, C, MINER = ("0x" + c * 40 for c in "abcd")
WEI = pl.Decimal(38, 0)


def txs(rows: list[dict]) -> pl.DataFrame:
    base = {
        "chain_id": 1, "date": DAY, "block_number": 10, "block_timestamp": TS,
        "transaction_index": 0, "to_address": None, "contract_address": None, "value": 0,
        "gas_price": None, "effective_gas_price": 10, "gas_used": 21_000,
        "blob_gas_used": None, "blob_gas_price": None, "l1_fee": None, "status": 1,
    }  # fmt: skip
    stand_in = [{**base, "transaction_hash": "0x00", "from_address": A, "to_address": B}]
    frame = pl.DataFrame([{**base, **r} for r in rows] or stand_in, infer_schema_length=None)
    if not rows:
        frame = frame.clear()
    return frame.with_columns(
        pl.col(c).cast(WEI)
        for c in ("value", "gas_price", "effective_gas_price", "blob_gas_price", "l1_fee")
    ).with_columns(
        pl.col("transaction_index").cast(pl.Int32),
        pl.col("status").cast(pl.Int32),
        pl.col("block_timestamp").dt.cast_time_unit("us"),
    )


def blocks(number: int = 10, base_fee: int | None = 4, uncles: int = 0, miner: str = MINER):
    return pl.DataFrame(
        {
            "chain_id": [1],
            "date": [DAY],
            "block_number": [number],
            "timestamp": [TS],
            "miner": [miner],
            "base_fee_per_gas": pl.Series([base_fee], dtype=WEI),
            "uncle_count": pl.Series([uncles], dtype=pl.Int32),
            "withdrawals": pl.Series(
                [None],
                dtype=pl.List(
                    pl.Struct(
                        {
                            "index": pl.Int64,
                            "validator_index": pl.Int64,
                            "address": pl.String,
                            "amount_gwei": pl.Int64,
                        }
                    )
                ),
            ),
        }
    ).with_columns(pl.col("timestamp").dt.cast_time_unit("us"))


def sums(df: pl.DataFrame) -> dict[tuple[str, str | None, str | None], int]:
    assert schema_failures(NativeBalanceMovementsModel, df) is None
    return {
        (r["kind"], r["from_address"], r["to_address"]): int(r["amount"])
        for r in df.group_by("kind", "from_address", "to_address")
        .agg(pl.col("amount").sum())
        .iter_rows(named=True)
    }


def test_value_fee_and_priority_fee_with_a_reverted_transaction() -> None:
    df = native_balance_movements_frame(
        txs(
            [
                {"transaction_hash": "0x01", "from_address": A, "to_address": B, "value": 7},
                {
                    "transaction_hash": "0x02",
                    "transaction_index": 1,
                    "from_address": A,
                    "to_address": C,
                    "value": 5,
                    "status": 0,
                    "gas_used": 30_000,
                },
            ]
        ),
        blocks(),
        None,
    )
    assert sums(df) == {
        ("transaction_value", A, B): 7,  # the reverted one's 5 did not move
        ("fee", A, None): 21_000 * 10 + 30_000 * 10,
        ("priority_fee", None, MINER): 21_000 * 6 + 30_000 * 6,
    }


def test_op_stack_fees_go_to_the_vaults() -> None:
    df = native_balance_movements_frame(
        txs([{"transaction_hash": "0x01", "from_address": A, "to_address": B, "l1_fee": 999}]),
        blocks(),
        None,
        fee_model="op-stack",
    )
    assert sums(df) == {
        ("fee", A, None): 21_000 * 10 + 999,
        ("priority_fee", None, MINER): 21_000 * 6,
        ("base_fee", None, OP_BASE_FEE_VAULT): 21_000 * 4,
        ("l1_fee", None, OP_L1_FEE_VAULT): 999,
    }


def test_burn_all_and_arbitrum_credit_no_fee_recipient() -> None:
    for model in ("burn-all", "arbitrum"):
        df = native_balance_movements_frame(
            txs([{"transaction_hash": "0x01", "from_address": A, "to_address": B}]),
            blocks(),
            None,
            fee_model=model,
        )
        assert sums(df) == {("fee", A, None): 21_000 * 10}


def test_pre_merge_schedule_pays_the_miner_with_the_nephew_bonus() -> None:
    df = native_balance_movements_frame(
        txs([]), blocks(4_000_000, None, uncles=2), None, block_rewards="ethereum"
    )
    assert sums(df) == {("block_reward", None, MINER): 5 * 10**18 + 2 * 5 * 10**18 // 32}
    df = native_balance_movements_frame(
        txs([]), blocks(15_537_394, 7, uncles=0), None, block_rewards="ethereum"
    )
    assert df.height == 0  # the Merge: no issuance to the fee recipient


UNCLE_A = "0x" + "aa" * 20
UNCLE_B = "0x" + "bb" * 20


def _with_uncles(frame: pl.DataFrame, headers: list[tuple[int, str]] | None) -> pl.DataFrame:
    """`frame` (one block) with raw/blocks' `uncles`: (number, miner) of each header, or None
    for uncles that were not read."""
    rows = None if headers is None else [
        {"index": i, "hash": "0x" + f"{i:064x}", "number": u, "miner": m}
        for i, (u, m) in enumerate(headers)
    ]  # fmt: skip
    return frame.with_columns(pl.Series("uncles", [rows], dtype=UNCLES))


@pytest.mark.parametrize(
    ("number", "reward"),
    [(4_369_999, 5 * 10**18), (4_370_006, 3 * 10**18), (7_280_000, 2 * 10**18)],
)
def test_pre_merge_schedule_pays_each_uncle_miner_from_its_header(number: int, reward: int) -> None:
    """Geth's accumulateRewards: (u + 8 - n) * R / 8 to each uncle's miner, R/32 per uncle to
    the block's miner; an uncle 1 block back earns 7/8, one 6 blocks back 2/8."""
    blk = _with_uncles(
        blocks(number, None, uncles=2), [(number - 1, UNCLE_A), (number - 6, UNCLE_B)]
    )
    df = native_balance_movements_frame(txs([]), blk, None, block_rewards="ethereum")
    assert sums(df) == {
        ("block_reward", None, MINER): reward + 2 * (reward // 32),
        ("uncle_reward", None, UNCLE_A): 7 * reward // 8,
        ("uncle_reward", None, UNCLE_B): 2 * reward // 8,
    }
    uncle_rows = df.filter(pl.col("kind") == "uncle_reward")
    assert uncle_rows["to_address"].to_list() == [UNCLE_A, UNCLE_B]  # in the block's order
    assert uncle_rows["transaction_hash"].null_count() == 2
    assert blocks_without_uncle_headers(blk, None, "ethereum") == 0


def test_uncles_not_read_pay_no_uncle_miner_and_are_counted() -> None:
    blk = _with_uncles(blocks(5_000_000, None, uncles=1), None)
    df = native_balance_movements_frame(txs([]), blk, None, block_rewards="ethereum")
    assert sums(df) == {("block_reward", None, MINER): 3 * 10**18 + 3 * 10**18 // 32}
    assert blocks_without_uncle_headers(blk, None, "ethereum") == 1
    assert blocks_without_uncle_headers(blk, None, "none") == 0
    # a block without uncles has an empty list: nothing is missing
    assert blocks_without_uncle_headers(_with_uncles(blocks(5_000_000), []), None, "ethereum") == 0


def test_trace_block_reward_frames_win_over_the_uncle_headers() -> None:
    """A node serving trace_block gives the block and uncle reward frames: they are the rows,
    and neither the schedule nor the uncle headers add any (no double count). The frames
    below are built for the test in trace_block's shape (no recorded uncle reward frame)."""
    number, block_hash = 5_000_000, "0x" + "cd" * 32
    answer = [
        {"action": {"author": MINER, "rewardType": "block", "value": hex(3 * 10**18 + 3 * 10**18 // 32)},
         "blockHash": block_hash, "blockNumber": number, "result": None, "subtraces": 0,
         "traceAddress": [], "type": "reward"},
        {"action": {"author": UNCLE_A, "rewardType": "uncle", "value": hex(7 * 3 * 10**18 // 8)},
         "blockHash": block_hash, "blockNumber": number, "result": None, "subtraces": 0,
         "traceAddress": [], "type": "reward"},
    ]  # fmt: skip
    block = {"number": hex(number), "hash": block_hash, "timestamp": "0x5a", "transactions": []}
    traces = traces_from_rpc(
        rpc_block_frame([block]),
        frame_rows(trace_block_rows(0, [], answer, "test")),
        1,
        TRACE_BLOCK,
    )
    blk = _with_uncles(blocks(number, None, uncles=1), [(number - 1, UNCLE_A)])
    df = native_balance_movements_frame(txs([]), blk, traces, block_rewards="ethereum")
    assert sums(df) == {
        ("block_reward", None, MINER): 3 * 10**18 + 3 * 10**18 // 32,
        ("uncle_reward", None, UNCLE_A): 7 * 3 * 10**18 // 8,
    }
    assert df.height == 2
    assert blocks_without_uncle_headers(_with_uncles(blk, None), traces, "ethereum") == 0


def test_withdrawals_of_a_cancun_block_are_credited_in_wei() -> None:
    raw = json.loads((FIXTURES / "mainnet-rpc/helios/block_21925176_cancun/block.json").read_text())
    frame = rpc_block_frame([{**raw, "transactions": []}])
    blk = blocks_from_rpc(frame, 1)
    df = native_balance_movements_frame(txs([]), blk, None)
    assert df.height == len(raw["withdrawals"]) == 16
    assert df["kind"].unique().to_list() == ["withdrawal"]
    assert df["to_address"].to_list() == [w["address"] for w in raw["withdrawals"]]
    assert [int(a) for a in df["amount"]] == [
        int(w["amount"], 16) * 10**9 for w in raw["withdrawals"]
    ]
    assert df["from_address"].null_count() == df.height


def _recorded(case: str) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """raw/traces of one of ethereum-etl's recorded trace_block answers, with raw frames for
    its block and transactions (fees left out: the recording has no receipts)."""
    (path,) = (FIXTURES / "traces/ethereum-etl" / case).glob("web3_response.trace_block_*.json")
    answer = json.loads(path.read_text())["result"]
    number = answer[0]["blockNumber"]
    positions = {t["transactionPosition"]: t for t in answer if t.get("transactionHash")}
    hashes = [positions[i]["transactionHash"] for i in range(len(positions))]
    block = {"number": hex(number), "hash": answer[0]["blockHash"], "timestamp": "0x55ba4224",
             "transactions": [{"hash": h} for h in hashes]}  # fmt: skip
    traces = traces_from_rpc(
        rpc_block_frame([block]),
        frame_rows(trace_block_rows(0, hashes, answer, case)),
        1,
        TRACE_BLOCK,
    )
    roots = traces.filter(pl.col("depth") == 0, pl.col("transaction_hash").is_not_null())
    tx = txs(
        [
            {
                "block_number": number,
                "transaction_hash": r["transaction_hash"],
                "transaction_index": r["transaction_index"],
                "from_address": r["from_address"],
                "to_address": r["to_address"],
                "value": int(r["value"]),
                "gas_used": 0,
                "status": None,
            }
            for r in roots.iter_rows(named=True)
        ]
    )
    reward = traces.filter(pl.col("trace_type") == "reward")["to_address"][0]
    return tx, blocks(number, None, miner=reward), traces


@pytest.mark.parametrize("with_traces", [True, False])
def test_recorded_selfdestruct_and_block_reward(with_traces: bool) -> None:
    tx, blk, traces = _recorded("block_with_suicide")  # block 1,011,973
    df = native_balance_movements_frame(
        tx, blk, traces if with_traces else None, block_rewards="ethereum"
    )
    moved = sums(df)
    selfdestruct = (
        "selfdestruct",
        "0x474faa5018639791952fae334e2911700ac7fe9b",
        "0x83973747eec131bf9a08ac64fb1a518e891bdf4b",
    )
    # the node's reward frame, or the schedule: 5 ETH either way, never both
    assert moved[("block_reward", None, "0x738db714c08b8a32a29e0e68af00215079aa9c5c")] == 5 * 10**18
    if with_traces:
        assert moved[selfdestruct] == 50_000_000_000_000_000
        row = df.filter(pl.col("kind") == "selfdestruct").row(0, named=True)
        assert row["trace_address"] == "0"
        assert row["transaction_hash"] == tx["transaction_hash"][0]
    else:
        assert selfdestruct not in moved


def test_recorded_callcode_and_failed_frames_move_nothing() -> None:
    tx, blk, traces = _recorded("block_with_subtraces")  # block 1,000,000: a CALLCODE of 100 ETH
    moved = sums(native_balance_movements_frame(tx, blk, traces))
    assert not [k for k in moved if k[0].startswith("internal")]
    tx, blk, traces = _recorded("block_with_error")  # block 1,000,895: an out-of-gas root
    df = native_balance_movements_frame(tx, blk, traces)
    failed = traces.filter(pl.col("error").is_not_null(), pl.col("depth") == 0)
    assert failed.height == 1
    # pre-Byzantium (no receipt status): the failed root frame says the value did not move
    assert failed["transaction_hash"][0] not in df["transaction_hash"].to_list()
    assert df.filter(pl.col("kind") == "transaction_value").height == tx.height - 1


def _l2_receipt(name: str, fee_model: str) -> tuple[dict, pl.DataFrame]:
    """A recorded L2 receipt through the extraction (raw/transactions) and the movements; the
    recording has no block or transaction object, so a stand-in carries its hash, sender and
    recipient (value 0)."""
    from chainlake.raw.transactions import transactions_frame

    rc = json.loads((FIXTURES / "l2-receipts" / name).read_text())
    tx = {"hash": rc["transactionHash"], "nonce": "0x0", "transactionIndex": rc["transactionIndex"],
          "from": rc["from"], "to": rc["to"], "value": "0x0", "gas": rc["gasUsed"],
          "gasPrice": rc["effectiveGasPrice"], "input": "0x", "type": rc["type"]}  # fmt: skip
    block = {"number": rc["blockNumber"], "hash": rc["blockHash"], "parentHash": "0x" + "00" * 32,
             "timestamp": "0x66000000", "miner": "0x4200000000000000000000000000000000000011",
             "gasLimit": "0x1c9c380", "gasUsed": rc["cumulativeGasUsed"], "difficulty": "0x0",
             "extraData": "0x", "logsBloom": "0x", "sha3Uncles": "0x" + "00" * 32,
             "transactionsRoot": "0x" + "00" * 32, "stateRoot": "0x" + "00" * 32,
             "receiptsRoot": "0x" + "00" * 32, "baseFeePerGas": "0x0", "uncles": [],
             "transactions": [tx]}  # fmt: skip
    txs = transactions_frame([block], [[rc]], 10)
    blk = blocks_from_rpc(rpc_block_frame([block]), 10)
    return rc, native_balance_movements_frame(txs, blk, None, fee_model=fee_model)


def test_recorded_op_mainnet_receipt_sender_pays_the_l1_fee_exactly() -> None:
    rc, df = _l2_receipt("op_mainnet_receipt_121258977.json", "op-stack")
    gas, price, l1 = int(rc["gasUsed"], 16), int(rc["effectiveGasPrice"], 16), int(rc["l1Fee"], 16)
    moved = sums(df)
    assert moved[("fee", rc["from"], None)] == gas * price + l1 == 0x85B9 * 0x3AC9E84 + 0x105D4B2024
    assert moved[("l1_fee", None, OP_L1_FEE_VAULT)] == l1
    # with a base fee of 0 in the stand-in block, all of the price is the sequencer's tip
    assert (
        moved[("priority_fee", None, "0x4200000000000000000000000000000000000011")] == gas * price
    )


def test_recorded_arbitrum_receipt_fee_is_gas_used_times_price() -> None:
    rc, df = _l2_receipt("arbitrum_one_receipt_220760773.json", "arbitrum")
    # gasUsed already holds the L1 part (gasUsedForL1); nothing else is charged or credited
    assert int(rc["gasUsedForL1"], 16) < int(rc["gasUsed"], 16)
    assert sums(df) == {
        ("fee", rc["from"], None): int(rc["gasUsed"], 16) * int(rc["effectiveGasPrice"], 16)
    }


def test_op_stack_deposit_mints_to_its_sender_even_when_it_reverts() -> None:
    from chainlake.raw.transactions import transactions_frame

    def deposit(i: int, status: str) -> tuple[dict, dict]:
        tx = {"hash": "0x" + f"{i:064x}", "nonce": "0x0", "transactionIndex": hex(i), "from": A,
              "to": B, "value": hex(3 * 10**17), "gas": hex(100_000), "gasPrice": "0x0",
              "input": "0x", "type": "0x7e", "mint": hex(10**18)}  # fmt: skip
        rc = {"transactionHash": tx["hash"], "transactionIndex": hex(i), "from": A, "to": B,
              "gasUsed": hex(50_000), "cumulativeGasUsed": hex(50_000 * (i + 1)),
              "effectiveGasPrice": "0x0", "status": status, "logs": [], "type": "0x7e"}  # fmt: skip
        return tx, rc

    (t0, r0), (t1, r1) = deposit(0, "0x1"), deposit(1, "0x0")
    block = {"number": "0xa", "hash": "0x" + "ab" * 32, "parentHash": "0x" + "00" * 32,
             "timestamp": "0x66000000", "miner": MINER, "gasLimit": "0x1c9c380",
             "gasUsed": "0x186a0", "difficulty": "0x0", "extraData": "0x", "logsBloom": "0x",
             "sha3Uncles": "0x" + "00" * 32, "transactionsRoot": "0x" + "00" * 32,
             "stateRoot": "0x" + "00" * 32, "receiptsRoot": "0x" + "00" * 32,
             "baseFeePerGas": "0x7", "uncles": [], "transactions": [t0, t1]}  # fmt: skip
    txs = transactions_frame([block], [[r0, r1]], 10)
    assert [int(m) for m in txs["mint"]] == [10**18, 10**18]
    df = native_balance_movements_frame(
        txs, blocks_from_rpc(rpc_block_frame([block]), 10), None, fee_model="op-stack"
    )
    assert sums(df) == {
        ("deposit_mint", None, A): 2 * 10**18,  # the reverted deposit still minted
        ("transaction_value", A, B): 3 * 10**17,  # only the successful one moved its value
    }
