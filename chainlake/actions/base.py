"""What every action shares: the error that says whether to retry, backoff, HTTP classification
and `${ENV}` references in action configs.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from chainlake.retry import backoff_delay, parse_retry_after
from chainlake.uri import credentials_in, redact_text, redact_uri, urls_in


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

    def referenced_values(self, value: Any, *, names: Iterable[str] = ()) -> list[str]:
        """The values of the environment variables `value` refers to (`${NAME}`, recursing
        into mappings and lists), and of `names`: what to take out of an attempt's errors.

        Args:
            value: An action's config, as stored.
            names: Variables a sender reads without the config naming them (its defaults).

        Returns:
            The values that are set, in no particular order.
        """
        found = set(names)

        def walk(v: Any) -> None:
            if isinstance(v, str):
                found.update(ENV_REF.findall(v))
            elif isinstance(v, Mapping):
                for item in v.values():
                    walk(item)
            elif isinstance(v, (list, tuple)):
                for item in v:
                    walk(item)

        walk(value)
        return [got for name in found if (got := self.getenv(name))]


ENV_REF = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)\}")


def action_secrets(config: Any, secrets: Secrets, *, names: Iterable[str] = ()) -> list[str]:
    """What an attempt of the action with `config` must never store, log or show: the values
    of the environment variables it refers to (and of `names`, read by its sender without the
    config naming them), and the credentials of every URL in it once those are resolved
    (userinfo, query values, token-like path segments: see `chainlake.uri.credentials_in`).

    Args:
        config: The action's config, as stored.
        secrets: The resolver the attempt uses.
        names: Environment variables the sender reads by default.

    Returns:
        The secret strings, in no particular order.
    """
    values = secrets.referenced_values(config, names=names)
    try:
        resolved = secrets.resolve(config)
    except ActionError:  # a variable is missing: the attempt fails saying so
        resolved = config
    found = list(values)
    texts: list[str] = list(values)

    def walk(v: Any) -> None:
        if isinstance(v, str):
            texts.append(v)
        elif isinstance(v, Mapping):
            for item in v.values():
                walk(item)
        elif isinstance(v, (list, tuple)):
            for item in v:
                walk(item)

    walk(resolved)
    for text in texts:
        for url in urls_in(text):
            found += credentials_in(url)
    return found


def redact_value(value: Any, secrets: Iterable[str] = ()) -> Any:
    """`value` (a JSON-able response or error) with `redact_text` applied to every string in
    it, mapping keys included."""
    secrets = list(secrets)
    if isinstance(value, str):
        return redact_text(value, secrets)
    if isinstance(value, Mapping):
        return {redact_text(str(k), secrets): redact_value(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(v, secrets) for v in value]
    return value


class RedactingFilter(logging.Filter):
    """Takes credentials out of URLs in log records (httpx logs every request's full URL)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message with its URLs redacted; never drops a record."""
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to the handler to report
            return True
        redacted = redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


# The HTTP clients the actions use log each request's URL at INFO.
for _name in ("httpx", "httpx2", "mcp.client.streamable_http", "mcp.client.sse"):
    _logger = logging.getLogger(_name)
    if not any(isinstance(f, RedactingFilter) for f in _logger.filters):
        _logger.addFilter(RedactingFilter())


@dataclass(frozen=True)
class SendContext:
    """Everything a sender needs besides its config: the delivery's fields and identity."""

    context: Mapping[str, Any]
    idempotency_key: str
    secrets: Secrets
    http: httpx.Client


class Sender(Protocol):
    """What each action type (rest, telegram, discord, slack, email, mcp) implements."""

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
        detail = redact_text(str(e).replace(url, redact_uri(url)))
        raise ActionError(f"{what}: {type(e).__name__}: {detail}", retryable=True) from e
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
