"""What every action shares: the error that says whether to retry, backoff, HTTP classification
and `${ENV}` references in action configs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from chainlake.retry import backoff_delay, parse_retry_after


class ActionError(RuntimeError):
    """A failed attempt. `retryable` says whether another attempt may succeed; `retry_after`
    (seconds) is the receiver's own wish, honoured over the computed backoff."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        retry_after: float | None = None,
        response: Any = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.response = response
        self.status_code = status_code


class ConfigError(ValueError):
    """An action's configuration is wrong; the message names the field."""

    def __init__(self, field_name: str, message: str) -> None:
        self.field_name = field_name
        super().__init__(f"{field_name}: {message}")


@dataclass(frozen=True)
class Secrets:
    """Resolves `${NAME}` references in action configs when a delivery is made (not when the
    triggers file is applied), so secrets never land in the database."""

    getenv: Callable[[str], str | None] = field(default=lambda name: None)

    def resolve(self, value: Any, *, path: str = "") -> Any:
        """Replace every `${NAME}` in `value` (recursing into mappings and lists) with the environment
        variable; an unset one is a non-retryable ActionError naming `path`.
        """
        if isinstance(value, str):

            def sub(m: re.Match[str]) -> str:
                got = self.getenv(m.group(1))
                if got is None:
                    raise ActionError(
                        f"{path or 'config'}: environment variable {m.group(1)} is not set",
                        retryable=False,
                    )
                return got

            return ENV_REF.sub(sub, value)
        if isinstance(value, Mapping):
            return {k: self.resolve(v, path=f"{path}.{k}" if path else k) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.resolve(v, path=f"{path}[{i}]") for i, v in enumerate(value)]
        return value


ENV_REF = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)\}")


@dataclass(frozen=True)
class SendContext:
    """Everything a sender needs besides its config: the delivery's fields and identity."""

    context: Mapping[str, Any]
    idempotency_key: str
    secrets: Secrets
    http: httpx.Client


class Sender(Protocol):
    """What each action type (rest, telegram, discord, email, mcp) implements."""

    action_type: str

    def validate(self, config: Mapping[str, Any]) -> None:
        """Raise ConfigError naming the field when `config` cannot work."""

    def send(self, config: Mapping[str, Any], ctx: SendContext) -> Any:
        """Make one attempt; return the (JSON-able) response or raise ActionError."""


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff between attempts; how many attempts is each action's own `max_attempts`."""

    base_delay: float = 1.0
    multiplier: float = 2.0
    max_delay: float = 300.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based). A receiver's
        `retry_after` wins when it asks for longer than the backoff."""
        backoff = backoff_delay(
            attempt, base=self.base_delay, cap=self.max_delay, multiplier=self.multiplier
        )
        if retry_after is not None and retry_after > backoff:
            return float(retry_after)
        return backoff


# ---- HTTP ----------------------------------------------------------------------------------

RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


def response_body(resp: httpx.Response) -> Any:
    """The response's JSON body, else its first 2000 characters of text, else None."""
    try:
        return resp.json()
    except ValueError:
        text = resp.text
        return {"text": text[:2000]} if text else None


def body_retry_after(body: Any) -> float | None:
    """Telegram (`parameters.retry_after`) and Discord (`retry_after`) say it in the body."""
    if not isinstance(body, Mapping):
        return None
    for v in (body.get("retry_after"), (body.get("parameters") or {}).get("retry_after")):
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
    return None


def http_request(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    json: Any = None,
    content: bytes | str | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    what: str = "request",
) -> tuple[int, Any]:
    """One HTTP attempt, classified: returns (status, body) on 2xx, raises ActionError otherwise."""
    try:
        resp = client.request(
            method, url, json=json, content=content, headers=dict(headers or {}), timeout=timeout
        )
    except httpx.TimeoutException as e:
        raise ActionError(
            f"{what}: timed out after {timeout:g}s ({type(e).__name__})", retryable=True
        ) from e
    except httpx.HTTPError as e:
        raise ActionError(f"{what}: {type(e).__name__}: {e}", retryable=True) from e
    body = response_body(resp)
    if 200 <= resp.status_code < 300:
        return resp.status_code, body
    retry_after = parse_retry_after(resp.headers.get("retry-after"))
    if retry_after is None:
        retry_after = body_retry_after(body)
    raise ActionError(
        f"{what}: HTTP {resp.status_code}",
        retryable=resp.status_code in RETRYABLE_STATUS,
        retry_after=retry_after if resp.status_code in (429, 503) else None,
        response=body,
        status_code=resp.status_code,
    )


def require(config: Mapping[str, Any], name: str, kind: type | tuple[type, ...] = str) -> Any:
    """Return `config[name]`, raising ConfigError if it is missing, empty or not of type `kind`."""
    if name not in config or config[name] in (None, ""):
        raise ConfigError(name, "missing")
    if not isinstance(config[name], kind):
        raise ConfigError(name, f"expected {getattr(kind, '__name__', kind)}, got {config[name]!r}")
    return config[name]
