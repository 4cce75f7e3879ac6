"""RpcClient against scripted HTTP answers (httpx.MockTransport): what is retried, how long it
waits, where it fails over to and when it comes back, and how refused sizes are split."""

from __future__ import annotations

import datetime as dt
import email.utils
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import polars as pl
import pytest

from chainlake.rpc import RpcClient, RpcError, RpcUnavailable


def ok(request: httpx.Request, result: Callable[[str, list[Any]], Any]) -> httpx.Response:
    """Answer a call or a batch the way a node would."""
    body = orjson.loads(request.content)
    if isinstance(body, list):
        out = [
            {"jsonrpc": "2.0", "id": c["id"], "result": result(c["method"], c["params"])}
            for c in body
        ]
        return httpx.Response(200, content=orjson.dumps(out[::-1]))  # any order is allowed
    return httpx.Response(
        200,
        content=orjson.dumps(
            {"jsonrpc": "2.0", "id": body["id"], "result": result(body["method"], body["params"])}
        ),
    )


def echo(method: str, params: list[Any]) -> Any:
    return {"method": method, "params": params}


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.t += s


def client(
    handler: Callable[[httpx.Request], httpx.Response], urls=("http://a",), **kw
) -> tuple[RpcClient, Clock]:
    clock = Clock()
    kw.setdefault("backoff_base", 0.1)
    c = RpcClient(
        list(urls),
        transport=httpx.MockTransport(handler),
        sleep=clock.sleep,
        clock=clock,
        **kw,
    )
    return c, clock


def scripted(*faults: Callable[[httpx.Request], httpx.Response] | None):
    """A handler answering with the given faults first (None = a good answer), then good."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        i = len(seen) - 1
        fault = faults[i] if i < len(faults) else None
        return ok(request, echo) if fault is None else fault(request)

    return handler, seen


def status(
    code: int, headers: dict[str, str] | None = None
) -> Callable[[httpx.Request], httpx.Response]:
    return lambda r: httpx.Response(code, headers=headers or {}, content=b"busy")


def raise_(exc: type[Exception]) -> Callable[[httpx.Request], httpx.Response]:
    def f(r: httpx.Request) -> httpx.Response:
        raise exc("injected", request=r)  # type: ignore[call-arg]

    return f


def body(content: bytes) -> Callable[[httpx.Request], httpx.Response]:
    return lambda r: httpx.Response(200, content=content)


def test_429_honours_retry_after_seconds_and_http_date() -> None:
    when = email.utils.format_datetime(
        dt.datetime.fromtimestamp(time.time() + 30, dt.UTC), usegmt=True
    )
    handler, seen = scripted(status(429, {"Retry-After": "3"}), status(503, {"Retry-After": when}))
    c, clock = client(handler)
    assert c.call("eth_chainId") == {"method": "eth_chainId", "params": []}
    assert clock.sleeps[0] == 3.0
    assert 28 <= clock.sleeps[1] <= 30
    assert c.stats.retries == 2 and len(seen) == 3


@pytest.mark.parametrize(
    "fault",
    [
        status(500),
        status(502),
        status(408),
        raise_(httpx.ReadTimeout),
        raise_(httpx.ConnectError),
        raise_(httpx.RemoteProtocolError),  # dropped mid-body / short body
        body(b'{"jsonrpc":"2.0","id":1,"resu'),  # truncated
        body(b"<html>bad gateway</html>"),  # malformed
        body(b'{"jsonrpc":"2.0","id":1}'),  # neither result nor error
        lambda r: httpx.Response(
            200,
            content=orjson.dumps(
                {"jsonrpc": "2.0", "id": 1, "error": {"code": -32005, "message": "rate limited"}}
            ),
        ),
    ],
)
def test_transient_failures_are_retried_with_backoff(fault) -> None:
    handler, seen = scripted(fault, fault)
    c, clock = client(handler)
    assert c.call("eth_blockNumber")["method"] == "eth_blockNumber"
    assert len(seen) == 3
    assert len(clock.sleeps) == 2
    assert 0.05 <= clock.sleeps[0] <= 0.1 and 0.1 <= clock.sleeps[1] <= 0.2  # exponential


def test_request_errors_are_not_retried() -> None:
    handler, seen = scripted(
        lambda r: httpx.Response(
            200,
            content=orjson.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "error": {"code": -32602, "message": "invalid argument"},
                }
            ),
        )
    )
    c, _ = client(handler)
    with pytest.raises(RpcError, match="invalid argument") as e:
        c.call("eth_getBlockByNumber", ["nope", True])
    assert e.value.code == -32602 and len(seen) == 1


def test_gives_up_after_max_retries() -> None:
    handler, seen = scripted(*[status(500)] * 10)
    c, _ = client(handler, max_retries=3)
    with pytest.raises(RpcUnavailable, match="gave up after 4 attempts"):
        c.call("eth_chainId")
    assert len(seen) == 4


def test_hard_refusal_fails_at_once_with_one_url_and_over_with_two() -> None:
    handler, seen = scripted(status(401))
    c, _ = client(handler)
    with pytest.raises(RpcUnavailable, match="401"):
        c.call("eth_chainId")
    assert len(seen) == 1

    handler, seen = scripted(status(403))
    c, _ = client(handler, urls=("http://a", "http://b"))
    assert c.call("eth_chainId")
    assert seen == ["http://a", "http://b"]


def test_failover_in_order_and_back_to_the_first_when_it_recovers() -> None:
    down = {"http://a": True}
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        url = f"{request.url.scheme}://{request.url.host}"
        seen.append(url)
        if down.get(url):
            raise httpx.ConnectError("refused", request=request)
        return ok(request, echo)

    c, clock = client(handler, urls=("http://a", "http://b", "http://c"), cooldown=5.0)
    c.call("x")
    assert seen == ["http://a", "http://b"]  # failed over at once, no sleep
    assert clock.sleeps == []
    seen.clear()
    for _ in range(3):
        c.call("x")
    assert seen == ["http://b"] * 3  # a is cooling down
    clock.t += 5.0
    c.call("x")
    assert seen[-2:] == ["http://a", "http://b"]  # a tried again, still down: 10 s more
    seen.clear()
    clock.t += 6.0
    c.call("x")
    assert seen == ["http://b"]
    down["http://a"] = False
    clock.t += 5.0
    seen.clear()
    for _ in range(3):
        c.call("x")
    assert seen == ["http://a"] * 3  # recovered: traffic is back on the first URL
    assert c.stats.failovers == 2


def test_rate_limited_url_sends_traffic_to_the_next_for_its_retry_after() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        url = f"{request.url.scheme}://{request.url.host}"
        seen.append(url)
        if url == "http://a" and len(seen) == 1:
            return httpx.Response(429, headers={"Retry-After": "30"})
        return ok(request, echo)

    c, clock = client(handler, urls=("http://a", "http://b"), cooldown=1.0)
    c.call("x")
    c.call("x")
    assert seen == ["http://a", "http://b", "http://b"]
    clock.t += 30
    c.call("x")
    assert seen[-1] == "http://a"


def test_batch_results_in_call_order_and_missing_items_retried() -> None:
    calls = [("m", [i]) for i in range(5)]

    def missing(request: httpx.Request) -> httpx.Response:
        items = orjson.loads(request.content)[:-1]
        return httpx.Response(
            200,
            content=orjson.dumps([{"jsonrpc": "2.0", "id": x["id"], "result": 1} for x in items]),
        )

    handler, seen = scripted(missing)
    c, _ = client(handler)
    assert [r["params"] for r in c.batch(calls)] == [[i] for i in range(5)]
    assert len(seen) == 2


def test_batch_refused_as_too_large_is_split() -> None:
    sizes: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        n = len(orjson.loads(request.content))
        sizes.append(n)
        if n > 3:
            return httpx.Response(
                200,
                content=orjson.dumps(
                    {
                        "jsonrpc": "2.0",
                        "id": None,
                        "error": {"code": -32600, "message": "batch too large"},
                    }
                ),
            )
        return ok(request, echo)

    c, _ = client(handler)
    out = c.batch([("m", [i]) for i in range(10)])
    assert [r["params"][0] for r in out] == list(range(10))
    assert sizes == [10, 5, 2, 3, 5, 2, 3]
    sizes.clear()
    frame = c.batch_frame([("m", [i]) for i in range(7)], pl.Struct({"method": pl.String}))
    assert frame.len() == 7


def test_batch_frame_parses_fast_and_reports_errors_slowly() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return ok(request, lambda m, p: None if p[0] == 2 else {"n": hex(p[0]), "extra": [1]})

    c, _ = client(handler)
    dtype = pl.Struct({"n": pl.String, "missing": pl.String})
    s = c.batch_frame([("m", [i]) for i in range(4)], dtype)
    assert s.to_list() == [
        {"n": "0x0", "missing": None},
        {"n": "0x1", "missing": None},
        None,
        {"n": "0x3", "missing": None},
    ]

    def failing(request: httpx.Request) -> httpx.Response:
        items = orjson.loads(request.content)
        out = [{"jsonrpc": "2.0", "id": x["id"], "result": {"n": "0x1"}} for x in items]
        out[1] = {
            "jsonrpc": "2.0",
            "id": items[1]["id"],
            "error": {"code": -32000, "message": "header not found"},
        }
        return httpx.Response(200, content=orjson.dumps(out))

    c, _ = client(failing)
    with pytest.raises(RpcError, match="header not found"):
        c.batch_frame([("m", [i]) for i in range(3)], dtype)

    handler, seen = scripted(body(b'[{"jsonrpc":"2.0","id":1,"result":{"n":"0'))
    c, _ = client(handler)
    assert c.batch_frame([("m", [1])], pl.Struct({"method": pl.String})).to_list() == [
        {"method": "m"}
    ]
    assert len(seen) == 2  # truncated body retried


def test_get_logs_splits_refused_ranges() -> None:
    requests: list[tuple[int, int]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        call = orjson.loads(request.content)
        flt = call["params"][0]
        lo, hi = int(flt["fromBlock"], 16), int(flt["toBlock"], 16)
        requests.append((lo, hi))
        if hi - lo + 1 > 100:
            err = {"code": -32005, "message": "query returned more than 10000 results"}
            return httpx.Response(
                200, content=orjson.dumps({"jsonrpc": "2.0", "id": call["id"], "error": err})
            )
        logs = [{"blockNumber": hex(n), "logIndex": "0x0"} for n in range(lo, hi + 1)]
        return httpx.Response(
            200, content=orjson.dumps({"jsonrpc": "2.0", "id": call["id"], "result": logs})
        )

    c, clock = client(handler)
    logs = c.get_logs(from_block=1000, to_block=1349, address="0xabc", topics=["0xddf2"])
    assert [int(x["blockNumber"], 16) for x in logs] == list(range(1000, 1350))
    assert requests[:3] == [(1000, 1349), (1000, 1174), (1000, 1086)]
    assert max(hi - lo + 1 for lo, hi in requests[3:]) <= 100  # the span that worked is kept
    assert clock.sleeps == []  # a refused range is not a failure to back off from


def test_get_logs_takes_the_range_the_provider_suggests() -> None:
    requests: list[tuple[int, int]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        call = orjson.loads(request.content)
        flt = call["params"][0]
        lo, hi = int(flt["fromBlock"], 16), int(flt["toBlock"], 16)
        requests.append((lo, hi))
        if hi - lo + 1 > 30:
            msg = (
                "Log response size exceeded. You can make eth_getLogs requests with up to a 2K "
                f"block range. Based on your parameters, this block range should work: "
                f"[{hex(lo)}, {hex(lo + 29)}]"
            )
            err = {"code": -32602, "message": msg}
            return httpx.Response(
                200, content=orjson.dumps({"jsonrpc": "2.0", "id": call["id"], "error": err})
            )
        return httpx.Response(
            200, content=orjson.dumps({"jsonrpc": "2.0", "id": call["id"], "result": []})
        )

    c, _ = client(handler)
    c.get_logs(from_block=0, to_block=99)
    assert requests == [(0, 99), (0, 29), (30, 59), (60, 89), (90, 99)]


def test_in_flight_limit_holds_across_threads() -> None:
    lock = threading.Lock()
    now = [0]
    peak = [0]

    def handler(request: httpx.Request) -> httpx.Response:
        with lock:
            now[0] += 1
            peak[0] = max(peak[0], now[0])
        time.sleep(0.02)
        with lock:
            now[0] -= 1
        return ok(request, echo)

    c = RpcClient(["http://a"], transport=httpx.MockTransport(handler), max_in_flight=3)
    results = list(c.batches((("m", [i]) for i in range(60)), batch_size=2))
    assert [r["params"][0] for batch in results for r in batch] == list(range(60))
    threads = [threading.Thread(target=lambda: c.call("x")) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 3 and c.stats.max_in_flight_seen == 3
