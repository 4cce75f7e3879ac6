"""The instance's run coordinator: Dagster's queue, plus a `chainlake/chain` tag on every run.

Per-chain run limits in `dagster.yaml` (`tag_concurrency_limits` on `chainlake/chain`) only
work if every run carries that tag, whoever launched it: a schedule, a sensor, a backfill from
the UI or `dagster job backfill`. Single-partition runs carry `dagster/partition/chain`, but
runs over a partition range (single-run backfill policies) only carry the range's first and
last keys. This coordinator derives the chain from those tags when the run is submitted, before
the queue daemon looks at it. It runs in the webserver and the daemon, so it reads tags only:
no chains.yaml, no code location, no stores.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from dagster._core.run_coordinator.base import SubmitRunContext
from dagster._core.run_coordinator.queued_run_coordinator import QueuedRunCoordinator
from dagster._core.storage.dagster_run import DagsterRun

CHAIN_TAG = "chainlake/chain"
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
    """`QueuedRunCoordinator` that tags each submitted run with the chain it works on."""

    def submit_run(self, context: SubmitRunContext) -> DagsterRun:
        """Tag the run with its chain (from its partition tags), then queue it."""
        run = context.dagster_run
        chain = chain_of_run_tags(run.tags)
        if chain is not None and run.tags.get(CHAIN_TAG) != chain:
            self._instance.add_run_tags(run.run_id, {CHAIN_TAG: chain})
            refreshed = self._instance.get_run_by_id(run.run_id)
            if refreshed is not None:
                context = SubmitRunContext(refreshed, context.workspace)
        return super().submit_run(context)
