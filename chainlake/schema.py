"""Helpers that make a Pandera model the single definition of a table's columns: its Polars
and Arrow schemas, conforming and validating frames, and the column schema Dagster shows
(`column_schema`, published as `dagster/column_schema` in every asset's definition metadata)."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

import dagster as dg

# the built-in checks' Polars functions (ge, isin, str_matches...), which Pandera registers
# only when it first validates
import pandera.backends.polars.builtin_checks  # noqa: F401
import pandera.polars as pa
import polars as pl
import pyarrow as pa_arrow
from pandera.api.polars.types import PolarsData
from pandera.backends.polars.checks import PolarsCheckBackend
from pandera.constants import CHECK_OUTPUT_KEY


@cache
def polars_schema(model: type[pa.DataFrameModel]) -> pl.Schema:
    """The model's columns, in order, as a Polars schema."""
    return pl.Schema({name: col.dtype.type for name, col in model.to_schema().columns.items()})


def arrow_schema(model: type[pa.DataFrameModel]) -> pa_arrow.Schema:
    """The Arrow schema of a Pandera model's table."""
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
    """An empty frame with the model's columns and types."""
    return pl.DataFrame(schema=polars_schema(model))


def validation_summary(err: pa.errors.SchemaErrors | pa.errors.SchemaError, limit: int = 10) -> str:
    """A short, human-readable account of what failed: check, column, and a few bad values."""
    if isinstance(err, pa.errors.SchemaErrors):
        cases = err.failure_cases
        if isinstance(cases, pl.DataFrame):
            return str(cases.head(limit))
    return str(err)[:2000]


def schema_failures(model: type[pa.DataFrameModel], df: pl.DataFrame) -> pl.DataFrame | None:
    """Every failure of `df` against `model` (lazy validation: all rules, all columns), as
    Pandera's failure cases (`failure_case, schema_context, column, check, check_number,
    index`); None when the frame passes.

    Pandera runs each rule of each column as a Polars query of its own (about 70 for a raw
    table) over the frame, already in memory. Polars 2 sends a query to its streaming engine
    unless told otherwise, which costs about 0.5 ms a query to set up against 0.07 ms for the
    in-memory engine (the same results): on a backfill's small days the checks were a quarter
    of an asset's time. The in-memory engine is chosen for the validation only. A frame that
    `passes` (one query for every rule) is not validated rule by rule at all."""
    if passes(model, df):
        return None
    try:
        with pl.Config(engine_affinity="in-memory"):
            model.validate(df, lazy=True)
    except pa.errors.SchemaErrors as e:
        return failure_cases(e)
    return None


def passes(model: type[pa.DataFrameModel], df: pl.DataFrame) -> bool:
    """Whether `df` passes every rule of `model`, asked of Polars in one query.

    Pandera asks the same questions one Polars query at a time (about 70 for a raw table), and
    its own bookkeeping around each costs more than the query: 20 ms a validation of an empty
    frame. Here each rule is built by Pandera's own check backend, as Pandera builds it, and
    all are evaluated together. False when a rule fails or errs, and when the model uses a
    feature not handled here (coercion, defaults, regex columns, parsers...): the caller then
    lets Pandera validate and report. True is never answered where Pandera would fail.
    """
    schema = model.to_schema()
    if (
        schema.coerce
        or schema.strict not in (True, False)
        or schema.ordered
        or schema.add_missing_columns
        or schema.unique_column_names
        or schema.drop_invalid_rows
        or getattr(schema, "parsers", None)
    ):
        return False
    columns = schema.columns
    names = set(df.columns)
    if set(columns) - names or (schema.strict and names - set(columns)):
        return False
    lf = df.lazy()
    rules: list[pl.LazyFrame] = []
    for name, column in columns.items():
        if (
            column.regex
            or column.coerce
            or column.default is not None
            or column.drop_invalid_rows
            or getattr(column, "parsers", None)
        ):
            return False
        dtype = df.schema[name]
        if column.dtype is not None and not column.dtype.check(
            dtype, PolarsData(lf.select(name), name)
        ):
            return False
        if not column.nullable:
            present = pl.col(name).is_not_null()
            if dtype.is_float():
                present = present & pl.col(name).is_not_nan()
            rules.append(lf.select(present.all()))
        if column.unique:
            rules.append(lf.select(pl.col(name).is_duplicated().not_().all()))
        rules.extend(_rule(check, lf, name) for check in column.checks)
    if schema.unique:
        subset = [schema.unique] if isinstance(schema.unique, str) else list(schema.unique)
        rules.append(lf.select(pl.struct(subset).is_duplicated().not_().all()))
    rules.extend(_rule(check, lf, None) for check in schema.checks)
    if not rules:
        return True
    try:
        row = pl.concat(
            [r.select(pl.first().alias(f"rule_{i}")) for i, r in enumerate(rules)],
            how="horizontal",
        ).collect(engine="in-memory")
    except Exception:  # a rule that errs is Pandera's to report
        return False
    return row.height == 1 and all(v is True for v in row.row(0))


def _rule(check: pa.Check, lf: pl.LazyFrame, column: str | None) -> pl.LazyFrame:
    """One check as a one-row frame: whether every row passes it (nulls pass with `ignore_na`,
    Pandera's default, and fail without it)."""
    try:
        out = PolarsCheckBackend(check).apply(PolarsData(lf, column or "*"))
    except Exception:
        return pl.LazyFrame({"failed": [False]})
    if isinstance(out, bool):
        return pl.LazyFrame({"passed": [out]})
    result = pl.col(CHECK_OUTPUT_KEY).fill_null(bool(check.ignore_na))
    return out.select(result.all())


def failure_cases(err: pa.errors.SchemaErrors) -> pl.DataFrame:
    """The failure cases of a lazy validation as a Polars frame, values as text."""
    cases = err.failure_cases
    if not isinstance(cases, pl.DataFrame):
        cases = pl.from_pandas(cases)  # pandas-backed models report pandas frames
    return cases.with_columns(pl.col("failure_case").cast(pl.String))


def failed_rules(cases: pl.DataFrame, samples: int = 3) -> pl.DataFrame:
    """One row per (column, rule) that failed: how many values failed it and a few of them."""
    return (
        cases.group_by("column", "check", maintain_order=True)
        .agg(
            pl.len().alias("failures"),
            pl.col("failure_case").unique(maintain_order=True).head(samples).alias("examples"),
        )
        .with_columns(pl.col("examples").list.join(", "))
    )


def offending_rows(cases: pl.DataFrame, df: pl.DataFrame, limit: int = 10) -> pl.DataFrame:
    """The rows of `df` that broke a rule (by Pandera's row index), the first `limit` of them."""
    index = cases["index"].drop_nulls().unique().sort().head(limit)
    if index.is_empty():
        return df.clear()
    return df.with_row_index("_row").filter(pl.col("_row").is_in(index.implode())).drop("_row")


COLUMN_SCHEMA = "dagster/column_schema"


def column_checks(column: Any) -> list[str]:
    """A Pandera column's checks as short readable rules, e.g. `>= 0`, `in [0, 1]`,
    `matches ^0x[0-9a-f]{40}$`."""
    out = []
    for check in column.checks:
        stats = dict(check.statistics or {})
        if check.name == "greater_than_or_equal_to":
            out.append(f">= {stats['min_value']}")
        elif check.name == "less_than_or_equal_to":
            out.append(f"<= {stats['max_value']}")
        elif check.name == "greater_than":
            out.append(f"> {stats['min_value']}")
        elif check.name == "less_than":
            out.append(f"< {stats['max_value']}")
        elif check.name == "isin":
            out.append(f"in {list(stats['allowed_values'])}")
        elif check.name == "str_matches":
            out.append(f"matches {stats['pattern']}")
        else:
            out.append(str(check.error or check.name))
    return out


def type_name(dtype: Any) -> str:
    """A Polars type as it reads in a schema: `Decimal(38, 0)`, `Datetime(us, UTC)`, `Int64`."""
    if isinstance(dtype, pl.Decimal):
        return f"Decimal({dtype.precision}, {dtype.scale})"
    if isinstance(dtype, pl.Datetime):
        return (
            f"Datetime({dtype.time_unit}, {dtype.time_zone})"
            if dtype.time_zone
            else (f"Datetime({dtype.time_unit})")
        )
    return str(dtype)


def table_columns(model: type[pa.DataFrameModel], prefix: str = "") -> list[dg.TableColumn]:
    """The model's columns for Dagster: name (after `prefix`), Polars type, description and
    constraints (nullable, unique, the Pandera checks)."""
    return [
        dg.TableColumn(
            name=f"{prefix}{name}",
            type=type_name(col.dtype.type),
            description=col.description or "",
            constraints=dg.TableColumnConstraints(
                nullable=bool(col.nullable),
                unique=bool(col.unique),
                other=column_checks(col),
            ),
        )
        for name, col in model.to_schema().columns.items()
    ]


def table_rules(model: type[pa.DataFrameModel], prefix: str = "") -> list[str]:
    """The model's rules over whole rows: its unique key and its dataframe checks, each with
    the check's docstring."""
    schema = model.to_schema()
    rules = [f"{prefix}unique ({', '.join(schema.unique)})"] if schema.unique else []
    for check in schema.checks:
        doc = " ".join((getattr(getattr(model, check.name, None), "__doc__", None) or "").split())
        rules.append(f"{prefix}{check.name}" + (f": {doc}" if doc else ""))
    return rules


def column_schema(model: type[pa.DataFrameModel]) -> dg.TableSchema:
    """The Dagster table schema of a Pandera model (what the asset's Columns tab shows)."""
    return dg.TableSchema(
        columns=table_columns(model),
        constraints=dg.TableConstraints(other=table_rules(model)),
    )


def tables_column_schema(models: Mapping[str, type[pa.DataFrameModel]]) -> dg.TableSchema:
    """One Dagster table schema for an asset that holds several tables (the DuckDB catalog,
    the serving views): each column and rule named `<table>.<column>`."""
    return dg.TableSchema(
        columns=[c for table, m in models.items() for c in table_columns(m, f"{table}.")],
        constraints=dg.TableConstraints(
            other=[r for table, m in models.items() for r in table_rules(m, f"{table}.")]
        ),
    )


def schema_metadata(
    model: type[pa.DataFrameModel] | Mapping[str, type[pa.DataFrameModel]],
) -> dict[str, dg.TableSchema]:
    """Definition metadata publishing the column schema of a model (or of several tables) as
    `dagster/column_schema`, so the UI shows the columns before any materialisation."""
    schema = tables_column_schema(model) if isinstance(model, Mapping) else column_schema(model)
    return {COLUMN_SCHEMA: schema}
