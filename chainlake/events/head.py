"""The head reader of fast triggers: events of interest of the blocks past the confirmed head,
evaluated by the triggers with `phase: fast` and delivered at once, marked unconfirmed.

The confirmed pipeline reads a chain up to its confirmed head (node head minus the chain's
`confirmations`) into the lake, and `events/chain_events` decodes those blocks into `events`.
The head reader looks at what lies beyond: each `poll`

1. asks the node for its head and the hashes of the blocks past the confirmed head (one batch
   of headers), and compares them with the hashes it read before (`head_blocks`): a height
   whose block changed had a reorg at the head, and the unconfirmed events of the old block are
   retracted at once (`phases.retract_replaced`: a `retracted` follow-up for every unconfirmed
   delivery of theirs);
2. reads the new blocks with their receipts (`chainlake.extract.BlockReader`, as the raw
   extraction does) and decodes them with the confirmed pipeline's own functions
   (`logs_from_rpc`, `token_transfers_frame`, `chain_events_frame`): the same events, ids and
   columns `events/chain_events` will insert once the blocks are confirmed;
3. stores them in `head_events` and evaluates the fast triggers on them with the live engine's
   `evaluate.plan` (`at_head=True`), in the same transaction as the trigger states it moves
   and the `unconfirmed` deliveries it enqueues;
4. settles what the confirmed pipeline has caught up with (`phases.settle`).

A read whose receipts name another block hash than their block (a reorg between the two
reads) is dropped whole and done again at the next poll. Blocks at or below the chain's events checkpoint are never read here: those are the
confirmed pipeline's. A chain with `confirmations: 0` has nothing past its confirmed head: its
fast triggers fire at confirmation, once, as `confirmed`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from chainlake.config import ChainConfig
from chainlake.events import phases, store
from chainlake.events.columns import EVENT_COLUMNS
from chainlake.events.db import Conn
from chainlake.events.decode import EventAbi, abi_events, chain_events_frame, frame_events
from chainlake.events.evaluate import plan
from chainlake.events.failures import Failure
from chainlake.extract import BlockReader
from chainlake.raw.logs import logs_from_rpc
from chainlake.rpc import RpcClient
from chainlake.token_transfers import token_transfers_frame

log = logging.getLogger(__name__)

# At most this many blocks past the confirmed head are looked at per poll.
MAX_BLOCKS = 64
# head_blocks rows this far below the confirmed head are forgotten.
KEEP_BELOW_CONFIRMED = 64


@dataclass
class HeadReport:
    """What one poll of one chain did."""

    chain: str
    node_head: int = -1
    confirmed_head: int = -1
    blocks_read: int = 0
    events: int = 0
    fired: int = 0
    delivery_ids: list[str] = field(default_factory=list)
    follow_up_ids: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)


def fast_triggers(conn: Conn, chain_id: int) -> list[Any]:
    """The enabled fast triggers of a chain."""
    return [t for t in store.load_triggers(conn, chain_ids=[chain_id]) if t.is_fast]


class HeadReader:
    """Reads one chain's head for its fast triggers (see the module's docstring)."""

    def __init__(
        self,
        chain: ChainConfig,
        client: RpcClient,
        *,
        tracked: Sequence[str],
        abis: Mapping[str, list[EventAbi]] | None = None,
        max_blocks: int = MAX_BLOCKS,
    ) -> None:
        self.chain = chain
        self.client = client
        self.tracked = [a.lower() for a in tracked]
        self.abis = (
            abis
            if abis is not None
            else (abi_events(c.abi for c in chain.contracts) if chain.contracts else {})
        )
        self.max_blocks = max_blocks
        self.reader = BlockReader(client, chain.chain_id)

    def poll(self, conn: Conn, *, claim_for: str | None = None) -> HeadReport:
        """One look at the head; commits on `conn` (not in autocommit). With `claim_for`, the
        unconfirmed deliveries are created leased to that owner, who delivers them next."""
        chain_id = self.chain.chain_id
        report = HeadReport(self.chain.name)
        if self.chain.confirmations == 0 or not fast_triggers(conn, chain_id):
            # nothing to read at the head; what was read before still settles
            report.follow_up_ids = phases.settle(conn, chain_id=chain_id)
            conn.commit()
            return report
        conn.commit()
        node_head = self.client.block_number()
        confirmed = node_head - self.chain.confirmations
        report.node_head, report.confirmed_head = node_head, confirmed
        lo = max(confirmed + 1, node_head - self.max_blocks + 1, 0)
        if lo > node_head:
            return report
        numbers = list(range(lo, node_head + 1))
        headers = self.client.batch([("eth_getBlockByNumber", [hex(n), False]) for n in numbers])
        now = {
            int(h["number"], 16): str(h["hash"]).lower()
            for h in headers
            if isinstance(h, Mapping) and h.get("hash")
        }
        known = {
            int(r["block_number"]): r["block_hash"]
            for r in conn.execute(
                "SELECT block_number, block_hash FROM head_blocks WHERE chain_id = %s "
                "AND block_number >= %s",
                (chain_id, lo),
            ).fetchall()
        }
        conn.commit()  # no transaction stays open across the node's answers
        wanted = [n for n in sorted(now) if known.get(n) != now[n]]
        blocks, events = self._read(wanted)

        phases.lock_head(conn)
        checkpoint = store.get_checkpoint(conn, chain_id)
        floor = int(checkpoint["last_block_number"]) if checkpoint else -1
        replaced = {n: now[n] for n in now if n in known and known[n] != now[n]}
        report.follow_up_ids += phases.retract_replaced(conn, chain_id, replaced)
        fresh = {n: h for n, h in blocks.items() if n > floor}
        events = [e for e in events if int(e["block_number"]) in fresh]
        if events:
            # an event the confirmed pipeline already brought (a slow poll on a fast chain) was
            # evaluated, or is about to be, as confirmed: not a head event any more
            present = {
                (r["id"], r["block_hash"])
                for r in conn.execute(
                    "SELECT id, block_hash FROM events WHERE id = ANY(%s)",
                    ([e["id"] for e in events],),
                ).fetchall()
            }
            events = [e for e in events if (e["id"], e["block_hash"]) not in present]
        if fresh:
            conn.execute(
                "INSERT INTO head_blocks (chain_id, block_number, block_hash) "
                "SELECT %s, unnest(%s::bigint[]), unnest(%s::text[]) "
                "ON CONFLICT (chain_id, block_number) DO UPDATE SET "
                "block_hash = EXCLUDED.block_hash, seen_at = now()",
                (chain_id, list(fresh), list(fresh.values())),
            )
        conn.execute(
            "DELETE FROM head_blocks WHERE chain_id = %s AND block_number < %s",
            (chain_id, confirmed - KEEP_BELOW_CONFIRMED),
        )
        added = insert_head_events(conn, events)
        report.blocks_read, report.events = len(fresh), len(added)
        if added:
            report.delivery_ids, report.fired, report.failures = evaluate_at_head(
                conn, chain_id, added, claim_for=claim_for
            )
        report.follow_up_ids += phases.settle(conn, chain_id=chain_id)
        conn.commit()
        return report

    def _read(self, numbers: Sequence[int]) -> tuple[dict[int, str], list[dict[str, Any]]]:
        """{block number: hash} of the blocks read whole, and their events of interest."""
        if not numbers:
            return {}, []
        chunk = self.reader.read(numbers)
        hashes = {
            int(bi): str(h).lower()
            for bi, h in zip(chunk.blocks["_bi"], chunk.blocks["hash"], strict=True)
        }
        receipts = chunk.receipts
        if receipts.height and "blockHash" in receipts.columns:
            mixed = any(
                h is not None and str(h).lower() != hashes[int(bi)]
                for bi, h in zip(receipts["_bi"], receipts["blockHash"], strict=True)
            )
            if mixed:
                # receipts of another block than the one read (a reorg in between): nothing
                # of this read is kept, the next poll reads those heights again
                return {}, []
        logs = logs_from_rpc(chunk.blocks, receipts, self.chain.chain_id)
        frame = chain_events_frame(
            logs,
            token_transfers_frame(logs),
            contracts=self.chain.contracts,
            tracked=self.tracked,
            abis=self.abis,
        )
        numbers_by_bi = {
            int(bi): int(n, 16)
            for bi, n in zip(chunk.blocks["_bi"], chunk.blocks["number"], strict=True)
        }
        return {numbers_by_bi[bi]: h for bi, h in hashes.items()}, frame_events(frame)


def evaluate_at_head(
    conn: Conn,
    chain_id: int,
    events: Sequence[Mapping[str, Any]],
    *,
    claim_for: str | None = None,
) -> tuple[list[str], int, list[Failure]]:
    """Evaluate the chain's fast triggers on events just read at the head (`insert_head_events`
    rows) with the engine's `plan`, enqueue their unconfirmed deliveries and save the triggers'
    states, in the caller's transaction. Returns (delivery ids added, firings, failures): a
    trigger that raises on an event skips it, logged (the event is not in `events`, so
    `evaluation_failures` cannot name it)."""
    failures: list[Failure] = []
    triggers = fast_triggers(conn, chain_id)
    if not triggers or not events:
        return [], 0, failures
    states = store.lock_trigger_states(conn, [t.id for t in triggers])
    rows = [{**dict.fromkeys(EVENT_COLUMNS), **e, "seq": None} for e in events]
    deliveries, new_states, fired = plan(triggers, rows, states, failures, at_head=True)
    added = store.enqueue_deliveries(conn, deliveries, claim_for=claim_for)
    store.save_trigger_states(conn, new_states)
    for f in failures:
        log.error(
            "fast trigger %s failed on head event %s, skipped: %s",
            f.trigger_id,
            f.event_id,
            f.error,
        )
    return added, sum(fired.values()), failures


def insert_head_events(conn: Conn, events: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Store events read at the head (idempotent per event id and block hash); returns the
    rows added, normalised as `events` would hold them, in chain order."""
    rows = [store.normalize_event(e) for e in events]
    if not rows:
        return []
    payload = json.dumps(rows, default=store._json_default)
    added = {
        (r["id"], r["block_hash"])
        for r in conn.execute(
            "INSERT INTO head_events (id, block_hash, chain_id, block_number, event) "
            "SELECT e->>'id', e->>'block_hash', (e->>'chain_id')::int, "
            "(e->>'block_number')::bigint, e FROM jsonb_array_elements(%s::jsonb) AS e "
            "ON CONFLICT (id, block_hash) DO NOTHING RETURNING id, block_hash",
            (payload,),
        ).fetchall()
    }
    out = [r for r in rows if (r["id"], r["block_hash"]) in added]
    out.sort(key=lambda r: (int(r["block_number"]), int(r["log_index"])))
    return out


# ---- following the head --------------------------------------------------------------------


@dataclass
class FollowReport:
    """What following the heads did over a lifetime."""

    polls: int = 0
    events: int = 0
    fired: int = 0
    deliveries_added: int = 0
    follow_ups: int = 0
    errors: int = 0
    last_error: str = ""


def follow(
    url: str,
    readers: Sequence[HeadReader],
    *,
    stop: threading.Event,
    owner: str | None = None,
    interval: float = 0.25,
    on_deliveries: Callable[[], None] = lambda: None,
    log_fn: Callable[[str], None] = log.info,
) -> FollowReport:
    """Poll every reader's head every `interval` seconds until `stop` is set; call
    `on_deliveries` when a poll enqueued anything (the resident evaluator wakes its delivery
    threads). A node that fails is logged and asked again at the next poll."""
    from chainlake.events import db

    report = FollowReport()
    with db.connection(url) as conn:
        while not stop.is_set():
            started = time.monotonic()
            for reader in readers:
                try:
                    r = reader.poll(conn, claim_for=owner)
                except Exception as e:  # a node down must not stop the other chains
                    conn.rollback()
                    report.errors += 1
                    msg = f"head of {reader.chain.name}: {type(e).__name__}: {e}"
                    if msg != report.last_error:
                        log_fn(msg)
                    report.last_error = msg
                    continue
                report.polls += 1
                report.events += r.events
                report.fired += r.fired
                report.deliveries_added += len(r.delivery_ids)
                report.follow_ups += len(r.follow_up_ids)
                if r.delivery_ids or r.follow_up_ids:
                    on_deliveries()
            stop.wait(max(0.0, interval - (time.monotonic() - started)))
    return report


def default_readers(*, timeout: float = 5.0) -> list[HeadReader]:
    """A head reader per chain of chains.yaml with confirmations (a chain with none has no
    head past its confirmed head), tracking the wallets of portfolios.yaml."""
    from chainlake.config import load_chains
    from chainlake.portfolios import load_portfolios

    chains = load_chains()
    book = load_portfolios(chains)
    return [
        HeadReader(
            chain,
            RpcClient(
                chain.rpc_urls,
                timeout=timeout,
                max_retries=1,
                chain_id=chain.chain_id,
                batch_size=chain.batch_size,
            ),
            tracked=[w.address for w in book.tracked_wallets(name)],
        )
        for name, chain in sorted(chains.items())
        if chain.confirmations > 0
    ]
