"""`config/triggers.yaml`: triggers with their conditions and actions, validated as a whole and
applied to PostgreSQL in one transaction (all of the file or none of it).

```yaml
user: ops                          # owner of the triggers below (created if missing)
triggers:
  - id: big-transfer-in            # stable id: deliveries are keyed by it
    name: Large transfer into a tracked wallet
    chain: devnet                  # a chain of chains.yaml (or chain_id: 31337)
    registry: erc20                # identity | reputation | validation | erc20 | analytics
    cooldown: 10m                  # at most one firing per 10 minutes of chain time
    phase: fast                    # optional: fire at the head, then confirmed/retracted
    conditions:
      - {type: address_in, field: to_address, value: tracked}   # wallets of portfolios.yaml
      - {type: amount_threshold, operator: gte, value: 1000, config: {decimals: 18}}
    actions:
      - name: webhook
        type: rest                 # rest | telegram | discord | slack | email | mcp
        url: ${CHAINLAKE_ACTION_SECRET_HOOK}   # a secret the operator declared, at delivery
        body_template: {text: "{amount_units} to {to_address}"}
```

Every error names the file, the trigger and the field; the first bad trigger does not stop
the check of the others, so one run lists everything to fix.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from chainlake.actions.base import ConfigError as ActionConfigError
from chainlake.actions.base import Sender
from chainlake.actions.outbound import OutboundPolicy
from chainlake.actions.policy import ActionSecrets, config_problems
from chainlake.actions.templates import TemplateError
from chainlake.events import store
from chainlake.events.conditions import (
    PHASE_CONFIRMED,
    PHASE_FAST,
    TRIGGER_PHASES,
    Action,
    Condition,
    ConditionError,
    Trigger,
    parse_duration,
    validate_condition,
)
from chainlake.events.db import Conn

DEFAULT_TRIGGERS_CONFIG = "config/triggers.yaml"
REGISTRIES = ("identity", "reputation", "validation", "erc20", "analytics")
MAX_NAME_LENGTH = 200  # a name shows in every message and listing
ID_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
TRIGGER_KEYS = {
    "id",
    "name",
    "description",
    "chain",
    "chain_id",
    "registry",
    "enabled",
    "cooldown",
    "phase",
    "conditions",
    "actions",
}
CONDITION_KEYS = {"type", "field", "operator", "value", "config"}


class SpecError(ValueError):
    """The triggers file is wrong; `errors` lists every problem, one line each."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


@dataclass(frozen=True)
class TriggerSpec:
    """A trigger as declared in a triggers file, with its description."""

    trigger: Trigger
    description: str | None = None


@dataclass(frozen=True)
class Spec:
    """A parsed triggers file: the user it belongs to and their triggers."""

    user: str
    email: str | None
    triggers: tuple[TriggerSpec, ...] = ()
    source: str = ""


@dataclass
class Resolver:
    """What names in the file refer to: chain names -> ids, 'tracked' -> wallet addresses."""

    chain_ids: Mapping[str, int] = field(default_factory=dict)
    tracked_wallets: Callable[[str | None, int], list[str]] = field(default=lambda name, cid: [])


def default_resolver() -> Resolver:
    """Chains from chains.yaml and tracked wallets from portfolios.yaml (read now, at apply time)."""
    from chainlake.config import load_chains
    from chainlake.portfolios import load_portfolios

    chains = load_chains()
    book = load_portfolios(chains)
    by_id = {c.chain_id: name for name, c in chains.items()}

    def tracked(name: str | None, chain_id: int) -> list[str]:
        chain = name or by_id.get(chain_id)
        return [w.address for w in book.tracked_wallets(chain)] if chain else []

    return Resolver({n: c.chain_id for n, c in chains.items()}, tracked)


def _senders() -> dict[str, Sender]:
    from chainlake.actions.deliver import default_senders

    return default_senders()


def parse_spec(
    raw: Any,
    *,
    source: str = DEFAULT_TRIGGERS_CONFIG,
    resolver: Resolver | None = None,
    senders: Mapping[str, Sender] | None = None,
) -> Spec:
    """Validate a loaded triggers document. Raises SpecError listing every problem."""
    resolver = resolver or Resolver()
    senders = senders if senders is not None else _senders()
    errors: list[str] = []
    if not isinstance(raw, Mapping):
        raise SpecError([f"{source}: expected a mapping with a 'triggers:' list"])
    unknown = set(raw) - {"user", "email", "triggers"}
    if unknown:
        errors.append(f"{source}: unknown top-level key(s) {', '.join(sorted(map(str, unknown)))}")
    user = raw.get("user", "chainlake")
    if not isinstance(user, str) or not user:
        errors.append(f"{source}: field 'user': expected a user name")
    entries = raw.get("triggers")
    if not isinstance(entries, list):
        errors.append(f"{source}: expected a top-level 'triggers:' list")
        raise SpecError(errors)
    out: list[TriggerSpec] = []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        label = entry.get("id", f"#{i + 1}") if isinstance(entry, Mapping) else f"#{i + 1}"

        def err(fld: str, msg: str, _label: Any = label) -> None:
            errors.append(f"{source}: trigger {_label!r}: field {fld!r}: {msg}")

        if not isinstance(entry, Mapping):
            err("(entry)", "expected a mapping")
            continue
        parsed = _parse_trigger(entry, str(user), err, resolver, senders)
        if parsed is None:
            continue
        if parsed.trigger.id in seen:
            err("id", "duplicate trigger id")
            continue
        seen.add(parsed.trigger.id)
        out.append(parsed)
    if errors:
        raise SpecError(errors)
    return Spec(str(user), raw.get("email"), tuple(out), source)


def _parse_trigger(
    entry: Mapping[str, Any],
    user: str,
    err: Callable[[str, str], None],
    resolver: Resolver,
    senders: Mapping[str, Sender],
) -> TriggerSpec | None:
    n_errors = [0]

    def e(fld: str, msg: str) -> None:
        n_errors[0] += 1
        err(fld, msg)

    for k in sorted(set(entry) - TRIGGER_KEYS, key=str):
        e(str(k), f"unknown key (allowed: {', '.join(sorted(TRIGGER_KEYS))})")
    tid = entry.get("id")
    if not isinstance(tid, str) or not ID_RE.match(tid):
        e("id", "missing, or not lowercase letters, digits, '-', '_', '.' (at most 64)")
    name = entry.get("name", tid)
    if not isinstance(name, str) or not name:
        e("name", "expected text")
    elif len(name) > MAX_NAME_LENGTH:
        e("name", f"{len(name)} characters; at most {MAX_NAME_LENGTH}")
    registry = entry.get("registry")
    if registry not in REGISTRIES:
        e("registry", f"{registry!r} is not one of {', '.join(REGISTRIES)}")
    chain_name = entry.get("chain")
    chain_id = entry.get("chain_id")
    if chain_name is not None:
        if chain_name not in resolver.chain_ids:
            known = ", ".join(sorted(resolver.chain_ids)) or "(none)"
            e("chain", f"unknown chain {chain_name!r} (chains.yaml has: {known})")
        elif chain_id is not None and chain_id != resolver.chain_ids[chain_name]:
            e("chain_id", f"{chain_id} contradicts chain {chain_name!r}")
        else:
            chain_id = resolver.chain_ids[chain_name]
    if not isinstance(chain_id, int) or isinstance(chain_id, bool) or chain_id <= 0:
        if chain_name is None:
            e("chain", "missing (a chain name of chains.yaml, or chain_id)")
        chain_id = 0
    enabled = entry.get("enabled", True)
    if not isinstance(enabled, bool):
        e("enabled", "expected true or false")
    cooldown = 0
    if entry.get("cooldown") not in (None, 0, "0"):
        try:
            cooldown = parse_duration(entry["cooldown"], field_name="cooldown")
        except ConditionError as ce:
            e("cooldown", str(ce).split(": ", 1)[1])

    phase = entry.get("phase", PHASE_CONFIRMED)
    if phase not in TRIGGER_PHASES:
        e("phase", f"{phase!r} is not one of {', '.join(TRIGGER_PHASES)}")
        phase = PHASE_CONFIRMED
    elif phase == PHASE_FAST and registry == "analytics":
        e(
            "phase",
            "'fast' needs events read at the chain's head; analytics events come from the "
            "day's balances and risk metrics (use phase: confirmed, the default)",
        )

    conditions: list[Condition] = []
    raw_conditions = entry.get("conditions")
    if not isinstance(raw_conditions, list) or not raw_conditions:
        e("conditions", "missing: a trigger needs at least one condition")
        raw_conditions = []
    for j, rc in enumerate(raw_conditions):
        where = f"conditions[{j}]"
        if not isinstance(rc, Mapping):
            e(where, "expected a mapping with type, field, operator, value")
            continue
        for k in sorted(set(rc) - CONDITION_KEYS, key=str):
            e(f"{where}.{k}", f"unknown key (allowed: {', '.join(sorted(CONDITION_KEYS))})")
        if "type" not in rc:
            e(f"{where}.type", "missing")
            continue
        value = rc.get("value")
        if value == "tracked" and rc["type"] in ("address_in",):
            value = resolver.tracked_wallets(chain_name, int(chain_id))
            if not value:
                e(f"{where}.value", "'tracked' but portfolios.yaml tracks no wallet on this chain")
                continue
        if rc["type"] == "file_uri_exists" and value is None:
            value = "true"
        if isinstance(value, bool):
            value = "true" if value else "false"
        cfg = rc.get("config") or {}
        if not isinstance(cfg, Mapping):
            e(f"{where}.config", "expected a mapping")
            continue
        try:
            conditions.append(
                validate_condition(
                    Condition(
                        str(rc["type"]),
                        str(rc.get("field") or ""),
                        str(rc.get("operator") or ""),
                        json.dumps(list(value))
                        if isinstance(value, (list, tuple))
                        else ("" if value is None else str(value)),
                        dict(cfg),
                    )
                )
            )
        except ConditionError as ce:
            e(f"{where}.{ce.field_name}", str(ce).split(": ", 1)[1])
        except (ValueError, TypeError) as ve:
            e(where, str(ve))

    actions: list[Action] = []
    raw_actions = entry.get("actions")
    if not isinstance(raw_actions, list) or not raw_actions:
        e("actions", "missing: a trigger needs at least one action")
        raw_actions = []
    names: set[str] = set()
    for j, ra in enumerate(raw_actions):
        where = f"actions[{j}]"
        if not isinstance(ra, Mapping):
            e(where, "expected a mapping with name, type and the action's settings")
            continue
        if not ra.get("type"):
            e(f"{where}.type", "missing")
            continue
        atype = str(ra["type"])
        if atype == "webhook":
            atype = "rest"
        if atype not in senders:
            e(f"{where}.type", f"{atype!r} is not one of {', '.join(sorted(senders))}")
            continue
        aname = ra.get("name", f"{atype}-{j + 1}")
        if not isinstance(aname, str) or not ID_RE.match(aname):
            e(f"{where}.name", "not lowercase letters, digits, '-', '_', '.'")
            continue
        if aname in names:
            e(f"{where}.name", f"duplicate action name {aname!r}")
            continue
        names.add(aname)
        priority = ra.get("priority", 1)
        if not isinstance(priority, int) or isinstance(priority, bool):
            e(f"{where}.priority", "expected an integer")
            continue
        config = {k: v for k, v in ra.items() if k not in ("name", "type", "priority")}
        attempts = config.get("max_attempts", 5)
        if not isinstance(attempts, int) or isinstance(attempts, bool) or not 1 <= attempts <= 50:
            e(f"{where}.max_attempts", f"{attempts!r} is not an integer in 1..50")
            continue
        try:
            senders[atype].validate(config)
        except ActionConfigError as ae:
            e(f"{where}.{ae.field_name}", str(ae).split(": ", 1)[1])
            continue
        except TemplateError as te:
            e(f"{where}.{te.path}", str(te).split(": ", 1)[1] if te.path else str(te))
            continue
        # what the action may ask of the delivering process: declared secrets in secret
        # fields, public hosts, the operator's API bases (see chainlake.actions.policy)
        try:
            outbound = OutboundPolicy.from_env()
        except ValueError as ve:  # the operator's CHAINLAKE_ACTION_ALLOW_HOSTS is malformed
            e(where, str(ve))
            continue
        problems = config_problems(
            atype, config, secrets=ActionSecrets.from_env(), outbound=outbound
        )
        for pe in problems:
            e(f"{where}.{pe.field_name}", f"action {aname!r}: {str(pe).split(': ', 1)[1]}")
        if problems:
            continue
        actions.append(Action(0, aname, atype, config, priority))

    if n_errors[0]:
        return None
    trigger = Trigger(
        id=str(tid),
        name=str(name),
        chain_id=int(chain_id),
        registry=str(registry),
        conditions=tuple(conditions),
        actions=tuple(actions),
        user_id=user,
        enabled=bool(enabled),
        cooldown_seconds=cooldown,
        phase=str(phase),
    )
    return TriggerSpec(trigger, entry.get("description"))


def load_spec(
    path: str | Path,
    *,
    resolver: Resolver | None = None,
    senders: Mapping[str, Sender] | None = None,
) -> Spec:
    """Read and validate the triggers file at `path`; a SpecError lists every problem."""
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise SpecError([f"{p}: file not found"]) from None
    except yaml.YAMLError as ye:
        raise SpecError([f"{p}: not valid YAML: {ye}"]) from None
    return parse_spec(raw, source=str(p), resolver=resolver, senders=senders)


@dataclass(frozen=True)
class ApplyResult:
    """What applying a spec did: the user's id and the triggers saved and removed."""

    user_id: str
    saved: tuple[str, ...]
    removed: tuple[str, ...]


def apply_spec(conn: Conn, spec: Spec, *, prune: bool = False) -> ApplyResult:
    """Write the spec's triggers (create or replace), in the caller's transaction. With
    `prune`, the user's triggers that the file no longer lists are deleted."""
    user_id = store.ensure_user(conn, spec.user, spec.email)
    saved = []
    for ts in spec.triggers:
        t = ts.trigger
        store.save_trigger(
            conn,
            Trigger(
                id=t.id,
                name=t.name,
                chain_id=t.chain_id,
                registry=t.registry,
                conditions=t.conditions,
                actions=t.actions,
                user_id=user_id,
                enabled=t.enabled,
                cooldown_seconds=t.cooldown_seconds,
                phase=t.phase,
            ),
            description=ts.description,
        )
        saved.append(t.id)
    removed: list[str] = []
    if prune:
        rows = conn.execute(
            "DELETE FROM triggers WHERE user_id = %s AND NOT (id = ANY(%s)) RETURNING id",
            (user_id, saved),
        ).fetchall()
        removed = [r["id"] for r in rows]
    return ApplyResult(user_id, tuple(saved), tuple(removed))
