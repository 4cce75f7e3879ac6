"""`make demo`'s entry point (`python -m tools.demo`) on a small chain, as a user runs it: a quiet
console that ends with the closing tables, the full logs in a file, the HTML report, days that
end today with no block in the future, and a failure told in a few lines with a non-zero exit.

Each run gets its own data directory, DAGSTER_HOME, events database and RPC port, so the
checkout's data/ is never touched."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import psycopg
import pytest
import yaml
from dagster_stack import free_port

from chainlake.events import db
from chainlake.risk import DEFAULT_MIN_OBSERVATIONS

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SMALL = {"DEMO_DAYS": "2", "DEMO_BLOCKS_PER_DAY": "12", "DEMO_TXS_PER_BLOCK": "5"}
# Settings that would point the demo's stores elsewhere than its data directory.
STORE_VARIABLES = (
    "DELTA_ROOT",
    "CLICKHOUSE_URL",
    "CLICKHOUSE_PATH",
    "DUCKDB_PATH",
    "CHAINS_CONFIG",
    "PORTFOLIOS_CONFIG",
)


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    started: dt.datetime
    ended: dt.datetime

    @property
    def lines(self) -> list[str]:
        return [line.rstrip() for line in self.stdout.splitlines() if line.strip()]

    def printed_path(self, label: str) -> Path:
        found = [line.split(": ", 1)[1] for line in self.lines if line.startswith(f"{label}: ")]
        assert found, f"no '{label}: ' line in\n{self.stdout}"
        return Path(found[-1])


@pytest.fixture
def demo_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of a demo run confined to `tmp_path` and a scratch events database."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    url = f"postgresql://postgres@127.0.0.1:5432/chainlake_demo_test_{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if k not in STORE_VARIABLES}
    env.update(
        SMALL,
        DEMO_DATA_DIR=str(tmp_path / "data"),
        DAGSTER_HOME=str(home),
        POSTGRES_URL=url,
        PYTHONPATH=str(ROOT),
    )
    try:
        yield env
    finally:
        db.drop_database(url)


def run_demo(env: dict[str, str], **overrides: str) -> Run:
    env = {**env, "DEMO_RPC_PORT": str(free_port()), **overrides}
    started = dt.datetime.now(dt.UTC)
    proc = subprocess.run(
        [sys.executable, "-m", "tools.demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr, started, dt.datetime.now(dt.UTC))


def assert_quiet(run: Run) -> None:
    """No DEBUG line, no traceback, nothing on stderr."""
    console = run.stdout + run.stderr
    assert not re.search(r"\bDEBUG\b", console), console
    assert "Traceback" not in console, console
    assert run.stderr == "", run.stderr


def demo_days(run: Run) -> list[dt.date]:
    """The two days the run should cover (its start's UTC day and the day before)."""
    today = run.started.date()
    return [today - dt.timedelta(days=1), today]


def test_demo_is_quiet_and_ends_with_the_summary_and_a_different_chain_replaces_it(
    demo_env: dict[str, str], tmp_path: Path
) -> None:
    """A first run, then a second whose chain differs in the same data directory (one demo run
    fewer than a test of its own for each)."""
    run = run_demo(demo_env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.started.date() == run.ended.date(), "the run crossed midnight: run it again"
    assert_quiet(run)
    data = tmp_path / "data"
    first, today = demo_days(run)

    # The closing tables, dbt style: one OK line per chain-day (rows per table: blocks, txs,
    # logs, transfers, balances, snapshots, events; checks passed/total) and per portfolio.
    day_line = re.compile(
        r"\s*(\d) of 2 (OK|FAIL)\s+devnet (\S+)( \(open\))?((?:\s+[\d,]+){7})\s+(\d+)/(\d+)\s+\["
    )
    days = [m.groups() for line in run.lines if (m := day_line.match(line))]
    assert [(n, status, day, bool(open_)) for n, status, day, open_, *_ in days] == [
        ("1", "OK", first.isoformat(), False),
        ("2", "OK", today.isoformat(), True),
    ], run.stdout
    for *_, rows, passed, total in days:
        blocks, txs = (int(x.replace(",", "")) for x in rows.split()[:2])
        assert blocks > 0 and txs > 0, rows
        assert passed == total and int(total) > 0
    portfolios = yaml.safe_load((data / "devnet" / "portfolios.yaml").read_text())["portfolios"]
    ids = sorted(p["id"] for p in portfolios)
    portfolio_lines = [
        line.split() for line in run.lines if re.match(rf"\d+ of {len(ids)} ", line.strip())
    ]
    assert sorted(w[4] for w in portfolio_lines) == ids
    assert {w[3] for w in portfolio_lines} == {"OK"}
    assert "triggers:" in run.stdout  # the trigger section is kept
    assert re.match(
        rf"Done\. PASS={2 + len(ids)} FAIL=0 \(2 chain-days, {len(ids)} portfolios\)",
        run.lines[-1],
    ), run.lines[-1]

    # The log file: printed, inside the data directory, with everything the console left out.
    log_path = run.printed_path("log")
    assert log_path.parent == data / "logs" and log_path.exists()
    log_text = log_path.read_text()
    assert re.search(r" DEBUG chainlake\.demo\.dagster: .* STEP_SUCCESS ", log_text)
    assert "RUN_SUCCESS" in log_text
    assert " py.warnings: " in log_text  # Dagster's BetaWarnings
    assert " httpx: HTTP Request: POST http://127.0.0.1:" in log_text

    # The report: printed, self-contained, with every portfolio and the demo's days.
    report = run.printed_path("report")
    assert report == data / "demo-report.html"
    page = report.read_text()
    for pid in ids:
        assert f"<h2>{pid}</h2>" in page
    # a value chart per portfolio, drawdown, daily returns; VaR is null with 1 return a day old
    assert page.count('<img alt="chart" src="data:image/svg+xml;base64,') == len(ids) + 2
    minimum = DEFAULT_MIN_OBSERVATIONS[30]  # the demo's portfolios.yaml sets none
    assert f"No VaR yet: a 30-day figure needs at least {minimum} daily returns" in page
    assert "these days give 1" in page
    assert f"{first.isoformat()} .. {today.isoformat()}" in page
    assert "http://" not in page and "https://" not in page

    # The chain is saved for `make dev` (anvil's JSON snapshot).
    assert json.loads((data / "devnet" / "state.json").read_text())["blocks"]

    # The chain's partitions start on its first day; no block lies after the demo's start.
    chains = yaml.safe_load((data / "devnet" / "chains.yaml").read_text())["chains"]
    assert [c["start_date"] for c in chains] == [first.isoformat()]
    table = pl.read_delta(str(data / "delta" / "devnet" / "local" / "blocks"))
    assert table["date"].unique().sort().to_list() == [first, today]
    latest = table["timestamp"].max()
    assert isinstance(latest, dt.datetime) and latest <= run.started
    assert table["block_number"].n_unique() == table.height

    # A second run whose chain differs (here fewer blocks a day; on a later day, other dates)
    # leaves no row of the first chain in the lake or in PostgreSQL.
    second = run_demo(demo_env, DEMO_BLOCKS_PER_DAY="8")
    assert second.returncode == 0, second.stdout + second.stderr
    assert_quiet(second)
    manifest = yaml.safe_load((tmp_path / "data" / "devnet" / "manifest.json").read_text())
    assert manifest["blocks_per_day"] == 8
    blocks = pl.read_delta(str(tmp_path / "data" / "delta" / "devnet" / "local" / "blocks"))
    assert blocks.height == manifest["head_block"] + 1
    assert blocks["block_number"].n_unique() == blocks.height
    with psycopg.connect(demo_env["POSTGRES_URL"]) as conn:
        row = conn.execute("SELECT max(block_number) FROM events").fetchone()
    assert row is not None and row[0] <= manifest["head_block"]


def test_a_failed_step_is_told_in_a_few_lines(demo_env: dict[str, str], tmp_path: Path) -> None:
    """An embedded ClickHouse path that is a file: analytics/portfolio_snapshots fails on the
    first day; the demo names it, gives the error in two lines and the log, and exits 1."""
    data = tmp_path / "data"
    data.mkdir()
    not_a_folder = data / "clickhouse"
    not_a_folder.write_text("a file where the ClickHouse folder should be\n")
    run = run_demo(demo_env, CLICKHOUSE_PATH=str(not_a_folder))
    assert run.returncode == 1, run.stdout + run.stderr
    assert_quiet(run)
    first, _today = demo_days(run)
    lines = run.stdout.splitlines()
    fail = lines.index(f"FAIL analytics/portfolio_snapshots (devnet {first})")
    error = lines[fail + 1 : fail + 3]
    assert error[0].startswith("  NotADirectoryError: ") and str(not_a_folder) in error[0]
    assert re.fullmatch(r"  at \S+\.py:\d+ in \w+", error[1]), error
    log_path = run.printed_path("log")
    assert lines[fail + 3] == f"log: {log_path}"
    assert "STEP_FAILURE" in log_path.read_text()  # the details are in the file
    assert re.match(r"Done\. PASS=0 FAIL=1 SKIP=1 ", lines[-1]), lines[-1]
    assert any(re.match(r"\s*1 of 2 FAIL\s+devnet ", line) for line in lines)
    assert any(re.match(r"\s*2 of 2 SKIP\s+devnet ", line) for line in lines)
    assert not (data / "demo-report.html").exists()


def test_a_bad_setting_stops_the_demo_before_any_run(demo_env: dict[str, str]) -> None:
    """Blocks over the gas limit: the generator's own error, in two lines, exit 1."""
    run = run_demo(demo_env, DEMO_TXS_PER_BLOCK="2000")
    assert run.returncode == 1, run.stdout + run.stderr
    assert_quiet(run)
    lines = run.stdout.splitlines()
    fail = lines.index("FAIL generate")
    assert lines[fail + 1].startswith("  GeneratorError: a planned block needs "), lines[fail:]
    assert re.fullmatch(r"  at tools/devnet/generator\.py:\d+ in \w+", lines[fail + 2])
    assert lines[fail + 3] == f"log: {run.printed_path('log')}"
    assert re.match(r"Done\. PASS=0 FAIL=1 SKIP=2 ", lines[-1]), lines[-1]


def test_a_chain_cut_at_until_is_the_start_of_the_full_chain() -> None:
    """`generate(until=...)`, as the demo uses it for today: no block after `until`, and the
    blocks kept are the full plan's first blocks, hash for hash."""
    from tools.devnet.anvil import Anvil
    from tools.devnet.generator import Rpc, generate

    start = dt.date(2025, 3, 1)
    until = int(dt.datetime(2025, 3, 2, 13, 30, tzinfo=dt.UTC).timestamp())
    hashes: list[list[str]] = []
    for cut in (None, until):
        with Anvil(genesis=start) as node, Rpc(node.rpc_url) as rpc:
            manifest = generate(
                node.rpc_url, start=start, days=2, blocks_per_day=12, txs_per_block=4, until=cut
            )
            blocks = rpc.batch(
                [("eth_getBlockByNumber", [hex(n), False]) for n in range(manifest.head_block + 1)]
            )
        hashes.append([b["hash"] for b in blocks])
        if cut is not None:
            assert max(int(b["timestamp"], 16) for b in blocks) <= cut
            # day 2: the blocks at 00:00, 02:00, ..., 12:00 of its 12
            assert manifest.day_blocks[-1].count == 7
    full, cut_chain = hashes
    assert len(cut_chain) < len(full)
    assert cut_chain == full[: len(cut_chain)]
