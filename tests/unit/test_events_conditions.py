"""Condition types, their validation and the pure trigger evaluation (state, cooldown)."""

from __future__ import annotations

import pytest

from chainlake.events.conditions import (
    Action,
    Condition,
    ConditionError,
    Trigger,
    evaluate_trigger,
    parse_duration,
    validate_condition,
)
from chainlake.events.evaluate import plan

WALLET = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8"


def cond(
    ctype: str, value: object = "", field: str = "", operator: str = "", **config: object
) -> Condition:
    return validate_condition(Condition(ctype, field, operator, value, config))  # type: ignore[arg-type]


def trig(*conditions: Condition, registry: str = "reputation", cooldown: int = 0) -> Trigger:
    return Trigger(
        id="t1", name="t", chain_id=31337, registry=registry, conditions=conditions,
        actions=(Action(1, "hook", "rest", {"url": "http://x"}),), cooldown_seconds=cooldown,
    )  # fmt: skip


def ev(seq: int, **fields: object) -> dict[str, object]:
    base = {"id": f"31337-{seq}-0", "seq": seq, "chain_id": 31337, "registry": "reputation",
            "event_type": "NewFeedback", "timestamp": 1_000 + seq, "data": {}}  # fmt: skip
    base.update(fields)
    return base


def test_stateless_conditions_are_anded() -> None:
    t = trig(
        cond("agent_id_equals", 7),
        cond("score_threshold", 50, operator="<"),
        cond("tag_equals", "quality"),
    )
    assert evaluate_trigger(t, ev(1, agent_id=7, score=40, tag1="quality"), {}).fired
    assert evaluate_trigger(t, ev(2, agent_id=7, score=40, tag2="QUALITY"), {}).fired
    miss = evaluate_trigger(t, ev(3, agent_id=8, score=40, tag1="quality"), {})
    assert not miss.fired and miss.reason == "condition agent_id_equals"
    assert not evaluate_trigger(t, ev(4, agent_id=7, score=50, tag1="quality"), {}).fired
    assert not evaluate_trigger(t, ev(5, agent_id=7, score=None, tag1="quality"), {}).fired


def test_validator_whitelist_event_type_file_uri() -> None:
    t = trig(
        cond("validator_whitelist", ["0xAbC0000000000000000000000000000000000001"]),
        cond("event_type_equals", "ValidationResponse"),
        cond("file_uri_exists", "false"),
        registry="validation",
    )
    ok = ev(1, registry="validation", event_type="ValidationResponse",
            validator_address="0xabc0000000000000000000000000000000000001")  # fmt: skip
    assert evaluate_trigger(t, ok, {}).fired
    assert not evaluate_trigger(t, {**ok, "seq": 2, "validator_address": "0xdef"}, {}).fired
    assert not evaluate_trigger(t, {**ok, "seq": 3, "file_uri": "ipfs://x"}, {}).fired


def test_amount_threshold_is_exact_in_token_units() -> None:
    t = trig(
        cond("address_in", [WALLET.upper().replace("0X", "0x")], field="to_address"),
        cond("amount_threshold", "1000", operator=">=", decimals=18),
        registry="erc20",
    )
    base = {"registry": "erc20", "event_type": "Transfer", "to_address": WALLET}
    just = ev(1, amount=str(1000 * 10**18), **base)
    out = evaluate_trigger(t, just, {})
    assert out.fired and out.details["amount_units"] == "1000"
    assert not evaluate_trigger(t, ev(2, amount=str(1000 * 10**18 - 1), **base), {}).fired
    assert not evaluate_trigger(
        t, ev(3, amount=str(10**40), **{**base, "to_address": "0x01"}), {}
    ).fired


def test_ema_waits_for_the_window_then_compares() -> None:
    t = trig(
        cond("agent_id_equals", 1),
        cond("ema_threshold", 50, operator="lt", window_size=3, alpha=0.5),
    )
    state: dict = {}
    fired = []
    for seq, score in enumerate([40, 40, 40, 90, 90], start=1):
        out = evaluate_trigger(t, ev(seq, agent_id=1, score=score), state)
        state = out.state
        fired.append(out.fired)
    # ema: 40, 40, 40 (window filled -> fires), 65, 77.5
    assert fired == [False, False, True, False, False]
    assert state["conditions"]["1:ema_threshold"] == {"ema": 77.5, "count": 5}
    # other agents do not move the average
    out = evaluate_trigger(t, ev(6, agent_id=2, score=0), state)
    assert out.state["conditions"]["1:ema_threshold"]["count"] == 5


def test_rate_limit_counts_within_window_and_resets_on_trigger() -> None:
    t = trig(cond("rate_limit", 3, operator="gte", time_window="1m", reset_on_trigger=True))
    state: dict = {}
    fired = []
    for seq, ts in enumerate([0, 10, 20, 30, 40, 50, 200], start=1):
        out = evaluate_trigger(t, ev(seq, timestamp=ts), state)
        state = out.state
        fired.append(out.fired)
    assert fired == [False, False, True, False, False, True, False]


def test_cooldown_uses_chain_time_and_replays_are_noops() -> None:
    t = trig(cond("event_type_equals", "NewFeedback"), cooldown=60)
    state: dict = {}
    fired = []
    for seq, ts in enumerate([0, 30, 59, 60, 100, 121], start=1):
        out = evaluate_trigger(t, ev(seq, timestamp=ts), state)
        state = out.state
        fired.append(out.fired)
    assert fired == [True, False, False, True, False, True]
    again = evaluate_trigger(t, ev(6, timestamp=121), state)
    assert not again.fired and again.reason == "already evaluated"


def test_retractions_only_reach_triggers_that_ask_for_them() -> None:
    plain = trig(cond("score_threshold", 0, operator=">="))
    asks = trig(cond("event_type_equals", "retracted"))
    r = ev(1, event_type="retracted", score=90, retracts="31337-1-0@0xab")
    assert not evaluate_trigger(plain, r, {}).fired
    assert evaluate_trigger(asks, r, {}).fired


def test_plan_makes_one_delivery_per_action_and_match() -> None:
    t = Trigger(
        id="t1", name="Low score", chain_id=31337, registry="reputation",
        conditions=(cond("score_threshold", 50, operator="<"),),
        actions=(Action(1, "hook", "rest", {"url": "u"}), Action(2, "tg", "telegram", {"max_attempts": 2})),
    )  # fmt: skip
    events = [ev(1, score=10), ev(2, score=90), ev(3, score=5, chain_id=1), ev(4, score=1)]
    deliveries, states, fired = plan([t], events, {})
    assert [d["id"] for d in deliveries] == [
        "t1:31337-1-0:hook", "t1:31337-1-0:tg", "t1:31337-4-0:hook", "t1:31337-4-0:tg",
    ]  # fmt: skip
    assert deliveries[1]["max_attempts"] == 2 and deliveries[0]["max_attempts"] == 5
    assert deliveries[0]["context"]["trigger_name"] == "Low score"
    assert deliveries[0]["context"]["idempotency_key"] == "t1:31337-1-0:hook"
    assert fired == {"t1": 2} and states["t1"]["last_seq"] == 4


@pytest.mark.parametrize(
    ("condition", "field_name"),
    [
        (Condition("nope", "", "", "1"), "type"),
        (Condition("score_threshold", "", ">", "high"), "value"),
        (Condition("score_threshold", "", "~=", "1"), "operator"),
        (Condition("score_threshold", "colour", ">", "1"), "field"),
        (
            Condition("ema_threshold", "", "<", "1", {"window_size": 0, "alpha": 0.5}),
            "config.window_size",
        ),
        (Condition("ema_threshold", "", "<", "1", {"window_size": 3, "alpha": 2}), "config.alpha"),
        (Condition("rate_limit", "", ">=", "3", {}), "config.time_window"),
        (Condition("rate_limit", "", ">=", "3", {"time_window": "soon"}), "config.time_window"),
        (Condition("amount_threshold", "", ">=", "1", {"decimals": -1}), "config.decimals"),
        (Condition("validator_whitelist", "", "in", "[]"), "value"),
        (Condition("agent_id_equals", "", "", ""), "value"),
    ],
)
def test_bad_conditions_name_the_field(condition: Condition, field_name: str) -> None:
    with pytest.raises(ConditionError) as e:
        validate_condition(condition)
    assert e.value.field_name == field_name


def test_durations() -> None:
    assert [parse_duration(v) for v in ("90s", "15m", "1h", "2d", "1w", 30)] == [
        90,
        900,
        3600,
        172800,
        604800,
        30,
    ]
