"""`chainlake sql` without services: its output formats, its prompt, and the errors it gives
before opening anything (tests/integration/test_sql_cli.py queries a real lake)."""

import builtins
import csv
import datetime as dt
import io
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
import yaml
from click.testing import CliRunner

from cli.commands.sql import render_csv, render_table, repl, run
from cli.main import main


def test_table_aligns_numbers_shows_null_cuts_long_cells_and_counts() -> None:
    out = render_table(
        ["n", "hash", "note"],
        [(7, "0x" + "ab" * 40, None), (Decimal("12345.000000000000000001"), "0x1", "x")],
        max_width=12,
    )
    lines = out.splitlines()
    assert lines[0].split(" | ")[0].strip() == "n"
    assert lines[2].startswith("                       7 | 0xababababa… | NULL")
    assert "12345.000000000000000001" in lines[3]  # exact, not a float
    assert lines[-1] == "(2 rows)"
    assert render_table(["a"], [(1,)]).splitlines()[-1] == "(1 row)"


def test_csv_keeps_values_whole_nested_as_json_null_empty() -> None:
    out = render_csv(
        ["d", "v", "tags", "none"],
        [(dt.date(2026, 11, 3), Decimal("10000000000000000000000000001"), ["a", "b"], None)],
    )
    rows = list(csv.reader(io.StringIO(out)))
    assert rows == [
        ["d", "v", "tags", "none"],
        ["2026-11-03", "10000000000000000000000000001", '["a", "b"]', ""],
    ]


def test_the_prompt_runs_statements_ending_with_a_semicolon(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    conn = duckdb.connect(":memory:")
    conn.execute("CREATE VIEW devnet_blocks AS SELECT 1 AS block_number")
    lines = iter(["SELECT 40", "+ 2 AS answer;", ".tables", "SELECT nope;", ".quit", "never"])
    monkeypatch.setattr(builtins, "input", lambda prompt="": next(lines))
    repl(conn, "table", 66)
    out, err = capsys.readouterr()
    assert "answer\n------\n    42\n(1 row)" in out
    assert "devnet_blocks | view" in out
    assert 'Error: Binder Error: Referenced column "nope" was not found' in err
    assert next(lines) == "never"  # .quit stopped reading


def test_several_statements_show_the_last_result() -> None:
    conn = duckdb.connect(":memory:")
    out = run(conn, "CREATE TABLE t (a INTEGER); INSERT INTO t VALUES (1), (2); "
              "SELECT sum(a) AS s FROM t", "csv", 66)  # fmt: skip
    assert out == "s\n3\n"


def _chains(tmp: Path) -> Path:
    path = tmp / "chains.yaml"
    path.write_text(yaml.safe_dump({"chains": [{
        "name": "devnet", "network": "devnet", "subnet": "local", "chain_id": 31337,
        "rpc_urls": ["http://127.0.0.1:8545"], "start_date": "2026-11-01",
    }]}))  # fmt: skip
    return path


def test_an_empty_lake_is_an_error_naming_delta_root(tmp_path: Path) -> None:
    env = {"CHAINS_CONFIG": str(_chains(tmp_path)), "DELTA_ROOT": str(tmp_path / "delta")}
    result = CliRunner().invoke(main, ["sql", "-c", "SELECT 1"], env=env)
    assert result.exit_code == 1
    assert f"DELTA_ROOT={tmp_path / 'delta'} holds no Delta table" in result.output
    assert f"devnet: {tmp_path / 'delta'}/devnet/local" in result.output
    assert "Traceback" not in result.output


def test_the_sql_is_given_once(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["sql", "SELECT 1", "-c", "SELECT 2"])
    assert result.exit_code == 2 and "give the SQL once" in result.output


def _two_chain_lake(tmp_path: Path) -> dict[str, str]:
    import polars as pl

    chains = {"chains": [
        {"name": name, "network": network, "subnet": "local", "chain_id": chain_id,
         "rpc_urls": ["http://127.0.0.1:8545"], "start_date": "2026-11-01"}
        for name, network, chain_id in (("devnet", "devnet", 31337), ("side-net", "side", 7))
    ]}  # fmt: skip
    (tmp_path / "chains.yaml").write_text(yaml.safe_dump(chains))
    for network, chain_id, n in (("devnet", 31337, 3), ("side", 7, 2)):
        pl.DataFrame(
            {"chain_id": [chain_id] * n, "date": [dt.date(2026, 11, 3)] * n,
             "block_number": list(range(n))}
        ).write_delta(str(tmp_path / "delta" / network / "local" / "blocks"))  # fmt: skip
    return {
        "CHAINS_CONFIG": str(tmp_path / "chains.yaml"),
        "DELTA_ROOT": str(tmp_path / "delta"),
        "DUCKDB_PATH": str(tmp_path / "none.duckdb"),
    }


def test_views_per_chain_and_over_every_chain(tmp_path: Path) -> None:
    env = _two_chain_lake(tmp_path)
    query = (
        "SELECT (SELECT count(*) FROM devnet_blocks) AS a, (SELECT count(*) FROM side_net_blocks)"
        " AS b, (SELECT count(*) FROM blocks) AS total, (SELECT count(*) FROM logs) AS logs"
    )
    result = CliRunner().invoke(
        main, ["sql", "-c", query, "--format", "csv", "--no-clickhouse"], env=env
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["a,b,total,logs", "3,2,5,0"]
    assert "no catalog: " in result.stderr


def test_statements_piped_to_stdin(tmp_path: Path) -> None:
    env = _two_chain_lake(tmp_path)
    script = "CREATE TEMP TABLE t AS SELECT * FROM blocks;\nSELECT count(*) AS n FROM t;\n"
    result = CliRunner().invoke(main, ["sql", "--no-clickhouse"], env=env, input=script)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["n", "-", "5", "(1 row)"]
    nothing = CliRunner().invoke(main, ["sql", "--no-clickhouse"], env=env, input="  \n")
    assert nothing.exit_code == 2 and "no SQL" in nothing.output
