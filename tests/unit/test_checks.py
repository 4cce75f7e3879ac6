"""Schema checks report failures as failures: a bad frame gives a failed, blocking check with the
broken rules and the offending rows in its metadata, nothing is written, and the downstream
asset does not run."""

from __future__ import annotations

import dagster as dg
import pandera.polars as pa
import polars as pl

from assets.checks import require_schema

UP = dg.AssetKey(["core", "probe"])


class ProbeModel(pa.DataFrameModel):
    address: pl.String = pa.Field(str_matches=r"^0x[0-9a-f]{40}$")
    amount: pl.Int64 = pa.Field(ge=0)


def _graph(frame: pl.DataFrame, written: list[int]) -> list[dg.AssetsDefinition]:
    @dg.asset(key=UP, check_specs=[dg.AssetCheckSpec("schema", asset=UP, blocking=True)])
    def probe():
        schema = yield from require_schema(ProbeModel, frame, "devnet 2026-11-01: probe")
        written.append(frame.height)
        yield dg.MaterializeResult()
        yield schema

    @dg.asset(deps=[UP])
    def downstream() -> None:
        written.append(-1)

    return [probe, downstream]


def test_a_bad_frame_fails_the_check_with_the_offending_rows() -> None:
    good, bad = "0x" + "ab" * 20, "0xNOTANADDRESS"
    frame = pl.DataFrame({"address": [good, bad, good], "amount": [5, 7, -3]})
    written: list[int] = []
    result = dg.materialize(_graph(frame, written), raise_on_error=False)

    assert not result.success
    (check,) = result.get_asset_check_evaluations()
    assert (check.asset_key, check.check_name, check.passed) == (UP, "schema", False)
    assert check.severity == dg.AssetCheckSeverity.ERROR
    md = check.metadata
    assert md["failures"].value == 2
    assert md["columns"].value == "address, amount"
    rules = md["failed_rules"].value
    assert "str_matches" in rules and "greater_than_or_equal_to(0)" in rules
    rows = md["offending_rows"].value
    assert "NOTANADDRESS" in rows and "-3" in rows and "| 5 |" not in rows
    assert written == [], "nothing is written and the downstream asset does not run"
    failure = next(e for e in result.all_events if e.is_step_failure)
    text = failure.step_failure_data.error.message
    assert "devnet 2026-11-01: probe" in text and "address, amount" in text


def test_a_good_frame_passes_with_what_was_checked() -> None:
    frame = pl.DataFrame({"address": ["0x" + "cd" * 20], "amount": [0]})
    written: list[int] = []
    result = dg.materialize(_graph(frame, written))

    (check,) = result.get_asset_check_evaluations()
    assert check.passed and check.metadata["rows_checked"].value == 1
    assert written == [1, -1]
