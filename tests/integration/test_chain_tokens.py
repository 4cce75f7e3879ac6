"""Token metadata, NFT transfers and contracts read from a real anvil devnet (the session's
`devnet` fixture: the generator deploys an ERC-721, an ERC-1155, an MKR-style bytes32 token and
a token without name() whose symbol() reverts, and mints and transfers them every day).

The assets are materialised day by day through Dagster, then checked against what the node
itself says: the logs (decoded here independently with eth_abi), ownerOf / balanceOf at the
head, the tokens' own answers and the receipts' contract addresses."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest
import yaml
from eth_abi import decode
from eth_utils import keccak

from assets.core.tokens import TokenMetadataError, TokensModel, tokens_frame
from chainlake.config import ChainConfig
from chainlake.rpc import RpcClient
from chainlake.tokens import EMPTY_CODE_HASH, read_token_metadata
from tests.conftest import Devnet
from tools.devnet.collectibles import NAMELESS_DECIMALS, ODD_SUPPLY
from tools.devnet.configs import write_chains_yaml, write_portfolios_yaml
from tools.devnet.generator import create_address

pytestmark = pytest.mark.integration

TRANSFER = "0x" + keccak(text="Transfer(address,address,uint256)").hex()
SINGLE = "0x" + keccak(text="TransferSingle(address,address,address,uint256,uint256)").hex()
START = dt.date(2026, 11, 4)
BATCH = "0x" + keccak(text="TransferBatch(address,address,address,uint256[],uint256[])").hex()


@dataclass(frozen=True)
class Lake:
    devnet: Devnet
    root: Path
    chain: ChainConfig

    def table(self, name: str) -> pl.DataFrame:
        return pl.read_delta(str(self.root / "delta" / "devnet" / "local" / name))


def _resources(root: Path) -> dict[str, object]:
    from chainlake.lake import DeltaStore
    from resources.rpc import RpcResource

    return {"delta": DeltaStore(root=str(root / "delta")), "rpc": RpcResource()}


def _assets() -> list[Any]:
    from assets.core.balances import balances
    from assets.core.contracts import contracts
    from assets.core.native_balance_movements import native_balance_movements
    from assets.core.native_transfers import native_transfers
    from assets.core.nft_transfers import nft_transfers
    from assets.core.token_transfers import token_transfers
    from assets.core.tokens import tokens
    from assets.raw.chain_tables import raw_chain_tables

    return [raw_chain_tables, token_transfers, tokens, nft_transfers, contracts,
            native_transfers, native_balance_movements, balances]  # fmt: skip


def _write_configs(root: Path, devnet: Devnet, extra_tokens: list[dict[str, Any]]) -> None:
    write_chains_yaml(root / "chains.yaml", devnet.manifest, rpc_urls=[devnet.rpc_url])
    raw = yaml.safe_load((root / "chains.yaml").read_text())
    raw["chains"][0]["tokens"] += extra_tokens
    (root / "chains.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    write_portfolios_yaml(root / "portfolios.yaml", devnet.manifest)


@pytest.fixture(scope="module")
def own_devnet() -> Iterator[Devnet]:
    # a chain of its own: the partitions' days start at config/chains.yaml's start_date
    # (read when the assets are imported), after the session devnet's days
    from tools.devnet.anvil import Anvil
    from tools.devnet.generator import generate

    with Anvil(genesis=START) as node:
        manifest = generate(
            node.rpc_url, start=START, days=3, blocks_per_day=12, txs_per_block=8, seed=3
        )
        yield Devnet(node=node, manifest=manifest)


@pytest.fixture(scope="module")
def lake(own_devnet: Devnet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lake]:
    from chainlake.config import load_chains

    devnet = own_devnet
    root = tmp_path_factory.mktemp("chain_tokens")
    c = devnet.manifest.contracts
    # the odd tokens tracked with nothing but their address: all read from the chain
    _write_configs(
        root, devnet, [{"address": c["bytes32_token"]}, {"address": c["nameless_token"]}]
    )
    mp = pytest.MonkeyPatch()
    mp.setenv("CHAINS_CONFIG", str(root / "chains.yaml"))
    mp.setenv("PORTFOLIOS_CONFIG", str(root / "portfolios.yaml"))
    try:
        for d in devnet.manifest.day_blocks:
            result = dg.materialize(
                _assets(), partition_key=f"devnet|{d.date.isoformat()}", resources=_resources(root)
            )
            assert result.success
            failed = [
                (e.asset_key.to_user_string(), e.check_name, e.description)
                for e in result.get_asset_check_evaluations()
                if not e.passed
            ]
            assert failed == [], failed
        yield Lake(devnet, root, load_chains(root / "chains.yaml")["devnet"])
    finally:
        mp.undo()


# -- token metadata -------------------------------------------------------------------------


def test_metadata_of_standard_bytes32_and_nameless_tokens(devnet: Devnet) -> None:
    m = devnet.manifest
    c = m.contracts
    usdc, link = (m.tokens[0].address, m.tokens[1].address)
    eoa = m.wallets[1].address
    asked = [usdc, link, c["bytes32_token"], c["nameless_token"], c["faulty"], eoa]
    with RpcClient([devnet.rpc_url]) as client:
        got = {t.address: t for t in read_token_metadata(client, asked, m.head_block)}
        before = read_token_metadata(client, [usdc], 0)  # genesis: not deployed yet
    assert (got[usdc].name, got[usdc].symbol, got[usdc].decimals) == (
        "USD Coin (devnet)",
        "USDC",
        6,
    )
    assert got[usdc].total_supply == 1_000_000_000 * 10**6
    assert (got[link].symbol, got[link].decimals) == ("LINK", 18)
    mkr = got[c["bytes32_token"]]  # name() and symbol() answer bytes32
    assert (mkr.name, mkr.symbol, mkr.decimals) == ("Maker (devnet)", "MKR", 18)
    assert mkr.total_supply == ODD_SUPPLY * 10**18
    nameless = got[c["nameless_token"]]  # no name(); symbol() reverts
    assert nameless.has_code and nameless.name is None and nameless.symbol is None
    assert (nameless.decimals, nameless.total_supply) == (
        NAMELESS_DECIMALS,
        ODD_SUPPLY * 10**NAMELESS_DECIMALS,
    )
    faulty = got[c["faulty"]]  # a contract with none of the functions
    assert faulty.has_code and (faulty.name, faulty.symbol, faulty.decimals) == (None, None, None)
    assert not got[eoa].has_code and got[eoa].decimals is None
    assert not before[0].has_code


def _chain(tokens: list[dict[str, Any]]) -> ChainConfig:
    return ChainConfig.model_validate(
        {"name": "devnet", "network": "devnet", "subnet": "local", "chain_id": 31337,
         "rpc_urls": ["http://127.0.0.1:1"], "start_date": "2025-01-01", "tokens": tokens}
    )  # fmt: skip


def test_overrides_are_checked_against_the_chain(devnet: Devnet) -> None:
    m = devnet.manifest
    c = m.contracts
    usdc = m.tokens[0].address
    with RpcClient([devnet.rpc_url]) as client:
        meta = read_token_metadata(
            client, [usdc, c["bytes32_token"], c["nameless_token"], c["faulty"]], m.head_block
        )
    day = m.end_date
    ok = _chain([
        {"address": usdc, "decimals": 6},  # an old file's hand-typed decimals: agrees, kept
        {"address": c["bytes32_token"], "symbol": "MAKER"},  # a symbol override wins
        {"address": c["nameless_token"]},
    ])  # fmt: skip
    df = tokens_frame(ok, day, m.head_block, meta[:3])
    TokensModel.validate(df)
    rows = {r["token_address"]: r for r in df.iter_rows(named=True)}
    assert (rows[usdc]["decimals"], rows[usdc]["decimals_source"]) == (6, "chain")
    mkr = rows[c["bytes32_token"]]
    assert (mkr["symbol"], mkr["symbol_source"], mkr["chain_symbol"]) == (
        "MAKER",
        "override",
        "MKR",
    )
    nameless = rows[c["nameless_token"]]
    assert (nameless["symbol"], nameless["symbol_source"]) == (c["nameless_token"], "address")
    assert nameless["name"] is None and nameless["decimals"] == NAMELESS_DECIMALS
    assert str(mkr["total_supply"]) == str(ODD_SUPPLY * 10**18) == mkr["total_supply_raw"]

    wrong = _chain([{"address": usdc, "symbol": "USDC", "decimals": 18}])
    with pytest.raises(TokenMetadataError) as e:
        tokens_frame(wrong, day, m.head_block, meta[:1])
    assert "token USDC" in str(e.value) and "override 18" in str(e.value)
    assert "decimals() = 6" in str(e.value)

    # a contract that does not answer decimals(): its override is used, else a clear error
    faulty = c["faulty"]
    df = tokens_frame(_chain([{"address": faulty, "decimals": 4}]), day, 1, meta[3:])
    assert df.select("decimals", "decimals_source", "chain_decimals").row(0) == (
        4,
        "override",
        None,
    )
    with pytest.raises(TokenMetadataError, match=f"{faulty}.*gives no decimals"):
        tokens_frame(_chain([{"address": faulty}]), day, 1, meta[3:])


def test_core_tokens_and_balances_use_the_chains_decimals(lake: Lake) -> None:
    m = lake.devnet.manifest
    c = m.contracts
    t = lake.table("token_metadata")
    assert sorted(set(t["date"].to_list())) == [d.date for d in m.day_blocks]
    last = {
        r["token_address"]: r for r in t.filter(pl.col("date") == m.end_date).iter_rows(named=True)
    }
    # the devnet's chains.yaml types no decimals any more: all four come from the chain
    assert {a: (r["symbol"], r["decimals"], r["decimals_source"]) for a, r in last.items()} == {
        m.tokens[0].address: ("USDC", 6, "chain"),
        m.tokens[1].address: ("LINK", 18, "chain"),
        c["bytes32_token"]: ("MKR", 18, "chain"),
        c["nameless_token"]: (c["nameless_token"], NAMELESS_DECIMALS, "chain"),
    }
    assert last[m.tokens[1].address]["block_number"] == m.day_blocks[-1].last_block
    # balances carry them: the odd tokens are held by tracked wallets and match the chain
    b = lake.table("balances").filter(pl.col("date") == m.end_date)
    held = {r["token_address"]: (r["token_symbol"], r["decimals"]) for r in b.iter_rows(named=True)}
    assert held[m.tokens[0].address] == ("USDC", 6)
    assert held[c["bytes32_token"]] == ("MKR", 18)
    assert held[c["nameless_token"]] == (c["nameless_token"], NAMELESS_DECIMALS)


def test_a_wrong_decimals_override_stops_core_tokens_naming_the_token(
    lake: Lake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from assets.core.tokens import tokens
    from chainlake.lake import DeltaStore

    devnet = lake.devnet
    _write_configs(tmp_path, devnet, [])
    raw = yaml.safe_load((tmp_path / "chains.yaml").read_text())
    usdc = next(t for t in raw["chains"][0]["tokens"] if t["symbol"] == "USDC")
    usdc["decimals"] = 18
    (tmp_path / "chains.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    monkeypatch.setenv("CHAINS_CONFIG", str(tmp_path / "chains.yaml"))
    day = devnet.manifest.end_date
    # raw/blocks of the module's lake, read in place (nothing is written to it)
    resources = _resources(lake.root)
    resources["delta"] = DeltaStore(root=str(lake.root / "delta"))
    result = dg.materialize(
        [tokens], partition_key=f"devnet|{day.isoformat()}", resources=resources,
        raise_on_error=False,
    )  # fmt: skip
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    text = str(failure.step_failure_data.error)
    assert "token USDC" in text and "decimals override 18" in text and "decimals() = 6" in text


# -- NFT transfers --------------------------------------------------------------------------


def _logs(devnet: Devnet, addresses: list[str]) -> list[dict[str, Any]]:
    with RpcClient([devnet.rpc_url]) as client:
        return client.get_logs(from_block=0, to_block=devnet.manifest.head_block, address=addresses)


def _address(topic: str) -> str:
    return "0x" + topic[-40:]


def test_nft_transfers_are_the_logs_one_row_per_id(lake: Lake) -> None:
    c = lake.devnet.manifest.contracts
    expected = []
    for lg in _logs(lake.devnet, [c["collectible"], c["multi_token"]]):
        t = lg["topics"]
        n, i = int(lg["blockNumber"], 16), int(lg["logIndex"], 16)
        if t[0] == TRANSFER:
            expected.append(
                (n, i, 0, "erc721", None, _address(t[1]), _address(t[2]), str(int(t[3], 16)), "1")
            )
        elif t[0] == SINGLE:
            token_id, value = decode(["uint256", "uint256"], bytes.fromhex(lg["data"][2:]))
            expected.append(
                (
                    n,
                    i,
                    0,
                    "erc1155",
                    _address(t[1]),
                    _address(t[2]),
                    _address(t[3]),
                    str(token_id),
                    str(value),
                )
            )
        elif t[0] == BATCH:
            ids, values = decode(["uint256[]", "uint256[]"], bytes.fromhex(lg["data"][2:]))
            assert len(ids) >= 2
            expected += [
                (n, i, k, "erc1155", _address(t[1]), _address(t[2]), _address(t[3]), str(a), str(v))
                for k, (a, v) in enumerate(zip(ids, values, strict=True))
            ]  # fmt: skip
    nft = lake.table("nft_transfers")
    got = [
        (r["block_number"], r["log_index"], r["batch_index"], r["standard"], r["operator"],
         r["from_address"], r["to_address"], r["token_id"], r["amount_raw"])
        for r in nft.sort("block_number", "log_index", "batch_index").iter_rows(named=True)
    ]  # fmt: skip
    assert got == sorted(expected)
    kinds = Counter(nft["event"].to_list())
    days = len(lake.devnet.manifest.day_blocks)
    assert kinds["Transfer"] >= 2 * days - 1 and kinds["TransferSingle"] >= days
    batches = nft.filter(pl.col("event") == "TransferBatch")
    assert batches.select("block_number", "log_index").unique().height >= days
    assert (nft["amount"].cast(pl.String) == nft["amount_raw"]).all()
    # ERC-721 transfers share ERC-20's topic0 but not its table
    erc20 = lake.table("token_transfers")
    assert erc20.filter(pl.col("token_address") == c["collectible"]).height == 0


def test_holdings_replayed_from_nft_transfers_equal_the_chain(lake: Lake) -> None:
    c = lake.devnet.manifest.contracts
    nft = lake.table("nft_transfers")
    owner: dict[int, str] = {}
    for r in (
        nft.filter(pl.col("standard") == "erc721")
        .sort("block_number", "log_index")
        .iter_rows(named=True)
    ):
        owner[int(r["token_id"])] = r["to_address"]
    held: Counter[tuple[int, str]] = Counter()
    for r in nft.filter(pl.col("standard") == "erc1155").iter_rows(named=True):
        held[(int(r["token_id"]), r["to_address"])] += int(r["amount_raw"])
        if r["from_address"] != "0x" + "0" * 40:
            held[(int(r["token_id"]), r["from_address"])] -= int(r["amount_raw"])
    head = hex(lake.devnet.manifest.head_block)
    owner_of = "0x6352211e"
    balance_of = "0x00fdd58e"  # balanceOf(address,uint256)
    with RpcClient([lake.devnet.rpc_url]) as client:
        owners = client.batch([
            ("eth_call", [{"to": c["collectible"], "data": owner_of + f"{i:064x}"}, head]) for i in owner
        ])  # fmt: skip
        balances = client.batch([
            ("eth_call", [{"to": c["multi_token"], "data": balance_of + a[2:].rjust(64, "0") + f"{i:064x}"}, head])
            for i, a in held
        ])  # fmt: skip
    assert owner and {i: _address(o) for i, o in zip(owner, owners, strict=True)} == owner
    assert held and [int(b, 16) for b in balances] == list(held.values())


# -- contracts ------------------------------------------------------------------------------


def test_contracts_from_receipts_and_traces_with_their_standard(lake: Lake) -> None:
    m = lake.devnet.manifest
    c = m.contracts
    df = lake.table("contracts")
    with RpcClient([lake.devnet.rpc_url]) as client:
        receipts = [
            r
            for block in client.batch(
                [("eth_getBlockReceipts", [hex(n)]) for n in range(m.head_block + 1)]
            )
            for r in block
        ]
    created = {
        r["contractAddress"]: r for r in receipts if r["contractAddress"] and r["status"] == "0x1"
    }
    by_tx = {r["transactionHash"]: r for r in receipts}
    receipt_rows = df.filter(pl.col("source") == "receipt")
    assert set(receipt_rows["contract_address"]) == set(created)
    rows = {r["contract_address"]: r for r in df.iter_rows(named=True)}
    for address in created:
        r = rows[address]
        assert r["deployer"] == r["creator"] == created[address]["from"]
        assert r["transaction_hash"] == created[address]["transactionHash"]
        assert r["block_number"] == int(created[address]["blockNumber"], 16)
        assert r["trace_address"] == ""

    # contracts created by contracts, from the traces: the factory's vaults (its VaultCreated
    # logs) and the forwarder's Doomed contracts (CREATE addresses of its nonces 1, 2, ...)
    vault_created = "0x" + keccak(text="VaultCreated(address,address,uint256,bool)").hex()
    vaults = [
        ("0x" + lg["topics"][1][-40:], lg["transactionHash"])
        for lg in _logs(lake.devnet, [c["factory"]])
        if lg["topics"][0] == vault_created
    ]
    doomed = [
        create_address(c["forwarder"], k) for k in range(1, m.stats["payout_create_doomed"] + 1)
    ]
    traced = df.filter(pl.col("source") == "trace")
    assert sorted(traced["contract_address"]) == sorted([v for v, _ in vaults] + doomed)
    assert len(vaults) == m.stats["factory_create"] + m.stats["factory_create2"] > 0 and doomed
    for vault, tx in vaults:
        r = rows[vault]
        assert (r["creator"], r["deployer"], r["transaction_hash"]) == (
            c["factory"],
            by_tx[tx]["from"],
            tx,
        )
        assert r["trace_address"] != "" and r["detected_by"] == "none"
    assert {rows[a]["creator"] for a in doomed} == {c["forwarder"]}

    def standard(address: str) -> tuple[bool, bool, bool, str]:
        r = rows[address]
        return r["is_erc20"], r["is_erc721"], r["is_erc1155"], r["detected_by"]

    assert standard(c["collectible"]) == (False, True, False, "erc165")
    assert standard(c["multi_token"]) == (False, False, True, "erc165")
    for token in (
        m.tokens[0].address,
        m.tokens[1].address,
        c["bytes32_token"],
        c["nameless_token"],
    ):
        assert standard(token) == (True, False, False, "selectors")
    for other in (c["faulty"], c["factory"], m.native_price_feed, *m.registries.values()):
        assert standard(other) == (False, False, False, "none")
    # throw-away tokens deployed during the days are ERC-20s too
    assert df["is_erc20"].sum() == 4 + m.stats["deploy_token"] - 2
    with RpcClient([lake.devnet.rpc_url]) as client:
        code = client.call("eth_getCode", [c["collectible"], "latest"])
    assert rows[c["collectible"]]["code_hash"] == "0x" + keccak(bytes.fromhex(code[2:])).hex()
    assert rows[c["collectible"]]["code_size"] == len(code) // 2 - 1
    assert all(h != EMPTY_CODE_HASH for h in receipt_rows["code_hash"])


def test_without_traces_contracts_come_from_receipts_only_and_say_so(
    lake: Lake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from assets.core.contracts import contracts

    shutil.copytree(lake.root / "delta", tmp_path / "delta")  # the fixture's lake stays as it is
    raw = yaml.safe_load((lake.root / "chains.yaml").read_text())
    raw["chains"][0]["trace_method"] = "none"
    (tmp_path / "chains.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    monkeypatch.setenv("CHAINS_CONFIG", str(tmp_path / "chains.yaml"))
    day = lake.devnet.manifest.day_blocks[-1].date
    result = dg.materialize(
        [contracts], partition_key=f"devnet|{day.isoformat()}", resources=_resources(tmp_path)
    )
    assert result.success
    (mat,) = result.get_asset_materialization_events()
    assert "receipts) only" in str(mat.materialization.metadata["covers"].value)
    without = pl.read_delta(str(tmp_path / "delta" / "devnet" / "local" / "contracts"))
    with_traces = lake.table("contracts")
    assert set(without.filter(pl.col("date") == day)["source"]) == {"receipt"}
    assert (
        without.filter(pl.col("date") == day).height
        == with_traces.filter((pl.col("date") == day) & (pl.col("source") == "receipt")).height
    )
    assert with_traces.filter((pl.col("date") == day) & (pl.col("source") == "trace")).height > 0
