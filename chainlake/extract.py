"""Reading a chain: a day's block range, and blocks + receipts streamed into staged files.

No Dagster here: the asset in `assets/raw/chain_tables.py` wires these functions to the stores.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.dataset as pads

from chainlake.raw.blocks import BlocksModel, blocks_from_rpc
from chainlake.raw.logs import LogsModel, logs_from_rpc
from chainlake.raw.shapes import (
    BLOCK_QUANTITIES,
    LOG_QUANTITIES,
    RECEIPT_QUANTITIES,
    RPC_BLOCK,
    RPC_RECEIPT,
    RPC_UNCLE,
    RPC_UNCLE_HEADERS,
    TRANSACTION_QUANTITIES,
    UNCLE_HEADERS,
    WITHDRAWAL_QUANTITIES,
)
from chainlake.raw.traces import (
    CALL_TRACER,
    DEBUG_TRACE,
    TRACE_BLOCK,
    TracesModel,
    call_tracer_rows,
    frame_rows,
    trace_block_rows,
    traces_from_rpc,
)
from chainlake.raw.transactions import (
    ReceiptMismatch,
    TransactionsModel,
    transactions_from_rpc,
)
from chainlake.rpc import BadAnswer, NodeError, RpcClient, RpcError, parse_quantity
from chainlake.schema import arrow_schema, failed_rules, schema_failures

log = logging.getLogger(__name__)

RAW_TABLES = {
    "blocks": BlocksModel,
    "transactions": TransactionsModel,
    "logs": LogsModel,
    "traces": TracesModel,
}


class RawSchemaError(ValueError):
    """Rows read from the node break their raw table's model: nothing is staged for Delta."""

    def __init__(self, table: str, cases: pl.DataFrame, frame: pl.DataFrame) -> None:
        rules = failed_rules(cases)
        summary = "; ".join(
            f"{r['column']}: {r['check']} ({r['failures']}x, e.g. {r['examples']})"
            for r in rules.head(5).iter_rows(named=True)
        )
        super().__init__(f"raw/{table}: data from the node fails its schema: {summary}")
        self.table = table
        self.cases = cases
        self.frame = frame


def day_bounds(day: dt.date) -> tuple[int, int]:
    """[start, end) of a UTC day in unix seconds."""
    start = int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp())
    return start, start + 86_400


@dataclass(frozen=True)
class DayRange:
    """Blocks of one UTC day up to the confirmed head. `closed` means the day is over at the
    confirmed head, so its range will not change any more (short of a deep reorg)."""

    day: dt.date
    first_block: int
    last_block: int
    closed: bool
    confirmed_head: int

    @property
    def empty(self) -> bool:
        """Whether the range holds no block (the chain has not reached the day)."""
        return self.last_block < self.first_block

    @property
    def block_count(self) -> int:
        """The number of blocks in the range."""
        return max(0, self.last_block - self.first_block + 1)


class BlockTimestamps:
    """Block timestamps by number, fetched on demand and remembered for the client's life."""

    def __init__(self, client: RpcClient) -> None:
        self.client = client
        self._cache: dict[int, int] = {}

    def __call__(self, number: int) -> int:
        """The timestamp of block `number`."""
        return self.many([number])[0]

    def many(self, numbers: Sequence[int]) -> list[int]:
        """Timestamps of several blocks, the ones not remembered read in one batch."""
        todo = [n for n in dict.fromkeys(numbers) if n not in self._cache]
        if todo:
            blocks = self.client.batch([("eth_getBlockByNumber", [hex(n), False]) for n in todo])
            where = f"{self.client.last_url} answered eth_getBlockByNumber"
            for n, block in zip(todo, blocks, strict=True):
                if block is None:
                    raise LookupError(f"node has no block {n}")
                if not isinstance(block, dict):
                    raise BadAnswer(f"{where} {hex(n)} with {str(block)[:80]!r}, not a block")
                ts = parse_quantity(block.get("timestamp"), f"{where} {hex(n)} with timestamp")
                self._cache[n] = ts
        return [self._cache[n] for n in numbers]


def first_block_at_or_after(
    ts_of: Callable[[int], int] | BlockTimestamps, ts: int, lo: int, hi: int, *, fanout: int = 16
) -> int:
    """Smallest block number in [lo, hi] whose timestamp is >= ts, or hi + 1 if none.

    Block timestamps never decrease, so the range can be searched. With `BlockTimestamps`,
    each step reads `fanout` evenly spaced blocks in one batch and keeps the slice between
    two of them: log17(n) round trips instead of log2(n) (6 instead of 25 for mainnet)."""
    if not isinstance(ts_of, BlockTimestamps):
        while lo <= hi:
            mid = (lo + hi) // 2
            if ts_of(mid) >= ts:
                hi = mid - 1
            else:
                lo = mid + 1
        return lo
    while lo <= hi:
        # invariant: the answer lies in [lo, hi + 1]
        width = hi - lo + 1
        if width <= fanout:
            probes = list(range(lo, hi + 1))
        else:
            probes = sorted({lo + (width - 1) * i // (fanout - 1) for i in range(fanout)})
        stamps = ts_of.many(probes)
        first = next((i for i, t in enumerate(stamps) if t >= ts), None)
        if width <= fanout:
            return hi + 1 if first is None else probes[first]
        if first is None:
            lo = probes[-1] + 1
        else:
            hi = probes[first] - 1
            if first > 0:
                lo = probes[first - 1] + 1
    return lo


def confirmed_head(client: RpcClient, confirmations: int) -> int:
    """The highest block with `confirmations` blocks on top of it (-1 before there is one)."""
    return max(-1, client.block_number() - confirmations)


class DayNotReached(NodeError):
    """The node's confirmed head is before the day's first block: there is nothing of the day
    to write, and writing nothing would pass for an empty day."""


def find_day_range(
    client: RpcClient,
    day: dt.date,
    *,
    confirmations: int,
    timestamps: BlockTimestamps | None = None,
    head: int | None = None,
    require_reached: bool = False,
) -> DayRange:
    """The blocks of `day` (UTC) up to the confirmed head, found by binary search on timestamps.

    With `require_reached`, a day the confirmed head has not reached (an empty range that is
    not closed) raises `DayNotReached` naming the node and its head, instead of coming back
    empty: the caller is about to write the day, and an empty write would look complete.
    """
    ts_of = timestamps or BlockTimestamps(client)
    node_head = client.block_number() if head is None else head + confirmations
    head = max(-1, node_head - confirmations)
    start, end = day_bounds(day)

    def not_reached() -> DayNotReached:
        return DayNotReached(
            f"{day} is not reached on {client.last_url}: its head is block {node_head}, "
            f"so with {confirmations} confirmations the confirmed head is block {head}, "
            "before the day's first block; nothing was written"
        )

    if head < 0:
        if require_reached:
            raise not_reached()
        return DayRange(day, 0, -1, False, head)
    first = first_block_at_or_after(ts_of, start, 0, head)
    if first > head:  # the chain has not reached this day yet
        if require_reached:
            raise not_reached()
        return DayRange(day, first, head, False, head)
    after = first_block_at_or_after(ts_of, end, first, head)
    closed = after <= head
    return DayRange(day, first, after - 1, closed, head)


# -- streaming blocks and receipts -------------------------------------------------------

# JSON-RPC errors meaning "no such method" (or "that parameter form is unknown"): the node
# lacks eth_getBlockReceipts, so receipts are read one per transaction instead.
_NO_METHOD_CODES = (-32601, -32600, -32602, -32004)
_NO_METHOD_RE = re.compile(
    r"not (found|supported|available|exist)|unsupported|unknown method", re.I
)


@dataclass(frozen=True)
class Chunk:
    """A run of consecutive blocks as the node returned them: `blocks` one row per block
    (raw JSON fields, `_bi` its position), `receipts` their receipts in order (each with the
    `_bi` of its block). Transformed into rows when staged, many chunks at a time."""

    blocks: pl.DataFrame
    receipts: pl.DataFrame
    # the blocks' call frames (`chainlake.raw.traces.frame_rows`) and how they were read;
    # None when traces are not read
    traces: pl.DataFrame | None = None
    trace_source: str | None = None

    @property
    def numbers(self) -> list[int]:
        """The block numbers of the chunk, in order."""
        try:
            return [int(n, 16) for n in self.blocks["number"].to_list()]
        except (TypeError, ValueError):
            raise BadAnswer(bad_quantity(self) or "a block number is not a quantity") from None

    @property
    def tx_count(self) -> int:
        """The number of transactions in the chunk."""
        return self.receipts.height


def concat_chunks(chunks: Sequence[Chunk]) -> Chunk:
    """One chunk of several: block positions renumbered across them."""
    if len(chunks) == 1:
        return chunks[0]
    blocks, receipts, traces, offset = [], [], [], 0
    sources = {c.trace_source for c in chunks if c.trace_source is not None}
    if len(sources) > 1:
        # one transform per source: never mix two nodes' tracers in one chunk
        raise ValueError(f"chunks traced by {sorted(sources)} cannot be staged together")
    for c in chunks:
        blocks.append(c.blocks.with_columns(pl.col("_bi") + offset))
        receipts.append(c.receipts.with_columns(pl.col("_bi") + offset))
        if c.traces is not None:
            traces.append(c.traces.with_columns(pl.col("_bi") + offset))
        offset += c.blocks.height
    return Chunk(
        pl.concat(blocks),
        pl.concat(receipts),
        pl.concat(traces) if traces else None,
        next(iter(sources), None),
    )


# -- traces ----------------------------------------------------------------------------

# What each node URL serves, found once per URL: "trace_block", "debug_trace" or "none".
_DETECTED: dict[str, str] = {}


class TraceReader:
    """Reads the call frames of blocks with the chain's `trace_method`: `trace_block`,
    `debug_trace` (debug_traceBlockByNumber + callTracer), `none`, or `auto`: whichever the
    node serves, tried once per URL (trace_block first, the cheaper to answer)."""

    def __init__(self, client: RpcClient, setting: str = "none") -> None:
        self.client = client
        self.setting = setting

    def method(self, probe_block: int) -> str:
        """The method to read with: the setting, or what the node serves (`auto`)."""
        if self.setting != "auto":
            return self.setting
        known = _DETECTED.get(self.client.last_url)
        if known is not None:
            return known
        found = "none"
        for method, calls in (
            (TRACE_BLOCK, [("trace_block", [hex(probe_block)])]),
            (DEBUG_TRACE, [("debug_traceBlockByNumber", [hex(probe_block), CALL_TRACER])]),
        ):
            try:
                answer = self.client.batch(calls)[0]
            except RpcError as e:
                log.info("%s does not serve %s: %s", self.client.last_url, calls[0][0], e)
                continue
            entries = answer if isinstance(answer, list) else []
            if any(isinstance(t, dict) and t.get("error") and "result" not in t for t in entries):
                # a tracer without the block's state (a pruned node): as good as none
                log.warning(
                    "%s cannot trace block %s: %s", self.client.last_url, probe_block, entries[0]
                )
                continue
            found = method
            break
        _DETECTED[self.client.last_url] = found
        log.info("%s: traces read with %s", self.client.last_url, found)
        return found

    def read(
        self, numbers: Sequence[int], blocks: pl.DataFrame
    ) -> tuple[pl.DataFrame | None, str | None]:
        """The frames of blocks `numbers` (`blocks`: their rpc frame) and the method used;
        (None, None) when the chain's traces are not read."""
        method = self.method(numbers[0])
        if method == "none":
            return None, None
        calls: list[tuple[str, list[Any]]]
        if method == TRACE_BLOCK:
            calls = [("trace_block", [hex(n)]) for n in numbers]
            parse = trace_block_rows
        else:
            calls = [("debug_traceBlockByNumber", [hex(n), CALL_TRACER]) for n in numbers]
            parse = call_tracer_rows
        answers = self.client.batch(calls)
        hashes = blocks["transactions"].list.eval(pl.element().struct.field("hash")).to_list()
        rows: list[tuple[Any, ...]] = []
        for bi, (n, answer, tx_hashes) in enumerate(zip(numbers, answers, hashes, strict=True)):
            where = f"{self.client.last_url} answered {calls[0][0]} {hex(n)}"
            rows += parse(bi, tx_hashes or [], answer, where)
        return frame_rows(rows), method


class BlockReader:
    """Reads blocks with full transactions and their receipts, and turns them into rows.

    One `read` is two JSON-RPC batches (blocks, then their receipts) parsed by Polars
    straight from the response bytes, then the column-wise transforms of `assets/`: no
    Python object per field, and most of the work runs outside the GIL, so several reads
    overlap on the client's threads. With `uncles`, the uncle headers of the blocks that
    have uncles are read too, in one more batch when there are any (proof-of-work chains:
    their miners' rewards are computed from them when the node's traces have no reward
    frames)."""

    def __init__(
        self, client: RpcClient, chain_id: int, trace_method: str = "none", uncles: bool = False
    ) -> None:
        self.client = client
        self.chain_id = chain_id
        self.block_receipts = True  # False once the node turns out to lack eth_getBlockReceipts
        self.traces = TraceReader(client, trace_method)
        self.uncles = uncles

    def read(self, numbers: Sequence[int]) -> Chunk:
        """Read blocks `numbers` with their transactions and receipts."""
        raw = self.client.batch_frame(
            [("eth_getBlockByNumber", [hex(n), True]) for n in numbers], RPC_BLOCK
        )
        if raw.null_count():
            missing = [n for n, b in zip(numbers, raw.is_null().to_list(), strict=True) if b]
            raise LookupError(
                f"{self.client.last_url} has no block {missing[0]} inside the confirmed range "
                "(a node behind, or one of several behind a load balancer)"
            )
        blocks = raw.struct.unnest().with_row_index("_bi")
        blocks = blocks.with_columns(self._uncle_headers(numbers, blocks))
        receipts = self._receipts(numbers, blocks).with_columns(pl.col("_bi").cast(pl.UInt32))
        traces, source = self.traces.read(numbers, blocks)
        return Chunk(blocks, receipts, traces, source)

    def _uncle_headers(self, numbers: Sequence[int], blocks: pl.DataFrame) -> pl.Series:
        """The uncle headers of each block (`UNCLE_HEADERS`): null for a block without
        uncles or when they are not read. Each is asked by the block's hash, so it is the
        uncle of the very block read, and must answer with the hash the block lists."""
        listed = blocks["uncles"].to_list()
        out: list[list[dict[str, Any]] | None] = [None] * len(listed)
        wanted = [
            (bi, i, h)
            for bi, hashes in enumerate(listed)
            if self.uncles and hashes
            for i, h in enumerate(hashes)
        ]
        if wanted:
            block_hashes = blocks["hash"].to_list()
            calls = [
                ("eth_getUncleByBlockHashAndIndex", [block_hashes[bi], hex(i)])
                for bi, i, _ in wanted
            ]
            answers = self.client.batch_frame(calls, RPC_UNCLE).to_list()
            for (bi, i, h), uncle in zip(wanted, answers, strict=True):
                where = f"{self.client.last_url} answered {calls[0][0]} for block {numbers[bi]}"
                if uncle is None:
                    raise LookupError(f"{where}: no uncle {i}, which the block lists ({h})")
                if str(uncle.get("hash") or "").lower() != str(h).lower():
                    raise BadAnswer(f"{where}: uncle {i} is {uncle.get('hash')}, not {h}")
                out[bi] = [*(out[bi] or []), {"index": i, **uncle}]
        return pl.Series(UNCLE_HEADERS, out, dtype=RPC_UNCLE_HEADERS)

    def _receipts(self, numbers: Sequence[int], blocks: pl.DataFrame) -> pl.DataFrame:
        if self.block_receipts:
            try:
                per_block = self.client.batch_frame(
                    [("eth_getBlockReceipts", [hex(n)]) for n in numbers], pl.List(RPC_RECEIPT)
                )
            except RpcError as e:
                if e.method != "eth_getBlockReceipts" or not (
                    e.code in _NO_METHOD_CODES or _NO_METHOD_RE.search(e.message)
                ):
                    raise
                log.warning(
                    "node lacks eth_getBlockReceipts (%s); reading one receipt per transaction", e
                )
                self.block_receipts = False
            else:
                if per_block.null_count() == 0:
                    return (
                        pl.DataFrame({"_bi": blocks["_bi"], "r": per_block})
                        .filter(pl.col("r").list.len() > 0)
                        .explode("r")
                        .unnest("r")
                    )
                # a node that answers null for some blocks: read those per transaction
        hashes = (
            blocks.select(
                "_bi", pl.col("transactions").list.eval(pl.element().struct.field("hash"))
            )
            .filter(pl.col("transactions").list.len() > 0)
            .explode("transactions")
        )
        calls = [("eth_getTransactionReceipt", [h]) for h in hashes["transactions"].to_list()]
        size = self.client.batch_size
        parts = [
            self.client.batch_frame(calls[i : i + size], RPC_RECEIPT)
            for i in range(0, len(calls), size)
        ]
        series = pl.concat(parts) if parts else pl.Series("result", [], dtype=RPC_RECEIPT)
        if series.null_count():
            raise LookupError("node has no receipt for a transaction of a block it returned")
        return pl.DataFrame({"_bi": hashes["_bi"], "r": series}).unnest("r")


def read_chunks(
    client: RpcClient,
    chain_id: int,
    first: int,
    last: int,
    *,
    blocks_per_batch: int | None = None,
    trace_method: str = "none",
    uncles: bool = False,
) -> Iterator[Chunk]:
    """Chunks of blocks first..last, in order, with up to the client's in-flight limit of
    reads overlapping. A chunk is one batch of blocks and one of receipts, `blocks_per_batch`
    calls each (the chain's `batch_size` by default), and the uncle headers with `uncles`."""
    reader = BlockReader(client, chain_id, trace_method, uncles)
    blocks_per_batch = blocks_per_batch or client.batch_size
    ranges = (
        range(start, min(start + blocks_per_batch, last + 1))
        for start in range(first, last + 1, blocks_per_batch)
    )
    # twice the in-flight limit of workers: while some transform what they received, the
    # others keep `max_in_flight` requests at the node
    yield from client.ordered(reader.read, ranges, workers=2 * client.max_in_flight)


@dataclass
class StagedExtract:
    """Blocks, transactions and logs of a block range, staged on local disk until they are
    committed to Delta, one commit per table.

    The files are laid out as the Delta tables' own data files will be: Parquet (zstd, with
    statistics) without the partition column, under `<table>/date=<day>/`. A whole day is
    committed by handing these very files to the table (`DeltaStore.replace_day_files`): no
    second encoding, and memory does not grow with the day. `reader()` streams them back
    with the `date` column, for writes that go through delta-rs' writer."""

    directory: Path
    files: dict[str, list[Path]] = field(default_factory=lambda: {t: [] for t in RAW_TABLES})
    rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RAW_TABLES, 0))
    first_block: int | None = None
    last_block: int | None = None
    last_hash: str | None = None
    first_parent_hash: str | None = None
    tx_counts: dict[int, int] = field(default_factory=dict)
    hashes: dict[int, str] = field(default_factory=dict)
    # how raw/traces was read: "trace_block", "debug_trace", or None (not read: internal
    # transfers are not covered for these blocks)
    trace_source: str | None = None

    def days(self, table: str) -> list[dt.date]:
        """The days staged for `table`, in order."""
        return sorted({dt.date.fromisoformat(p.parent.name[5:]) for p in self.files[table]})

    def day_files(self, table: str, day: dt.date) -> list[Path]:
        """The staged files of `table` for `day`."""
        return [p for p in self.files[table] if p.parent.name == f"date={day.isoformat()}"]

    def reader(self, table: str) -> pa.RecordBatchReader:
        """Stream the staged rows of `table`, with their `date` column."""
        schema = arrow_schema(RAW_TABLES[table])
        if not self.files[table]:
            return pa.RecordBatchReader.from_batches(schema, iter(()))
        ds = pads.dataset(
            [str(p) for p in self.files[table]],
            schema=schema,
            format="parquet",
            partitioning=pads.partitioning(pa.schema([("date", pa.date32())]), flavor="hive"),
            partition_base_dir=str(self.directory / table),
        )
        return ds.scanner(
            columns=schema.names, batch_size=16_384, batch_readahead=2, fragment_readahead=1
        ).to_reader()

    def head(self, table: str, n: int = 5) -> pl.DataFrame:
        """The first rows, without reading the rest."""
        reader = self.reader(table)
        for batch in reader:
            if batch.num_rows:
                return pl.from_arrow(batch.slice(0, n))  # type: ignore[return-value]
        return pl.from_arrow(reader.schema.empty_table())  # type: ignore[return-value]

    def frame(self, table: str, columns: list[str] | None = None) -> pl.DataFrame:
        """All staged rows of `table` in memory (only `columns`, if given)."""
        return pl.from_arrow(self.reader(table).read_all()).select(columns or pl.all())  # type: ignore[union-attr]


def stage_range(
    client: RpcClient,
    chain_id: int,
    first: int,
    last: int,
    directory: Path,
    *,
    progress: Callable[[int, int], None] | None = None,
    flush_rows: int = 10_000,
    validate: bool = True,
    blocks_per_batch: int | None = None,
    trace_method: str = "none",
    uncles: bool = False,
) -> StagedExtract:
    """Read blocks first..last with receipts and stage them; memory stays flat because rows are
    flushed to Parquet every `flush_rows` transactions. Each flushed chunk is checked against
    its Pandera model first, so bad data fails here, before anything reaches Delta. Blocks
    must chain by parent hash, or ReorgDuringRead is raised. Traces are read with
    `trace_method` (the chain's setting: auto, trace_block, debug_trace or none); the uncle
    headers of blocks with uncles with `uncles` (chains with `block_rewards: ethereum`)."""
    directory.mkdir(parents=True, exist_ok=True)
    staged = StagedExtract(directory)
    raw: list[Chunk] = []
    pending = {"blocks": 0, "transactions": 0}
    done = 0

    def flush() -> None:
        if not raw:
            return
        # one transform over many chunks: the column expressions cost per call, not per row
        chunk = concat_chunks(raw)
        raw.clear()
        pending.update(blocks=0, transactions=0)
        try:
            frames = {
                "blocks": blocks_from_rpc(chunk.blocks, chain_id),
                "transactions": transactions_from_rpc(chunk.blocks, chunk.receipts, chain_id),
                "logs": logs_from_rpc(chunk.blocks, chunk.receipts, chain_id),
            }
            if chunk.traces is not None and chunk.trace_source is not None:
                frames["traces"] = traces_from_rpc(
                    chunk.blocks, chunk.traces, chain_id, chunk.trace_source
                )
                staged.trace_source = chunk.trace_source
        except pl.exceptions.PolarsError:
            # a strict conversion failed; say which field of which block, not Polars' message
            found = bad_quantity(chunk)
            if found is None:
                raise
            raise BadAnswer(found) from None
        for table, df in frames.items():
            if not df.height:
                continue
            if validate:
                cases = schema_failures(RAW_TABLES[table], df)
                if cases is not None:
                    raise RawSchemaError(table, cases, df)
            for (day,), part in df.partition_by("date", as_dict=True, maintain_order=True).items():
                folder = directory / table / f"date={day.isoformat()}"
                folder.mkdir(parents=True, exist_ok=True)
                path = folder / f"part-{len(staged.files[table]):05d}.parquet"
                part.drop("date").write_parquet(
                    path, compression="zstd", compression_level=1, statistics=True
                )
                staged.files[table].append(path)
            staged.rows[table] += df.height

    if last >= first:
        chunks = read_chunks(
            client,
            chain_id,
            first,
            last,
            blocks_per_batch=blocks_per_batch,
            trace_method=trace_method,
            uncles=uncles,
        )
        for chunk in chunks:
            numbers = chunk.numbers
            hashes = chunk.blocks["hash"].str.to_lowercase().to_list()
            parents = chunk.blocks["parentHash"].str.to_lowercase().to_list()
            expected = first if staged.last_block is None else staged.last_block + 1
            if numbers != list(range(expected, expected + len(numbers))):
                raise ReceiptMismatch(
                    f"expected blocks from {expected}, node returned {numbers[:3]}..."
                )
            prev = [staged.last_hash, *hashes[:-1]]
            for number, parent, before in zip(numbers, parents, prev, strict=True):
                if before is not None and parent != before:
                    raise ReorgDuringRead(number)
            if staged.first_block is None:
                staged.first_block = numbers[0]
                staged.first_parent_hash = parents[0]
            staged.last_block = numbers[-1]
            staged.last_hash = hashes[-1]
            counts = chunk.blocks["transactions"].list.len().to_list()
            staged.tx_counts.update(zip(numbers, counts, strict=True))
            staged.hashes.update(zip(numbers, hashes, strict=True))
            if raw and raw[-1].trace_source != chunk.trace_source:
                flush()  # another URL answered with another tracer: stage each on its own
            raw.append(chunk)
            pending["blocks"] += len(numbers)
            pending["transactions"] += chunk.tx_count
            done += len(numbers)
            if pending["transactions"] >= flush_rows or pending["blocks"] >= 5_000:
                flush()
            if progress:
                progress(done, last - first + 1)
    flush()
    return staged


_QUANTITY = r"^0[xX][0-9a-fA-F]+$"


def bad_quantity(chunk: Chunk) -> str | None:
    """The first value of `chunk` in a quantity field (`chainlake.raw.shapes`) that is not a
    quantity, named by its field and block: "block 12: transaction 0x.. value '1000', not a
    0x-hex quantity"; None when every quantity field holds a quantity or null."""
    b = chunk.blocks
    numbers = dict(zip(b["_bi"].to_list(), b["number"].to_list(), strict=True))

    def block(bi: Any) -> str:
        n = numbers.get(bi)
        try:
            return f"block {int(n, 16)}"  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return f"block #{bi} of the batch"

    def first_bad(df: pl.DataFrame, fields: Sequence[str]) -> tuple[str, dict[str, Any]] | None:
        for name in fields:
            if name not in df.columns or df[name].dtype != pl.String:
                continue
            col = pl.col(name)
            rows = df.filter(col.is_not_null() & ~col.str.contains(_QUANTITY)).head(1)
            if rows.height:
                return name, rows.row(0, named=True)
        return None

    def message(where: str, found: tuple[str, dict[str, Any]]) -> str:
        name, row = found
        return f"{where}: field {name!r} is {row[name]!r}, not a 0x-hex quantity"

    if hit := first_bad(b, BLOCK_QUANTITIES):
        return message(block(hit[1]["_bi"]), hit)
    nested = {
        "withdrawals": WITHDRAWAL_QUANTITIES,
        "transactions": TRANSACTION_QUANTITIES,
        UNCLE_HEADERS: ("number",),
    }
    for column, fields in nested.items():
        if column not in b.columns:
            continue
        items = b.select("_bi", column).explode(column).drop_nulls(column).unnest(column)
        if hit := first_bad(items, fields):
            what = {
                "transactions": f"transaction {hit[1].get('hash')}",
                UNCLE_HEADERS: f"uncle {hit[1].get('hash')}",
            }.get(column, column)
            return message(f"{block(hit[1]['_bi'])}: {what}", hit)
    receipts = chunk.receipts
    if hit := first_bad(receipts, RECEIPT_QUANTITIES):
        return message(f"{block(hit[1]['_bi'])}: receipt of {hit[1].get('transactionHash')}", hit)
    if "logs" in receipts.columns:
        logs = receipts.select("_bi", "logs").explode("logs").drop_nulls("logs").unnest("logs")
        if hit := first_bad(logs, LOG_QUANTITIES):
            return message(f"{block(hit[1]['_bi'])}: log of {hit[1].get('transactionHash')}", hit)
    return None


class ReorgDuringRead(RuntimeError):
    """A block read does not have the previous block as parent: the chain changed under the read."""

    def __init__(self, number: int) -> None:
        super().__init__(
            f"block {number} does not extend the block read before it: reorg during read"
        )
        self.number = number


def stage_dir(prefix: str) -> tempfile.TemporaryDirectory[str]:
    """A temporary staging directory named after `prefix`, removed on cleanup."""
    return tempfile.TemporaryDirectory(prefix=f"chainlake-{prefix}-")
