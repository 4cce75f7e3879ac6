"""Native balances with internal transfers, on a real anvil filled by the devnet generator.

Every day of the generated chain holds each internal movement anvil can produce (a contract
forwarding ether, WETH-style withdraw, SELFDESTRUCT to a beneficiary, creation with value by
a contract, a reverted transaction that paid inside, a successful one whose reverted sub-call
paid) and the fee recipient's priority fees. The tracked wallets (EOAs, the WETH contract, the
fee recipient) reconcile with eth_getBalance every day, through the pipeline's own blocking
check and compared here with the node; the same chain read with tracing switched off fails
that check, naming the wallet and the missing kinds."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml

from chainlake.rpc import RpcClient
from tools.devnet.anvil import Anvil
from tools.devnet.configs import write_chains_yaml, write_portfolios_yaml
from tools.devnet.generator import FEE_RECIPIENT, DevnetManifest, generate

pytestmark = pytest.mark.integration

START = dt.date(2026, 11, 2)
DAYS = 3
NATIVE = "0xeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"
DAILY_KINDS = {
    "transaction_value",
    "internal_call",
    "internal_create",
    "selfdestruct",
    "fee",
    "priority_fee",
}


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, DevnetManifest, Path]]:
    with Anvil(genesis=START) as node:
        manifest = generate(
            node.rpc_url, start=START, days=DAYS, blocks_per_day=6, txs_per_block=4, seed=5
        )
        cfg = tmp_path_factory.mktemp("cfg")
        write_chains_yaml(cfg / "chains.yaml", manifest, rpc_urls=[node.rpc_url])
        write_portfolios_yaml(cfg / "portfolios.yaml", manifest)
        yield node.rpc_url, manifest, cfg


def _configure(cfg: Path, tmp: Path, monkeypatch: pytest.MonkeyPatch, trace_method: str) -> None:
    doc = yaml.safe_load((cfg / "chains.yaml").read_text())
    doc["chains"][0]["trace_method"] = trace_method
    (tmp / "chains.yaml").write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("CHAINS_CONFIG", str(tmp / "chains.yaml"))
    monkeypatch.setenv("PORTFOLIOS_CONFIG", str(cfg / "portfolios.yaml"))


def _materialize(root: Path, day: dt.date) -> dg.ExecuteInProcessResult:
    from assets.core.balances import balances
    from assets.core.native_balance_movements import native_balance_movements
    from assets.core.token_transfers import token_transfers
    from assets.core.tokens import tokens
    from assets.raw.chain_tables import raw_chain_tables
    from chainlake.lake import DeltaStore
    from resources.rpc import RpcResource

    return dg.materialize(
        [raw_chain_tables, token_transfers, tokens, native_balance_movements, balances],
        partition_key=f"devnet|{day.isoformat()}",
        resources={"delta": DeltaStore(root=str(root)), "rpc": RpcResource()},
        raise_on_error=False,
    )


def _table(root: Path, name: str) -> pl.DataFrame:
    return pl.read_delta(str(root / "devnet" / "local" / name))


def _check(result: dg.ExecuteInProcessResult, name: str) -> dg.AssetCheckEvaluation:
    (ev,) = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return ev


def test_every_tracked_wallet_matches_the_chain_every_day(
    chain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, manifest, cfg = chain
    _configure(cfg, tmp_path, monkeypatch, "auto")
    root = tmp_path / "delta"
    tracked = {w.name: w.address for w in manifest.tracked_wallets}
    assert tracked["fee-recipient"] == FEE_RECIPIENT and "weth" in tracked
    for i in range(DAYS):
        day = START + dt.timedelta(days=i)
        result = _materialize(root, day)
        assert result.success
        check = _check(result, "matches_chain")
        assert check.passed, check.description
        roots = _check(result, "one_root_frame_per_transaction")
        assert roots.passed and roots.metadata["internal_transfers_covered"].value is True
        # the same, compared here with the node for every tracked wallet
        close = manifest.day_blocks[i].last_block
        with RpcClient([url]) as c:
            on_chain = c.batch([("eth_getBalance", [a, hex(close)]) for a in tracked.values()])
        rows = _table(root, "balances").filter(
            (pl.col("date") == day) & (pl.col("token_address") == NATIVE)
        )
        computed = dict(zip(rows["address"], rows["balance"], strict=True))
        assert {a: int(computed[a]) for a in tracked.values()} == {
            a: int(b, 16) for a, b in zip(tracked.values(), on_chain, strict=True)
        }

    moves = _table(root, "native_balance_movements")
    for i in range(DAYS):
        day = START + dt.timedelta(days=i)
        kinds = set(moves.filter(pl.col("date") == day)["kind"])
        assert DAILY_KINDS <= kinds, f"{day}: missing {DAILY_KINDS - kinds}"
    # the fee recipient is paid priority fees only; the WETH contract pays out internally
    fee = moves.filter(pl.col("to_address") == FEE_RECIPIENT)
    assert set(fee["kind"]) == {"priority_fee"}
    weth_out = moves.filter(pl.col("from_address") == tracked["weth"])
    assert set(weth_out["kind"]) == {"internal_call"} and weth_out.height == DAYS

    traces = _table(root, "traces")
    assert set(traces["trace_source"]) == {"trace_block"}  # what anvil answers first
    # the reverted transaction's internal transfer and the reverted sub-call's are in raw/traces,
    # flagged, and moved nothing
    txs = _table(root, "transactions")
    reverted_internal = traces.filter(
        pl.col("reverted") & (pl.col("depth") > 0) & (pl.col("value") > 0)
    )
    failed = set(txs.filter(pl.col("status") == 0)["transaction_hash"])
    assert reverted_internal.height >= 2 * DAYS
    assert set(reverted_internal["transaction_hash"]) & failed  # inside a failed transaction
    assert set(reverted_internal["transaction_hash"]) - failed  # a sub-call of a successful one
    internal = moves.filter(pl.col("trace_address").is_not_null())
    undone = reverted_internal.select("transaction_hash", "trace_address")
    assert internal.join(undone, on=["transaction_hash", "trace_address"], how="semi").height == 0


def test_debug_trace_gives_the_same_movements(
    chain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _url, _manifest, cfg = chain
    day = START + dt.timedelta(days=1)
    frames = {}
    for method in ("trace_block", "debug_trace"):
        (tmp_path / method).mkdir()
        _configure(cfg, tmp_path / method, monkeypatch, method)
        root = tmp_path / method / "delta"
        result = _materialize(root, day)
        assert result.success and _check(result, "matches_chain").passed
        assert set(_table(root, "traces")["trace_source"]) == {method}
        frames[method] = _table(root, "native_balance_movements").sort(
            "block_number", "transaction_index", "kind", "trace_address", nulls_last=True
        )
    assert frames["trace_block"].equals(frames["debug_trace"])


def test_without_traces_the_check_names_the_wallet_and_the_missing_kind(
    chain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _url, _manifest, cfg = chain
    _configure(cfg, tmp_path, monkeypatch, "none")
    root = tmp_path / "delta"
    result = _materialize(root, START)
    check = _check(result, "matches_chain")
    assert not check.passed
    text = check.description or ""
    assert "weth ETH: computed" in text  # the WETH contract paid its withdrawal internally
    assert "missing kind(s) internal_call, internal_create, selfdestruct" in text
    assert "trace_method is none" in text
    assert _table(root, "traces").height == 0
    mats = result.asset_materializations_for_node("raw_chain_tables")
    meta = next(m.metadata for m in mats if m.asset_key == dg.AssetKey(["raw", "traces"]))
    assert meta["internal_transfers_covered"].value is False
    roots = _check(result, "one_root_frame_per_transaction")
    assert roots.metadata["internal_transfers_covered"].value is False


def test_demo_section_compares_every_portfolio_with_the_chain(
    chain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make demo`'s native-balance lines (tools/demo_native.py) on this chain: every
    portfolio's wallet-days equal eth_getBalance, with the internal movements counted."""
    from tools.demo_native import summary

    _url, manifest, cfg = chain
    _configure(cfg, tmp_path, monkeypatch, "auto")
    root = tmp_path / "delta"
    days = [START + dt.timedelta(days=i) for i in range(DAYS)]
    for day in days:
        assert _materialize(root, day).success
    monkeypatch.setenv("DELTA_ROOT", str(root))
    lines = summary(days)
    rows = {line.split()[1]: line.split() for line in lines[1:-1]}
    assert set(rows) == {p.name for p in manifest.portfolios}
    for name, words in rows.items():
        wallets = len(next(p for p in manifest.portfolios if p.name == name).wallets)
        assert words[0] == "OK" and words[2] == f"{wallets * DAYS}/{wallets * DAYS}", words
    assert "internal_call 0" not in lines[-1] and "selfdestruct 0" not in lines[-1]
