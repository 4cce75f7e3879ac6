"""Asset checks that report what they found, failures included.

A schema check validates the frame an asset is about to write against its Pandera model. On a
failure it yields a failed, blocking `AssetCheckResult` with the failed rules and a sample of
the offending rows as metadata, then stops the step with a `Failure` that is not retried (bad
data does not heal on its own): the check history in the UI shows the failure, nothing is
written, and downstream assets do not run.
"""

from __future__ import annotations

from collections.abc import Generator

import dagster as dg
import pandera.polars as pa
import polars as pl

from chainlake.metadata import preview
from chainlake.schema import failed_rules, offending_rows, schema_failures

SchemaCheck = Generator[dg.AssetCheckResult, None, dg.AssetCheckResult]


def schema_failed(
    cases: pl.DataFrame,
    df: pl.DataFrame | None,
    *,
    asset_key: dg.AssetKey | None = None,
    check_name: str = "schema",
) -> dg.AssetCheckResult:
    """A failed check carrying the failure cases: rules with counts and examples, and rows."""
    rules = failed_rules(cases)
    metadata: dict[str, dg.RawMetadataValue] = {
        "failures": cases.height,
        "failed_rules": preview(rules, rows=20, shorten=False),
        "columns": ", ".join(sorted(set(rules["column"].drop_nulls().to_list()))),
    }
    if df is not None:
        metadata["rows_checked"] = df.height
        metadata["offending_rows"] = preview(offending_rows(cases, df), rows=10)
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name=check_name,
        passed=False,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=metadata,
    )


def require_schema(
    model: type[pa.DataFrameModel],
    df: pl.DataFrame,
    subject: str,
    *,
    asset_key: dg.AssetKey | None = None,
    check_name: str = "schema",
    consequence: str = "nothing written",
    hint: str = "",
) -> SchemaCheck:
    """Validate `df` against `model` before it is written.

    Use as `schema = yield from require_schema(...)`, then write, then `yield schema`.

    Args:
        model: The Pandera model of the table.
        df: The rows about to be written.
        subject: What the rows are, for the error ("devnet 2026-11-01: balances").
        asset_key: The checked asset, for multi-assets.
        check_name: The check's name in the asset's `check_specs`.
        consequence: What did not happen because of the failure.
        hint: Where the bad values probably came from.

    Returns:
        The passed check result, to yield once the rows are written.

    Raises:
        dagster.Failure: After yielding the failed check result, when a rule fails.
    """
    cases = schema_failures(model, df)
    if cases is None:
        return dg.AssetCheckResult(
            asset_key=asset_key,
            check_name=check_name,
            passed=True,
            metadata={"rows_checked": df.height, "model": model.__name__},
        )
    failed = schema_failed(cases, df, asset_key=asset_key, check_name=check_name)
    yield failed
    raise schema_failure(subject, failed, consequence=consequence, hint=hint)


def schema_failure(
    subject: str, failed: dg.AssetCheckResult, *, consequence: str, hint: str = ""
) -> dg.Failure:
    """The step's error for a failed schema check: names the subject, not retried."""
    where = f" ({hint})" if hint else ""
    columns = failed.metadata.get("columns")
    text = getattr(columns, "value", columns)
    return dg.Failure(
        description=f"{subject} fail their schema{where} in column(s) {text}; {consequence}",
        metadata={"failed_rules": failed.metadata["failed_rules"]},
        allow_retries=False,
    )
