"""`chainlake explain PORTFOLIO DATE`: a snapshot's numbers explained down to their blocks.

chainlake explain trading 2026-11-04                    # the current row, as tables
chainlake explain trading 2026-11-04 --format json      # the same as one JSON document
chainlake explain trading 2026-11-04 --lineage 'balances=3,prices=5,token_transfers=2,native_transfers=2,blocks=17-32'

Reads the portfolio's `portfolio_snapshots` row of the day (and the day's `risk_metrics` rows)
from ClickHouse, takes the lineage the row recorded (the Delta versions it read and the
chain-day's blocks) and reads by Delta time travel, at those versions: the holdings (per
wallet and token: closing balance, price, value), the price feed answers (round id, block) and
the transfers that moved each balance that day. A later re-materialisation replaces the row
but not the versions: `--lineage` takes the lineage text an older row recorded (each
materialisation of analytics/portfolio_snapshots shows it in the UI, and this command prints
it) and explains that row without reading ClickHouse.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import click
import polars as pl

from cli.commands.options import delta_root_option, delta_store
from cli.commands.sql import _clickhouse, _first_line, _text, render_table

if TYPE_CHECKING:
    from chainlake.explain import Explanation


def _snapshot_rows(
    portfolio_id: str, chain_id: int, day: dt.date
) -> tuple[dict[str, Any], pl.DataFrame]:
    """The portfolio's snapshot row of the day and the day's risk rows, from ClickHouse.

    Raises:
        click.ClickException: No analytics store, no table, or no row of that day.
    """
    ch = _clickhouse()
    where = ch.describe()
    if ch.embedded and not ch.data_dir().exists():
        raise click.ClickException(
            f"no ClickHouse analytics at {ch.data_dir()} (CLICKHOUSE_PATH, or CLICKHOUSE_URL for "
            "a server): materialise analytics/portfolio_snapshots first"
        )
    params = {"p": portfolio_id, "chain": chain_id, "day": day}
    with ch.session() as session:
        present = set(
            session.query("SELECT name FROM system.tables WHERE database = currentDatabase()")[
                "name"
            ].to_list()
        )
        if "portfolio_snapshots" not in present:
            raise click.ClickException(
                f"no portfolio_snapshots table in ClickHouse ({where}): materialise "
                "analytics/portfolio_snapshots first"
            )
        snaps = session.query(
            "SELECT * FROM `portfolio_snapshots` WHERE portfolio_id = {p:String} "
            "AND chain_id = {chain:Int64} AND date = {day:Date}",
            params,
        )
        risk = (
            session.query(
                "SELECT * FROM `risk_metrics` WHERE portfolio_id = {p:String} "
                "AND chain_id = {chain:Int64} AND date = {day:Date} ORDER BY window_days",
                params,
            )
            if "risk_metrics" in present
            else pl.DataFrame()
        )
    if snaps.height == 0:
        raise click.ClickException(
            f"no snapshot of portfolio {portfolio_id!r} on {day} in ClickHouse ({where}): "
            "materialise analytics/portfolio_snapshots for that day, or pass the --lineage an "
            "earlier materialisation recorded"
        )
    return snaps.row(0, named=True), risk


def _json_value(v: Any) -> Any:
    """Numbers that JSON holds exactly stay numbers; Decimals (amounts, prices) become exact
    strings, dates ISO strings."""
    if isinstance(v, (Decimal, dt.date, dt.datetime)):
        return _text(v)
    if isinstance(v, list):
        return [_json_value(x) for x in v]
    if isinstance(v, dict):
        return {k: _json_value(x) for k, x in v.items()}
    return v


def _records(frame: pl.DataFrame) -> list[dict[str, Any]]:
    return [{k: _json_value(v) for k, v in r.items()} for r in frame.to_dicts()]


def _table(title: str, frame: pl.DataFrame, columns: Sequence[str] | None = None) -> str:
    frame = frame.select(list(columns)) if columns else frame
    return f"{title}\n" + render_table(frame.columns, frame.rows(), max_width=66)


def _blocks(lin: Any) -> str:
    if lin.first_block is None or lin.last_block is None:
        return "no block"
    return f"blocks {lin.first_block}–{lin.last_block} ({lin.last_block - lin.first_block + 1})"


def full_lineage_text(explanation: Explanation, others: Sequence[Explanation]) -> str:
    """What `--lineage` takes: the home chain's lineage, then `; <chain>: <lineage>` for each
    other chain of a multi-chain portfolio."""
    from chainlake.lineage import linked_text

    linked = linked_text({o.chain: o.lineage for o in others})
    return explanation.lineage.to_text() + (f"; {linked}" if linked else "")


def render_text(
    doc: Mapping[str, Any],
    explanation: Explanation,
    risk: pl.DataFrame,
    others: Sequence[Explanation] = (),
) -> str:
    """The explanation as readable tables; `others`: the other chains of a multi-chain
    portfolio, each with its own tables."""
    lin = explanation.lineage
    out = [
        f"portfolio {explanation.portfolio_id} on {explanation.chain} (chain "
        f"{explanation.chain_id}), {explanation.day}: {_blocks(lin)}",
        f"lineage: {lin.to_text()}",
    ]
    out += [
        f"and on {o.chain} (chain {o.chain_id}): {_blocks(o.lineage)}; lineage: "
        f"{o.lineage.to_text()}"
        for o in others
    ]
    from chainlake.explain import combined_value

    worth = combined_value([explanation, *others])
    where = f" on {1 + len(others)} chains" if others else ""
    snapshot = doc.get("snapshot")
    if snapshot is not None:
        out.append(
            f"snapshot: total_value {snapshot['total_value']}, daily_return "
            f"{snapshot['daily_return']}, total_return {snapshot['total_return']}; the holdings "
            f"below{where} at these versions are worth {worth}"
            + (
                " (equal)"
                if worth == Decimal(snapshot["total_value"])
                else " (differs: have the portfolio's wallets in portfolios.yaml changed since?)"
            )
        )
    else:
        out.append(
            f"row as of the lineage given (the current row is not read); its holdings{where} "
            f"are worth {worth}"
        )
    for one in (explanation, *others):
        out.append("")
        if others:
            out.append(f"== {one.chain} (chain {one.chain_id})")
        out += _chain_tables(one)
    if risk.height:
        cols = [c for c in ("window_days", "observations", "var_95", "cvar_95", "sharpe_ratio",
                            "sortino_ratio", "max_drawdown", "volatility", "correlation_score",
                            "prices_version") if c in risk.columns]  # fmt: skip
        out.append(_table("Risk of the day (risk_metrics)", risk, cols))
    if snapshot is not None:
        out.append(
            "to explain this row after a later re-materialisation: chainlake explain "
            f"{explanation.portfolio_id} {explanation.day} --lineage "
            f"'{full_lineage_text(explanation, others)}'"
        )
    return "\n".join(out).rstrip() + "\n"


def _chain_tables(explanation: Explanation) -> list[str]:
    """Holdings, price feed answers and transfers of one chain-day."""
    v = explanation.lineage.versions()
    out: list[str] = []
    out.append(
        _table(
            f"Holdings (balances v{v['balances']}, token_prices v{v['token_prices']})",
            explanation.holdings,
            ["wallet", "token_symbol", "balance", "quantity", "price", "value", "net_change",
             "transfers"],
        )
    )  # fmt: skip
    out.append(
        _table(
            f"Price feed answers (token_prices v{v['token_prices']})",
            explanation.prices,
            ["token_symbol", "price_feed", "round_id", "answer", "price", "block_number",
             "source", "updated_at"],
        )
    )  # fmt: skip
    out.append(
        _table(
            f"Transfers that moved the balances (token_transfers v{v['token_transfers']}, "
            f"native_transfers v{v['native_transfers']})",
            explanation.transfers,
            ["block_number", "transaction_hash", "log_index", "wallet", "token_symbol",
             "direction", "counterparty", "amount", "fee"],
        )
    )  # fmt: skip
    return out


@click.command()
@click.argument("portfolio")
@click.argument("date", type=click.DateTime(formats=["%Y-%m-%d"]), metavar="DATE")
@click.option(
    "--lineage",
    "lineage_text",
    metavar="TEXT",
    default=None,
    help="Explain the row that recorded this lineage (balances=N,prices=N,token_transfers=N,"
    "native_transfers=N,blocks=FIRST-LAST: printed by this command and shown under each "
    "materialisation) instead of the current row; ClickHouse is not read.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="table: readable tables; json: one JSON document (amounts as exact strings).",
)
@delta_root_option
def explain(
    portfolio: str, date: dt.datetime, lineage_text: str | None, fmt: str, delta_root: str | None
) -> None:
    """Explain PORTFOLIO's snapshot of DATE (YYYY-MM-DD) down to its blocks.

    Lists the holdings (closing balance, price, value per wallet and token), the price feed
    answers (round id, block) and the transfers that moved each balance that day, read by
    Delta time travel at the versions the row recorded, and the day's block range.
    """
    from chainlake.config import ConfigError, load_chains
    from chainlake.explain import ExplainError, combined_value, explain_day
    from chainlake.lineage import Lineage, parse_linked
    from chainlake.portfolios import load_portfolios, portfolios_config_path

    day = date.date()
    try:
        chains = load_chains()
        book = load_portfolios(chains)
    except ConfigError as e:
        raise click.ClickException(_first_line(e)) from None
    found = [p for p in book.portfolios if p.id == portfolio]
    if not found:
        known = ", ".join(sorted(p.id for p in book.portfolios)) or "none"
        raise click.ClickException(
            f"unknown portfolio {portfolio!r}: {portfolios_config_path()} has {known}"
        )
    p = found[0]
    assert p.chain is not None  # set by load_portfolios
    chain = chains[p.chain]
    spans = book.chains_of(p)

    def wallets_on(name: str) -> dict[str, str]:
        names = {w.address: w.name for w in book.wallets if w.chain == name}
        return {a: names.get(a, a) for c, a in book.members[p.id] if c == name}

    snapshot: dict[str, Any] | None = None
    risk = pl.DataFrame()
    try:
        if lineage_text is not None:
            home_text, _, rest = lineage_text.partition(";")
            lineage = Lineage.parse(home_text)
            linked = parse_linked(rest)
        else:
            row, risk = _snapshot_rows(p.id, chain.chain_id, day)
            snapshot = {k: _json_value(v) for k, v in row.items()}
            lineage = Lineage.from_row(row)
            linked = parse_linked(row.get("linked_lineage"))
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--lineage") from None
    # every other chain the portfolio held wallets on that day must have its lineage
    missing = [c for c in spans[1:] if c not in linked and day >= chains[c].start_date]
    if missing:
        raise click.ClickException(
            f"portfolio {p.id!r} holds wallets on {', '.join(missing)} too, and the "
            f"{'lineage given' if lineage_text is not None else 'row'} records none of "
            f"{'its' if len(missing) == 1 else 'their'} inputs (give `; <chain>: <lineage>` "
            "for each, or re-materialise the day)"
        )
    store = delta_store(delta_root)
    try:
        explanation = explain_day(
            store, chain, day, portfolio_id=p.id, wallets=wallets_on(chain.name), lineage=lineage
        )
        others = [
            explain_day(store, chains[c], day, portfolio_id=p.id, wallets=wallets_on(c),
                        lineage=linked[c])
            for c in spans[1:]
            if c in linked
        ]  # fmt: skip
    except ExplainError as e:
        raise click.ClickException(str(e)) from None
    doc: dict[str, Any] = {
        "portfolio_id": p.id,
        "chain": chain.name,
        "chain_id": chain.chain_id,
        "date": day.isoformat(),
        "lineage": lineage.as_row(),
        "lineage_text": lineage.to_text(),
        "snapshot": snapshot,
        "holdings_value": str(explanation.total_value),
        "holdings": _records(explanation.holdings),
        "prices": _records(explanation.prices),
        "transfers": _records(explanation.transfers),
        "risk": _records(risk),
        # a multi-chain portfolio's other chains, each read at its own lineage
        "other_chains": [
            {
                "chain": o.chain,
                "chain_id": o.chain_id,
                "lineage": o.lineage.as_row(),
                "lineage_text": o.lineage.to_text(),
                "holdings_value": str(o.total_value),
                "holdings": _records(o.holdings),
                "prices": _records(o.prices),
                "transfers": _records(o.transfers),
            }
            for o in others
        ],
        "holdings_value_all_chains": str(combined_value([explanation, *others])),
        "full_lineage_text": full_lineage_text(explanation, others),
    }
    if fmt == "json":
        click.echo(json.dumps(doc, indent=2))
        return
    click.echo(render_text(doc, explanation, risk, others), nl=False)
