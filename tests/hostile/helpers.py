"""Helpers of the hostile-node suite: its days, URLs with credentials, a chains.yaml writer.

The suite's chain (the `node` fixture of conftest.py): one anvil node, its genesis at D1
00:00 UTC, holding D1 (blocks 0..5, transactions from block 1 on) and D2 (blocks 6..8),
closed by block 9 in D3. Tests treat it as read-only; each runs against its own Delta root."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import dagster as dg

D1 = dt.date(2026, 11, 10)
D2 = D1 + dt.timedelta(days=1)
D3 = D2 + dt.timedelta(days=1)

# Credentials in every place an RPC URL carries them: userinfo, an API key as a path
# segment (Infura's /v3/<key>), and a query parameter.
SECRETS = ("user:pass", "0123456789abcdef0123456789abcdef", "SECRET")


def secret_url(port: int) -> str:
    """A URL to 127.0.0.1:`port` with credentials where providers put them."""
    return f"http://user:pass@127.0.0.1:{port}/v3/0123456789abcdef0123456789abcdef?apikey=SECRET"


def redacted_url(port: int) -> str:
    """What chainlake may show of `secret_url(port)`."""
    return f"http://127.0.0.1:{port}/v3/<redacted>"


def write_chain(path: Path, urls: list[str], **fields: object) -> Path:
    """A chains.yaml with the one chain `devnet` (chain id 31337) at `urls`; `fields`
    override or add fields of its entry."""
    import yaml

    entry: dict[str, object] = {
        "name": "devnet",
        "network": "devnet",
        "subnet": "local",
        "chain_id": 31337,
        "rpc_urls": urls,
        "confirmations": 0,
        "start_date": D1.isoformat(),
        "batch_size": 4,
    }
    entry.update(fields)
    path.write_text(yaml.safe_dump({"chains": [entry]}))
    return path


RAW = ("blocks", "transactions", "logs")


def run_raw(
    root: Path,
    day: dt.date,
    *,
    rpc: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
) -> dg.ExecuteInProcessResult:
    """The raw asset for devnet's `day`, in this process, on the Delta root `root` (the chain
    as `CHAINS_CONFIG` says); a failure is returned, not raised."""
    from assets.raw.chain_tables import raw_chain_tables
    from chainlake.lake import DeltaStore
    from resources.rpc import RpcResource

    return dg.materialize(
        [raw_chain_tables],
        partition_key=f"devnet|{day.isoformat()}",
        resources={"delta": DeltaStore(root=str(root)), "rpc": RpcResource(**(rpc or {}))},
        tags=tags,
        raise_on_error=False,
    )


def step_failure(result: dg.ExecuteInProcessResult) -> tuple[str, str, str]:
    """The failed step's error: (its class, its message, the whole text with causes)."""
    failures = [e for e in result.all_events if e.is_step_failure]
    assert len(failures) == 1, [e.message for e in result.all_events]
    error = failures[0].step_failure_data.error
    assert error is not None
    return error.cls_name or "", error.message, error.to_string()


def retried(result: dg.ExecuteInProcessResult) -> bool:
    """Whether a step was handed back for a retry."""
    return any(e.event_type_value == "STEP_UP_FOR_RETRY" for e in result.all_events)


def event_text(result: dg.ExecuteInProcessResult) -> str:
    """Every event message of the run, as the UI would show them."""
    return "\n".join(e.message or "" for e in result.all_events)


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} shown in: {text[:2000]}"
