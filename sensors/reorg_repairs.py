"""Reorg repairs as runs: the derived tables of every chain-day a reorg rewrote are rebuilt by
ordinary runs of `reorg_rebuild_job`, so each rebuild is a materialisation with its checks.

The raw asset repairs the raw tables it owns and appends the chain-days it touched to
`_state/reorg_stale` (`chainlake.reorg`). This sensor reads the rows past its cursor (the
newest repair seen, per chain) and requests one run per stale chain-day. The `run_key` names
the chain, the day and the repair, so a tick evaluated twice launches nothing twice; a failed
rebuild is a failed run in the UI, re-executed from there like any other.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable

import dagster as dg

from chainlake.config import load_chains
from chainlake.lake import DeltaStore
from chainlake.partitions import chain_day_key
from chainlake.reorg import StaleDay, stale_days

JOB = "reorg_rebuild_job"
REORG_TAG = "chainlake/reorg"


def rebuild_run_key(chain: str, stale: StaleDay) -> str:
    """One key per chain-day and repair: the same repair never launches a day twice."""
    return f"reorg:{chain}:{stale.day.isoformat()}:{stale.detected_at:%Y%m%dT%H%M%S%fZ}"


def rebuild_requests(chain: str, stale: Iterable[StaleDay]) -> list[dg.RunRequest]:
    """A run per stale chain-day, oldest repair first; a day named twice by one repair once."""
    seen: set[str] = set()
    out: list[dg.RunRequest] = []
    for s in stale:
        key = rebuild_run_key(chain, s)
        if key in seen:
            continue
        seen.add(key)
        out.append(
            dg.RunRequest(
                run_key=key,
                partition_key=chain_day_key(chain, s.day),
                tags={REORG_TAG: f"{chain}@{s.ancestor}"},
            )
        )
    return out


@dg.sensor(
    job_name=JOB,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Rebuilds the derived tables of chain-days a reorg repair rewrote.",
)
def reorg_repairs_sensor(
    context: dg.SensorEvaluationContext, delta: dg.ResourceParam[DeltaStore]
) -> dg.SensorResult:
    """Request a rebuild run for every chain-day repaired since the cursor."""
    cursor: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    requests: list[dg.RunRequest] = []
    for chain in load_chains().values():
        after = cursor.get(chain.name)
        stale = stale_days(delta, chain, after=dt.datetime.fromisoformat(after) if after else None)
        if not stale:
            continue
        requests += rebuild_requests(chain.name, stale)
        cursor[chain.name] = max(s.detected_at for s in stale).isoformat()
        context.log.info(
            f"{chain.name}: rebuilding {len(stale)} chain-day(s) after a reorg: "
            + ", ".join(sorted({s.day.isoformat() for s in stale}))
        )
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(cursor, sort_keys=True))
