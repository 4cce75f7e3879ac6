"""The resident evaluator: one long-lived run evaluates events as they commit and delivers
their actions; while it is live chain_events_sensor launches nothing, and when it ends the
batch path takes over again. Real PostgreSQL and a real HTTP receiver."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import dagster as dg
import pytest
from triggers_helpers import database, feedback, receiver, wait_until

from chainlake.actions.deliver import Deliverer
from chainlake.events import db, store
from chainlake.events.resident import live_evaluator, serve
from chainlake.events.spec import Resolver, apply_spec, parse_spec
from pipelines.triggers import resident_evaluator_job
from resources.notifiers import NotifiersResource
from resources.postgres import PostgresResource
from sensors import resident_evaluator as keeper
from sensors.chain_events import chain_events_sensor
from sensors.resident_evaluator import START_GRACE, resident_evaluator_sensor

pytestmark = pytest.mark.integration

TRIGGERS = {
    "user": "ops",
    "triggers": [
        {
            "id": "low-score",
            "chain_id": 31337,
            "registry": "reputation",
            "conditions": [{"type": "score_threshold", "operator": "lt", "value": 30}],
            "actions": [{"name": "hook", "type": "rest", "url": "${HOOK_URL}/score"}],
        }
    ],
}
LIFETIME = 12


def test_resident_evaluator_delivers_as_events_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    with database() as url, receiver() as rec:
        monkeypatch.setenv("HOOK_URL", rec.url)
        with db.connection(url) as c:
            apply_spec(c, parse_spec(TRIGGERS, resolver=Resolver()))
        resources: dict[str, Any] = {
            "postgres": PostgresResource(url=url),
            "notifiers": NotifiersResource(workers=2),
        }
        instance = dg.DagsterInstance.ephemeral()

        def tick(sensor: Any, cursor: str | None = None) -> dg.SensorResult:
            ctx = dg.build_sensor_context(cursor=cursor, resources=resources, instance=instance)
            return sensor(ctx)

        # nothing live: the keeper asks for a run with the configured lifetime
        [request] = tick(resident_evaluator_sensor).run_requests or []
        assert request.run_config["ops"]["serve_triggers"]["config"] == {"max_seconds": 3600}

        seen: dict[str, Any] = {}

        def while_live() -> None:
            with db.connection(url, autocommit=True) as c:
                seen["live"] = wait_until(lambda: live_evaluator(c) is not None, 60)
                seen["owner"] = live_evaluator(c)
            # a second evaluator finds the lock taken and leaves at once
            seen["second"] = serve(
                url, owner="second", deliverer=Deliverer(url=url, senders={}), max_seconds=30
            )
            seen["keeper"] = tick(resident_evaluator_sensor).skip_reason.skip_message
            with db.connection(url) as c:  # committed one at a time, as blocks arrive
                for block in range(10, 16):
                    store.insert_events(c, [feedback(block, score=1 if block != 12 else 90)])
                    c.commit()
            seen["delivered"] = wait_until(lambda: len(rec.requests) == 5, 30)
            after = tick(chain_events_sensor)
            seen["batch_requests"] = list(after.run_requests or [])
            seen["batch_cursor"] = after.cursor
            seen["batch_skip"] = after.skip_reason.skip_message

        helper = threading.Thread(target=while_live)
        helper.start()
        result = resident_evaluator_job.execute_in_process(
            run_config={"ops": {"serve_triggers": {"config": {"max_seconds": LIFETIME}}}},
            resources=resources,
            instance=instance,
        )
        helper.join()

        assert seen["live"] and seen["owner"] == result.run_id
        assert seen["second"] is None
        assert seen["keeper"] == f"run {result.run_id} is live"
        assert seen["delivered"], rec.requests
        assert sorted(rec.by_key()) == [f"low-score:31337-{b}-0:hook" for b in (10, 11, 13, 14, 15)]
        assert set(rec.by_key().values()) == {1}
        # the batch sensor stood aside and followed the evaluation watermark
        assert seen["batch_requests"] == []
        assert seen["batch_cursor"] == "6"
        assert f"resident evaluator (run {result.run_id}) is live" in seen["batch_skip"]
        summary = result.output_for_node("serve_triggers")
        assert (summary["events"], summary["fired"], summary["succeeded"]) == (6, 5, 5)
        with db.connection(url) as c:
            statuses = [r["status"] for r in store.list_deliveries(c)]
        assert statuses == ["succeeded"] * 5

        # the run is over and its lock gone: new events go the batch way again, once
        with db.connection(url, autocommit=True) as c:
            assert live_evaluator(c) is None
            store.insert_events(c, [feedback(20, score=2)])
        [batch] = tick(chain_events_sensor, cursor="6").run_requests or []
        assert batch.run_key == "events-7-7"
        assert tick(resident_evaluator_sensor).run_requests

        # a run yet to start will start: no second request; a started run that never took the lock
        # is taken for dead once its grace period is over
        queued = instance.create_run_for_job(
            job_def=resident_evaluator_job, status=dg.DagsterRunStatus.NOT_STARTED
        )
        assert not tick(resident_evaluator_sensor).run_requests
        instance.handle_run_event(
            queued.run_id,
            dg.DagsterEvent(
                event_type_value=dg.DagsterEventType.RUN_START.value,
                job_name=resident_evaluator_job.name,
            ),
        )
        assert not tick(resident_evaluator_sensor).run_requests
        later = time.time() + START_GRACE + 1
        monkeypatch.setattr(keeper, "time", SimpleNamespace(time=lambda: later))
        assert tick(resident_evaluator_sensor).run_requests
