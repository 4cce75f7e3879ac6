"""Alert expressions of portfolios.yaml name columns of the frame they read, checked on load
(a caret under a misspelt name); at run time an alert that fails anyway fails alone."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import polars as pl
import pytest

from assets.analytics.risk_metrics import RiskMetricsModel
from assets.core.balances import BalancesModel
from assets.events.chain_events import wallet_balances_frame
from chainlake.config import ChainConfig, ConfigError
from chainlake.events.alerts import FRAME_COLUMNS, Alert, check_alert_columns, fire_alerts
from chainlake.events.expressions import ExpressionError
from chainlake.portfolios import parse_portfolios
from chainlake.schema import conform, empty, polars_schema

TREASURY = "0x" + "a1" * 20


def test_the_frame_columns_are_the_asset_models_columns() -> None:
    assert FRAME_COLUMNS["risk_metrics"] == tuple(polars_schema(RiskMetricsModel).names())
    no_rows = wallet_balances_frame(empty(BalancesModel), {TREASURY: "treasury"})
    row = {
        "chain_id": 1, "date": dt.date(2026, 1, 1), "address": TREASURY,
        "token_address": "0x" + "e" * 40, "token_symbol": "ETH", "decimals": 18,
        "balance": Decimal(10**18), "net_change": Decimal(0), "block_number": 1,
        "account_type": "eoa", "source": "chain",
    }  # fmt: skip
    frame = pl.DataFrame(
        [row], schema_overrides={"balance": pl.Decimal(38, 0), "net_change": pl.Decimal(38, 0)}
    )
    some_rows = wallet_balances_frame(conform(frame, BalancesModel), {TREASURY: "treasury"})
    assert FRAME_COLUMNS["wallet_balances"] == tuple(no_rows.columns) == tuple(some_rows.columns)


def chains() -> dict[str, ChainConfig]:
    return {
        "devnet": ChainConfig(
            name="devnet", network="devnet", subnet="local", chain_id=31337,
            rpc_urls=("http://127.0.0.1:8545",), start_date=dt.date(2026, 1, 1),
        )
    }  # fmt: skip


def load_alert(expression: str) -> str:
    doc: dict[str, Any] = {
        "wallets": [{"name": "treasury", "address": TREASURY, "chain": "devnet"}],
        "alerts": [{"name": "Low", "query": "q", "expression": expression}],
    }
    with pytest.raises(ConfigError) as err:
        parse_portfolios(doc, chains(), path="portfolios.yaml")
    return str(err.value)


def caret_under(message: str, expression: str, name: str) -> bool:
    """The line after the one quoting `expression` has its caret under `name`."""
    lines = message.splitlines()
    i = next(i for i, line in enumerate(lines) if line.endswith(expression))
    start = len(lines[i]) - len(expression)
    pointer = lines[i + 1]
    at = pointer.index("^")
    return at == start + expression.index(f'"{name}"') and pointer[at:].strip() == "^" * (
        len(name) + 2
    )


def test_a_misspelt_balance_column_is_refused_on_load_with_a_caret() -> None:
    expression = 'wallet_balances.filter(pl.col("balanse") < 10)'
    message = load_alert(expression)
    assert message.startswith("portfolios.yaml: alerts[0] 'Low': field 'expression': ")
    assert "unknown column 'balanse' (columns: account_type, address, balance, " in message
    assert caret_under(message, expression, "balanse"), message


@pytest.mark.parametrize(
    ("expression", "name"),
    [
        ('risk_metrics.filter(pl.col("max_drawdwn") < -0.2)', "max_drawdwn"),
        # a column of the other frame: the alert would never fire
        ('wallet_balances.filter(pl.col("max_drawdown") < -0.2)', "max_drawdown"),
        (
            'balances.filter((pl.col("wallet_name") == "treasury") & (pl.col("sharpe") > 1))',
            "sharpe",
        ),
        # bare expressions read whichever frame has their columns: one must have them all
        ('(pl.col("balance") < 10) & (pl.col("max_drawdown") < 0)', "max_drawdown"),
        ('pl.col("balanse") < 10', "balanse"),
    ],
)
def test_columns_not_in_the_frame_are_refused(expression: str, name: str) -> None:
    message = load_alert(expression)
    assert f"unknown column {name!r}" in message or f"column {name!r}" in message, message
    assert caret_under(message, expression, name), message


@pytest.mark.parametrize(
    "expression",
    [
        'wallet_balances.filter((pl.col("wallet_name") == "treasury") & (pl.col("balance") < 10))',
        'risk_metrics.filter((pl.col("window_days") == 30) & (pl.col("max_drawdown") < -0.2))',
        'pl.col("volatility") > 2',
        'pl.col("balance_raw") == "0"',
    ],
)
def test_columns_of_the_frame_pass(expression: str) -> None:
    check_alert_columns(expression)


def test_a_failing_alert_fails_alone() -> None:
    frame = pl.DataFrame({"wallet_name": ["treasury"], "balance": [4.0]})
    alerts = [
        # passes every load check, fails when run: a text column compared with a number
        Alert("bad", "Bad", 'wallet_balances.filter(pl.col("wallet_name") > 5)'),
        Alert("good", "Good", 'wallet_balances.filter(pl.col("balance") < 10)'),
    ]
    errors: dict[str, str] = {}
    events = fire_alerts(
        alerts, "wallet_balances", frame, chain_id=1, day=dt.date(2026, 1, 1), errors=errors
    )
    assert [e["alert_id"] for e in events] == ["good"]
    assert list(errors) == ["Bad"] and "cannot compare string with numeric" in errors["Bad"]
    # without somewhere to put the errors, the first one is raised as before
    with pytest.raises(pl.exceptions.ComputeError):
        fire_alerts(alerts, "wallet_balances", frame, chain_id=1, day=dt.date(2026, 1, 1))


def test_check_alert_columns_raises_expression_errors() -> None:
    with pytest.raises(ExpressionError):
        check_alert_columns('risk_metrics.filter(pl.col("nope") > 1)')
