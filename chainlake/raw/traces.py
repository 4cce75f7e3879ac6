"""raw/traces: one row per call frame of every transaction, from the node's tracer.

Two node APIs give the same frames:

- `trace_block` (Parity/OpenEthereum style: Erigon, Reth, Nethermind, anvil): a flat list of
  frames per block, each with its `traceAddress`, plus the block's `reward` frames on
  proof-of-work chains;
- `debug_traceBlockByNumber` with the `callTracer` (Geth style: Geth, op-geth, Bor,
  Avalanche's coreth, anvil): one nested call tree per transaction.

Both become the same rows, with ethereum-etl's / cryo's vocabulary: `trace_type` is `call`,
`create`, `suicide` (SELFDESTRUCT) or `reward`; `call_type` the kind of call (`call`,
`delegatecall`, `staticcall`, `callcode`) or of creation (`create`, `create2`);
`trace_address` the path from the transaction's root frame (`""` for the root, `"0,2"` for the
third child of its first child). A frame whose own `error` is set, or that lies under such a
frame, is `reverted`: none of its value moved.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, ClassVar

import pandera.polars as pa
import polars as pl

from chainlake.rpc import BadAnswer, lower, quantity, wei
from chainlake.schema import conform, empty

HASH = r"^0x[0-9a-f]{64}$"
ADDRESS = r"^0x[0-9a-f]{40}$"

# The two ways of reading traces, as chains.yaml names them (`trace_method`).
TRACE_BLOCK = "trace_block"
DEBUG_TRACE = "debug_trace"
TRACE_METHODS = (TRACE_BLOCK, DEBUG_TRACE)
CALL_TRACER = {"tracer": "callTracer"}


class TracesModel(pa.DataFrameModel):
    """One row per call frame (and per block or uncle reward on proof-of-work chains read with
    `trace_block`). Amounts are wei, exact Decimal(38,0)."""

    chain_id: pl.Int64 = pa.Field(description="EIP-155 chain id of the chain the row belongs to")
    date: pl.Date = pa.Field(description="UTC day of the row (the Delta partition column)")
    block_number: pl.Int64 = pa.Field(ge=0, description="number of the block")
    block_hash: pl.String = pa.Field(
        str_matches=HASH, description="hash of the block, lowercase 0x-hex"
    )
    block_timestamp: Annotated[pl.Datetime, "us", "UTC"] = pa.Field(
        description="time of the block, UTC"
    )
    transaction_hash: pl.String = pa.Field(
        str_matches=HASH, nullable=True, description="the frame's transaction; null for rewards"
    )
    transaction_index: pl.Int32 = pa.Field(
        ge=0,
        nullable=True,
        description="position of the transaction in its block; null for rewards",
    )
    trace_index: pl.Int32 = pa.Field(
        ge=0, description="position of the frame in its block (depth-first, in execution order)"
    )
    trace_address: pl.String = pa.Field(
        description="path of child positions from the root frame, comma-separated; '' for the root"
    )
    depth: pl.Int32 = pa.Field(
        ge=0, description="number of positions in trace_address (0: the root)"
    )
    subtraces: pl.Int32 = pa.Field(ge=0, description="number of direct child frames")
    trace_type: pl.String = pa.Field(
        isin=["call", "create", "suicide", "reward"],
        description="call, create, suicide (SELFDESTRUCT) or reward",
    )
    call_type: pl.String = pa.Field(
        nullable=True,
        isin=["call", "delegatecall", "staticcall", "callcode", "create", "create2"],
        description="call, delegatecall, staticcall or callcode for calls; create or create2 "
        "for creations when the node says which; null otherwise",
    )
    reward_type: pl.String = pa.Field(
        nullable=True, description="block or uncle for reward rows; null otherwise"
    )
    from_address: pl.String = pa.Field(
        str_matches=ADDRESS,
        nullable=True,
        description="caller, creator or self-destructed contract; null for rewards",
    )
    to_address: pl.String = pa.Field(
        str_matches=ADDRESS,
        nullable=True,
        description="callee, created contract, SELFDESTRUCT beneficiary or rewarded miner; "
        "null for a failed creation",
    )
    value: Annotated[pl.Decimal, 38, 0] = pa.Field(
        ge=0, description="wei sent with the frame (0 for delegatecall / staticcall), exact"
    )
    input_selector: pl.String = pa.Field(
        nullable=True, description="first 4 bytes of the call data, 0x-hex; null when shorter"
    )
    input_length: pl.Int32 = pa.Field(
        ge=0, nullable=True, description="bytes of call data (init code for creations)"
    )
    output_length: pl.Int32 = pa.Field(
        ge=0, nullable=True, description="bytes of return data (runtime code for creations)"
    )
    gas: pl.Int64 = pa.Field(ge=0, nullable=True, description="gas given to the frame")
    gas_used: pl.Int64 = pa.Field(ge=0, nullable=True, description="gas used by the frame")
    error: pl.String = pa.Field(nullable=True, description="the frame's own error; null if none")
    reverted: pl.Boolean = pa.Field(
        description="true when the frame or one of its ancestors failed: nothing it did stands"
    )
    trace_source: pl.String = pa.Field(
        isin=list(TRACE_METHODS), description="trace_block or debug_trace (callTracer)"
    )

    class Config:
        strict = True
        unique: ClassVar[list[str]] = ["block_number", "trace_index"]


_RAW = {
    "_bi": pl.UInt32,
    "transaction_hash": pl.String,
    "transaction_index": pl.Int32,
    "trace_address": pl.String,
    "depth": pl.Int32,
    "subtraces": pl.Int32,
    "trace_type": pl.String,
    "call_type": pl.String,
    "reward_type": pl.String,
    "from_address": pl.String,
    "to_address": pl.String,
    "value": pl.String,
    "input": pl.String,
    "output": pl.String,
    "gas": pl.String,
    "gas_used": pl.String,
    "error": pl.String,
    "reverted": pl.Boolean,
}

_CALL_TYPES = {"call", "delegatecall", "staticcall", "callcode"}


def _frames_call_tracer(
    bi: int, tx_hash: str | None, tx_index: int, root: dict[str, Any], where: str
) -> list[tuple[Any, ...]]:
    """Rows of one callTracer tree, depth-first in execution order."""
    rows: list[tuple[Any, ...]] = []
    stack: list[tuple[dict[str, Any], tuple[int, ...], bool]] = [(root, (), False)]
    while stack:
        frame, address, parent_reverted = stack.pop()
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            raise BadAnswer(f"{where}: a callTracer frame without a type: {str(frame)[:120]!r}")
        kind = frame["type"].lower()
        children = frame.get("calls") or []
        error = frame.get("error")
        reverted = parent_reverted or error is not None
        if kind in _CALL_TYPES:
            trace_type, call_type = "call", kind
        elif kind in ("create", "create2"):
            trace_type, call_type = "create", kind
        elif kind == "selfdestruct":
            trace_type, call_type = "suicide", None
        else:
            raise BadAnswer(f"{where}: unknown callTracer frame type {frame['type']!r}")
        value = frame.get("value")
        if kind in ("delegatecall", "staticcall") or value is None:
            value = "0x0"
        rows.append(
            (
                bi,
                tx_hash,
                tx_index,
                ",".join(map(str, address)),
                len(address),
                len(children),
                trace_type,
                call_type,
                None,
                frame.get("from"),
                frame.get("to"),
                value,
                frame.get("input"),
                frame.get("output"),
                frame.get("gas"),
                frame.get("gasUsed"),
                error,
                reverted,
            )
        )
        for i in range(len(children) - 1, -1, -1):
            stack.append((children[i], (*address, i), reverted))
    return rows


def call_tracer_rows(
    bi: int, tx_hashes: Sequence[str], result: Any, where: str
) -> list[tuple[Any, ...]]:
    """Rows of one block's `debug_traceBlockByNumber(n, {"tracer": "callTracer"})` answer:
    one entry per transaction (`{"txHash"?, "result"}`), in the block's order."""
    if not isinstance(result, list) or len(result) != len(tx_hashes):
        n = len(result) if isinstance(result, list) else type(result).__name__
        raise BadAnswer(f"{where}: {n} transaction traces for {len(tx_hashes)} transactions")
    rows: list[tuple[Any, ...]] = []
    for i, (entry, tx_hash) in enumerate(zip(result, tx_hashes, strict=True)):
        if not isinstance(entry, dict):
            raise BadAnswer(f"{where}: transaction {i}: trace is {str(entry)[:80]!r}")
        if entry.get("error") is not None and entry.get("result") is None:
            raise BadAnswer(f"{where}: transaction {tx_hash}: the tracer failed: {entry['error']}")
        got = entry.get("txHash")
        if got is not None and str(got).lower() != tx_hash.lower():
            raise BadAnswer(f"{where}: trace {i} is of {got}, not of transaction {tx_hash}")
        tree = entry.get("result", entry)
        rows += _frames_call_tracer(bi, tx_hash.lower(), i, tree, where)
    return rows


def trace_block_rows(
    bi: int, tx_hashes: Sequence[str], result: Any, where: str
) -> list[tuple[Any, ...]]:
    """Rows of one block's `trace_block` answer (flat Parity-style frames, rewards last)."""
    if not isinstance(result, list):
        raise BadAnswer(f"{where}: trace_block answered {str(result)[:80]!r}, not a list")
    position = {h.lower(): i for i, h in enumerate(tx_hashes)}
    rows: list[tuple[Any, ...]] = []
    failed: list[tuple[str | None, tuple[int, ...]]] = []
    for t in result:
        if not isinstance(t, dict) or not isinstance(t.get("action"), dict):
            raise BadAnswer(f"{where}: a trace without an action: {str(t)[:120]!r}")
        action, res = t["action"], t.get("result") or {}
        kind = t.get("type")
        tx_hash = t.get("transactionHash")
        tx_hash = tx_hash.lower() if isinstance(tx_hash, str) else None
        address = tuple(int(a) for a in (t.get("traceAddress") or []))
        if tx_hash is not None and tx_hash not in position:
            raise BadAnswer(f"{where}: a trace of {tx_hash}, which is not in the block")
        error = t.get("error")
        if error is not None:
            failed.append((tx_hash, address))
        reverted = any(
            h == tx_hash and address[: len(a)] == a for h, a in failed
        )  # under a failed frame of the same transaction (or failed itself)
        common = (
            bi,
            tx_hash,
            None if tx_hash is None else position[tx_hash],
            ",".join(map(str, address)),
            len(address),
            int(t.get("subtraces") or 0),
        )
        if kind == "call":
            rows.append(
                (*common, "call", (action.get("callType") or "call").lower(), None,
                 action.get("from"), action.get("to"), action.get("value") or "0x0",
                 action.get("input"), res.get("output"), action.get("gas"),
                 res.get("gasUsed"), error, reverted)
            )  # fmt: skip
        elif kind == "create":
            method = action.get("creationMethod")
            rows.append(
                (*common, "create", method.lower() if isinstance(method, str) else None, None,
                 action.get("from"), res.get("address"), action.get("value") or "0x0",
                 action.get("init"), res.get("code"), action.get("gas"), res.get("gasUsed"),
                 error, reverted)
            )  # fmt: skip
        elif kind == "suicide":
            rows.append(
                (*common, "suicide", None, None, action.get("address"),
                 action.get("refundAddress"), action.get("balance") or "0x0", None, None, None,
                 None, error, reverted)
            )  # fmt: skip
        elif kind == "reward":
            rows.append(
                (*common, "reward", None, action.get("rewardType"), None, action.get("author"),
                 action.get("value") or "0x0", None, None, None, None, None, False)
            )  # fmt: skip
        else:
            raise BadAnswer(f"{where}: unknown trace type {kind!r}")
    return rows


def frame_rows(rows: Sequence[tuple[Any, ...]]) -> pl.DataFrame:
    """Frames flattened by `call_tracer_rows` / `trace_block_rows` as one frame (`_bi`: the
    position of the frame's block in its batch), the input of `traces_from_rpc`."""
    return pl.DataFrame(list(rows), schema=_RAW, orient="row")


def traces_from_rpc(
    blocks: pl.DataFrame, raw: pl.DataFrame, chain_id: int, source: str
) -> pl.DataFrame:
    """Pure transform: frames (`frame_rows`, each with the `_bi` of its block in `blocks`,
    the `rpc_block_frame`) → rows of raw/traces."""
    if not raw.height:
        return empty(TracesModel)
    head = blocks.select(
        pl.lit(chain_id, pl.Int64).alias("chain_id"),
        quantity("number").alias("block_number"),
        lower("hash").alias("block_hash"),
        pl.from_epoch(quantity("timestamp"), time_unit="s")
        .dt.replace_time_zone("UTC")
        .alias("block_timestamp"),
    )
    length = pl.col("input").str.len_bytes() // 2 - 1
    frame = (
        pl.concat([head.select(pl.all().gather(raw["_bi"])), raw], how="horizontal")
        .with_columns(
            pl.col("block_timestamp").dt.date().alias("date"),
            pl.int_range(pl.len()).over("block_number").cast(pl.Int32).alias("trace_index"),
        )
        .select(
            "chain_id",
            "date",
            "block_number",
            "block_hash",
            "block_timestamp",
            "transaction_hash",
            "transaction_index",
            "trace_index",
            "trace_address",
            "depth",
            "subtraces",
            "trace_type",
            "call_type",
            "reward_type",
            lower("from_address").alias("from_address"),
            lower("to_address").alias("to_address"),
            wei("value").alias("value"),
            pl.when(pl.col("input").str.len_bytes() >= 10)
            .then(lower(pl.col("input").str.slice(0, 10)))
            .alias("input_selector"),
            pl.when(pl.col("input").str.starts_with("0x")).then(length).alias("input_length"),
            pl.when(pl.col("output").str.starts_with("0x"))
            .then(pl.col("output").str.len_bytes() // 2 - 1)
            .alias("output_length"),
            quantity("gas").alias("gas"),
            quantity("gas_used").alias("gas_used"),
            "error",
            "reverted",
            pl.lit(source).alias("trace_source"),
        )
    )
    return conform(frame, TracesModel)


def traces_frame(
    blocks: Sequence[dict[str, Any]], answers: Sequence[Any], chain_id: int, source: str
) -> pl.DataFrame:
    """raw/traces rows of full blocks (decoded dicts, with their transactions) and the node's
    trace answer for each (`trace_block` or `debug_traceBlockByNumber` + callTracer)."""
    from chainlake.raw.shapes import rpc_block_frame

    frame = rpc_block_frame(blocks)
    rows: list[tuple[Any, ...]] = []
    parse = trace_block_rows if source == TRACE_BLOCK else call_tracer_rows
    for bi, (block, answer) in enumerate(zip(blocks, answers, strict=True)):
        hashes = [t if isinstance(t, str) else t["hash"] for t in block.get("transactions") or []]
        rows += parse(bi, hashes, answer, f"block {block.get('number')}")
    return traces_from_rpc(frame, frame_rows(rows), chain_id, source)
