"""A day's block range by searching block timestamps, over a node answered by httpx's mock
transport: right answers, and few round trips (batched probes)."""

from __future__ import annotations

import datetime as dt
import random

import httpx
import orjson

from chainlake.extract import BlockTimestamps, day_bounds, find_day_range, first_block_at_or_after
from chainlake.rpc import RpcClient


class Chain:
    """A node whose block n has timestamp `stamps[n]`; counts the HTTP round trips."""

    def __init__(self, stamps: list[int]) -> None:
        self.stamps = stamps
        self.round_trips = 0

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.round_trips += 1
        body = orjson.loads(request.content)
        calls = body if isinstance(body, list) else [body]
        out = []
        for c in calls:
            if c["method"] == "eth_blockNumber":
                result = hex(len(self.stamps) - 1)
            else:
                n = int(c["params"][0], 16)
                result = (
                    {"number": hex(n), "timestamp": hex(self.stamps[n])}
                    if n < len(self.stamps)
                    else None
                )
            out.append({"jsonrpc": "2.0", "id": c["id"], "result": result})
        return httpx.Response(200, content=orjson.dumps(out if isinstance(body, list) else out[0]))

    def client(self) -> RpcClient:
        return RpcClient(["http://node"], transport=httpx.MockTransport(self.handle))


class Stamps(BlockTimestamps):
    def __init__(self, stamps: list[int]) -> None:
        self.stamps = stamps
        self._cache = {}

    def many(self, numbers):  # type: ignore[no-untyped-def]
        return [self.stamps[n] for n in numbers]


def test_batched_search_agrees_with_a_linear_scan() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        n = rng.randint(1, 400)
        stamps = sorted(rng.randint(0, 2000) for _ in range(n))  # equal neighbours too
        target = rng.randint(-5, 2005)
        lo = rng.randint(0, n - 1)
        hi = rng.randint(lo - 1, n - 1)
        expected = next((i for i in range(lo, hi + 1) if stamps[i] >= target), hi + 1)
        fanout = rng.choice([2, 3, 7, 16])
        assert first_block_at_or_after(Stamps(stamps), target, lo, hi, fanout=fanout) == expected
        assert first_block_at_or_after(lambda i, s=stamps: s[i], target, lo, hi) == expected


def test_day_range_in_few_round_trips() -> None:
    day = dt.date(2026, 11, 10)
    start, end = day_bounds(day)
    # 30,000 blocks 12 s apart from two days before; a gap of an hour inside the day
    stamps = [start - 2 * 86_400 + 12 * i + (3_600 if i > 16_000 else 0) for i in range(30_000)]
    chain = Chain(stamps)
    rng = find_day_range(chain.client(), day, confirmations=5)
    first = next(i for i, t in enumerate(stamps) if t >= start)
    after = next(i for i, t in enumerate(stamps) if t >= end)
    assert (rng.first_block, rng.last_block, rng.closed) == (first, after - 1, True)
    assert rng.confirmed_head == 29_994
    assert chain.round_trips <= 1 + 2 * 4  # head, then ~log17(30,000) batches per bound


def test_open_day_and_a_day_not_reached_yet() -> None:
    day = dt.date(2026, 11, 10)
    start, _ = day_bounds(day)
    stamps = [start - 3_600 + 60 * i for i in range(200)]  # the chain is inside the day
    rng = find_day_range(Chain(stamps).client(), day, confirmations=0)
    assert (rng.first_block, rng.last_block, rng.closed) == (60, 199, False)
    later = find_day_range(Chain(stamps).client(), day + dt.timedelta(days=1), confirmations=0)
    assert later.empty and not later.closed
