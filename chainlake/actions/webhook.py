"""REST webhook: method, URL, headers, a JSON body template and a timeout.

The delivery's idempotency key travels in the `Idempotency-Key` header, so a receiver can drop
the duplicate that an at-least-once retry may produce.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chainlake.actions.base import ConfigError, SendContext, http_request, require
from chainlake.actions.templates import check_template, render, render_value
from chainlake.uri import redact_uri

METHODS = ("POST", "PUT", "PATCH", "GET", "DELETE")
DEFAULT_BODY = {
    "event_id": "{event_id}",
    "trigger_id": "{trigger_id}",
    "trigger_name": "{trigger_name}",
    "chain_id": "{chain_id}",
    "registry": "{registry}",
    "event_type": "{event_type}",
    "block_number": "{block_number}",
    "transaction_hash": "{transaction_hash}",
    "idempotency_key": "{idempotency_key}",
}


class RestWebhook:
    """Calls a REST endpoint with a rendered JSON body."""

    action_type = "rest"

    def validate(self, config: Mapping[str, Any]) -> None:
        """Check the URL, method, headers, timeout and body template."""
        require(config, "url")
        method = str(config.get("method", "POST")).upper()
        if method not in METHODS:
            raise ConfigError(
                "method", f"{config.get('method')!r} is not one of {', '.join(METHODS)}"
            )
        headers = config.get("headers", {})
        if not isinstance(headers, Mapping):
            raise ConfigError("headers", "expected a mapping of header names to values")
        timeout = config.get("timeout_ms", 30000)
        if not isinstance(timeout, int) or isinstance(timeout, bool) or not 1 <= timeout <= 600_000:
            raise ConfigError("timeout_ms", f"{timeout!r} is not a number of milliseconds")
        check_template(config["url"], path="url")
        check_template(headers, path="headers")
        if "body_template" in config:
            check_template(config["body_template"], path="body_template")

    def send(self, config: Mapping[str, Any], ctx: SendContext) -> Any:
        """Make the request, with the delivery's idempotency key as `Idempotency-Key` header."""
        cfg = ctx.secrets.resolve(dict(config))
        url = render(cfg["url"], ctx.context)
        headers = {k: render(str(v), ctx.context) for k, v in (cfg.get("headers") or {}).items()}
        headers.setdefault("Idempotency-Key", ctx.idempotency_key)
        phase = ctx.context.get("phase")
        if phase:
            headers.setdefault("X-Chainlake-Phase", str(phase))
        method = str(cfg.get("method", "POST")).upper()
        default = {**DEFAULT_BODY, "phase": "{phase}"} if phase else DEFAULT_BODY
        body = render_value(cfg.get("body_template", default), ctx.context)
        status, resp = http_request(
            ctx.http,
            method,
            url,
            json=None if method in ("GET", "DELETE") else body,
            headers=headers,
            timeout=int(cfg.get("timeout_ms", 30000)) / 1000,
            what=f"{method} {redact_uri(url)}",
        )
        return {"status_code": status, "body": resp}
