"""Trigger backtests over the lake: what a triggers file would have delivered on past days.

The events are rebuilt from Delta exactly as `events/chain_events` decodes them
(`chainlake.events.decode.chain_events_frame`: the logs of the contracts of chains.yaml and the
ERC-20 transfers touching the tracked wallets of portfolios.yaml), chain-day by chain-day in
date order and, within a day, in chain order (block, log index). They go through the live
engine's `chainlake.events.evaluate.plan` with trigger states that start empty and are carried
from one day to the next, so conditions, cooldowns, EMAs and rate limits run on chain time as
they would have. Nothing is written to PostgreSQL and nothing is delivered: the would-be
deliveries come back as rows (`deliveries_frame`, written to Parquet by the CLI).

What a backtest cannot see: `analytics` events (portfolios.yaml alerts over balances and risk,
not the chain tables) and reorg retractions (the lake holds the chain as it is now, so an event
a reorg removed is not there and a trigger on `retracted` never fires).

Triggers with `phase: fast` are evaluated once per event, like the others, and their would-be
deliveries are the `confirmed` phase (`{trigger}:{event}@{block_hash}:{action}:confirmed`, the
key the live confirmed message carries). Live, the same firing is first an `unconfirmed`
message at the head; events a reorg removed before confirmation (an unconfirmed and a retracted
message live) are not in the lake. The CLI says so under the table.

`run` is pure; `read_chain_days` reads the lake.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from chainlake.config import ChainConfig
from chainlake.events import failures as failures_
from chainlake.events.columns import DECODED_REGISTRIES, EVENT_COLUMNS
from chainlake.events.conditions import Trigger
from chainlake.events.decode import abi_events, chain_events_frame, frame_events
from chainlake.events.evaluate import plan
from chainlake.lake import DeltaStore
from chainlake.raw.logs import LogsModel
from chainlake.schema import polars_schema

# One row per would-be delivery, in the order the live engine would have enqueued them.
DELIVERY_SCHEMA = pl.Schema(
    {
        "trigger_id": pl.String(),
        "action_name": pl.String(),
        "action_type": pl.String(),
        "event_id": pl.String(),
        "chain": pl.String(),
        "chain_id": pl.Int64(),
        "date": pl.Date(),
        "block_number": pl.Int64(),
        "log_index": pl.Int64(),
        "transaction_hash": pl.String(),
        "registry": pl.String(),
        "event_type": pl.String(),
        "timestamp": pl.Int64(),
        "block_time": pl.Datetime("us", "UTC"),
        "idempotency_key": pl.String(),
        "context": pl.String(),  # the delivery's context as JSON: what templates are rendered from
    }
)
# at most this many day columns per block of the printed table
DAYS_PER_TABLE = 10


class LakeError(RuntimeError):
    """The lake cannot answer the backtest (a table missing); the message says which and why."""


@dataclass(frozen=True)
class ChainDay:
    """The events of interest of one chain-day, as `events/chain_events` would insert them.

    Attributes:
        chain: chain name (chains.yaml).
        chain_id: its EVM chain id.
        day: the UTC day.
        events: `events` rows (as `frame_events` gives them), in any order: `run` sorts them.
        blocks: blocks the lake holds for the day; 0 means the day was not materialised.
    """

    chain: str
    chain_id: int
    day: dt.date
    events: tuple[Mapping[str, Any], ...]
    blocks: int = 1


@dataclass
class Result:
    """What a backtest found.

    Attributes:
        triggers: the triggers evaluated.
        days: (chain, day, events of interest, blocks in the lake) per chain-day, in order.
        deliveries: one row per would-be delivery (the columns of `DELIVERY_SCHEMA`).
        fired: firings per (trigger id, day).
        failures: (trigger, event) pairs whose evaluation raised (the live engine records
            these in `evaluation_failures` and goes on; so does the backtest).
        states: each trigger's state after the last event.
    """

    triggers: tuple[Trigger, ...]
    days: list[tuple[str, dt.date, int, int]] = field(default_factory=list)
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    fired: dict[tuple[str, dt.date], int] = field(default_factory=dict)
    failures: list[failures_.Failure] = field(default_factory=list)
    states: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def firings(self) -> int:
        """Firings over every trigger and day."""
        return sum(self.fired.values())

    @property
    def events(self) -> int:
        """Events of interest evaluated."""
        return sum(n for _, _, n, _ in self.days)


def _chain_order(ev: Mapping[str, Any]) -> tuple[int, int]:
    return int(ev.get("block_number") or 0), int(ev.get("log_index") or 0)


def run(triggers: Sequence[Trigger], chain_days: Iterable[ChainDay]) -> Result:
    """Evaluate `triggers` on the events of `chain_days` with the live engine's `plan`.

    The chain-days are taken per chain in date order, each day's events in chain order; every
    trigger's state starts empty and follows it from day to day, and the events are numbered
    (`seq`) in that order as the live `events` table numbers them. Pure: nothing is read or
    written.

    Args:
        triggers: the triggers to evaluate (enabled or not: the caller chooses).
        chain_days: the chain-days with their events.

    Returns:
        The would-be deliveries, firings per trigger and day, failures and final states.
    """
    result = Result(tuple(triggers))
    states: dict[str, dict[str, Any]] = {}
    seq = 0
    for cd in sorted(chain_days, key=lambda c: (c.chain_id, c.day)):
        events = []
        for ev in sorted(cd.events, key=_chain_order):
            seq += 1
            # every column, as a row of `events` has them (NULL ones too), so the delivery
            # context is the one the live engine would store
            events.append({**dict.fromkeys(EVENT_COLUMNS), **ev, "seq": seq})
        result.days.append((cd.chain, cd.day, len(events), cd.blocks))
        planned, states, fired = plan(triggers, events, states, result.failures)
        for tid, n in fired.items():
            result.fired[(tid, cd.day)] = result.fired.get((tid, cd.day), 0) + n
        by_id = {e["id"]: e for e in events}
        result.deliveries += [_delivery_row(d, by_id[d["event_id"]], cd) for d in planned]
    result.states = states
    return result


def _delivery_row(
    delivery: Mapping[str, Any], event: Mapping[str, Any], cd: ChainDay
) -> dict[str, Any]:
    ctx = delivery["context"]
    ts = int(event["timestamp"])
    return {
        "trigger_id": delivery["trigger_id"],
        "action_name": ctx["action_name"],
        "action_type": delivery["action_type"],
        "event_id": delivery["event_id"],
        "chain": cd.chain,
        "chain_id": int(event["chain_id"]),
        "date": cd.day,
        "block_number": event.get("block_number"),
        "log_index": event.get("log_index"),
        "transaction_hash": event.get("transaction_hash"),
        "registry": event["registry"],
        "event_type": event["event_type"],
        "timestamp": ts,
        "block_time": dt.datetime.fromtimestamp(ts, dt.UTC),
        "idempotency_key": delivery["id"],
        "context": json.dumps(ctx, sort_keys=True, default=str),
    }


def deliveries_frame(result: Result) -> pl.DataFrame:
    """The would-be deliveries as a frame of `DELIVERY_SCHEMA` (empty but typed if none)."""
    return pl.DataFrame(result.deliveries, schema=DELIVERY_SCHEMA, orient="row")


def firings_table(result: Result, trigger_ids: Sequence[str] | None = None) -> list[str]:
    """Firings per trigger (rows) and day (columns), with the events of interest per day on
    top and a total per trigger, as lines of text; days beyond `DAYS_PER_TABLE` continue in
    another block of the same shape."""
    ids = list(trigger_ids) if trigger_ids is not None else [t.id for t in result.triggers]
    days = sorted({d for _, d, _, _ in result.days})
    events = dict.fromkeys(days, 0)
    for _, d, n, _ in result.days:
        events[d] += n
    counts: dict[str, dict[dt.date, int]] = {
        "(events of interest)": events,
        **{t: {d: result.fired.get((t, d), 0) for d in days} for t in ids},
    }
    label = max(len("trigger"), *(len(name) for name in counts))
    total_w = max(len("total"), *(len(str(sum(c.values()))) for c in counts.values()))
    lines: list[str] = []
    for i in range(0, max(len(days), 1), DAYS_PER_TABLE):
        chunk = days[i : i + DAYS_PER_TABLE]
        cols = [(d, d.strftime("%m-%d")) for d in chunk]
        widths = [max(len(h), *(len(str(c[d])) for c in counts.values())) for d, h in cols]
        if lines:
            lines.append("")
        heads = "  ".join(f"{h:>{w}}" for (_, h), w in zip(cols, widths, strict=True))
        lines.append(f"{'trigger':<{label}}  {'total':>{total_w}}  {heads}".rstrip())
        for name, c in counts.items():
            cells = "  ".join(f"{c[d]:>{w}}" for (d, _), w in zip(cols, widths, strict=True))
            lines.append(f"{name:<{label}}  {sum(c.values()):>{total_w}}  {cells}".rstrip())
    return lines


# ---- reading the lake ----------------------------------------------------------------------


def backtestable(trigger: Trigger) -> bool:
    """Whether the lake holds the trigger's events: the registries `events/chain_events`
    decodes (not `analytics`, whose events come from the alerts of portfolios.yaml)."""
    return trigger.registry in DECODED_REGISTRIES


def tracked_addresses(chains: Mapping[str, ChainConfig]) -> dict[str, list[str]]:
    """Chain name -> the addresses of its tracked wallets (portfolios.yaml), as
    `events/chain_events` reads them."""
    from chainlake.portfolios import load_portfolios

    book = load_portfolios(chains)
    return {name: [w.address for w in book.tracked_wallets(name)] for name in chains}


def day_range(start: dt.date, end: dt.date) -> list[dt.date]:
    """The days from `start` to `end`, both included; ValueError when `start` is after `end`."""
    if start > end:
        raise ValueError(f"--from {start} is after --to {end}")
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def read_chain_days(
    delta: DeltaStore,
    chain: ChainConfig,
    days: Sequence[dt.date],
    *,
    tracked: Sequence[str],
) -> Iterator[ChainDay]:
    """The chain-days' events of interest, decoded from the lake as `events/chain_events`
    decodes them, one day at a time.

    Raises:
        LakeError: the chain has no raw/logs table under the lake's root.
    """
    if not delta.exists(chain, "logs"):
        raise LakeError(
            f"no raw/logs Delta table for chain {chain.name!r} at "
            f"{delta.table_uri(chain, 'logs')}: materialise its days first, or set DELTA_ROOT"
        )
    has_blocks = delta.exists(chain, "blocks")
    # without core/token_transfers there is nothing to decode transfers from, as in the asset
    has_transfers = delta.exists(chain, "token_transfers")
    abis = abi_events(c.abi for c in chain.contracts) if chain.contracts else {}
    logs_schema = polars_schema(LogsModel)
    for day in days:
        blocks = delta.read_day(chain, "blocks", day, ["block_number"]).height if has_blocks else 0
        logs = delta.read_day(chain, "logs", day, schema=logs_schema)
        transfers = (
            delta.read_day(chain, "token_transfers", day) if has_transfers else pl.DataFrame()
        )
        frame = chain_events_frame(
            logs, transfers, contracts=chain.contracts, tracked=list(tracked), abis=abis
        )
        yield ChainDay(chain.name, chain.chain_id, day, tuple(frame_events(frame)), blocks)
