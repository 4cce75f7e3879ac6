"""What the event and pending-action sensors decide, as plain functions.

NOTIFY is a wake-up: a sensor tick that finds nothing may wait a moment on LISTEN, but what
it requests always comes from the tables, past its cursor. So events inserted while the
daemon was down are evaluated when it comes back, once (the run key is the seq range).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from chainlake.events import store
from chainlake.events.db import Conn, scalar

EVENT_CHANNEL = "new_event"
DELIVERY_CHANNEL = "new_delivery"


@dataclass(frozen=True)
class Batch:
    """A range of event sequence numbers evaluated by one run."""

    after_seq: int  # exclusive
    up_to_seq: int  # inclusive
    count: int

    @property
    def run_key(self) -> str:
        """The run key of the batch's evaluation run, so a batch is never evaluated twice."""
        return f"events-{self.after_seq + 1}-{self.up_to_seq}"


def event_batches(conn: Conn, after_seq: int, *, batch_size: int, max_batches: int) -> list[Batch]:
    """Consecutive batches of up to `batch_size` events past `after_seq`."""
    seqs = [
        r["seq"]
        for r in conn.execute(
            "SELECT seq FROM events WHERE seq > %s ORDER BY seq LIMIT %s",
            (after_seq, batch_size * max_batches),
        ).fetchall()
    ]
    out = []
    lo = after_seq
    for i in range(0, len(seqs), batch_size):
        chunk = seqs[i : i + batch_size]
        out.append(Batch(lo, chunk[-1], len(chunk)))
        lo = chunk[-1]
    return out


def evaluated_up_to(conn: Conn) -> int:
    """The evaluation watermark (read without locking it)."""
    row = conn.execute("SELECT seq FROM evaluation_watermark").fetchone()
    return 0 if row is None else int(row["seq"])


def has_events_after(conn: Conn, after_seq: int) -> bool:
    """Whether there is any event past sequence number `after_seq`."""
    return bool(scalar(conn, "SELECT EXISTS (SELECT 1 FROM events WHERE seq > %s)", (after_seq,)))


def next_event_batches(
    conn: Conn,
    after_seq: int,
    *,
    batch_size: int = 5000,
    max_batches: int = 4,
    wait_seconds: float = 0.0,
) -> list[Batch]:
    """Batches past the cursor (or past the evaluation watermark, when evaluation runs have
    already gone further, e.g. after a lost cursor); when there are none, wait up to
    `wait_seconds` on NOTIFY (`conn` in autocommit) and look again."""
    after_seq = max(after_seq, evaluated_up_to(conn))
    batches = event_batches(conn, after_seq, batch_size=batch_size, max_batches=max_batches)
    if batches or wait_seconds <= 0:
        return batches
    if store.wait_for_notification(
        conn, EVENT_CHANNEL, wait_seconds, ready=lambda: has_events_after(conn, after_seq)
    ):
        batches = event_batches(conn, after_seq, batch_size=batch_size, max_batches=max_batches)
    return batches


# ---- pending deliveries --------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryRun:
    """A run to request that delivers the given deliveries."""

    run_key: str
    delivery_ids: tuple[str, ...]
    reason: str  # "new" | "due"


def plan_delivery_runs(
    due: Sequence[dict[str, Any]],
    cursor: dict[str, Any],
    *,
    now: float,
    grace_seconds: float = 30.0,
) -> tuple[list[DeliveryRun], dict[str, Any]]:
    """Runs to request for the due deliveries, and the next cursor.

    New deliveries (seq past the cursor) get one run, keyed by their seq range. Deliveries
    already requested once that are due again (a retry whose backoff was handed back to the
    queue, a lease that expired) are requested again at most once per `grace_seconds`, keyed by
    their ids, attempts and the time bucket, so a run still starting is not doubled every tick.
    """
    last = int(cursor.get("seq", 0))
    new = [d for d in due if int(d["seq"]) > last]
    again = [d for d in due if int(d["seq"]) <= last]
    runs: list[DeliveryRun] = []
    if new:
        lo, hi = int(new[0]["seq"]), int(new[-1]["seq"])
        runs.append(DeliveryRun(f"deliver-{lo}-{hi}", tuple(d["id"] for d in new), "new"))
    next_cursor = {"seq": max([last] + [int(d["seq"]) for d in new])}
    if again:
        bucket = int(now // grace_seconds)
        last_bucket = int(cursor.get("retry_bucket", -1))
        if bucket != last_bucket:
            ids = tuple(d["id"] for d in again)
            digest = hashlib.sha1(
                json.dumps([[d["id"], int(d["attempts"])] for d in again]).encode()
            ).hexdigest()[:16]
            runs.append(DeliveryRun(f"redeliver-{bucket}-{digest}", ids, "due"))
            next_cursor["retry_bucket"] = bucket
        else:
            next_cursor["retry_bucket"] = last_bucket
    elif "retry_bucket" in cursor:
        next_cursor["retry_bucket"] = cursor["retry_bucket"]
    return runs, next_cursor


def due_deliveries(
    conn: Conn, *, limit: int = 5000, wait_seconds: float = 0.0
) -> list[dict[str, Any]]:
    """The deliveries due now; if none, wait up to `wait_seconds` for a notification of new ones."""
    rows = store.due_deliveries(conn, limit=limit)
    if rows or wait_seconds <= 0:
        return rows
    if store.wait_for_notification(
        conn,
        DELIVERY_CHANNEL,
        wait_seconds,
        ready=lambda: bool(store.due_deliveries(conn, limit=1)),
    ):
        rows = store.due_deliveries(conn, limit=limit)
    return rows
