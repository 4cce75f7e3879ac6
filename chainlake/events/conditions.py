"""Trigger conditions: what each type means, how it is validated, how it is evaluated.

All pure: `evaluate_trigger` takes a trigger, one event and the trigger's state and returns the
outcome and the next state. The caller (`chainlake.events.evaluate`) persists that state in the
same transaction as the deliveries the match produces.

Conditions of a trigger are combined with AND. Stateless conditions filter the stream first;
stateful ones (EMA, rate) then see only the events that passed, so "EMA of agent 42's scores"
is an `agent_id_equals` plus an `ema_threshold`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from dataclasses import field as dc_field
from decimal import Context, Decimal, Inexact, InvalidOperation, Overflow
from typing import Any

RETRACTED = "retracted"
# A trigger's phase: `confirmed` evaluates events of confirmed blocks only (the default);
# `fast` evaluates events read at the head and follows each delivery with a confirmed or
# retracted message (see chainlake.events.head).
PHASE_CONFIRMED = "confirmed"
PHASE_FAST = "fast"
TRIGGER_PHASES = (PHASE_CONFIRMED, PHASE_FAST)
# The phases of a fast trigger's deliveries, in the order a receiver gets them.
UNCONFIRMED, CONFIRMED = "unconfirmed", "confirmed"
DELIVERY_PHASES = (UNCONFIRMED, CONFIRMED, RETRACTED)

# Every arithmetic on an amount goes through this context: 80 digits hold any uint256 (78), and
# a result that would lose a digit raises instead (Python's default context keeps 28 digits, and
# 10^10 tokens at 18 decimals already has 29). Comparisons and `Decimal(str)` are exact anyway.
AMOUNT_CONTEXT = Context(prec=80, traps=[InvalidOperation, Inexact, Overflow])

COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
}
OPERATOR_ALIASES = {
    "=": "eq", "==": "eq", "equals": "eq", "!=": "ne", "<>": "ne",
    ">": "gt", ">=": "gte", "<": "lt", "<=": "lte", "in": "in", "exists": "exists",
}  # fmt: skip

ADDRESS_FIELDS = (
    "owner",
    "client_address",
    "validator_address",
    "token_address",
    "from_address",
    "to_address",
)


class ConditionError(ValueError):
    """A condition is not valid; the message names the field at fault."""

    def __init__(self, field_name: str, message: str) -> None:
        self.field_name = field_name
        super().__init__(f"{field_name}: {message}")


@dataclass(frozen=True)
class Condition:
    """One condition of a trigger: its type, the event field it reads, operator and value."""

    condition_type: str
    field: str
    operator: str
    value: str
    config: Mapping[str, Any] = dc_field(default_factory=dict)


@dataclass(frozen=True)
class Action:
    """An action a trigger runs when it fires; `config` depends on its `action_type`."""

    id: int
    name: str
    action_type: str
    config: Mapping[str, Any]
    priority: int = 1


@dataclass(frozen=True)
class Trigger:
    """A user's trigger: on one chain and registry, fires its actions when all conditions hold."""

    id: str
    name: str
    chain_id: int
    registry: str
    conditions: tuple[Condition, ...]
    actions: tuple[Action, ...] = ()
    user_id: str = ""
    enabled: bool = True
    cooldown_seconds: int = 0
    phase: str = PHASE_CONFIRMED

    @property
    def is_fast(self) -> bool:
        """Whether the trigger fires at the head (`phase: fast`), before confirmation."""
        return self.phase == PHASE_FAST

    @property
    def is_stateful(self) -> bool:
        """Whether any condition keeps state between events (so evaluation order matters)."""
        return any(CONDITION_TYPES[c.condition_type].stateful for c in self.conditions)


@dataclass(frozen=True)
class Outcome:
    """The result of evaluating a trigger on one event, with the trigger's new state."""

    fired: bool
    state: dict[str, Any]
    # why it did not fire ("condition agent_id_equals", "cooldown") or what it computed
    reason: str = ""
    details: dict[str, Any] = dc_field(default_factory=dict)


# ---- helpers -------------------------------------------------------------------------------


def normalize_operator(op: str, *, field_name: str = "operator") -> str:
    """The canonical name of a comparison operator (aliases such as `>=` or `equals` accepted)."""
    key = (op or "").strip().lower()
    key = OPERATOR_ALIASES.get(key, key)
    if key not in COMPARISONS and key not in ("in", "exists"):
        raise ConditionError(
            field_name, f"unknown operator {op!r} (use one of {', '.join(COMPARISONS)})"
        )
    return key


def parse_list(value: Any) -> list[str]:
    """A list value: a YAML/JSON list, a JSON array string, or a comma-separated string."""
    if isinstance(value, (list, tuple)):
        items = value
    else:
        text = str(value).strip()
        if text.startswith("["):
            items = json.loads(text)
        else:
            items = [p for p in (s.strip() for s in text.split(",")) if p]
    return [str(i).strip() for i in items]


def to_decimal(value: Any, *, field_name: str = "value") -> Decimal:
    """`value` as a finite Decimal, or a ConditionError naming `field_name`."""
    try:
        d = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise ConditionError(field_name, f"{value!r} is not a number") from None
    if not d.is_finite():
        raise ConditionError(field_name, f"{value!r} is not a finite number")
    return d


_DURATION_RE = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


# Durations are stored as int4 seconds; a year is longer than any cooldown or window needs.
MAX_DURATION_DAYS = 366
MAX_DURATION_SECONDS = MAX_DURATION_DAYS * 86_400


def parse_duration(value: Any, *, field_name: str = "time_window") -> int:
    """'90s', '15m', '1h', '2d', '1w' or a number of seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = int(value)
    else:
        m = _DURATION_RE.match(str(value))
        if not m:
            raise ConditionError(field_name, f"{value!r} is not a duration like 90s, 15m, 1h, 2d")
        seconds = int(m.group(1)) * _UNIT_SECONDS[m.group(2)]
    if seconds <= 0:
        raise ConditionError(field_name, "must be positive")
    if seconds > MAX_DURATION_SECONDS:
        raise ConditionError(field_name, f"{value!r} is longer than {MAX_DURATION_DAYS} days")
    return seconds


def _number(event: Mapping[str, Any], name: str) -> Decimal | None:
    v = event.get(name)
    if v is None:
        v = (event.get("data") or {}).get(name)
    if v is None or v == "":
        return None
    try:
        d = Decimal(str(v))
    except InvalidOperation:
        return None
    # "NaN" or "Infinity" in an event's data: not a number to compare (NaN would raise)
    return d if d.is_finite() else None


def _text(event: Mapping[str, Any], name: str) -> str | None:
    v = event.get(name)
    if v is None:
        v = (event.get("data") or {}).get(name)
    return None if v is None else str(v)


# ---- condition types -----------------------------------------------------------------------


@dataclass(frozen=True)
class ConditionType:
    """A kind of condition: its defaults, how it is validated and how it is evaluated on an
    event."""

    name: str
    default_field: str
    default_operator: str
    validate: Callable[[Condition], Condition]
    # (condition, event, state of this condition) -> (holds, new state, details)
    evaluate: Callable[
        [Condition, Mapping[str, Any], dict[str, Any]], tuple[bool, dict[str, Any], dict[str, Any]]
    ]
    stateful: bool = False
    description: str = ""


def _v_threshold(c: Condition) -> Condition:
    op = normalize_operator(c.operator)
    if op not in COMPARISONS:
        raise ConditionError("operator", f"{c.condition_type} needs a comparison, not {op!r}")
    to_decimal(c.value)
    return Condition(c.condition_type, c.field, op, str(c.value).strip(), dict(c.config))


def _e_threshold(c: Condition, ev: Mapping[str, Any], st: dict) -> tuple[bool, dict, dict]:
    x = _number(ev, c.field)
    if x is None:
        return False, st, {}
    return COMPARISONS[c.operator](x, Decimal(c.value)), st, {}


def _v_amount(c: Condition) -> Condition:
    c = _v_threshold(c)
    decimals = c.config.get("decimals", 0)
    if not isinstance(decimals, int) or isinstance(decimals, bool) or not 0 <= decimals <= 77:
        raise ConditionError("config.decimals", f"{decimals!r} is not an integer in 0..77")
    return c


def _e_amount(c: Condition, ev: Mapping[str, Any], st: dict) -> tuple[bool, dict, dict]:
    raw = _number(ev, c.field)
    if raw is None:
        return False, st, {}
    units = raw.scaleb(-int(c.config.get("decimals", 0)), AMOUNT_CONTEXT)
    return (
        COMPARISONS[c.operator](units, Decimal(c.value)),
        st,
        {"amount_units": format(units.normalize(AMOUNT_CONTEXT), "f")},
    )


def _v_equals_int(c: Condition) -> Condition:
    op = normalize_operator(c.operator or "eq")
    if op not in ("eq", "ne"):
        raise ConditionError("operator", f"{c.condition_type} takes eq or ne, not {op!r}")
    try:
        int(str(c.value).strip())
    except ValueError:
        raise ConditionError("value", f"{c.value!r} is not an integer") from None
    return Condition(c.condition_type, c.field, op, str(c.value).strip(), dict(c.config))


def _e_equals_int(c: Condition, ev: Mapping[str, Any], st: dict) -> tuple[bool, dict, dict]:
    x = _number(ev, c.field)
    if x is None:
        return False, st, {}
    return COMPARISONS[c.operator](x, Decimal(c.value)), st, {}


def _v_equals_text(c: Condition) -> Condition:
    op = normalize_operator(c.operator or "eq")
    if op not in ("eq", "ne"):
        raise ConditionError("operator", f"{c.condition_type} takes eq or ne, not {op!r}")
    if str(c.value) == "":
        raise ConditionError("value", "must not be empty")
    return Condition(c.condition_type, c.field, op, str(c.value), dict(c.config))


def _e_tag(c: Condition, ev: Mapping[str, Any], st: dict) -> tuple[bool, dict, dict]:
    # The default field 'tag' means any tag the event carries (tag1, tag2, or the validation tag).
    names = ("tag1", "tag2", "tag") if c.field == "tag" else (c.field,)
    tags = {t.lower() for t in (_text(ev, n) for n in names) if t is not None}
    hit = c.value.lower() in tags
    return (hit if c.operator == "eq" else not hit), st, {}


def _e_event_type(c: Condition, ev: Mapping[str, Any], st: dict) -> tuple[bool, dict, dict]:
    hit = (_text(ev, c.field) or "").lower() == c.value.lower()
    return (hit if c.operator == "eq" else not hit), st, {}


def _v_list(c: Condition) -> Condition:
    op = normalize_operator(c.operator or "in")
    if op not in ("in", "eq"):
        raise ConditionError("operator", f"{c.condition_type} takes 'in', not {op!r}")
    try:
        items = parse_list(c.value)
    except (ValueError, TypeError):
        raise ConditionError("value", f"{c.value!r} is not a list") from None
    if not items:
        raise ConditionError("value", "the list is empty")
    return Condition(
        c.condition_type, c.field, "in", json.dumps([i.lower() for i in items]), dict(c.config)
    )


def _e_in_list(c: Condition, ev: Mapping[str, Any], st: dict) -> tuple[bool, dict, dict]:
    allowed = set(json.loads(c.value))
    names = ("from_address", "to_address") if c.field == "any" else (c.field,)
    values = {v.lower() for v in (_text(ev, n) for n in names) if v is not None}
    return bool(values & allowed), st, {}


def _v_file_uri(c: Condition) -> Condition:
    v = str(c.value).strip().lower() if c.value not in (None, "") else "true"
    if v not in ("true", "false"):
        raise ConditionError("value", f"{c.value!r} is not true or false")
    return Condition(c.condition_type, c.field, "exists", v, dict(c.config))


def _e_file_uri(c: Condition, ev: Mapping[str, Any], st: dict) -> tuple[bool, dict, dict]:
    present = bool((_text(ev, c.field) or "").strip())
    return present == (c.value == "true"), st, {}


def _v_ema(c: Condition) -> Condition:
    c = _v_threshold(c)
    window = c.config.get("window_size")
    alpha = c.config.get("alpha")
    if not isinstance(window, int) or isinstance(window, bool) or window < 1:
        raise ConditionError("config.window_size", f"{window!r} is not a positive integer")
    try:
        a = float(alpha)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConditionError("config.alpha", f"{alpha!r} is not a number") from None
    if not 0 < a <= 1:
        raise ConditionError("config.alpha", f"{alpha!r} is not in (0, 1]")
    return Condition(
        c.condition_type, c.field, c.operator, c.value, {"window_size": window, "alpha": a}
    )


def _e_ema(c: Condition, ev: Mapping[str, Any], st: dict) -> tuple[bool, dict, dict]:
    x = _number(ev, c.field)
    if x is None:
        return False, st, {}
    alpha = float(c.config["alpha"])
    prev = st.get("ema")
    ema = float(x) if prev is None else alpha * float(x) + (1 - alpha) * float(prev)
    count = int(st.get("count", 0)) + 1
    new = {"ema": ema, "count": count}
    # Too few samples and the average means little: hold until the window is filled.
    holds = count >= int(c.config["window_size"]) and COMPARISONS[c.operator](
        Decimal(repr(ema)), Decimal(c.value)
    )
    return holds, new, {"ema": round(ema, 6), "ema_count": count}


def _v_rate(c: Condition) -> Condition:
    op = normalize_operator(c.operator or "gte")
    if op not in COMPARISONS:
        raise ConditionError("operator", f"rate_limit needs a comparison, not {op!r}")
    try:
        n = int(str(c.value).strip())
    except ValueError:
        raise ConditionError("value", f"{c.value!r} is not an integer count") from None
    if n < 0:
        raise ConditionError("value", "must not be negative")
    if "time_window" not in c.config:
        raise ConditionError("config.time_window", "missing (e.g. 1h)")
    window = parse_duration(c.config["time_window"], field_name="config.time_window")
    reset = c.config.get("reset_on_trigger", True)
    if not isinstance(reset, bool):
        raise ConditionError("config.reset_on_trigger", f"{reset!r} is not true or false")
    return Condition(
        c.condition_type,
        c.field or "*",
        op,
        str(n),
        {"time_window": window, "reset_on_trigger": reset},
    )


def _e_rate(c: Condition, ev: Mapping[str, Any], st: dict) -> tuple[bool, dict, dict]:
    now = int(ev["timestamp"])
    window = int(c.config["time_window"])
    recent = [t for t in st.get("recent_timestamps", []) if now - int(t) < window]
    recent.append(now)
    holds = COMPARISONS[c.operator](len(recent), int(c.value))
    return holds, {"recent_timestamps": recent, "count": len(recent)}, {"rate_count": len(recent)}


CONDITION_TYPES: dict[str, ConditionType] = {
    t.name: t
    for t in (
        ConditionType("agent_id_equals", "agent_id", "eq", _v_equals_int, _e_equals_int,
                      description="the event's agent id equals the value"),
        ConditionType("score_threshold", "score", "gte", _v_threshold, _e_threshold,
                      description="a numeric field (feedback score, validation response) "
                      "compared with the value"),
        ConditionType("tag_equals", "tag", "eq", _v_equals_text, _e_tag,
                      description="one of the event's tags equals the value"),
        ConditionType("validator_whitelist", "validator_address", "in", _v_list, _e_in_list,
                      description="the validator is one of the listed addresses"),
        ConditionType("event_type_equals", "event_type", "eq", _v_equals_text, _e_event_type,
                      description="the event type equals the value ('retracted' for reorgs)"),
        ConditionType("ema_threshold", "score", "lt", _v_ema, _e_ema, stateful=True,
                      description="exponential moving average of a field (config window_size, "
                      "alpha) compared with the value, once window_size samples are in"),
        ConditionType("rate_limit", "*", "gte", _v_rate, _e_rate, stateful=True,
                      description="number of matching events within config time_window compared "
                      "with the value; reset_on_trigger clears the count when the trigger fires"),
        ConditionType("file_uri_exists", "file_uri", "exists", _v_file_uri, _e_file_uri,
                      description="the event carries a file URI (value true) or not (false)"),
        ConditionType("amount_threshold", "amount", "gte", _v_amount, _e_amount,
                      description="transfer amount in token units (config decimals) compared "
                      "with the value"),
        ConditionType("address_in", "any", "in", _v_list, _e_in_list,
                      description="an address field (to_address, from_address, any, owner, ...) "
                      "is one of the listed addresses"),
    )
}  # fmt: skip

EVENT_FIELDS = frozenset(
    """id chain_id block_number block_hash transaction_hash log_index registry event_type agent_id
    timestamp owner token_uri metadata_key metadata_value client_address feedback_index score tag1
    tag2 file_uri file_hash validator_address request_hash response response_uri response_hash tag
    token_address from_address to_address amount alert_id retracts""".split()
)


def validate_condition(c: Condition) -> Condition:
    """The condition in canonical form (operators spelled out, lists as JSON), or ConditionError."""
    ctype = CONDITION_TYPES.get(c.condition_type)
    if ctype is None:
        raise ConditionError(
            "type",
            f"unknown condition type {c.condition_type!r} (known: {', '.join(CONDITION_TYPES)})",
        )
    fld = c.field or ctype.default_field
    allowed = EVENT_FIELDS | {"tag", "any", "*"}
    if fld not in allowed and not fld.startswith("data."):
        raise ConditionError("field", f"unknown event field {fld!r}")
    if fld.startswith("data."):
        fld = fld[5:]
    if c.value is None or (
        isinstance(c.value, str) and c.value == "" and ctype.name != "file_uri_exists"
    ):
        raise ConditionError("value", "missing")
    return ctype.validate(
        Condition(
            c.condition_type,
            fld,
            c.operator or ctype.default_operator,
            c.value,
            dict(c.config or {}),
        )
    )


# ---- evaluation ----------------------------------------------------------------------------


def evaluate_trigger(
    trigger: Trigger, event: Mapping[str, Any], state: Mapping[str, Any]
) -> Outcome:
    """Does `event` fire `trigger`? `state` is the trigger's persisted state (may be empty).

    The returned state records the event's seq, so evaluating the same event twice is a no-op.
    """
    st: dict[str, Any] = json.loads(json.dumps(state or {}))
    seq = event.get("seq")
    if seq is not None and int(seq) <= int(st.get("last_seq", 0)):
        return Outcome(False, st, "already evaluated")
    if seq is not None:
        st["last_seq"] = int(seq)

    # A reorg's retraction matches only triggers that ask for it explicitly.
    is_retraction = event.get("event_type") == RETRACTED
    asks_retraction = any(
        c.condition_type == "event_type_equals"
        and c.operator == "eq"
        and c.value.lower() == RETRACTED
        for c in trigger.conditions
    )
    if is_retraction and not asks_retraction:
        return Outcome(False, st, "retraction")

    details: dict[str, Any] = {}
    for c in trigger.conditions:
        ctype = CONDITION_TYPES[c.condition_type]
        if ctype.stateful:
            continue
        holds, _, d = ctype.evaluate(c, event, {})
        if not holds:
            return Outcome(False, st, f"condition {c.condition_type}")
        details.update(d)

    cond_states: dict[str, Any] = st.setdefault("conditions", {})
    all_hold = True
    failed = ""
    for i, c in enumerate(trigger.conditions):
        ctype = CONDITION_TYPES[c.condition_type]
        if not ctype.stateful:
            continue
        key = f"{i}:{c.condition_type}"
        holds, new, d = ctype.evaluate(c, event, cond_states.get(key, {}))
        cond_states[key] = new
        details.update(d)
        if not holds and all_hold:
            all_hold, failed = False, f"condition {c.condition_type}"
    if not all_hold:
        return Outcome(False, st, failed, details)

    ts = int(event.get("timestamp") or 0)
    last = st.get("last_fired_ts")
    if trigger.cooldown_seconds and last is not None and ts - int(last) < trigger.cooldown_seconds:
        return Outcome(False, st, "cooldown", details)

    st["last_fired_ts"] = ts
    st["fired_count"] = int(st.get("fired_count", 0)) + 1
    for i, c in enumerate(trigger.conditions):
        if c.condition_type == "rate_limit" and c.config.get("reset_on_trigger", True):
            cond_states[f"{i}:{c.condition_type}"] = {"recent_timestamps": [], "count": 0}
    return Outcome(True, st, "fired", details)
