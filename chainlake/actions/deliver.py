"""Delivering pending actions: claim, attempt, retry with backoff, audit every attempt.

A worker claims due deliveries with a lease (`FOR UPDATE SKIP LOCKED`, so concurrent runs
share the queue without sending twice), makes an attempt, and writes one `action_results` row
per attempt in the same transaction as the delivery's new status. A retryable failure waits
out the backoff (or the receiver's `retry_after`) in the worker when the wait is short, and
otherwise goes back to the queue with `next_attempt_at`, for the pending-actions sensor to pick
up. After `max_attempts` the delivery stays `failed` until replayed.

Delivery is at least once: if a worker dies between the receiver's answer and the audit row,
the lease expires and the attempt is repeated with the same idempotency key.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from chainlake.actions.base import (
    ActionError,
    RetryPolicy,
    Secrets,
    SendContext,
    Sender,
    action_secrets,
    redact_value,
)
from chainlake.actions.discord import Discord
from chainlake.actions.mcp import McpToolCall
from chainlake.actions.outbound import OutboundPolicy, guarded_client
from chainlake.actions.policy import check_action_config
from chainlake.actions.slack import Slack
from chainlake.actions.smtp import Email
from chainlake.actions.telegram import Telegram
from chainlake.actions.webhook import RestWebhook
from chainlake.events import db, store
from chainlake.uri import redact_text

log = logging.getLogger(__name__)
# A serving worker claims few at a time: the others pick up what arrives meanwhile.
SERVE_CLAIM = 8


def default_senders(**overrides: Sender) -> dict[str, Sender]:
    """The sender of every action type, keyed by `action_type`; `overrides` replace some (tests)."""
    senders: dict[str, Sender] = {
        "rest": RestWebhook(),
        "telegram": Telegram(),
        "discord": Discord(),
        "slack": Slack(),
        "email": Email(),
        "mcp": McpToolCall(),
    }
    senders.update(overrides)
    return senders


@dataclass
class DeliveryReport:
    """Counts of one delivery pass, plus the first 20 error messages."""

    claimed: int = 0
    succeeded: int = 0
    failed: int = 0
    requeued: int = 0
    attempts: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, other: DeliveryReport) -> None:
        """Add another pass's counts to these, keeping at most 20 errors."""
        self.claimed += other.claimed
        self.succeeded += other.succeeded
        self.failed += other.failed
        self.requeued += other.requeued
        self.attempts += other.attempts
        self.errors += other.errors[: max(0, 20 - len(self.errors))]


class Wakeup:
    """Tells waiting delivery workers that new deliveries may be due. A worker notes the
    generation before it looks at the queue and waits only if no wake-up came since, so a
    wake-up sent while it was busy is never lost."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.generation = 0

    def notify(self) -> None:
        """Wake every waiting worker."""
        with self._cond:
            self.generation += 1
            self._cond.notify_all()

    def wait(self, seen: int, timeout: float) -> None:
        """Wait up to `timeout` seconds unless a wake-up came since generation `seen`."""
        with self._cond:
            if self.generation == seen:
                self._cond.wait(timeout)


@dataclass(frozen=True)
class Deliverer:
    """Delivers from the queue in `url`'s database with the given senders."""

    url: str
    senders: Mapping[str, Sender]
    secrets: Secrets = field(default_factory=Secrets)
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    job_id: str = "adhoc"
    # A retry due within this many seconds is waited for in the worker; longer waits are
    # handed back to the queue.
    max_inline_wait: float = 10.0
    lease_seconds: float = 120.0
    workers: int = 4
    batch_size: int = 50
    sleep: Callable[[float], None] = time.sleep
    http_timeout: float = 30.0
    # Addresses actions may reach; None: the operator's CHAINLAKE_ACTION_ALLOW_HOSTS, read
    # through `secrets` (see chainlake.actions.outbound).
    outbound: OutboundPolicy | None = None
    _actions: dict[int, Any] = field(default_factory=dict, repr=False)

    def run(
        self,
        *,
        ids: Sequence[str] | None = None,
        max_batches: int | None = None,
        owner: str | None = None,
    ) -> DeliveryReport:
        """Deliver what is due (only `ids` when given) until the queue has nothing due; with
        `owner`, also the deliveries leased to that owner when they were created."""
        report = DeliveryReport()
        lock = threading.Lock()
        stop = threading.Event()
        batches = [0]

        def worker(n: int) -> None:
            with self._session(n) as (name, conn, http):
                while not stop.is_set():
                    with lock:
                        if max_batches is not None and batches[0] >= max_batches:
                            return
                        batches[0] += 1
                    part = self._claim_and_deliver(conn, http, name, ids=ids, owner=owner)
                    if part is None:
                        return
                    with lock:
                        report.add(part)

        n = max(1, self.workers)
        if n == 1:
            worker(0)
        else:
            with ThreadPoolExecutor(n, thread_name_prefix="deliver") as pool:
                for f in [pool.submit(worker, i) for i in range(n)]:
                    f.result()
        return report

    def serve(self, *, owner: str, wake: Wakeup, stop: threading.Event) -> DeliveryReport:
        """Deliver continuously until `stop` is set and nothing is left: `workers` threads,
        each with its own database connection and HTTP client for its whole life, claim what
        is due (and what was leased to `owner`) and wait on `wake` when there is nothing."""
        report = DeliveryReport()
        lock = threading.Lock()

        def worker(n: int) -> None:
            with self._session(n) as (name, conn, http):
                while True:
                    seen = wake.generation
                    part = self._claim_and_deliver(
                        conn, http, name, ids=None, owner=owner, limit=SERVE_CLAIM
                    )
                    if part is not None:
                        with lock:
                            report.add(part)
                        continue
                    if stop.is_set():
                        return
                    wake.wait(seen, timeout=1.0)

        with ThreadPoolExecutor(max(1, self.workers), thread_name_prefix="deliver") as pool:
            for f in [pool.submit(worker, i) for i in range(max(1, self.workers))]:
                f.result()
        return report

    @contextmanager
    def _session(self, n: int) -> Iterator[tuple[str, Any, httpx.Client]]:
        """A worker's name, database connection and HTTP client, for the worker's life."""
        with (
            db.connection(self.url, autocommit=True) as conn,
            guarded_client(
                self.outbound or OutboundPolicy.from_env(self.secrets.getenv),
                timeout=self.http_timeout,
            ) as http,
        ):
            yield f"{self.job_id}/{n}/{uuid.uuid4().hex[:6]}", conn, http

    def _claim_and_deliver(
        self,
        conn: Any,
        http: httpx.Client,
        name: str,
        *,
        ids: Sequence[str] | None,
        owner: str | None,
        limit: int | None = None,
    ) -> DeliveryReport | None:
        """Claim one batch and deliver it; None when nothing was due."""
        claimed = store.claim_deliveries(
            conn,
            worker=name,
            limit=limit or self.batch_size,
            lease_seconds=self.lease_seconds,
            ids=ids,
            owner=owner,
        )
        if not claimed:
            return None
        part = DeliveryReport(claimed=len(claimed))
        for d in claimed:
            self._deliver_one(conn, http, d, name, part)
        return part

    def _deliver_one(
        self,
        conn: Any,
        http: httpx.Client,
        d: Mapping[str, Any],
        worker: str,
        report: DeliveryReport,
    ) -> None:
        action = self._actions.get(d["action_id"])
        if action is None:
            # an action's config is read once per run (a change applies from the next run)
            action = conn.execute(
                "SELECT config FROM trigger_actions WHERE id = %s", (d["action_id"],)
            ).fetchone()
            if action is not None:
                self._actions[d["action_id"]] = action
        if action is None:
            store.cancel_delivery(conn, d["id"], "the action was removed from its trigger")
            return
        sender = self.senders.get(d["action_type"])
        attempt = int(d["attempts"])
        max_attempts = int(d["max_attempts"])
        ctx = SendContext(
            context=d["context"], idempotency_key=d["id"], secrets=self.secrets, http=http
        )
        # Whatever an attempt's error or response says is stored, logged and shown with the
        # URLs in it redacted and the secrets this action resolves taken out.
        secrets = action_secrets(
            action["config"], self.secrets, names=getattr(sender, "implied_secrets", ())
        )
        while True:
            attempt += 1
            report.attempts += 1
            t0 = time.perf_counter()
            try:
                if sender is None:
                    raise ActionError(
                        f"no sender for action type {d['action_type']!r}", retryable=False
                    )
                # secrets, fields and hosts as the triggers file was checked for (the
                # operator's settings may have narrowed since it was applied)
                check_action_config(d["action_type"], action["config"], getenv=self.secrets.getenv)
                response = sender.send(action["config"], ctx)
            except ActionError as e:
                ms = int((time.perf_counter() - t0) * 1000)
                message = redact_text(str(e), secrets)
                failure = redact_value(e.response, secrets)
                final = not e.retryable or attempt >= max_attempts
                if final:
                    with conn.transaction():
                        store.record_attempt(
                            conn,
                            d,
                            job_id=self.job_id,
                            status="failed",
                            attempt=attempt,
                            duration_ms=ms,
                            error=message,
                            response=failure,
                        )
                    report.failed += 1
                    report.errors.append(f"{d['id']}: {message}")
                    log.warning(
                        "delivery %s failed for good after %d attempt(s): %s",
                        d["id"],
                        attempt,
                        message,
                    )
                    return
                delay = self.policy.delay(attempt, e.retry_after)
                inline = delay <= self.max_inline_wait
                with conn.transaction():
                    store.record_attempt(
                        conn,
                        d,
                        job_id=self.job_id,
                        status="retrying",
                        attempt=attempt,
                        duration_ms=ms,
                        error=message,
                        response=failure,
                        retry_in=delay,
                        worker=worker if inline else None,
                    )
                if not inline:
                    report.requeued += 1
                    return
                self.sleep(delay)
                continue
            except Exception as e:  # a bug in a sender must not kill the other deliveries
                ms = int((time.perf_counter() - t0) * 1000)
                message = redact_text(f"{type(e).__name__}: {e}", secrets)
                with conn.transaction():
                    store.record_attempt(
                        conn,
                        d,
                        job_id=self.job_id,
                        status="failed",
                        attempt=attempt,
                        duration_ms=ms,
                        error=message,
                    )
                report.failed += 1
                report.errors.append(f"{d['id']}: {message}")
                # the traceback's frames, not its message: that one is logged redacted
                log.error(
                    "delivery %s raised %s\n%s",
                    d["id"],
                    message,
                    "".join(traceback.format_tb(e.__traceback__)),
                )
                return
            ms = int((time.perf_counter() - t0) * 1000)
            with conn.transaction():
                store.record_attempt(
                    conn,
                    d,
                    job_id=self.job_id,
                    status="success",
                    attempt=attempt,
                    duration_ms=ms,
                    response=redact_value(response, secrets),
                )
            report.succeeded += 1
            return
