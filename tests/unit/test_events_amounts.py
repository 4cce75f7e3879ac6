"""Amounts as wide as uint256 are compared, converted and rendered exactly.

Python's default decimal context keeps 28 digits: 10^10 tokens at 18 decimals is already 29.
"""

from __future__ import annotations

import decimal
from decimal import Decimal

import pytest

from chainlake.actions.templates import render, render_value
from chainlake.events.conditions import (
    Action,
    Condition,
    Trigger,
    evaluate_trigger,
    validate_condition,
)
from chainlake.events.evaluate import delivery_context, plan

HUGE = 10**30 + 7  # 31 digits
UINT256_MAX = 2**256 - 1  # 78 digits


def trig(value: int | str, *, operator: str = "gte", decimals: int = 0) -> Trigger:
    c = validate_condition(
        Condition("amount_threshold", "", operator, str(value), {"decimals": decimals})
    )
    return Trigger(
        id="big",
        name="big",
        chain_id=31337,
        registry="erc20",
        conditions=(c,),
        actions=(Action(1, "hook", "rest", {"url": "http://x"}),),
    )


def transfer(seq: int, amount: object) -> dict[str, object]:
    return {
        "id": f"31337-{seq}-0",
        "seq": seq,
        "chain_id": 31337,
        "registry": "erc20",
        "event_type": "Transfer",
        "timestamp": 1_000 + seq,
        # PostgreSQL's NUMERIC(78, 0) comes back as a Decimal
        "amount": amount,
        "data": {},
    }


@pytest.mark.parametrize("amount", [HUGE, Decimal(HUGE), str(HUGE)])
def test_a_31_digit_amount_is_compared_exactly(amount: object) -> None:
    assert evaluate_trigger(trig(HUGE - 1), transfer(1, amount), {}).fired
    assert evaluate_trigger(trig(HUGE), transfer(1, amount), {}).fired
    assert not evaluate_trigger(trig(HUGE + 1), transfer(1, amount), {}).fired
    assert evaluate_trigger(trig(HUGE + 1, operator="lt"), transfer(1, amount), {}).fired


def test_token_units_of_a_huge_amount_are_exact() -> None:
    ev = transfer(1, Decimal(HUGE))
    just_below = "1000000000000.000000000000000006"
    just_above = "1000000000000.000000000000000008"
    hit = evaluate_trigger(trig(just_below, decimals=18), ev, {})
    assert hit.fired
    assert hit.details["amount_units"] == "1000000000000.000000000000000007"
    assert not evaluate_trigger(trig(just_above, decimals=18), ev, {}).fired


def test_uint256_max_is_exact() -> None:
    ev = transfer(1, Decimal(UINT256_MAX))
    assert evaluate_trigger(trig(UINT256_MAX), ev, {}).fired
    assert not evaluate_trigger(trig(UINT256_MAX + 1), ev, {}).fired
    units = evaluate_trigger(trig(0, decimals=77), ev, {}).details["amount_units"]
    assert units.replace(".", "") == str(UINT256_MAX)


def test_a_huge_amount_is_planned_and_rendered_exactly() -> None:
    t = trig(HUGE - 1, decimals=0)
    t18 = trig("1000000000000", decimals=18)
    t18 = Trigger(**{**t18.__dict__, "id": "big18"})
    # evaluation must not depend on the caller's context either
    with decimal.localcontext(decimal.Context(prec=28)):
        deliveries, _, fired = plan([t, t18], [transfer(5, Decimal(HUGE))], {})
    assert fired == {"big": 1, "big18": 1}
    ctx = deliveries[0]["context"]
    assert ctx["amount"] == str(HUGE)
    assert render("{amount} base units", ctx) == f"{HUGE} base units"
    assert render_value({"a": "{amount}"}, ctx) == {"a": str(HUGE)}
    ctx18 = deliveries[1]["context"]
    assert render("{amount_units} tokens", ctx18) == "1000000000000.000000000000000007 tokens"


def test_delivery_context_keeps_a_decimal_fraction_and_an_exponent_exact() -> None:
    t = trig(1)
    ctx = delivery_context(
        t,
        t.actions[0],
        {"id": "e", "amount": Decimal("1E+40"), "score": Decimal("12.50")},
        {},
    )
    assert ctx["amount"] == "1" + "0" * 40
    assert ctx["score"] == "12.50"


def test_an_integral_decimal_is_written_as_an_integer() -> None:
    t = trig(1)
    ctx = delivery_context(t, t.actions[0], {"id": "e", "amount": Decimal("5.00")}, {})
    assert ctx["amount"] == "5"


@pytest.mark.parametrize("value", ["NaN", "sNaN", "Infinity", "-inf"])
def test_a_non_finite_value_in_an_event_is_no_number(value: str) -> None:
    # Decimal("NaN") >= x raises InvalidOperation: such a value must not reach a comparison
    t = trig(1)
    assert not evaluate_trigger(t, transfer(1, value), {}).fired
