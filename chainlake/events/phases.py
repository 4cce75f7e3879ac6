"""The phases of a fast trigger's delivery: unconfirmed, then confirmed or retracted.

A trigger with `phase: fast` is evaluated on the events `chainlake.events.head` reads past the
confirmed head (rows of `head_events`, status 'unconfirmed'); each firing is delivered at once
as the `unconfirmed` phase. Nothing here evaluates a condition again: what follows is settled
from the tables.

- *Confirmed*: the chain's events checkpoint (moved by `events/chain_events`, in the transaction
  that inserts the confirmed block's events) has reached the block, and `events` holds the same
  event id with the same block hash. Each unconfirmed delivery of it is followed by a
  `confirmed` one: same trigger, action and context, its own idempotency key, `event_id` now
  set.
- *Retracted*: the head reader saw another block at that height (`retract_replaced`), or the
  checkpoint passed the block and `events` does not hold the event with that hash (a reorg
  removed it while nobody was reading the head). Each unconfirmed delivery is followed by a
  `retracted` one.

A follow-up `follows` the unconfirmed delivery it completes: it is not claimed while that one
is pending or in progress (`store.claim_deliveries`), so a receiver gets the phases in order.
The follow-up is not a firing: the trigger's state (cooldown, rate limit, EMA) is not touched,
and `evaluate_batch` skips, for fast triggers, the confirmed events they saw at the head.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from chainlake.events.conditions import CONFIRMED, RETRACTED, UNCONFIRMED
from chainlake.events.db import Conn

# Serialises the head reader (a poll's inserts and evaluation) with the evaluation of confirmed
# events by fast triggers (per database). Lock order: evaluation watermark, this lock, head_events
# rows (always taken with SKIP LOCKED, never waited for), trigger states.
HEAD_LOCK = "chainlake.events.head"


def lock_head(conn: Conn) -> None:
    """Take the head lock until the transaction ends."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (HEAD_LOCK,))


def seen_at_head(conn: Conn, events: Sequence[Mapping[str, Any]]) -> frozenset[tuple[str, str]]:
    """(event id, block hash) of the given confirmed events that were read at the head."""
    ids = [e["id"] for e in events if e.get("block_hash")]
    if not ids:
        return frozenset()
    rows = conn.execute(
        "SELECT id, block_hash FROM head_events WHERE id = ANY(%s)", (ids,)
    ).fetchall()
    return frozenset((r["id"], r["block_hash"]) for r in rows)


def settle(conn: Conn, *, chain_id: int | None = None) -> list[str]:
    """Confirm or retract the unconfirmed head events whose block the chain's events
    checkpoint has reached, and enqueue their follow-ups. Returns the follow-ups' ids."""
    rows = conn.execute(
        "SELECT h.id, h.block_hash, e.id AS confirmed FROM head_events h "
        "JOIN checkpoints c ON c.chain_id = h.chain_id "
        "LEFT JOIN events e ON e.id = h.id AND e.block_hash = h.block_hash "
        "AND e.retracted_at IS NULL "
        "WHERE h.status = 'unconfirmed' AND h.block_number <= c.last_block_number "
        "AND (%s::int IS NULL OR h.chain_id = %s::int) "
        "ORDER BY h.seq FOR UPDATE OF h SKIP LOCKED",
        (chain_id, chain_id),
    ).fetchall()
    confirmed = [(r["id"], r["block_hash"]) for r in rows if r["confirmed"] is not None]
    gone = [(r["id"], r["block_hash"]) for r in rows if r["confirmed"] is None]
    return _settle(conn, confirmed, CONFIRMED) + _settle(conn, gone, RETRACTED)


def retract_replaced(conn: Conn, chain_id: int, canonical: Mapping[int, str]) -> list[str]:
    """The head reader found these heights ({block number: hash now}) holding another block
    than the one it read: retract the unconfirmed head events of the old blocks and enqueue
    their follow-ups. Returns the follow-ups' ids. A row another transaction is settling
    (locked) is left to it."""
    if not canonical:
        return []
    rows = conn.execute(
        "SELECT id, block_hash, block_number FROM head_events WHERE chain_id = %s "
        "AND block_number = ANY(%s) AND status = 'unconfirmed' ORDER BY seq "
        "FOR UPDATE SKIP LOCKED",
        (chain_id, list(canonical)),
    ).fetchall()
    gone = [
        (r["id"], r["block_hash"])
        for r in rows
        if canonical[int(r["block_number"])] != r["block_hash"]
    ]
    return _settle(conn, gone, RETRACTED)


def _settle(conn: Conn, keys: Iterable[tuple[str, str]], status: str) -> list[str]:
    from chainlake.events import store

    pairs = list(keys)
    if not pairs:
        return []
    ids, hashes = [p[0] for p in pairs], [p[1] for p in pairs]
    conn.execute(
        "UPDATE head_events h SET status = %s, settled_at = now() "
        "FROM unnest(%s::text[], %s::text[]) AS k(id, block_hash) "
        "WHERE h.id = k.id AND h.block_hash = k.block_hash AND h.status = 'unconfirmed'",
        (status, ids, hashes),
    )
    heads = [f"{i}@{h}" for i, h in pairs]
    firsts = conn.execute(
        "SELECT * FROM deliveries WHERE head_event = ANY(%s) AND phase = %s ORDER BY seq",
        (heads, UNCONFIRMED),
    ).fetchall()
    follow_ups = [follow_up(d, status) for d in firsts]
    return store.enqueue_deliveries(conn, follow_ups)


def follow_up(first: Mapping[str, Any], phase: str) -> dict[str, Any]:
    """The `phase` (confirmed or retracted) delivery that follows the unconfirmed `first`:
    the same trigger, action and context, its own idempotency key."""
    suffix = ":" + UNCONFIRMED
    base = str(first["id"])
    if not base.endswith(suffix):
        raise ValueError(f"delivery {base} is not an unconfirmed phase")
    key = base[: -len(suffix)] + ":" + phase
    event_id, _, _ = str(first["head_event"]).partition("@")
    ctx = {**(first["context"] or {}), "phase": phase, "idempotency_key": key}
    return {
        "id": key,
        "trigger_id": first["trigger_id"],
        "event_id": event_id if phase == CONFIRMED else None,
        "action_id": first["action_id"],
        "action_type": first["action_type"],
        "max_attempts": first["max_attempts"],
        "context": ctx,
        "phase": phase,
        "head_event": first["head_event"],
        "follows": first["id"],
    }
