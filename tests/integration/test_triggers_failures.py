"""One event that cannot be evaluated never stops the others: it is recorded as failed with its
error, the watermark moves past it, the good events around it are delivered, and it is
evaluated again (and delivered) once the cause is fixed."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from click.testing import CliRunner
from triggers_helpers import CHAIN, WALLET, database, feedback, receiver

from chainlake.actions.base import RetryPolicy, Secrets
from chainlake.actions.deliver import Deliverer, default_senders
from chainlake.events import conditions, db, store
from chainlake.events.evaluate import evaluate_batch, reevaluate_events
from chainlake.events.failures import open_failures
from chainlake.events.spec import Resolver, apply_spec, parse_spec
from cli.main import main

pytestmark = pytest.mark.integration
RESOLVER = Resolver({"devnet": CHAIN}, lambda name, cid: [WALLET])


@pytest.fixture
def url() -> Iterator[str]:
    with database() as u:
        yield u


@pytest.fixture
def poisoned(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """score_threshold raises on an event whose data carries `poison` (what an unexpected
    value in an event's data does to a condition with a bug); undone by `cure`."""
    real = conditions.CONDITION_TYPES["score_threshold"]

    def evaluate(c: Any, ev: Mapping[str, Any], st: dict) -> Any:
        if (ev.get("data") or {}).get("poison"):
            raise TypeError("'<' not supported between instances of 'dict' and 'Decimal'")
        return real.evaluate(c, ev, st)

    monkeypatch.setitem(
        conditions.CONDITION_TYPES,
        "score_threshold",
        conditions.ConditionType(**{**real.__dict__, "evaluate": evaluate}),
    )
    yield


def cure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.undo()


def deliver(url: str, hook: str) -> Any:
    return Deliverer(
        url=url,
        senders=default_senders(),
        secrets=Secrets(getenv={**os.environ, "HOOK": hook}.get),
        policy=RetryPolicy(base_delay=0.05, max_delay=1.0),
        job_id="test",
        workers=1,
    ).run()


def test_a_poison_event_is_recorded_and_skipped_then_reevaluated(
    url: str, poisoned: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    with receiver() as rec:
        low = {
            "id": "low-score", "chain": "devnet", "registry": "reputation",
            "conditions": [{"type": "score_threshold", "operator": "lt", "value": 30}],
            "actions": [{"name": "hook", "type": "rest", "url": "${HOOK}",
                         "body_template": {"event": "{event_id}"}}],
        }  # fmt: skip
        any_feedback = {
            "id": "any-feedback", "chain": "devnet", "registry": "reputation",
            "conditions": [{"type": "event_type_equals", "value": "NewFeedback"}],
            "actions": [{"name": "hook", "type": "rest", "url": "${HOOK}",
                         "body_template": {"event": "{event_id}", "all": True}}],
        }  # fmt: skip
        with db.connection(url) as c:
            apply_spec(c, parse_spec({"user": "ops", "triggers": [low, any_feedback]},
                                     resolver=RESOLVER))  # fmt: skip
            store.insert_events(
                c, [feedback(5, score=3), feedback(6, score=4, poison=True), feedback(7, score=5)]
            )
            last_seq = max(e["seq"] for e in store.read_events_after(c, 0))
            report = evaluate_batch(c)

        # the good events fired; the poison one failed for one trigger only
        assert report.events == 3
        assert [(f.event_id, f.trigger_id) for f in report.failures] == [
            (f"{CHAIN}-6-0", "low-score")
        ]
        assert "TypeError" in report.failures[0].error
        assert report.by_trigger == {"low-score": 2, "any-feedback": 3}
        with db.connection(url) as c:
            assert store.lock_watermark(c) == last_seq
            (row,) = open_failures(c)
            assert (row["event_id"], row["trigger_id"]) == (f"{CHAIN}-6-0", "low-score")
            assert "not supported between instances" in row["error"]
        assert deliver(url, rec.url).succeeded == 5
        low_events = sorted(r.body["event"] for r in rec.requests if "all" not in r.body)
        assert low_events == [f"{CHAIN}-5-0", f"{CHAIN}-7-0"]

        # the CLI lists it, with its error
        runner = CliRunner()
        out = runner.invoke(main, ["triggers", "failures", "--url", url])
        assert out.exit_code == 0, out.output
        assert f"event {CHAIN}-6-0" in out.output and "trigger low-score" in out.output
        assert "TypeError" in out.output

        # still broken: re-evaluating fails again, exits non-zero, stays listed
        out = runner.invoke(main, ["triggers", "reevaluate", f"{CHAIN}-6-0", "--url", url])
        assert out.exit_code == 1 and "1 still failing" in out.output
        with db.connection(url) as c:
            assert open_failures(c)[0]["attempts"] == 2

        # fixed: re-evaluation fires it and delivers, once
        cure(monkeypatch)
        monkeypatch.setenv("HOOK", rec.url)
        out = runner.invoke(main, ["triggers", "reevaluate", f"{CHAIN}-6-0", "--url", url, "--now"])
        assert out.exit_code == 0, out.output
        assert "1 firing(s), 1 new deliveries, 0 still failing" in out.output
        assert "delivered: 1 ok" in out.output
        low_events = sorted(r.body["event"] for r in rec.requests if "all" not in r.body)
        assert low_events == [f"{CHAIN}-5-0", f"{CHAIN}-6-0", f"{CHAIN}-7-0"]
        with db.connection(url) as c:
            assert open_failures(c) == []
            assert store.lock_watermark(c) == last_seq
            state = store.get_trigger_state(c, "low-score") or {}
            # the cursor stays where evaluation got to; the late event counts as fired
            assert state["last_seq"] == last_seq and state["fired_count"] == 3
        out = runner.invoke(main, ["triggers", "failures", "--url", url, "--all"])
        assert "resolved" in out.output
        # nothing left: a second re-evaluation changes nothing
        out = runner.invoke(main, ["triggers", "reevaluate", "--all", "--url", url])
        assert out.exit_code == 0 and "re-evaluated 0 event(s)" in out.output


def test_the_evaluation_run_reports_a_failed_evaluation_in_its_metadata_and_log(
    url: str, poisoned: None
) -> None:
    import dagster as dg

    from pipelines.triggers import evaluate_triggers_job
    from resources.notifiers import NotifiersResource
    from resources.postgres import PostgresResource

    low = {
        "id": "low-score", "chain": "devnet", "registry": "reputation",
        "conditions": [{"type": "score_threshold", "operator": "lt", "value": 30}],
        "actions": [{"name": "hook", "type": "rest", "url": "${HOOK}"}],
    }  # fmt: skip
    with db.connection(url) as c:
        apply_spec(c, parse_spec({"user": "ops", "triggers": [low]}, resolver=RESOLVER))
        store.insert_events(c, [feedback(5, score=3), feedback(6, score=4, poison=True)])
    instance = dg.DagsterInstance.ephemeral()
    res = evaluate_triggers_job.execute_in_process(
        run_config={
            "ops": {
                "evaluate_triggers": {
                    "config": {"after_seq": 0, "up_to_seq": 2, "deliver_inline": False}
                }
            }
        },
        resources={"postgres": PostgresResource(url=url), "notifiers": NotifiersResource()},
        instance=instance,
    )
    assert res.success
    assert res.output_for_node("evaluate_triggers")["failed_evaluations"] == 1
    (output,) = [e for e in res.all_events if e.event_type_value == "STEP_OUTPUT"]
    metadata = output.event_specific_data.metadata  # type: ignore[union-attr]
    assert metadata["failed_evaluations"].value == 1
    assert (
        f"event {CHAIN}-6-0 trigger low-score: TypeError"
        in metadata["failed_evaluations_detail"].value
    )
    errors = [r.user_message for r in instance.all_logs(res.run_id) if r.level >= 40]
    assert any(f"event {CHAIN}-6-0 trigger low-score" in m for m in errors), errors


def test_a_31_digit_amount_through_postgres_is_exact(url: str) -> None:
    """10^10 tokens at 18 decimals and then some: stored as NUMERIC(78, 0), read back as a
    Decimal, compared and rendered exactly (the default 28-digit context raised here and
    stalled evaluation for every trigger)."""
    from triggers_helpers import transfer

    huge = 10**30 + 7

    def big(tid: str, value: str) -> dict[str, Any]:
        return {
            "id": tid, "chain": "devnet", "registry": "erc20",
            "conditions": [{"type": "amount_threshold", "operator": "gte", "value": value,
                            "config": {"decimals": 18}}],
            "actions": [{"name": "hook", "type": "rest", "url": "${HOOK}",
                         "body_template": {"text": "{amount_units} ({amount} base units)"}}],
        }  # fmt: skip

    with receiver() as rec, db.connection(url) as c:
        apply_spec(
            c,
            parse_spec(
                {"user": "ops", "triggers": [
                    big("below", "1000000000000.000000000000000006"),
                    big("above", "1000000000000.000000000000000008"),
                ]},
                resolver=RESOLVER,
            ),
        )  # fmt: skip
        store.insert_events(c, [transfer(5, huge), transfer(6, 1)])
        report = evaluate_batch(c)
        c.commit()
        assert report.failures == () and report.by_trigger == {"below": 1}
        assert deliver(url, rec.url).succeeded == 1
    assert rec.requests[0].body == {"text": f"1000000000000.000000000000000007 ({huge} base units)"}


def test_a_failed_event_retracted_by_a_reorg_is_resolved_without_delivery(
    url: str, poisoned: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    low = {
        "id": "low-score", "chain": "devnet", "registry": "reputation",
        "conditions": [{"type": "score_threshold", "operator": "lt", "value": 30}],
        "actions": [{"name": "hook", "type": "rest", "url": "${HOOK}"}],
    }  # fmt: skip
    with db.connection(url) as c:
        apply_spec(c, parse_spec({"user": "ops", "triggers": [low]}, resolver=RESOLVER))
        store.insert_events(c, [feedback(6, score=4, poison=True)])
        assert len(evaluate_batch(c).failures) == 1
        store.retract_blocks(c, CHAIN, [6])
    cure(monkeypatch)
    with db.connection(url) as c:
        report = reevaluate_events(c)
        assert (report.events, report.deliveries_added) == (0, 0)
        assert open_failures(c) == []
        # the failure followed the event to its archived id
        row = c.execute("SELECT event_id, resolved_at FROM evaluation_failures").fetchone()
        assert row["event_id"].startswith(f"{CHAIN}-6-0@") and row["resolved_at"] is not None
