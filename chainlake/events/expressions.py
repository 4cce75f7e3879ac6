"""Alert expressions (Ekko's `polars_dsl` alerts): a small grammar compiled to Polars expressions, never `eval`.

    balance < 10 and token_symbol == "AVAX"
    abs(drawdown) >= 0.2 or var_95 > 0.05
    wallet_balances.filter(pl.col("balance") < 10.0)      # the seed's spelling is accepted

Grammar (precedence low to high)::

    expr       := or
    or         := and (("or" | "|") and)*
    and        := not (("and" | "&") not)*
    not        := ("not" | "~") not | comparison
    comparison := sum [("<" | "<=" | ">" | ">=" | "==" | "!=") sum]
                | sum ["not"] "in" "(" literal ("," literal)* ")"
                | sum "is" ["not"] "null"
    sum        := product (("+" | "-") product)*
    product    := unary (("*" | "/" | "%") unary)*
    unary      := "-" unary | primary
    primary    := number | string | "true" | "false" | column | call | "(" expr ")"
    column     := identifier | col("name") | pl.col("name")
    call       := abs(expr) | round(expr, integer) | lower(expr) | upper(expr)
                | min(expr, expr) | max(expr, expr) | coalesce(expr, expr)

Anything else (attribute access, subscripts, lambdas, names beginning with an underscore,
unknown functions or columns) is rejected with an `ExpressionError` that quotes the expression
and points at the offending part.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import polars as pl

FUNCTIONS: dict[str, int] = {
    "abs": 1,
    "round": 2,
    "lower": 1,
    "upper": 1,
    "min": 2,
    "max": 2,
    "coalesce": 2,
}
KEYWORDS = {"and", "or", "not", "in", "is", "null", "true", "false"}
MAX_LENGTH = 2000
MAX_DEPTH = 50


class ExpressionError(ValueError):
    """An expression is outside the grammar; `position` is the 0-based offset at fault."""

    def __init__(self, message: str, source: str, position: int, length: int = 1) -> None:
        self.reason = message
        self.source = source
        self.position = position
        pointer = " " * position + "^" * max(1, min(length, max(1, len(source) - position)))
        super().__init__(f"{message} (at column {position + 1})\n    {source}\n    {pointer}")


@dataclass(frozen=True)
class Token:
    """One lexical token of an expression, with its position for error messages."""

    kind: str  # number, string, name, op, end
    text: str
    pos: int


_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><=|>=|==|!=|<>|[<>()+\-*/%,.&|~])
    """,
    re.VERBOSE,
)


def tokenize(source: str) -> list[Token]:
    """Split an expression into tokens (ending with an `end` token)."""
    tokens: list[Token] = []
    pos = 0
    while pos < len(source):
        m = _TOKEN_RE.match(source, pos)
        if not m:
            raise ExpressionError(f"unexpected character {source[pos]!r}", source, pos)
        kind = m.lastgroup or ""
        if kind != "ws":
            tokens.append(Token(kind, m.group(), pos))
        pos = m.end()
    tokens.append(Token("end", "", len(source)))
    return tokens


def _unquote(text: str) -> str:
    body = text[1:-1]
    return re.sub(r"\\(.)", r"\1", body)


@dataclass(frozen=True)
class Compiled:
    """A parsed expression: its Polars expression and the columns it reads."""

    source: str
    expr: pl.Expr
    columns: frozenset[str]


class _Parser:
    def __init__(
        self, source: str, columns: Iterable[str] | None, frame_names: Iterable[str]
    ) -> None:
        self.source = source
        self.tokens = tokenize(source)
        self.i = 0
        self.columns = None if columns is None else set(columns)
        self.frame_names = set(frame_names)
        self.used: set[str] = set()
        self.depth = 0

    # -- token helpers
    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def peek(self, k: int = 1) -> Token:
        return self.tokens[min(self.i + k, len(self.tokens) - 1)]

    def error(self, message: str, tok: Token | None = None) -> ExpressionError:
        t = tok or self.tok
        return ExpressionError(message, self.source, t.pos, max(1, len(t.text)))

    def accept(self, *texts: str) -> Token | None:
        t = self.tok
        if t.kind in ("op", "name") and t.text in texts:
            self.i += 1
            return t
        return None

    def expect(self, text: str) -> Token:
        t = self.accept(text)
        if t is None:
            found = repr(self.tok.text) if self.tok.kind != "end" else "the end"
            raise self.error(f"expected {text!r}, found {found}")
        return t

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error("expression nested too deeply")

    # -- grammar
    def parse(self) -> pl.Expr:
        if not self.source.strip():
            raise ExpressionError("empty expression", self.source, 0)
        if len(self.source) > MAX_LENGTH:
            raise ExpressionError(f"longer than {MAX_LENGTH} characters", self.source, MAX_LENGTH)
        expr = self.unwrap_filter()
        if expr is None:
            expr = self.expr()
        if self.tok.kind != "end":
            raise self.error(f"unexpected {self.tok.text!r}")
        return expr

    def unwrap_filter(self) -> pl.Expr | None:
        """`<frame>.filter(<expr>)`, the seed's spelling, for a known frame name."""
        t = self.tok
        if not (
            t.kind == "name"
            and self.peek().text == "."
            and self.peek(2).text == "filter"
            and self.peek(3).text == "("
        ):
            return None
        if t.text not in self.frame_names:
            raise self.error(
                f"unknown table {t.text!r}"
                + (
                    f" (this alert reads {', '.join(sorted(self.frame_names))})"
                    if self.frame_names
                    else ""
                )
            )
        self.i += 4
        expr = self.expr()
        self.expect(")")
        return expr

    def expr(self) -> pl.Expr:
        self.enter()
        try:
            return self.or_()
        finally:
            self.depth -= 1

    def or_(self) -> pl.Expr:
        left = self.and_()
        while self.accept("or", "|"):
            left = left | self.and_()
        return left

    def and_(self) -> pl.Expr:
        left = self.not_()
        while self.accept("and", "&"):
            left = left & self.not_()
        return left

    def not_(self) -> pl.Expr:
        if self.accept("not", "~"):
            self.enter()
            try:
                return ~self.not_()
            finally:
                self.depth -= 1
        return self.comparison()

    def comparison(self) -> pl.Expr:
        left = self.sum_()
        t = self.tok
        ops: dict[str, Callable[[pl.Expr, pl.Expr], pl.Expr]] = {
            "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
            ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
            "==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<>": lambda a, b: a != b,
        }  # fmt: skip
        if t.kind == "op" and t.text in ops:
            self.i += 1
            return ops[t.text](left, self.sum_())
        if self.accept("is"):
            negate = self.accept("not") is not None
            self.expect("null")
            return left.is_not_null() if negate else left.is_null()
        negate = False
        if t.text == "not" and self.peek().text == "in":
            self.i += 1
            negate = True
        if self.accept("in"):
            self.expect("(")
            values = [self.literal()]
            while self.accept(","):
                values.append(self.literal())
            self.expect(")")
            out = left.is_in(values)
            return ~out if negate else out
        return left

    def literal(self) -> object:
        t = self.tok
        sign = 1
        if t.text == "-" and self.peek().kind == "number":
            self.i += 1
            sign = -1
            t = self.tok
        if t.kind == "number":
            self.i += 1
            return sign * (float(t.text) if any(c in t.text for c in ".eE") else int(t.text))
        if t.kind == "string" and sign == 1:
            self.i += 1
            return _unquote(t.text)
        if t.kind == "name" and t.text in ("true", "false") and sign == 1:
            self.i += 1
            return t.text == "true"
        raise self.error("expected a number, a string, true or false")

    def sum_(self) -> pl.Expr:
        left = self.product()
        while True:
            if self.accept("+"):
                left = left + self.product()
            elif self.accept("-"):
                left = left - self.product()
            else:
                return left

    def product(self) -> pl.Expr:
        left = self.unary()
        while True:
            if self.accept("*"):
                left = left * self.unary()
            elif self.accept("/"):
                left = left / self.unary()
            elif self.accept("%"):
                left = left % self.unary()
            else:
                return left

    def unary(self) -> pl.Expr:
        if self.accept("-"):
            self.enter()
            try:
                return -self.unary()
            finally:
                self.depth -= 1
        return self.primary()

    def column(self, name: str, tok: Token) -> pl.Expr:
        if name.startswith("_"):
            raise self.error(f"name {name!r} is not allowed", tok)
        if self.columns is not None and name not in self.columns:
            raise self.error(
                f"unknown column {name!r} (columns: {', '.join(sorted(self.columns))})", tok
            )
        self.used.add(name)
        return pl.col(name)

    def primary(self) -> pl.Expr:
        t = self.tok
        if t.kind == "number":
            self.i += 1
            return pl.lit(float(t.text) if any(c in t.text for c in ".eE") else int(t.text))
        if t.kind == "string":
            self.i += 1
            return pl.lit(_unquote(t.text))
        if self.accept("("):
            e = self.expr()
            self.expect(")")
            return e
        if t.kind != "name":
            found = "the end" if t.kind == "end" else repr(t.text)
            raise self.error(f"expected a value, found {found}")
        name = t.text
        if name.startswith("_"):
            what = "call to" if self.peek().text == "(" else "name"
            raise self.error(f"{what} {name!r} is not allowed", t)
        if name in ("true", "false"):
            self.i += 1
            return pl.lit(name == "true")
        if name in KEYWORDS:
            raise self.error(f"unexpected keyword {name!r}")
        # pl.col("x"): the only dotted name in the grammar
        if name == "pl" and self.peek().text == ".":
            attr = self.peek(2)
            if attr.text != "col":
                raise self.error(f"'pl.{attr.text}' is not allowed (only pl.col)", attr)
            self.i += 2
            t = self.tok
            name = "col"
        self.i += 1
        if self.tok.text == ".":
            nxt = self.peek()
            raise self.error(f"attribute access '.{nxt.text}' is not allowed", nxt)
        if self.tok.text == "(":
            return self.call(name, t)
        return self.column(name, t)

    def call(self, name: str, tok: Token) -> pl.Expr:
        if name == "col":
            self.expect("(")
            arg = self.tok
            if arg.kind != "string":
                raise self.error("col() takes a column name in quotes", arg)
            self.i += 1
            self.expect(")")
            return self.column(_unquote(arg.text), arg)
        if name not in FUNCTIONS:
            raise self.error(
                f"call to {name!r} is not allowed (functions: col, {', '.join(FUNCTIONS)})", tok
            )
        self.expect("(")
        if name == "round":
            x = self.expr()
            self.expect(",")
            digits = self.tok
            if digits.kind != "number" or not digits.text.isdigit():
                raise self.error("round() takes a whole number of digits", digits)
            self.i += 1
            self.expect(")")
            return x.round(int(digits.text))
        args = [self.expr()]
        while self.accept(","):
            args.append(self.expr())
        self.expect(")")
        if len(args) != FUNCTIONS[name]:
            raise self.error(f"{name}() takes {FUNCTIONS[name]} argument(s), got {len(args)}", tok)
        if name == "abs":
            return args[0].abs()
        if name == "lower":
            return args[0].str.to_lowercase()
        if name == "upper":
            return args[0].str.to_uppercase()
        if name == "min":
            return pl.min_horizontal(args)
        if name == "max":
            return pl.max_horizontal(args)
        return pl.coalesce(args)


def compile_expression(
    source: str,
    *,
    columns: Iterable[str] | None = None,
    frame_names: Iterable[str] = (),
) -> Compiled:
    """Parse `source` into a Polars expression; `columns`, when given, are the only names allowed.

    Raises ExpressionError naming and pointing at the first part outside the grammar.
    """
    if not isinstance(source, str):
        raise ExpressionError("an expression must be text", str(source), 0)
    p = _Parser(source, columns, frame_names)
    expr = p.parse()
    return Compiled(source, expr, frozenset(p.used))


def apply_expression(frame: pl.DataFrame, compiled: Compiled) -> pl.DataFrame:
    """The rows of `frame` for which the expression holds (nulls count as not holding)."""
    missing = sorted(compiled.columns - set(frame.columns))
    if missing:
        raise ExpressionError(
            f"the table lacks column(s) {', '.join(missing)}",
            compiled.source,
            0,
            len(compiled.source),
        )
    return frame.filter(compiled.expr.fill_null(False))
