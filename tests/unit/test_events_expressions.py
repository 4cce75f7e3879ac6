"""The alert-expression grammar: what it accepts, what it computes, and what it refuses."""

from __future__ import annotations

import polars as pl
import pytest

from chainlake.events.expressions import ExpressionError, apply_expression, compile_expression

BALANCES = pl.DataFrame(
    {
        "wallet_name": ["treasury", "treasury", "hot", "cold"],
        "token_symbol": ["ETH", "USDC", "ETH", "ETH"],
        "balance": [5.0, 2000.0, 12.5, None],
    }
)


def rows(source: str) -> list[str]:
    c = compile_expression(source, columns=BALANCES.columns, frame_names=["wallet_balances"])
    out = apply_expression(BALANCES, c)
    return [f"{r['wallet_name']}/{r['token_symbol']}" for r in out.iter_rows(named=True)]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('balance < 10 and token_symbol == "ETH"', ["treasury/ETH"]),
        # the seed's own spelling, as written in config/portfolios.yaml
        (
            'wallet_balances.filter((pl.col("wallet_name") == "treasury") & '
            '(pl.col("token_symbol") == "ETH") & (pl.col("balance") < 10))',
            ["treasury/ETH"],
        ),
        ("balance >= 10 or wallet_name == 'cold'", ["treasury/USDC", "hot/ETH", "cold/ETH"]),
        ("not (balance > 10)", ["treasury/ETH"]),
        ("balance is null", ["cold/ETH"]),
        ("balance is not null and abs(balance - 10) < 3", ["hot/ETH"]),
        ('token_symbol not in ("ETH")', ["treasury/USDC"]),
        ('lower(token_symbol) in ("usdc", "dai")', ["treasury/USDC"]),
        ("round(balance / 3, 1) == 4.2", ["hot/ETH"]),
        ("max(balance, 100) == 100 and -balance < -6", ["hot/ETH"]),
        ("balance * 2 % 7 == 4 | ~(balance > 1e2)", ["treasury/ETH", "hot/ETH"]),
        ("coalesce(balance, 0) == 0", ["cold/ETH"]),
    ],
)
def test_accepted_expressions(source: str, expected: list[str]) -> None:
    assert rows(source) == expected


@pytest.mark.parametrize(
    ("source", "message", "column"),
    [
        ("__import__('os').system('id')", "call to '__import__' is not allowed", 1),
        ("balance < 10 and __import__('os')", "call to '__import__' is not allowed", 18),
        ("balance.__class__", "attribute access '.__class__' is not allowed", 9),
        ("eval('1')", "call to 'eval' is not allowed", 1),
        ("open('/etc/passwd')", "call to 'open' is not allowed", 1),
        ("pl.read_csv('x')", "'pl.read_csv' is not allowed", 4),
        ("wallet_balances.filter(balance < 1).to_pandas()", "unexpected '.'", 36),
        ("os.filter(1)", "unknown table 'os'", 1),
        ("balance[0]", "unexpected character '['", 8),
        ("lambda: 1", "unexpected character ':'", 7),
        ("balanse < 10", "unknown column 'balanse'", 1),
        ("col(balance) > 1", "col() takes a column name in quotes", 5),
        ("balance <", "expected a value, found the end", 10),
        ("(balance < 1", "expected ')'", 13),
        ("_private > 1", "name '_private' is not allowed", 1),
        ("", "empty expression", 1),
        ("balance < 1 ; 2", "unexpected character ';'", 13),
        ("'a' if balance else 'b'", "unexpected 'if'", 5),
    ],
)
def test_refused_expressions_point_at_the_offending_part(
    source: str, message: str, column: int
) -> None:
    with pytest.raises(ExpressionError) as e:
        compile_expression(source, columns=BALANCES.columns, frame_names=["wallet_balances"])
    assert message in str(e.value)
    assert f"(at column {column})" in str(e.value)
    # the message quotes the expression and puts a caret under the offending part
    lines = str(e.value).splitlines()
    assert lines[1].strip() == source.strip()
    assert lines[2].index("^") - 4 == column - 1


def test_never_evaluates_python() -> None:
    # Would print or raise if anything were evaluated; the grammar refuses it first.
    with pytest.raises(ExpressionError):
        compile_expression("__import__('builtins').exit(3)")
    with pytest.raises(ExpressionError):
        compile_expression("().__class__.__bases__[0].__subclasses__()")


def test_deep_nesting_is_refused() -> None:
    with pytest.raises(ExpressionError, match="nested too deeply"):
        compile_expression("(" * 200 + "1" + ")" * 200)


def test_missing_column_at_evaluation() -> None:
    c = compile_expression("risk > 1")
    with pytest.raises(ExpressionError, match="lacks column"):
        apply_expression(BALANCES, c)
