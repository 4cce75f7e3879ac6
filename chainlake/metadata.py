"""Materialisation metadata a data engineer reads in the Dagster UI."""

from __future__ import annotations

from typing import Any

import dagster as dg
import polars as pl


def preview(df: pl.DataFrame, rows: int = 5) -> dg.MetadataValue:
    """A Markdown table of the first rows (wide hex strings shortened)."""
    if df.height == 0:
        return dg.MetadataValue.md("_no rows_")
    head = df.head(rows).with_columns(
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
