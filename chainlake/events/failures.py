"""Events a trigger could not be evaluated on (`evaluation_failures`, revision 0005).

An exception while one trigger evaluates one event (an unexpected value in the event's data, a
bug in a condition) is recorded here with its error, and evaluation goes on: the other
triggers still see that event, every trigger sees the events after it, and the evaluation
watermark moves past it. `chainlake triggers reevaluate EVENT_ID` (see
`chainlake.events.evaluate.reevaluate_events`) evaluates it again after a fix.

Like `chainlake.events.store`, every function takes an open connection and leaves the
transaction to the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import sql

from chainlake.events.db import Conn

# An error is stored and shown in full up to this many characters.
MAX_ERROR_CHARS = 2000


@dataclass(frozen=True)
class Failure:
    """One trigger that could not evaluate one event."""

    event_id: str
    seq: int
    trigger_id: str
    error: str


def describe(exc: BaseException) -> str:
    """An exception as one line: its type and message (`InvalidOperation: [...]`)."""
    text = " ".join(str(exc).split())
    line = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return line[:MAX_ERROR_CHARS]


def record(conn: Conn, failures: Sequence[Failure]) -> None:
    """Record failed evaluations; a pair failing again counts one more attempt, reopened."""
    if not failures:
        return
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO evaluation_failures (event_id, trigger_id, seq, error) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (event_id, trigger_id) DO UPDATE SET "
            "error = EXCLUDED.error, attempts = evaluation_failures.attempts + 1, "
            "failed_at = now(), resolved_at = NULL",
            [(f.event_id, f.trigger_id, f.seq, f.error) for f in failures],
        )


def resolve(conn: Conn, event_id: str, trigger_ids: Sequence[str]) -> None:
    """Mark the failures of these triggers on this event resolved (evaluated at last)."""
    conn.execute(
        "UPDATE evaluation_failures SET resolved_at = now() "
        "WHERE event_id = %s AND trigger_id = ANY(%s) AND resolved_at IS NULL",
        (event_id, list(trigger_ids)),
    )


def open_failures(
    conn: Conn, *, event_ids: Sequence[str] | None = None, for_update: bool = False
) -> list[dict[str, Any]]:
    """Unresolved failures (of these events only, when given), oldest event first."""
    stmt = sql.SQL(
        "SELECT event_id, trigger_id, seq, error, attempts, failed_at FROM evaluation_failures "
        "WHERE resolved_at IS NULL AND (%s::text[] IS NULL OR event_id = ANY(%s::text[])) "
        "ORDER BY seq, trigger_id{}"
    ).format(sql.SQL(" FOR UPDATE" if for_update else ""))
    return conn.execute(stmt, (event_ids, event_ids)).fetchall()


def list_failures(
    conn: Conn, *, include_resolved: bool = False, limit: int = 100
) -> list[dict[str, Any]]:
    """The most recent failures, newest event first (unresolved only unless asked)."""
    return conn.execute(
        "SELECT event_id, trigger_id, seq, error, attempts, failed_at, resolved_at "
        "FROM evaluation_failures WHERE (%s OR resolved_at IS NULL) "
        "ORDER BY seq DESC, trigger_id LIMIT %s",
        (include_resolved, limit),
    ).fetchall()
