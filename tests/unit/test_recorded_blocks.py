"""Whole recorded blocks replayed through the extraction and the native accounting
(tests/fixtures/recorded-blocks: sources, licences and what was checked are in its README).

- Ethereum mainnet block 13,998,626 (coinbase/chainstorage): the block, its 7 receipts and the
  callTracer trace of each transaction, as the node answered them. raw/blocks,
  raw/transactions, raw/logs and raw/traces are checked field by field against the recording;
  core/native_balance_movements against movements derived from the recording here, address by
  address, and against the conservation of ether (nothing is created but the 2 ETH block
  reward, nothing destroyed but the burnt base fee).
- Ethereum mainnet block 4,370,006 (coinbase/chainstorage): 64 transactions, their receipts
  and callTracer traces, and the block's one uncle header (4,370,005), which chainstorage
  recorded beside the block; the uncle header is proven genuine here (keccak/RLP up to the
  block hash). It is served as eth_getUncleByBlockHashAndIndex, so the extraction reads it;
  the uncle's miner gets (u + 8 - n) x 3 ETH / 8, the block's miner 3 ETH + 3/32 ETH and all
  the fees (pre-London: no base fee), and ether is conserved but for that issuance.
- OP Mainnet block 154,497,277 (subsquid/squid-sdk): the block and its 42 receipts, one a
  deposit whose `nonce` the recording leaves out. Every sender's fee is gas_used ×
  effective_gas_price + l1Fee exactly, the deposit pays nothing, and the fees go to the
  SequencerFeeVault, BaseFeeVault and L1FeeVault (nothing is burned). Its receipts carry no
  operator fee parameters, so no operator fee; receipts built on them with non-zero ones
  (said so in that test) show op-geth's Isthmus and Jovian operator fee formulas.

The recorded answers are served by `Recorded` (tests/unit/test_mainnet_replay.py) to
`stage_range`, the extraction raw_chain_tables runs; the movements come from
`native_balance_movements_frame`, with the preset's fee model, on the columns the asset reads.
"""

from __future__ import annotations

import base64
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import rlp
from eth_utils import keccak

from assets.core.native_balance_movements import (
    BLOCK_COLUMNS,
    TX_COLUMNS,
    NativeBalanceMovementsModel,
    blocks_without_uncle_headers,
    native_balance_movements_frame,
)
from chainlake.extract import stage_range
from chainlake.presets import OP_BASE_FEE_VAULT, OP_L1_FEE_VAULT, OP_OPERATOR_FEE_VAULT, PRESETS
from chainlake.raw.traces import DEBUG_TRACE, TracesModel
from chainlake.rpc import BadAnswer
from chainlake.schema import schema_failures
from tests.unit.test_mainnet_replay import (
    Recorded,
    assert_blocks,
    assert_logs,
    assert_transactions,
    q,
    ts,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "recorded-blocks"
ETHER = 10**18


def n(v: str) -> int:
    """A quantity the recording always has."""
    return int(v, 16)


def _b64(field: str) -> Any:
    return json.loads(base64.b64decode(field))


def _chainstorage(number: int) -> dict[str, Any]:
    """chainstorage's recording of mainnet block `number`: the block (`header`), its
    `receipts`, its transactions' callTracer trees (`traces`) and its `uncles` headers."""
    recording = json.loads((FIXTURES / f"chainstorage/raw_block_{number}.json").read_text())
    eth = recording["ethereum"]
    block = _b64(eth["header"])
    assert recording["metadata"]["hash"] == block["hash"]
    assert int(recording["metadata"]["height"]) == q(block["number"]) == number
    return {
        "block": block,
        "receipts": [_b64(r) for r in eth["transactionReceipts"]],
        "traces": [_b64(t) for t in eth["transactionTraces"]],
        "uncles": [_b64(u) for u in eth.get("uncles", [])],
    }


def _mainnet() -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """Block 13,998,626, its receipts and its transactions' callTracer trees."""
    r = _chainstorage(13_998_626)
    return r["block"], r["receipts"], r["traces"]


def _op() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    d = FIXTURES / "squid-sdk/optimism-154497277"
    return json.loads((d / "block.json").read_text()), json.loads((d / "receipts.json").read_text())


class Traced(Recorded):
    """A node that also answers debug_traceBlockByNumber + callTracer for its blocks, each
    transaction's tree in the envelope Geth gave then (`{"result": tree}`)."""

    def __init__(self) -> None:
        super().__init__()
        self.traces: dict[int, list[dict[str, Any]]] = {}
        self.uncles: dict[str, list[dict[str, Any]]] = {}  # by block hash

    def answer(self, method: str, params: list[Any]) -> dict[str, Any]:
        if method == "debug_traceBlockByNumber" and params[1] == {"tracer": "callTracer"}:
            self.calls.append(method)
            return {"result": [{"result": t} for t in self.traces[int(params[0], 16)]]}
        if method == "eth_getUncleByBlockHashAndIndex":
            self.calls.append(method)
            uncles = self.uncles.get(params[0].lower(), [])
            i = int(params[1], 16)
            return {"result": uncles[i] if i < len(uncles) else None}
        return super().answer(method, params)


def _staged(
    provider: Recorded,
    chain_id: int,
    number: int,
    tmp: Path,
    trace_method: str = "none",
    uncles: bool = False,
) -> dict[str, pl.DataFrame]:
    s = stage_range(
        provider.client(), chain_id, number, number, tmp, trace_method=trace_method, uncles=uncles
    )
    return {t: s.frame(t) for t in ("blocks", "transactions", "logs", "traces")}


def _assert_receipts_are_the_blocks(block: dict[str, Any], receipts: list[dict[str, Any]]) -> None:
    """The receipts are the block's, all of them, in order (what can be checked without a
    trie: the README says the roots were also rebuilt, outside the tests)."""
    txs = block["transactions"]
    assert len(receipts) == len(txs)
    assert [r["transactionHash"] for r in receipts] == [t["hash"] for t in txs]
    assert [q(r["transactionIndex"]) for r in receipts] == list(range(len(txs)))
    assert {r["blockHash"] for r in receipts} == {block["hash"]}
    assert {r["blockNumber"] for r in receipts} == {block["number"]}
    cumulative = [n(r["cumulativeGasUsed"]) for r in receipts]
    assert cumulative[-1] == n(block["gasUsed"])
    assert [n(r["gasUsed"]) for r in receipts] == [
        c - p for c, p in zip(cumulative, [0, *cumulative[:-1]], strict=True)
    ]
    base_fee = q(block.get("baseFeePerGas"))
    for t, r in zip(txs, receipts, strict=True):
        assert (r["from"], r["to"]) == (t["from"], t.get("to"))
        if base_fee is None:  # before London: no effectiveGasPrice, the price is gasPrice
            assert "effectiveGasPrice" not in r and t["type"] == "0x0"
            continue
        if t["type"] == "0x2":
            price = min(n(t["maxFeePerGas"]), base_fee + n(t["maxPriorityFeePerGas"]))
        else:
            price = n(t["gasPrice"])
        assert n(r["effectiveGasPrice"]) == price, t["hash"]


# -- the recorded call frames, walked here (not by chainlake) ------------------------------------


TRACE_TYPES = {"create": "create", "create2": "create", "selfdestruct": "suicide"}


def _frames(traces: list[dict[str, Any]], block: dict[str, Any]) -> list[dict[str, Any]]:
    """Every frame of the recorded trees, depth first in execution order, with the columns
    raw/traces should hold for it."""
    out: list[dict[str, Any]] = []

    def walk(frame: dict[str, Any], i: int, address: tuple[int, ...], failed: bool) -> None:
        kind = frame["type"].lower()
        failed = failed or "error" in frame
        data, output = frame.get("input"), frame.get("output")
        children = frame.get("calls", [])
        out.append(
            {
                "transaction_hash": block["transactions"][i]["hash"],
                "transaction_index": i,
                "trace_address": ",".join(map(str, address)),
                "depth": len(address),
                "subtraces": len(children),
                "trace_type": TRACE_TYPES.get(kind, "call"),
                "call_type": kind if kind != "selfdestruct" else None,
                "reward_type": None,
                "from_address": frame["from"],
                "to_address": frame.get("to"),
                "value": int(frame.get("value", "0x0"), 16),
                "input_selector": data[:10] if data and len(data) >= 10 else None,
                "input_length": None if data is None else (len(data) - 2) // 2,
                "output_length": None if output is None else (len(output) - 2) // 2,
                "gas": q(frame.get("gas")),
                "gas_used": q(frame.get("gasUsed")),
                "error": frame.get("error"),
                "reverted": failed,
            }
        )
        for c, child in enumerate(children):
            walk(child, i, (*address, c), failed)

    for i, tree in enumerate(traces):
        walk(tree, i, (), False)
    return out


def _native(row: dict[str, Any], column: str) -> Any:
    v = row[column]
    return int(v) if column == "value" else v


def test_mainnet_13998626_recording_is_one_complete_block() -> None:
    block, receipts, traces = _mainnet()
    _assert_receipts_are_the_blocks(block, receipts)
    assert len(traces) == len(block["transactions"]) == 7
    for t, root in zip(block["transactions"], traces, strict=True):
        # each trace is its transaction's: the root frame is the transaction itself
        assert (root["type"], root["from"], root["to"]) == ("CALL", t["from"], t["to"])
        assert (root["value"], root["input"]) == (t["value"], t["input"])
    assert q(block["baseFeePerGas"]) == 0x2B28647F0E and block["uncles"] == []
    assert Counter(t["type"] for t in block["transactions"]) == {"0x0": 1, "0x2": 6}


def test_mainnet_13998626_raw_tables_field_by_field(tmp_path: Path) -> None:
    block, receipts, traces = _mainnet()
    provider = Traced()
    provider.add_block(block).add_receipts(receipts, per_block=False)
    provider.traces[n(block["number"])] = traces
    frames = _staged(provider, 1, 13_998_626, tmp_path, trace_method=DEBUG_TRACE)
    # recorded one receipt per transaction: served so, through the per-transaction path
    assert provider.calls.count("eth_getTransactionReceipt") == 7
    assert provider.calls.count("debug_traceBlockByNumber") == 1

    by_hash = {r["transactionHash"]: r for r in receipts}
    assert_blocks(frames, [block])
    assert_transactions(frames, [block], by_hash)
    assert_logs(frames, [block], by_hash)
    assert frames["logs"].height == 15

    df = frames["traces"]
    assert schema_failures(TracesModel, df) is None
    expected = _frames(traces, block)
    assert df.height == len(expected) == 35
    for i, (row, want) in enumerate(zip(df.iter_rows(named=True), expected, strict=True)):
        for column, value in want.items():
            assert _native(row, column) == value, (i, column, row, want)
        assert row["trace_index"] == i
        assert row["block_number"] == 13_998_626
        assert row["block_hash"] == block["hash"]
        assert row["block_timestamp"] == ts(block["timestamp"])
        assert row["date"] == ts(block["timestamp"]).date()
        assert row["trace_source"] == DEBUG_TRACE
    # what the recording holds, so the checks above covered it
    assert Counter(df["call_type"]) == {"call": 23, "staticcall": 7, "delegatecall": 5}
    assert df["depth"].max() == 6
    assert df.filter(pl.col("depth") == 0).height == 7
    assert df["error"].null_count() == df.height and not df["reverted"].any()
    delegate = df.filter(pl.col("call_type").is_in(["delegatecall", "staticcall"]))
    assert delegate["value"].cast(pl.Int64).sum() == 0  # the recording gives them no value


# -- native movements ---------------------------------------------------------------------------


def _movements(txs: pl.DataFrame, blocks: pl.DataFrame, traces, preset: str) -> pl.DataFrame:
    """The movements as the asset computes them: its columns of the raw tables, the preset's
    fee model and block rewards."""
    p = PRESETS[preset]
    df = native_balance_movements_frame(
        txs.select(TX_COLUMNS),
        blocks.select(BLOCK_COLUMNS),
        traces,
        fee_model=p.fee_model,
        block_rewards=p.block_rewards,
    )
    assert schema_failures(NativeBalanceMovementsModel, df) is None
    return df


def _rows(df: pl.DataFrame) -> Counter:
    return Counter(
        (r["kind"], r["transaction_hash"], r["trace_address"], r["from_address"],
         r["to_address"], int(r["amount"]))
        for r in df.iter_rows(named=True)
    )  # fmt: skip


def _by_kind(df: pl.DataFrame) -> dict[str, int]:
    return {k: int(v) for k, v in df.group_by("kind").agg(pl.col("amount").sum()).iter_rows()}


def _net(rows: Counter) -> dict[str | None, int]:
    """Each address's balance change (None: issuance and burn)."""
    net: dict[str | None, int] = defaultdict(int)
    for (_, _, _, src, dst, amount), count in rows.items():
        net[src] -= amount * count
        net[dst] += amount * count
    return {a: v for a, v in net.items() if v}


def _mainnet_expected(
    block: dict[str, Any],
    receipts: list[dict[str, Any]],
    traces: list[dict[str, Any]],
    rewards: tuple[tuple[str, str, int], ...] = (),
) -> Counter:
    """The block's movements derived from the recording alone (Ethereum's rules): `rewards`
    are its (kind, to, amount) issuance rows."""
    miner, base_fee = block["miner"], q(block.get("baseFeePerGas")) or 0
    rows: Counter = Counter()
    for t, r in zip(block["transactions"], receipts, strict=True):
        # before London the receipt has no effectiveGasPrice: the price is the gasPrice
        gas, price = n(r["gasUsed"]), n(r.get("effectiveGasPrice") or t["gasPrice"])
        if r["status"] == "0x1" and n(t["value"]):
            rows[("transaction_value", t["hash"], None, t["from"], t["to"], n(t["value"]))] += 1
        rows[("fee", t["hash"], None, t["from"], None, gas * price)] += 1
        rows[("priority_fee", t["hash"], None, None, miner, gas * (price - base_fee))] += 1
    for f in _frames(traces, block):
        if f["depth"] and f["call_type"] == "call" and f["value"] and not f["reverted"]:
            rows[("internal_call", f["transaction_hash"], f["trace_address"],
                  f["from_address"], f["to_address"], f["value"])] += 1  # fmt: skip
    for kind, to, amount in rewards:
        rows[(kind, None, None, None, to, amount)] += 1
    return rows


def test_mainnet_13998626_native_movements_match_the_recording(tmp_path: Path) -> None:
    block, receipts, traces = _mainnet()
    provider = Traced()
    provider.add_block(block).add_receipts(receipts, per_block=False)
    provider.traces[n(block["number"])] = traces
    frames = _staged(provider, 1, 13_998_626, tmp_path, trace_method=DEBUG_TRACE)
    df = _movements(frames["transactions"], frames["blocks"], frames["traces"], "ethereum")

    # Constantinople on, no uncles: 2 ETH to the miner
    want = _mainnet_expected(
        block, receipts, traces, (("block_reward", block["miner"], 2 * ETHER),)
    )
    got = _rows(df)
    assert got == want
    # and so, for every address, the same balance change
    assert _net(got) == _net(want)
    miner = "0x52bc44d5378309ee2abf1539bf71de1b7d7be3b5"
    assert block["miner"] == miner

    base_fee, gas_used = 0x2B28647F0E, 0x893A7
    by_kind = _by_kind(df)
    assert by_kind == {
        "transaction_value": 502_800_000_000_000_000 + 106_569_960_000_000_000 + 1_030 * 10**15,
        "internal_call": 2 * 2_838_590_356_527_993_236
        + 24_837_665_619_619_940
        + 2_813_752_690_908_373_296
        + 1_030 * 10**15,
        "fee": 108_985_171_685_612_978,
        "priority_fee": 4_796_012_361_626_000,
        "block_reward": 2 * ETHER,
    }
    assert Counter(df["kind"]) == {"transaction_value": 3, "internal_call": 5, "fee": 7,
                                   "priority_fee": 7, "block_reward": 1}  # fmt: skip
    # the burn is the base fee of all the block's gas, exactly
    assert (
        by_kind["fee"] - by_kind["priority_fee"] == base_fee * gas_used == 104_189_159_323_986_978
    )
    # ether is conserved: summed over every address, the block created its reward and
    # destroyed its burnt base fee, nothing else
    net = _net(got)
    assert sum(v for a, v in net.items() if a is not None) == 2 * ETHER - base_fee * gas_used
    assert net[None] == -(2 * ETHER - base_fee * gas_used)
    # the miner's change: reward plus tips
    assert net[miner] == 2 * ETHER + by_kind["priority_fee"]
    # the sender of the WETH-to-ETH sale (transaction 2) was paid by a contract, not by a
    # transaction: only the traces show it
    seller = "0xc409134827440024347e27b2826dfd3d42a2967b"
    assert net[seller] == 2_813_752_690_908_373_296 - 182_728 * n(receipts[2]["effectiveGasPrice"])

    without = _movements(frames["transactions"], frames["blocks"], None, "ethereum")
    missing = got - _rows(without)
    assert {k[0] for k in missing} == {"internal_call"} and sum(missing.values()) == 5
    assert _rows(without) - got == Counter()


# -- mainnet 4,370,006: an uncle, paid from its header ------------------------------------------

N_4370006 = 4_370_006
HEADER_FIELDS = (
    "parentHash", "sha3Uncles", "miner", "stateRoot", "transactionsRoot", "receiptsRoot",
    "logsBloom", "difficulty", "number", "gasLimit", "gasUsed", "timestamp", "extraData",
    "mixHash", "nonce",
)  # fmt: skip
HEADER_QUANTITIES = {"difficulty", "number", "gasLimit", "gasUsed", "timestamp"}


def _header_rlp(header: dict[str, Any]) -> list[Any]:
    """A pre-London proof-of-work header as the list its hash is the keccak of (RLP)."""
    return [
        n(header[f]) if f in HEADER_QUANTITIES else bytes.fromhex(header[f][2:])
        for f in HEADER_FIELDS
    ]


def _uncle_block() -> dict[str, Any]:
    r = _chainstorage(N_4370006)
    assert len(r["uncles"]) == 1
    return r


def _uncle_provider(r: dict[str, Any], with_uncles: bool = True) -> Traced:
    provider = Traced()
    provider.add_block(r["block"]).add_receipts(r["receipts"], per_block=False)
    provider.traces[N_4370006] = r["traces"]
    if with_uncles:
        provider.uncles[r["block"]["hash"].lower()] = r["uncles"]
    return provider


def test_mainnet_4370006_recording_is_one_complete_block_with_its_uncle_header() -> None:
    r = _uncle_block()
    block, receipts, traces, (uncle,) = r["block"], r["receipts"], r["traces"], r["uncles"]
    _assert_receipts_are_the_blocks(block, receipts)
    assert len(traces) == len(block["transactions"]) == 64
    for t, root in zip(block["transactions"], traces, strict=True):
        assert (root["type"], root["from"], root["to"]) == ("CALL", t["from"], t["to"])
        assert (root["value"], root["input"]) == (t["value"], t["input"])
    # the uncle header is genuine: its hash is keccak(RLP(header)), the block lists that
    # hash, the block's sha3Uncles is keccak(RLP([header])) and the block's own hash is
    # keccak(RLP(block header)), so its number and miner are committed to by the block
    assert "0x" + keccak(rlp.encode(_header_rlp(uncle))).hex() == uncle["hash"]
    assert block["uncles"] == [uncle["hash"]]
    assert "0x" + keccak(rlp.encode([_header_rlp(uncle)])).hex() == block["sha3Uncles"]
    assert "0x" + keccak(rlp.encode(_header_rlp(block))).hex() == block["hash"]
    assert (q(uncle["number"]), uncle["miner"]) == (
        4_370_005,
        "0x829bd824b016326a401d083b33d092293333a830",
    )
    # after Byzantium (4,370,000): receipts have a status; before London: no base fee
    assert "baseFeePerGas" not in block and {rc["status"] for rc in receipts} == {"0x1"}


def test_mainnet_4370006_raw_tables_field_by_field(tmp_path: Path) -> None:
    r = _uncle_block()
    block, receipts = r["block"], r["receipts"]
    provider = _uncle_provider(r)
    frames = _staged(provider, 1, N_4370006, tmp_path, trace_method=DEBUG_TRACE, uncles=True)
    # the real extraction asked for the uncle header, once, by the block's hash
    assert provider.calls.count("eth_getUncleByBlockHashAndIndex") == 1
    assert provider.calls.count("eth_getTransactionReceipt") == 64
    by_hash = {rc["transactionHash"]: rc for rc in receipts}
    assert_blocks(frames, [block], uncles={N_4370006: r["uncles"]})
    assert frames["blocks"]["uncles"].to_list() == [
        [{"index": 0, "hash": r["uncles"][0]["hash"], "number": 4_370_005,
          "miner": "0x829bd824b016326a401d083b33d092293333a830"}]
    ]  # fmt: skip
    assert_transactions(frames, [block], by_hash)
    assert_logs(frames, [block], by_hash)
    df = frames["traces"]
    expected = _frames(r["traces"], block)
    assert df.height == len(expected) == 448
    for i, (row, want) in enumerate(zip(df.iter_rows(named=True), expected, strict=True)):
        for column, value in want.items():
            assert _native(row, column) == value, (i, column, row, want)


def test_mainnet_4370006_uncle_miner_is_paid_from_the_uncle_header(tmp_path: Path) -> None:
    r = _uncle_block()
    block, receipts, traces, (uncle,) = r["block"], r["receipts"], r["traces"], r["uncles"]
    frames = _staged(
        _uncle_provider(r), 1, N_4370006, tmp_path, trace_method=DEBUG_TRACE, uncles=True
    )
    df = _movements(frames["transactions"], frames["blocks"], frames["traces"], "ethereum")

    miner, u = block["miner"], q(uncle["number"])
    # Byzantium: 3 ETH, plus 3/32 ETH for the one uncle included; the uncle's miner gets
    # (u + 8 - n) * 3 ETH / 8 = 7/8 * 3 ETH (u = n - 1)
    block_reward = 3 * ETHER + 3 * ETHER // 32
    uncle_reward = (u + 8 - N_4370006) * 3 * ETHER // 8
    assert (block_reward, uncle_reward) == (3_093_750_000_000_000_000, 2_625_000_000_000_000_000)
    want = _mainnet_expected(
        block,
        receipts,
        traces,
        (("block_reward", miner, block_reward), ("uncle_reward", uncle["miner"], uncle_reward)),
    )
    got = _rows(df)
    assert got == want
    assert _net(got) == _net(want)

    by_kind = _by_kind(df)
    txs = zip(block["transactions"], receipts, strict=True)
    fees = sum(n(rc["gasUsed"]) * n(t["gasPrice"]) for t, rc in txs)
    assert by_kind == {
        "transaction_value": 662_424_050_000_000_000,
        "internal_call": 4_600_000_000_000_000_000 + 2 * 270_403_532_000_000_000,
        "fee": fees,
        "priority_fee": fees,  # pre-London: no base fee, the miner gets all of gasUsed x gasPrice
        "block_reward": block_reward,
        "uncle_reward": uncle_reward,
    }
    assert fees == 139_780_887_946_688_290
    assert Counter(df["kind"]) == {"transaction_value": 7, "internal_call": 3, "fee": 64,
                                   "priority_fee": 64, "block_reward": 1, "uncle_reward": 1}  # fmt: skip
    # ether is conserved but for the issuance (nothing burned before London)
    net = _net(got)
    issued = block_reward + uncle_reward
    assert sum(v for a, v in net.items() if a is not None) == issued == 5_718_750_000_000_000_000
    assert net[None] == -issued
    # the uncle was mined by the block's own miner (the same pool), which sent nothing in
    # the block: its change is both rewards and every fee
    assert uncle["miner"] == miner
    assert miner not in {t["from"] for t in block["transactions"]}
    assert net[miner] == issued + fees


def test_mainnet_4370006_without_uncle_headers_pays_only_the_miner(tmp_path: Path) -> None:
    """Uncles not read (a chain without `block_rewards: ethereum`, or an older table): the
    block's uncle is null in raw/blocks, its miner gets no uncle_reward, and the asset's
    metadata counts the block."""
    r = _uncle_block()
    provider = _uncle_provider(r, with_uncles=False)
    frames = _staged(provider, 1, N_4370006, tmp_path, trace_method=DEBUG_TRACE)
    assert "eth_getUncleByBlockHashAndIndex" not in provider.calls
    assert frames["blocks"]["uncles"].to_list() == [None]
    df = _movements(frames["transactions"], frames["blocks"], frames["traces"], "ethereum")
    assert "uncle_reward" not in set(df["kind"])
    assert blocks_without_uncle_headers(frames["blocks"], frames["traces"], "ethereum") == 1


def test_mainnet_4370006_an_uncle_answer_that_is_not_the_blocks_fails_the_read(
    tmp_path: Path,
) -> None:
    """A node answering another uncle (or none) for the block's hash and index: the read
    fails naming the block, nothing is staged with a wrong miner."""
    r = _uncle_block()
    provider = _uncle_provider(r)
    other = {**r["uncles"][0], "hash": "0x" + "11" * 32}
    provider.uncles[r["block"]["hash"].lower()] = [other]
    with pytest.raises(BadAnswer, match="block 4370006: uncle 0 is 0x1111"):
        _staged(provider, 1, N_4370006, tmp_path / "a", trace_method=DEBUG_TRACE, uncles=True)
    provider.uncles.clear()
    with pytest.raises(LookupError, match="block 4370006: no uncle 0"):
        _staged(provider, 1, N_4370006, tmp_path / "b", trace_method=DEBUG_TRACE, uncles=True)


# -- OP Mainnet -------------------------------------------------------------------------------


def test_op_154497277_recording_is_one_complete_block() -> None:
    block, receipts = _op()
    _assert_receipts_are_the_blocks(block, receipts)
    txs = block["transactions"]
    assert len(txs) == 42 and q(block["number"]) == 154_497_277
    assert Counter(t["type"] for t in txs) == {"0x2": 40, "0x0": 1, "0x7e": 1}
    deposit, rc = txs[0], receipts[0]
    assert deposit["type"] == rc["type"] == "0x7e" and "nonce" not in deposit  # the upstream edit
    assert (q(deposit["mint"]), q(rc["l1Fee"]), q(rc["effectiveGasPrice"])) == (0, 0, 0)
    assert all("l1Fee" in r for r in receipts)
    # no operator fee was charged (Isthmus' operatorFeeScalar / operatorFeeConstant absent)
    assert not any("operatorFeeScalar" in r or "operatorFeeConstant" in r for r in receipts)


def test_op_154497277_through_the_extraction(tmp_path: Path) -> None:
    """The deposit without a nonce is read (its receipt's depositNonce, which nodes serve as
    a deposit's nonce); every other field as recorded."""
    block, receipts = _op()
    provider = Recorded().add_block(block).add_receipts(receipts, per_block=True)
    frames = _staged(provider, 10, 154_497_277, tmp_path)
    assert "eth_getTransactionReceipt" not in provider.calls
    deposit_nonce = receipts[0]["depositNonce"]
    served = {**block, "transactions": [{**block["transactions"][0], "nonce": deposit_nonce},
                                        *block["transactions"][1:]]}  # fmt: skip
    by_hash = {r["transactionHash"]: r for r in receipts}
    assert_blocks(frames, [block])
    assert_transactions(frames, [served], by_hash)
    assert_logs(frames, [block], by_hash)
    txs = frames["transactions"]
    assert int(txs["nonce"][0]) == 0x2EFAEA6
    assert [int(x) for x in txs["l1_fee"]] == [q(r["l1Fee"]) for r in receipts]
    assert int(txs["mint"][0]) == 0 and txs["mint"].null_count() == 41
    # since Jovian a receipt's blobGasUsed is its data-availability footprint, not EIP-4844
    # blob gas: stored as served; with no blobGasPrice it adds no fee (see the next test)
    assert txs["blob_gas_used"].null_count() == 0 and txs["blob_gas_price"].null_count() == 42
    # no operator fee parameters on these receipts (op-geth leaves them out when both are
    # zero); Jovian's DA footprint gas scalar on every one, stored as served (400)
    assert (
        txs["operator_fee_scalar"].null_count() == txs["operator_fee_constant"].null_count() == 42
    )
    assert txs["da_footprint_gas_scalar"].to_list() == [400] * 42
    assert frames["traces"].height == 0


def test_op_154497277_senders_pay_gas_and_l1_fee_exactly(tmp_path: Path) -> None:
    block, receipts = _op()
    provider = Recorded().add_block(block).add_receipts(receipts, per_block=True)
    frames = _staged(provider, 10, 154_497_277, tmp_path)
    df = _movements(frames["transactions"], frames["blocks"], None, "optimism")

    base_fee, sequencer = n(block["baseFeePerGas"]), block["miner"]
    assert (base_fee, sequencer) == (0x16B, "0x4200000000000000000000000000000000000011")
    want: Counter = Counter()
    for t, r in zip(block["transactions"], receipts, strict=True):
        if t["type"] == "0x7e":
            continue  # pays nothing: no gas price, no L1 fee; mints 0, moves 0
        gas, price, l1 = n(r["gasUsed"]), n(r["effectiveGasPrice"]), n(r["l1Fee"])
        h = t["hash"]
        if r["status"] == "0x1" and n(t["value"]):
            want[("transaction_value", h, None, t["from"], t["to"], n(t["value"]))] += 1
        want[("fee", h, None, t["from"], None, gas * price + l1)] += 1
        want[("priority_fee", h, None, None, sequencer, gas * (price - base_fee))] += 1
        want[("base_fee", h, None, None, OP_BASE_FEE_VAULT, gas * base_fee)] += 1
        want[("l1_fee", h, None, None, OP_L1_FEE_VAULT, l1)] += 1
    got = _rows(df)
    assert got == Counter({k: n for k, n in want.items() if k[-1] > 0})
    assert _net(got) == _net(want)
    deposit = block["transactions"][0]["hash"]
    assert deposit not in df["transaction_hash"].to_list()

    by_kind = _by_kind(df)
    fees = sum(n(r["gasUsed"]) * n(r["effectiveGasPrice"]) + n(r["l1Fee"]) for r in receipts)
    assert by_kind["fee"] == fees
    # nothing is burned on an OP-stack chain: every wei of fee reaches a vault
    assert by_kind["fee"] == by_kind["priority_fee"] + by_kind["base_fee"] + by_kind["l1_fee"]
    assert sum(_net(got).values()) == 0 and None not in _net(got)
    assert by_kind["base_fee"] == base_fee * (n(block["gasUsed"]) - n(receipts[0]["gasUsed"]))
    assert Counter(df["kind"])["fee"] == 41
    # the two reverted transactions paid their fee and moved no value
    failed = [r["transactionHash"] for r in receipts if r["status"] == "0x0"]
    assert len(failed) == 2
    for h in failed:
        kinds = set(df.filter(pl.col("transaction_hash") == h)["kind"])
        assert "fee" in kinds and "transaction_value" not in kinds
    assert by_kind == {
        "transaction_value": 4_638_428_290_372_675_149,
        "fee": 3_248_618_200_809,
        "priority_fee": 3_178_105_278_737,
        "base_fee": 3_181_247_784,
        "l1_fee": 67_331_674_288,
    }
    # no operator fee: the receipts carry no operatorFeeScalar / operatorFeeConstant (both
    # zero on OP Mainnet then), so no operator_fee row and nothing of it in the fees
    assert "operator_fee" not in by_kind


@pytest.mark.parametrize(
    ("jovian", "scalar", "constant"), [(True, 3, 1_234_567), (False, 7_654_321, 1_234_567)]
)
def test_op_operator_fee_from_receipts_built_on_the_recorded_ones(
    tmp_path: Path, jovian: bool, scalar: int, constant: int
) -> None:
    """NOT RECORDED: OP Mainnet charged no operator fee in block 154,497,277 (see above), so
    its receipts are given non-zero `operatorFeeScalar` / `operatorFeeConstant` here (the
    non-deposit ones, as op-geth does), everything else as recorded. Jovian receipts (they
    carry `daFootprintGasScalar`, as recorded) take op-geth's Jovian formula, gas_used x
    scalar x 100 + constant; with `daFootprintGasScalar` removed, Isthmus's, gas_used x
    scalar / 1e6 (integer division) + constant. The sender pays it on top of gas and L1 fee,
    the OperatorFeeVault receives it, nothing is burned."""
    block, recorded = _op()
    receipts = []
    for r in recorded:
        r = dict(r)
        if r["type"] != "0x7e":
            r |= {"operatorFeeScalar": hex(scalar), "operatorFeeConstant": hex(constant)}
        if not jovian:
            r.pop("daFootprintGasScalar")
        receipts.append(r)
    provider = Recorded().add_block(block).add_receipts(receipts, per_block=True)
    frames = _staged(provider, 10, 154_497_277, tmp_path)
    txs = frames["transactions"]
    assert txs["operator_fee_scalar"].null_count() == txs["operator_fee_constant"].null_count() == 1
    df = _movements(txs, frames["blocks"], None, "optimism")

    def op_fee(gas: int) -> int:
        return gas * scalar * 100 + constant if jovian else gas * scalar // 10**6 + constant

    base_fee, sequencer = n(block["baseFeePerGas"]), block["miner"]
    want: Counter = Counter()
    for t, r in zip(block["transactions"], receipts, strict=True):
        if t["type"] == "0x7e":
            continue
        gas, price, l1, h = n(r["gasUsed"]), n(r["effectiveGasPrice"]), n(r["l1Fee"]), t["hash"]
        if r["status"] == "0x1" and n(t["value"]):
            want[("transaction_value", h, None, t["from"], t["to"], n(t["value"]))] += 1
        want[("fee", h, None, t["from"], None, gas * price + l1 + op_fee(gas))] += 1
        want[("priority_fee", h, None, None, sequencer, gas * (price - base_fee))] += 1
        want[("base_fee", h, None, None, OP_BASE_FEE_VAULT, gas * base_fee)] += 1
        want[("l1_fee", h, None, None, OP_L1_FEE_VAULT, l1)] += 1
        want[("operator_fee", h, None, None, OP_OPERATOR_FEE_VAULT, op_fee(gas))] += 1
    got = _rows(df)
    assert got == Counter({k: c for k, c in want.items() if k[-1] > 0})

    by_kind = _by_kind(df)
    gas_used = [n(r["gasUsed"]) for r in receipts if r["type"] != "0x7e"]
    assert by_kind["operator_fee"] == sum(op_fee(g) for g in gas_used)
    assert by_kind["operator_fee"] == (
        sum(gas_used) * scalar * 100 + 41 * constant
        if jovian
        else sum(g * scalar // 10**6 for g in gas_used) + 41 * constant
    )
    # 41 senders, 8,763,768 gas: Jovian 8,763,768 x 300 + 41 x 1,234,567; Isthmus rounds
    # down per transaction (117,697,940.44... before rounding)
    assert sum(gas_used) == 8_763_768
    assert by_kind["operator_fee"] == (2_679_747_647 if jovian else 117_697_922)
    # the recorded fees plus the operator fee; every wei reaches a vault, none is burned
    assert by_kind["fee"] == 3_248_618_200_809 + by_kind["operator_fee"]
    assert by_kind["fee"] == sum(
        by_kind[k] for k in ("priority_fee", "base_fee", "l1_fee", "operator_fee")
    )
    assert sum(_net(got).values()) == 0 and None not in _net(got)
    assert _net(got)[OP_OPERATOR_FEE_VAULT] == by_kind["operator_fee"]


@pytest.mark.parametrize("preset", ["optimism", "base"])
def test_op_stack_presets_use_the_op_fee_model(preset: str) -> None:
    assert PRESETS[preset].fee_model == "op-stack"
    assert PRESETS[preset].block_rewards == "none"
