"""Helpers that make a Pandera model the single definition of a table's columns."""

from __future__ import annotations

from functools import cache

import pandera.polars as pa
import polars as pl
import pyarrow as pa_arrow


@cache
def polars_schema(model: type[pa.DataFrameModel]) -> pl.Schema:
    """The model's columns, in order, as a Polars schema."""
    return pl.Schema({name: col.dtype.type for name, col in model.to_schema().columns.items()})


def arrow_schema(model: type[pa.DataFrameModel]) -> pa_arrow.Schema:
    return pl.DataFrame(schema=polars_schema(model)).to_arrow().schema


def conform(df: pl.DataFrame, model: type[pa.DataFrameModel]) -> pl.DataFrame:
    """Select the model's columns in its order, cast to its types (strictly: a value that does
    not fit raises instead of turning into null)."""
    schema = polars_schema(model)
    missing = [c for c in schema if c not in df.columns]
    if missing:
        raise ValueError(f"{model.__name__}: frame lacks columns {missing}")
    return df.select([pl.col(name).cast(dtype, strict=True) for name, dtype in schema.items()])


def empty(model: type[pa.DataFrameModel]) -> pl.DataFrame:
    return pl.DataFrame(schema=polars_schema(model))


def validation_summary(err: pa.errors.SchemaErrors | pa.errors.SchemaError, limit: int = 10) -> str:
    """A short, human-readable account of what failed: check, column, and a few bad values."""
    if isinstance(err, pa.errors.SchemaErrors):
        cases = err.failure_cases
        if isinstance(cases, pl.DataFrame):
            return str(cases.head(limit))
    return str(err)[:2000]


def validate_or_fail(
    model: type[pa.DataFrameModel],
    df: pl.DataFrame,
    subject: str,
    *,
    hint: str = "",
    consequence: str = "nothing written",
) -> None:
    """Validate `df` against `model`, collecting every failure; on failure raise a Dagster
    `Failure` that names `subject` (e.g. "devnet 2026-11-01: balances"), says what was not
    done, carries the failure cases as metadata, and is not retried: bad data does not heal
    on its own."""
    import dagster as dg

    try:
        model.validate(df, lazy=True)
    except pa.errors.SchemaErrors as e:
        raise dg.Failure(
            description=f"{subject} fail their schema{f' ({hint})' if hint else ''}; {consequence}",
            metadata={"failures": dg.MetadataValue.md(f"```\n{validation_summary(e)}\n```")},
            allow_retries=False,
        ) from e
