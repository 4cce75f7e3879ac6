"""A portfolio whose wallets span two anvil chains: valued on each chain's own close and
summed, returns from the combined holdings, its day written only once both chains have it.

Two chains `alpha` (home) and `beta`, each filled by the devnet generator (the same dev
accounts on both, as one EOA on Ethereum and Base). portfolios.yaml holds `both` (home alpha:
alpha's and beta's treasury wallets) beside single-chain portfolios of the same wallets. The
chain list is fixed when the code loads, so the runs happen in a child interpreter with its
own CHAINS_CONFIG; it prints what the test checks as JSON.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from decimal import ROUND_HALF_EVEN, Context, Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from tools.devnet.anvil import Anvil
from tools.devnet.configs import chain_entry
from tools.devnet.generator import generate

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
START = dt.date(2026, 11, 3)
DAYS = [START + dt.timedelta(days=i) for i in range(3)]

CHILD = r"""
import datetime as dt, json, sys
import dagster as dg

from assets.analytics.portfolio_snapshots import portfolio_snapshots
from assets.analytics.risk_metrics import risk_metrics
from assets.core.balances import balances
from assets.core.native_balance_movements import native_balance_movements
from assets.core.native_transfers import native_transfers
from assets.core.token_prices import token_prices
from assets.core.token_transfers import token_transfers
from assets.core.tokens import tokens
from assets.raw.chain_tables import raw_chain_tables
from chainlake.lake import DeltaStore
from chainlake.partitions import LINKED_CHAINS, chain_day_partitions, portfolio_window
from resources.clickhouse import ClickHouseResource, EmbeddedClickHouse
from resources.rpc import RpcResource

root = sys.argv[1]
resources = {
    "delta": DeltaStore(root=f"{root}/delta"),
    "rpc": RpcResource(),
    "clickhouse": ClickHouseResource(engine=EmbeddedClickHouse(path=f"{root}/clickhouse")),
}
CORE = [
    raw_chain_tables,
    token_transfers,
    tokens,
    native_transfers,
    native_balance_movements,
    balances,
    token_prices,
]
out = {"linked": LINKED_CHAINS, "runs": []}

# the dependency the home chain's snapshots have on beta's days
day = sys.argv[2]
mapped = portfolio_window(-1).get_upstream_mapped_partitions_result_for_partitions(
    chain_day_partitions.subset_with_partition_keys([f"alpha|{day}"]),
    chain_day_partitions,
    chain_day_partitions,
)
out["upstream_of_alpha"] = sorted(mapped.partitions_subset.get_partition_keys())


def run(assets, chain, day):
    result = dg.materialize(assets, partition_key=f"{chain}|{day}", resources=resources)
    failed = [(e.asset_key.to_user_string(), e.description)
              for e in result.get_asset_check_evaluations() if not e.passed]
    snap = [m.materialization.metadata for m in result.get_asset_materialization_events()
            if m.asset_key.to_user_string() == "analytics/portfolio_snapshots"]
    out["runs"].append({
        "chain": chain, "day": day, "success": result.success, "failed_checks": failed,
        "waiting_for": snap[0]["waiting_for"].value if snap and "waiting_for" in snap[0] else None,
    })


for day in sys.argv[3:]:
    # alpha first: beta's day is not there yet, so `both` waits for it
    run([*CORE, portfolio_snapshots], "alpha", day)
    run([*CORE, portfolio_snapshots, risk_metrics], "beta", day)
    # the run beta's balances trigger in production (the partition mapping): now complete
    run([portfolio_snapshots, risk_metrics], "alpha", day)

with resources["clickhouse"].session() as ch:
    rows = ch.query("SELECT portfolio_id, date, chain_id, total_value, daily_return, "
                    "asset_allocation FROM portfolio_snapshots ORDER BY portfolio_id, date")
    risk = ch.query("SELECT portfolio_id, date, window_days, observations FROM risk_metrics "
                    "ORDER BY portfolio_id, date, window_days")
out["snapshots"] = [{**r, "date": str(r["date"]), "total_value": str(r["total_value"]),
                     "asset_allocation": [dict(x) for x in r["asset_allocation"]]}
                    for r in rows.iter_rows(named=True)]
out["risk"] = [{**r, "date": str(r["date"])} for r in risk.iter_rows(named=True)]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("multichain")
    with (
        Anvil(genesis=START, chain_id=31337) as a_node,
        Anvil(genesis=START, chain_id=31338) as b_node,
    ):
        manifests = {}
        for name, node, seed in (("alpha", a_node, 5), ("beta", b_node, 9)):
            manifests[name] = generate(
                node.rpc_url,
                start=START,
                days=len(DAYS),
                blocks_per_day=8,
                txs_per_block=6,
                seed=seed,
            )
        entries = []
        for name, m in manifests.items():
            entry = chain_entry(m, name=name)
            entry["network"] = name  # two chains, two sets of tables
            entry["contracts"] = []  # no registry events needed here
            entries.append(entry)
        (root / "chains.yaml").write_text(yaml.safe_dump({"chains": entries}, sort_keys=False))
        treasury = {
            name: [
                m.wallet(w) for w in next(p for p in m.portfolios if p.name == "treasury").wallets
            ]
            for name, m in manifests.items()
        }
        wallets = [
            {"name": f"{chain}-{w.name}", "address": w.address, "chain": chain}
            for chain, ws in treasury.items()
            for w in ws
        ]
        names = {chain: [f"{chain}-{w.name}" for w in ws] for chain, ws in treasury.items()}
        book = {
            "wallets": wallets,
            "portfolios": [
                {"id": "both", "name": "Both chains", "chain": "alpha",
                 "wallets": names["alpha"] + names["beta"]},
                {"id": "alpha-only", "name": "Alpha", "wallets": names["alpha"]},
                {"id": "beta-only", "name": "Beta", "wallets": names["beta"]},
            ],
            "risk": {"min_observations": {30: 1, 90: 1}},
        }  # fmt: skip
        (root / "portfolios.yaml").write_text(yaml.safe_dump(book, sort_keys=False))
        env = {
            **os.environ,
            "CHAINS_CONFIG": str(root / "chains.yaml"),
            "PORTFOLIOS_CONFIG": str(root / "portfolios.yaml"),
            "DAGSTER_HOME": str(root),
            "PYTHONPATH": str(ROOT),
        }
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, str(root), DAYS[1].isoformat(),
             *(d.isoformat() for d in DAYS)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-4000:]
        out = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"root": root, "out": out, "treasury": treasury, "manifests": manifests}


def _delta(root: Path, chain: str, table: str) -> pl.DataFrame:
    return pl.read_delta(str(root / "delta" / chain / "local" / table))


# Products of two 38-digit decimals need 76 digits: the default context's 28 would round them
# before the 18-place rounding under test.
EXACT = Context(prec=100)


def _expected_value(root: Path, holdings: dict[str, list[str]], day: dt.date) -> Decimal:
    """Per chain and token, the wallets' quantities (balance / 10^decimals) summed, times the
    chain's price of the day, rounded half to even to 18 places; then summed. Exact decimals
    from the Delta tables (an implementation of its own, not the asset's)."""
    total = Decimal(0)
    for chain, addresses in holdings.items():
        b = _delta(root, chain, "balances").filter(pl.col("date") == day)
        p = _delta(root, chain, "token_prices").filter(pl.col("date") == day)
        price = {r["token_address"]: Decimal(str(r["price"])) for r in p.iter_rows(named=True)}
        quantity: dict[str, Decimal] = {}
        for r in b.filter(pl.col("address").is_in(addresses)).iter_rows(named=True):
            amount = Decimal(int(r["balance"])).scaleb(-int(r["decimals"]))
            quantity[r["token_address"]] = EXACT.add(quantity.get(r["token_address"], 0), amount)
        for token, q in quantity.items():
            if token in price:
                value = EXACT.multiply(q, price[token])
                total = EXACT.add(
                    total, value.quantize(Decimal(1).scaleb(-18), ROUND_HALF_EVEN, EXACT)
                )
    return total


def test_the_home_chain_depends_on_the_other_chains_days(stage: dict[str, Any]) -> None:
    out = stage["out"]
    assert out["linked"] == {"alpha": ["beta"]}
    day, before = DAYS[1].isoformat(), DAYS[0].isoformat()
    assert out["upstream_of_alpha"] == sorted(
        f"{c}|{d}" for c in ("alpha", "beta") for d in (before, day)
    )


def test_every_run_passes_its_checks(stage: dict[str, Any]) -> None:
    for run in stage["out"]["runs"]:
        assert run["success"] and run["failed_checks"] == [], run


def test_the_day_waits_for_every_chain_then_is_written(stage: dict[str, Any]) -> None:
    runs = stage["out"]["runs"]
    for day in DAYS:
        first, _, last = [r for r in runs if r["day"] == day.isoformat()]
        assert first["chain"] == "alpha" and last["chain"] == "alpha"
        # before beta's day: left out, and the run says what it waits for
        assert first["waiting_for"] == f"both (beta {day.isoformat()})"
        assert last["waiting_for"] is None
    rows = stage["out"]["snapshots"]
    both = [r for r in rows if r["portfolio_id"] == "both"]
    assert [r["date"] for r in both] == [d.isoformat() for d in DAYS]
    assert {r["chain_id"] for r in both} == {31337}  # under its home chain


def test_value_is_each_chain_at_its_own_close_summed(stage: dict[str, Any]) -> None:
    rows = {(r["portfolio_id"], r["date"]): r for r in stage["out"]["snapshots"]}
    addresses = {c: [w.address for w in ws] for c, ws in stage["treasury"].items()}
    for day in DAYS:
        d = day.isoformat()
        both = Decimal(rows[("both", d)]["total_value"])
        alpha = Decimal(rows[("alpha-only", d)]["total_value"])
        beta = Decimal(rows[("beta-only", d)]["total_value"])
        assert both == alpha + beta > 0
        assert both == _expected_value(stage["root"], addresses, day)
        assert alpha != beta  # two chains of their own, not one read twice
        shares = {a["key"]: a["value"] for a in rows[("both", d)]["asset_allocation"]}
        assert len(shares) == len(rows[("both", d)]["asset_allocation"])  # one per symbol
        assert abs(sum(shares.values()) - 1) < 1e-9


def test_returns_are_of_the_combined_holdings(stage: dict[str, Any]) -> None:
    """The combined daily return: yesterday's quantities on both chains at today's prices
    over the same quantities at yesterday's prices (flows are not returns), recomputed here
    from the Delta tables."""
    rows = {(r["portfolio_id"], r["date"]): r for r in stage["out"]["snapshots"]}
    addresses = {c: [w.address for w in ws] for c, ws in stage["treasury"].items()}
    root = stage["root"]
    for day in DAYS[1:]:
        d, y = day.isoformat(), (day - dt.timedelta(days=1))
        got = rows[("both", d)]["daily_return"]
        # yesterday's quantities at today's and at yesterday's prices, both chains
        now = before = Decimal(0)
        for chain, addrs in addresses.items():
            b = _delta(root, chain, "balances").filter(
                (pl.col("date") == y) & pl.col("address").is_in(addrs)
            )
            p = _delta(root, chain, "token_prices")
            price = {(r["date"], r["token_address"]): Decimal(str(r["price"]))
                     for r in p.iter_rows(named=True)}  # fmt: skip
            for r in b.iter_rows(named=True):
                if (day, r["token_address"]) in price and (y, r["token_address"]) in price:
                    q = Decimal(int(r["balance"])).scaleb(-int(r["decimals"]))
                    now = EXACT.add(now, EXACT.multiply(q, price[(day, r["token_address"])]))
                    before = EXACT.add(before, EXACT.multiply(q, price[(y, r["token_address"])]))
        assert got is not None and before > 0
        assert got == pytest.approx(float(now / before) - 1, rel=1e-9, abs=1e-12)


def test_risk_of_the_combined_returns(stage: dict[str, Any]) -> None:
    risk = [r for r in stage["out"]["risk"] if r["portfolio_id"] == "both"]
    last = [r for r in risk if r["date"] == DAYS[-1].isoformat() and r["window_days"] == 30]
    assert len(last) == 1 and last[0]["observations"] == len(DAYS) - 1


def test_explain_reads_every_chain_at_its_recorded_versions(stage: dict[str, Any]) -> None:
    root = stage["root"]
    env = {**os.environ, "CHAINS_CONFIG": str(root / "chains.yaml"),
           "PORTFOLIOS_CONFIG": str(root / "portfolios.yaml"),
           "CLICKHOUSE_PATH": str(root / "clickhouse")}  # fmt: skip
    cli = str(Path(sys.executable).parent / "chainlake")
    day = DAYS[-1].isoformat()

    def explain(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [cli, "explain", *args, "--delta-root", str(root / "delta")],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    shown = explain("both", day, "--format", "json")
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    row = next(
        r for r in stage["out"]["snapshots"] if r["portfolio_id"] == "both" and r["date"] == day
    )
    assert [o["chain"] for o in doc["other_chains"]] == ["beta"]
    assert doc["holdings_value_all_chains"] == row["total_value"]  # exact, every chain
    assert (
        Decimal(doc["holdings_value"]) > 0 and Decimal(doc["other_chains"][0]["holdings_value"]) > 0
    )
    beta_blocks = stage["manifests"]["beta"].blocks_of(DAYS[-1])
    lin = doc["other_chains"][0]["lineage"]
    assert (lin["first_block"], lin["last_block"]) == (
        beta_blocks.first_block,
        beta_blocks.last_block,
    )
    assert "; beta: balances=" in doc["full_lineage_text"]

    # the text form says so, and the lineage it prints explains the row without ClickHouse
    text = explain("both", day)
    assert text.returncode == 0, text.stderr
    assert "== beta (chain 31338)" in text.stdout and "on 2 chains" in text.stdout
    assert "(equal)" in text.stdout
    again = explain("both", day, "--lineage", doc["full_lineage_text"], "--format", "json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["holdings_value_all_chains"] == row["total_value"]

    # the home chain's lineage alone is refused, naming the chain it lacks
    alone = explain("both", day, "--lineage", doc["lineage_text"])
    assert alone.returncode == 1 and "holds wallets on beta too" in alone.stderr
    assert "Traceback" not in alone.stderr
