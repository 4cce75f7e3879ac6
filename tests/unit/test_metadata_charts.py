"""The small charts in materialisation metadata: valid SVG images inline in Markdown."""

from __future__ import annotations

import base64
import datetime as dt
import re
import xml.etree.ElementTree as ET

from chainlake.metadata import bar_chart, line_chart, sparkline

SVG = "{http://www.w3.org/2000/svg}"


def _svg(markdown: str) -> ET.Element:
    m = re.search(r"\]\(data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)\)", markdown)
    assert m, markdown[:200]
    return ET.fromstring(base64.b64decode(m.group(1)))


def test_sparkline_scales_to_min_and_max_and_leaves_gaps() -> None:
    assert sparkline([1, 2, 3]) == "▁▅█"
    assert sparkline([5, None, float("nan"), 5]) == "▁  ▁"
    assert sparkline([]) == ""


def test_line_chart_draws_each_series_and_breaks_at_missing_values() -> None:
    days = [dt.date(2026, 11, d).isoformat() for d in range(1, 8)]
    value = [100.0, 101.5, 99.0, None, 104.0, 103.0, 107.25]
    var = [-0.02, -0.021, -0.03, -0.028, -0.025, -0.024, -0.02]
    md = line_chart(
        {
            "total_value": list(zip(days, value, strict=True)),
            "var_95": list(zip(days, var, strict=True)),
        },
        title="Portfolio <1> & risk",
    ).value
    svg = _svg(md)
    lines = svg.findall(f"{SVG}polyline")
    assert len(lines) == 3  # total_value in two pieces around the gap, var_95 in one
    texts = [t.text for t in svg.iter(f"{SVG}text")]
    assert "Portfolio <1> & risk" in texts  # escaped in the SVG, intact when parsed
    assert days[0] in texts and days[-1] in texts
    assert "`total_value`" in md and "last 107.2" in md


def test_line_chart_without_values_says_so() -> None:
    svg = _svg(line_chart({"x": [("a", None)]}, title="empty").value)
    assert "no data" in [t.text for t in svg.iter(f"{SVG}text")]


def test_bar_chart_lists_every_weight() -> None:
    md = bar_chart({"ETH": 0.6, "USDC": 0.4}, title="Allocation").value
    assert len(_svg(md).findall(f"{SVG}rect")) == 1 + 2  # background + two bars
    assert "| ETH | 60.0% |" in md and "| USDC | 40.0% |" in md


def test_per_portfolio_numbers_and_charts_keep_to_the_largest_few() -> None:
    import polars as pl

    from chainlake.metadata import CHARTED_KEYS, PLOTTED_KEYS, chart_by_key, numbers_by_key

    days = [dt.date(2026, 11, d) for d in (1, 2, 3)]
    ids = [f"p{i:02d}" for i in range(12)]
    frame = pl.DataFrame(
        {
            "portfolio_id": [p for p in ids for _ in days],
            "date": days * len(ids),
            "value": [float(i * 10 + d) for i in range(12) for d in range(3)],
        }
    ).with_columns(
        pl.when(pl.col("portfolio_id") == "p03")
        .then(None)
        .otherwise(pl.col("value"))
        .alias("value")
    )
    order = ids[::-1]  # largest first
    numbers = numbers_by_key(
        frame.filter(pl.col("date") == days[-1]), key="portfolio_id", value="value",
        prefix="value_usd", order=order,
    )  # fmt: skip
    # the first ten of the order, less p03, whose value is missing
    assert list(numbers) == [f"value_usd/{p}" for p in order[:PLOTTED_KEYS] if p != "p03"]
    assert numbers["value_usd/p11"].value == 112.0
    chart = chart_by_key(frame, key="portfolio_id", x="date", y="value", title="v", order=order)
    svg = _svg(chart.value)
    assert len(svg.findall(f"{SVG}polyline")) == CHARTED_KEYS
    assert [f"`{p}`" in chart.value for p in order] == [True] * CHARTED_KEYS + [False] * (
        len(order) - CHARTED_KEYS
    )
