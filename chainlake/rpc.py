"""A batched JSON-RPC client for bulk reads from EVM nodes.

web3.py does ABI work; this client does the heavy lifting: JSON-RPC batches, a bounded number
of requests in flight, timeouts, retries with backoff (honouring `Retry-After`) and failover
across a chain's URLs in order, going back to the first once its cool-down has passed.
"""

from __future__ import annotations

import itertools
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

log = logging.getLogger(__name__)

Call = tuple[str, Sequence[Any]]


class RpcError(RuntimeError):
    """The node answered with a JSON-RPC error object (not retried: the request itself is bad)."""

    def __init__(self, method: str, params: Sequence[Any], error: dict[str, Any]) -> None:
        self.method = method
        self.params = list(params)
        self.code = error.get("code")
        self.error = error
        super().__init__(
            f"{method}{tuple(params)!r}: {error.get('message', error)} (code {self.code})"
        )


class RpcUnavailable(RuntimeError):
    """Every URL failed after all retries."""


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


@dataclass
class _Endpoint:
    url: str
    failures: int = 0
    down_until: float = 0.0


@dataclass
class RpcStats:
    requests: int = 0
    calls: int = 0
    retries: int = 0
    failovers: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self.lock:
            for k, v in counts.items():
                setattr(self, k, getattr(self, k) + v)


def _retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date; fall back to our own backoff


class RpcClient:
    """Thread-safe; share one per chain so its in-flight limit holds across callers."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        timeout: float = 30.0,
        max_in_flight: int = 4,
        batch_size: int = 50,
        max_retries: int = 8,
        backoff_base: float = 0.2,
        backoff_max: float = 20.0,
        cooldown: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not urls:
            raise ValueError("RpcClient needs at least one URL")
        self._endpoints = [_Endpoint(u) for u in urls]
        self.timeout = timeout
        self.max_in_flight = max_in_flight
        self.batch_size = batch_size
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.cooldown = cooldown
        self._sleep = sleep
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=httpx.Limits(
                max_connections=max_in_flight, max_keepalive_connections=max_in_flight
            ),
            headers={"content-type": "application/json"},
        )
        self.stats = RpcStats()

    @property
    def urls(self) -> list[str]:
        return [e.url for e in self._endpoints]

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RpcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- endpoint selection ---------------------------------------------------------------

    def _pick(self) -> _Endpoint:
        now = time.monotonic()
        with self._lock:
            for ep in self._endpoints:
                if ep.down_until <= now:
                    return ep
            return min(self._endpoints, key=lambda e: e.down_until)

    def _mark_failed(self, ep: _Endpoint) -> None:
        with self._lock:
            ep.failures += 1
            if len(self._endpoints) > 1:
                ep.down_until = time.monotonic() + min(self.cooldown * ep.failures, 60.0)

    def _mark_ok(self, ep: _Endpoint) -> None:
        if ep.failures:
            with self._lock:
                ep.failures = 0
                ep.down_until = 0.0

    # -- one HTTP round trip --------------------------------------------------------------

    def _post(self, ep: _Endpoint, payload: bytes) -> Any:
        try:
            resp = self._http.post(ep.url, content=payload)
        except httpx.TimeoutException as e:
            raise _Retryable(f"timeout from {ep.url}: {e!r}") from e
        except httpx.TransportError as e:
            raise _Retryable(f"connection error from {ep.url}: {e!r}") from e
        if resp.status_code == 429:
            raise _Retryable(
                f"429 from {ep.url}", _retry_after_seconds(resp.headers.get("retry-after"))
            )
        if resp.status_code >= 500:
            raise _Retryable(
                f"{resp.status_code} from {ep.url}",
                _retry_after_seconds(resp.headers.get("retry-after")),
            )
        if resp.status_code >= 400:
            raise RpcUnavailable(f"{ep.url} answered HTTP {resp.status_code}: {resp.text[:200]}")
        try:
            return orjson.loads(resp.content)
        except orjson.JSONDecodeError as e:
            raise _Retryable(f"malformed JSON from {ep.url}: {e}") from e

    def _with_retries(self, payload: bytes, check: Callable[[Any], Any]) -> Any:
        attempt = 0
        while True:
            ep = self._pick()
            try:
                with self._slots:
                    self.stats.add(requests=1)
                    body = self._post(ep, payload)
                result = check(body)
                self._mark_ok(ep)
                return result
            except _Retryable as e:
                attempt += 1
                self._mark_failed(ep)
                if attempt > self.max_retries:
                    raise RpcUnavailable(f"gave up after {attempt} attempts: {e}") from e
                delay = e.retry_after
                if delay is None:
                    delay = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))
                    delay *= 0.5 + random.random() / 2
                if len(self._endpoints) > 1 and self._pick() is not ep:
                    self.stats.add(failovers=1)
                    if e.retry_after is None:
                        delay = 0.0
                self.stats.add(retries=1)
                log.warning("RPC retry %d/%d in %.2fs: %s", attempt, self.max_retries, delay, e)
                self._sleep(delay)

    # -- public API -----------------------------------------------------------------------

    def call(self, method: str, params: Sequence[Any] = ()) -> Any:
        req_id = next(self._ids)
        payload = orjson.dumps(
            {"jsonrpc": "2.0", "id": req_id, "method": method, "params": list(params)}
        )

        def check(body: Any) -> Any:
            if not isinstance(body, dict) or ("result" not in body and "error" not in body):
                raise _Retryable(f"{method}: response is not a JSON-RPC object")
            if "error" in body and body["error"] is not None:
                err = body["error"]
                if _is_transient_rpc_error(err):
                    raise _Retryable(f"{method}: {err}")
                raise RpcError(method, params, err)
            return body["result"]

        self.stats.add(calls=1)
        return self._with_retries(payload, check)

    def batch(self, calls: Sequence[Call]) -> list[Any]:
        """One JSON-RPC batch; results in the order of `calls`. Raises RpcError on any error."""
        if not calls:
            return []
        ids = [next(self._ids) for _ in calls]
        payload = orjson.dumps(
            [
                {"jsonrpc": "2.0", "id": i, "method": m, "params": list(p)}
                for i, (m, p) in zip(ids, calls, strict=True)
            ]
        )

        def check(body: Any) -> list[Any]:
            if isinstance(body, dict) and "error" in body:
                raise _Retryable(f"batch refused: {body['error']}")
            if not isinstance(body, list):
                raise _Retryable("batch response is not a JSON array")
            by_id = {item.get("id"): item for item in body if isinstance(item, dict)}
            out = []
            for i, (method, params) in zip(ids, calls, strict=True):
                item = by_id.get(i)
                if item is None:
                    raise _Retryable(f"batch response misses id {i} ({method})")
                if item.get("error") is not None:
                    if _is_transient_rpc_error(item["error"]):
                        raise _Retryable(f"{method}: {item['error']}")
                    raise RpcError(method, params, item["error"])
                if "result" not in item:
                    raise _Retryable(f"batch item {i} has neither result nor error")
                out.append(item["result"])
            return out

        self.stats.add(calls=len(calls))
        return self._with_retries(payload, check)

    def batches(
        self, calls: Iterable[Call], *, batch_size: int | None = None
    ) -> Iterator[list[Any]]:
        """Send `calls` in batches with up to `max_in_flight` batches in flight; yields each
        batch's results in order, so a caller can stream without holding everything."""
        size = batch_size or self.batch_size
        chunks = _chunked(calls, size)
        with ThreadPoolExecutor(self.max_in_flight, thread_name_prefix="rpc") as pool:
            pending: list[Any] = []
            for chunk in chunks:
                pending.append(pool.submit(self.batch, chunk))
                if len(pending) >= self.max_in_flight * 2:
                    yield pending.pop(0).result()
            for fut in pending:
                yield fut.result()


def _is_transient_rpc_error(err: Any) -> bool:
    if not isinstance(err, dict):
        return False
    msg = str(err.get("message", "")).lower()
    # -32005 is the conventional "limit exceeded / rate limited" code of public providers.
    return err.get("code") in (-32005, 429) or "rate limit" in msg or "too many requests" in msg


def _chunked(items: Iterable[Call], size: int) -> Iterator[list[Call]]:
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def hex_to_int(value: str | None) -> int | None:
    return None if value is None else int(value, 16)
