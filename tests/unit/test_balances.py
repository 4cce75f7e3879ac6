"""core/balances: exact arithmetic from movements, first-day reads, and the chain check."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import pandera.errors
import polars as pl
import pytest

from assets.core.balances import (
    NATIVE_TOKEN,
    BalancesModel,
    balance_movements,
    balances,
    chain_mismatches,
    closing_balances,
)
from assets.core.native_balance_movements import NativeBalanceMovementsModel
from assets.core.native_transfers import NativeTransfersModel, native_transfers_frame
from assets.core.token_transfers import TokenTransfersModel
from assets.core.tokens import TABLE as TOKENS_TABLE
from assets.core.tokens import tokens_frame
from chainlake.lake import DeltaStore
from chainlake.schema import conform, polars_schema
from chainlake.tokens import TokenMetadata
from resources.rpc import RpcResource

W1 = "0x" + "11" * 20
W2 = "0x" + "22" * 20
OTHER = "0x" + "99" * 20
TOKEN = "0x" + "aa" * 20
UNTRACKED_TOKEN = "0x" + "bb" * 20
D1 = dt.date(2026, 11, 1)
D2 = dt.date(2026, 11, 2)
D3 = dt.date(2026, 11, 3)
ETH = 10**18


def _ts(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(12), dt.UTC)


def _native(rows: Iterable[tuple[dt.date, int, str, str, int, int, int]]) -> pl.DataFrame:
    """(day, block, from, to, value, fee, status)"""
    data = [
        {
            "chain_id": 31337,
            "date": day,
            "block_number": block,
            "block_timestamp": _ts(day),
            "transaction_hash": f"0x{block:02x}{i:062x}",
            "transaction_index": i,
            "from_address": frm,
            "to_address": to,
            "value": Decimal(value),
            "fee": Decimal(fee),
            "status": status,
        }
        for i, (day, block, frm, to, value, fee, status) in enumerate(rows)
    ]
    return conform(
        pl.DataFrame(data, schema=polars_schema(NativeTransfersModel)), NativeTransfersModel
    )


def _transfers(rows: Iterable[tuple[dt.date, int, str, str, str, int]]) -> pl.DataFrame:
    """(day, block, token, from, to, value)"""
    data = [
        {
            "chain_id": 31337,
            "date": day,
            "block_number": block,
            "block_hash": "0x" + "00" * 32,
            "block_timestamp": _ts(day),
            "transaction_hash": f"0x{block:02x}{i:062x}",
            "transaction_index": 0,
            "log_index": i,
            "token_address": token,
            "from_address": frm,
            "to_address": to,
            "value": Decimal(value),
            "value_raw": str(value),
        }
        for i, (day, block, token, frm, to, value) in enumerate(rows)
    ]
    return conform(
        pl.DataFrame(data, schema=polars_schema(TokenTransfersModel)), TokenTransfersModel
    )


WALLETS = pl.DataFrame({"address": [W1, W2], "account_type": ["eoa", "contract"]})
TOKENS = pl.DataFrame(
    {"token_address": [NATIVE_TOKEN, TOKEN], "token_symbol": ["ETH", "TKN"], "decimals": [18, 6]},
    schema={"token_address": pl.String, "token_symbol": pl.String, "decimals": pl.Int32},
)
OPENING_SCHEMA = {"address": pl.String, "token_address": pl.String,
                  "balance": pl.Decimal(38, 0), "source": pl.String}  # fmt: skip


def _opening(rows: Sequence[tuple[str, str, int, str]]) -> pl.DataFrame:
    return pl.DataFrame(
        [(a, t, Decimal(b), s) for a, t, b, s in rows], schema=OPENING_SCHEMA, orient="row"
    )


def _blocks(days: Sequence[dt.date]) -> pl.DataFrame:
    return pl.DataFrame(
        {"date": list(days), "block_number": [10 * (i + 1) for i in range(len(days))]}
    )


NATIVE = _native(
    [
        (D1, 1, OTHER, W1, 5 * ETH, 21_000, 1),  # in
        (D1, 2, W1, OTHER, 1 * ETH, 42_000, 1),  # out + fee
        (D1, 3, W1, OTHER, 0, 30_000, 0),  # reverted: only the fee
        (D1, 4, W1, W1, 2 * ETH, 21_000, 1),  # to itself: only the fee
        (D2, 11, W1, W2, 1 * ETH, 21_000, 1),
    ]
)
TRANSFERS = _transfers(
    [
        (D1, 2, TOKEN, OTHER, W2, 7_000_000),
        (D1, 3, UNTRACKED_TOKEN, OTHER, W1, 123),  # not a configured token: ignored
        (D2, 12, TOKEN, W2, OTHER, 2_000_000),
        (D2, 12, TOKEN, W2, W1, 5_000_000),  # W2 ends at zero TKN
    ]
)


def test_native_transfers_frame_value_and_fee() -> None:
    txs = pl.DataFrame(
        {
            "chain_id": [1, 1, 1],
            "date": [D1] * 3,
            "block_number": [1, 1, 2],
            "block_timestamp": [_ts(D1)] * 3,
            "transaction_hash": ["0x01", "0x02", "0x03"],
            "transaction_index": pl.Series([0, 1, 0], dtype=pl.Int32),
            "from_address": [W1, W1, W2],
            "to_address": [W2, None, W1],
            "contract_address": [None, OTHER, None],
            "value": [Decimal(5), Decimal(7), Decimal(9)],
            "gas_price": [Decimal(3), Decimal(3), None],
            "effective_gas_price": [Decimal(2), None, Decimal(4)],
            "gas_used": [21_000, 50_000, 30_000],
            "blob_gas_used": [None, None, 131_072],
            "blob_gas_price": [None, None, Decimal(1)],
            "status": pl.Series([1, 1, 0], dtype=pl.Int32),
        },
        schema_overrides={
            "value": pl.Decimal(38, 0),
            "gas_price": pl.Decimal(38, 0),
            "effective_gas_price": pl.Decimal(38, 0),
            "blob_gas_price": pl.Decimal(38, 0),
            "block_timestamp": pl.Datetime("us", "UTC"),
        },
    )
    out = native_transfers_frame(txs)
    NativeTransfersModel.validate(out)
    assert out["to_address"].to_list() == [W2, OTHER, W1]  # a creation pays the new contract
    assert [int(v) for v in out["value"]] == [5, 7, 0]  # reverted moves nothing
    assert [int(v) for v in out["fee"]] == [42_000, 150_000, 120_000 + 131_072]


def test_movements_are_signed_per_wallet_and_token() -> None:
    moves = balance_movements(NATIVE, TRANSFERS, [W1, W2], [NATIVE_TOKEN, TOKEN])
    by = (
        moves.group_by("date", "address", "token_address")
        .agg(pl.col("amount").sum())
        .sort("date", "address", "token_address")
    )
    got = {(r[0], r[1], r[2]): int(r[3]) for r in by.iter_rows()}
    assert got == {
        (D1, W1, NATIVE_TOKEN): 5 * ETH - 1 * ETH - 42_000 - 30_000 - 21_000,
        (D1, W2, TOKEN): 7_000_000,
        (D2, W1, NATIVE_TOKEN): -1 * ETH - 21_000,
        (D2, W1, TOKEN): 5_000_000,
        (D2, W2, NATIVE_TOKEN): 1 * ETH,
        (D2, W2, TOKEN): -7_000_000,
    }


def _run(days: Sequence[dt.date], opening: pl.DataFrame) -> pl.DataFrame:
    moves = balance_movements(NATIVE, TRANSFERS, [W1, W2], [NATIVE_TOKEN, TOKEN])
    return closing_balances(
        opening,
        moves.filter(pl.col("date").is_in(list(days))),
        wallets=WALLETS,
        tokens=TOKENS,
        days=days,
        chain_id=31337,
        block_numbers=_blocks([D1, D2, D3]),
    )


def test_closing_balances_one_day() -> None:
    opening = _opening([(W1, NATIVE_TOKEN, 10 * ETH, "chain"), (W2, NATIVE_TOKEN, 0, "chain")])
    out = _run([D1], opening)
    BalancesModel.validate(out)
    rows = {(r["address"], r["token_symbol"]): r for r in out.iter_rows(named=True)}
    assert int(rows[(W1, "ETH")]["balance"]) == 14 * ETH - 93_000
    assert int(rows[(W1, "ETH")]["net_change"]) == 4 * ETH - 93_000
    assert int(rows[(W2, "TKN")]["balance"]) == 7_000_000
    assert int(rows[(W2, "ETH")]["balance"]) == 0  # native rows are always present
    assert (W1, "TKN") not in rows  # zero and unmoved: left out
    assert set(out["source"]) == {"chain"}
    assert set(out["block_number"]) == {10}
    assert out["balance"].dtype == pl.Decimal(38, 0)


def test_several_days_at_once_equal_one_day_after_another() -> None:
    opening = _opening([(W1, NATIVE_TOKEN, 10 * ETH, "chain"), (W2, NATIVE_TOKEN, 3, "chain")])
    together = _run([D1, D2, D3], opening)
    one_by_one = []
    current = opening
    for day in (D1, D2, D3):
        out = _run([day], current)
        one_by_one.append(out)
        current = out.select(
            "address", "token_address", "balance", pl.lit("carried").alias("source")
        )
    stacked = pl.concat(one_by_one)
    assert together.drop("source").equals(stacked.drop("source"))
    # W2's TKN went to zero on D2: a row that day (it moved), none on D3.
    w2_tkn = together.filter((pl.col("address") == W2) & (pl.col("token_symbol") == "TKN"))
    assert w2_tkn["date"].to_list() == [D1, D2]
    assert int(w2_tkn["balance"][-1]) == 0
    assert together.filter(pl.col("date") == D2)["source"].unique().to_list() == ["carried"]


def test_exact_beyond_float_precision() -> None:
    big = 123_456_789_012_345_678_901_234_567  # 27 digits: floats would lose the tail
    opening = _opening([(W1, NATIVE_TOKEN, big, "carried"), (W2, NATIVE_TOKEN, 0, "carried")])
    out = _run([D3], opening)
    assert int(out.filter(pl.col("address") == W1)["balance"].item()) == big


def test_negative_eoa_balance_fails_the_schema_but_a_contract_may() -> None:
    opening = _opening([(W1, NATIVE_TOKEN, 0, "carried"), (W2, NATIVE_TOKEN, 0, "carried")])
    out = _run([D2], opening)  # W1 spends 1 ETH it never had; W2 sends TKN it never had
    assert (
        int(
            out.filter((pl.col("address") == W2) & (pl.col("token_symbol") == "TKN"))[
                "balance"
            ].item()
        )
        < 0
    )
    with pytest.raises(pandera.errors.SchemaError, match="eoa_never_negative"):
        BalancesModel.validate(out)
    BalancesModel.validate(out.filter(pl.col("address") == W2))


def test_chain_mismatches_name_the_pair_and_treat_missing_rows_as_zero() -> None:
    opening = _opening([(W1, NATIVE_TOKEN, 10 * ETH, "chain"), (W2, NATIVE_TOKEN, 0, "chain")])
    out = _run([D1], opening)
    truth = out.select("address", "token_address", pl.col("balance").alias("chain_balance"))
    truth = pl.concat([truth, pl.DataFrame({"address": [W1], "token_address": [TOKEN],
                                            "chain_balance": [Decimal(0)]},
                                           schema=truth.schema)])  # fmt: skip
    assert chain_mismatches(out, truth).height == 0
    wrong = truth.with_columns(
        pl.when(pl.col("address") == W1).then(pl.col("chain_balance") + 5)
        .otherwise(pl.col("chain_balance")).alias("chain_balance")
    )  # fmt: skip
    bad = chain_mismatches(out, wrong)
    assert bad.height == 2
    assert bad.filter(pl.col("token_address") == TOKEN)["difference"].item() == Decimal(-5)


# -- the asset, materialised on a Delta folder with a fake node ------------------------------


class FakeNode:
    """Answers eth_getBalance / balanceOf from a table of balances per block."""

    def __init__(self, state: dict[tuple[int, str, str], int]) -> None:
        self.state = state
        self.calls: list[tuple[str, Any]] = []

    def _answer(self, method: str, params: Sequence[Any]) -> str:
        self.calls.append((method, params))
        if method == "eth_getBalance":
            address, tag = params
            return hex(self.state.get((int(tag, 16), address, NATIVE_TOKEN), 0))
        call, tag = params
        address = "0x" + call["data"][-40:]
        return "0x" + f"{self.state.get((int(tag, 16), address, call['to']), 0):064x}"

    def batches(self, calls: Iterable[tuple[str, Sequence[Any]]], **_: Any) -> Iterator[list[Any]]:
        yield [self._answer(m, p) for m, p in calls]


@pytest.fixture
def stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[DeltaStore, Path]:
    chains = tmp_path / "chains.yaml"
    chains.write_text(
        "chains:\n"
        "  - name: devnet\n    network: devnet\n    subnet: local\n    chain_id: 31337\n"
        '    rpc_urls: ["http://127.0.0.1:1"]\n    start_date: 2026-11-01\n'
        f'    tokens:\n      - {{symbol: TKN, address: "{TOKEN}", decimals: 6}}\n'
    )
    portfolios = tmp_path / "portfolios.yaml"
    portfolios.write_text(
        "wallets:\n"
        f'  - {{name: alice, address: "{W1}", chain: devnet}}\n'
        f'  - {{name: vault, address: "{W2}", chain: devnet, kind: contract}}\n'
    )
    monkeypatch.setenv("CHAINS_CONFIG", str(chains))
    monkeypatch.setenv("PORTFOLIOS_CONFIG", str(portfolios))
    from chainlake.config import load_chains

    chain = load_chains()["devnet"]
    store = DeltaStore(root=str(tmp_path / "delta"))
    blocks = pl.DataFrame(
        {"date": [D1, D1, D1, D1, D2, D2], "block_number": [1, 2, 3, 4, 11, 12]},
        schema={"date": pl.Date, "block_number": pl.Int64},
    )
    for day in (D1, D2):
        store.replace_day(chain, "blocks", day, blocks.filter(pl.col("date") == day))
        store.replace_day(
            chain, "native_balance_movements", day, _movements(NATIVE.filter(pl.col("date") == day))
        )
        store.replace_day(chain, "token_transfers", day, TRANSFERS.filter(pl.col("date") == day))
        # core/tokens of the day, as the chain would answer for TKN (decimals 6 like its override)
        meta = [TokenMetadata(TOKEN, True, "Token", "TKN", 6, 10**12)]
        store.replace_day(chain, TOKENS_TABLE, day, tokens_frame(chain, day, 4, meta))
    return store, tmp_path


def _movements(native: pl.DataFrame) -> pl.DataFrame:
    """core/native_transfers rows as core/native_balance_movements rows (value and fee)."""
    keep = ["chain_id", "date", "block_number", "block_timestamp", "transaction_hash",
            "transaction_index"]  # fmt: skip
    value = native.filter(pl.col("value") > 0).select(
        *keep, pl.lit(None, pl.String).alias("trace_address"),
        pl.lit("transaction_value").alias("kind"), "from_address", "to_address",
        pl.col("value").alias("amount"),
    )  # fmt: skip
    fee = native.filter(pl.col("fee") > 0).select(
        *keep, pl.lit(None, pl.String).alias("trace_address"), pl.lit("fee").alias("kind"),
        "from_address", pl.lit(None, pl.String).alias("to_address"), pl.col("fee").alias("amount"),
    )  # fmt: skip
    return conform(pl.concat([value, fee]), NativeBalanceMovementsModel)


def _materialize(store: DeltaStore, node: FakeNode, day: dt.date,
                 monkeypatch: pytest.MonkeyPatch) -> dg.ExecuteInProcessResult:  # fmt: skip
    monkeypatch.setattr(RpcResource, "client", lambda self, chain: node)
    return dg.materialize(
        [balances],
        partition_key=f"devnet|{day.isoformat()}",
        resources={"delta": store, "rpc": RpcResource()},
        raise_on_error=False,
    )


def _truth() -> dict[tuple[int, str, str], int]:
    # Opening state at block 0 (before D1's first block), and the true closes of D1 and D2.
    return {
        (0, W1, NATIVE_TOKEN): 10 * ETH,
        (0, W2, TOKEN): 1_000_000,
        (4, W1, NATIVE_TOKEN): 14 * ETH - 93_000,
        (4, W2, TOKEN): 8_000_000,
        (12, W1, NATIVE_TOKEN): 13 * ETH - 114_000,
        (12, W2, NATIVE_TOKEN): 1 * ETH,
        (12, W1, TOKEN): 5_000_000,
        (12, W2, TOKEN): 1_000_000,
    }


def _check(result: dg.ExecuteInProcessResult, name: str) -> dg.AssetCheckEvaluation:
    (ev,) = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return ev


def test_asset_first_day_then_carried_and_checked(stage, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    store, _ = stage
    node = FakeNode(_truth())
    r1 = _materialize(store, node, D1, monkeypatch)
    assert r1.success
    assert _check(r1, "matches_chain").passed
    # The first day read the opening at the block before the day's first block.
    assert {p[1] for m, p in node.calls if m == "eth_getBalance"} == {"0x0", "0x4"}
    r2 = _materialize(store, node, D2, monkeypatch)
    assert r2.success and _check(r2, "matches_chain").passed
    from chainlake.config import load_chains

    chain = load_chains()["devnet"]
    d2 = store.read_day(chain, "balances", D2)
    assert set(d2["source"]) == {"carried"}
    # Re-materialising a day leaves exactly one row per key.
    r3 = _materialize(store, node, D2, monkeypatch)
    assert r3.success
    d2_again = store.read_day(chain, "balances", D2)
    assert d2_again.height == d2.height
    assert d2_again.select("address", "token_address").is_duplicated().sum() == 0


def test_asset_check_names_wallet_token_and_amount(stage, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    store, _ = stage
    truth = _truth()
    truth[(4, W2, TOKEN)] += 250  # the node says the vault holds 250 more TKN than computed
    result = _materialize(store, FakeNode(truth), D1, monkeypatch)
    ev = _check(result, "matches_chain")
    assert not ev.passed
    assert "vault TKN: computed 8000000, chain 8000250 (difference -250)" in (ev.description or "")
