"""`chainlake.schema.passes`, the one-query answer asked before Pandera validates: it never
passes a frame Pandera fails, and it does pass the project's valid frames (else every
validation would pay for Pandera's rule-by-rule path again)."""

from __future__ import annotations

import pandera.polars as pa
import polars as pl
import pytest

from chainlake.schema import empty, passes, schema_failures


class Toy(pa.DataFrameModel):
    amount: int = pa.Field(ge=0, le=100)
    kind: str = pa.Field(isin=["in", "out"])
    address: str = pa.Field(str_matches=r"^0x[0-9a-f]{4}$")
    label: str = pa.Field(str_length={"min_value": 1, "max_value": 5})
    serial: int = pa.Field(unique=True)
    price: float = pa.Field()
    note: str | None = pa.Field(nullable=True, str_length={"max_value": 3})
    day: int = pa.Field(gt=0)

    class Config:
        strict = True
        unique = ("day", "kind")

    @pa.dataframe_check
    @classmethod
    def out_is_small(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select((pl.col("kind") != "out") | (pl.col("amount") < 50))


VALID = pl.DataFrame(
    {
        "amount": [1, 49],
        "kind": ["in", "out"],
        "address": ["0xab12", "0x00ff"],
        "label": ["a", "abcde"],
        "serial": [1, 2],
        "price": [1.5, 0.0],
        "note": [None, "abc"],
        "day": [1, 1],
    }
)


def _with(**columns: list) -> pl.DataFrame:
    return VALID.with_columns(pl.Series(k, v, dtype=VALID.schema[k]) for k, v in columns.items())


# Each breaks one rule of Toy and no other (an amount of 50 or more on an "out" row would also
# break the dataframe check).
BROKEN = {
    "below ge": _with(amount=[-1, 49]),
    "above le": _with(amount=[101, 49]),
    "not in set": _with(kind=["in", "sideways"]),
    "no match": _with(address=["0xAB12", "0x00ff"]),
    "too short": _with(label=["", "a"]),
    "too long": _with(label=["a", "abcdef"]),
    "duplicate unique column": _with(serial=[7, 7]),
    "null in a required column": _with(amount=[None, 1]),
    "NaN in a required float": _with(price=[1.0, float("nan")]),
    "nullable column's own check": _with(note=[None, "abcd"]),
    "not gt": _with(day=[0, 1]),
    "duplicate of the unique pair": _with(kind=["in", "in"]),
    "dataframe check": _with(amount=[1, 60]),
    "extra column under strict": VALID.with_columns(pl.lit(1).alias("extra")),
    "missing column": VALID.drop("label"),
    "wrong dtype": VALID.with_columns(pl.col("amount").cast(pl.Utf8)),
}


def test_a_valid_frame_passes_both_ways() -> None:
    assert schema_failures(Toy, VALID) is None
    assert passes(Toy, VALID)
    assert passes(Toy, VALID.clear())


@pytest.mark.parametrize("case", list(BROKEN))
def test_every_broken_rule_is_caught_and_reported_by_pandera(case: str) -> None:
    frame = BROKEN[case]
    assert not passes(Toy, frame), case
    cases = schema_failures(Toy, frame)
    assert cases is not None and cases.height > 0, case


def _models() -> list[type[pa.DataFrameModel]]:
    import pipelines.definitions  # noqa: F401  every asset's model is imported

    seen: list[type[pa.DataFrameModel]] = []
    todo = list(pa.DataFrameModel.__subclasses__())
    while todo:
        model = todo.pop()
        todo.extend(model.__subclasses__())
        if model.__module__.startswith(("chainlake", "assets")) and model not in seen:
            seen.append(model)
    return sorted(seen, key=lambda m: f"{m.__module__}.{m.__name__}")


MODELS = _models()


def test_the_project_has_models() -> None:
    assert len(MODELS) >= 20, [m.__name__ for m in MODELS]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_each_model_answers_in_one_query_and_never_passes_what_pandera_fails(
    model: type[pa.DataFrameModel],
) -> None:
    # an empty frame of the model's columns is valid: the one query passes it (the model uses
    # nothing that sends it to Pandera's path)
    assert schema_failures(model, empty(model)) is None
    assert passes(model, empty(model)), model.__name__
    # a row of nulls: wherever Pandera fails it, so does the one query
    nulls = pl.DataFrame([pl.Series(n, [None], dtype=t) for n, t in empty(model).schema.items()])
    if schema_failures(model, nulls) is not None:
        assert not passes(model, nulls)
    # a column missing, an unexpected one
    first = empty(model).columns[0]
    assert not passes(model, empty(model).drop(first))
    assert schema_failures(model, empty(model).drop(first)) is not None
    if model.to_schema().strict:
        extra = empty(model).with_columns(pl.lit(None).alias("unexpected_column"))
        assert not passes(model, extra)
        assert schema_failures(model, extra) is not None
