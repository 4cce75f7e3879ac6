"""Templates, `${ENV}` references, backoff and the reading of a receiver's retry_after."""

from __future__ import annotations

import email.utils
import time

import pytest

from chainlake.actions.base import (
    ActionError,
    RetryPolicy,
    Secrets,
    body_retry_after,
    parse_retry_after,
)
from chainlake.actions.templates import (
    TemplateError,
    check_template,
    placeholders,
    render,
    render_value,
)
from chainlake.actions.webhook import RestWebhook

CTX = {
    "trigger_name": "Big",
    "amount_units": "1500.5",
    "score": 7,
    "data": {"direction": "in"},
    "tag1": None,
}


def test_render_and_types() -> None:
    assert (
        render("{trigger_name}: {amount_units} ({data.direction}) {{literal}}", CTX)
        == "Big: 1500.5 (in) {literal}"
    )
    assert render("tag={tag1}", CTX) == "tag="
    body = render_value(
        {"score": "{score}", "text": "s={score}", "list": ["{trigger_name}", 3]}, CTX
    )
    assert body == {"score": 7, "text": "s=7", "list": ["Big", 3]}


def test_env_references_are_not_placeholders() -> None:
    assert placeholders("${TRIGGER_WEBHOOK_URL}/hook/{trigger_id}") == ["trigger_id"]
    check_template({"url": "${HOOK}?t={trigger_id}"})


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ({"body": {"t": "{scor}"}}, "body.t: unknown field {scor}"),
        ("{0.__class__}", "is not a field name"),
        ("{a", "unbalanced brace"),
        ("{x.__globals__}", "unknown field"),
    ],
)
def test_bad_templates(template: object, message: str) -> None:
    with pytest.raises(TemplateError, match=message.replace("{", r"\{").replace("}", r"\}")):
        check_template(template)


def test_secrets_resolve_at_delivery_and_name_the_missing_variable() -> None:
    s = Secrets(getenv={"HOOK": "http://127.0.0.1:9/x"}.get)
    assert s.resolve({"url": "${HOOK}", "n": 3}) == {"url": "http://127.0.0.1:9/x", "n": 3}
    with pytest.raises(
        ActionError, match=r"headers\.auth: environment variable TOKEN is not set"
    ) as e:
        s.resolve({"headers": {"auth": "Bearer ${TOKEN}"}})
    assert not e.value.retryable


def test_backoff_doubles_up_to_the_cap_and_honours_retry_after() -> None:
    p = RetryPolicy(base_delay=1.0, multiplier=2.0, max_delay=10.0)
    assert [p.delay(a) for a in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    assert p.delay(1, retry_after=30) == 30  # the receiver asked for longer
    assert p.delay(3, retry_after=0.5) == 4  # a shorter wish does not shorten the backoff


def test_retry_after_forms() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("1.5") == 1.5
    later = email.utils.formatdate(time.time() + 20, usegmt=True)
    assert 18 <= (parse_retry_after(later) or 0) <= 21
    assert parse_retry_after("soon") is None
    assert (
        body_retry_after({"ok": False, "error_code": 429, "parameters": {"retry_after": 3}}) == 3.0
    )
    assert body_retry_after({"message": "You are being rate limited.", "retry_after": 0.25}) == 0.25


def test_rest_config_validation() -> None:
    RestWebhook().validate({"url": "${X}", "timeout_ms": 100})
    with pytest.raises(Exception, match="method"):
        RestWebhook().validate({"url": "http://x", "method": "FETCH"})
