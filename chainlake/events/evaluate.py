"""Trigger evaluation: a batch of events in, pending deliveries and new trigger state out.

`plan` is pure (events, triggers, states -> deliveries, states). `evaluate_batch` wraps it in
one transaction: it locks the states of the triggers concerned, plans, inserts the deliveries
and writes the states back, so a match and the state change that produced it commit together,
and a batch evaluated twice (a retried run, an overlapping sensor tick) adds nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from chainlake.events import failures as failures_
from chainlake.events import phases, store
from chainlake.events.conditions import (
    AMOUNT_CONTEXT,
    CONFIRMED,
    UNCONFIRMED,
    Action,
    Trigger,
    evaluate_trigger,
)
from chainlake.events.db import Conn

DEFAULT_MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class Report:
    """What one evaluation of a batch of events did."""

    events: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    fired: int = 0
    deliveries_added: int = 0
    by_trigger: dict[str, int] = field(default_factory=dict)
    delivery_ids: tuple[str, ...] = ()
    # (trigger, event) pairs that raised: recorded in evaluation_failures, skipped
    failures: tuple[failures_.Failure, ...] = ()


def _plain(v: Any) -> Any:
    if isinstance(v, Decimal):
        # an integral value is written as an integer ("1E+40", "5.00" -> "1000...0", "5"), in
        # a context wide enough for any uint256 amount
        if v == v.to_integral_value(context=AMOUNT_CONTEXT):
            return format(v.quantize(Decimal(1), context=AMOUNT_CONTEXT), "f")
        return str(v)
    if isinstance(v, (dt.datetime, dt.date)):
        return v.isoformat()
    return v


def delivery_key(
    trigger: Trigger, action: Action, event: Mapping[str, Any], phase: str | None = None
) -> str:
    """The idempotency key of a delivery: per (trigger, event, action), and per phase for a
    fast trigger (see store.phased_delivery_id)."""
    if phase is None:
        return store.delivery_id(trigger.id, event["id"], action.name)
    return store.phased_delivery_id(
        trigger.id, event["id"], str(event["block_hash"]), action.name, phase
    )


def delivery_context(
    trigger: Trigger,
    action: Action,
    event: Mapping[str, Any],
    details: Mapping[str, Any],
    phase: str | None = None,
) -> dict[str, Any]:
    """The fields a template may name (see chainlake.actions.templates.CONTEXT_FIELDS); a
    fast trigger's delivery carries its `phase` too."""
    ctx = {k: _plain(v) for k, v in event.items() if k not in ("created_at", "retracted_at", "seq")}
    ts = event.get("timestamp")
    ctx.update(
        event_id=event["id"],
        trigger_id=trigger.id,
        trigger_name=trigger.name,
        action_name=action.name,
        idempotency_key=delivery_key(trigger, action, event, phase),
        block_time=None if ts is None else dt.datetime.fromtimestamp(int(ts), dt.UTC).isoformat(),
    )
    if phase is not None:
        ctx["phase"] = phase
    data = event.get("data") or {}
    for k in ("alert_name", "alert_value", "chain_name"):
        if k in data:
            ctx.setdefault(k, data[k])
    ctx.update({k: _plain(v) for k, v in details.items()})
    return ctx


def plan(
    triggers: Sequence[Trigger],
    events: Iterable[Mapping[str, Any]],
    states: Mapping[str, Mapping[str, Any]],
    failures: list[failures_.Failure] | None = None,
    *,
    at_head: bool = False,
    seen_at_head: frozenset[tuple[str, str]] = frozenset(),
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]], dict[str, int]]:
    """(deliveries to enqueue, new state per trigger, firings per trigger). Events in seq order.

    With `failures`, an exception while a trigger evaluates an event (or builds the event's
    delivery context) is appended there instead of raised: that trigger skips that event, its
    state as before it, and every other (trigger, event) pair is evaluated as usual.

    Fast triggers (`phase: fast`): `at_head` says the events were read at the head, unconfirmed
    (`chainlake.events.head`); their deliveries are then the `unconfirmed` phase, keyed by
    event and block hash, with no `event_id` (the event is not in `events` yet). Otherwise a
    fast trigger skips the events in `seen_at_head` ((id, block hash) pairs it evaluated at the
    head: their confirmation is a follow-up, not a second firing) and its firings on the
    others (events the head reader never saw) are delivered once, as `confirmed`.
    """
    new_states: dict[str, dict[str, Any]] = {t.id: dict(states.get(t.id) or {}) for t in triggers}
    deliveries: list[dict[str, Any]] = []
    fired: dict[str, int] = {}
    by_scope: dict[tuple[int, str], list[Trigger]] = {}
    for t in triggers:
        by_scope.setdefault((t.chain_id, t.registry), []).append(t)
    for ev in events:
        for t in by_scope.get((int(ev["chain_id"]), ev["registry"]), ()):
            if at_head and not t.is_fast:
                continue
            if t.is_fast and not at_head and (ev["id"], ev.get("block_hash")) in seen_at_head:
                continue
            phase = (UNCONFIRMED if at_head else CONFIRMED) if t.is_fast else None
            try:
                out = evaluate_trigger(t, ev, new_states[t.id])
                planned = [
                    {
                        "id": delivery_key(t, a, ev, phase),
                        "trigger_id": t.id,
                        "event_id": None if at_head else ev["id"],
                        "action_id": a.id,
                        "action_type": a.action_type,
                        "max_attempts": int(a.config.get("max_attempts", DEFAULT_MAX_ATTEMPTS)),
                        "context": delivery_context(t, a, ev, out.details, phase),
                        "phase": phase,
                        "head_event": f"{ev['id']}@{ev['block_hash']}" if phase else None,
                    }
                    for a in (t.actions if out.fired else ())
                ]
            except Exception as e:
                if failures is None:
                    raise
                failures.append(
                    failures_.Failure(
                        str(ev["id"]), int(ev.get("seq") or 0), t.id, failures_.describe(e)
                    )
                )
                continue
            new_states[t.id] = out.state
            if out.fired:
                fired[t.id] = fired.get(t.id, 0) + 1
                deliveries += planned
    return deliveries, new_states, fired


def evaluate_batch(
    conn: Conn,
    *,
    up_to_seq: int | None = None,
    limit: int = 100_000,
    claim_for: str | None = None,
) -> Report:
    """Evaluate every enabled trigger against the events past the evaluation watermark, up to
    `up_to_seq` (inclusive; everything when None), and move the watermark.

    The watermark row is locked for the transaction, so evaluations take turns in seq order:
    a run launched for a later batch that happens to start first also evaluates the earlier
    events, and the earlier batch's run then finds them done. With `claim_for`, the new
    deliveries are leased to that owner, which delivers them next (see `enqueue_deliveries`).
    The caller commits (or uses `db.connection`, which does).
    """
    watermark = store.lock_watermark(conn)
    # events read at the head whose block is now confirmed, or gone: their follow-ups
    phases.settle(conn)
    if up_to_seq is not None and watermark >= up_to_seq:
        return Report()
    events = store.read_events_after(conn, watermark, up_to_seq=up_to_seq, limit=limit)
    if len(events) == limit or up_to_seq is None:
        new_mark = events[-1]["seq"] if events else watermark
    else:
        new_mark = up_to_seq
    store.set_watermark(conn, new_mark)
    if not events:
        return Report()
    chain_ids = sorted({int(e["chain_id"]) for e in events})
    scopes = {(int(e["chain_id"]), e["registry"]) for e in events}
    triggers = [
        t
        for t in store.load_triggers(conn, chain_ids=chain_ids)
        if (t.chain_id, t.registry) in scopes
    ]
    report = {"events": len(events), "first_seq": events[0]["seq"], "last_seq": events[-1]["seq"]}
    if not triggers:
        return Report(**report)
    seen: frozenset[tuple[str, str]] = frozenset()
    if any(t.is_fast for t in triggers):
        # the head reader stores and evaluates under this lock: what it read of these events
        # is committed, and what it reads from now on skips events already in `events`.
        # Taken before the trigger states, in the head reader's order.
        phases.lock_head(conn)
        seen = phases.seen_at_head(conn, events)
    states = store.lock_trigger_states(conn, [t.id for t in triggers])
    failed: list[failures_.Failure] = []
    deliveries, new_states, fired = plan(triggers, events, states, failed, seen_at_head=seen)
    added = store.enqueue_deliveries(conn, deliveries, claim_for=claim_for)
    store.save_trigger_states(conn, new_states)
    failures_.record(conn, failed)
    return Report(
        **report,
        fired=sum(fired.values()),
        deliveries_added=len(added),
        by_trigger=fired,
        delivery_ids=tuple(added),
        failures=tuple(failed),
    )


def reevaluate_events(
    conn: Conn, event_ids: Sequence[str] | None = None, *, claim_for: str | None = None
) -> Report:
    """Evaluate again the events whose evaluation failed (these only, when given), against
    the (enabled) triggers that failed on them; a pair that goes through now is marked
    resolved, one that fails again stays open with its new error. An event retracted by a
    reorg since is resolved without evaluating it.

    The trigger's cursor is already past such an event, so it is evaluated as if it came now:
    a stateful condition (EMA, rate) folds it in late, and the cursor stays where it was.
    Deliveries keep their idempotency keys, so re-evaluating twice adds nothing. Takes the
    watermark lock like `evaluate_batch`; the caller commits.
    """
    store.lock_watermark(conn)
    open_ = failures_.open_failures(conn, event_ids=event_ids, for_update=True)
    if not open_:
        return Report()
    by_event: dict[str, list[str]] = {}
    for row in open_:
        by_event.setdefault(row["event_id"], []).append(row["trigger_id"])
    triggers = {t.id: t for t in store.load_triggers(conn, enabled_only=False)}
    states = store.lock_trigger_states(conn, sorted({r["trigger_id"] for r in open_}))
    events = [e for e in (store.get_event(conn, i) for i in by_event) if e is not None]
    events.sort(key=lambda e: int(e["seq"]))
    failed: list[failures_.Failure] = []
    deliveries: list[dict[str, Any]] = []
    fired: dict[str, int] = {}
    for ev in [e for e in events if e.get("retracted_at") is not None]:
        # a reorg took its block away since: nothing to evaluate or deliver any more
        failures_.resolve(conn, ev["id"], by_event[ev["id"]])
    events = [e for e in events if e.get("retracted_at") is None]
    for ev in events:
        # a disabled trigger's failure stays open until the trigger is enabled again
        todo = [triggers[i] for i in by_event[ev["id"]] if i in triggers and triggers[i].enabled]
        # evaluate as if the cursor were just before this event, then put it back
        cursors = {t.id: (states.get(t.id) or {}).get("last_seq") for t in todo}
        rewound = {t.id: {**(states.get(t.id) or {}), "last_seq": int(ev["seq"]) - 1} for t in todo}
        before = len(failed)
        planned, new_states, n = plan(todo, [ev], rewound, failed)
        deliveries += planned
        for tid, k in n.items():
            fired[tid] = fired.get(tid, 0) + k
        for tid, st in new_states.items():
            if cursors[tid] is None:
                st.pop("last_seq", None)
            else:
                st["last_seq"] = cursors[tid]
            states[tid] = st
        still = {f.trigger_id for f in failed[before:]}
        failures_.resolve(conn, ev["id"], [t.id for t in todo if t.id not in still])
    added = store.enqueue_deliveries(conn, deliveries, claim_for=claim_for)
    store.save_trigger_states(conn, {t: states[t] for t in states if t in triggers})
    failures_.record(conn, failed)
    return Report(
        events=len(events),
        first_seq=int(events[0]["seq"]) if events else None,
        last_seq=int(events[-1]["seq"]) if events else None,
        fired=sum(fired.values()),
        deliveries_added=len(added),
        by_trigger=fired,
        delivery_ids=tuple(added),
        failures=tuple(failed),
    )
