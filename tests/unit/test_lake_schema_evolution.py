"""A Delta table written before its model gained a column (an upgrade: raw/transactions'
l1_fee and mint, say) takes the new column on the next day's write, by either writer, and its
older days read it as null; a write that drops a column is still refused."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from chainlake.config import ChainConfig
from chainlake.lake import DeltaStore

CHAIN = ChainConfig(
    name="devnet", network="devnet", subnet="local", chain_id=31337,
    rpc_urls=("http://127.0.0.1:8545",), start_date=dt.date(2026, 1, 1),
)  # fmt: skip
D1, D2, D3 = (dt.date(2026, 1, d) for d in (1, 2, 3))


def _day(day: dt.date, **columns: list[object]) -> pa.Table:
    n = len(next(iter(columns.values())))
    return pa.table({"date": pa.array([day] * n, pa.date32()), **columns})


def _read(store: DeltaStore) -> list[dict[str, object]]:
    rows = pl.read_delta(store.table_uri(CHAIN, "transactions")).sort("date", "value")
    return rows.to_dicts()


def test_a_day_with_a_new_column_adds_it_and_keeps_the_older_days(tmp_path: Path) -> None:
    store = DeltaStore(root=str(tmp_path / "delta"))
    store.replace_day(CHAIN, "transactions", D1, _day(D1, value=pa.array([1, 2], pa.int64())))
    # delta-rs' writer (a frame)
    store.replace_day(
        CHAIN, "transactions", D2,
        _day(D2, value=pa.array([3], pa.int64()), l1_fee=pa.array([7], pa.int64())),
    )  # fmt: skip
    assert _read(store) == [
        {"date": D1, "value": 1, "l1_fee": None},
        {"date": D1, "value": 2, "l1_fee": None},
        {"date": D2, "value": 3, "l1_fee": 7},
    ]
    # the staged-files writer, one more column: its schema differs, so it goes through
    # delta-rs' writer, which adds the column too
    staged = tmp_path / "part.parquet"
    schema = pa.schema([("value", pa.int64()), ("l1_fee", pa.int64()), ("mint", pa.int64())])
    pq.write_table(pa.table({"value": [4], "l1_fee": [8], "mint": [9]}, schema=schema), staged)
    store.replace_day_files(
        CHAIN, "transactions", D3, [staged], schema.insert(0, pa.field("date", pa.date32()))
    )
    rows = _read(store)
    assert [r["mint"] for r in rows] == [None, None, None, 9]
    assert rows[-1] == {"date": D3, "value": 4, "l1_fee": 8, "mint": 9}


def test_a_write_that_drops_a_column_is_still_refused(tmp_path: Path) -> None:
    store = DeltaStore(root=str(tmp_path / "delta"))
    store.replace_day(
        CHAIN, "transactions", D1,
        _day(D1, value=pa.array([1], pa.int64()), l1_fee=pa.array([7], pa.int64())),
    )  # fmt: skip
    with pytest.raises(Exception, match=r"(?i)schema"):
        store.replace_day(CHAIN, "transactions", D2, _day(D2, value=pa.array([3], pa.int64())))
    assert [r["date"] for r in _read(store)] == [D1]  # nothing of D2 written
