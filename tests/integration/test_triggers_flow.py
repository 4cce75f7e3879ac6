"""End to end through Dagster: events inserted -> chain_events_sensor -> evaluate_triggers_job ->
pending_actions_sensor -> deliver_actions_job -> a real HTTP receiver, once per (trigger, event,
action); also when the sensors were not running while the events arrived."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import dagster as dg
import pytest
from triggers_helpers import CHAIN, WALLET, database, feedback, receiver, transfer

from chainlake.events import db, retract_blocks, store
from chainlake.events.evaluate import evaluate_batch
from chainlake.events.spec import Resolver, apply_spec, parse_spec
from pipelines.triggers import deliver_actions_job, evaluate_triggers_job
from resources.notifiers import NotifiersResource
from resources.postgres import PostgresResource
from sensors.chain_events import chain_events_sensor
from sensors.pending_actions import pending_actions_sensor

pytestmark = pytest.mark.integration

TRIGGERS = {
    "user": "ops",
    "triggers": [
        {
            "id": "low-score",
            "chain": "devnet",
            "registry": "reputation",
            "conditions": [{"type": "score_threshold", "operator": "lt", "value": 30}],
            "actions": [
                {
                    "name": "hook",
                    "type": "rest",
                    "url": "${HOOK_URL}/score",
                    "body_template": {
                        "agent": "{agent_id}",
                        "score": "{score}",
                        "event": "{event_id}",
                    },
                }
            ],
        },
        {
            "id": "big-in",
            "chain": "devnet",
            "registry": "erc20",
            "conditions": [
                {"type": "address_in", "field": "to_address", "value": "tracked"},
                {
                    "type": "amount_threshold",
                    "operator": "gte",
                    "value": 1000,
                    "config": {"decimals": 18},
                },
            ],
            "actions": [{"name": "hook", "type": "rest", "url": "${HOOK_URL}/transfer"}],
        },
        {
            "id": "reorged",
            "chain": "devnet",
            "registry": "erc20",
            "conditions": [{"type": "event_type_equals", "value": "retracted"}],
            "actions": [
                {
                    "name": "hook",
                    "type": "rest",
                    "url": "${HOOK_URL}/reorg",
                    "body_template": {"gone": "{retracts}"},
                }
            ],
        },
    ],
}
RESOLVER = Resolver({"devnet": CHAIN}, lambda name, cid: [WALLET])


class Engine:
    """Ticks the sensors and executes the runs they request, as the daemon would."""

    def __init__(self, url: str, *, inline: bool = True) -> None:
        self.url = url
        self.inline = inline
        self.resources: dict[str, Any] = {
            "postgres": PostgresResource(url=url),
            "notifiers": NotifiersResource(
                base_delay_seconds=0.05, max_inline_wait_seconds=2.0, workers=2
            ),
        }
        self.instance = dg.DagsterInstance.ephemeral()
        self.events_cursor: str | None = None
        self.actions_cursor: str | None = None
        self.run_keys: set[str] = set()

    def tick_events(self) -> list[dg.RunRequest]:
        ctx = dg.build_sensor_context(
            cursor=self.events_cursor, resources=self.resources, instance=self.instance
        )
        result = chain_events_sensor(ctx)
        self.events_cursor = result.cursor
        return list(result.run_requests or [])

    def tick_actions(self) -> list[dg.RunRequest]:
        ctx = dg.build_sensor_context(
            cursor=self.actions_cursor, resources=self.resources, instance=self.instance
        )
        result = pending_actions_sensor(ctx)
        self.actions_cursor = result.cursor
        return list(result.run_requests or [])

    def execute(self, job: dg.JobDefinition, request: dg.RunRequest) -> dict[str, Any]:
        # the daemon launches a run key once
        assert request.run_key not in self.run_keys, request.run_key
        self.run_keys.add(request.run_key)
        run_config = dict(request.run_config or {})
        if job is evaluate_triggers_job and not self.inline:
            run_config["ops"]["evaluate_triggers"]["config"]["deliver_inline"] = False
        res = job.execute_in_process(
            run_config=run_config,
            resources=self.resources,
            instance=self.instance,
            tags=request.tags,
        )
        assert res.success
        return res.output_for_node(job.nodes[0].name)

    def cycle(self) -> tuple[list[dict], list[dict]]:
        """One pass of both sensors; `delivered` counts what reached receivers in this pass,
        whichever run delivered it (the evaluation run inline, or a delivery run)."""
        evaluated = [self.execute(evaluate_triggers_job, r) for r in self.tick_events()]
        delivered = [self.execute(deliver_actions_job, r) for r in self.tick_actions()]
        inline = [{"succeeded": e.get("succeeded", 0)} for e in evaluated if e.get("succeeded")]
        return evaluated, inline + delivered


@pytest.fixture
def url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with database() as u:
        with db.connection(u) as c:
            apply_spec(c, parse_spec(TRIGGERS, resolver=RESOLVER))
        yield u


@pytest.mark.parametrize("inline", [True, False], ids=["inline", "via-pending-sensor"])
def test_events_to_deliveries_once(url: str, monkeypatch: pytest.MonkeyPatch, inline: bool) -> None:
    with receiver() as rec:
        monkeypatch.setenv("HOOK_URL", rec.url)
        engine = Engine(url, inline=inline)
        with db.connection(url) as c:
            store.insert_events(
                c,
                [
                    feedback(10, score=12),
                    feedback(11, score=80),
                    feedback(12, agent_id=2, score=29),
                    transfer(13, 1500 * 10**18),
                    transfer(14, 999 * 10**18),
                    transfer(15, 5000 * 10**18, to="0x" + "01" * 20),
                ],
            )
        evaluated, delivered = engine.cycle()
        assert [e["deliveries_added"] for e in evaluated] == [3]
        assert [d["succeeded"] for d in delivered] == [3]
        assert sorted((r.path, r.headers["idempotency-key"]) for r in rec.requests) == [
            ("/score", "low-score:31337-10-0:hook"),
            ("/score", "low-score:31337-12-0:hook"),
            ("/transfer", "big-in:31337-13-0:hook"),
        ]
        score = next(
            r for r in rec.requests if r.headers["idempotency-key"] == "low-score:31337-10-0:hook"
        )
        assert score.body == {"agent": 1, "score": 12, "event": "31337-10-0"}

        # Nothing new: the sensors skip, and running the same evaluation again adds nothing.
        assert engine.tick_events() == [] and engine.tick_actions() == []
        with db.connection(url) as c:
            assert evaluate_batch(c).deliveries_added == 0
        assert len(rec.requests) == 3

        # A reorg removes block 13: the retraction is an event and reaches its trigger.
        with db.connection(url) as c:
            retract_blocks(c, CHAIN, [13])
        evaluated, delivered = engine.cycle()
        assert [d["succeeded"] for d in delivered] == [1]
        assert rec.requests[-1].path == "/reorg" and rec.requests[-1].body == {
            "gone": f"31337-13-0@0x{13:064x}"
        }
        assert max(rec.by_key().values()) == 1


def test_events_inserted_while_no_sensor_runs_are_delivered_once_later(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with receiver() as rec:
        monkeypatch.setenv("HOOK_URL", rec.url)
        engine = Engine(url)
        with db.connection(url) as c:
            store.insert_events(c, [feedback(20, score=1)])
        engine.cycle()
        assert len(rec.requests) == 1

        # "daemon down": events keep arriving, nobody ticks
        for block in range(21, 61):
            with db.connection(url) as c:
                store.insert_events(c, [feedback(block, score=block % 30)])
        # back up: one tick sees everything past its cursor
        evaluated, delivered = engine.cycle()
        assert sum(e["events"] for e in evaluated) == 40
        assert sum(d["succeeded"] for d in delivered) == 40
        # a second engine starting from scratch (cursor lost) starts from the evaluation
        # watermark: nothing to request, nothing delivered twice
        fresh = Engine(url)
        assert fresh.tick_events() == [] and fresh.tick_actions() == []
        assert len(rec.requests) == 41 and set(rec.by_key().values()) == {1}


def test_runs_that_start_out_of_order_lose_nothing(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run queue may start a later batch's run first: it evaluates the earlier events too,
    and the earlier batch's run finds nothing left (no event skipped, none twice)."""
    from chainlake.events.feed import Batch
    from sensors.chain_events import evaluate_run_request

    with receiver() as rec:
        monkeypatch.setenv("HOOK_URL", rec.url)
        engine = Engine(url)
        with db.connection(url) as c:
            store.insert_events(c, [feedback(b, score=1) for b in range(100, 110)])
        later = engine.execute(evaluate_triggers_job, evaluate_run_request(Batch(5, 10, 5)))
        earlier = engine.execute(evaluate_triggers_job, evaluate_run_request(Batch(0, 5, 5)))
        assert (later["events"], later["succeeded"]) == (10, 10)
        assert (earlier["events"], earlier["deliveries_added"]) == (0, 0)
        assert len(rec.requests) == 10 and set(rec.by_key().values()) == {1}


@pytest.fixture
def waiting_engine(url: str) -> Engine:
    engine = Engine(url)
    engine.resources["postgres"] = PostgresResource(url=url, notify_wait_seconds=8.0)
    return engine


def test_a_tick_with_nothing_to_do_wakes_on_notify(url: str, waiting_engine: Engine) -> None:
    def later() -> None:
        time.sleep(0.5)
        with db.connection(url) as c:
            store.insert_events(c, [feedback(70, score=3)])

    t = threading.Thread(target=later)
    started = time.monotonic()
    t.start()
    requests = waiting_engine.tick_events()
    elapsed = time.monotonic() - started
    t.join()
    assert [r.run_key for r in requests] == ["events-1-1"]
    assert 0.4 < elapsed < 5, elapsed


def test_demo_section_applies_the_example_triggers_and_lists_deliveries(
    url: str, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    from tools.demo_triggers import summary

    treasury = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"  # tracked in config/portfolios.yaml
    monkeypatch.setenv("POSTGRES_URL", url)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.delenv("CHAINS_CONFIG", raising=False)
    monkeypatch.delenv("PORTFOLIOS_CONFIG", raising=False)
    with db.connection(url) as c:
        store.insert_events(c, [transfer(80, 2500 * 10**18, to=treasury), feedback(81, score=5)])
    lines = summary([])
    text = "\n".join(lines)
    assert "triggers: 11 applied from config/triggers.yaml" in lines[0]
    assert "-> large-transfer-in:31337-80-0:webhook: 2500 tokens" in text
    assert "-> low-feedback-score:31337-81-0:webhook: agent 1 got score 5" in text
    again = "\n".join(summary([]))
    assert "delivered in an earlier demo run" in again


def test_no_new_evaluation_run_while_one_waits_to_start(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under load the queue holds runs back; a waiting run will take every event present when it
    starts, so the sensor does not pile more runs behind it."""
    with receiver() as rec:
        monkeypatch.setenv("HOOK_URL", rec.url)
        engine = Engine(url)
        with db.connection(url) as c:
            store.insert_events(c, [feedback(200, score=1)])
        [first] = engine.tick_events()
        queued = engine.instance.create_run_for_job(
            job_def=evaluate_triggers_job,
            run_config=first.run_config,
            status=dg.DagsterRunStatus.NOT_STARTED,
        )
        with db.connection(url) as c:
            store.insert_events(c, [feedback(201, score=2), feedback(202, score=3)])
        assert engine.tick_events() == []  # one is waiting: it will take these too
        out = engine.execute(evaluate_triggers_job, first)  # "the queued run starts"
        assert (out["events"], out["succeeded"]) == (3, 3)
        engine.instance.delete_run(queued.run_id)
        assert engine.tick_events() == []  # nothing left past the watermark
        assert len(rec.requests) == 3


def test_replay_from_the_ui_and_the_maintenance_schedule(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the UI launches: deliver_actions_job with replay_failed; and the retention schedule's
    run (as of its tick time) through events_maintenance_job."""
    import datetime as dt

    from pipelines.triggers import events_maintenance_job, events_retention_schedule

    with receiver(responses=[(500, {}, None)] * 5) as rec:
        monkeypatch.setenv("HOOK_URL", rec.url)
        engine = Engine(url)
        with db.connection(url) as c:
            store.insert_events(c, [feedback(300, score=1)])
        [req] = engine.tick_events()
        out = engine.execute(evaluate_triggers_job, req)
        assert out["failed"] == 1 and len(rec.requests) == 5  # max_attempts 5, all refused
        res = deliver_actions_job.execute_in_process(
            run_config={"ops": {"deliver_actions": {"config": {"replay_failed": True}}}},
            resources=engine.resources,
            instance=engine.instance,
        )
        assert res.output_for_node("deliver_actions")["succeeded"] == 1 and len(rec.requests) == 6

    tick = dt.datetime(2026, 11, 22, 2, 15, tzinfo=dt.UTC)
    request = events_retention_schedule(dg.build_schedule_context(scheduled_execution_time=tick))
    config = request.run_config["ops"]["events_maintenance"]["config"]
    assert config == {"retention": True, "as_of": tick.isoformat()}
    res = events_maintenance_job.execute_in_process(
        run_config=request.run_config, resources=engine.resources, instance=engine.instance
    )
    assert res.output_for_node("events_maintenance") == {
        "events": 0,
        "action_results": 0,
        "head_events": 0,
    }
    with db.connection(url) as c:
        assert db.scalar(c, "SELECT count(*) FROM action_metrics_hourly") >= 1
