"""What the sensors decide, without a database: new-block work and delivery-run planning."""

from __future__ import annotations

from chainlake.events.feed import plan_delivery_runs
from sensors.new_blocks import new_blocks_run_key, plan_new_blocks


def test_new_blocks_plan() -> None:
    assert plan_new_blocks(100, None, None)
    assert not plan_new_blocks(100, 100, None)  # extraction is at the head
    assert not plan_new_blocks(105, 100, 105)  # a run for 105 was already requested
    assert plan_new_blocks(106, 100, 105)
    assert not plan_new_blocks(-1, None, None)  # fewer blocks than confirmations
    assert new_blocks_run_key("devnet", 106) == "devnet-head-106"


def d(seq: int, attempts: int = 0) -> dict:
    return {"id": f"t:31337-{seq}-0:hook", "seq": seq, "attempts": attempts}


def test_new_deliveries_get_one_run_keyed_by_seq_range() -> None:
    runs, cur = plan_delivery_runs([d(1), d(2), d(3)], {}, now=1000.0)
    assert [(r.run_key, r.reason, len(r.delivery_ids)) for r in runs] == [("deliver-1-3", "new", 3)]
    assert cur == {"seq": 3}


def test_due_again_is_requested_once_per_grace_bucket() -> None:
    cursor = {"seq": 3}
    runs, cur = plan_delivery_runs([d(2, attempts=1), d(4)], cursor, now=1000.0, grace_seconds=30)
    assert [r.reason for r in runs] == ["new", "due"]
    assert runs[0].run_key == "deliver-4-4" and runs[1].run_key.startswith("redeliver-33-")
    # the next ticks in the same bucket do not ask again
    runs2, cur2 = plan_delivery_runs([d(2, attempts=1)], cur, now=1010.0, grace_seconds=30)
    assert runs2 == [] and cur2["retry_bucket"] == 33
    # the next bucket does, deterministically
    runs3, _ = plan_delivery_runs([d(2, attempts=1)], cur2, now=1021.0, grace_seconds=30)
    runs3b, _ = plan_delivery_runs([d(2, attempts=1)], cur2, now=1022.0, grace_seconds=30)
    assert runs3[0].run_key == runs3b[0].run_key and runs3[0].run_key.startswith("redeliver-34-")


def test_nothing_due() -> None:
    runs, cur = plan_delivery_runs([], {"seq": 9, "retry_bucket": 3}, now=0.0)
    assert runs == [] and cur == {"seq": 9, "retry_bucket": 3}


def test_head_revision_constant_matches_the_migrations() -> None:
    from alembic.script import ScriptDirectory

    from chainlake.events import db

    script = ScriptDirectory.from_config(db.alembic_config("postgresql://unused/x"))
    assert script.get_heads() == [db.HEAD_REVISION]
