"""`chainlake sql` over a small lake built by the pipeline from a real anvil chain: every view
(each chain's Delta tables, the tables over all chains, the catalog, the serving views, the
ClickHouse analytics) answers through the command line with the row count of its source."""

import csv
import datetime as dt
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest
from click.testing import CliRunner, Result
from deltalake import DeltaTable

from chainlake.config import load_chains
from chainlake.lake import DeltaStore
from cli.main import main
from tools.devnet.anvil import Anvil
from tools.devnet.configs import write_chains_yaml, write_portfolios_yaml
from tools.devnet.generator import generate

pytestmark = pytest.mark.integration

START = dt.date(2026, 11, 3)
DAYS = [START, START + dt.timedelta(days=1)]


@dataclass(frozen=True)
class Lake:
    root: Path
    env: dict[str, str]


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lake]:
    from assets.analytics.portfolio_snapshots import portfolio_snapshots
    from assets.analytics.risk_metrics import risk_metrics
    from assets.core.balances import balances
    from assets.core.native_balance_movements import native_balance_movements
    from assets.core.native_transfers import native_transfers
    from assets.core.token_prices import token_prices
    from assets.core.token_transfers import token_transfers
    from assets.core.tokens import tokens
    from assets.raw.chain_tables import raw_chain_tables
    from assets.serving.catalog import catalog, views
    from resources.clickhouse import ClickHouseResource, EmbeddedClickHouse
    from resources.duckdb import ServingDuckDB
    from resources.rpc import RpcResource

    root = tmp_path_factory.mktemp("sql")
    env = {
        "CHAINS_CONFIG": str(root / "chains.yaml"),
        "PORTFOLIOS_CONFIG": str(root / "portfolios.yaml"),
        "DELTA_ROOT": str(root / "delta"),
        "DUCKDB_PATH": str(root / "chainlake.duckdb"),
        "CLICKHOUSE_PATH": str(root / "clickhouse"),
        "CLICKHOUSE_URL": "",
    }
    with Anvil(genesis=START) as node:
        manifest = generate(
            node.rpc_url, start=START, days=len(DAYS), blocks_per_day=6, txs_per_block=4, seed=3
        )
        write_chains_yaml(root / "chains.yaml", manifest, rpc_urls=[node.rpc_url])
        write_portfolios_yaml(root / "portfolios.yaml", manifest)
        mp = pytest.MonkeyPatch()
        for k, v in env.items():
            mp.setenv(k, v)
        try:
            resources = {
                "delta": DeltaStore(root=env["DELTA_ROOT"]),
                "rpc": RpcResource(),
                "clickhouse": ClickHouseResource(
                    engine=EmbeddedClickHouse(path=env["CLICKHOUSE_PATH"])
                ),
                "duckdb": ServingDuckDB(database=env["DUCKDB_PATH"]),
            }
            per_day = [
                raw_chain_tables, token_transfers, tokens, native_transfers, native_balance_movements, balances, token_prices,
                portfolio_snapshots, risk_metrics,
            ]  # fmt: skip
            for day in DAYS:
                result = dg.materialize(
                    per_day, partition_key=f"devnet|{day.isoformat()}", resources=resources
                )
                assert result.success
            assert dg.materialize([catalog, views], resources=resources).success
            yield Lake(root, env)
        finally:
            mp.undo()


def _sql(lake: Lake, query: str, *extra: str) -> Result:
    return CliRunner().invoke(main, ["sql", "-c", query, "--format", "csv", *extra], env=lake.env)


def _count(lake: Lake, view: str, *extra: str) -> int:
    result = _sql(lake, f'SELECT count(*) AS n FROM "{view}"', *extra)  # noqa: S608
    assert result.exit_code == 0, (view, result.output)
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == ["n"], (view, result.stdout)
    return int(rows[1][0])


def test_every_delta_table_of_every_chain_answers_with_its_row_count(lake: Lake) -> None:
    chains = load_chains(lake.env["CHAINS_CONFIG"])
    store = DeltaStore(root=lake.env["DELTA_ROOT"])
    totals: dict[str, int] = {}
    seen = 0
    for name, chain in chains.items():
        tables = store.list_tables(chain)
        # the pipeline wrote every raw and core table for the chain
        assert {"blocks", "transactions", "logs", "token_transfers", "native_transfers",
                "balances", "token_prices"} <= set(tables)  # fmt: skip
        for table in tables:
            rows = DeltaTable(store.table_uri(chain, table)).to_pyarrow_dataset().count_rows()
            assert rows > 0, table
            assert _count(lake, f"{name}_{table}", "--no-clickhouse") == rows, table
            totals[table] = totals.get(table, 0) + rows
            seen += 1
    assert seen >= 7
    for table, rows in totals.items():  # the view of a table over every chain
        assert _count(lake, table, "--no-clickhouse") == rows, table


def test_catalog_serving_views_and_analytics_answer(lake: Lake) -> None:
    from assets.serving.catalog import SERVING_VIEWS, TABLES
    from resources.clickhouse import ClickHouseResource, EmbeddedClickHouse

    with duckdb.connect(lake.env["DUCKDB_PATH"], read_only=True) as conn:
        want = {
            t.name: conn.execute(f"SELECT count(*) FROM {t.name}").fetchall()[0][0]  # noqa: S608
            for t in TABLES
        }
    assert want["wallets"] > 0 and want["portfolios"] > 0
    for name, rows in want.items():
        assert _count(lake, name, "--no-clickhouse") == rows, name
    for view in SERVING_VIEWS:  # they read the lake through the session's views
        assert _count(lake, view, "--no-clickhouse") > 0, view
    ch = ClickHouseResource(engine=EmbeddedClickHouse(path=lake.env["CLICKHOUSE_PATH"]))
    for name in ("portfolio_snapshots", "risk_metrics"):
        with ch.session() as s:
            want = int(s.query(f"SELECT count() AS n FROM `{name}`")["n"][0])  # noqa: S608
        assert want > 0
        assert _count(lake, name) == want, name
    # one vocabulary: the analytics are keyed by `date`, like the lake
    result = _sql(lake, "SELECT min(date) AS d FROM portfolio_snapshots")
    assert result.exit_code == 0 and result.stdout.splitlines()[1] == START.isoformat()


def test_table_output_and_errors_name_their_cause(lake: Lake, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["sql", "SELECT block_number FROM devnet_blocks ORDER BY 1 LIMIT 2",
               "--no-clickhouse"], env=lake.env,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].strip() == "block_number" and lines[-1] == "(2 rows)"
    bad = _sql(lake, "SELECT nope FROM devnet_blocks", "--no-clickhouse")
    assert bad.exit_code == 1 and 'column "nope"' in bad.output
    empty = CliRunner().invoke(
        main, ["sql", "-c", "SELECT 1", "--delta-root", str(tmp_path / "nothing")], env=lake.env
    )
    assert empty.exit_code == 1
    assert f"DELTA_ROOT={tmp_path / 'nothing'} holds no Delta table" in empty.output


def _readme_section() -> str:
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    return text.split("## Query the data", 1)[1].split("\n## ", 1)[0]


def test_the_readme_examples_run(lake: Lake) -> None:
    import ast
    import shlex

    import polars as pl

    section = _readme_section()
    commands = [
        line.split("  #")[0] for line in section.splitlines() if line.startswith("chainlake sql -c")
    ]
    assert len(commands) >= 2
    for command in commands:
        args = shlex.split(command)[1:]
        result = CliRunner().invoke(main, args, env=lake.env)
        assert result.exit_code == 0, (command, result.output)
        assert len(result.stdout.splitlines()) >= 2, (command, result.stdout)
    # The Python examples, pointed at this lake (the README's paths are the demo's).
    blocks = section.split("```python\n")[1:]
    assert len(blocks) == 2
    for block in blocks:
        code = block.split("```", 1)[0]
        code = code.replace("data/delta", lake.env["DELTA_ROOT"])
        code = code.replace("data/clickhouse", lake.env["CLICKHOUSE_PATH"])
        tree = ast.parse(code)
        last = tree.body[-1]
        assert isinstance(last, ast.Expr)  # each example ends with the frame it shows
        tree.body[-1] = ast.Assign([ast.Name("shown", ast.Store())], last.value)
        scope: dict[str, Any] = {}
        try:
            exec(compile(ast.fix_missing_locations(tree), "README.md", "exec"), scope)
            assert isinstance(scope["shown"], pl.DataFrame)
        finally:
            # the ClickHouse example's client holds the embedded engine, which takes one
            # directory per process: let go, or a later test of this process (another
            # module, under pytest-xdist) cannot open its own
            if "client" in scope:
                scope["client"].close()
