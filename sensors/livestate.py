"""livestate_sensor: node health for the catalog and the UI, and, when NATS_URL is set, the
live state mirrored into NATS JetStream KV (`chainlake.nats_kv`) every tick, from the stores of
record; it launches no run.

Each tick probes every RPC URL of every chain (the client's own measurements: head, latency,
errors), writes each node's health to the catalog's `nodes.is_active` and each alert's firing
count and last firing (from PostgreSQL `events`) to the catalog's `alerts`, when they changed,
and records the health as an observation of `serving/rpc_nodes` when it changed (and every
10 minutes). With NATS_URL it then syncs the buckets: changed keys written, stale keys
deleted. A sync is a rebuild, so a writer killed half-way loses nothing: the next tick (or
`chainlake livestate rebuild`, which runs the same function) puts the buckets back equal to
the stores.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from chainlake.config import ChainConfig
from chainlake.nats_kv import (
    AlertStats,
    ChainNodes,
    LiveStateError,
    State,
    SyncReport,
    alert_entries,
    alert_stats,
    catalog_rows,
    node_activity_updates,
    node_entries,
    settings_entries,
    sync_state,
    wallet_entries,
)
from chainlake.node_health import (
    NODE_OBSERVATION_SECONDS,
    health_fingerprint,
    node_health_observation,
)
from chainlake.rpc import RpcClient
from resources.duckdb import ServingDuckDB
from resources.postgres import PostgresResource

PROBE_TIMEOUT = 5.0

# One client per chain for the process's life, so a URL's latency samples and error count
# accumulate across ticks (a new client is made when the chain's URLs change).
_CLIENTS: dict[str, RpcClient] = {}


@dataclass
class PushResult:
    """What a push did: the nodes measured, the sync's report (empty without NATS), the
    catalog rows it changed, what it left out."""

    report: SyncReport
    nodes: list[ChainNodes] = field(default_factory=list)
    nodes_changed: list[tuple[str, int, bool]] = field(default_factory=list)
    alerts_changed: int = 0
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for a sensor tick or the CLI."""
        up = sum(h.healthy for c in self.nodes for h in c.health)
        total = sum(len(c.health) for c in self.nodes)
        parts = [self.report.summary() or "nothing synced", f"RPC URLs up: {up}/{total}"]
        if self.nodes_changed:
            parts.append(
                "catalog nodes.is_active: "
                + ", ".join(f"{c} #{p} {'up' if a else 'down'}" for c, p, a in self.nodes_changed)
            )
        if self.alerts_changed:
            parts.append(f"catalog alerts updated: {self.alerts_changed}")
        return "; ".join(parts + self.notes)


def measure_nodes(
    chains: Mapping[str, ChainConfig], clients: MutableMapping[str, RpcClient] | None = None
) -> list[ChainNodes]:
    """Probe every URL of every chain once (`RpcClient.probe`) and return the measurements;
    `clients` keeps each chain's client between calls (its samples accumulate)."""
    out = []
    for name, chain in sorted(chains.items()):
        client = clients.get(name) if clients is not None else None
        if client is None or client.urls != list(chain.rpc_urls):
            if client is not None:
                client.close()
            client = RpcClient(
                chain.rpc_urls, timeout=PROBE_TIMEOUT, max_retries=0, chain_id=chain.chain_id
            )
            if clients is not None:
                clients[name] = client
        health = client.probe()
        if clients is None:
            client.close()
        out.append(ChainNodes(name, chain.chain_id, chain.network, chain.subnet, health))
    return out


def _alert_updates(
    rows: list[dict[str, Any]], stats: Mapping[str, AlertStats]
) -> list[tuple[int, dt.datetime | None, str]]:
    out = []
    for r in rows:
        s = stats.get(str(r["id"]), AlertStats())
        if (r.get("trigger_count") or 0) != s.trigger_count or r.get(
            "last_triggered_at"
        ) != s.last_triggered_at:
            out.append((s.trigger_count, s.last_triggered_at, str(r["id"])))
    return out


def push_live_state(
    *,
    url: str | None,
    prefix: str,
    chains: Mapping[str, ChainConfig],
    duckdb: ServingDuckDB,
    postgres_url: str,
    clients: MutableMapping[str, RpcClient] | None = None,
    strict: bool = False,
) -> PushResult:
    """Measure the nodes, bring the catalog's node health and alert statistics up to date, and
    make the buckets equal to the stores of record.

    Args:
        url: The NATS server; None measures and updates the catalog without syncing buckets.
        strict: A missing catalog or an unreachable events database raises (the CLI's
            rebuild); otherwise the buckets it feeds are left as they are and a note says so.

    Raises:
        LiveStateError: NATS cannot be used, or (strict) a store of record cannot be read.
    """
    from chainlake.events import db

    notes: list[str] = []
    nodes = measure_nodes(chains, clients)
    state: State = {"nodes": node_entries(nodes)}
    if url is not None:
        state["settings"] = settings_entries(prefix, url)
    stats: dict[str, AlertStats] | None = None
    try:
        with db.connection(postgres_url) as conn:
            stats = alert_stats(conn)
    except Exception as e:  # the database down or not migrated: alerts left as they are
        msg = f"events database unreadable ({type(e).__name__}: {str(e).strip()[:120]})"
        if strict:
            raise LiveStateError(f"{msg}; alerts cannot be rebuilt") from None
        notes.append(f"alerts left as they are: {msg}")
    result = PushResult(report=SyncReport(), nodes=nodes, notes=notes)
    if not duckdb.path.exists():
        msg = f"no catalog at {duckdb.path} (materialise serving/catalog or `chainlake catalog import`)"
        if strict:
            raise LiveStateError(msg)
        if url is not None:  # without NATS there are no buckets to leave as they are
            notes.append(f"wallets and alerts left as they are: {msg}")
    else:
        with duckdb.reader() as conn:
            wallets = catalog_rows(conn, "wallets")
            alerts = catalog_rows(conn, "alerts")
            node_rows = catalog_rows(conn, "nodes")
        result.nodes_changed = node_activity_updates(node_rows, nodes)
        alert_changes = _alert_updates(alerts, stats) if stats is not None else []
        if result.nodes_changed or alert_changes:
            with duckdb.writer() as conn:
                for chain, priority, active in result.nodes_changed:
                    conn.execute(
                        "UPDATE nodes SET is_active = ?, updated_at = now() "
                        "WHERE chain = ? AND priority = ?",
                        [active, chain, priority],
                    )
                for count, last, alert_id in alert_changes:
                    conn.execute(
                        "UPDATE alerts SET trigger_count = ?, last_triggered_at = ? WHERE id = ?",
                        [count, last, alert_id],
                    )
        result.alerts_changed = len(alert_changes)
        state["wallets"] = wallet_entries(wallets)
        if stats is not None:
            state["alerts"] = alert_entries(alerts, stats)
    if url is not None:
        result.report = sync_state(url, prefix, state)
    return result


def _observe(
    context: dg.SensorEvaluationContext, nodes: list[ChainNodes]
) -> tuple[list[dg.AssetObservation], str]:
    """The observation of serving/rpc_nodes when the health changed since the last one or the
    period passed, and the cursor that remembers it."""
    last = json.loads(context.cursor) if context.cursor else {}
    fingerprint = health_fingerprint(nodes)
    now = time.time()
    due = now - float(last.get("observed_at", 0)) >= NODE_OBSERVATION_SECONDS
    if nodes and (fingerprint != last.get("fingerprint") or due):
        cursor = json.dumps({"fingerprint": fingerprint, "observed_at": now})
        return [node_health_observation(nodes)], cursor
    return [], context.cursor or ""


@dg.sensor(
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Probe every RPC URL, bring the catalog's node health and alert statistics up "
    "to date, record the health on serving/rpc_nodes when it changes, and, when NATS_URL is "
    "set, mirror wallets, alerts, nodes and settings into NATS JetStream KV (a read model). "
    "Launches no run.",
)
def livestate_sensor(
    context: dg.SensorEvaluationContext, duckdb: ServingDuckDB, postgres: PostgresResource
) -> dg.SensorResult:
    """Measure the nodes and push the live state, or say why not."""
    from chainlake.config import ConfigError, load_chains
    from chainlake.nats_kv import bucket_prefix, nats_url

    url = nats_url()
    try:
        result = push_live_state(
            url=url,
            prefix=bucket_prefix() if url is not None else "",
            chains=load_chains(),
            duckdb=duckdb,
            postgres_url=postgres.database_url(),
            clients=_CLIENTS,
        )
    except (LiveStateError, ConfigError) as e:
        context.log.warning(str(e))
        return dg.SensorResult(skip_reason=str(e))
    for note in result.notes:
        context.log.warning(note)
    events, cursor = _observe(context, result.nodes)
    if url is None:
        message = f"NATS_URL is not set: node health only; {result.summary()}"
    else:
        message = f"live state pushed: {result.summary()}"
    return dg.SensorResult(skip_reason=message, asset_events=events, cursor=cursor or None)
