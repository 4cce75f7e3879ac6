"""Message and body templates: `{field}` placeholders filled from a delivery's context.

Deliberately not `str.format` (whose `{x.__class__}` reaches into Python objects) nor Jinja:
a placeholder is a plain name from a fixed list, checked when triggers are applied, so a typo
fails `chainlake triggers apply` instead of the delivery at 3 a.m.

    "Transfer of {amount_units} {token_symbol} to {to_address} (tx {transaction_hash})"
    {"text": "{trigger_name} fired", "score": "{score}"}   # a lone placeholder keeps its type

`{{` and `}}` are literal braces; `{data.key}` reads a key of the event's free-form data.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from chainlake.events.conditions import EVENT_FIELDS

# What a delivery's context carries besides the event's columns (see evaluate.delivery_context).
CONTEXT_FIELDS: frozenset[str] = EVENT_FIELDS | {
    "event_id",
    "trigger_id",
    "trigger_name",
    "action_name",
    "idempotency_key",
    "amount_units",
    "ema",
    "ema_count",
    "rate_count",
    "fired_count",
    "chain_name",
    "block_time",
    "alert_name",
    "alert_value",
    "phase",
}

# A fast trigger's delivery (`phase: fast`) says which phase it is: text channels put this mark
# before the rendered message, JSON channels carry `phase` (see README, "Two-phase alerts").
PHASE_MARKS = {
    "unconfirmed": "[UNCONFIRMED]",
    "confirmed": "[CONFIRMED]",
    "retracted": "[RETRACTED]",
}


def phase_mark(context: Mapping[str, Any]) -> str:
    """The mark a text message of a phased delivery starts with ("[UNCONFIRMED] ", ...), or
    "" for a trigger without phases."""
    mark = PHASE_MARKS.get(str(context.get("phase") or ""))
    return f"{mark} " if mark else ""


_PLACEHOLDER = re.compile(r"\{\{|\}\}|(?<!\$)\{([^{}]*)\}")
# `${VAR}` is an environment reference (resolved by actions.base.Secrets), not a placeholder.
_ENV_REF = re.compile(r"\$\{[A-Z_][A-Z0-9_]*\}")
_NAME = re.compile(r"^[a-z_][a-z0-9_]*(\.[A-Za-z0-9_]+)?$")


class TemplateError(ValueError):
    """A malformed template or an unknown placeholder; `path` says where in the config."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


def placeholders(template: str) -> list[str]:
    """Names used by a template string (raises TemplateError on a malformed placeholder)."""
    names = []
    template = _ENV_REF.sub("", template)
    rest = _PLACEHOLDER.sub("", template)
    if "{" in rest or "}" in rest:
        raise TemplateError(
            "", f"unbalanced brace in {template!r} (write {{{{ or }}}} for a brace)"
        )
    for m in _PLACEHOLDER.finditer(template):
        if m.group(1) is None:
            continue
        name = m.group(1).strip()
        if not _NAME.match(name):
            raise TemplateError("", f"placeholder {{{m.group(1)}}} is not a field name")
        names.append(name)
    return names


def check_template(value: Any, *, path: str = "", allowed: Iterable[str] = CONTEXT_FIELDS) -> None:
    """Every placeholder in `value` (a string, or lists/dicts of them) names a known field."""
    known = frozenset(allowed)
    if isinstance(value, str):
        try:
            names = placeholders(value)
        except TemplateError as e:
            raise TemplateError(path, str(e)) from None
        for name in names:
            if name.startswith("data."):
                continue
            if name not in known:
                raise TemplateError(path, f"unknown field {{{name}}} in template")
    elif isinstance(value, Mapping):
        for k, v in value.items():
            check_template(v, path=f"{path}.{k}" if path else str(k), allowed=known)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_template(v, path=f"{path}[{i}]", allowed=known)


def _lookup(context: Mapping[str, Any], name: str) -> Any:
    if name.startswith("data."):
        return (context.get("data") or {}).get(name[5:])
    return context.get(name)


def render(
    template: str, context: Mapping[str, Any], *, escape: Callable[[str], str] | None = None
) -> str:
    """Fill the `{field}` placeholders of `template` from `context` (a missing value is empty).

    `escape` is applied to each filled-in value, never to the template's own text: a channel
    with markup (Slack's mrkdwn) keeps the author's formatting and neutralises the event's."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "{{":
            return "{"
        if m.group(0) == "}}":
            return "}"
        v = _lookup(context, m.group(1).strip())
        text = "" if v is None else str(v)
        return escape(text) if escape is not None else text

    return _PLACEHOLDER.sub(sub, template)


def render_value(value: Any, context: Mapping[str, Any]) -> Any:
    """Render strings inside a JSON-like structure; a string that is one placeholder keeps the
    field's own type (a number stays a number in a JSON body)."""
    if isinstance(value, str):
        m = _PLACEHOLDER.fullmatch(value)
        if m and m.group(1) is not None:
            return _lookup(context, m.group(1).strip())
        return render(value, context)
    if isinstance(value, Mapping):
        return {k: render_value(v, context) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [render_value(v, context) for v in value]
    return value
