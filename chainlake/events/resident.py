"""The resident evaluator: one long-lived process that evaluates events as they commit.

A run per batch pays a process start and the import of the code location (seconds) before it
evaluates anything; the resident evaluator pays it once, then LISTENs on `new_event` and runs
the same `evaluate_batch` (under the same watermark lock, so it never races a batch run) as
soon as a notification arrives. The deliveries it creates are leased to it and delivered by
its own delivery threads (`Deliverer.serve`, connections and HTTP clients kept open), woken
after each evaluation, while it goes on evaluating.

Liveness is a session-level advisory lock, held on the evaluator's LISTEN connection: at most
one evaluator runs per database, and when its process dies PostgreSQL drops the lock with the
connection, so `chain_events_sensor` sees at once that it must launch batch runs again. The
evaluator names itself in `application_name`, which is how the sensor says which run is live.

Nothing here is shared between two instances on one server: the URL is the instance's events
database (`PostgresResource.database_url()`: POSTGRES_URL, else `<instance>_events` from
`chainlake.instance_names`), and the advisory lock, the NOTIFY channel and the deliveries it
leases all live in that database (PostgreSQL scopes advisory locks and notifications to one
database; `live_evaluator` looks in the current one only).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import sql

from chainlake.actions.deliver import Deliverer, DeliveryReport, Wakeup
from chainlake.events import db
from chainlake.events.db import Conn
from chainlake.events.evaluate import evaluate_batch
from chainlake.events.feed import EVENT_CHANNEL
from chainlake.events.head import FollowReport, HeadReader, follow

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
    # (trigger, event) pairs that raised, recorded in evaluation_failures and skipped
    failed_evaluations: int = 0
    delivered: DeliveryReport | None = None
    heads: FollowReport | None = None
    seconds: float = 0.0

    def summary(self) -> dict[str, int | float]:
        """The report as flat metadata (counts and seconds) for logs and run tags."""
        d = self.delivered or DeliveryReport()
        return {
            "events": self.events,
            "evaluations": self.evaluations,
            "fired": self.fired,
            "deliveries_added": self.deliveries_added,
            "failed_evaluations": self.failed_evaluations,
            "succeeded": d.succeeded,
            "failed": d.failed,
            "requeued": d.requeued,
            "head_events": self.heads.events if self.heads else 0,
            "head_fired": self.heads.fired if self.heads else 0,
            "head_follow_ups": self.heads.follow_ups if self.heads else 0,
            "seconds": round(self.seconds, 1),
        }


def serve(
    url: str,
    *,
    owner: str,
    deliverer: Deliverer,
    max_seconds: float,
    idle_wait_seconds: float = 1.0,
    progress_every_seconds: float = 30.0,
    log: Callable[[str], None] = print,
    should_stop: Callable[[], bool] = lambda: False,
    heads: Sequence[HeadReader] = (),
    head_interval: float = 0.25,
) -> ResidentReport | None:
    """Evaluate and deliver as events commit, for `max_seconds` (or until `should_stop()`).
    Returns None, doing nothing, when another evaluator already holds the lock.

    With `heads`, a thread of its own polls each chain's head every `head_interval` seconds
    for the fast triggers (`chainlake.events.head.follow`); their unconfirmed deliveries and
    follow-ups wake the delivery threads at once."""
    started = time.monotonic()
    deadline = started + max_seconds
    report = ResidentReport()
    with db.connection(url, autocommit=True) as listen:
        # named before the lock is taken: `live_evaluator` only reads the holder's name, and a
        # holder must never be seen without one
        listen.execute("SELECT set_config('application_name', %s, false)", (APP_PREFIX + owner,))
        got = listen.execute("SELECT pg_try_advisory_lock(%s, %s) AS ok", LOCK_KEYS).fetchone()
        if not (got and got["ok"]):
            log(f"another resident evaluator is live ({live_evaluator(listen)}); leaving")
            return None
        # LISTEN before the first evaluation: an event committed in between still wakes us
        listen.execute(sql.SQL("LISTEN {}").format(sql.Identifier(EVENT_CHANNEL)))
        log(f"resident evaluator {owner} is live for {max_seconds:.0f} s")
        wake, stop = Wakeup(), threading.Event()
        delivering: dict[str, Any] = {}

        def deliver() -> None:
            try:
                delivering["report"] = deliverer.serve(owner=owner, wake=wake, stop=stop)
            except BaseException as e:  # surfaced by the evaluation loop
                delivering["error"] = e

        pump = threading.Thread(target=deliver, name="resident-deliver", daemon=True)
        pump.start()
        following: dict[str, Any] = {}

        def watch_heads() -> None:
            try:
                following["report"] = follow(
                    url,
                    heads,
                    stop=stop,
                    owner=owner,
                    interval=head_interval,
                    on_deliveries=wake.notify,
                    log_fn=log,
                )
            except BaseException as e:  # surfaced when the evaluator ends
                following["error"] = e

        watcher = threading.Thread(target=watch_heads, name="resident-heads", daemon=True)
        if heads:
            watcher.start()
        next_progress = started + progress_every_seconds
        try:
            with db.connection(url) as conn:
                while time.monotonic() < deadline and not should_stop():
                    if not pump.is_alive():
                        raise RuntimeError("delivery threads died") from delivering.get("error")
                    batch = evaluate_batch(conn, limit=BATCH_LIMIT, claim_for=owner)
                    conn.commit()
                    report.evaluations += 1
                    report.events += batch.events
                    report.fired += batch.fired
                    report.deliveries_added += batch.deliveries_added
                    report.failed_evaluations += len(batch.failures)
                    for f in batch.failures:
                        log(
                            f"evaluation failed, skipped: event {f.event_id} trigger "
                            f"{f.trigger_id}: {f.error} (chainlake triggers failures)"
                        )
                    if batch.delivery_ids:
                        wake.notify()
                    now = time.monotonic()
                    if now >= next_progress:
                        log(f"resident evaluator: {report.summary()}")
                        next_progress = now + progress_every_seconds
                    if batch.events >= BATCH_LIMIT:
                        continue  # more are waiting: no need for a wake-up
                    # wait for a notification, then drain every other one that came with it
                    timeout = max(0.0, min(idle_wait_seconds, deadline - now))
                    for _ in listen.notifies(timeout=timeout, stop_after=1):
                        pass
                    for _ in listen.notifies(timeout=0):
                        pass
        finally:
            stop.set()
            wake.notify()
            if heads:
                watcher.join()
            pump.join()
        if "error" in delivering:
            raise RuntimeError("delivery threads failed") from delivering["error"]
        report.delivered = delivering["report"]
        if "error" in following:
            raise RuntimeError("head reader failed") from following["error"]
        report.heads = following.get("report")
        listen.execute("SELECT pg_advisory_unlock(%s, %s)", LOCK_KEYS)
    report.seconds = time.monotonic() - started
    log(f"resident evaluator {owner} done: {report.summary()}")
    return report
