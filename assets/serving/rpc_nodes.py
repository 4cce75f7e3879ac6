"""serving/rpc_nodes: the health of every RPC URL of every chain, as the UI shows it.

Nothing materialises it: `livestate_sensor` probes every URL each tick and records an
observation when the health changes (and every 10 minutes), see `chainlake/node_health.py`.
"""

from __future__ import annotations

import dagster as dg

from chainlake.node_health import NODE_SCHEMA, RPC_NODES

rpc_nodes = dg.AssetSpec(
    key=RPC_NODES,
    group_name="serving",
    kinds={"python"},
    description="Health of every RPC URL of every chain (head, lag behind the chain's best "
    "URL, latency p50/p95, errors, up/down), observed by livestate_sensor's probes when it "
    "changes and every 10 minutes; the catalog's nodes.is_active holds the same up/down.",
    metadata={"dagster/column_schema": NODE_SCHEMA},
)
