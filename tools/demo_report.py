"""The demo's report: one self-contained HTML page of the portfolios over the demo's days.

Per portfolio, from the ClickHouse tables of `analytics/portfolio_snapshots` and
`analytics/risk_metrics`: the value at each day's close, the daily returns, the drawdown (the
fall of the return index, the daily returns compounded, from its peak so far within the demo's
days: flows in and out are not gains or losses) and the 30-day
historical VaR 95 % as the asset stored it (null below the minimum of daily returns, which
the page then states). The charts are the SVGs
of `chainlake.metadata` (the ones the Dagster UI shows), inlined as data URIs, so the file
opens anywhere without a network.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from pathlib import Path
from typing import Any

import polars as pl

from chainlake.metadata import line_chart

RISK_WINDOW = 30
_IMAGE = re.compile(r"!\[[^\]]*\]\((data:image/svg\+xml;base64,[A-Za-z0-9+/=]+)\)")


def clickhouse_store() -> Any:
    """The code location's ClickHouse store, its EnvVars resolved as a run would."""
    import dagster as dg

    from pipelines.resources import clickhouse_resource

    with dg.build_resources({"clickhouse": clickhouse_resource()}) as resources:
        return resources.clickhouse


def read_portfolios(store: Any, days: list[dt.date]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(snapshots, risk) of `days`: (portfolio_id, date, total_value, daily_return, drawdown of
    the return index) and (portfolio_id, date, var_95, observations) of the 30-day window."""
    params = {"first": days[0], "last": days[-1]}
    with store.session() as ch:
        snapshots = ch.query(
            "SELECT portfolio_id, date, toFloat64(total_value) AS total_value, daily_return "
            "FROM `portfolio_snapshots` WHERE date BETWEEN {first:Date} AND {last:Date} "
            "ORDER BY portfolio_id, date",
            params,
        )
        risk = ch.query(
            "SELECT portfolio_id, date, var_95, observations FROM `risk_metrics` "
            "WHERE window_days = {w:Int32} AND date BETWEEN {first:Date} AND {last:Date} "
            "ORDER BY portfolio_id, date",
            {**params, "w": RISK_WINDOW},
        )
    # The return index (daily returns compounded, so deposits and withdrawals do not count as
    # gains or losses) and its fall from its running peak.
    wealth = (1.0 + pl.col("daily_return").fill_null(0.0)).cum_prod().over("portfolio_id")
    snapshots = (
        snapshots.with_columns(wealth.alias("_wealth"))
        .with_columns(
            (pl.col("_wealth") / pl.col("_wealth").cum_max().over("portfolio_id") - 1.0).alias(
                "drawdown"
            )
        )
        .drop("_wealth")
    )
    return snapshots, risk


def min_observations(window: int = RISK_WINDOW) -> int:
    """The fewest daily returns a `window`-day risk figure needs (portfolios.yaml
    `risk.min_observations`, else the default)."""
    from chainlake import risk
    from chainlake.config import load_chains
    from chainlake.portfolios import load_portfolios

    configured = load_portfolios(load_chains()).risk.min_observations
    return {**risk.DEFAULT_MIN_OBSERVATIONS, **configured}[window]


def _image(chart: Any) -> str:
    """The <img> of a `line_chart` (its Markdown holds the SVG as a data URI)."""
    found = _IMAGE.search(str(chart.value))
    if found is None:
        return ""
    return f'<img alt="chart" src="{found.group(1)}">'


def _series(frame: pl.DataFrame, column: str, days: list[dt.date]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for (portfolio,), rows in frame.group_by(["portfolio_id"], maintain_order=True):
        by_day = dict(zip(rows["date"].to_list(), rows[column].to_list(), strict=True))
        out[str(portfolio)] = [(d.isoformat(), by_day.get(d)) for d in days]
    return out


def render(snapshots: pl.DataFrame, risk: pl.DataFrame, days: list[dt.date], minimum: int) -> str:
    """The report's HTML; `minimum`: the daily returns a VaR figure needs."""
    values = _series(snapshots, "total_value", days)
    drawdowns = _series(snapshots, "drawdown", days)
    returns = _series(snapshots, "daily_return", days)
    var = _series(risk, "var_95", days)
    sections = []
    for portfolio, points in values.items():
        last = next((v for _, v in reversed(points) if v is not None), None)
        worst = min((v for _, v in drawdowns.get(portfolio, []) if v is not None), default=None)
        chart = line_chart(
            {portfolio: points}, title=f"{portfolio}: value at close (USD)", value_format="{:,.0f}"
        )
        sections.append(
            f"<section><h2>{html.escape(portfolio)}</h2>"
            f"<p>last value {'—' if last is None else f'{last:,.2f}'} USD; worst drawdown over "
            f"these days {'—' if worst is None else f'{worst * 100:.2f} %'}</p>"
            f"{_image(chart)}</section>"
        )
    drawdown_chart = line_chart(
        drawdowns, title="Drawdown of the return index", value_format="{:.2%}"
    )
    returns_chart = line_chart(returns, title="Daily return", value_format="{:.2%}")
    if risk["var_95"].is_not_null().any():
        var_section = _image(
            line_chart(var, title=f"VaR 95 % over {RISK_WINDOW} days", value_format="{:.2%}")
        )
    else:
        seen = max(risk["observations"].drop_nulls().to_list(), default=0)
        var_section = (
            f"<p>No VaR yet: a {RISK_WINDOW}-day figure needs at least {minimum} daily returns "
            f"(portfolios.yaml <code>risk.min_observations</code>) and these days give {seen}. "
            f"<code>DEMO_DAYS={minimum + 1}</code> or more shows it.</p>"
        )
    table = ["<tr><th>portfolio</th><th>day</th><th>value (USD)</th><th>daily return</th>"
             "<th>drawdown</th><th>VaR 95 %</th><th>returns in window</th></tr>"]  # fmt: skip
    risk_by = {(r["portfolio_id"], r["date"]): r for r in risk.iter_rows(named=True)}
    for r in snapshots.iter_rows(named=True):
        k = risk_by.get((r["portfolio_id"], r["date"]), {})
        cells = [
            r["portfolio_id"],
            r["date"].isoformat(),
            f"{r['total_value']:,.2f}",
            _pct(r["daily_return"]),
            _pct(r["drawdown"]),
            _pct(k.get("var_95")),
            "" if k.get("observations") is None else str(k["observations"]),
        ]
        table.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>chainlake demo: portfolios {days[0]} .. {days[-1]}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; max-width: 1100px; }}
section {{ display: inline-block; vertical-align: top; margin: 0 1.5em 1em 0; }}
table {{ border-collapse: collapse; font-size: 13px; margin-top: 1em; }}
td, th {{ border-bottom: 1px solid #ddd; padding: 3px 10px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
</style></head><body>
<h1>Portfolios, {days[0]} .. {days[-1]}</h1>
<p>The demo's devnet: {len(days)} days ending {days[-1]} (the last one up to the demo's start).
Values at each day's close; daily returns of the holdings (flows in and out excluded);
drawdown of those returns compounded, from their peak within these days; historical
VaR 95 % of the daily returns over {RISK_WINDOW} days as <code>analytics/risk_metrics</code>
stores it (a loss is negative; empty where it is null).</p>
{"".join(sections)}
<section><h2>Drawdown</h2>{_image(drawdown_chart)}</section>
<section><h2>Daily returns</h2>{_image(returns_chart)}</section>
<section><h2>VaR</h2>{var_section}</section>
<h2>Per day</h2>
<table>{"".join(table)}</table>
</body></html>
"""


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v * 100:+.2f} %"


def write_report(path: Path, days: list[dt.date]) -> Path:
    """Write the report of `days` to `path`; the path."""
    snapshots, risk = read_portfolios(clickhouse_store(), days)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(snapshots, risk, days, min_observations()), encoding="utf-8")
    return path
