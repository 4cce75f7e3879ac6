"""Config files for a generated devnet: chains.yaml, portfolios.yaml and the manifest JSON.

chains.yaml follows ``chainlake.config`` (one ``chains:`` entry, network ``devnet``, subnet
``local``). The native coin is listed among the tokens under ``0xeeee…eeee`` so it carries the
ETH/USD feed; ``core/balances`` treats that address as the native coin, not an ERC-20. The
deployed 8004 registries are the entry's ``contracts:`` (what ``events/chain_events`` decodes)::

    contracts:
      - {name: identity, address: "0x…", abi: identity_registry, start_block: 0}

portfolios.yaml follows ``chainlake.portfolios`` (issue 4)::

    wallets:                      # the tracked wallets
      - {name: treasury-1, address: "0x…", chain: devnet}
    portfolios:                   # three, grouping the tracked wallets
      - id: treasury
        name: Treasury
        description: …
        chain: devnet
        risk_profile: conservative
        wallets: [treasury-1, treasury-2, treasury-3]
    alerts:                       # natural language + a Polars expression + its parameters
      - name: Low hot-wallet balance
        description: …
        query: Alert me when the ops hot wallet holds less than 10 ETH
        expression: wallet_balances.filter(...)
        parameters: {wallet: ops-hot, token: ETH, threshold: 10}

The generated hot wallet pays out 1 ETH a day from 12 ETH, so the first alert fires from the
third generated day on.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from tools.devnet.manifest import DevnetManifest

NATIVE_TOKEN_ADDRESS = "0x" + "e" * 40
# the ABI (chainlake/abis/) of each registry the generator deploys
REGISTRY_ABIS = {
    "identity": "identity_registry",
    "reputation": "reputation_registry",
    "validation": "validation_registry",
}
DEFAULT_MANIFEST_PATH = Path("data/devnet/manifest.json")
RISK_PROFILES = {"treasury": "conservative", "trading": "aggressive", "operations": "moderate"}
HEADER = "# Written by tools.devnet for the local chain (seed {seed}); regenerate, do not edit.\n"


def chain_entry(
    manifest: DevnetManifest,
    *,
    name: str = "devnet",
    rpc_urls: Sequence[str] | None = None,
    confirmations: int = 0,
) -> dict[str, Any]:
    """The chains.yaml entry for the devnet, validated by ``ChainConfig``."""
    from chainlake.config import ChainConfig

    entry: dict[str, Any] = {
        "name": name,
        "network": "devnet",
        "subnet": "local",
        "chain_id": manifest.chain_id,
        "rpc_urls": list(rpc_urls or [manifest.rpc_url]),
        "confirmations": confirmations,
        "start_date": manifest.start_date.isoformat(),
        "native_symbol": manifest.native_symbol,
        "tokens": [
            {
                "symbol": manifest.native_symbol,
                "address": NATIVE_TOKEN_ADDRESS,
                "decimals": 18,
                "price_feed": manifest.native_price_feed,
                "price_feed_decimals": 8,
            }
        ]
        + [
            {
                # no decimals: core/tokens reads them from the chain (a symbol given here is
                # an override of the chain's; the devnet's are the same)
                "symbol": t.symbol,
                "address": t.address,
                "price_feed": t.price_feed,
                "price_feed_decimals": t.price_feed_decimals,
            }
            for t in manifest.tokens
        ],
        "contracts": registry_contracts(manifest),
    }
    ChainConfig.model_validate(entry)
    return entry


def registry_contracts(manifest: DevnetManifest) -> list[dict[str, Any]]:
    """The ``contracts:`` of the devnet entry: the deployed registries with their ABIs.

    They are deployed in the setup blocks of the first generated day, so decoding starts at its
    first block.
    """
    start = manifest.day_blocks[0].first_block if manifest.day_blocks else 0
    return [
        {"name": registry, "address": address, "abi": REGISTRY_ABIS[registry], "start_block": start}
        for registry, address in sorted(manifest.registries.items())
    ]


def write_chains_yaml(
    path: str | Path,
    manifest: DevnetManifest,
    *,
    name: str = "devnet",
    rpc_urls: Sequence[str] | None = None,
    confirmations: int = 0,
) -> Path:
    """Write (or update) chains.yaml: the devnet entry replaces one of the same name, other
    chains in an existing file are kept."""
    p = Path(path)
    entry = chain_entry(manifest, name=name, rpc_urls=rpc_urls, confirmations=confirmations)
    chains: list[Any] = []
    if p.exists():
        existing = yaml.safe_load(p.read_text()) or {}
        chains = [c for c in existing.get("chains") or [] if c.get("name") != name]
    p.parent.mkdir(parents=True, exist_ok=True)
    body = yaml.safe_dump({"chains": [*chains, entry]}, sort_keys=False)
    p.write_text(HEADER.format(seed=manifest.seed) + body)
    return p


def portfolios_document(manifest: DevnetManifest, *, chain: str = "devnet") -> dict[str, Any]:
    """The portfolios.yaml content: tracked wallets, the manifest's portfolios, three alerts."""
    wallets = [
        {"name": w.name, "address": w.address, "chain": chain}
        | ({"kind": "contract"} if w.role == "contract" else {})
        for w in manifest.tracked_wallets
    ]
    portfolios = [
        {
            "id": p.name,
            "name": p.name.capitalize(),
            "description": p.description,
            "chain": chain,
            "risk_profile": RISK_PROFILES.get(p.name, "moderate"),
            "wallets": list(p.wallets),
        }
        for p in manifest.portfolios
    ]
    treasury = next((p for p in manifest.portfolios if p.name == "treasury"), None)
    # The alert grammar has no is_in: one equality per wallet.
    treasury_wallets = (
        " | ".join(
            f'(pl.col("wallet_name") == "{w}")' for w in (treasury.wallets if treasury else ())
        )
        or "pl.lit(False)"
    )
    alerts = [
        {
            "name": "Low hot-wallet balance",
            "description": "The operations hot wallet holds less than 10 ETH.",
            "query": "Alert me when the ops hot wallet holds less than 10 ETH",
            "expression": 'wallet_balances.filter((pl.col("wallet_name") == "ops-hot") & '
            '(pl.col("token_symbol") == "ETH") & (pl.col("balance") < 10))',
            "parameters": {"wallet": "ops-hot", "token": "ETH", "threshold": 10},
        },
        {
            "name": "Treasury USDC floor",
            "description": "A treasury wallet holds less than 100,000 USDC.",
            "query": "Tell me when any treasury wallet has under 100k USDC",
            "expression": f"wallet_balances.filter(({treasury_wallets}) & "
            '(pl.col("token_symbol") == "USDC") & (pl.col("balance") < 100000))',
            "parameters": {"portfolio": "treasury", "token": "USDC", "threshold": 100000},
        },
        {
            "name": "Trading drawdown",
            "description": "The trading portfolio's 30-day max drawdown is worse than 10 %.",
            "query": "Warn me when the trading desk draws down more than 10 % over 30 days",
            "expression": 'risk_metrics.filter((pl.col("portfolio_id") == "trading") & '
            '(pl.col("window_days") == 30) & (pl.col("max_drawdown") < -0.1))',
            "parameters": {"portfolio": "trading", "window_days": 30, "threshold": -0.1},
        },
    ]
    return {"wallets": wallets, "portfolios": portfolios, "alerts": alerts}


def write_portfolios_yaml(
    path: str | Path, manifest: DevnetManifest, *, chain: str = "devnet"
) -> Path:
    """Write the devnet's portfolios.yaml (its tracked wallets and portfolios) to `path`."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    body = yaml.safe_dump(portfolios_document(manifest, chain=chain), sort_keys=False, width=120)
    p.write_text(HEADER.format(seed=manifest.seed) + body)
    return p


def write_manifest(path: str | Path, manifest: DevnetManifest) -> Path:
    """Write the manifest as JSON to `path`."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(manifest.to_json())
    return p


def read_manifest(path: str | Path = DEFAULT_MANIFEST_PATH) -> DevnetManifest:
    """The manifest written by `write_manifest`."""
    return DevnetManifest.from_json(Path(path).read_text())


def write_registry_addresses(path: str | Path, manifest: DevnetManifest) -> Path:
    """Set ``chain_id`` and ``registries`` in the manifest JSON at ``path``, keeping the rest.

    ``write_manifest`` already writes them; this is for a file that holds only the registries
    or one written by hand. The pipelines read the registries from chains.yaml, not from here.
    """
    p = Path(path)
    doc: dict[str, Any] = json.loads(p.read_text()) if p.exists() else {}
    doc["chain_id"] = manifest.chain_id
    doc["registries"] = dict(manifest.registries)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(doc, indent=2) + "\n")
    return p
