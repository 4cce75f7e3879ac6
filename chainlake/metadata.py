"""Materialisation metadata a data engineer reads in the Dagster UI."""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from typing import Any
from xml.sax.saxutils import escape as xml_escape

import dagster as dg
import polars as pl


def preview(df: pl.DataFrame, rows: int = 5, *, shorten: bool = True) -> dg.MetadataValue:
    """A Markdown table of the first rows (wide hex strings shortened unless `shorten=False`)."""
    if df.height == 0:
        return dg.MetadataValue.md("_no rows_")
    head = df.head(rows)
    if shorten:
        head = head.with_columns(
            pl.col(pl.String).map_elements(
                lambda v: v if len(v) <= 20 else v[:10] + "…" + v[-6:], return_dtype=pl.String
            )
        )
    cols = [c for c, t in head.schema.items() if not isinstance(t, pl.List | pl.Struct)]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in head.select(cols).iter_rows():
        lines.append("| " + " | ".join("" if v is None else str(v) for v in row) + " |")
    return dg.MetadataValue.md("\n".join(lines))


def table_metadata(
    *,
    rows_written: int,
    seconds: float,
    preview_frame: pl.DataFrame | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The materialization metadata every table write reports.

    Args:
        rows_written: Rows written (also Dagster's `dagster/row_count`).
        seconds: How long the write took.
        preview_frame: Rows to show as a Markdown preview.
        **extra: More entries; those that are None are left out.

    Returns:
        The metadata, with the write rate in rows per second.
    """
    md: dict[str, Any] = {
        "dagster/row_count": rows_written,
        "rows_written": rows_written,
        "duration_s": round(seconds, 3),
        "rows_per_s": round(rows_written / seconds, 1) if seconds > 0 else None,
    }
    for k, v in extra.items():
        if v is not None:
            md[k] = v
    if preview_frame is not None:
        md["preview"] = preview(preview_frame)
    return md


# -- small charts (portfolio values, risk metrics) ------------------------------------------
#
# The Dagster UI renders Markdown metadata with images from data URIs, so a chart is an inline
# SVG image; a text sparkline with the last value follows it, for the CLI, logs and diffs.

_PALETTE = ("#4f43dd", "#e6553a", "#2f9e44", "#b8860b", "#0b7285", "#862e9c")
_SPARKS = "▁▂▃▄▅▆▇█"

Point = tuple[Any, float | int | None]


def sparkline(values: Sequence[float | int | None]) -> str:
    """`▁▃▅█` for the values; a gap (space) for a missing one."""
    nums = [_num(v) for v in values]
    present = [v for v in nums if v is not None]
    if not present:
        return ""
    lo, hi = min(present), max(present)
    span = hi - lo
    out = []
    for v in nums:
        if v is None:
            out.append(" ")
        else:
            out.append(_SPARKS[0 if span == 0 else round((v - lo) / span * (len(_SPARKS) - 1))])
    return "".join(out)


def line_chart(
    series: Mapping[str, Sequence[Point]],
    *,
    title: str,
    value_format: str = "{:,.4g}",
    width: int = 520,
    height: int = 180,
) -> dg.MetadataValue:
    """A small line chart as Markdown metadata: one line per series of (x, y) points, x in
    order (dates or labels), None or NaN leaving a gap.

    For example, in an asset:

        metadata["value_chart"] = line_chart(
            {"total_value": list(zip(days, values))}, title="Portfolio value (USD)"
        )
    """
    svg = _line_svg(series, title=title, value_format=value_format, width=width, height=height)
    lines = [f"![{_md_text(title)}]({_svg_data_uri(svg)})", ""]
    for name, points in series.items():
        ys = [y for _, y in points]
        last = next((y for y in reversed(ys) if _finite(y)), None)
        last_text = value_format.format(last) if last is not None else "–"
        lines.append(f"- `{_md_text(name)}` {sparkline(ys)} last {last_text}")
    return dg.MetadataValue.md("\n".join(lines))


def bar_chart(
    values: Mapping[str, float | int],
    *,
    title: str,
    value_format: str = "{:.1%}",
    width: int = 520,
) -> dg.MetadataValue:
    """Horizontal bars, e.g. a portfolio's asset allocation weights."""
    items = [(k, f) for k, v in values.items() if (f := _num(v)) is not None]
    row, label_w, pad = 18, 110, 8
    height = pad * 2 + 20 + row * max(1, len(items))
    hi = max([abs(v) for _, v in items] + [1e-12])
    plot_w = width - label_w - 70
    parts = [_svg_open(width, height), _svg_text(pad, 16, title, weight="bold")]
    for i, (label, v) in enumerate(items):
        y = 28 + i * row
        w = max(1.0, abs(v) / hi * plot_w)
        parts.append(_svg_text(pad, y + 12, label[:16]))
        color = _PALETTE[0] if v >= 0 else _PALETTE[1]
        parts.append(
            f'<rect x="{label_w}" y="{y + 2}" width="{w:.1f}" height="{row - 6}" fill="{color}"/>'
        )
        parts.append(_svg_text(label_w + w + 4, y + 12, value_format.format(v)))
    parts.append("</svg>")
    svg = "".join(parts)
    table = ["| | |", "|---|---|"] + [
        f"| {_md_text(k)} | {value_format.format(v)} |" for k, v in items
    ]
    return dg.MetadataValue.md(f"![{_md_text(title)}]({_svg_data_uri(svg)})\n\n" + "\n".join(table))


def _finite(v: Any) -> bool:
    return _num(v) is not None


def _num(v: Any) -> float | None:
    """`v` as a float, None when missing, NaN or infinite (bools are not numbers here)."""
    if v is None or isinstance(v, bool) or not isinstance(v, int | float):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def _md_text(s: str) -> str:
    return s.replace("[", "(").replace("]", ")").replace("|", "/").replace("`", "'")


def _svg_data_uri(svg: str) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode("ascii")


def _svg_open(width: int, height: int) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">'
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>'
    )


def _svg_text(
    x: float, y: float, text: str, *, anchor: str = "start", weight: str = "normal"
) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-weight="{weight}" '
        f'fill="#333">{xml_escape(str(text))}</text>'
    )


def _line_svg(
    series: Mapping[str, Sequence[Point]],
    *,
    title: str,
    value_format: str,
    width: int,
    height: int,
) -> str:
    left, right, top, bottom = 64, 12, 26, 34
    xs: list[Any] = []
    for points in series.values():
        for x, _ in points:
            if x not in xs:
                xs.append(x)
    ys = [f for pts in series.values() for _, y in pts if (f := _num(y)) is not None]
    parts = [_svg_open(width, height), _svg_text(8, 16, title, weight="bold")]
    if not ys or not xs:
        parts.append(_svg_text(width / 2, height / 2, "no data", anchor="middle"))
        return "".join(parts) + "</svg>"
    lo, hi = min(ys), max(ys)
    if lo == hi:
        lo, hi = lo - 1, hi + 1
    plot_w, plot_h = width - left - right, height - top - bottom
    index = {x: i for i, x in enumerate(xs)}

    def px(x: Any) -> float:
        return left + (index[x] / max(1, len(xs) - 1)) * plot_w

    def py(y: float) -> float:
        return top + (1 - (y - lo) / (hi - lo)) * plot_h

    parts.append(
        f'<path d="M{left},{top} V{top + plot_h} H{left + plot_w}" stroke="#999" fill="none"/>'
    )
    if lo < 0 < hi:
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{py(0):.1f}" y2="{py(0):.1f}" '
            'stroke="#ccc" stroke-dasharray="3,3"/>'
        )
    parts.append(_svg_text(left - 4, top + 4, value_format.format(hi), anchor="end"))
    parts.append(_svg_text(left - 4, top + plot_h, value_format.format(lo), anchor="end"))
    parts.append(_svg_text(left, height - bottom + 14, xs[0]))
    if len(xs) > 1:
        parts.append(_svg_text(left + plot_w, height - bottom + 14, xs[-1], anchor="end"))
    for n, (name, points) in enumerate(series.items()):
        color = _PALETTE[n % len(_PALETTE)]
        runs: list[list[str]] = [[]]
        for x, y in points:
            f = _num(y)
            if f is not None:
                runs[-1].append(f"{px(x):.1f},{py(f):.1f}")
            elif runs[-1]:
                runs.append([])
        for run in runs:
            if len(run) == 1:
                cx, cy = run[0].split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="2" fill="{color}"/>')
            elif run:
                parts.append(
                    f'<polyline points="{" ".join(run)}" fill="none" stroke="{color}" '
                    'stroke-width="1.5"/>'
                )
        lx = left + n * 120
        parts.append(f'<rect x="{lx}" y="{height - 12}" width="10" height="3" fill="{color}"/>')
        parts.append(_svg_text(lx + 14, height - 8, name[:18]))
    return "".join(parts) + "</svg>"


# -- per-portfolio figures over time ---------------------------------------------------------

# Numeric metadata entries per materialisation (the UI plots each over materialisations) and
# lines per chart stay few, whatever the number of portfolios: the largest are shown.
PLOTTED_KEYS = 10
CHARTED_KEYS = len(_PALETTE)


def numbers_by_key(
    frame: pl.DataFrame, *, key: str, value: str, prefix: str, order: list[str] | None = None
) -> dict[str, dg.MetadataValue]:
    """`<prefix>/<key>` → the float of `value` for the first `PLOTTED_KEYS` keys of `order`
    (default: the frame's, sorted), leaving out missing values. The Dagster UI plots numeric
    metadata over an asset's materialisations, so each entry becomes a small time series."""
    keys = order if order is not None else sorted(frame[key].unique().to_list())
    values = dict(frame.select(key, pl.col(value).cast(pl.Float64)).iter_rows())
    out: dict[str, dg.MetadataValue] = {}
    for k in keys[:PLOTTED_KEYS]:
        v = _num(values.get(k))
        if v is not None:
            out[f"{prefix}/{k}"] = dg.MetadataValue.float(v)
    return out


def chart_by_key(
    frame: pl.DataFrame,
    *,
    key: str,
    x: str,
    y: str,
    title: str,
    order: list[str] | None = None,
    value_format: str = "{:,.4g}",
) -> dg.MetadataValue:
    """A `line_chart` of `y` over `x` (ISO dates), one line for each of the first
    `CHARTED_KEYS` keys of `order` (default: sorted)."""
    keys = order if order is not None else sorted(frame[key].unique().to_list())
    series: dict[str, list[Point]] = {}
    for k in keys[:CHARTED_KEYS]:
        rows = frame.filter(pl.col(key) == k).sort(x)
        series[str(k)] = [
            (str(d), None if v is None else float(v))
            for d, v in rows.select(x, pl.col(y).cast(pl.Float64)).iter_rows()
        ]
    return line_chart(series, title=title, value_format=value_format)
