"""`chainlake explain` across a re-materialisation, on a real anvil chain filled by the devnet
generator and materialised day by day through the assets (the approach of
test_analytics_pipeline).

A past day is explained; then the day is changed (its core assets re-materialised, so every
Delta version advances, and a corrected balance and a dropped transfer written into the lake)
and its analytics re-materialised. The current row then explains the new inputs, while the
lineage the old row recorded (printed by explain, and in the old materialisation's metadata)
still returns exactly the inputs it was computed from, read by time travel."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest
from click.testing import CliRunner

from tools.devnet.anvil import Anvil
from tools.devnet.configs import write_chains_yaml, write_portfolios_yaml
from tools.devnet.generator import generate

pytestmark = pytest.mark.integration

START = dt.date(2026, 11, 3)
DAYS_LIST = [START + dt.timedelta(days=i) for i in range(3)]
DAY = DAYS_LIST[1]  # the past day explained, changed and re-materialised


@dataclass(frozen=True)
class Stage:
    root: Path
    runs: dict[dt.date, dg.ExecuteInProcessResult]


def _resources(root: Path) -> dict[str, object]:
    from chainlake.lake import DeltaStore
    from resources.clickhouse import ClickHouseResource, EmbeddedClickHouse
    from resources.rpc import RpcResource

    return {
        "delta": DeltaStore(root=str(root / "delta")),
        "rpc": RpcResource(),
        "clickhouse": ClickHouseResource(engine=EmbeddedClickHouse(path=str(root / "clickhouse"))),
    }


def _materialise(root: Path, day: dt.date, assets: list[Any]) -> dg.ExecuteInProcessResult:
    result = dg.materialize(
        assets, partition_key=f"devnet|{day.isoformat()}", resources=_resources(root)
    )
    assert result.success
    failed = [
        (e.asset_key.to_user_string(), e.check_name, e.description)
        for e in result.get_asset_check_evaluations()
        if not e.passed
    ]
    assert failed == [], failed
    return result


def _core_and_analytics(*, raw: bool) -> list[Any]:
    from assets.analytics.portfolio_snapshots import portfolio_snapshots
    from assets.analytics.risk_metrics import risk_metrics
    from assets.core.balances import balances
    from assets.core.native_balance_movements import native_balance_movements
    from assets.core.native_transfers import native_transfers
    from assets.core.token_prices import token_prices
    from assets.core.token_transfers import token_transfers
    from assets.core.tokens import tokens
    from assets.raw.chain_tables import raw_chain_tables

    upstream = [raw_chain_tables] if raw else []
    return [*upstream, token_transfers, tokens, native_transfers, native_balance_movements, balances, token_prices,
            portfolio_snapshots, risk_metrics]  # fmt: skip


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stage]:
    root = tmp_path_factory.mktemp("explain")
    with Anvil(genesis=START) as node:
        manifest = generate(
            node.rpc_url, start=START, days=len(DAYS_LIST), blocks_per_day=12, txs_per_block=8,
            seed=11, internal_transfers=False,
        )  # fmt: skip
        write_chains_yaml(root / "chains.yaml", manifest, rpc_urls=[node.rpc_url])
        write_portfolios_yaml(root / "portfolios.yaml", manifest)
        mp = pytest.MonkeyPatch()
        mp.setenv("CHAINS_CONFIG", str(root / "chains.yaml"))
        mp.setenv("PORTFOLIOS_CONFIG", str(root / "portfolios.yaml"))
        mp.setenv("CLICKHOUSE_PATH", str(root / "clickhouse"))
        mp.delenv("CLICKHOUSE_URL", raising=False)
        try:
            runs = {d: _materialise(root, d, _core_and_analytics(raw=True)) for d in DAYS_LIST}
            yield Stage(root, runs)
        finally:
            mp.undo()


def _explain(root: Path, *args: str) -> tuple[int, str]:
    from cli.main import main

    result = CliRunner().invoke(
        main, ["explain", *args, "--delta-root", str(root / "delta")], catch_exceptions=False
    )
    return result.exit_code, result.output


def _explain_json(root: Path, *args: str) -> dict[str, Any]:
    code, out = _explain(root, *args, "--format", "json")
    assert code == 0, out
    doc: dict[str, Any] = json.loads(out)
    return doc


def _table(root: Path, name: str) -> str:
    return str(root / "delta" / "devnet" / "local" / name)


def _clickhouse(root: Path, sql: str) -> pl.DataFrame:
    from resources.clickhouse import ClickHouseResource, EmbeddedClickHouse

    with ClickHouseResource(
        engine=EmbeddedClickHouse(path=str(root / "clickhouse"))
    ).session() as ch:
        return ch.query(sql)


def _wallets(portfolio: str) -> list[str]:
    from chainlake.config import load_chains
    from chainlake.portfolios import load_portfolios

    book = load_portfolios(load_chains())
    return list(next(p for p in book.portfolios if p.id == portfolio).wallets)


def _balances_at(root: Path, version: int, wallets: list[str]) -> list[tuple[str, str, str]]:
    """(address, token_address, balance) of DAY for `wallets`, read at `version` directly."""
    frame = pl.read_delta(_table(root, "balances"), version=version).filter(
        (pl.col("date") == DAY) & pl.col("address").is_in(wallets)
    )
    return sorted((r["address"], r["token_address"], str(r["balance"]))
                  for r in frame.iter_rows(named=True))  # fmt: skip


def _held(doc: dict[str, Any]) -> list[tuple[str, str, str]]:
    return sorted((h["address"], h["token_address"], h["balance"]) for h in doc["holdings"])


def test_explain_of_an_old_row_returns_its_inputs_after_a_rematerialisation(stage: Stage) -> None:
    from chainlake.lake import DeltaStore
    from chainlake.lineage import LINEAGE_COLUMNS

    root = stage.root
    snaps = _clickhouse(root, "SELECT * FROM portfolio_snapshots ORDER BY portfolio_id, date")
    # Every row of every day records its lineage; rows of one chain-day share it.
    assert snaps.select(LINEAGE_COLUMNS).null_count().sum_horizontal().item() == 0
    day_rows = snaps.filter(pl.col("date") == DAY)
    assert day_rows.select(LINEAGE_COLUMNS).unique().height == 1
    # The portfolio whose wallets moved most tokens that day.
    docs = {p: _explain_json(root, p, DAY.isoformat()) for p in day_rows["portfolio_id"]}
    portfolio, old = max(docs.items(), key=lambda kv: sum(
        t["log_index"] is not None for t in kv[1]["transfers"]))  # fmt: skip
    erc20 = [t for t in old["transfers"] if t["log_index"] is not None]
    assert erc20, "the generated day moves no ERC-20 token of any portfolio"
    wallets = _wallets(portfolio)
    old_row = day_rows.filter(pl.col("portfolio_id") == portfolio).row(0, named=True)
    lin = old["lineage"]

    # The row's lineage: the versions current when it was computed, the day's block range.
    blocks = pl.read_delta(_table(root, "blocks")).filter(pl.col("date") == DAY)["block_number"]
    assert (lin["first_block"], lin["last_block"]) == (blocks.min(), blocks.max())
    assert {k: lin[k] for k in LINEAGE_COLUMNS} == {k: old_row[k] for k in LINEAGE_COLUMNS}
    # What explain lists is what the lake held at those versions, and adds up to the row.
    assert _held(old) == _balances_at(root, lin["balances_version"], wallets)
    assert old["snapshot"]["total_value"] == old["holdings_value"] == str(old_row["total_value"])
    prices = pl.read_delta(_table(root, "token_prices"), version=lin["prices_version"]).filter(
        pl.col("date") == DAY
    )
    assert sorted(
        (p["token_address"], p["round_id"], p["block_number"]) for p in old["prices"]
    ) == (
        sorted(
            (r["token_address"], str(r["round_id"]), r["block_number"])
            for r in prices.iter_rows(named=True)
        )
    )
    for t in old["transfers"]:
        assert lin["first_block"] <= t["block_number"] <= lin["last_block"]
    # Each balance's listed transfers add up to the day's movement core/balances recorded
    # (this devnet's wallets receive no value through internal calls: internal_transfers=False;
    # explain lists transactions, not internal movements).
    assert all(h["moved"] == h["net_change"] for h in old["holdings"]), old["holdings"]
    # The risk rows of the day record what they read.
    assert old["risk"] and {r["prices_version"] for r in old["risk"]} == {lin["prices_version"]}
    assert {r["balances_version"] for r in old["risk"]} == {lin["balances_version"]}
    # The same lineage is in the UI, under the day's materialisation.
    mats = stage.runs[DAY].asset_materializations_for_node("analytics__portfolio_snapshots")
    assert old["lineage_text"] in mats[0].metadata["lineage"].value
    risk_mats = stage.runs[DAY].asset_materializations_for_node("analytics__risk_metrics")
    assert f"| devnet | {DAY} |" in risk_mats[0].metadata["lineage"].value

    code, text = _explain(root, portfolio, DAY.isoformat())
    assert code == 0, text
    assert f"lineage: {old['lineage_text']}" in text and "Holdings (balances v" in text
    assert "Price feed answers" in text and "Transfers that moved the balances" in text

    # Change the past day: its core assets again (every version advances, same rows), then
    # a corrected balance and a transfer taken out, written into the lake as a writer would.
    _materialise(root, DAY, _core_and_analytics(raw=False))
    store = DeltaStore(root=str(root / "delta"))
    from chainlake.config import load_chains

    chain = load_chains()["devnet"]
    balances = store.read_day(chain, "balances", DAY)
    changed = balances.with_columns(
        pl.when(pl.col("address").is_in(wallets))
        .then(pl.col("balance") * 2 + 1)
        .otherwise(pl.col("balance"))
        .cast(balances.schema["balance"])
        .alias("balance")
    )
    store.replace_day(chain, "balances", DAY, changed)
    dropped = erc20[0]
    transfers = store.read_day(chain, "token_transfers", DAY)
    store.replace_day(
        chain, "token_transfers", DAY,
        transfers.filter(~((pl.col("transaction_hash") == dropped["transaction_hash"])
                           & (pl.col("log_index") == dropped["log_index"]))),
    )  # fmt: skip
    from assets.analytics.portfolio_snapshots import portfolio_snapshots
    from assets.analytics.risk_metrics import risk_metrics

    _materialise(root, DAY, [portfolio_snapshots, risk_metrics])

    now = _explain_json(root, portfolio, DAY.isoformat())
    for table in ("balances_version", "prices_version", "token_transfers_version",
                  "native_transfers_version"):  # fmt: skip
        assert now["lineage"][table] > lin[table], table
    assert now["holdings_value"] != old["holdings_value"]
    assert _held(now) != _held(old) and _held(now) == _balances_at(
        root, now["lineage"]["balances_version"], wallets
    )
    key = (dropped["transaction_hash"], dropped["log_index"])
    assert key not in {(t["transaction_hash"], t["log_index"]) for t in now["transfers"]}

    # The old row, by the lineage it recorded: exactly its inputs, read by time travel.
    again = _explain_json(root, portfolio, DAY.isoformat(), "--lineage", old["lineage_text"])
    assert again["snapshot"] is None and again["lineage"] == lin
    for part in ("holdings", "prices", "transfers", "holdings_value"):
        assert again[part] == old[part], part
    assert Decimal(again["holdings_value"]) == old_row["total_value"]
    assert _held(again) == _balances_at(root, lin["balances_version"], wallets)
    assert key in {(t["transaction_hash"], t["log_index"]) for t in again["transfers"]}


def test_errors_are_one_line(stage: Stage) -> None:
    code, out = _explain(stage.root, "no-such-portfolio", DAY.isoformat())
    assert code == 1
    assert out.startswith("Error: unknown portfolio 'no-such-portfolio': ") and out.count("\n") == 1
    portfolio = _clickhouse(stage.root, "SELECT portfolio_id FROM portfolio_snapshots")[
        "portfolio_id"
    ][0]
    code, out = _explain(stage.root, portfolio, "2026-10-01")
    assert code == 1
    assert out.startswith(f"Error: no snapshot of portfolio '{portfolio}' on 2026-10-01")
    assert out.count("\n") == 1
    code, out = _explain(stage.root, portfolio, DAY.isoformat(), "--lineage", "balances=1")
    assert code == 2 and "lacks prices, token_transfers, native_transfers, blocks" in out
    code, out = _explain(
        stage.root, portfolio, DAY.isoformat(), "--lineage",
        "balances=999,prices=0,token_transfers=0,native_transfers=0,blocks=1-2",
    )  # fmt: skip
    assert code == 1
    assert out.startswith("Error: devnet balances version 999 does not exist: the table is at ")
    assert out.count("\n") == 1
