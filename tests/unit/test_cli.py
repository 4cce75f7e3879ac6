"""The `chainlake` console script: every command has --help, a failing command exits non-zero
with one clear line, and the database operations (check-only, backup before
migrating, force, restore from a Parquet backup, health) against a real PostgreSQL."""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import click
import psycopg
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from psycopg import sql

from cli.main import main

ROOT = Path(__file__).resolve().parents[2]
ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
# Migration revisions in order, named by their files' prefixes (0001_…, 0002_…).
REVISIONS = sorted(
    p.name.split("_", 1)[0] for p in (ROOT / "chainlake/events/migrations/versions").glob("0*.py")
)
HEAD_REVISION = REVISIONS[-1]


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield prefix
    for name, cmd in sorted(group.commands.items()):
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, (*prefix, name))
        else:
            yield (*prefix, name)


ALL_COMMANDS = list(_commands(main))


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=lambda p: " ".join(p) or "chainlake")
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.output
    assert len(result.output.strip().splitlines()) >= 3


def test_the_groups_of_this_issue_are_registered() -> None:
    names = {" ".join(p) for p in ALL_COMMANDS}
    for expected in (
        "db migrate",
        "db downgrade",
        "db health",
        "db backup",
        "db restore",
        "catalog import",
        "catalog export",
    ):
        assert expected in names, f"missing `chainlake {expected}`"


def test_console_script_reports_a_failure_in_one_line_and_exits_non_zero() -> None:
    url = "postgresql://postgres@127.0.0.1:1/nowhere"  # nothing listens on port 1
    out = subprocess.run(
        [str(Path(sys.executable).parent / "chainlake"), "db", "health", "--url", url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("Error: ") and "cannot connect" in lines[0]


# -- the database operations against a real server ------------------------------------------


@contextlib.contextmanager
def _database() -> Iterator[str]:
    name = f"chainlake_test_cli_{uuid.uuid4().hex[:8]}"
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def db_url() -> Iterator[str]:
    with _database() as url:
        yield url


@pytest.fixture
def other_db_url() -> Iterator[str]:
    with _database() as url:
        yield url


def run(*args: str) -> tuple[int, str]:
    if args and args[0] == "devnet":  # `python -m tools.devnet`, the developer's chain
        from tools.devnet.cli import devnet

        result = CliRunner().invoke(devnet, list(args[1:]))
    else:
        result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_the_devnet_tool_has_its_commands() -> None:
    from tools.devnet.cli import devnet

    assert {"up", "down", "seed", "status"} <= set(devnet.commands)


def _fill(url: str) -> None:
    """Rows of many column types: text ids, identity sequences, NUMERIC(78,0) beyond 64 bits,
    JSONB, timestamps, booleans, bytea."""
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO users (id, username, email, password_hash) VALUES ('u1', 'ann', 'a@x', '!')"
        )
        conn.execute(
            "INSERT INTO triggers (id, user_id, name, chain_id, registry, cooldown_seconds) "
            "VALUES ('t1', 'u1', 'big transfer', 31337, 'erc20', 60)"
        )
        for i in range(3):
            conn.execute(
                "INSERT INTO events (id, chain_id, block_number, block_hash, transaction_hash, "
                "log_index, registry, event_type, timestamp, token_address, amount, data) "
                "VALUES (%s, 31337, %s, '0xbb', '0xtt', %s, 'erc20', 'transfer', 1767225600, "
                "'0xtoken', %s, %s)",
                (
                    f"31337-{100 + i}-{i}",
                    100 + i,
                    i,
                    decimal.Decimal(2**200 + i),
                    psycopg.types.json.Jsonb({"memo": f"ü{i}", "n": [1, 2]}),
                ),
            )
        conn.execute(
            "INSERT INTO agent_mcp_tokens (agent_id, token_encrypted) VALUES (7, %s)",
            (b"\x00\xffsecret",),
        )


def _snapshot(url: str) -> dict[str, list[tuple]]:
    with psycopg.connect(url) as conn:
        return {
            "events": conn.execute(
                "SELECT id, seq, amount, data, created_at FROM events ORDER BY id"
            ).fetchall(),
            "triggers": conn.execute("SELECT * FROM triggers").fetchall(),
            "tokens": conn.execute(
                "SELECT agent_id, token_encrypted FROM agent_mcp_tokens"
            ).fetchall(),
        }


@pytest.mark.integration
def test_check_only_changes_nothing_and_exits_1_while_behind(db_url: str) -> None:
    code, out = run("db", "migrate", "--check-only", "--url", db_url)
    assert code == 1
    assert "database does not exist" in out and "pending: 0001" in out
    assert out.strip().splitlines()[-1].startswith("Error: ")
    with psycopg.connect(ADMIN) as conn:
        name = db_url.rsplit("/", 1)[1]
        assert not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()

    assert run("db", "migrate", "--url", db_url)[0] == 0
    code, out = run("db", "migrate", "--check-only", "--url", db_url)
    assert code == 0 and "up to date" in out


@pytest.mark.integration
def test_backup_restore_round_trip_keeps_every_value(
    db_url: str, other_db_url: str, tmp_path: Path
) -> None:
    assert run("db", "migrate", "--url", db_url)[0] == 0
    _fill(db_url)
    code, out = run("db", "backup", "--url", db_url, "--output", str(tmp_path))
    assert code == 0, out
    (backup_dir,) = tmp_path.iterdir()
    events = pq.read_table(backup_dir / "events.parquet")
    assert events.num_rows == 3
    assert str(events.schema.field("seq").type) == "int64"
    assert str(events.schema.field("created_at").type) == "timestamp[us, tz=UTC]"
    assert events.column("amount").to_pylist()[0] == str(2**200)  # exact, as text

    # into an empty database: created, migrated to the backup's revision, loaded
    code, out = run("db", "restore", str(backup_dir), "--url", other_db_url)
    assert code == 0, out
    assert _snapshot(other_db_url) == _snapshot(db_url)
    # identity sequences continue after the restored rows
    with psycopg.connect(other_db_url) as conn:
        conn.execute(
            "INSERT INTO events (id, chain_id, block_number, block_hash, transaction_hash, "
            "log_index, registry, event_type, timestamp) "
            "VALUES ('31337-200-0', 31337, 200, '0xb', '0xt', 0, 'erc20', 'transfer', 1)"
        )
        seqs = [r[0] for r in conn.execute("SELECT seq FROM events ORDER BY seq")]
        assert seqs == sorted(set(seqs)) and seqs[-1] > seqs[-2]

    # a database that holds rows is only replaced with --force
    code, out = run("db", "restore", str(backup_dir), "--url", other_db_url)
    assert code == 1 and "--force" in out
    code, out = run("db", "restore", str(backup_dir), "--url", other_db_url, "--force")
    assert code == 0, out
    assert _snapshot(other_db_url) == _snapshot(db_url)


@pytest.mark.integration
def test_migrate_backs_up_a_database_with_rows_first(db_url: str, tmp_path: Path) -> None:
    assert run("db", "migrate", "--revision", "0001", "--url", db_url)[0] == 0
    _fill(db_url)
    code, out = run("db", "migrate", "--url", db_url, "--backup-dir", str(tmp_path))
    assert code == 0, out
    assert "backed up" in out
    (backup_dir,) = tmp_path.iterdir()
    assert backup_dir.name.endswith(f"before-{HEAD_REVISION}")
    assert '"revision": "0001"' in (backup_dir / "manifest.json").read_text()

    assert run("db", "downgrade", "--revision", "0001", "--url", db_url, "--yes")[0] == 0
    code, out = run(
        "db", "migrate", "--url", db_url, "--no-backup", "--backup-dir", str(tmp_path / "none")
    )
    assert code == 0 and not (tmp_path / "none").exists()


@pytest.mark.integration
def test_migrate_refuses_an_untracked_schema_unless_forced(db_url: str, tmp_path: Path) -> None:
    assert run("db", "migrate", "--url", db_url)[0] == 0
    _fill(db_url)
    with psycopg.connect(db_url) as conn:  # as if the schema had been created by hand
        conn.execute("DROP TABLE chainlake_alembic_version")
    code, out = run("db", "migrate", "--url", db_url, "--backup-dir", str(tmp_path))
    assert code == 1
    assert "no migration history" in out and "--force" in out
    assert not tmp_path.exists() or not any(tmp_path.iterdir())

    code, out = run("db", "migrate", "--url", db_url, "--force", "--backup-dir", str(tmp_path))
    assert code == 0, out
    (backup_dir,) = tmp_path.iterdir()  # the rows were saved before the rebuild
    assert pq.read_table(backup_dir / "events.parquet").num_rows == 3
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (0,)


@pytest.mark.integration
def test_health_reports_schema_notify_and_events(db_url: str) -> None:
    assert run("db", "migrate", "--revision", "0001", "--url", db_url)[0] == 0
    code, out = run("db", "health", "--url", db_url)
    assert code == 1
    assert "LISTEN/NOTIFY: " in out and " ms" in out
    pending = [r for r in REVISIONS if r > "0001"]
    assert f"unhealthy: {len(pending)} migration(s) pending ({', '.join(pending)})" in out

    assert run("db", "migrate", "--url", db_url, "--no-backup")[0] == 0
    _fill(db_url)
    code, out = run("db", "health", "--url", db_url, "--json")
    assert code == 0, out
    import json

    report = json.loads(out)
    assert report["ok"] and report["events"] == 3 and report["notify_roundtrip_ms"] is not None
    assert dt.datetime.fromisoformat(report["last_event_at"]).tzinfo is not None


@pytest.mark.integration
def test_devnet_up_seed_status_down(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    state = str(tmp_path / "devnet")
    start = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=2)).isoformat()
    try:
        code, out = run("devnet", "up", "--state-dir", state, "--port", str(port), "--start", start)
        assert code == 0 and f"127.0.0.1:{port}" in out, out
        code, out = run("devnet", "up", "--state-dir", state)
        assert code == 0 and "already running" in out
        code, out = run(
            "devnet", "seed", "--state-dir", state, "--blocks-per-day", "4", "--txs-per-block", "2"
        )
        assert code == 0 and f"seeded 2 days from {start}" in out, out
        from chainlake.config import load_chains

        chain = load_chains(tmp_path / "devnet" / "chains.yaml")["devnet"]
        assert chain.rpc_urls == (f"http://127.0.0.1:{port}",) and chain.tokens
        assert (tmp_path / "devnet" / "portfolios.yaml").exists()
        code, out = run("devnet", "status", "--state-dir", state)
        assert code == 0 and "head block" in out
        code, out = run("devnet", "seed", "--state-dir", state)
        assert code == 1 and "seed a fresh node" in out
        code, out = run("devnet", "seed", "--state-dir", state, "--skip-if-seeded")
        assert code == 0 and "already seeded" in out
    finally:
        code, out = run("devnet", "down", "--state-dir", state)
    assert code == 0 and out.strip() == "devnet stopped"
    code, out = run("devnet", "status", "--state-dir", state)
    assert code == 1 and "no devnet running" in out


# -- catalog import / export ----------------------------------------------------------------

CHAINS_YAML = """\
chains:
  - name: devnet
    network: devnet
    subnet: local
    chain_id: 31337
    rpc_urls: ["http://127.0.0.1:8545"]
    start_date: 2026-11-01
"""
PORTFOLIOS_YAML = """\
wallets:
  - {name: treasury, address: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", chain: devnet}
  - {name: hot, address: "0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc", chain: devnet}
portfolios:
  - id: core
    name: Core
    description: both wallets
    risk_profile: conservative
    target_allocation: {ETH: 0.75, USDC: 0.25}
    wallets: [treasury, hot]
alerts:
  - name: Low hot wallet
    query: Alert me when the hot wallet holds less than 10 ETH
    expression: wallet_balances.filter(pl.col("balance") < 10)
    parameters: {wallet: hot, threshold: 10}
"""


def _catalog_rows(path: Path) -> dict[str, list[tuple]]:
    import duckdb

    with duckdb.connect(str(path), read_only=True) as conn:
        tables = ["wallets", "nodes", "tokens", "portfolios", "portfolio_wallets", "alerts"]
        return {
            t: conn.execute(f"SELECT * EXCLUDE (created_at) FROM {t} ORDER BY ALL").fetchall()  # noqa: S608
            for t in tables
        }


def test_catalog_import_export_round_trip(tmp_path: Path) -> None:
    chains = tmp_path / "chains.yaml"
    chains.write_text(CHAINS_YAML)
    book = tmp_path / "portfolios.yaml"
    book.write_text(PORTFOLIOS_YAML)
    db = tmp_path / "catalog.duckdb"

    code, out = run("catalog", "import", str(book), "--chains", str(chains), "--duckdb", str(db))
    assert code == 0, out
    assert "wallets 2" in out and "portfolios 1" in out and "alerts 1" in out
    first = _catalog_rows(db)

    exported = tmp_path / "exported.yaml"
    code, out = run("catalog", "export", "--duckdb", str(db), "--output", str(exported))
    assert code == 0, out
    code, out = run(
        "catalog", "import", str(exported), "--chains", str(chains), "--duckdb", str(db)
    )
    assert code == 0, out
    # the same rows, and no row touched (updated_at unchanged): export is a faithful inverse
    assert _catalog_rows(db) == first

    code, out = run(
        "catalog",
        "export",
        "--duckdb",
        str(db),
        "--format",
        "parquet",
        "--output",
        str(tmp_path / "pq"),
    )
    assert code == 0, out
    assert pq.read_table(tmp_path / "pq" / "portfolio_wallets.parquet").num_rows == 2


def test_catalog_import_names_the_bad_entry_and_writes_nothing(tmp_path: Path) -> None:
    chains = tmp_path / "chains.yaml"
    chains.write_text(CHAINS_YAML)
    book = tmp_path / "portfolios.yaml"
    book.write_text(PORTFOLIOS_YAML.replace("chain: devnet}", "chain: mainnet}", 1))
    db = tmp_path / "catalog.duckdb"
    code, out = run("catalog", "import", str(book), "--chains", str(chains), "--duckdb", str(db))
    assert code == 1
    assert "treasury" in out and "mainnet" in out
    assert not db.exists()
    code, out = run("catalog", "export", "--duckdb", str(db))
    assert code == 1 and "no catalog yet" in out
