"""The statistics of a file the staged writer commits (row count, min, max and null count per
flat column) are those of its own columns, with nested columns (raw/blocks' withdrawals and
uncles: several Parquet leaf columns each) before them in the schema. Wrong statistics would
make a reader that filters on a column skip a file holding matching rows."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable

from chainlake.config import ChainConfig
from chainlake.lake import DeltaStore

CHAIN = ChainConfig(
    name="devnet", network="devnet", subnet="local", chain_id=31337,
    rpc_urls=("http://127.0.0.1:8545",), start_date=dt.date(2026, 1, 1),
)  # fmt: skip
DAY = dt.date(2026, 1, 2)
ITEM = pa.struct([("index", pa.int64()), ("address", pa.string()), ("amount", pa.int64())])
SCHEMA = pa.schema(
    [
        ("block_number", pa.int64()),
        ("withdrawals", pa.list_(ITEM)),
        ("uncles", pa.list_(ITEM)),
        ("miner", pa.string()),
        ("gas_used", pa.int64()),
    ]
)


def test_staged_file_statistics_follow_their_columns_past_nested_ones(tmp_path: Path) -> None:
    staged = tmp_path / "part.parquet"
    item = {"index": 999, "address": "0xzz", "amount": 10**12}
    pq.write_table(
        pa.table(
            {
                "block_number": [10, 11, 12],
                "withdrawals": [[item], [], None],
                "uncles": [None, [item, item], []],
                "miner": ["0xaa", "0xbb", None],
                "gas_used": [21_000, 50_000, 30_000],
            },
            schema=SCHEMA,
        ),
        staged,
    )
    store = DeltaStore(root=str(tmp_path / "delta"))
    store.replace_day_files(
        CHAIN, "blocks", DAY, [staged], SCHEMA.insert(0, pa.field("date", pa.date32()))
    )
    uri = store.table_uri(CHAIN, "blocks")
    adds = pl.from_arrow(pa.table(DeltaTable(uri).get_add_actions(flatten=True)))
    assert isinstance(adds, pl.DataFrame)
    row = adds.row(0, named=True)
    assert row["num_records"] == 3, row
    assert (row["min.block_number"], row["max.block_number"]) == (10, 12)
    assert (row["min.gas_used"], row["max.gas_used"]) == (21_000, 50_000), row
    assert (row["min.miner"], row["max.miner"], row["null_count.miner"]) == ("0xaa", "0xbb", 1)
    # a reader filtering on a column past the nested ones finds its row
    found = pl.read_delta(uri).filter(pl.col("gas_used") == 50_000)
    assert found["block_number"].to_list() == [11]
    skipped = DeltaTable(uri).to_pyarrow_table(filters=[("gas_used", "=", 30_000)])
    assert skipped.column("block_number").to_pylist() == [12]
