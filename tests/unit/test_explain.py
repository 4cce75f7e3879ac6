"""Lineage and `explain`, the pure parts and Delta time travel on local tables: a row's
lineage text round-trips, the transforms carry it, and `explain_day` reads the inputs at the
versions recorded (not the current ones), saying in one line when a vacuum removed them."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable

from assets.analytics.portfolio_snapshots import PortfolioSnapshotsModel, portfolio_snapshots_frame
from chainlake.config import ChainConfig
from chainlake.explain import (
    NATIVE_TOKEN,
    TRANSFERS,
    ExplainError,
    Explanation,
    explain_day,
    holdings_frame,
    transfers_frame,
)
from chainlake.extract import DayRange
from chainlake.lake import DeltaStore
from chainlake.lineage import (
    LINEAGE_COLUMNS,
    Lineage,
    day_block_range,
    day_lineage,
    lineage_frame,
    lineage_markdown,
    read_versions,
)
from chainlake.state import remember_day_range

DAY = dt.date(2026, 11, 4)
A = "0x" + "a1" * 20  # tracked: "alice"
B = "0x" + "b2" * 20  # tracked: "bob"
X = "0x" + "c3" * 20  # outside
USDC = "0x" + "d4" * 20
OTHER = "0x" + "f5" * 20  # a token the wallets do not hold
FEED = "0x" + "99" * 20
WALLETS = {A: "alice", B: "bob"}
CHAIN = ChainConfig(
    name="devnet", network="devnet", subnet="local", chain_id=31337,
    rpc_urls=("http://127.0.0.1:8545",), start_date=dt.date(2026, 1, 1),
)  # fmt: skip


def test_lineage_text_round_trips_and_names_what_is_wrong() -> None:
    lin = Lineage(3, 5, 2, 7, 17, 32)
    text = lin.to_text()
    assert text == "balances=3,prices=5,token_transfers=2,native_transfers=7,blocks=17-32"
    assert Lineage.parse(text) == lin
    assert Lineage.parse(
        " blocks=1-2, prices=0,balances=1,native_transfers=4,token_transfers=3"
    ) == (Lineage(1, 0, 3, 4, 1, 2))
    none = Lineage()
    assert none.to_text() == "balances=-,prices=-,token_transfers=-,native_transfers=-,blocks=-"
    assert Lineage.parse(none.to_text()) == none
    with pytest.raises(ValueError, match="lacks native_transfers, blocks"):
        Lineage.parse("balances=3,prices=5,token_transfers=2")
    with pytest.raises(ValueError, match="'prices=x': not a number"):
        Lineage.parse("balances=3,prices=x,token_transfers=2,native_transfers=2,blocks=1-2")
    with pytest.raises(ValueError, match="'blocks=12': not a number"):
        Lineage.parse("balances=3,prices=1,token_transfers=2,native_transfers=2,blocks=12")
    with pytest.raises(ValueError, match="'logs=1' is not one of"):
        Lineage.parse("logs=1")
    with pytest.raises(ValueError, match="'balances' is given twice"):
        Lineage.parse("balances=1,balances=2")
    assert Lineage.from_row({**lin.as_row(), "other": 1}) == lin
    assert lin.versions() == {"balances": 3, "token_prices": 5, "token_transfers": 2,
                              "native_transfers": 7}  # fmt: skip


def test_day_lineage_and_markdown() -> None:
    lin = day_lineage(
        {"balances": 4, "token_prices": None, "token_transfers": 1, "native_transfers": 2},
        (10, 20),
    )
    assert lin == Lineage(4, None, 1, 2, 10, 20)
    md = lineage_markdown([("devnet", DAY, lin)])
    assert md.splitlines()[2] == (
        "| devnet | 2026-11-04 | 4 | – | 1 | 2 | 10–20 | "
        "`balances=4,prices=-,token_transfers=1,native_transfers=2,blocks=10-20` |"
    )


def _snapshot_inputs() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    balances = pl.DataFrame(
        {"date": [DAY], "address": [A], "token_address": [NATIVE_TOKEN], "token_symbol": ["ETH"],
         "decimals": [18], "balance": [Decimal(2 * 10**18)]},
        schema_overrides={"decimals": pl.Int32, "balance": pl.Decimal(38, 0)},
    )  # fmt: skip
    prices = pl.DataFrame(
        {"date": [DAY], "token_address": [NATIVE_TOKEN], "price": [Decimal("3000")]},
        schema_overrides={"price": pl.Decimal(38, 18)},
    )
    members = pl.DataFrame({"portfolio_id": ["p"], "address": [A]})
    return balances, prices, members


def test_snapshot_rows_carry_the_lineage_given_and_null_without() -> None:
    balances, prices, members = _snapshot_inputs()
    lin = Lineage(3, 5, 2, 7, 17, 32)
    out = portfolio_snapshots_frame(
        balances, prices, members, days=[DAY], chain_id=1, lineage=lineage_frame({DAY: lin})
    )
    PortfolioSnapshotsModel.validate(out)
    assert Lineage.from_row(out.row(0, named=True)) == lin
    bare = portfolio_snapshots_frame(balances, prices, members, days=[DAY], chain_id=1)
    PortfolioSnapshotsModel.validate(bare)
    assert bare.select(LINEAGE_COLUMNS).null_count().sum_horizontal().item() == len(LINEAGE_COLUMNS)
    assert bare.drop(LINEAGE_COLUMNS).equals(out.drop(LINEAGE_COLUMNS))


def test_transfers_are_listed_per_wallet_side_signed() -> None:
    token = pl.DataFrame(
        {"block_number": [5, 6, 7, 8], "transaction_hash": ["0x1", "0x2", "0x3", "0x4"],
         "log_index": [0, 0, 1, 0], "token_address": [USDC, USDC, OTHER, USDC],
         "from_address": [X, A, A, X], "to_address": [A, B, X, X],
         "value": [Decimal(100), Decimal(30), Decimal(9), Decimal(1)]},
        schema_overrides={"log_index": pl.Int32, "value": pl.Decimal(38, 0)},
    )  # fmt: skip
    native = pl.DataFrame(
        {"block_number": [5, 9], "transaction_hash": ["0x5", "0x6"],
         "from_address": [A, X], "to_address": [X, B],
         "value": [Decimal(1000), Decimal(0)], "fee": [Decimal(21), Decimal(5)]},
        schema_overrides={"value": pl.Decimal(38, 0), "fee": pl.Decimal(38, 0)},
    )  # fmt: skip
    out = transfers_frame(token, native, WALLETS, {NATIVE_TOKEN: "ETH", USDC: "USDC"})
    got = [(r["transaction_hash"], r["wallet"], r["token_symbol"], r["direction"], r["amount"])
           for r in out.iter_rows(named=True)]  # fmt: skip
    # OTHER is not held (not in the tokens), X to X touches no wallet, a zero-value native
    # transfer moves nothing to its recipient (its sender is not tracked).
    assert got == [
        ("0x1", "alice", "USDC", "in", Decimal(100)),
        ("0x5", "alice", "ETH", "out", Decimal(-1021)),
        ("0x2", "alice", "USDC", "out", Decimal(-30)),
        ("0x2", "bob", "USDC", "in", Decimal(30)),
    ]
    assert out.filter(pl.col("transaction_hash") == "0x5")["fee"].to_list() == [Decimal(21)]


# -- time travel on a local lake --------------------------------------------------------


def _write(store: DeltaStore, table: str, rows: list[dict[str, object]],
           schema: dict[str, pl.DataType]) -> int:  # fmt: skip
    return store.replace_day(CHAIN, table, DAY, pl.DataFrame(rows, schema=schema, orient="row"))


BAL = {"date": pl.Date(), "address": pl.String(), "token_address": pl.String(),
       "token_symbol": pl.String(), "decimals": pl.Int32(), "balance": pl.Decimal(38, 0),
       "net_change": pl.Decimal(38, 0), "block_number": pl.Int64()}  # fmt: skip
PRICE = {"date": pl.Date(), "token_address": pl.String(), "token_symbol": pl.String(),
         "price_feed": pl.String(), "feed_decimals": pl.Int32(), "answer": pl.Decimal(38, 0),
         "round_id": pl.Decimal(38, 0), "price": pl.Decimal(38, 18),
         "updated_at": pl.Datetime("us", "UTC"), "block_number": pl.Int64(),
         "source": pl.String()}  # fmt: skip
TOKEN = {"date": pl.Date(), "block_number": pl.Int64(), "transaction_hash": pl.String(),
         "log_index": pl.Int32(), "token_address": pl.String(), "from_address": pl.String(),
         "to_address": pl.String(), "value": pl.Decimal(38, 0)}  # fmt: skip
NATIVE = {"date": pl.Date(), "block_number": pl.Int64(), "transaction_hash": pl.String(),
          "from_address": pl.String(), "to_address": pl.String(), "value": pl.Decimal(38, 0),
          "fee": pl.Decimal(38, 0)}  # fmt: skip


def _day(store: DeltaStore, usdc: int, price: str, round_id: int) -> None:
    _write(store, "balances", [
        {"date": DAY, "address": A, "token_address": USDC, "token_symbol": "USDC",
         "decimals": 6, "balance": Decimal(usdc), "net_change": Decimal(usdc),
         "block_number": 32},
        {"date": DAY, "address": X, "token_address": USDC, "token_symbol": "USDC",
         "decimals": 6, "balance": Decimal(1), "net_change": Decimal(0), "block_number": 32},
    ], BAL)  # fmt: skip
    _write(store, "token_prices", [
        {"date": DAY, "token_address": USDC, "token_symbol": "USDC", "price_feed": FEED,
         "feed_decimals": 8, "answer": Decimal(int(Decimal(price) * 10**8)),
         "round_id": Decimal(round_id), "price": Decimal(price),
         "updated_at": dt.datetime(2026, 11, 4, 12, tzinfo=dt.UTC), "block_number": 20,
         "source": "event"},
    ], PRICE)  # fmt: skip
    _write(store, "token_transfers", [
        {"date": DAY, "block_number": 18, "transaction_hash": f"0x{usdc:x}", "log_index": 0,
         "token_address": USDC, "from_address": X, "to_address": A, "value": Decimal(usdc)},
    ], TOKEN)  # fmt: skip
    _write(store, "native_transfers", [], NATIVE)


def test_explain_reads_the_recorded_versions_not_the_current_ones(tmp_path: Path) -> None:
    store = DeltaStore(root=str(tmp_path / "delta"))
    assert read_versions(store, CHAIN) == dict.fromkeys(
        ["balances", "token_prices", "token_transfers", "native_transfers"]
    )
    _day(store, 5_000_000, "1.01", 7)
    old = day_lineage(read_versions(store, CHAIN), (17, 32))
    assert old == Lineage(0, 0, 0, 0, 17, 32)
    _day(store, 9_000_000, "0.99", 8)  # the day re-materialised with other inputs
    new = day_lineage(read_versions(store, CHAIN), (17, 32))
    assert new == Lineage(1, 1, 1, 1, 17, 32)

    was = explain_day(store, CHAIN, DAY, portfolio_id="p", wallets=WALLETS, lineage=old)
    now = explain_day(store, CHAIN, DAY, portfolio_id="p", wallets=WALLETS, lineage=new)
    holding = was.holdings.row(0, named=True)
    assert was.holdings.height == 1  # X is no wallet of the portfolio
    assert (holding["wallet"], holding["balance"], holding["quantity"], holding["price"],
            holding["value"]) == ("alice", Decimal(5_000_000), Decimal(5), Decimal("1.01"),
                                  Decimal("5.05"))  # fmt: skip
    assert (holding["moved"], holding["net_change"], holding["transfers"]) == (
        Decimal(5_000_000), Decimal(5_000_000), 1)  # fmt: skip
    assert was.total_value == Decimal("5.05") and now.total_value == Decimal("8.91")
    assert was.prices["round_id"].to_list() == [Decimal(7)]
    assert now.prices["round_id"].to_list() == [Decimal(8)]
    assert was.transfers["transaction_hash"].to_list() == ["0x4c4b40"]
    assert now.transfers["transaction_hash"].to_list() == ["0x895440"]
    # a table the row recorded no version of is read as nothing
    bare = explain_day(store, CHAIN, DAY, portfolio_id="p", wallets=WALLETS, lineage=Lineage())
    assert bare.holdings.height == bare.prices.height == bare.transfers.height == 0


def test_a_vacuumed_or_unknown_version_is_one_line_naming_it(tmp_path: Path) -> None:
    store = DeltaStore(root=str(tmp_path / "delta"))
    _day(store, 5_000_000, "1.01", 7)
    _day(store, 9_000_000, "0.99", 8)
    ahead = Lineage(9, 1, 1, 1, 17, 32)
    with pytest.raises(ExplainError, match=r"^devnet balances version 9 does not exist: the "
                       r"table is at version 1$"):  # fmt: skip
        explain_day(store, CHAIN, DAY, portfolio_id="p", wallets=WALLETS, lineage=ahead)
    # what a vacuum with no retention does to version 0's files (the store's own vacuum keeps
    # a week; delta-rs lets a test force none)
    DeltaTable(store.table_uri(CHAIN, "balances")).vacuum(
        retention_hours=0, enforce_retention_duration=False, dry_run=False
    )
    with pytest.raises(ExplainError) as err:
        explain_day(store, CHAIN, DAY, portfolio_id="p", wallets=WALLETS,
                    lineage=Lineage(0, 0, 0, 0, 17, 32))  # fmt: skip
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("devnet balances version 0 can no longer be read: the vacuum at "
                              "version 2 (")  # fmt: skip
    assert message.endswith("with a retention of 0 h removed its files")
    # the current version is untouched
    now = explain_day(store, CHAIN, DAY, portfolio_id="p", wallets=WALLETS,
                      lineage=Lineage(1, 1, 1, 1, 17, 32))  # fmt: skip
    assert now.holdings["balance"].to_list() == [Decimal(9_000_000)]


def test_a_days_block_range_is_the_remembered_one_else_its_blocks(tmp_path: Path) -> None:
    store = DeltaStore(root=str(tmp_path / "delta"))
    assert day_block_range(store, CHAIN, DAY) == (None, None)  # no blocks table yet
    blocks = pl.DataFrame(
        {"date": [DAY - dt.timedelta(days=1), DAY, DAY, DAY], "block_number": [9, 10, 11, 12]}
    )
    for day in (DAY - dt.timedelta(days=1), DAY):
        store.replace_day(CHAIN, "blocks", day, blocks.filter(pl.col("date") == day))
    assert day_block_range(store, CHAIN, DAY) == (10, 12)  # the open day: its blocks so far
    assert day_block_range(store, CHAIN, DAY + dt.timedelta(days=1)) == (None, None)
    remember_day_range(store, CHAIN, DayRange(DAY, 10, 14, True, 14))
    assert day_block_range(store, CHAIN, DAY) == (10, 14)  # closed: the remembered range


def test_the_holdings_add_up_to_the_snapshots_total_value_to_the_last_place() -> None:
    # Per token, the wallets' quantities summed, times the price, rounded half to even at 18
    # places, as the snapshot's Polars arithmetic does: 2 x 5e-18 at 0.1 is 1e-18 (per wallet
    # each would round to 0); 27e-18 at 0.1 is 3e-18 (not cut to 2e-18); 25e-18 at 0.1 is
    # 2e-18 (half to even, not up to 3e-18).
    t, u, v = "0x" + "01" * 20, "0x" + "02" * 20, "0x" + "03" * 20
    balances = pl.DataFrame(
        {"date": [DAY] * 4, "address": [A, B, A, A], "token_address": [t, t, u, v],
         "token_symbol": ["T", "T", "U", "V"], "decimals": [18] * 4,
         "balance": [Decimal(5), Decimal(5), Decimal(27), Decimal(25)],
         "net_change": [Decimal(0)] * 4, "block_number": [32] * 4},
        schema_overrides={"decimals": pl.Int32, "balance": pl.Decimal(38, 0),
                          "net_change": pl.Decimal(38, 0)},
    )  # fmt: skip
    prices = pl.DataFrame(
        {"date": [DAY] * 3, "token_address": [t, u, v], "price": [Decimal("0.1")] * 3},
        schema_overrides={"price": pl.Decimal(38, 18)},
    )
    members = pl.DataFrame({"portfolio_id": ["p", "p"], "address": [A, B]})
    snapshot = portfolio_snapshots_frame(balances, prices, members, days=[DAY], chain_id=1)
    held = holdings_frame(balances, prices, pl.DataFrame(schema=TRANSFERS), WALLETS)
    explained = Explanation("p", "devnet", 1, DAY, Lineage(), held, prices, held.clear())
    assert held["value"].to_list() == [Decimal(0), Decimal("3E-18"), Decimal("2E-18"), Decimal(0)]
    assert explained.total_value == snapshot["total_value"][0] == Decimal("6E-18")


def test_a_whales_holding_is_valued_to_the_last_place_as_the_snapshot_values_it() -> None:
    # 29,999.970792083554910069 ETH at 3,232.38482952: the product has 41 significant digits
    # (...943|4964…, rounded to ...943). Python's default context (28 digits) rounded it to
    # ...94350 first, then half to even gave ...944; and a quantity of 10^15 ETH (34 digits)
    # could not be quantized to 18 places at all.
    whale = 29_999_970792083554910069
    balances = pl.DataFrame(
        {"date": [DAY] * 2, "address": [A, B], "token_address": [NATIVE_TOKEN] * 2,
         "token_symbol": ["ETH"] * 2, "decimals": [18] * 2,
         "balance": [Decimal(whale), Decimal(10**33)],
         "net_change": [Decimal(0)] * 2, "block_number": [32] * 2},
        schema_overrides={"decimals": pl.Int32, "balance": pl.Decimal(38, 0),
                          "net_change": pl.Decimal(38, 0)},
    )  # fmt: skip
    prices = pl.DataFrame(
        {"date": [DAY], "token_address": [NATIVE_TOKEN], "price": [Decimal("3232.38482952")]},
        schema_overrides={"price": pl.Decimal(38, 18)},
    )
    alone = holdings_frame(balances.head(1), prices, pl.DataFrame(schema=TRANSFERS), WALLETS)
    assert alone["value"].to_list() == [Decimal("96971450.474373981003578943")]
    members = pl.DataFrame({"portfolio_id": ["p"], "address": [A]})
    snapshot = portfolio_snapshots_frame(balances.head(1), prices, members, days=[DAY], chain_id=1)
    assert snapshot["total_value"][0] == Decimal("96971450.474373981003578943")
    both = holdings_frame(balances, prices, pl.DataFrame(schema=TRANSFERS), WALLETS)
    explained = Explanation("p", "devnet", 1, DAY, Lineage(), both, prices, both.clear())
    assert both["quantity"].to_list()[1] == Decimal(10**15)
    # 10^15 x 3,232.38482952 + the whale's value: 37 digits, none lost
    assert explained.total_value == Decimal("3232384829616971450.474373981003578943")
