"""The trigger engine's part of `make demo`: after the chain-days are materialised (which put the
local chain's events of interest into PostgreSQL), apply config/triggers.yaml, run the
evaluation through Dagster (the same job the sensor launches, so the runs show in the UI) and
list what reached a webhook receiver started here on 127.0.0.1.

`tools.demo` calls `summary(days)` with its other sections.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

TRIGGERS_FILE = Path("config/triggers.yaml")
MAX_LINES = 25


class _Receiver:
    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode(errors="replace")
                outer.received.append({"key": self.headers.get("idempotency-key"), "body": body})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def summary(days: list[dt.date]) -> list[str]:
    """Apply the triggers file, evaluate every stored event in one Dagster run and describe what the
    webhook receiver got, as lines of the demo's summary (`days` are the demo's chain-days).
    """
    import dagster as dg

    from chainlake.events import db, store
    from chainlake.events.spec import apply_spec, default_resolver, load_spec
    from chainlake.instance_names import events_postgres_url
    from pipelines.resources import RESOURCES
    from pipelines.triggers import evaluate_triggers_job
    from resources.postgres import PostgresResource
    from tools.demo_console import run_quietly

    receiver = _Receiver()
    os.environ["CHAINLAKE_ACTION_SECRET_WEBHOOK_URL"] = receiver.url
    # the demo's receiver listens on 127.0.0.1: the operator's allow-list lets actions reach it
    os.environ["CHAINLAKE_ACTION_ALLOW_HOSTS"] = "127.0.0.1,::1"
    try:
        url = events_postgres_url()  # POSTGRES_URL, else the instance's own
        db.ensure_schema(url)
        spec = load_spec(TRIGGERS_FILE, resolver=default_resolver())
        with db.connection(url) as conn:
            apply_spec(conn, spec)
            last = db.scalar(conn, "SELECT coalesce(max(seq), 0) FROM events")
            by_registry = conn.execute(
                "SELECT registry, count(*) AS n FROM events WHERE retracted_at IS NULL "
                "GROUP BY registry ORDER BY registry"
            ).fetchall()
        result = run_quietly(
            evaluate_triggers_job,
            run_config={
                "ops": {"evaluate_triggers": {"config": {"after_seq": 0, "up_to_seq": last}}}
            },
            instance=dg.DagsterInstance.get(),
            resources={"notifiers": RESOURCES["notifiers"], "postgres": PostgresResource(url=url)},
            tags={"chainlake/demo": "triggers"},
        )
        if not result.success:
            errors = [e.step_failure_data.error for e in result.all_events if e.is_step_failure]
            cause = errors[0] if errors else None
            while cause is not None and cause.cause is not None:
                cause = cause.cause  # past Dagster's wrappers to the op's own exception
            raise RuntimeError(
                "the trigger evaluation run failed: "
                + (f"{cause.cls_name}: {cause.message.strip()}" if cause else "see the log")
            )
        out = result.output_for_node("evaluate_triggers")
        with db.connection(url) as conn:
            done = store.list_deliveries(conn, status="succeeded", limit=1000)
            failed = store.list_deliveries(conn, status="failed", limit=1000)
    finally:
        receiver.close()
    counts = ", ".join(f"{r['registry']} {r['n']}" for r in by_registry) or "none"
    lines = [
        f"triggers: {len(spec.triggers)} applied from {TRIGGERS_FILE}; events in PostgreSQL: {counts}",
        f"  evaluation run: {out.get('events', 0)} events, {out.get('fired', 0)} firings, "
        f"{out.get('succeeded', 0)} delivered now to {receiver.url}"
        + (
            f", {len(failed)} failed (chainlake triggers deliveries --status failed)"
            if failed
            else ""
        ),
    ]
    for r in receiver.received[:MAX_LINES]:
        body = r["body"] if isinstance(r["body"], dict) else {"text": r["body"]}
        lines.append(f"  -> {r['key']}: {body.get('text', body)}")
    if len(receiver.received) > MAX_LINES:
        lines.append(f"  ... and {len(receiver.received) - MAX_LINES} more")
    if not receiver.received and done:
        lines.append(
            f"  (delivered in an earlier demo run: {len(done)}; `chainlake triggers deliveries`)"
        )
    return lines
