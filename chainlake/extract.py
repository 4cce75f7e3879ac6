"""Reading a chain: a day's block range, and blocks + receipts streamed into staged files.

No Dagster here: the asset in `assets/raw.py` wires these functions to the stores.
"""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.dataset as pads

from assets.blocks import BlocksModel, blocks_frame
from assets.logs import LogsModel, log_rows, logs_frame
from assets.transactions import (
    ReceiptMismatch,
    TransactionsModel,
    transaction_rows,
    transactions_frame,
)
from chainlake.rpc import RpcClient, RpcError
from chainlake.schema import arrow_schema

log = logging.getLogger(__name__)

RAW_TABLES = {"blocks": BlocksModel, "transactions": TransactionsModel, "logs": LogsModel}


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
        return self.last_block < self.first_block

    @property
    def block_count(self) -> int:
        return max(0, self.last_block - self.first_block + 1)


class BlockTimestamps:
    """Block timestamps by number, fetched on demand and remembered for the client's life."""

    def __init__(self, client: RpcClient) -> None:
        self.client = client
        self._cache: dict[int, int] = {}

    def __call__(self, number: int) -> int:
        if number not in self._cache:
            block = self.client.call("eth_getBlockByNumber", [hex(number), False])
            if block is None:
                raise LookupError(f"node has no block {number}")
            self._cache[number] = int(block["timestamp"], 16)
        return self._cache[number]


def first_block_at_or_after(ts_of: Callable[[int], int], ts: int, lo: int, hi: int) -> int:
    """Smallest block number in [lo, hi] whose timestamp is >= ts, or hi + 1 if none.
    Block timestamps never decrease, so a binary search finds it in log2(hi - lo) reads."""
    while lo <= hi:
        mid = (lo + hi) // 2
        if ts_of(mid) >= ts:
            hi = mid - 1
        else:
            lo = mid + 1
    return lo


def confirmed_head(client: RpcClient, confirmations: int) -> int:
    return max(-1, int(client.call("eth_blockNumber"), 16) - confirmations)


def find_day_range(
    client: RpcClient,
    day: dt.date,
    *,
    confirmations: int,
    timestamps: BlockTimestamps | None = None,
    head: int | None = None,
) -> DayRange:
    ts_of = timestamps or BlockTimestamps(client)
    head = confirmed_head(client, confirmations) if head is None else head
    start, end = day_bounds(day)
    if head < 0:
        return DayRange(day, 0, -1, False, head)
    first = first_block_at_or_after(ts_of, start, 0, head)
    if first > head:  # the chain has not reached this day yet
        return DayRange(day, first, head, False, head)
    after = first_block_at_or_after(ts_of, end, first, head)
    closed = after <= head
    return DayRange(day, first, after - 1, closed, head)


# -- streaming blocks and receipts -------------------------------------------------------


def _receipts_fallback(client: RpcClient, block: dict[str, Any]) -> list[dict[str, Any]]:
    hashes = [tx["hash"] for tx in block.get("transactions") or ()]
    return client.batch([("eth_getTransactionReceipt", [h]) for h in hashes]) if hashes else []


def fetch_blocks(
    client: RpcClient, first: int, last: int, *, blocks_per_batch: int = 25
) -> Iterator[list[tuple[dict[str, Any], list[dict[str, Any]]]]]:
    """Yield lists of (block with full transactions, its receipts), in block order."""
    calls = (
        call
        for n in range(first, last + 1)
        for call in (
            ("eth_getBlockByNumber", [hex(n), True]),
            ("eth_getBlockReceipts", [hex(n)]),
        )
    )
    receipts_supported = True
    try:
        for results in client.batches(calls, batch_size=2 * blocks_per_batch):
            pairs = []
            for block, receipts in zip(results[::2], results[1::2], strict=True):
                if block is None:
                    raise LookupError("node returned no block inside the confirmed range")
                if receipts is None:
                    receipts = _receipts_fallback(client, block)
                pairs.append((block, receipts))
            yield pairs
    except RpcError as e:
        if e.method != "eth_getBlockReceipts" or e.code not in (-32601, -32600, -32602):
            raise
        receipts_supported = False
    if not receipts_supported:
        log.warning("node lacks eth_getBlockReceipts; falling back to one receipt per transaction")
        for results in client.batches(
            (("eth_getBlockByNumber", [hex(n), True]) for n in range(first, last + 1)),
            batch_size=blocks_per_batch,
        ):
            yield [(b, _receipts_fallback(client, b)) for b in results]


@dataclass
class StagedExtract:
    """Blocks, transactions and logs of a block range, staged as Parquet files on local disk
    until they are committed to Delta in one write per table."""

    directory: Path
    files: dict[str, list[Path]] = field(default_factory=lambda: {t: [] for t in RAW_TABLES})
    rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RAW_TABLES, 0))
    first_block: int | None = None
    last_block: int | None = None
    last_hash: str | None = None
    first_parent_hash: str | None = None
    tx_counts: dict[int, int] = field(default_factory=dict)

    def reader(self, table: str) -> pa.RecordBatchReader:
        schema = arrow_schema(RAW_TABLES[table])
        if not self.files[table]:
            return pa.RecordBatchReader.from_batches(schema, iter(()))
        ds = pads.dataset([str(p) for p in self.files[table]], schema=schema, format="parquet")
        return ds.scanner(batch_size=65_536).to_reader()

    def frame(self, table: str, columns: list[str] | None = None) -> pl.DataFrame:
        return pl.from_arrow(self.reader(table).read_all()).select(columns or pl.all())  # type: ignore[union-attr]


def stage_range(
    client: RpcClient,
    chain_id: int,
    first: int,
    last: int,
    directory: Path,
    *,
    progress: Callable[[int, int], None] | None = None,
    flush_rows: int = 20_000,
    validate: bool = True,
) -> StagedExtract:
    """Read blocks first..last with receipts and stage them; memory stays flat because rows are
    flushed to Parquet every `flush_rows` transactions. Each flushed chunk is checked against
    its Pandera model first, so bad data fails here, before anything reaches Delta."""
    staged = StagedExtract(directory)
    buf: dict[str, list[Any]] = {"blocks": [], "transactions": [], "logs": []}
    done = 0

    def flush() -> None:
        frames = {
            "blocks": blocks_frame(buf["blocks"], chain_id),
            "transactions": transactions_frame(buf["transactions"]),
            "logs": logs_frame(buf["logs"]),
        }
        for table, df in frames.items():
            if validate and df.height:
                RAW_TABLES[table].validate(df, lazy=True)
            if df.height:
                path = directory / f"{table}-{len(staged.files[table]):05d}.parquet"
                df.write_parquet(path, compression="lz4", statistics=False)
                staged.files[table].append(path)
                staged.rows[table] += df.height
        for v in buf.values():
            v.clear()

    if last >= first:
        for pairs in fetch_blocks(client, first, last):
            for block, receipts in pairs:
                number = int(block["number"], 16)
                expected = first if staged.last_block is None else staged.last_block + 1
                if number != expected:
                    raise ReceiptMismatch(f"expected block {expected}, node returned {number}")
                if staged.last_hash is not None and block["parentHash"].lower() != staged.last_hash:
                    raise ReorgDuringRead(number)
                if staged.first_block is None:
                    staged.first_block = number
                    staged.first_parent_hash = block["parentHash"].lower()
                staged.last_block = number
                staged.last_hash = block["hash"].lower()
                staged.tx_counts[number] = len(block.get("transactions") or ())
                buf["blocks"].append(block)
                buf["transactions"].extend(transaction_rows(block, receipts, chain_id))
                buf["logs"].extend(log_rows(block, receipts, chain_id))
            done += len(pairs)
            if len(buf["transactions"]) >= flush_rows or len(buf["blocks"]) >= 2_000:
                flush()
            if progress:
                progress(done, last - first + 1)
    flush()
    return staged


class ReorgDuringRead(RuntimeError):
    def __init__(self, number: int) -> None:
        super().__init__(
            f"block {number} does not extend the block read before it: reorg during read"
        )
        self.number = number


def stage_dir(prefix: str) -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix=f"chainlake-{prefix}-")
