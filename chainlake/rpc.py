"""A batched JSON-RPC client for bulk reads from EVM nodes.

eth-abi decodes what it returns; this client does the transport: JSON-RPC batches, a bounded number
of requests in flight, timeouts, retries with backoff (honouring `Retry-After`) and failover
across a chain's URLs in order, going back to the first once its cool-down has passed.

What is retried (on the next URL when there is one): HTTP 429 and 5xx, 408, timeouts,
connection errors (refused, reset, dropped mid-body), malformed or truncated JSON, a batch
answer that misses items, and JSON-RPC errors that mean "rate limited". What is not: a
JSON-RPC error about the request itself (`RpcError`). A batch or a `eth_getLogs` range the
provider refuses as too large is split in halves instead, and so is a batch whose answer is
larger than `max_response_bytes` (the body is read up to that size, never further).

Given the chain's id, the client checks `eth_chainId` at every URL before the URL serves a
request (again after a failure of the URL or a failover to it). A URL on another chain, or
one whose answers a caller refuses (see `call(accept=...)`: a head that is not a quantity, a
node behind the stored data), is taken out of rotation for the client's life; when no URL is
left the call fails with `NoUsableUrl`, naming each URL and why. Such errors, and answers that
break the JSON-RPC shapes, are `NodeError`s: retrying the same step would get the same answer.

URLs appear in errors, logs and statistics redacted (`chainlake.uri.redact_uri`): no userinfo,
query string or API key in the path.
"""

from __future__ import annotations

import io
import itertools
import logging
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import orjson
import polars as pl

from chainlake.retry import backoff_delay, parse_retry_after
from chainlake.uri import redact_uri

log = logging.getLogger(__name__)


class _RedactUrls(logging.Filter):
    """httpx logs every request's URL at INFO, credentials included: redact it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, httpx.URL) for a in record.args):
            record.args = tuple(
                redact_uri(str(a)) if isinstance(a, httpx.URL) else a for a in record.args
            )
        return True


logging.getLogger("httpx").addFilter(_RedactUrls())

Call = tuple[str, Sequence[Any]]
T = TypeVar("T")

DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
LATENCY_SAMPLES = 256  # round trips per URL kept for the latency percentiles
_QUANTITY_RE = re.compile(r"^0[xX][0-9a-fA-F]+$")


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

    @property
    def message(self) -> str:
        """The node's error message."""
        return str(self.error.get("message", ""))


class RpcUnavailable(RuntimeError):
    """Every URL failed after all retries, or a URL refused us for good (HTTP 4xx)."""


class NodeError(RuntimeError):
    """A node answered, and the answer cannot be used: another chain, a head behind the data
    already stored, a value that breaks its JSON-RPC shape, an answer over the size limit.
    Not transient: the same request gets the same answer, so callers stop instead of
    retrying (assets raise `dg.Failure(allow_retries=False)`). The message names the URL,
    redacted, where one is known."""


class BadAnswer(NodeError):
    """A value in a node's answer is not what JSON-RPC promises (a quantity that is not
    0x-hex, a null where a block number belongs, a string where a block belongs)."""


class AnswerTooLarge(NodeError):
    """A single call's answer is larger than the client's `max_response_bytes`."""


class NoUsableUrl(NodeError):
    """Every URL of the chain is out of rotation (wrong chain, broken answers, behind)."""


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class _TooLarge(Exception):
    """The provider refused the size of a batch; the caller splits it."""


class _Oversize(_TooLarge):
    """The answer is larger than `max_response_bytes`: a batch is split, a single call fails."""


class _Refuse(Exception):
    """This URL cannot serve this chain (its reason, to log and report); take it out."""


@dataclass
class _Endpoint:
    url: str
    failures: int = 0
    down_until: float = 0.0
    # why the URL is out of rotation for the client's life (wrong chain, broken answers)
    refused: str | None = None
    # its chain id was checked since it last failed, or was last failed over to
    verified: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    lock_stats: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # the URL as it may be logged, stored or shown: credentials redacted
    name: str = field(init=False)
    # measurements of this URL's round trips (see `RpcClient.health`)
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))
    errors: int = 0
    last_error: str | None = None
    last_error_at: float | None = None  # wall-clock seconds
    last_ok_at: float | None = None
    head: int | None = None
    head_at: float | None = None

    def __post_init__(self) -> None:
        self.name = redact_uri(self.url)

    def record(self, seconds: float | None, error: str | None, now: float) -> None:
        """One round trip: its duration when it succeeded, else its error (already redacted)."""
        with self.lock_stats:
            if error is None:
                if seconds is not None:
                    self.latencies.append(seconds)
                self.last_ok_at = now
            else:
                self.errors += 1
                self.last_error, self.last_error_at = error[:300], now

    def scrub(self, text: str) -> str:
        """`text` (an httpx error may quote the URL) with the URL's credentials taken out."""
        text = text.replace(self.url, self.name)
        parts = httpx.URL(self.url)
        secrets = [parts.userinfo.decode(), parts.query.decode(), parts.fragment]
        secrets += [s for s in parts.path.split("/") if s and s not in self.name.split("/")]
        for secret in secrets:
            if len(secret) >= 4:
                text = text.replace(secret, "<redacted>")
        return text


@dataclass
class RpcStats:
    """Counters of a client's traffic (requests, retries, failovers, ...), safe across threads."""

    requests: int = 0
    calls: int = 0
    retries: int = 0
    failovers: int = 0
    splits: int = 0
    in_flight: int = 0
    max_in_flight_seen: int = 0
    by_url: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        """Add to several counters at once."""
        with self.lock:
            for k, v in counts.items():
                setattr(self, k, getattr(self, k) + v)

    def _enter(self, url: str) -> None:
        with self.lock:
            self.requests += 1
            self.in_flight += 1
            self.max_in_flight_seen = max(self.max_in_flight_seen, self.in_flight)
            self.by_url[url] = self.by_url.get(url, 0) + 1

    def _leave(self) -> None:
        with self.lock:
            self.in_flight -= 1


_RATE_LIMIT_RE = re.compile(
    r"rate.?limit|rate exceeded|too many requests|capacity|throughput|slow down|try again later",
    re.I,
)
_TOO_LARGE_RE = re.compile(
    r"block range|range (is )?too (large|wide|big)|more than \d+ (results|logs)|"
    r"response size|too many (results|logs|blocks)|limited to|"
    r"exceed(s|ed)? (the )?(max|maximum|limit)|result set too large|batch (is )?too large|"
    r"batch size|too large",
    re.I,
)
_SUGGESTED_RANGE_RE = re.compile(r"\[\s*(0x[0-9a-fA-F]+)\s*,\s*(0x[0-9a-fA-F]+)\s*\]")


def is_too_large(err: Any) -> bool:
    """A provider's refusal of a range or result size (eth_getLogs) or of a batch's size."""
    return isinstance(err, dict) and bool(_TOO_LARGE_RE.search(str(err.get("message", ""))))


def is_transient(err: Any) -> bool:
    """A JSON-RPC error worth retrying as is: the provider is rate limiting us."""
    if not isinstance(err, dict) or is_too_large(err):
        return False
    msg = str(err.get("message", ""))
    # -32005 is the conventional "limit exceeded" code of public providers; when its message
    # is about a range or a result size, is_too_large() above has already claimed it.
    return err.get("code") in (-32005, 429) or bool(_RATE_LIMIT_RE.search(msg))


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
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        transport: httpx.BaseTransport | None = None,
        chain_id: int | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        """A client of one chain's URLs, tried in order.

        Args:
            urls: The chain's JSON-RPC URLs, preferred first.
            chain_id: The chain's id: every URL must serve it (checked with `eth_chainId`
                before the URL's first request); None checks nothing.
            max_response_bytes: The largest answer read; a larger batch answer is split, a
                larger single answer raises `AnswerTooLarge`.
        """
        if not urls:
            raise ValueError("RpcClient needs at least one URL")
        self._endpoints = [_Endpoint(u) for u in urls]
        self.chain_id = chain_id
        self.max_response_bytes = max_response_bytes
        self._served = threading.local()
        self.timeout = timeout
        self.max_in_flight = max_in_flight
        self.batch_size = batch_size
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.cooldown = cooldown
        self._sleep = sleep
        self._clock = clock
        self._wall = wall
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=httpx.Limits(
                max_connections=max_in_flight, max_keepalive_connections=max_in_flight
            ),
            headers={"content-type": "application/json"},
            transport=transport,
        )
        self.stats = RpcStats()

    @property
    def urls(self) -> list[str]:
        """The node URLs this client uses."""
        return [e.url for e in self._endpoints]

    @property
    def last_url(self) -> str:
        """The URL, redacted, that answered this thread's last request (for error messages)."""
        return getattr(self._served, "name", None) or self._endpoints[0].name

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()

    def __enter__(self) -> RpcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- endpoint selection ---------------------------------------------------------------

    def _pick(self) -> _Endpoint:
        """The first URL, in configured order, that is not cooling down; so traffic goes back
        to the preferred URL as soon as its cool-down is over (and stays there if it works).
        URLs out of rotation are never picked; with none left, `NoUsableUrl`."""
        now = self._clock()
        with self._lock:
            usable = [e for e in self._endpoints if e.refused is None]
            if not usable:
                reasons = "; ".join(f"{e.name} {e.refused}" for e in self._endpoints)
                raise NoUsableUrl(f"no usable RPC URL: {reasons}")
            for ep in usable:
                if ep.down_until <= now:
                    return ep
            return min(usable, key=lambda e: e.down_until)

    def _refuse(self, ep: _Endpoint, reason: str) -> None:
        with self._lock:
            if ep.refused is None:
                ep.refused = reason
                left = sum(e.refused is None for e in self._endpoints)
                log.warning("RPC %s %s; out of rotation (%d URL(s) left)", ep.name, reason, left)

    def _check_chain(self, ep: _Endpoint) -> None:
        """Make sure `ep` serves the configured chain before it serves anything else: once,
        and again after it failed or was failed over to (a load balancer may have put
        another node behind it). Raises `_Refuse` when it does not."""
        if self.chain_id is None or ep.verified:
            return
        with ep.lock:  # one check per URL at a time; the other threads wait for its result
            if ep.verified or ep.refused is not None:
                return
            payload = orjson.dumps(
                {"jsonrpc": "2.0", "id": next(self._ids), "method": "eth_chainId", "params": []}
            )
            with self._slots:
                self.stats._enter(ep.name)
                try:
                    raw = self._post(ep, payload)
                finally:
                    self.stats._leave()
            body = _loads(raw)
            if isinstance(body, dict) and body.get("error") is not None:
                if is_transient(body["error"]):
                    raise _Retryable(f"eth_chainId: {body['error']}")
                raise _Refuse(f"answered eth_chainId with the error {body['error']}")
            value = body.get("result") if isinstance(body, dict) else body
            if not isinstance(value, str) or not _QUANTITY_RE.match(value):
                raise _Refuse(f"answered eth_chainId with {value!r}, not a chain id")
            if int(value, 16) != self.chain_id:
                raise _Refuse(f"serves chain id {int(value, 16)}, chains.yaml says {self.chain_id}")
            ep.verified = True

    def _mark_failed(self, ep: _Endpoint, retry_after: float | None) -> None:
        with self._lock:
            ep.failures += 1
            if len(self._endpoints) > 1:
                ep.verified = False  # traffic fails over, and its chain is checked on return
            if len(self._endpoints) > 1:
                pause = backoff_delay(ep.failures, base=self.cooldown, cap=60.0)
                ep.down_until = self._clock() + max(pause, retry_after or 0.0)

    def _mark_ok(self, ep: _Endpoint) -> None:
        if ep.failures:
            with self._lock:
                if ep.failures:
                    log.info("RPC %s answers again", ep.name)
                ep.failures = 0
                ep.down_until = 0.0

    # -- one HTTP round trip --------------------------------------------------------------

    def _post(self, ep: _Endpoint, payload: bytes) -> bytes:
        # httpx errors are re-raised without their cause (`from None`): their text may quote
        # the URL with its credentials, and a run's error report shows every cause
        try:
            with self._http.stream("POST", ep.url, content=payload) as resp:
                status = resp.status_code
                if status == 429 or status == 408 or status >= 500:
                    # parse_retry_after measures an HTTP-date against the wall clock, never
                    # self._clock (monotonic, for cool-downs only)
                    raise _Retryable(
                        f"HTTP {status} from {ep.name}",
                        parse_retry_after(resp.headers.get("retry-after")),
                    )
                if status == 413:
                    raise _TooLarge(f"HTTP 413 from {ep.name}")
                if status >= 400:
                    text = ep.scrub(resp.read()[:200].decode("utf-8", "replace"))
                    raise RpcUnavailable(f"{ep.name} answered HTTP {status}: {text}")
                return self._read_capped(ep, resp)
        except httpx.TimeoutException as e:
            raise _Retryable(f"timeout from {ep.name}: {ep.scrub(repr(e))}") from None
        except httpx.TransportError as e:
            # refused, reset, dropped mid-body (a short body against Content-Length lands here)
            raise _Retryable(f"connection error from {ep.name}: {ep.scrub(repr(e))}") from None

    def _read_capped(self, ep: _Endpoint, resp: httpx.Response) -> bytes:
        """The body, read no further than `max_response_bytes` (a node may send anything)."""
        cap = self.max_response_bytes
        declared = resp.headers.get("content-length", "")
        too_big = f"the answer of {ep.name} is larger than max_response_bytes ({cap} bytes)"
        if declared.isdigit() and int(declared) > cap:
            raise _Oversize(too_big)
        chunks: list[bytes] = []
        size = 0
        for chunk in resp.iter_bytes():
            size += len(chunk)
            if size > cap:
                raise _Oversize(too_big)
            chunks.append(chunk)
        return b"".join(chunks)

    def _with_retries(self, payload: bytes, check: Callable[[bytes], T]) -> T:
        attempt = 0
        failed: _Endpoint | None = None
        while True:
            ep = self._pick()
            if failed is not None and ep is not failed:
                ep.verified = False  # failed over to it: check its chain again
            try:
                self._check_chain(ep)
                with self._slots:
                    self.stats._enter(ep.name)
                    started = time.perf_counter()
                    try:
                        body = self._post(ep, payload)
                    except (_Retryable, RpcUnavailable) as e:
                        ep.record(None, str(e), self._wall())
                        raise
                    finally:
                        self.stats._leave()
                ep.record(time.perf_counter() - started, None, self._wall())
                self._served.name = ep.name
                result = check(body)
                self._mark_ok(ep)
                return result
            except _Refuse as e:
                # this URL cannot serve the chain: out for good; _pick() raises when none is left
                self._refuse(ep, str(e))
                failed = ep
            except RpcUnavailable as e:
                # a hard refusal (401, 403, 404, ...) of this URL: another may serve us
                if len(self._endpoints) == 1 or attempt >= self.max_retries:
                    raise
                attempt += 1
                self._mark_failed(ep, None)
                failed = ep
                self.stats.add(failovers=1, retries=1)
                log.warning("RPC failover after %s", e)
            except _Retryable as e:
                attempt += 1
                self._mark_failed(ep, e.retry_after)
                failed = ep
                if attempt > self.max_retries:
                    raise RpcUnavailable(f"gave up after {attempt} attempts: {e}") from e
                nxt = self._pick()
                if nxt is not ep and nxt.down_until <= self._clock():
                    self.stats.add(failovers=1, retries=1)
                    log.warning("RPC failover %s -> %s: %s", ep.name, nxt.name, e)
                    continue
                delay = e.retry_after
                if delay is None:
                    delay = backoff_delay(
                        attempt, base=self.backoff_base, cap=self.backoff_max, jitter=random.random
                    )
                self.stats.add(retries=1)
                log.warning("RPC retry %d/%d in %.2fs: %s", attempt, self.max_retries, delay, e)
                self._sleep(delay)

    # -- health -------------------------------------------------------------------------

    def probe(self) -> list[NodeHealth]:
        """Ask every URL in rotation for its head (`eth_blockNumber`), each once, with no
        retry and no failover, recording the round trip like any other (latency, or the
        error and its time); returns `health()`. A URL on another chain, or answering a head
        that is not a quantity, is taken out of rotation as in normal traffic."""
        for ep in self._endpoints:
            if ep.refused is not None:
                continue
            payload = orjson.dumps(
                {"jsonrpc": "2.0", "id": next(self._ids), "method": "eth_blockNumber", "params": []}
            )
            try:
                self._check_chain(ep)
                started = time.perf_counter()
                try:
                    raw = self._post(ep, payload)
                except (_Retryable, RpcUnavailable) as e:
                    ep.record(None, str(e), self._wall())
                    self._mark_failed(ep, None)
                    continue
                elapsed = time.perf_counter() - started
                body = _loads(raw)
                value = body.get("result") if isinstance(body, dict) else None
                if not is_quantity(value):
                    raise _Refuse(f"answered eth_blockNumber with {value!r}, not a 0x-hex quantity")
                ep.record(elapsed, None, self._wall())
                with ep.lock_stats:
                    ep.head, ep.head_at = int(str(value), 16), self._wall()
                self._mark_ok(ep)
            except _Refuse as e:
                ep.record(None, str(e), self._wall())
                self._refuse(ep, str(e))
            except (_Retryable, RpcUnavailable, _TooLarge) as e:
                ep.record(None, str(e), self._wall())
                self._mark_failed(ep, None)
        return self.health()

    def health(self) -> list[NodeHealth]:
        """What this client measured of each URL, in configured order (URLs redacted)."""
        out = []
        for priority, ep in enumerate(self._endpoints):
            with ep.lock_stats:
                samples = sorted(ep.latencies)
                out.append(
                    NodeHealth(
                        url=ep.name,
                        priority=priority,
                        head=ep.head,
                        head_at=ep.head_at,
                        latency_p50_ms=_percentile_ms(samples, 0.50),
                        latency_p95_ms=_percentile_ms(samples, 0.95),
                        samples=len(samples),
                        errors=ep.errors,
                        last_error=ep.last_error,
                        last_error_at=ep.last_error_at,
                        last_ok_at=ep.last_ok_at,
                        refused=ep.refused,
                    )
                )
        return out

    # -- public API -----------------------------------------------------------------------

    def call(
        self,
        method: str,
        params: Sequence[Any] = (),
        *,
        accept: Callable[[Any], str | None] | None = None,
    ) -> Any:
        """One JSON-RPC call; returns its result or raises RpcError (retried on transient
        errors).

        Args:
            method: The JSON-RPC method.
            params: Its parameters.
            accept: Judges the result: None accepts it; a reason (a phrase completing "<URL>
                ...", e.g. "is behind: ...") takes the URL that answered out of rotation, and
                the call goes to the next URL. With no URL left, `NoUsableUrl` names each
                URL with its reason.
        """
        req_id = next(self._ids)
        payload = orjson.dumps(
            {"jsonrpc": "2.0", "id": req_id, "method": method, "params": list(params)}
        )

        def check(raw: bytes) -> Any:
            body = _loads(raw)
            if not isinstance(body, dict) or ("result" not in body and "error" not in body):
                raise _Retryable(f"{method}: response is not a JSON-RPC object")
            if body.get("error") is not None:
                err = body["error"]
                if is_transient(err):
                    raise _Retryable(f"{method}: {err}")
                raise RpcError(method, params, err if isinstance(err, dict) else {"message": err})
            reason = None if accept is None else accept(body["result"])
            if reason is not None:
                raise _Refuse(reason)
            return body["result"]

        self.stats.add(calls=1)
        try:
            return self._with_retries(payload, check)
        except _TooLarge as e:
            raise _too_large(method, e) from None

    def block_number(self) -> int:
        """The node's head (`eth_blockNumber`). A URL that answers anything but a 0x-hex
        quantity (null, a negative number, a decimal string) is taken out of rotation."""
        return int(self.call("eth_blockNumber", accept=quantity_refusal("eth_blockNumber")), 16)

    def batch(
        self, calls: Sequence[Call], *, accept: Callable[[list[Any]], str | None] | None = None
    ) -> list[Any]:
        """One JSON-RPC batch; results in the order of `calls`. Raises RpcError on any error.
        A batch the provider refuses as too large is sent again as two halves. `accept`
        judges the results as in `call` (not passed on to the halves of a split batch)."""
        if not calls:
            return []
        ids, payload = self._payload(calls)

        def check(raw: bytes) -> list[Any]:
            results = _check_batch(_loads(raw), ids, calls)
            reason = None if accept is None else accept(results)
            if reason is not None:
                raise _Refuse(reason)
            return results

        self.stats.add(calls=len(calls))
        try:
            return self._with_retries(payload, check)
        except _TooLarge as e:
            if len(calls) == 1:
                raise _too_large(calls[0][0], e) from None
            self.stats.add(splits=1)
            half = len(calls) // 2
            return self.batch(calls[:half]) + self.batch(calls[half:])

    def batch_frame(self, calls: Sequence[Call], result_dtype: pl.DataType) -> pl.Series:
        """Like `batch`, but the results come back as one Polars Series of `result_dtype`, in
        the order of `calls`, parsed by Polars straight from the response bytes (no Python
        objects per field). Fields of a result not in the dtype are ignored; missing ones are
        null. Any irregular answer is checked again the slow way, which raises the right error."""
        if not calls:
            return pl.Series("result", [], dtype=result_dtype)
        ids, payload = self._payload(calls)
        schema: dict[str, Any] = {"id": pl.Int64, "result": result_dtype, "error": _ERROR_DTYPE}

        def check(raw: bytes) -> pl.Series:
            try:
                df = pl.read_json(io.BytesIO(raw), schema=schema)
            except Exception:  # any parse failure goes to the slow path
                df = None
            if (
                df is not None
                and df.height == len(ids)
                and df["error"].null_count() == df.height
                and df["id"].null_count() == 0
            ):
                df = df.sort("id")
                if df["id"].to_list() == ids:
                    return df["result"]
            results = _check_batch(_loads(raw), ids, calls)
            try:
                return pl.Series("result", results, dtype=result_dtype)
            except Exception as e:
                # the node answered, with something else than the method's shape
                raise BadAnswer(
                    f"{self.last_url} answered {calls[0][0]} {calls[0][1][0]}..: unexpected "
                    f"result shape ({type(e).__name__}: {str(e)[:200]})"
                ) from None

        self.stats.add(calls=len(calls))
        try:
            return self._with_retries(payload, check)
        except _TooLarge as e:
            if len(calls) == 1:
                raise _too_large(calls[0][0], e) from None
            self.stats.add(splits=1)
            half = len(calls) // 2
            return pl.concat(
                [
                    self.batch_frame(calls[:half], result_dtype),
                    self.batch_frame(calls[half:], result_dtype),
                ]
            )

    def batches(
        self, calls: Iterable[Call], *, batch_size: int | None = None
    ) -> Iterator[list[Any]]:
        """Send `calls` in batches with up to `max_in_flight` batches in flight; yields each
        batch's results in order, so a caller can stream without holding everything."""
        size = batch_size or self.batch_size
        yield from self.ordered(self.batch, _chunked(calls, size))

    def batch_or_errors(self, calls: Sequence[Call]) -> list[Any]:
        """Like `batch`, but a call the node answers with a non-transient error (an `eth_call`
        that reverts, a function a contract does not have) gives its `RpcError` in place of
        its result instead of failing the batch; transport failures, rate limits and refused
        sizes are retried, split or raised as in `batch`."""
        if not calls:
            return []
        ids, payload = self._payload(calls)

        def check(raw: bytes) -> list[Any]:
            return _check_batch(_loads(raw), ids, calls, keep_errors=True)

        self.stats.add(calls=len(calls))
        try:
            return self._with_retries(payload, check)
        except _TooLarge as e:
            if len(calls) == 1:
                raise _too_large(calls[0][0], e) from None
            self.stats.add(splits=1)
            half = len(calls) // 2
            return self.batch_or_errors(calls[:half]) + self.batch_or_errors(calls[half:])

    def ordered(
        self, fn: Callable[[Any], T], items: Iterable[Any], *, workers: int | None = None
    ) -> Iterator[T]:
        """`map(fn, items)` on `workers` threads (`max_in_flight` by default), results in
        order, at most twice that many waiting; a failure cancels what has not started.
        More workers than `max_in_flight` keeps the node busy while some of them work on
        answers already received: requests in flight stay bounded by `max_in_flight`."""
        workers = workers or self.max_in_flight
        with ThreadPoolExecutor(workers, thread_name_prefix="rpc") as pool:
            pending: list[Future[T]] = []
            try:
                for item in items:
                    pending.append(pool.submit(fn, item))
                    if len(pending) >= workers * 2:
                        yield pending.pop(0).result()
                while pending:
                    yield pending.pop(0).result()
            finally:
                for fut in pending:
                    fut.cancel()

    def get_logs(
        self,
        *,
        from_block: int,
        to_block: int,
        address: str | Sequence[str] | None = None,
        topics: Sequence[Any] | None = None,
        max_blocks: int | None = None,
    ) -> list[dict[str, Any]]:
        """`eth_getLogs` over [from_block, to_block], in as many requests as the provider
        needs: a range it refuses (too many blocks or results, response too big) is halved,
        or cut to the range the provider suggests, and the smaller span is kept for the rest."""
        out: list[dict[str, Any]] = []
        span = max_blocks or (to_block - from_block + 1)
        start = from_block
        while start <= to_block:
            end = min(to_block, start + span - 1)
            flt: dict[str, Any] = {"fromBlock": hex(start), "toBlock": hex(end)}
            if address is not None:
                flt["address"] = address
            if topics is not None:
                flt["topics"] = list(topics)
            try:
                logs = self.call("eth_getLogs", [flt])
            except RpcError as e:
                if not is_too_large(e.error) or end == start:
                    raise
                span = _smaller_span(e.message, start, end)
                self.stats.add(splits=1)
                log.info("eth_getLogs %d..%d refused (%s); span now %d", start, end, e, span)
                continue
            out.extend(logs or ())
            start = end + 1
        return out

    # -- helpers --------------------------------------------------------------------------

    def _payload(self, calls: Sequence[Call]) -> tuple[list[int], bytes]:
        with self._lock:
            ids = [next(self._ids) for _ in calls]
        payload = orjson.dumps(
            [
                {"jsonrpc": "2.0", "id": i, "method": m, "params": list(p)}
                for i, (m, p) in zip(ids, calls, strict=True)
            ]
        )
        return ids, payload


@dataclass(frozen=True)
class NodeHealth:
    """One URL as a client measured it: its last head, the latency of its successful round
    trips (percentiles over the last LATENCY_SAMPLES), its failed ones. `url` is redacted;
    times are wall-clock seconds."""

    url: str
    priority: int
    head: int | None
    head_at: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    samples: int
    errors: int
    last_error: str | None
    last_error_at: float | None
    last_ok_at: float | None
    refused: str | None

    @property
    def healthy(self) -> bool:
        """In rotation, and its latest round trip succeeded (a URL never asked is not)."""
        if self.refused is not None or self.last_ok_at is None:
            return False
        return self.last_error_at is None or self.last_ok_at >= self.last_error_at


def _percentile_ms(ordered: Sequence[float], q: float) -> float | None:
    """The nearest-rank q-quantile of sorted seconds, in milliseconds (None without samples)."""
    if not ordered:
        return None
    rank = max(1, -(-len(ordered) * q // 1))  # ceil(n * q), at least the first
    return round(ordered[int(rank) - 1] * 1000.0, 3)


_ERROR_DTYPE = pl.Struct({"code": pl.Int64, "message": pl.String})


def _loads(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise _Retryable(f"malformed or truncated JSON ({len(raw)} bytes): {e}") from e


def _check_batch(
    body: Any, ids: list[int], calls: Sequence[Call], *, keep_errors: bool = False
) -> list[Any]:
    if isinstance(body, dict) and body.get("error") is not None:
        err = body["error"]
        if is_too_large(err) and len(calls) > 1:
            raise _TooLarge(f"batch of {len(calls)} refused: {err}")
        raise _Retryable(f"batch refused: {err}")
    if not isinstance(body, list):
        raise _Retryable("batch response is not a JSON array")
    by_id = {item.get("id"): item for item in body if isinstance(item, dict)}
    out = []
    for i, (method, params) in zip(ids, calls, strict=True):
        item = by_id.get(i)
        if item is None:
            raise _Retryable(f"batch response misses id {i} ({method})")
        if item.get("error") is not None:
            err = item["error"]
            if is_transient(err):
                raise _Retryable(f"{method}: {err}")
            error = RpcError(method, params, err if isinstance(err, dict) else {"message": err})
            if not keep_errors:
                raise error
            out.append(error)
            continue
        if "result" not in item:
            raise _Retryable(f"batch item {i} has neither result nor error")
        out.append(item["result"])
    return out


def _smaller_span(message: str, start: int, end: int) -> int:
    """The provider's suggested range when it gives one (Alchemy does: "this block range
    should work: [0x.., 0x..]"), else half of the refused one."""
    half = max(1, (end - start + 1) // 2)
    m = _SUGGESTED_RANGE_RE.search(message)
    if m:
        lo, hi = int(m.group(1), 16), int(m.group(2), 16)
        if lo == start and start <= hi < end:
            return hi - start + 1
    return half


def _chunked(items: Iterable[Call], size: int) -> Iterator[list[Call]]:
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def hex_to_int(value: str | None) -> int | None:
    """A 0x-quantity as an int (None stays None)."""
    return None if value is None else int(value, 16)


def is_quantity(value: Any) -> bool:
    """Whether `value` is a JSON-RPC quantity: a string 0x followed by hex digits (no sign)."""
    return isinstance(value, str) and bool(_QUANTITY_RE.match(value))


def parse_quantity(value: Any, what: str) -> int:
    """A JSON-RPC quantity as an int, or `BadAnswer` naming `what` (where the value came from,
    e.g. "http://node answered eth_getBlockByNumber 0x10 with timestamp")."""
    if not is_quantity(value):
        raise BadAnswer(f"{what} {value!r}, not a 0x-hex quantity")
    return int(value, 16)


def quantity_refusal(method: str) -> Callable[[Any], str | None]:
    """An `accept` judge for `RpcClient.call`: a result that is not a quantity refuses the URL."""

    def judge(value: Any) -> str | None:
        if is_quantity(value):
            return None
        return f"answered {method} with {value!r}, not a 0x-hex quantity"

    return judge


def _too_large(method: str, e: _TooLarge) -> Exception:
    """The error for a single call whose answer is too large (a batch is split instead)."""
    if isinstance(e, _Oversize):
        return AnswerTooLarge(
            f"{method}: {e}; raise max_response_bytes of the rpc resource if the node's "
            "answers are legitimately this large"
        )
    return RpcUnavailable(f"{method}: refused as too large: {e}")


# -- JSON-RPC values in Polars ------------------------------------------------------------
# Bulk responses are parsed by Polars with every field as a string (see `batch_frame`); these
# expressions decode them column-wise, strictly: a value that is not a 0x-quantity, or too
# wide for its type, fails the conversion instead of turning into null.


def quantity(field: str | pl.Expr, dtype: Any = pl.Int64) -> pl.Expr:
    """A 0x-hex quantity column as an integer of `dtype` (Int128 for wei amounts)."""
    col = pl.col(field) if isinstance(field, str) else field
    digits = (
        pl.when(col.is_null())
        .then(pl.lit(None, pl.String))
        .when(col.str.starts_with("0x") | col.str.starts_with("0X"))
        .then(col.str.slice(2))
        .otherwise(pl.lit("not a quantity"))
    )
    return digits.str.to_integer(base=16, dtype=dtype, strict=True)


def wei(field: str | pl.Expr) -> pl.Expr:
    """A 0x-hex amount as Decimal(38,0), exactly (an amount beyond 38 digits raises)."""
    return quantity(field, pl.Int128).cast(pl.Decimal(38, 0), strict=True)


def lower(field: str | pl.Expr) -> pl.Expr:
    """A string column (or expression) in lowercase."""
    col = pl.col(field) if isinstance(field, str) else field
    return col.str.to_lowercase()
