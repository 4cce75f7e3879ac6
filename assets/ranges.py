"""Runs over several days of one chain: a per-day body, called day by day in date order.

A backfill run of a `PER_CHAIN_DAYS` asset (`assets/policies.py`) covers up to
`CHAIN_DAYS_PER_RUN` partitions. A range of the chain × date partitions is a rectangle: the
chains between its first and last key times the days between them. Usually it is one chain's
consecutive days, but for an asset that reads its own day before (balances, snapshots)
Dagster takes the first partitions of the backfill across chains, e.g. five days of each of two
chains in one run. `each_day` runs an asset's one-day body for every (chain, day) of the run,
chain by chain, each chain's days oldest first and each day committed before the next is read
(a closing balance starts from the day before's), and turns what the bodies yield into what
Dagster accepts from one step:

- One `MaterializeResult` per asset at the end. For a range Dagster records a materialisation
  of every partition of the range from it; its metadata is the single day's, or for several
  days a summary: what every day shares (`closed_day`, the write mode), the total of
  `rows_written` and a per-day table.
- One `AssetCheckResult` per check: Dagster takes one result per check and step. Over several
  days it passes when every day's passed; its metadata names the failing days and carries the
  first failing day's (or the last day's) metadata.
- Anything else (an `AssetMaterialization` of another partition, a reorg's) as it comes.

When a day fails, the days before it are committed: they are recorded as materialised (an
`AssetMaterialization` per asset and day, logged before the error is raised), the failing
day's check results are reported, and the error stops the run. A run of the same range again
replaces each day whole, so nothing is written twice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import dagster as dg

from chainlake.config import ChainConfig
from chainlake.partitions import chain_day_key, partition_chain_day

ChainDay = tuple[ChainConfig, dt.date]
DayBody = Callable[[ChainConfig, dt.date], Iterable[Any]]


def run_chain_days(context: dg.AssetExecutionContext) -> list[ChainDay]:
    """The (chain, day) pairs of a run, by chain name then day: one for a single partition,
    several for a range of a `PER_CHAIN_DAYS` asset."""
    pairs = [partition_chain_day(k) for k in context.partition_keys]
    return sorted(pairs, key=lambda p: (p[0].name, p[1]))


def each_day(
    context: dg.AssetExecutionContext, chain_days: Sequence[ChainDay], body: DayBody
) -> Iterator[Any]:
    """Run `body(chain, day)` for each pair in order and yield one step's worth of results.

    Args:
        context: The asset's context (for the asset keys and the event log).
        chain_days: The run's (chain, day) pairs, each chain's days oldest first
            (`run_chain_days`).
        body: The one-day body: a generator yielding `MaterializeResult`s (with `asset_key`
            in a multi-asset), `AssetCheckResult`s and other events, as it would for a
            single-partition run.

    Yields:
        Passed-through events as they come, then one `MaterializeResult` per asset and one
        `AssetCheckResult` per check.
    """
    done: list[tuple[ChainDay, dict[dg.AssetKey | None, dict[str, Any]]]] = []
    checks: dict[tuple[dg.AssetKey | None, str | None], list[tuple[ChainDay, Any]]] = {}
    for chain, day in chain_days:
        results: dict[dg.AssetKey | None, dict[str, Any]] = {}
        try:
            for event in body(chain, day):
                if isinstance(event, dg.MaterializeResult):
                    results[event.asset_key] = dict(event.metadata or {})
                elif isinstance(event, dg.AssetCheckResult):
                    checks.setdefault((event.asset_key, event.check_name), []).append(
                        ((chain, day), event)
                    )
                else:
                    yield event
        except Exception:
            # the days before this one are committed: record them, report the checks seen so
            # far (the failing day's failed check among them), then fail
            _log_committed(context, done)
            yield from _merged_checks(checks)
            raise
        done.append(((chain, day), results))
    keys = {k for _, r in done for k in r}
    for key in sorted(keys, key=lambda k: k.to_user_string() if k else ""):
        per_day = [(day, r[key]) for day, r in done if key in r]
        yield dg.MaterializeResult(asset_key=key, metadata=_merged_metadata(per_day))
    yield from _merged_checks(checks)


def _log_committed(
    context: dg.AssetExecutionContext,
    done: Sequence[tuple[ChainDay, dict[dg.AssetKey | None, dict[str, Any]]]],
) -> None:
    for (chain, day), results in done:
        for key, metadata in results.items():
            context.log_event(
                dg.AssetMaterialization(
                    asset_key=key or context.assets_def.key,
                    partition=chain_day_key(chain.name, day),
                    description="committed before a later day of the same run failed",
                    metadata=metadata,
                )
            )


def _merged_metadata(per_day: Sequence[tuple[ChainDay, dict[str, Any]]]) -> dict[str, Any]:
    if len(per_day) == 1:
        return per_day[0][1]
    rows = ["| chain | day | " + " | ".join(_scalar_keys(per_day)) + " |"]
    rows.append("|" + "---|" * (len(_scalar_keys(per_day)) + 2))
    for (chain, day), metadata in per_day:
        cells = [_cell(metadata.get(k)) for k in _scalar_keys(per_day)]
        rows.append(f"| {chain.name} | {day} | " + " | ".join(cells) + " |")
    total = sum(v for _, m in per_day if isinstance(v := _value(m.get("rows_written")), int))
    # what every day shares (a closed day, the mode of the write) holds for the range
    shared = {
        k: v
        for k, v in per_day[0][1].items()
        if isinstance(_value(v), bool | str) and all(m.get(k) == v for _, m in per_day[1:])
    }
    return {
        **shared,
        "days": len(per_day),
        "chains": ", ".join(sorted({c.name for (c, _), _ in per_day})),
        "first_day": min(d for (_, d), _ in per_day).isoformat(),
        "last_day": max(d for (_, d), _ in per_day).isoformat(),
        "rows_written": total,
        "dagster/row_count": total,
        "per_day": dg.MetadataValue.md("\n".join(rows)),
    }


def _value(v: Any) -> Any:
    return getattr(v, "value", v)


def _scalar_keys(per_day: Sequence[tuple[ChainDay, dict[str, Any]]]) -> list[str]:
    keys: list[str] = []
    for _, metadata in per_day:
        for k, v in metadata.items():
            if k not in keys and isinstance(_value(v), int | float | str | bool):
                keys.append(k)
    return keys[:8]


def _cell(v: Any) -> str:
    v = _value(v)
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.2f}"
    return str(v).replace("|", "/").replace("\n", " ")[:60]


def _merged_checks(
    checks: dict[tuple[dg.AssetKey | None, str | None], list[tuple[ChainDay, Any]]],
) -> Iterator[dg.AssetCheckResult]:
    for (key, name), results in checks.items():
        if len(results) == 1:
            yield results[0][1]
            continue
        failed = [(day, r) for day, r in results if not r.passed]
        shown_day, shown = failed[0] if failed else results[-1]
        severities = [r.severity for _, r in failed]
        severity = (
            dg.AssetCheckSeverity.ERROR
            if dg.AssetCheckSeverity.ERROR in severities or not severities
            else dg.AssetCheckSeverity.WARN
        )
        yield dg.AssetCheckResult(
            asset_key=key,
            check_name=name,
            passed=not failed,
            severity=severity,
            description=(
                f"{len(failed)} of {len(results)} days failed, first {_name(shown_day)}: "
                f"{shown.description or ''}"
                if failed
                else f"{len(results)} days passed"
            ).strip(),
            metadata={
                **(shown.metadata or {}),
                "days_checked": len(results),
                "failed_days": ", ".join(_name(d) for d, _ in failed) or "none",
            },
        )


def _name(chain_day: ChainDay) -> str:
    return f"{chain_day[0].name} {chain_day[1]}"
