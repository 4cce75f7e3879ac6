"""Snapshot of the code location's public surface: asset keys, checks, jobs, schedules, sensors.

A rename or a removed asset shows in review as a diff of `tests/snapshots/definitions.json`.
After an intended change, refresh it with:

    UPDATE_SNAPSHOTS=1 .venv/bin/pytest tests/unit/test_definitions_snapshot.py
"""

from __future__ import annotations

import difflib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOT = ROOT / "tests" / "snapshots" / "definitions.json"


def build_snapshot() -> dict[str, Any]:
    import dagster as dg

    from pipelines.definitions import defs

    repo = defs.get_repository_def()
    graph = repo.asset_graph
    assets: dict[str, Any] = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        pdef = node.partitions_def
        if isinstance(pdef, dg.MultiPartitionsDefinition):
            partitions: str | None = " × ".join(pdef.partition_dimension_names)
        else:
            partitions = type(pdef).__name__ if pdef is not None else None
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "kinds": sorted(node.kinds),
            "partitions": partitions,
            "backfill_policy": str(node.backfill_policy) if node.backfill_policy else None,
            "pools": sorted(node.pools or ()),
            "deps": sorted(p.to_user_string() for p in node.parent_keys),
        }
    checks = sorted(f"{c.asset_key.to_user_string()}:{c.name}" for c in graph.asset_check_keys)
    jobs = sorted(j.name for j in repo.get_all_jobs() if not j.name.startswith("__"))
    schedules = {
        s.name: {
            "cron": s.cron_schedule,
            "timezone": s.execution_timezone,
            "job": s.job_name,
        }
        for s in sorted(repo.schedule_defs, key=lambda s: s.name)
    }
    sensors = {
        s.name: {
            "type": type(s).__name__,
            "jobs": sorted(j.name for j in s.jobs) if s.has_jobs else [],
            "minimum_interval_seconds": s.minimum_interval_seconds,
        }
        for s in sorted(repo.sensor_defs, key=lambda s: s.name)
    }
    return {
        "assets": assets,
        "asset_checks": checks,
        "jobs": jobs,
        "schedules": schedules,
        "sensors": sensors,
    }


def _render(snapshot: dict[str, Any]) -> str:
    return json.dumps(snapshot, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _current() -> str:
    # A fresh interpreter on the committed config: other tests may have imported the
    # definitions with their own CHAINS_CONFIG, and the chain list shapes the schedules.
    env = {k: v for k, v in os.environ.items() if k != "CHAINS_CONFIG"}
    out = subprocess.run(
        [sys.executable, __file__],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, f"loading pipelines.definitions failed:\n{out.stderr[-4000:]}"
    return out.stdout


def test_definitions_match_snapshot() -> None:
    current = _current()
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
        SNAPSHOT.write_text(current)
        return
    assert SNAPSHOT.exists(), f"{SNAPSHOT} is missing; create it with UPDATE_SNAPSHOTS=1"
    committed = SNAPSHOT.read_text()
    if committed != current:
        diff = "".join(
            difflib.unified_diff(
                committed.splitlines(keepends=True),
                current.splitlines(keepends=True),
                "tests/snapshots/definitions.json (committed)",
                "pipelines.definitions (now)",
            )
        )
        raise AssertionError(
            "the code location changed; if intended, refresh the snapshot with "
            "UPDATE_SNAPSHOTS=1 and commit it:\n" + diff
        )


if __name__ == "__main__":
    sys.stdout.write(_render(build_snapshot()))
