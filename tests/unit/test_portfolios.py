"""config/portfolios.yaml: validation errors name the entry and the field."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml

from chainlake.config import ChainConfig, ConfigError
from chainlake.portfolios import load_portfolios, parse_portfolios

A1 = "0x" + "a1" * 20
A2 = "0x" + "B2" * 20
A3 = "0x" + "c3" * 20


@pytest.fixture
def chains() -> dict[str, ChainConfig]:
    def chain(name: str, chain_id: int) -> ChainConfig:
        return ChainConfig(
            name=name,
            network=name,
            subnet="local",
            chain_id=chain_id,
            rpc_urls=("http://127.0.0.1:8545",),
            start_date=dt.date(2026, 1, 1),
        )

    return {"devnet": chain("devnet", 31337), "other": chain("other", 5)}


def _doc(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "wallets": [
            {"name": "w1", "address": A1, "chain": "devnet"},
            {"name": "w2", "address": A2, "chain": "devnet", "kind": "contract"},
            {"name": "w3", "address": A1, "chain": "other"},
        ],
        "portfolios": [
            {"id": "p1", "name": "One", "wallets": ["w1", A2]},
            {"id": "p2", "name": "Two", "chain": "other", "wallets": [A1]},
        ],
        "alerts": [
            {
                "name": "a1",
                "query": "tell me",
                "expression": 'wallet_balances.filter(pl.col("balance") > 1)',
            }
        ],
    }
    doc.update(overrides)
    return doc


def test_valid_book(chains: dict[str, ChainConfig]) -> None:
    book = parse_portfolios(_doc(), chains)
    p1, p2 = book.portfolios
    assert p1.chain == "devnet"  # inferred from its wallets
    assert p1.wallets == (A1, A2.lower())
    assert p2.wallets == (A1,)  # the address resolved on the portfolio's chain
    assert [w.name for w in book.tracked_wallets("devnet")] == ["w1", "w2"]
    assert book.portfolio_wallets("devnet").rows() == [("p1", A1), ("p1", A2.lower())]
    assert book.wallets[1].kind == "contract"
    # Ids are stable across loads, so reloading the catalog is idempotent.
    again = parse_portfolios(_doc(), chains)
    assert [w.id for w in again.wallets] == [w.id for w in book.wallets]
    assert len({w.id for w in book.wallets}) == 3


def test_a_portfolio_spans_chains_under_its_home_chain(chains: dict[str, ChainConfig]) -> None:
    doc = _doc()
    # the same address on both chains (w1 and w3), and a contract wallet on the home chain
    doc["portfolios"].append(
        {"id": "both", "name": "Both", "chain": "devnet", "wallets": ["w1", "w3", A2]}
    )
    book = parse_portfolios(doc, chains)
    both = book.portfolios[-1]
    assert both.chain == "devnet"
    assert book.members["both"] == (("devnet", A1), ("other", A1), ("devnet", A2.lower()))
    assert book.chains_of(both) == ["devnet", "other"]
    assert book.linked_chains("devnet") == ["other"]
    assert book.linked_chains("other") == []  # p2 holds wallets on its home chain only
    # the home chain's wallets for the balances it reads itself, every wallet for the value
    assert ("both", A1) in book.portfolio_wallets("devnet").rows()
    assert sorted(book.portfolio_members("devnet").filter(portfolio_id="both").rows()) == [
        ("both", "devnet", A1),
        ("both", "devnet", A2.lower()),
        ("both", "other", A1),
    ]
    assert book.portfolio_members("other").rows() == [("p2", "other", A1)]


@pytest.mark.parametrize(
    ("section", "entry", "expected"),
    [
        (
            "wallets",
            {"name": "bad", "address": "0x1234", "chain": "devnet"},
            "wallets[3] 'bad': field 'address': not a 20-byte hex address",
        ),
        (
            "wallets",
            {"name": "lost", "address": A3, "chain": "mainnet"},
            "wallets[3] 'lost': field 'chain': unknown chain 'mainnet'",
        ),
        (
            "wallets",
            {"name": "w1", "address": A3, "chain": "devnet"},
            "wallets[3] 'w1': field 'name': duplicate wallet name 'w1'",
        ),
        (
            "wallets",
            {"name": "again", "address": A1.upper().replace("0X", "0x"), "chain": "devnet"},
            "wallets[3] 'again': field 'address': duplicate of wallet 'w1'",
        ),
        (
            "portfolios",
            {"id": "p1", "name": "dup", "wallets": ["w1"]},
            "portfolios[2] 'p1': field 'id': duplicate portfolio id 'p1'",
        ),
        (
            "portfolios",
            {"id": "p3", "name": "x", "wallets": ["nobody"]},
            "portfolios[2] 'p3': field 'wallets': unknown wallet 'nobody'",
        ),
        (
            "portfolios",
            {"id": "p3", "name": "x", "wallets": [A3]},
            "portfolios[2] 'p3': field 'wallets': address " + A3 + " is not a wallet",
        ),
        (
            "portfolios",
            {"id": "p3", "name": "x", "wallets": ["w1", "w3"]},
            "portfolios[2] 'p3': field 'chain': its wallets are on chains ['devnet', 'other']; "
            "set 'chain' to its home chain",
        ),
        (
            "portfolios",
            {"id": "p3", "name": "x", "chain": "other", "wallets": ["w1"]},
            "portfolios[2] 'p3': field 'chain': home chain 'other' holds none of its wallets "
            "(they are on ['devnet'])",
        ),
        (
            "portfolios",
            {"id": "p3", "name": "x", "chain": "moon", "wallets": ["w1"]},
            "portfolios[2] 'p3': field 'chain': unknown chain 'moon'",
        ),
        ("portfolios", {"id": "p3", "name": "x", "wallets": [A1]}, "is a wallet on several chains"),
        (
            "portfolios",
            {"id": "p 3", "name": "x", "wallets": ["w1"]},
            "portfolios[2] 'p 3': field 'id'",
        ),
        (
            "portfolios",
            {
                "id": "p3",
                "name": "x",
                "wallets": ["w1"],
                "target_allocation": {"ETH": 0.5, "USDC": 0.4},
            },
            "field 'target_allocation': weights sum to 0.9",
        ),
        (
            "portfolios",
            {"id": "p3", "name": "x", "chain": "devnet", "wallets": ["w1", A1]},
            "a wallet is listed twice",
        ),
        (
            "alerts",
            {"name": "a1", "query": "again"},
            "alerts[1] 'a1': field 'name': duplicate alert name 'a1'",
        ),
        (
            "alerts",
            {"name": "a2", "query": "q", "expression": "wallet_balances.filter("},
            "alerts[1] 'a2': field 'expression': expected a value, found the end",
        ),
        ("alerts", {"name": "a3"}, "alerts[1] 'a3': field 'query': Field required"),
        (
            "wallets",
            {"name": "typo", "adress": A3, "chain": "devnet"},
            "wallets[3] 'typo': field 'adress': Extra inputs are not permitted",
        ),
    ],
)
def test_errors_name_the_entry(
    chains: dict[str, ChainConfig], section: str, entry: dict[str, Any], expected: str
) -> None:
    doc = _doc()
    doc[section] = [*doc[section], entry]
    with pytest.raises(ConfigError) as e:
        parse_portfolios(doc, chains, path="portfolios.yaml")
    assert expected in str(e.value)
    assert str(e.value).startswith("portfolios.yaml: ")


def test_every_problem_is_reported_at_once(chains: dict[str, ChainConfig]) -> None:
    doc = _doc()
    doc["wallets"].append({"name": "bad", "address": "nope", "chain": "devnet"})
    doc["alerts"].append({"name": "a1", "query": "dup"})
    with pytest.raises(ConfigError) as e:
        parse_portfolios(doc, chains, path="portfolios.yaml")
    assert len(str(e.value).splitlines()) == 2


def test_load_file(tmp_path: Path, chains: dict[str, ChainConfig]) -> None:
    with pytest.raises(ConfigError, match=r"absent\.yaml: no such file"):
        load_portfolios(chains, tmp_path / "absent.yaml")
    f = tmp_path / "portfolios.yaml"
    f.write_text(yaml.safe_dump(_doc()))
    assert len(load_portfolios(chains, f).wallets) == 3
    f.write_text("wallets: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_portfolios(chains, f)
    f.write_text("walets: []\n")
    with pytest.raises(ConfigError, match="unknown top-level keys"):
        load_portfolios(chains, f)


def test_example_file_is_valid() -> None:
    root = Path(__file__).resolve().parents[2]
    chains = {
        "devnet": ChainConfig(
            name="devnet",
            network="devnet",
            subnet="local",
            chain_id=31337,
            rpc_urls=("http://127.0.0.1:8545",),
            start_date=dt.date(2026, 1, 1),
        )
    }
    book = load_portfolios(chains, root / "config" / "portfolios.yaml")
    assert {p.id for p in book.portfolios} == {"treasury", "trading"}


def test_alert_outside_the_safe_grammar_is_refused_on_load(
    chains: dict[str, ChainConfig],
) -> None:
    doc = _doc()
    doc["alerts"][0]["expression"] = "__import__('os').system('true')"
    with pytest.raises(ConfigError, match="call to '__import__' is not allowed"):
        parse_portfolios(doc, chains)
