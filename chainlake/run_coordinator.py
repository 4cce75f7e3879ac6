"""The instance's run coordinator: Dagster's queue, plus a per-chain tag on every run.

Per-chain run limits in `dagster.yaml` (`tag_concurrency_limits`) only work if every run
carries a chain tag, whoever launched it: a schedule, a sensor, a backfill from the UI or the
CLI. Single-partition runs carry `dagster/partition/chain`, but runs over a partition range
(multi-day backfill policies) only carry the range's first and last keys. This coordinator
derives the chain and the days from those tags when the run is submitted, before the queue
daemon looks at it, and tags the run with one of:

- `chainlake/chain: <chain>` when the run reaches the open edge of the chain (a day from
  yesterday on, by the UTC clock at submission): today's partition grows from the checkpoint
  and yesterday's closes, so these runs keep a single writer per chain (limit 1).
- `chainlake/chain-history: <chain>` when every day of the run is older: closed days, whose
  Delta partitions no other run writes, so several run at once per chain (a backfill at the
  node's speed); their limit is separate, and they never wait for the open day's run.

A run that already carries `chainlake/chain` (the schedules and the maintenance jobs set it)
keeps it. The coordinator runs in the webserver and the daemon, so it reads tags only: no
chains.yaml, no code location, no stores.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping

from dagster._core.run_coordinator.base import SubmitRunContext
from dagster._core.run_coordinator.queued_run_coordinator import QueuedRunCoordinator
from dagster._core.storage.dagster_run import DagsterRun

CHAIN_TAG = "chainlake/chain"
HISTORY_TAG = "chainlake/chain-history"
# Days from (today - OPEN_EDGE_DAYS + 1) on are the open edge: today and yesterday.
OPEN_EDGE_DAYS = 2
_DATE_DIMENSION_TAG = "dagster/partition/date"
_PARTITION_TAG = "dagster/partition"
_CHAIN_DIMENSION_TAG = "dagster/partition/chain"
_RANGE_TAGS = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _chain_of_key(key: str) -> str | None:
    """The chain of a `<chain>|<date>` multi-partition key string (dimension order does not
    matter: the part that is not a date is the chain)."""
    parts = key.split("|")
    if len(parts) != 2:
        return None
    chains = [p for p in parts if not _DATE.match(p)]
    return chains[0] if len(chains) == 1 and chains[0] else None


def _date_of_key(key: str) -> dt.date | None:
    """The date of a `<chain>|<date>` multi-partition key string."""
    parts = key.split("|")
    dates = [p for p in parts if _DATE.match(p)]
    return dt.date.fromisoformat(dates[0]) if len(parts) == 2 and len(dates) == 1 else None


def dates_of_run_tags(tags: Mapping[str, str]) -> tuple[dt.date, dt.date] | None:
    """The first and last day a run works on, from its partition tags; None when unknown."""
    if tags.get(_DATE_DIMENSION_TAG) and _DATE.match(tags[_DATE_DIMENSION_TAG]):
        day = dt.date.fromisoformat(tags[_DATE_DIMENSION_TAG])
        return day, day
    if tags.get(_PARTITION_TAG):
        day_or_none = _date_of_key(tags[_PARTITION_TAG])
        return None if day_or_none is None else (day_or_none, day_or_none)
    start, end = (tags.get(t) for t in _RANGE_TAGS)
    if start and end:
        first, last = _date_of_key(start), _date_of_key(end)
        if first is not None and last is not None:
            return first, last
    return None


def chain_tags(
    tags: Mapping[str, str], *, today: Callable[[], dt.date] | None = None
) -> dict[str, str]:
    """The chain tag a run should carry (module docstring), or {} for a run that spans chains
    or none. `today` is the UTC date (a parameter for tests)."""
    if tags.get(CHAIN_TAG) or tags.get(HISTORY_TAG):
        return {}
    chain = chain_of_run_tags(tags)
    if chain is None:
        return {}
    days = dates_of_run_tags(tags)
    now = today() if today is not None else dt.datetime.now(dt.UTC).date()
    edge = now - dt.timedelta(days=OPEN_EDGE_DAYS - 1)
    if days is not None and days[1] < edge:
        return {HISTORY_TAG: chain}
    return {CHAIN_TAG: chain}


def chain_of_run_tags(tags: Mapping[str, str]) -> str | None:
    """The chain a run works on, from its tags; None for runs that span chains or none."""
    if tags.get(CHAIN_TAG):
        return tags[CHAIN_TAG]
    if tags.get(_CHAIN_DIMENSION_TAG):
        return tags[_CHAIN_DIMENSION_TAG]
    if tags.get(_PARTITION_TAG):
        return _chain_of_key(tags[_PARTITION_TAG])
    start, end = (tags.get(t) for t in _RANGE_TAGS)
    if start and end:
        first, last = _chain_of_key(start), _chain_of_key(end)
        if first is not None and first == last:
            return first
    return None


class ChainQueuedRunCoordinator(QueuedRunCoordinator):
    """`QueuedRunCoordinator` that tags each submitted run with the chain it works on (its
    open edge or its history)."""

    def submit_run(self, context: SubmitRunContext) -> DagsterRun:
        """Tag the run with its chain (from its partition tags), then queue it."""
        run = context.dagster_run
        tags = chain_tags(run.tags)
        if tags:
            self._instance.add_run_tags(run.run_id, tags)
            refreshed = self._instance.get_run_by_id(run.run_id)
            if refreshed is not None:
                context = SubmitRunContext(refreshed, context.workspace)
        return super().submit_run(context)
