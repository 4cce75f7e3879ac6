"""The DuckDB catalog and views: idempotent loads, delta_scan views, and readers that never
block the writer (nor the writer them)."""

import datetime as dt
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml

from assets.core.balances import NATIVE_TOKEN, BalancesModel
from assets.serving.catalog import TABLES, catalog, catalog_frames, views, write_catalog
from chainlake.config import ConfigError, load_chains
from chainlake.lake import DeltaStore
from chainlake.portfolios import load_portfolios
from chainlake.schema import conform, polars_schema
from resources.duckdb import ServingDuckDB

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
W1 = "0x" + "11" * 20
W2 = "0x" + "22" * 20
TOKEN = "0x" + "aa" * 20
FEED = "0x" + "fe" * 20


def _config(
    tmp: Path, *, wallets: list[dict] | None = None, alerts: list[dict] | None = None
) -> None:
    (tmp / "chains.yaml").write_text(
        yaml.safe_dump(
            {
                "chains": [
                    {
                        "name": "devnet", "network": "devnet", "subnet": "local",
                        "chain_id": 31337,
                        "rpc_urls": ["http://user:secret@127.0.0.1:8545/?key=abc"],
                        "start_date": "2026-11-01",
                        "tokens": [
                            {"symbol": "TKN", "address": TOKEN, "decimals": 6},
                            {"symbol": "ETH", "address": NATIVE_TOKEN, "decimals": 18,
                             "price_feed": FEED},
                        ],
                    }
                ]
            }
        )
    )  # fmt: skip
    (tmp / "portfolios.yaml").write_text(
        yaml.safe_dump(
            {
                "wallets": wallets
                if wallets is not None
                else [
                    {"name": "alice", "address": W1, "chain": "devnet"},
                    {"name": "vault", "address": W2, "chain": "devnet", "kind": "contract"},
                ],
                "portfolios": [{"id": "desk", "name": "Desk", "wallets": ["alice"]}],
                "alerts": alerts
                if alerts is not None
                else [
                    {
                        "name": "low",
                        "query": "tell me",
                        "expression": "balance < 1",
                        "parameters": {"threshold": 1},
                    }
                ],
            }
        )
    )


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    _config(tmp_path)
    monkeypatch.setenv("CHAINS_CONFIG", str(tmp_path / "chains.yaml"))
    monkeypatch.setenv("PORTFOLIOS_CONFIG", str(tmp_path / "portfolios.yaml"))
    monkeypatch.setenv("DELTA_ROOT", str(tmp_path / "delta"))  # what readers resolve views by
    return tmp_path


def _load(db: ServingDuckDB) -> None:
    chains = load_chains()
    with db.writer() as conn:
        write_catalog(conn, catalog_frames(load_portfolios(chains), chains))


def _rows(db: ServingDuckDB, sql: str) -> list[tuple]:
    with db.reader() as conn:
        return conn.execute(sql).fetchall()


def test_catalog_load_is_idempotent_and_follows_the_files(env: Path) -> None:
    db = ServingDuckDB(database=str(env / "chainlake.duckdb"))
    _load(db)
    first = _rows(db, "SELECT id, name, updated_at FROM wallets ORDER BY name")
    assert [r[1] for r in first] == ["alice", "vault"]
    assert _rows(db, "SELECT symbol, asset_type, price_feed FROM tokens ORDER BY symbol") == [
        ("ETH", "native", FEED),
        ("TKN", "erc20", None),
    ]
    (node,) = _rows(db, "SELECT rpc_url FROM nodes")
    assert "secret" not in node[0] and "abc" not in node[0]  # credentials never reach the catalog
    # Something outside the pipeline records that the alert fired.
    with db.writer() as conn:
        conn.execute("UPDATE alerts SET trigger_count = 3, last_triggered_at = now()")
    _load(db)  # same files: nothing changes
    assert _rows(db, "SELECT id, name, updated_at FROM wallets ORDER BY name") == first
    assert _rows(db, "SELECT trigger_count FROM alerts") == [(3,)]
    counts = {t.name: _rows(db, f"SELECT count(*) FROM {t.name}")[0][0] for t in TABLES}  # noqa: S608
    assert counts == {"wallets": 2, "nodes": 1, "tokens": 2, "portfolios": 1,
                      "portfolio_wallets": 1, "alerts": 1}  # fmt: skip
    # The vault leaves the file, alice is renamed: one row gone, one updated, alert kept.
    _config(env, wallets=[{"name": "alice-2", "address": W1, "chain": "devnet"}])
    (env / "portfolios.yaml").write_text(
        (env / "portfolios.yaml").read_text().replace("- alice\n", "- alice-2\n")
    )
    _load(db)
    after = _rows(db, "SELECT id, name, updated_at FROM wallets")
    assert len(after) == 1 and after[0][0] == first[0][0] and after[0][1] == "alice-2"
    assert after[0][2] > first[0][2]
    assert _rows(db, "SELECT trigger_count, parameters->>'threshold' FROM alerts") == [(3, "1")]


def test_a_tokens_table_with_the_old_column_names_is_replaced(env: Path) -> None:
    # A file written before tokens said token_address/feed_decimals (contract_address,
    # price_feed_decimals): the catalog replaces the table, nothing else is touched.
    db = ServingDuckDB(database=str(env / "chainlake.duckdb"))
    _load(db)
    with db.writer() as conn:
        conn.execute("ALTER TABLE tokens RENAME COLUMN token_address TO contract_address")
        conn.execute("ALTER TABLE tokens RENAME COLUMN feed_decimals TO price_feed_decimals")
        conn.execute("UPDATE alerts SET trigger_count = 3")
    _load(db)
    assert _rows(db, "SELECT symbol, token_address, feed_decimals FROM tokens ORDER BY symbol") == [
        ("ETH", NATIVE_TOKEN, 8),
        ("TKN", TOKEN, None),
    ]
    assert _rows(db, "SELECT trigger_count FROM alerts") == [(3,)]


def test_invalid_file_fails_naming_the_entry_and_writes_nothing(env: Path) -> None:
    db = ServingDuckDB(database=str(env / "chainlake.duckdb"))
    _load(db)
    before = (env / "chainlake.duckdb").read_bytes()
    _config(env, wallets=[{"name": "alice", "address": "0x1234", "chain": "devnet"}])
    result = dg.materialize([catalog], resources={"duckdb": db}, raise_on_error=False)
    assert not result.success and not result.get_asset_materialization_events()
    error = result.get_step_failure_events()[0].step_failure_data.error
    assert error is not None and "wallets[0] 'alice': field 'address'" in str(error)
    assert (env / "chainlake.duckdb").read_bytes() == before
    with pytest.raises(ConfigError, match="unknown chain 'moon'"):
        _config(env, wallets=[{"name": "x", "address": W1, "chain": "moon"}])
        load_portfolios(load_chains())


def _delta(env: Path) -> DeltaStore:
    store = DeltaStore(root=str(env / "delta"))
    chain = load_chains()["devnet"]
    rows = []
    for day, bal in ((dt.date(2026, 11, 1), 5), (dt.date(2026, 11, 2), 7)):
        rows.append({
            "chain_id": 31337, "date": day, "address": W1, "token_address": NATIVE_TOKEN,
            "token_symbol": "ETH", "decimals": 18,
            "balance": Decimal(bal * 10**18 + 1), "net_change": Decimal(0),
            "block_number": day.day * 10, "account_type": "eoa", "source": "carried",
        })  # fmt: skip
    frame = conform(pl.DataFrame(rows, schema=polars_schema(BalancesModel)), BalancesModel)
    for day in (dt.date(2026, 11, 1), dt.date(2026, 11, 2)):
        store.replace_day(chain, "balances", day, frame.filter(pl.col("date") == day))
    return store


def test_views_over_delta_through_the_assets(env: Path) -> None:
    db = ServingDuckDB(database=str(env / "chainlake.duckdb"))
    store = _delta(env)
    result = dg.materialize([catalog, views], resources={"duckdb": db, "delta": store})
    assert result.success
    rows = _rows(db, "SELECT wallet_name, token_symbol, balance, balance_raw, date "
                     "FROM wallet_balances_view")  # fmt: skip
    assert rows == [
        ("alice", "ETH", Decimal("7.000000000000000001"), Decimal(7 * 10**18 + 1),
         dt.date(2026, 11, 2))
    ]  # fmt: skip
    # No transfers table exists yet: the view is there, typed and empty.
    assert _rows(db, "SELECT count(*) FROM recent_transactions_view") == [(0,)]
    assert _rows(db, "SELECT count(*) FROM devnet_balances") == [(2,)]
    assert _rows(db, "SELECT count(*) FROM balances") == [(2,)]
    assert _rows(db, "SELECT count(*) FROM blocks") == [(0,)]  # typed, no chain has it yet


def test_views_hold_no_path_of_the_machine_and_follow_the_lake(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = ServingDuckDB(database=str(env / "chainlake.duckdb"))
    store = _delta(env)
    assert dg.materialize([catalog, views], resources={"duckdb": db, "delta": store}).success
    definitions = " ".join(r[0] for r in _rows(db, "SELECT sql FROM duckdb_views()"))
    assert "devnet/local/balances" in definitions
    assert str(env) not in definitions
    # The lake moves (another machine, another checkout): the same file reads it there.
    (env / "delta").rename(env / "moved")
    monkeypatch.setenv("DELTA_ROOT", str(env / "moved"))
    assert _rows(db, "SELECT count(*) FROM devnet_balances") == [(2,)]
    # A session that sets no root is told what to set, not sent to a wrong place.
    import duckdb

    from resources.duckdb import extension_file

    with duckdb.connect(str(env / "chainlake.duckdb"), read_only=True) as conn:
        conn.execute(f"LOAD '{extension_file('delta')}'")
        with pytest.raises(duckdb.Error, match="SET VARIABLE chainlake_delta_root"):
            conn.execute("SELECT count(*) FROM devnet_balances").fetchall()


READER = textwrap.dedent(
    """
    import sys, time
    from resources.duckdb import ServingDuckDB
    with ServingDuckDB(database=sys.argv[1]).reader() as conn:
        before = conn.execute("SELECT count(*) FROM wallets").fetchone()[0]
        print(before, flush=True)
        time.sleep(4)  # hold the file open while the pipeline writes
        print(conn.execute("SELECT count(*) FROM wallets").fetchone()[0], flush=True)
    """
)


def test_a_reader_holding_the_file_never_blocks_the_writer(env: Path) -> None:
    path = env / "chainlake.duckdb"
    db = ServingDuckDB(database=str(path))
    _load(db)
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert reader.stdout is not None
        assert reader.stdout.readline().strip() == "2"
        _config(env, wallets=[{"name": "alice", "address": W1, "chain": "devnet"}])
        _load(db)  # would fail on a lock if the writer opened the published file in place
        assert _rows(db, "SELECT count(*) FROM wallets") == [(1,)]  # new readers see it
        assert reader.stdout.readline().strip() == "2"  # the open reader keeps its snapshot
    finally:
        reader.wait(30)
    assert reader.returncode == 0


WRITER = textwrap.dedent(
    """
    import sys
    from resources.duckdb import ServingDuckDB
    with ServingDuckDB(database=sys.argv[1]).writer() as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS hits (n INTEGER)")
        for i in range(50):
            conn.execute("INSERT INTO hits VALUES (?)", [int(sys.argv[2])])
    """
)


def test_concurrent_writers_queue_and_lose_nothing(env: Path) -> None:
    path = env / "chainlake.duckdb"
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(i)], cwd=ROOT)
        for i in range(4)
    ]
    assert [p.wait(120) for p in procs] == [0, 0, 0, 0]
    db = ServingDuckDB(database=str(path))
    assert _rows(db, "SELECT n, count(*) FROM hits GROUP BY n ORDER BY n") == [
        (i, 50) for i in range(4)
    ]
    assert not list(env.glob(".chainlake.duckdb.*.tmp"))
