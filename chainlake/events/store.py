"""Repository functions over the events schema: events, triggers (with conditions and
actions), trigger state, checkpoints, deliveries, action results, retention.

Every function takes an open psycopg connection (rows as dicts, see `db.connect`) and leaves
the transaction to the caller, so a match and the state it changes commit together. Values are
always bound as parameters; the few identifiers that vary are quoted with `psycopg.sql`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.types.json import Jsonb

from chainlake.events.columns import (
    ADDRESS_COLUMNS,
    EVENT_COLUMNS,
    GENERATED_COLUMNS,
    ONCHAIN_REQUIRED,
    REQUIRED,
)
from chainlake.events.conditions import RETRACTED, Action, Condition, Trigger
from chainlake.events.db import Conn

INSERT_CHUNK = 2000


def event_id(chain_id: int, block_number: int, log_index: int) -> str:
    """The id of the event of a log: `{chain_id}-{block_number}-{log_index}`."""
    return f"{int(chain_id)}-{int(block_number)}-{int(log_index)}"


def _json_default(v: Any) -> Any:
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, (dt.date, dt.datetime)):
        return v.isoformat()
    if isinstance(v, bytes):
        return "0x" + v.hex()
    raise TypeError(f"cannot store {type(v).__name__} in an event")


def normalize_event(raw: Mapping[str, Any]) -> dict[str, Any]:
    """One event row ready to insert: id computed, addresses lowercased, unknown keys moved
    into `data`. Raises ValueError naming the missing field."""
    ev: dict[str, Any] = {}
    data = dict(raw.get("data") or {})
    for k, v in raw.items():
        if k in EVENT_COLUMNS and k != "data":
            ev[k] = v
        elif k != "data" and k not in GENERATED_COLUMNS:
            data[k] = v
    for k in REQUIRED:
        if ev.get(k) is None:
            raise ValueError(f"event {raw.get('id', '?')}: field {k!r} is missing")
    if ev["registry"] != "analytics":
        for k in ONCHAIN_REQUIRED:
            if ev.get(k) is None:
                raise ValueError(f"event {raw.get('id', '?')}: field {k!r} is missing")
    if not ev.get("id"):
        if ev["registry"] == "analytics":
            raise ValueError("analytics events need an explicit id")
        ev["id"] = event_id(ev["chain_id"], ev["block_number"], ev["log_index"])
    for k in ADDRESS_COLUMNS:
        if isinstance(ev.get(k), str):
            ev[k] = ev[k].lower()
    if ev.get("amount") is not None:
        ev["amount"] = str(ev["amount"])
    ev["data"] = data
    return ev


def insert_events(conn: Conn, events: Iterable[Mapping[str, Any]]) -> list[str]:
    """Insert events idempotently (`ON CONFLICT DO NOTHING`); returns the ids actually added.

    The rows travel as one JSON document per chunk and are typed by `jsonb_to_recordset`, one
    statement and one round trip per chunk.
    """
    rows = [normalize_event(e) for e in events]
    added: list[str] = []
    cols = list(EVENT_COLUMNS)
    stmt = sql.SQL(
        "INSERT INTO events ({cols}) SELECT {cols} FROM jsonb_to_recordset(%s::jsonb) AS r({defs}) "
        "ON CONFLICT (id) DO NOTHING RETURNING id"
    ).format(
        cols=sql.SQL(", ").join(map(sql.Identifier, cols)),
        defs=sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(EVENT_COLUMNS[c])) for c in cols
        ),
    )
    for i in range(0, len(rows), INSERT_CHUNK):
        payload = json.dumps(rows[i : i + INSERT_CHUNK], default=_json_default)
        added += [r["id"] for r in conn.execute(stmt, (payload,)).fetchall()]
    return added


def read_events_after(
    conn: Conn, after_seq: int, *, limit: int = 1000, up_to_seq: int | None = None
) -> list[dict[str, Any]]:
    """Events with seq in (after_seq, up_to_seq], oldest first."""
    return conn.execute(
        "SELECT * FROM events WHERE seq > %s AND (%s::bigint IS NULL OR seq <= %s::bigint) "
        "ORDER BY seq LIMIT %s",
        (after_seq, up_to_seq, up_to_seq, limit),
    ).fetchall()


def event_seq_range(conn: Conn, after_seq: int, *, limit: int) -> tuple[int, int, int] | None:
    """(first seq, last seq, count) of up to `limit` events past `after_seq`, or None."""
    row = conn.execute(
        "SELECT min(seq) AS lo, max(seq) AS hi, count(*) AS n FROM "
        "(SELECT seq FROM events WHERE seq > %s ORDER BY seq LIMIT %s) s",
        (after_seq, limit),
    ).fetchone()
    if not row or row["n"] == 0:
        return None
    return int(row["lo"]), int(row["hi"]), int(row["n"])


def get_event(conn: Conn, id_: str) -> dict[str, Any] | None:
    """The event with id `id_`, or None."""
    return conn.execute("SELECT * FROM events WHERE id = %s", (id_,)).fetchone()


def retract_blocks(conn: Conn, chain_id: int, block_numbers: Iterable[int]) -> list[str]:
    """A reorg removed these blocks: retract their events. Returns the retraction events' ids.

    Each retracted event keeps its row, renamed `{id}@{block_hash}` (so the event decoded from
    the new canonical block can take the id) and stamped `retracted_at`; a retraction event
    (`event_type` 'retracted', `retracts` naming that row) is inserted, and deliveries not yet
    made for the retracted event are cancelled. Idempotent: an event is retracted once.
    """
    numbers = sorted({int(b) for b in block_numbers})
    if not numbers:
        return []
    victims = conn.execute(
        "SELECT * FROM events WHERE chain_id = %s AND block_number = ANY(%s) "
        "AND retracted_at IS NULL AND retracts IS NULL AND registry <> 'analytics' "
        "ORDER BY block_number, log_index FOR UPDATE",
        (chain_id, numbers),
    ).fetchall()
    return _retract(conn, victims)


def retract_off_chain(
    conn: Conn, chain_id: int, start: int, end: int, canonical: Mapping[int, str]
) -> list[str]:
    """Retract the on-chain events with a block timestamp in [start, end) whose block is not
    in `canonical` ({block_number: block_hash} of the chain as stored now for that span).

    Run when a chain-day's events are decoded again, e.g. after a reorg repair: events of
    abandoned blocks of that day go, whatever the new chain looks like. Returns the
    retraction events' ids."""
    rows = conn.execute(
        "SELECT * FROM events WHERE chain_id = %s AND timestamp >= %s AND timestamp < %s "
        "AND retracted_at IS NULL AND retracts IS NULL AND registry <> 'analytics' "
        "ORDER BY block_number, log_index FOR UPDATE",
        (chain_id, start, end),
    ).fetchall()
    victims = [r for r in rows if canonical.get(int(r["block_number"])) != r["block_hash"]]
    return _retract(conn, victims)


def _retract(conn: Conn, victims: Sequence[Mapping[str, Any]]) -> list[str]:
    out: list[dict[str, Any]] = []
    for ev in victims:
        archived = f"{ev['id']}@{ev['block_hash']}"
        conn.execute(
            "UPDATE events SET id = %s, retracted_at = now() WHERE id = %s", (archived, ev["id"])
        )
        conn.execute(
            "UPDATE deliveries SET status = 'cancelled', last_error = %s, locked_until = NULL "
            "WHERE event_id = %s AND status IN ('pending', 'in_progress')",
            (f"event retracted by a reorg of block {ev['block_number']}", archived),
        )
        retraction = {k: ev[k] for k in EVENT_COLUMNS if k in ev and k not in ("id", "data")}
        retraction.update(
            id=f"{archived}/retracted",
            event_type=RETRACTED,
            retracts=archived,
            data={**(ev.get("data") or {}), "retracted_event_type": ev["event_type"]},
        )
        out.append(retraction)
    return insert_events(conn, out) if out else []


# ---- checkpoints ---------------------------------------------------------------------------


def get_checkpoint(conn: Conn, chain_id: int) -> dict[str, Any] | None:
    """The chain's checkpoint (last block whose events are stored), or None."""
    return conn.execute("SELECT * FROM checkpoints WHERE chain_id = %s", (chain_id,)).fetchone()


def set_checkpoint(conn: Conn, chain_id: int, block_number: int, block_hash: str) -> None:
    """Record the last block whose events are in `events` (moves back after a reorg too)."""
    conn.execute(
        "INSERT INTO checkpoints (chain_id, last_block_number, last_block_hash) VALUES (%s, %s, %s) "
        "ON CONFLICT (chain_id) DO UPDATE SET last_block_number = EXCLUDED.last_block_number, "
        "last_block_hash = EXCLUDED.last_block_hash, updated_at = now()",
        (chain_id, block_number, block_hash),
    )


def advance_checkpoint(conn: Conn, chain_id: int, block_number: int, block_hash: str) -> None:
    """Move the checkpoint forward only (a backfill of an old day leaves it alone)."""
    conn.execute(
        "INSERT INTO checkpoints (chain_id, last_block_number, last_block_hash) VALUES (%s, %s, %s) "
        "ON CONFLICT (chain_id) DO UPDATE SET last_block_number = EXCLUDED.last_block_number, "
        "last_block_hash = EXCLUDED.last_block_hash, updated_at = now() "
        "WHERE checkpoints.last_block_number <= EXCLUDED.last_block_number",
        (chain_id, block_number, block_hash),
    )


# ---- users and triggers --------------------------------------------------------------------


class TriggerOwnershipError(ValueError):
    """A trigger id that another user owns was saved: refused, nothing changed."""

    def __init__(self, trigger_id: str) -> None:
        self.trigger_id = trigger_id
        super().__init__(
            f"trigger id {trigger_id!r} belongs to another user; trigger ids are their owner's, "
            "pick another id"
        )


def ensure_user(conn: Conn, username: str, email: str | None = None) -> str:
    """The id of `username`, created (without a usable password) when missing.

    A user's own session finds its own row; creating one is the engine's (a user's role has
    no INSERT on `users`, so naming another user fails with permission denied)."""
    row = conn.execute("SELECT id FROM users WHERE username = %s", (username,)).fetchone()
    if row is not None:
        return row["id"]
    row = conn.execute(
        "INSERT INTO users (username, email, password_hash) VALUES (%s, %s, '!') "
        "ON CONFLICT (username) DO UPDATE SET username = EXCLUDED.username RETURNING id",
        (username, email or f"{username}@localhost"),
    ).fetchone()
    assert row is not None
    return row["id"]


def save_trigger(conn: Conn, trigger: Trigger, *, description: str | None = None) -> None:
    """Create or replace a trigger with its conditions and actions.

    Actions are matched by name so their ids (and the idempotency keys built on them) survive
    a re-apply; conditions are replaced. The trigger's state is kept when its conditions are
    unchanged and reset otherwise (an EMA over other conditions means something else).

    A trigger id belongs to the user who created it: saving an id another user owns raises
    TriggerOwnershipError and changes nothing (the caller's transaction is to be rolled back).
    """
    upsert = (
        "INSERT INTO triggers (id, user_id, name, description, chain_id, registry, enabled, "
        "is_stateful, cooldown_seconds, phase) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, "
        "description = EXCLUDED.description, chain_id = EXCLUDED.chain_id, "
        "registry = EXCLUDED.registry, enabled = EXCLUDED.enabled, "
        "is_stateful = EXCLUDED.is_stateful, cooldown_seconds = EXCLUDED.cooldown_seconds, "
        "phase = EXCLUDED.phase WHERE triggers.user_id = EXCLUDED.user_id RETURNING id"
    )
    try:
        saved = conn.execute(
            upsert,
            (
                trigger.id,
                trigger.user_id,
                trigger.name,
                description,
                trigger.chain_id,
                trigger.registry,
                trigger.enabled,
                trigger.is_stateful,
                trigger.cooldown_seconds,
                trigger.phase,
            ),
        ).fetchone()
    except pg_errors.InsufficientPrivilege as e:
        # a user's own session: row security hides the other user's row and refuses the update
        raise TriggerOwnershipError(trigger.id) from e
    if saved is None:
        raise TriggerOwnershipError(trigger.id)
    old = [
        (r["condition_type"], r["field"], r["operator"], r["value"], r["config"] or {})
        for r in conn.execute(
            "SELECT condition_type, field, operator, value, config FROM trigger_conditions "
            "WHERE trigger_id = %s ORDER BY id",
            (trigger.id,),
        ).fetchall()
    ]
    new = [
        (c.condition_type, c.field, c.operator, c.value, dict(c.config)) for c in trigger.conditions
    ]
    if old != new:
        conn.execute("DELETE FROM trigger_conditions WHERE trigger_id = %s", (trigger.id,))
        for c in trigger.conditions:
            conn.execute(
                "INSERT INTO trigger_conditions (trigger_id, condition_type, field, operator, value, "
                "config) VALUES (%s, %s, %s, %s, %s, %s)",
                (trigger.id, c.condition_type, c.field, c.operator, c.value, Jsonb(dict(c.config))),
            )
        if old:
            # keep the cursor, so events already seen are not evaluated again
            conn.execute(
                "UPDATE trigger_state SET state_data = jsonb_build_object('last_seq', "
                "state_data->'last_seq'), last_updated = now() WHERE trigger_id = %s",
                (trigger.id,),
            )
    names = [a.name for a in trigger.actions]
    conn.execute(
        "DELETE FROM trigger_actions WHERE trigger_id = %s AND NOT (name = ANY(%s))",
        (trigger.id, names),
    )
    for a in trigger.actions:
        conn.execute(
            "INSERT INTO trigger_actions (trigger_id, name, action_type, priority, config) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (trigger_id, name) DO UPDATE SET "
            "action_type = EXCLUDED.action_type, priority = EXCLUDED.priority, config = EXCLUDED.config",
            (trigger.id, a.name, a.action_type, a.priority, Jsonb(dict(a.config))),
        )


def delete_trigger(conn: Conn, trigger_id: str) -> bool:
    """Delete a trigger; return whether it existed."""
    return conn.execute("DELETE FROM triggers WHERE id = %s", (trigger_id,)).rowcount > 0


def load_triggers(
    conn: Conn,
    *,
    chain_ids: Sequence[int] | None = None,
    enabled_only: bool = True,
    user_id: str | None = None,
) -> list[Trigger]:
    """Triggers with their conditions and actions (actions by priority, then name)."""
    rows = conn.execute(
        "SELECT * FROM triggers WHERE (%s::int[] IS NULL OR chain_id = ANY(%s::int[])) "
        "AND (NOT %s OR enabled) AND (%s::text IS NULL OR user_id = %s::text) ORDER BY id",
        (chain_ids, chain_ids, enabled_only, user_id, user_id),
    ).fetchall()
    if not rows:
        return []
    ids = [r["id"] for r in rows]
    conds: dict[str, list[Condition]] = {i: [] for i in ids}
    for c in conn.execute(
        "SELECT * FROM trigger_conditions WHERE trigger_id = ANY(%s) ORDER BY id", (ids,)
    ).fetchall():
        conds[c["trigger_id"]].append(
            Condition(c["condition_type"], c["field"], c["operator"], c["value"], c["config"] or {})
        )
    acts: dict[str, list[Action]] = {i: [] for i in ids}
    for a in conn.execute(
        "SELECT * FROM trigger_actions WHERE trigger_id = ANY(%s) ORDER BY priority, name", (ids,)
    ).fetchall():
        acts[a["trigger_id"]].append(
            Action(a["id"], a["name"], a["action_type"], a["config"], a["priority"])
        )
    return [
        Trigger(
            id=r["id"],
            name=r["name"],
            chain_id=r["chain_id"],
            registry=r["registry"],
            conditions=tuple(conds[r["id"]]),
            actions=tuple(acts[r["id"]]),
            user_id=r["user_id"],
            enabled=r["enabled"],
            cooldown_seconds=r["cooldown_seconds"],
            phase=r["phase"],
        )
        for r in rows
    ]


def lock_watermark(conn: Conn) -> int:
    """The evaluation watermark (every event up to it is evaluated), locked until the
    transaction ends: evaluations take turns, in seq order."""
    row = conn.execute("SELECT seq FROM evaluation_watermark FOR UPDATE").fetchone()
    if row is None:
        conn.execute("INSERT INTO evaluation_watermark (seq) VALUES (0) ON CONFLICT DO NOTHING")
        row = conn.execute("SELECT seq FROM evaluation_watermark FOR UPDATE").fetchone()
    assert row is not None
    return int(row["seq"])


def set_watermark(conn: Conn, seq: int) -> None:
    """Move the evaluation watermark forward to `seq` (never back)."""
    conn.execute(
        "UPDATE evaluation_watermark SET seq = greatest(seq, %s), updated_at = now()", (seq,)
    )


def lock_trigger_states(conn: Conn, trigger_ids: Sequence[str]) -> dict[str, dict]:
    """The state of each trigger, rows locked until the transaction ends (created if missing).

    Locked in id order so two evaluations of overlapping batches cannot deadlock; the second
    waits and then finds the events already recorded in `last_seq`.
    """
    if not trigger_ids:
        return {}
    ids = sorted(set(trigger_ids))
    conn.execute(
        "INSERT INTO trigger_state (trigger_id, state_data) SELECT unnest(%s::text[]), '{}'::jsonb "
        "ON CONFLICT (trigger_id) DO NOTHING",
        (ids,),
    )
    rows = conn.execute(
        "SELECT trigger_id, state_data FROM trigger_state WHERE trigger_id = ANY(%s) "
        "ORDER BY trigger_id FOR UPDATE",
        (ids,),
    ).fetchall()
    return {r["trigger_id"]: r["state_data"] for r in rows}


def save_trigger_states(conn: Conn, states: Mapping[str, Mapping[str, Any]]) -> None:
    """Write the triggers' new states (their rows locked by lock_trigger_states)."""
    with conn.cursor() as cur:
        cur.executemany(
            "UPDATE trigger_state SET state_data = %s, last_updated = now() WHERE trigger_id = %s",
            [(Jsonb(dict(s)), tid) for tid, s in states.items()],
        )


def get_trigger_state(conn: Conn, trigger_id: str) -> dict[str, Any] | None:
    """The stored state of a trigger, or None when it has none."""
    row = conn.execute(
        "SELECT state_data FROM trigger_state WHERE trigger_id = %s", (trigger_id,)
    ).fetchone()
    return None if row is None else row["state_data"]


# ---- deliveries and action results ---------------------------------------------------------

# A delivery that `follows` another (a fast trigger's confirmed or retracted message) is due
# once that one is no longer pending or in progress: `claim_deliveries` and `due_deliveries`
# say so in their SQL.


def delivery_id(trigger_id: str, event_id_: str, action_name: str) -> str:
    """The idempotency key of one (trigger, event, action)."""
    return f"{trigger_id}:{event_id_}:{action_name}"


def phased_delivery_id(
    trigger_id: str, event_id_: str, block_hash: str, action_name: str, phase: str
) -> str:
    """The idempotency key of one phase of a fast trigger's delivery: the event is named with
    its block (a reorg at the head may put another block, with a log at the same index, at
    the same height), the phase comes last:
    `{trigger}:{event}@{block_hash}:{action}:{unconfirmed|confirmed|retracted}`."""
    return f"{trigger_id}:{event_id_}@{block_hash}:{action_name}:{phase}"


def enqueue_deliveries(
    conn: Conn,
    rows: Sequence[Mapping[str, Any]],
    *,
    claim_for: str | None = None,
    lease_seconds: float = 300.0,
) -> list[str]:
    """Insert pending deliveries; an existing key is left alone. Returns the ids added.

    With `claim_for`, the new rows are created already leased to that owner (the evaluation
    run that will deliver them at once); if the owner dies, the lease expires and the
    pending-actions sensor picks them up like any other due delivery.
    """
    if not rows:
        return []
    payload = json.dumps(
        [
            {
                "id": r["id"],
                "trigger_id": r["trigger_id"],
                "event_id": r["event_id"],
                "action_id": r["action_id"],
                "action_type": r["action_type"],
                "max_attempts": r["max_attempts"],
                "context": r["context"],
                "phase": r.get("phase"),
                "head_event": r.get("head_event"),
                "follows": r.get("follows"),
            }
            for r in rows
        ],
        default=_json_default,
    )
    rows_added = conn.execute(
        "INSERT INTO deliveries (id, trigger_id, event_id, action_id, action_type, max_attempts, "
        "context, phase, head_event, follows, status, locked_by, locked_until) "
        "SELECT id, trigger_id, event_id, action_id, action_type, max_attempts, context, "
        "phase, head_event, follows, "
        "CASE WHEN %s::text IS NULL THEN 'pending' ELSE 'in_progress' END, %s::text, "
        "CASE WHEN %s::text IS NULL THEN NULL ELSE now() + make_interval(secs => %s) END "
        "FROM jsonb_to_recordset(%s::jsonb) AS r(id text, trigger_id text, event_id text, "
        "action_id integer, action_type text, max_attempts integer, context jsonb, phase text, "
        "head_event text, follows text) "
        "ON CONFLICT (id) DO NOTHING RETURNING id",
        (claim_for, claim_for, claim_for, lease_seconds, payload),
    ).fetchall()
    return [r["id"] for r in rows_added]


def claim_deliveries(
    conn: Conn,
    *,
    worker: str,
    limit: int = 100,
    lease_seconds: float = 300.0,
    ids: Sequence[str] | None = None,
    owner: str | None = None,
) -> list[dict[str, Any]]:
    """Take up to `limit` due deliveries for `worker`: pending and due, in progress with an
    expired lease (a worker that died), or already leased to `owner` (created for it by
    `enqueue_deliveries(claim_for=...)`). Concurrent claimers skip each other's rows.

    A follow-up (a fast trigger's confirmed or retracted message) waits while the delivery it
    `follows` is still pending or in progress, so a receiver never gets it first."""
    return conn.execute(
        "UPDATE deliveries d SET status = 'in_progress', locked_by = %s, "
        "locked_until = now() + make_interval(secs => %s) "
        "WHERE d.id IN (SELECT id FROM deliveries q WHERE "
        "((status = 'pending' AND next_attempt_at <= now()) "
        " OR (status = 'in_progress' AND (locked_until < now() OR locked_by = %s::text))) "
        "AND (%s::text[] IS NULL OR id = ANY(%s::text[])) AND "
        "(q.follows IS NULL OR NOT EXISTS (SELECT 1 FROM deliveries p WHERE p.id = q.follows "
        "AND p.status IN ('pending', 'in_progress'))) "
        "ORDER BY seq LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING d.*",
        (worker, lease_seconds, owner, ids, ids, limit),
    ).fetchall()


def extend_lease(conn: Conn, delivery: str, worker: str, seconds: float) -> None:
    """Keep a claimed delivery locked for another `seconds`, if `worker` still holds it."""
    conn.execute(
        "UPDATE deliveries SET locked_until = now() + make_interval(secs => %s) "
        "WHERE id = %s AND locked_by = %s",
        (seconds, delivery, worker),
    )


def record_attempt(
    conn: Conn,
    delivery: Mapping[str, Any],
    *,
    job_id: str,
    status: str,
    attempt: int,
    duration_ms: int,
    error: str | None = None,
    response: Any = None,
    retry_in: float | None = None,
    worker: str | None = None,
) -> None:
    """Write the audit row of one attempt and move the delivery on, in one transaction.

    status 'success' -> delivery succeeded; 'retrying' -> pending again after `retry_in`
    seconds (still leased to `worker` if it will wait itself); 'failed' -> failed, kept for replay.
    """
    conn.execute(
        "INSERT INTO action_results (job_id, delivery_id, trigger_id, event_id, action_type, "
        "status, duration_ms, error_message, response_data, retry_count, phase) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            job_id,
            delivery["id"],
            delivery["trigger_id"],
            delivery["event_id"],
            delivery["action_type"],
            status,
            duration_ms,
            error,
            None
            if response is None
            else Jsonb(json.loads(json.dumps(response, default=_json_default))),
            attempt - 1,
            delivery.get("phase"),
        ),
    )
    if status == "success":
        conn.execute(
            "UPDATE deliveries SET status = 'succeeded', attempts = %s, delivered_at = now(), "
            "last_error = NULL, locked_until = NULL, locked_by = NULL WHERE id = %s",
            (attempt, delivery["id"]),
        )
    elif status == "retrying":
        conn.execute(
            "UPDATE deliveries SET status = CASE WHEN %s::text IS NULL THEN 'pending' "
            "ELSE 'in_progress' END, attempts = %s, last_error = %s, "
            "next_attempt_at = now() + make_interval(secs => %s), "
            "locked_until = CASE WHEN %s::text IS NULL THEN NULL "
            "ELSE now() + make_interval(secs => %s + 60) END, locked_by = %s WHERE id = %s",
            (worker, attempt, error, retry_in or 0, worker, retry_in or 0, worker, delivery["id"]),
        )
    else:
        conn.execute(
            "UPDATE deliveries SET status = 'failed', attempts = %s, last_error = %s, "
            "locked_until = NULL, locked_by = NULL WHERE id = %s",
            (attempt, error, delivery["id"]),
        )


def release_delivery(conn: Conn, delivery_id_: str, worker: str) -> None:
    """Give a leased delivery back to the queue (it becomes due at its next_attempt_at)."""
    conn.execute(
        "UPDATE deliveries SET status = 'pending', locked_until = NULL, locked_by = NULL "
        "WHERE id = %s AND locked_by = %s AND status = 'in_progress'",
        (delivery_id_, worker),
    )


def cancel_delivery(conn: Conn, delivery_id_: str, reason: str) -> None:
    """Cancel a delivery, recording `reason` as its last error."""
    conn.execute(
        "UPDATE deliveries SET status = 'cancelled', last_error = %s, locked_until = NULL, "
        "locked_by = NULL WHERE id = %s",
        (reason, delivery_id_),
    )


def replay_deliveries(
    conn: Conn,
    *,
    ids: Sequence[str] | None = None,
    statuses: Sequence[str] = ("failed",),
    trigger_id: str | None = None,
) -> list[str]:
    """Make failed (or cancelled, or even succeeded) deliveries pending again with a fresh
    attempt budget; earlier attempts stay in action_results. Returns the ids replayed."""
    rows = conn.execute(
        "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = now(), "
        "locked_until = NULL, locked_by = NULL "
        "WHERE status = ANY(%s) AND (%s::text[] IS NULL OR id = ANY(%s::text[])) "
        "AND (%s::text IS NULL OR trigger_id = %s::text) RETURNING id",
        (list(statuses), ids, ids, trigger_id, trigger_id),
    ).fetchall()
    return [r["id"] for r in rows]


def due_deliveries(conn: Conn, *, limit: int = 1000) -> list[dict[str, Any]]:
    """What the pending-actions sensor looks at: due, unclaimed (or abandoned) deliveries."""
    return conn.execute(
        "SELECT id, seq, attempts, status FROM deliveries q WHERE "
        "((status = 'pending' AND next_attempt_at <= now()) "
        "OR (status = 'in_progress' AND locked_until < now())) AND "
        "(q.follows IS NULL OR NOT EXISTS (SELECT 1 FROM deliveries p WHERE p.id = q.follows "
        "AND p.status IN ('pending', 'in_progress'))) "
        "ORDER BY seq LIMIT %s",
        (limit,),
    ).fetchall()


def next_due_in(conn: Conn) -> float | None:
    """Seconds until the earliest pending delivery is due (negative: overdue); None if none."""
    row = conn.execute(
        "SELECT extract(epoch FROM min(next_attempt_at) - now())::float8 AS s FROM deliveries "
        "WHERE status = 'pending'"
    ).fetchone()
    return None if row is None or row["s"] is None else float(row["s"])


def list_deliveries(
    conn: Conn,
    *,
    status: str | None = None,
    trigger_id: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """The most recent deliveries, optionally of one status or trigger."""
    return conn.execute(
        "SELECT id, trigger_id, event_id, action_type, status, attempts, max_attempts, "
        "last_error, created_at, delivered_at, phase FROM deliveries "
        "WHERE (%s::text IS NULL OR status = %s::text) AND (%s::text IS NULL OR trigger_id = %s::text) "
        "ORDER BY seq DESC LIMIT %s",
        (status, status, trigger_id, trigger_id, limit),
    ).fetchall()


def action_results_for(conn: Conn, delivery_id_: str) -> list[dict[str, Any]]:
    """The recorded attempts of a delivery, oldest first."""
    return conn.execute(
        "SELECT * FROM action_results WHERE delivery_id = %s ORDER BY executed_at, retry_count",
        (delivery_id_,),
    ).fetchall()


# ---- upkeep --------------------------------------------------------------------------------

EVENTS_RETENTION_DAYS = 365
ACTION_RESULTS_RETENTION_DAYS = 90


def apply_retention(
    conn: Conn,
    *,
    now: dt.datetime,
    events_days: int = EVENTS_RETENTION_DAYS,
    action_results_days: int = ACTION_RESULTS_RETENTION_DAYS,
) -> dict[str, int]:
    """Delete events and action results older than their retention, measured from `now` (the
    schedule's tick time, so a late run deletes what the tick meant), and the events read at
    the head (fast triggers) settled before the events' retention; an unconfirmed one stays
    until it is settled."""
    ar = conn.execute(
        "DELETE FROM action_results WHERE executed_at < %s",
        (now - dt.timedelta(days=action_results_days),),
    ).rowcount
    ev = conn.execute(
        "DELETE FROM events WHERE created_at < %s", (now - dt.timedelta(days=events_days),)
    ).rowcount
    head = conn.execute(
        "DELETE FROM head_events WHERE status <> 'unconfirmed' AND settled_at < %s",
        (now - dt.timedelta(days=events_days),),
    ).rowcount
    return {"events": ev, "action_results": ar, "head_events": head}


def refresh_views(conn: Conn) -> None:
    """Refresh the hourly views. Needs autocommit (CONCURRENTLY cannot run in a transaction)."""
    for view in ("events_hourly", "action_metrics_hourly"):
        conn.execute(
            sql.SQL("REFRESH MATERIALIZED VIEW CONCURRENTLY {}").format(sql.Identifier(view))
        )


def wait_for_notification(
    conn: Conn,
    channel: str,
    timeout: float,
    ready: Callable[[], bool] | None = None,
) -> bool:
    """LISTEN on `channel`; return at once if `ready()` already holds, else wait up to `timeout`
    seconds for one notification. `conn` must be in autocommit. A hint only: callers read the
    table either way (listening before `ready()` means a row committed in between still wakes us).
    """
    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
    try:
        if ready is not None and ready():
            return True
        for _ in conn.notifies(timeout=timeout, stop_after=1):
            return True
        return False
    finally:
        conn.execute(sql.SQL("UNLISTEN {}").format(sql.Identifier(channel)))
