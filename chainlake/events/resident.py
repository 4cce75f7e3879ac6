"""The resident evaluator: one long-lived process that evaluates events as they commit.

A run per batch pays a process start and the import of the code location (seconds) before it
evaluates anything; the resident evaluator pays it once, then LISTENs on `new_event` and runs
the same `evaluate_batch` (under the same watermark lock, so it never races a batch run) as
soon as a notification arrives, handing the new deliveries to delivery threads while it goes
on evaluating.

Liveness is a session-level advisory lock, held on the evaluator's LISTEN connection: at most
one evaluator runs per database, and when its process dies PostgreSQL drops the lock with the
connection, so `chain_events_sensor` sees at once that it must launch batch runs again. The
evaluator names itself in `application_name`, which is how the sensor says which run is live.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from psycopg import sql

from chainlake.actions.deliver import Deliverer, DeliveryReport
from chainlake.events import db
from chainlake.events.db import Conn
from chainlake.events.evaluate import evaluate_batch
from chainlake.events.feed import EVENT_CHANNEL

# pg_advisory_lock(int4, int4) keys: "chainlake", "resident evaluator"
LOCK_KEYS = (0x636C, 1)
APP_PREFIX = "chainlake-evaluator:"
BATCH_LIMIT = 5000


def live_evaluator(conn: Conn) -> str | None:
    """The owner (a Dagster run id) of the evaluator holding the lock in this database, or None."""
    row = conn.execute(
        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s "
        "AND l.objsubid = 2 AND l.database = "
        "(SELECT oid FROM pg_database WHERE datname = current_database())",
        LOCK_KEYS,
    ).fetchone()
    if row is None:
        return None
    name = row["application_name"] or ""
    return name.removeprefix(APP_PREFIX) or "unknown"


@dataclass
class ResidentReport:
    """What one evaluator did in its lifetime."""

    events: int = 0
    evaluations: int = 0
    fired: int = 0
    deliveries_added: int = 0
    delivered: DeliveryReport | None = None
    seconds: float = 0.0

    def summary(self) -> dict[str, int | float]:
        d = self.delivered or DeliveryReport()
        return {
            "events": self.events,
            "evaluations": self.evaluations,
            "fired": self.fired,
            "deliveries_added": self.deliveries_added,
            "succeeded": d.succeeded,
            "failed": d.failed,
            "requeued": d.requeued,
            "seconds": round(self.seconds, 1),
        }


def serve(
    url: str,
    *,
    owner: str,
    deliverer: Deliverer,
    max_seconds: float,
    idle_wait_seconds: float = 1.0,
    delivery_threads: int = 2,
    progress_every_seconds: float = 30.0,
    log: Callable[[str], None] = print,
    should_stop: Callable[[], bool] = lambda: False,
) -> ResidentReport | None:
    """Evaluate and deliver as events commit, for `max_seconds` (or until `should_stop()`).
    Returns None, doing nothing, when another evaluator already holds the lock."""
    started = time.monotonic()
    deadline = started + max_seconds
    report = ResidentReport(delivered=DeliveryReport())
    with db.connection(url, autocommit=True) as listen:
        got = listen.execute("SELECT pg_try_advisory_lock(%s, %s) AS ok", LOCK_KEYS).fetchone()
        if not (got and got["ok"]):
            log(f"another resident evaluator is live ({live_evaluator(listen)}); leaving")
            return None
        listen.execute("SELECT set_config('application_name', %s, false)", (APP_PREFIX + owner,))
        # LISTEN before the first evaluation: an event committed in between still wakes us
        listen.execute(sql.SQL("LISTEN {}").format(sql.Identifier(EVENT_CHANNEL)))
        log(f"resident evaluator {owner} is live for {max_seconds:.0f} s")
        pending: set[Future[DeliveryReport]] = set()
        next_progress = started + progress_every_seconds

        def collect(block: bool) -> None:
            nonlocal pending
            if block:
                done, pending = wait(pending).done, set()
            else:
                done = {f for f in pending if f.done()}
                pending -= done
            for f in done:
                part = f.result()
                assert report.delivered is not None
                report.delivered.add(part)
                for line in part.errors:
                    log(f"delivery: {line}")

        with (
            db.connection(url) as conn,
            ThreadPoolExecutor(delivery_threads, thread_name_prefix="resident-deliver") as pool,
        ):
            while time.monotonic() < deadline and not should_stop():
                batch = evaluate_batch(conn, limit=BATCH_LIMIT, claim_for=owner)
                conn.commit()
                report.evaluations += 1
                report.events += batch.events
                report.fired += batch.fired
                report.deliveries_added += batch.deliveries_added
                if batch.delivery_ids:
                    pending.add(
                        pool.submit(deliverer.run, ids=list(batch.delivery_ids), owner=owner)
                    )
                collect(block=False)
                now = time.monotonic()
                if now >= next_progress:
                    log(f"resident evaluator: {report.summary()}")
                    next_progress = now + progress_every_seconds
                if batch.events >= BATCH_LIMIT:
                    continue  # more are waiting: no need for a wake-up
                # drain every notification that arrived, waiting for the first one if none did
                timeout = max(0.0, min(idle_wait_seconds, deadline - now))
                for _ in listen.notifies(timeout=timeout, stop_after=1):
                    pass
                for _ in listen.notifies(timeout=0):
                    pass
            collect(block=True)
        listen.execute("SELECT pg_advisory_unlock(%s, %s)", LOCK_KEYS)
    report.seconds = time.monotonic() - started
    log(f"resident evaluator {owner} done: {report.summary()}")
    return report
