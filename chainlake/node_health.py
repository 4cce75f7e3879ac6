"""RPC node health as the Dagster UI shows it: the asset `serving/rpc_nodes`, observed by
`livestate_sensor` (sensors/livestate.py) from the RPC client's probes, never materialised.

The sensor records an observation when a URL's up/down or lag changes, and at least every
`NODE_OBSERVATION_SECONDS` otherwise. Its metadata is one table row per URL (the URL
redacted, as in NATS) and the counts the UI plots: URLs up and down, and the largest lag behind
a chain's best URL.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import dagster as dg

from chainlake.nats_kv import ChainNodes, node_entries

RPC_NODES = dg.AssetKey(["serving", "rpc_nodes"])
NODE_OBSERVATION_SECONDS = 600

_COLUMNS: Sequence[tuple[str, str, str]] = (
    ("chain", "string", "chain name of chains.yaml"),
    ("priority", "int", "the URL's place in the chain's rpc_urls (0 = first)"),
    ("rpc_url", "string", "the URL without userinfo, query string or key-like path segments"),
    ("is_active", "bool", "in rotation and its latest round trip succeeded"),
    ("head_block", "int", "the last head block it answered"),
    ("lag_blocks", "int", "blocks behind the chain's best URL"),
    ("latency_p50_ms", "float", "median latency of its last 256 successful calls"),
    ("latency_p95_ms", "float", "95th percentile latency of the same calls"),
    ("error_count", "int", "failed round trips since the sensor's process started"),
    ("last_error_at", "string", "time of the latest failure (UTC, ISO 8601)"),
    ("last_error", "string", "the latest failure, redacted"),
)
NODE_SCHEMA = dg.TableSchema(columns=[dg.TableColumn(c, t, description=d) for c, t, d in _COLUMNS])


def health_fingerprint(chains: Iterable[ChainNodes]) -> str:
    """What makes a new observation worth recording at once: each URL's up/down and whether it
    lags its chain's best URL (latency and head move every tick; they wait for the period)."""
    entries = node_entries(chains)
    return ";".join(
        f"{e['chain']}#{e['priority']}:{'up' if e['is_active'] else 'down'}:"
        f"{'lag' if (e['lag_blocks'] or 0) > 0 else 'head'}"
        for e in sorted(entries.values(), key=lambda e: (e["chain"], e["priority"]))
    )


def node_health_observation(chains: Iterable[ChainNodes]) -> dg.AssetObservation:
    """The observation of serving/rpc_nodes for one round of probes."""
    entries = sorted(node_entries(chains).values(), key=lambda e: (e["chain"], e["priority"]))
    records = [dg.TableRecord({c: e[c] for c, _, _ in _COLUMNS}) for e in entries]
    lags = [e["lag_blocks"] for e in entries if e["lag_blocks"] is not None]
    up = sum(1 for e in entries if e["is_active"])
    metadata: dict[str, Any] = {
        "nodes": dg.MetadataValue.table(records, schema=NODE_SCHEMA),
        "nodes_up": up,
        "nodes_down": len(entries) - up,
        "max_lag_blocks": max(lags) if lags else None,
        "down": ", ".join(f"{e['chain']} #{e['priority']}" for e in entries if not e["is_active"])
        or "none",
    }
    return dg.AssetObservation(
        asset_key=RPC_NODES, metadata={k: v for k, v in metadata.items() if v is not None}
    )
