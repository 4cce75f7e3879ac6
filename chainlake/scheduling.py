"""When a chain's day may be materialised by the daily schedule: the day is over at the
confirmed head. Plain functions, so the schedule in `pipelines/schedules.py` stays wiring."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass

from chainlake.extract import confirmed_head, day_bounds
from chainlake.rpc import RpcClient


@dataclass(frozen=True)
class HeadState:
    """The confirmed head (head minus confirmations) and its block timestamp (UTC)."""

    block_number: int
    timestamp: dt.datetime

    def closes(self, day: dt.date) -> bool:
        """True once a confirmed block lies at or after the end of `day`: block timestamps never
        decrease, so no block of `day` can still appear."""
        return self.timestamp.timestamp() >= day_bounds(day)[1]


def read_confirmed_head(client: RpcClient, confirmations: int) -> HeadState | None:
    """The confirmed head's number and time, or None before there is one."""
    number = confirmed_head(client, confirmations)
    if number < 0:
        return None
    block = client.call("eth_getBlockByNumber", [hex(number), False])
    if block is None:
        return None
    ts = dt.datetime.fromtimestamp(int(block["timestamp"], 16), dt.UTC)
    return HeadState(number, ts)


def candidate_days(
    tick_day: dt.date, *, start_date: dt.date, lookback_days: int, done: Collection[dt.date]
) -> list[dt.date]:
    """Days before `tick_day` (the tick's own UTC date, never the wall clock), newest
    `lookback_days` of them, not before the chain's start and not yet materialised, oldest
    first. The lookback lets a tick catch up on days missed while the daemon was down."""
    days = [tick_day - dt.timedelta(days=n) for n in range(lookback_days, 0, -1)]
    return [d for d in days if d >= start_date and d not in done]
